"""Settings, upload validation, run discovery and server-side work directories.

Nothing here imports gradio, so every rule the web page enforces can be unit-tested
directly. The security model is simple:

* audio files are only read from the upload folders the server owns (gradio's temp
  upload area), after a size, duration and decodability check, and a header check that
  bounds the decoded size (channels, sample rate, frames × channels);
* a trained run is chosen by a *key* that is looked up in a list the server built by
  scanning ``--runs``; no path sent by a browser is ever opened;
* everything a request writes goes into a fresh directory under the server's work root.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auralens.errors import AuralensError

log = logging.getLogger(__name__)

#: Default upload limits (configurable through :class:`UISettings`).
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_DURATION_S = 600.0
#: Shortest accepted upload, in seconds: below this the separators, captioners and the
#: sonify extractors see a handful of frames (a 5 ms clip is one fbank frame), and the
#: Imagine tab would describe a scene from nothing. Both tabs refuse such a file.
MIN_UPLOAD_DURATION_S = 0.1
#: Most channels an upload may have (every tab works on mono or stereo sound).
MAX_UPLOAD_CHANNELS = 2
#: Highest sample rate an upload may have, in Hz.
MAX_UPLOAD_SAMPLE_RATE = 192_000
#: Decoded samples (frames × channels) allowed per second of ``max_duration_s``: as much as
#: 48 kHz stereo, so the memory a decode costs is bounded however well the file compresses.
UPLOAD_SAMPLES_PER_SECOND = 48_000 * 2
#: How many request work dirs to keep before the oldest are removed.
DEFAULT_KEEP_WORK_DIRS = 32
#: Empty file that marks a directory under the work root as one :func:`new_work_dir` made;
#: only those are ever pruned (``--work-root`` may be a folder holding other things).
WORK_DIR_MARKER = ".auralens-ui-request"
#: How deep under ``--runs`` to look for run directories.
MAX_RUN_DEPTH = 4
#: Post-processing names under ``renders/`` that are references, not sonifications.
REFERENCE_RENDERS = ("original", "ceiling")
RUN_MARKERS = ("best.safetensors", "history.jsonl", "renders")


class UIError(AuralensError):
    """A request the page answers with a message instead of results."""


@dataclass
class UISettings:
    """Server-side configuration of one UI process.

    Attributes:
        runs_dir: directory scanned for trained sonify runs (None: the Sonify and Rate tabs
            say so).
        ratings_path: CSV file ratings are appended to.
        work_root: parent of the per-request work directories.
        max_upload_mb: largest accepted upload, in megabytes (10**6 bytes).
        max_duration_s: longest accepted clip, in seconds.
        imagine_config: pipeline config passed to ``imagine`` (None: offline defaults).
        upload_roots: the only directories uploads may be read from; filled in by the app
            with gradio's upload folder.
        keep_work_dirs: request directories kept before old ones are pruned.
    """

    runs_dir: Path | None = None
    ratings_path: Path | None = None
    work_root: Path | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    imagine_config: dict[str, Any] | None = None
    upload_roots: list[Path] = field(default_factory=list)
    keep_work_dirs: int = DEFAULT_KEEP_WORK_DIRS

    def __post_init__(self) -> None:
        # checked before the work directory is made: a typo leaves nothing behind
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0
                and math.isfinite(self.max_duration_s) and self.max_duration_s > 0):
            raise UIError("upload limits must be positive numbers (--max-upload-mb, --max-duration-s)")
        if self.max_duration_s < MIN_UPLOAD_DURATION_S:
            # every upload would be refused, either as too short or as too long
            raise UIError(f"--max-duration-s {self.max_duration_s:g} is below the shortest clip "
                          f"accepted ({MIN_UPLOAD_DURATION_S:g} s)")
        if self.runs_dir is not None:
            self.runs_dir = Path(self.runs_dir).expanduser().resolve()
            if self.runs_dir.exists() and not self.runs_dir.is_dir():
                raise UIError(f"{self.runs_dir}: runs directory is not a directory (--runs)")
        if self.ratings_path is not None:
            rp = Path(self.ratings_path).expanduser()
            if rp.is_dir():
                raise UIError(f"{rp}: is a directory; --ratings names the CSV file ratings go to")
            if any(p.exists() and not p.is_dir() for p in rp.parents):
                raise UIError(f"{rp}: a parent of the ratings file is not a directory (--ratings)")
        if self.work_root is None:
            self.work_root = Path(tempfile.mkdtemp(prefix="auralens-ui-"))
        self.work_root = Path(self.work_root).expanduser().resolve()
        self.work_root.mkdir(parents=True, exist_ok=True)
        if self.ratings_path is None:
            base = self.runs_dir if self.runs_dir is not None else self.work_root
            self.ratings_path = base / "ratings.csv"
        self.ratings_path = Path(self.ratings_path).expanduser().resolve()
        self.upload_roots = [Path(p).resolve() for p in self.upload_roots]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


# --------------------------------------------------------------------------- paths
def is_within(path: Path, root: Path) -> bool:
    """True when ``path`` (resolved, symlinks followed) lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def new_work_dir(settings: UISettings, prefix: str, *, busy: bool = False) -> Path:
    """A fresh directory under the work root for one request (old ones pruned).

    With ``busy`` the directory is marked in use as it is made (undo with
    :func:`release`), so no other request's pruning can remove it before its request starts;
    :func:`request_dir` does both.

    Raises:
        UIError: the work root cannot be written (one line, no server path).
    """
    root = settings.work_root
    assert root is not None
    safe = "".join(c for c in prefix if c.isalnum() or c in "-_") or "job"
    try:
        with _IN_USE_LOCK:
            # a temp cleaner may have removed the work root since the server started
            root.mkdir(parents=True, exist_ok=True)
            _prune_locked(root, settings.keep_work_dirs)
            work = Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=root))
            (work / WORK_DIR_MARKER).touch()
            if busy:
                _IN_USE.add(work.resolve())
    except OSError as exc:
        log.warning("cannot make a request folder under %s: %s", root, exc)
        raise UIError("the server could not make a work folder for this request "
                      f"({exc.strerror or type(exc).__name__}); try again later") from None
    return work


