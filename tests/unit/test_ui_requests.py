"""The web UI's requests: downloads, work folders under concurrency, ratings, messages."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.ui_app import core, imagine, rate, sonify
from auralens.ui_app.core import UIError, UISettings


@pytest.fixture
def settings(tmp_path: Path) -> UISettings:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    return UISettings(runs_dir=tmp_path / "runs", work_root=tmp_path / "work",
                      ratings_path=tmp_path / "ratings.csv", upload_roots=[uploads],
                      max_upload_mb=1.0, max_duration_s=2.0)


def _wav(path: Path, seconds: float = 1.0, sr: int = 8000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


def _make_run(root: Path, name: str = "toy_lin", clips: tuple[str, ...] = ("c1",),
              posts: tuple[str, ...] = ("raw",)) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"encoder": "ast:tiny", "layer": 6,
                                                         "codec": "mel", "gate": "linear"}}))
    (run / "best.safetensors").write_bytes(b"x")
    for sub in ("original", "ceiling", *posts):
        (run / "renders" / sub).mkdir(parents=True)
        for c in clips:
            _wav(run / "renders" / sub / f"{c}.wav", 0.5)
    return run


def _fake_pipeline(monkeypatch: pytest.MonkeyPatch, *, kept: tuple[bool, ...] = (True, False, True),
                   description: str = "A dog barks.") -> None:
    """Stand in for ``scene.pipeline.imagine``: the files it leaves, report links included."""

    def fake(input, out_dir, config=None, **kw):  # noqa: ANN001, ANN202, A002
        out = Path(out_dir)
        (out / "sources").mkdir(parents=True)
        (out / "spectrograms").mkdir()
        rows = []
        for k in range(len(kept)):
            _wav(out / "sources" / f"source{k}.wav", 0.2)
            (out / "spectrograms" / f"source{k}.png").write_bytes(b"\x89PNG")
            rows.append(f"<audio src='sources/source{k}.wav'></audio>"
                        f"<img src='spectrograms/source{k}.png'>")
        (out / "activity.json").write_text(json.dumps({"sources": [
            {"index": k, "kept": keep, "reason": "", "scores": {}} for k, keep in enumerate(kept)]}))
        (out / "captions.json").write_text(json.dumps({"sources": [
            {"index": k, "caption": f"sound {k}"} for k, keep in enumerate(kept) if keep]}))
        skipped = {}
        if description:
            (out / "description.txt").write_text(description + "\n")
        else:
            skipped["compose"] = "no source was kept, nothing to describe"
        (out / "run.json").write_text(json.dumps({"timings_s": {"separate": 0.1},
                                                  "skipped": skipped}))
        (out / "report.html").write_text(
            f"<audio src='../input.wav'></audio>{''.join(rows)}", encoding="utf-8")

    monkeypatch.setattr("auralens.scene.pipeline.imagine", fake)


# --------------------------------------------------------------------------- 1. the report
def test_imagine_offers_the_report_as_a_zip_with_everything_it_links(
        settings: UISettings, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pipeline(monkeypatch)
    up = _wav(settings.upload_roots[0] / "street noise.wav")
    view = imagine.run_imagine(str(up), settings)
    assert view.ok, view.status
    assert view.bundle is not None and view.bundle.name == "street_noise-imagine.zip"
    assert core.is_within(view.bundle, settings.work_root)
    assert not list(view.bundle.parent.glob("*.part"))  # written under another name, renamed
    with zipfile.ZipFile(view.bundle) as zf:
        names = set(zf.namelist())
        report = next(n for n in names if n.endswith("out/report.html"))
        links = re.findall(r"src='([^']+)'", zf.read(report).decode())
    assert links and "../input.wav" in links
    base = Path(report).parent
    for link in links:  # every relative link of the report resolves inside the zip
        target = (base / link).as_posix()
        parts: list[str] = []
        for part in target.split("/"):
            if part == "..":
                parts.pop()
            else:
                parts.append(part)
        assert "/".join(parts) in names, (link, sorted(names))


def test_the_imagine_tab_offers_the_zip_not_the_bare_report(
        settings: UISettings, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio")
    from auralens.ui_app.app import build_app

    _fake_pipeline(monkeypatch)
    demo = build_app(settings)
    fn = next(f for f in demo.fns.values()
              if [getattr(c, "elem_id", None) for c in f.inputs] == ["imagine-input"])
    up = _wav(settings.upload_roots[0] / "mix.wav")
    out = dict(zip([c.elem_id for c in fn.outputs], fn.fn(str(up)), strict=True))
    report = out["imagine-report"]
    assert report["visible"] and report["value"].endswith("mix-imagine.zip")
    # sources are numbered as report.html and sources/source{k}.wav number them
    assert out["imagine-source-1"]["label"].startswith("source 0 (kept")


# --------------------------------------------------------------------------- 2. work dirs
def test_pruning_skips_a_folder_another_request_removed(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    s = UISettings(work_root=tmp_path / "w", keep_work_dirs=2)
    made = [core.new_work_dir(s, "x") for _ in range(3)]
    victim = made[1]
    real_is_file = Path.is_file

    def is_file(self: Path) -> bool:  # the folder vanishes right after its marker is seen
        found = real_is_file(self)
        if self == victim / core.WORK_DIR_MARKER and victim.exists():
            shutil.rmtree(victim)
        return found

    monkeypatch.setattr(Path, "is_file", is_file)
    core.prune_work_dirs(s.work_root, 2)  # no FileNotFoundError
    assert not victim.exists() and made[2].exists()


def test_a_work_root_that_cannot_be_written_is_a_page_message(settings: UISettings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pipeline(monkeypatch)
    _make_run(settings.runs_dir)
    up = _wav(settings.upload_roots[0] / "mix.wav")
    shutil.rmtree(settings.work_root)
    settings.work_root.write_text("not a folder")  # mkdir and mkdtemp under it fail
    views = [imagine.run_imagine(str(up), settings),
             sonify.sonify_clip("toy_lin", "c1", "raw", None, settings)]
    for view in views:
        assert not view.ok
        assert "could not make a work folder" in view.status
        assert str(settings.work_root) not in view.status and "\n" not in view.status


# --------------------------------------------------------------------------- 3. in use
def test_a_sonify_request_folder_is_not_pruned_while_in_use(settings: UISettings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _make_run(settings.runs_dir)
    root = settings.work_root
    real_plots = sonify.make_plots

    def plots_after_a_prune(waves, sr, out_dir):  # noqa: ANN001, ANN202
        core.prune_work_dirs(root, 1)  # a quicker request on another tab
        return real_plots(waves, sr, out_dir)

    monkeypatch.setattr(sonify, "make_plots", plots_after_a_prune)
    view = sonify.sonify_clip("toy_lin", "c1", "raw", None, settings)
    assert view.ok, view.status
    assert view.original is not None and view.original.is_file()
    assert view.sonified is not None and view.sonified.is_file()


def test_an_upload_being_sonified_keeps_its_folder(settings: UISettings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _make_run(settings.runs_dir)
    root = settings.work_root

    def render(run_dir, wave, sr, post=None, *, out_sr=None):  # noqa: ANN001, ANN202
        core.prune_work_dirs(root, 1)
        assert [p.name for p in root.iterdir() if p.name.startswith("sonify-")]
        return np.asarray(wave, np.float32) * 0.5

    monkeypatch.setattr("auralens.sonify.render.render", render)
    up = _wav(settings.upload_roots[0] / "mine.wav")
    view = sonify.sonify_clip("toy_lin", sonify.UPLOAD_CHOICE, "raw", str(up), settings)
    assert view.ok, view.status
    assert core.is_within(view.sonified, root) and view.sonified.is_file()
    assert not core._IN_USE  # released when the request ends


# --------------------------------------------------------------------------- 4. rate.save
@pytest.mark.parametrize("damage", ["missing", "broken"])
def test_a_rating_of_a_missing_or_broken_render_is_refused(settings: UISettings,
                                                           damage: str) -> None:
    run = _make_run(settings.runs_dir)
    runs = core.discover_runs(settings.runs_dir)
    render = run / "renders" / "raw" / "c1.wav"
    if damage == "missing":
        render.unlink()
        match = r"^not saved: run toy_lin has no raw render of c1$"
    else:
        render.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
        match = r"^not saved: toy_lin/renders/raw/c1\.wav: "
    with pytest.raises(UIError, match=match) as err:
        rate.save("toy_lin", "c1", "raw", 3, 3, "ann", "", settings, runs)
    assert "\n" not in str(err.value) and str(settings.runs_dir) not in str(err.value)
    assert not settings.ratings_path.exists()


# --------------------------------------------------------------------------- 5. formulas
@pytest.mark.parametrize(("given", "stored"), [
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("+1", "'+1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1+1", "'=1+1"), ("a\x00b\x1b[1m", "a b [1m"), ("line\none", "line one"),
    ("a - b", "a - b"), ("'=x", "'=x"),
])
def test_every_stored_rating_is_safe_in_a_spreadsheet(tmp_path: Path, given: str,
                                                      stored: str) -> None:
    """``sonify rate``'s server saves through save_rating too, not through the UI's form."""
    from auralens.evaluate import ratings

    path = tmp_path / "r.csv"
    ratings.save_rating(path, rater=given, run="r", version="r/raw", clip="c", visual=3,
                        audio=3, comment=given)
    with open(path, newline="", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    assert row["rater"] == stored and row["comment"] == stored


def test_the_rate_tab_stores_the_same_cells_as_before(settings: UISettings) -> None:
    _make_run(settings.runs_dir)
    runs = core.discover_runs(settings.runs_dir)
    rate.save("toy_lin", "c1", "raw", 3, 3, "  =me  ", " a\x00b \n\n -c ", settings, runs)
    with open(settings.ratings_path, newline="", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    assert row["rater"] == "'=me" and row["comment"] == "a b -c"


# --------------------------------------------------------------------------- 6. tables
def test_line_breaks_in_a_table_cell_stay_in_the_cell() -> None:
    table = core.md_table(["source", "caption"], [[0, "a dog\n# barks\n- loudly|twice\r\nend"]])
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[2] == "| 0 | a dog \\# barks - loudly\\|twice end |"


# --------------------------------------------------------------------------- 7. formats
def _ffmpeg_file(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)],
                   check=True, capture_output=True)
    return dst


@pytest.mark.parametrize("suffix", [".m4a", ".mp4", ".webm"])
def test_formats_only_ffmpeg_reads_are_unsupported_without_it(
        settings: UISettings, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    path = settings.upload_roots[0] / f"clip{suffix}"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 64)
    monkeypatch.setattr(core.shutil, "which", lambda name: None)
    with pytest.raises(UIError) as err:
        core.validate_upload(str(path), settings)
    assert str(err.value) == f"clip{suffix}: format not supported here; use WAV/FLAC/OGG/MP3"


def test_a_file_of_an_unknown_format_is_not_called_corrupt(settings: UISettings) -> None:
    path = settings.upload_roots[0] / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UIError, match=r"^notes\.txt: format not supported here; use WAV/FLAC/OGG/MP3"):
        core.validate_upload(str(path), settings)


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                    reason="needs ffmpeg and ffprobe")
def test_m4a_and_video_uploads_are_read_through_ffmpeg(settings: UISettings,
                                                       tmp_path: Path) -> None:
    src = _wav(tmp_path / "src.wav", 1.0, 16000)
    m4a = _ffmpeg_file(src, settings.upload_roots[0] / "voice.m4a", "-c:a", "aac")
    up = core.validate_upload(str(m4a), settings)
    assert up.name == "voice.m4a" and up.duration == pytest.approx(1.0, abs=0.1)
    broken = settings.upload_roots[0] / "broken.m4a"
    broken.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x07" * 200)
    with pytest.raises(UIError, match=r"^broken\.m4a: unreadable or corrupt audio") as err:
        core.validate_upload(str(broken), settings)
    assert str(settings.upload_roots[0]) not in str(err.value)


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                    reason="needs ffmpeg and ffprobe")
def test_ffmpeg_uploads_are_bounded_from_their_header(settings: UISettings, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "wide.wav"
    sf.write(src, np.zeros((8000, 4), np.float32), 8000)
    wide = _ffmpeg_file(src, settings.upload_roots[0] / "wide.m4a", "-c:a", "aac")
    import auralens.audio

    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("the upload was decoded")

    monkeypatch.setattr(auralens.audio, "load_with_info", boom)
    with pytest.raises(UIError, match=r"^wide\.m4a: 4 channels; uploads may have at most 2"):
        core.validate_upload(str(wide), settings)


# --------------------------------------------------------------------------- 8. escaping
def test_error_messages_are_escaped_once(settings: UISettings) -> None:
    run = _make_run(settings.runs_dir)
    shutil.rmtree(run / "renders" / "original")
    view = sonify.sonify_clip("toy_lin", None, "raw", None, settings)
    assert not view.ok
    shown = core.error_md(view.status)
    assert "run toy\\_lin has no rendered test clips" in shown  # one backslash, not three
    assert "`auralens sonify render --run RUN --split test`" in shown  # a code span, kept
    assert core.error_md("a <b> `x` and a lone ` tick") == (
        "**Error:** a \\<b\\> `x` and a lone \\` tick")


# --------------------------------------------------------------------------- 9. no sound
@pytest.mark.parametrize(("wave", "warning"), [
    (np.full(8000, 0.5, np.float32), "warning: input is constant (a DC offset, no sound)"),
    (np.zeros(8000, np.float32), "warning: input is silent"),
])
def test_imagine_says_when_the_input_has_no_sound(settings: UISettings,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  wave: np.ndarray, warning: str) -> None:
    _fake_pipeline(monkeypatch, kept=(False, False), description="")
    path = settings.upload_roots[0] / "flat.wav"
    sf.write(path, wave, 8000, subtype="FLOAT")
    view = imagine.run_imagine(str(path), settings)
    assert view.ok and view.description == ""
    assert warning in view.status
    assert "no description: the input has no sound" in view.status


def test_imagine_explains_an_empty_description(settings: UISettings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pipeline(monkeypatch, kept=(False, False), description="")
    view = imagine.run_imagine(str(_wav(settings.upload_roots[0] / "quiet.wav")), settings)
    assert view.ok and "warning" not in view.status
    assert "no description: no separated source was kept" in view.status


# --------------------------------------------------------------------------- 10. numbering
def test_sources_are_numbered_as_the_report_numbers_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sources").mkdir(parents=True)
    for k in range(2):
        _wav(out / "sources" / f"source{k}.wav", 0.2)
    (out / "captions.json").write_text(json.dumps({"sources": [{"index": 0, "caption": "dog"}]}))
    view = imagine.read_imagine_outputs(out)
    assert [s.label.split(" (")[0] for s in view.sources] == ["source 0", "source 1"]
    assert "| 0 | kept |" in view.activity_md and "| 0 | dog |" in view.captions_md


# --------------------------------------------------------------------------- 11. minor
def test_a_folder_and_a_non_path_are_one_line_refusals(settings: UISettings) -> None:
    (settings.upload_roots[0] / "dir.wav").mkdir()
    with pytest.raises(UIError, match=r"^dir\.wav: is a folder, not an audio file"):
        core.validate_upload(str(settings.upload_roots[0] / "dir.wav"), settings)
    for value in (5, b"/tmp/x.wav", {"path": "x.wav"}):
        with pytest.raises(UIError, match="did not arrive as a file"):
            core.validate_upload(value, settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [
    (2.0, "2 s"), (59.5, "59.5 s"), (600.0, "600 s (10 min)"), (90.0, "90 s (1.5 min)")])
def test_duration_limits_read_sensibly(seconds: float, text: str) -> None:
    assert core.human_duration(seconds) == text


def test_a_too_long_upload_names_the_limit_without_odd_minutes(settings: UISettings) -> None:
    path = _wav(settings.upload_roots[0] / "long.wav", 3.0, sr=2000)
    with pytest.raises(UIError) as err:
        core.validate_upload(str(path), settings)
    assert str(err.value) == "long.wav: duration 3.0 s is longer than the limit of 2 s"


def test_the_page_names_the_limits_and_formats(settings: UISettings) -> None:
    pytest.importorskip("gradio")
    from auralens.ui_app.app import build_app

    demo = build_app(settings)
    texts = [getattr(b, "value", "") or "" for b in demo.blocks.values()]
    line = next(t for t in texts if isinstance(t, str) and "Limits:" in t)
    assert "0.1 s to 2 s per clip" in line and "min" not in line.split("Limits:")[1]
    assert "Formats: WAV/FLAC/OGG/MP3" in line
