"""The Imagine tab's handler: an upload → the imagine pipeline → a plain view object.

The pipeline writes its outputs to a directory (sources/*.wav, activity.json,
captions.json, description.txt, reasoning.txt, image.png, report.html, run.json); the
view is read back from those files, so what the page shows is exactly what a CLI run
would leave on disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError
from auralens.io import Timer
from auralens.ui_app.core import (
    CONSTANT_INPUT,
    UIError,
    UISettings,
    md_escape,
    md_table,
    request_dir,
    soundless,
    timings_md,
    validate_upload,
)

log = logging.getLogger(__name__)


@dataclass
class SourceView:
    """One separated source as the page shows it.

    Attributes:
        index: position in the separator output.
        path: the source's wav (inside the request's work dir).
        kept: whether the activity detector kept it.
        score: the activity score, the estimate's RMS relative to the mixture's (None when
            unknown).
        caption: its caption ("" when none).
        reason: the activity filter's explanation of its decision.
    """

    index: int
    path: Path
    kept: bool = True
    score: float | None = None
    caption: str = ""
    reason: str = ""

    @property
    def label(self) -> str:
        state = "kept" if self.kept else "dropped"
        score = f", score {self.score:.3g}" if self.score is not None else ""
        cap = f": {self.caption}" if self.caption else ""
        # numbered as the pipeline's files and report are: sources/source0.wav is source 0
        return f"source {self.index} ({state}{score}){cap}"


@dataclass
class ImagineView:
    """Everything the Imagine tab displays for one request."""

    ok: bool
    status: str
    sources: list[SourceView] = field(default_factory=list)
    description: str = ""
    reasoning: str = ""
    image: Path | None = None
    image_note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    report: Path | None = None
    #: Why the description is empty ("" when there is one, or no reason was recorded).
    description_note: str = ""
    #: A zip of the report with everything it links to (:func:`bundle_outputs`).
    bundle: Path | None = None

    @property
    def kept_count(self) -> int:
        return sum(s.kept for s in self.sources)

    @property
    def activity_md(self) -> str:
        if not self.sources:
            return "_no sources_"
        rows: list[list[object]] = [
            [s.index, "kept" if s.kept else "dropped",
             "" if s.score is None else f"{s.score:.3g}", s.reason]
            for s in self.sources
        ]
        head = f"**Sources kept: {self.kept_count} of {len(self.sources)}**\n\n"
        return head + md_table(["source", "activity", "RMS vs mix", "why"], rows)

    @property
    def captions_md(self) -> str:
        rows: list[list[object]] = [[s.index, s.caption] for s in self.sources
                                    if s.caption]
        if not rows:
            return "_no captions (no source was kept)_" if self.sources and not self.kept_count else "_no captions_"
        return md_table(["source", "caption"], rows)

    @property
    def timings_md(self) -> str:
        return timings_md(self.timings)


# --------------------------------------------------------------------------- reading outputs
_INDEX_RE = re.compile(r"(\d+)")


def _index_of(value: Any, fallback: int) -> int:
    """An integer source index from an int, a file name like ``source_2.wav`` or a key."""
    if isinstance(value, bool):
        return fallback
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _INDEX_RE.findall(Path(value).stem)
        if m:
            return int(m[-1])
    return fallback


def _entries(data: Any, list_keys: tuple[str, ...]) -> list[tuple[int, Any]]:
    """Normalise a JSON list/dict of per-source records to ``[(index, record)]``."""
    if isinstance(data, dict):
        for key in list_keys:
            if key in data and isinstance(data[key], (list, dict)):
                return _entries(data[key], ())
        out = []
        for i, (k, v) in enumerate(data.items()):
            idx = _index_of(v.get("index", v.get("source", k)) if isinstance(v, dict) else k, i)
            out.append((idx, v))
        return out
    if isinstance(data, list):
        out = []
        for i, v in enumerate(data):
            if isinstance(v, dict):
                idx = _index_of(v.get("index", v.get("source", v.get("file", v.get("path")))), i)
            else:
                idx = i
            out.append((idx, v))
        return out
    return []


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s)", path, exc)
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    except OSError:
        return ""


def _as_float(v: Any) -> float | None:
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


def read_imagine_outputs(out_dir: Path) -> ImagineView:
    """Build the view from an imagine output directory (tolerates missing files)."""
    files = sorted((out_dir / "sources").glob("*.wav")) if (out_dir / "sources").is_dir() else []
    # the pipeline names every estimate sources/source{k}.wav with its 0-based index k, and
    # activity.json and captions.json refer to sources by that same index
    sources = [SourceView(index=_index_of(f.name, i), path=f) for i, f in enumerate(files)]
    if len({s.index for s in sources}) != len(sources):
        for i, s in enumerate(sources):
            s.index = i
    by_index = {s.index: s for s in sources}

    activity = _read_json(out_dir / "activity.json")
    # "estimates": what separate_file writes (the fallback below)
    for idx, rec in _entries(activity, ("sources", "estimates", "activity", "items")):
        s = by_index.get(idx)
        if s is None:
            continue
        if isinstance(rec, dict):
            kept = rec.get("kept", rec.get("active", rec.get("keep")))
            if kept is not None:
                s.kept = bool(kept)
            scores = rec.get("scores") if isinstance(rec.get("scores"), dict) else rec
            s.score = _as_float(scores.get("rms_ratio", scores.get("score")))
            s.reason = str(rec.get("reason", ""))
        elif isinstance(rec, bool):
            s.kept = rec
        else:
            s.score = _as_float(rec)

    captions = _read_json(out_dir / "captions.json")
    # only kept sources are captioned: a list without index 0 is not 1-based numbering
    for idx, rec in _entries(captions, ("captions", "sources", "items")):
        s = by_index.get(idx)
        text = rec.get("caption", rec.get("text", "")) if isinstance(rec, dict) else rec
        if s is not None and text:
            s.caption = str(text)

    run = _read_json(out_dir / "run.json") or {}
    timings = run.get("timings_s") or run.get("timings") or {}
    skipped = run.get("skipped") if isinstance(run.get("skipped"), dict) else {}
    image = out_dir / "image.png"
    report = out_dir / "report.html"
    return ImagineView(
        ok=True,
        status="",
        sources=sorted(sources, key=lambda s: s.index),
        description=_read_text(out_dir / "description.txt"),
        reasoning=_read_text(out_dir / "reasoning.txt"),
        image=image if image.is_file() else None,
        timings={str(k): float(v) for k, v in timings.items() if _as_float(v) is not None},
        out_dir=out_dir,
        report=report if report.is_file() else None,
        image_note=str(skipped.get("image", "")),
        description_note=str(skipped.get("compose", skipped.get("describe", ""))),
    )


def bundle_outputs(work: Path, out_dir: Path, stem: str) -> Path | None:
    """Zip the report with the media it links to, for the page to offer as one download.

    ``report.html`` links its players and pictures relatively (``sources/*.wav``,
    ``spectrograms/*.png``, ``../input.wav``), so it is only readable beside them: the zip
    holds ``<stem>/input.wav`` and ``<stem>/out/…`` as they lie in ``work``, and opens
    anywhere. It is written to a temporary name and renamed, so a half-written zip is never
    offered. None when there is no report, or when the zip cannot be written.

    Args:
        work: the request's work dir (holds ``input.wav`` and ``out_dir``).
        out_dir: the imagine output directory inside ``work``.
        stem: the upload's file stem (only its safe characters are kept).
    """
    if not (out_dir / "report.html").is_file():
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "imagine"
    dst = work / f"{safe}-imagine.zip"
    tmp = work / f".{dst.name}.part"
    files = [work / "input.wav"] if (work / "input.wav").is_file() else []
    files += sorted(f for f in out_dir.rglob("*") if f.is_file() and not f.is_symlink())
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, f"{safe}/{f.relative_to(work).as_posix()}")
        os.replace(tmp, dst)
    except OSError as exc:
        log.warning("could not zip the imagine outputs: %s", exc)
        tmp.unlink(missing_ok=True)
        return None
    return dst


def _image_configured(config: dict[str, Any] | None) -> bool:
    """Whether the config asks for an image generator (default: none)."""
    if not config:
        return False
    node = config.get("image", config.get("render"))
    if isinstance(node, dict):
        node = node.get("backend", node.get("spec", node.get("name")))
    return bool(node) and str(node).lower() not in ("none", "null", "off", "false")


# --------------------------------------------------------------------------- the request
def run_imagine(upload_path: str | None, settings: UISettings) -> ImagineView:
    """Validate an upload, run the imagine pipeline on it and read back the results.

    Every expected failure (bad upload, a stage raising) becomes a view
    with ``ok=False`` and a one-line status; nothing propagates to the web server.
    """
    timer = Timer()
    try:
        with timer("ui: check upload"):
            upload = validate_upload(upload_path, settings)
    except UIError as exc:
        return ImagineView(ok=False, status=str(exc))
    try:
        with request_dir(settings, "imagine") as work:  # not pruned while the stages run
            return _imagine_upload(work, upload, settings, timer)
    except UIError as exc:  # the work folder could not be made
        return ImagineView(ok=False, status=str(exc))


def _imagine_upload(work: Path, upload: Any, settings: UISettings, timer: Timer) -> ImagineView:
    """The pipeline on a checked upload (:func:`run_imagine`), in the request's ``work``."""
    from auralens.audio import write

    # the pipeline reads a clean wav the server wrote, never the client's file name
    input_wav = write(work / "input.wav", upload.wave, upload.sample_rate)
    out_dir = work / "out"
    from auralens.scene.pipeline import imagine

    try:
        imagine(input_wav, out_dir, settings.imagine_config)
    except AuralensError as exc:
        view = read_imagine_outputs(out_dir)
        view.ok, view.status = False, f"imagine failed: {exc}"
        return view
    except Exception as exc:  # noqa: BLE001 - any stage crash becomes a message on the page
        log.exception("imagine crashed on %s", upload.name)
        view = read_imagine_outputs(out_dir)
        view.ok, view.status = False, f"imagine failed ({type(exc).__name__}): {exc}"
        return view
    view = read_imagine_outputs(out_dir)
    view.timings = {**timer.timings, **view.timings}
    notes = [f"{md_escape(upload.name)}: {upload.duration:.1f} s at {upload.sample_rate} Hz"]
    flags = list(upload.flags)
    no_sound = soundless(upload.wave, flags) is not None
    if no_sound and "silent" not in flags:
        flags.insert(0, CONSTANT_INPUT)  # worded as on the Sonify tab
    if flags:
        notes.append("warning: input is " + " and ".join(flags))
    if not view.description:
        if no_sound:
            why = "the input has no sound, so no source was kept and there was nothing to describe"
        elif view.sources and not view.kept_count:
            why = ("no separated source was kept (see the activity table), so there was "
                   "nothing to describe")
        else:
            why = view.description_note or "the description stage returned an empty text"
        notes.append(f"no description: {md_escape(why)}")
    view.status = "; ".join(notes)
    view.bundle = bundle_outputs(work, out_dir, Path(upload.name).stem)
    if view.image is None:
        if not _image_configured(settings.imagine_config):
            view.image_note = ("No image model is configured (image backend `none`); set an "
                               "image generator in the imagine config to render the "
                               "description.")
        else:
            view.image_note = "No image: " + md_escape(view.image_note or "the generator "
                                                       "produced none")
    return view