#: Request directories a running request still writes into (see :func:`request_dir`).
_IN_USE: set[Path] = set()
#: Guards :data:`_IN_USE`, and makes pruning and making a request directory one step.
_IN_USE_LOCK = threading.RLock()


def release(work: Path) -> None:
    """Let ``work`` be pruned again (its request is over)."""
    with _IN_USE_LOCK:
        _IN_USE.discard(work.resolve())


@contextlib.contextmanager
def request_dir(settings: UISettings, prefix: str) -> Iterator[Path]:
    """A fresh request directory (:func:`new_work_dir`), kept from pruning until the block
    ends: made and marked in one step, so a concurrent request never removes it. A slow
    request (an image model on a CPU) would otherwise be the oldest while quicker requests on
    other tabs make new directories."""
    work = new_work_dir(settings, prefix, busy=True)
    try:
        yield work
    finally:
        release(work)


def prune_work_dirs(root: Path, keep: int) -> int:
    """Remove the oldest request directories under ``root`` beyond ``keep``; returns count.

    Only directories :func:`new_work_dir` made (they hold :data:`WORK_DIR_MARKER`) count and
    are removed; anything else in ``root`` is left alone, and so are directories of running
    requests (:func:`request_dir`). A directory another process removes meanwhile is skipped.
    """
    with _IN_USE_LOCK:
        return _prune_locked(root, keep)


def _prune_locked(root: Path, keep: int) -> int:
    busy = set(_IN_USE)
    dated: list[tuple[float, Path]] = []
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return 0
    for p in entries:
        try:
            if (p.is_dir() and not p.is_symlink() and (p / WORK_DIR_MARKER).is_file()
                    and p.resolve() not in busy):
                dated.append((p.stat().st_mtime, p))
        except OSError:  # removed meanwhile (another server on the same work root)
            continue
    if len(dated) < keep:
        return 0
    dated.sort(key=lambda item: item[0])
    removed = 0
    for _, old in dated[: len(dated) - keep + 1]:
        shutil.rmtree(old, ignore_errors=True)
        removed += 1
    return removed


def publish(src: Path, work_dir: Path, name: str | None = None) -> Path:
    """Copy a server-side file into ``work_dir`` so the page can serve it.

    Files under ``--runs`` are copied rather than served in place: the runs directory
    (checkpoints included) is never exposed to the browser.
    """
    dst = work_dir / (name or src.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


# --------------------------------------------------------------------------- uploads
@dataclass
class Upload:
    """A validated upload.

    Attributes:
        path: the file inside an upload root.
        name: file name for messages (never the server path).
        wave: float32 mono ``[T]`` at ``sample_rate``.
        sample_rate: Hz.
        duration: seconds.
        size_bytes: file size.
        flags: ``"silent"`` / ``"clipped"`` from the loader.
    """

    path: Path
    name: str
    wave: np.ndarray
    sample_rate: int
    duration: float
    size_bytes: int
    flags: list[str] = field(default_factory=list)


def _human_mb(n_bytes: int) -> str:
    return f"{n_bytes / 1_000_000:.1f} MB"


#: How the tabs word an upload that is a DC offset with no sound.
CONSTANT_INPUT = "constant (a DC offset, no sound)"


def soundless(wave: np.ndarray, flags: Sequence[str]) -> str | None:
    """Why an upload has no sound, in a word: ``"silent"`` when loading flagged it so, else
    ``"silent"`` (all zeros) or ``"constant"`` from
    :func:`~auralens.scene.separate.activity.nothing_to_hear`; None when it has sound."""
    if "silent" in flags:
        return "silent"
    from auralens.scene.separate.activity import nothing_to_hear

    why = nothing_to_hear(wave)
    return None if why is None else why.split(" (")[0]


def human_duration(seconds: float) -> str:
    """A duration limit for messages: ``"2 s"``, ``"600 s (10 min)"``, ``"90 s (1.5 min)"``."""
    if seconds < 60:
        return f"{seconds:g} s"
    return f"{seconds:g} s ({seconds / 60:.3g} min)"


#: File name endings libsndfile reads (the formats every server takes).
SNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3",
                              ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"})


def ffmpeg_available() -> bool:
    """Whether uploads in the formats only ffmpeg decodes (m4a, aac, a video's soundtrack)
    are accepted: ``ffmpeg`` decodes them and ``ffprobe`` reads their header first."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def upload_formats() -> str:
    """The upload formats this server takes, for messages and the page."""
    base = "WAV/FLAC/OGG/MP3"
    return f"{base}/M4A/AAC or a video's soundtrack (MP4, WebM …)" if ffmpeg_available() else base


def _unsupported(name: str) -> UIError:
    return UIError(f"{name}: format not supported here; use {upload_formats()}")


def max_upload_samples(settings: UISettings) -> int:
    """Most decoded samples (frames × channels) one upload may hold."""
    return int(settings.max_duration_s * UPLOAD_SAMPLES_PER_SECOND)


def _check_decoded_size(p: Path, name: str, settings: UISettings) -> None:
    """Refuse, from the header alone, a file whose decoded audio would be too large.

    A small, well-compressed file (FLAC of silence, many channels, a high rate) can decode
    to gigabytes of float32; the size and duration limits do not bound that, so the
    channel count, the rate and ``frames × channels`` are checked before any decoding. A
    file whose header cannot be read is refused here too: nothing else bounds its decode.
    """
    import soundfile as sf

    from auralens.audio import FFMPEG_SUFFIXES

    if p.suffix.lower() in FFMPEG_SUFFIXES:
        if not ffmpeg_available():
            raise _unsupported(name)
        channels, rate, seconds = _probe(p, name, settings)
    else:
        try:
            meta = sf.info(str(p))
        except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError …
            if p.suffix.lower() not in SNDFILE_SUFFIXES:
                raise _unsupported(name) from exc
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            msg = msg.replace(str(p), name)
            raise UIError(f"{name}: unreadable or corrupt audio ({msg})") from exc
        channels, rate = int(meta.channels), int(meta.samplerate)
        seconds = meta.frames / rate if rate > 0 else float("inf")
    if channels > MAX_UPLOAD_CHANNELS:
        raise UIError(f"{name}: {channels} channels; uploads may have at most "
                      f"{MAX_UPLOAD_CHANNELS} (mono or stereo)")
    if rate > MAX_UPLOAD_SAMPLE_RATE:
        raise UIError(f"{name}: sample rate {rate} Hz is above the upload limit of "
                      f"{MAX_UPLOAD_SAMPLE_RATE // 1000} kHz")
    if rate > 0 and seconds > settings.max_duration_s * 1.01:
        raise UIError(f"{name}: duration {seconds:.1f} s is longer than the limit of "
                      f"{human_duration(settings.max_duration_s)}")
    samples = seconds * rate * channels
    limit = max_upload_samples(settings)
    if samples > limit:
        raise UIError(f"{name}: too much audio to decode ({seconds:.1f} s × {channels} channel(s) at "
                      f"{rate / 1000:g} kHz); the limit is {settings.max_duration_s:g} s of "
                      f"48 kHz stereo or the same number of samples")


#: Longest an ``ffprobe`` header read of one upload may take, in seconds.
PROBE_TIMEOUT_S = 30


def _probe(p: Path, name: str, settings: UISettings) -> tuple[int, int, float]:
    """Channels, rate and seconds of the first audio stream of a file only ffmpeg decodes.

    A container that does not state its duration counts as long as ffmpeg will decode of it
    (:func:`auralens.audio.load_with_info` stops a little past the duration limit).
    """
    import json
    import subprocess

    ffprobe = shutil.which("ffprobe")
    assert ffprobe is not None
    try:
        proc = subprocess.run([ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries",
                               "stream=channels,sample_rate:format=duration", "-of", "json",
                               str(p)], capture_output=True, check=False, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UIError(f"{name}: reading the file's header took over {PROBE_TIMEOUT_S} s") from None
    except OSError as exc:
        raise _unsupported(name) from exc
    try:
        data = json.loads(proc.stdout.decode(errors="replace") or "{}")
    except ValueError:
        data = {}
    streams = (data.get("streams") or []) if isinstance(data, dict) else []
    if proc.returncode != 0 or not isinstance(data, dict):
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        msg = (lines[-1] if lines else "no header").replace(str(p), name)
        raise UIError(f"{name}: unreadable or corrupt audio (ffprobe: {msg})")
    if not streams or not isinstance(streams[0], dict):
        raise UIError(f"{name}: no audio track")
    try:
        channels = int(streams[0].get("channels") or 0)
        rate = int(streams[0].get("sample_rate") or 0)
    except (TypeError, ValueError):
        channels = rate = 0
    if channels <= 0 or rate <= 0:
        raise UIError(f"{name}: unreadable or corrupt audio (no channel count or sample rate)")
    try:
        seconds = float((data.get("format") or {}).get("duration"))
    except (TypeError, ValueError):
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds < 0:
        seconds = settings.max_duration_s * 1.01 + 1  # what decoding reads at most
    return channels, rate, seconds


def validate_upload(path: str | os.PathLike[str] | None, settings: UISettings) -> Upload:
    """Check one uploaded audio file and load it.

    Args:
        path: what gradio handed the handler (a file in its upload folder), or None.
        settings: limits and the allowed upload roots.

    Returns:
        The loaded :class:`Upload`.

    Raises:
        UIError: nothing given, a path outside the upload roots, a missing/empty file,
            a file over the size limit, more than :data:`MAX_UPLOAD_CHANNELS` channels, a
            rate above :data:`MAX_UPLOAD_SAMPLE_RATE`, more decoded samples than
            :func:`max_upload_samples`, too long, shorter than :data:`MIN_UPLOAD_DURATION_S`,
            a format this server does not read (:func:`upload_formats`), or not decodable
            as audio. Messages name the file by its base name only.
    """
    from auralens.audio import AudioError, load_with_info

    if path is None or (isinstance(path, str) and path.strip() == ""):
        raise UIError("no audio given: upload or record a clip first")
    if not isinstance(path, (str, os.PathLike)):
        raise UIError("the upload did not arrive as a file; upload or record the clip again")
    p = Path(path)
    name = p.name
    if not settings.upload_roots:
        raise UIError("uploads are not enabled on this server")
    if not any(is_within(p, root) for root in settings.upload_roots):
        log.warning("rejected a file outside the upload folders: %s", p)
        raise UIError(f"{name}: not an uploaded file; upload it through the page")
    p = p.resolve()
    if p.is_dir():
        raise UIError(f"{name}: is a folder, not an audio file; upload one audio file")
    if not p.is_file():
        raise UIError(f"{name}: the upload is missing (it may have expired); upload it again")
    size = p.stat().st_size
    if size == 0:
        raise UIError(f"{name}: empty file (0 bytes)")
    if size > settings.max_upload_bytes:
        raise UIError(f"{name}: file is {_human_mb(size)}; the upload limit is "
                      f"{settings.max_upload_mb:g} MB")
    _check_decoded_size(p, name, settings)
    try:
        wave, info = load_with_info(p, None, max_duration=settings.max_duration_s)
    except AudioError as exc:
        # libsndfile quotes the full server path; the page only ever names the file
        reason = exc.reason.replace(str(p), name).replace(str(path), name)
        if "exceeds the limit" in reason:
            reason = reason.replace("exceeds the limit of", "is longer than the limit of")
            reason = reason.replace(f"{settings.max_duration_s:g} s",
                                    human_duration(settings.max_duration_s), 1)
        raise UIError(f"{name}: {reason}") from exc
    if info.duration < MIN_UPLOAD_DURATION_S:
        raise UIError(f"{name}: too short to analyse ({info.duration * 1000:.1f} ms, "
                      f"{wave.shape[-1]} samples at {info.sample_rate} Hz); uploads must be at "
                      f"least {MIN_UPLOAD_DURATION_S:g} s long")
    return Upload(p, name, wave, info.sample_rate, info.duration, size, list(info.flags))


# --------------------------------------------------------------------------- runs
@dataclass
class RunInfo:
    """A trained sonify run found under ``--runs``.

    Attributes:
        key: stable id used by the page (the path relative to the runs dir, POSIX form).
        path: the run directory (server side only).
        encoder: encoder spec from run.json, or "?".
        layer: layer name/index, or "?".
        codec: codec spec, or "?".
        gate: gate architecture, or "?".
        posts: post-processing variants with renders (sonifications).
        clips: clip ids with an original render.
        has_ceiling: whether codec-ceiling renders exist.
        config: the run.json ``config`` mapping (empty when unreadable).
    """

    key: str
    path: Path
    encoder: str = "?"
    layer: str = "?"
    codec: str = "?"
    gate: str = "?"
    posts: list[str] = field(default_factory=list)
    clips: list[str] = field(default_factory=list)
    has_ceiling: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.key} — {self.encoder} · layer {self.layer} · {self.codec} · gate {self.gate}"


def _find(cfg: dict[str, Any], *names: str) -> str | None:
    """First value found under any of ``names`` at the top level or one level down."""
    for name in names:
        if name in cfg and not isinstance(cfg[name], dict):
            return str(cfg[name])
    for name in names:
        node = cfg.get(name)
        if isinstance(node, dict):
            for sub in ("spec", "name", "backend", "id", "model"):
                if sub in node and not isinstance(node[sub], dict):
                    return str(node[sub])
    for value in cfg.values():
        if isinstance(value, dict):
            for name in names:
                if name in value and not isinstance(value[name], dict):
                    return str(value[name])
    return None


def read_run_info(run_dir: Path, key: str) -> RunInfo:
    """Summarise one run directory (tolerates a missing or partial run.json)."""
    import json

    info = RunInfo(key=key, path=run_dir)
    cfg: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        if isinstance(data, dict):
            cfg = data.get("config") if isinstance(data.get("config"), dict) else data
    info.config = cfg
    info.encoder = _find(cfg, "encoder", "extractor") or "?"
    info.layer = _find(cfg, "layer") or "?"
    info.codec = _find(cfg, "codec") or "?"
    info.gate = _find(cfg, "gate", "model_name", "architecture") or "?"
    renders = run_dir / "renders"
    if renders.is_dir():
        subdirs = sorted(d.name for d in renders.iterdir() if d.is_dir())
        info.posts = [d for d in subdirs if d not in REFERENCE_RENDERS]
        info.has_ceiling = "ceiling" in subdirs
        original = renders / "original"
        if original.is_dir():
            info.clips = sorted(f.stem for f in original.glob("*.wav") if f.is_file())
    return info


def stale_renders(run_dir: Path) -> str | None:
    """Why ``run_dir/renders`` does not show the run's current checkpoint, or None.

    Training a run again (``overwrite``, resume) replaces its checkpoint but keeps
    ``renders/``; the test is the one ``sonify render`` applies before it renders again
    (:func:`auralens.sonify.render.renders_stale`), against the checkpoint it would load now
    (``best``, else ``last``). None also when nothing can be compared (no run.json, no
    checkpoint).
    """
    import json

    from auralens.sonify.checkpoint import CheckpointError, read_header
    from auralens.sonify.render import renders_stale, run_checkpoint

    manifest = run_dir / "renders" / "run.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cfg = data.get("config") if isinstance(data, dict) else None
    if not isinstance(cfg, dict):
        return None
    checkpoint = run_checkpoint(run_dir)
    try:
        if not checkpoint.is_file() or renders_stale(manifest.parent, cfg, checkpoint) is None:
            return None
        read_header(checkpoint)  # a damaged file also has another SHA-256: not a new training
    except OSError:
        return None
    except CheckpointError as exc:
        return (f"the run's checkpoint cannot be read ({exc}), so these renders cannot be "
                "checked against it; restore the file or train the run again")
    split = cfg.get("split") if isinstance(cfg.get("split"), str) else "test"
    return (f"these renders were made with an earlier checkpoint than the run's "
            f"{checkpoint.name} (the run was trained again); render them again with "
            f"`auralens sonify render --run RUN --split {split}`")


def discover_runs(runs_dir: Path | None) -> dict[str, RunInfo]:
    """Find trained sonify runs under ``runs_dir``.

    A run is a directory with a ``run.json`` and at least one of ``best.safetensors``,
    ``history.jsonl`` or ``renders/``. Symlinked directories are not followed, so the
    list only contains directories really inside ``runs_dir``.

    Returns:
        ``{key: RunInfo}`` sorted by key; empty when ``runs_dir`` is None or missing.
    """
    if runs_dir is None or not Path(runs_dir).is_dir():
        return {}
    root = Path(runs_dir).resolve()
    found: dict[str, RunInfo] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        # never descend into a run's own outputs or hidden folders
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "renders")
        if depth >= MAX_RUN_DEPTH:
            dirnames[:] = []
        if "run.json" in filenames and any((here / m).exists() for m in RUN_MARKERS):
            key = here.relative_to(root).as_posix() or "."
            found[key] = read_run_info(here, key)
            dirnames[:] = []
    return dict(sorted(found.items()))


def resolve_run(key: str | None, runs: dict[str, RunInfo]) -> RunInfo:
    """Look a page-supplied key up in the server's run list (never used as a path)."""
    if not key:
        raise UIError("pick a trained run first")
    # dropdown values may arrive as the label; accept either, nothing else
    if key in runs:
        return runs[key]
    for info in runs.values():
        if info.label == key:
            return info
    raise UIError("unknown run; press 'refresh runs' and pick one from the list")


def resolve_choice(value: str | None, allowed: list[str], what: str) -> str:
    """Return ``value`` only when it is one of the server-side ``allowed`` names."""
    if not value:
        raise UIError(f"pick a {what} first")
    if value not in allowed:
        raise UIError(f"unknown {what} {value!r}")
    return value


# --------------------------------------------------------------------------- formatting
def md_escape(text: object) -> str:
    """Escape characters that would turn plain text into markdown/HTML.

    Line breaks become spaces: the text stays on its line (a table row, a status line), so
    a name or caption can never start a heading, a list or a new table row.
    """
    s = " ".join(str(text).splitlines())
    for ch in ("\\", "`", "*", "_", "[", "]", "<", ">", "|", "#"):
        s = s.replace(ch, "\\" + ch)
    return s


#: A markdown code span in a server-written message: backticks around text without one.
_CODE_SPAN = re.compile(r"`([^`\r\n]+)`")


def md_text(text: object) -> str:
    """Like :func:`md_escape`, but code spans (```auralens sonify render …```) stay code.

    For plain-text messages that quote a command: everything outside a pair of backticks
    is escaped; inside one, markdown renders the text literally anyway.
    """
    s = " ".join(str(text).splitlines())
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(s):
        out += [md_escape(s[pos:m.start()]), m.group(0)]
        pos = m.end()
    out.append(md_escape(s[pos:]))
    return "".join(out)


def md_table(headers: list[str], rows: list[list[object]]) -> str:
    """A small markdown table (cells escaped, each on one line)."""
    if not rows:
        return ""
    out = ["| " + " | ".join(md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def timings_md(timings: dict[str, float]) -> str:
    """Per-stage timings as a table with a total row."""
    if not timings:
        return "_no timings recorded_"
    rows: list[list[object]] = [[k, f"{float(v):.2f} s"] for k, v in timings.items()]
    rows.append(["total", f"{sum(float(v) for v in timings.values()):.2f} s"])
    return md_table(["stage", "time"], rows)


def error_md(message: str) -> str:
    """A failure's plain-text message as a markdown line (escaped here, and only here)."""
    return f"**Error:** {md_text(message)}"
