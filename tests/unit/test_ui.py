"""The web UI's pure functions: upload checks, run discovery, path handling, view reading."""

from __future__ import annotations

import json
import subprocess
import sys
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
                      upload_roots=[uploads], max_upload_mb=1.0, max_duration_s=2.0)


def _wav(path: Path, seconds: float, sr: int = 8000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


# --------------------------------------------------------------------------- uploads
def test_valid_upload_is_loaded(settings: UISettings) -> None:
    path = _wav(settings.upload_roots[0] / "ok.wav", 1.5)
    up = core.validate_upload(str(path), settings)
    assert up.name == "ok.wav"
    assert up.sample_rate == 8000
    assert up.wave.shape == (12000,)
    assert up.duration == pytest.approx(1.5)


def test_missing_upload_asks_for_one(settings: UISettings) -> None:
    with pytest.raises(UIError, match="no audio given"):
        core.validate_upload(None, settings)


def test_oversized_upload_names_the_limit(settings: UISettings) -> None:
    # 1.2 MB of float samples at a short duration: over the size limit, under the time limit
    path = settings.upload_roots[0] / "big.wav"
    sf.write(path, np.zeros(300_000, np.float32), 192000, subtype="FLOAT")
    with pytest.raises(UIError, match=r"big\.wav: file is 1\.2 MB; the upload limit is 1 MB"):
        core.validate_upload(str(path), settings)


def test_too_long_upload_names_the_limit(settings: UISettings) -> None:
    path = _wav(settings.upload_roots[0] / "long.wav", 3.0, sr=2000)
    with pytest.raises(UIError, match=r"long\.wav: duration 3\.0 s is longer than the limit of 2 s"):
        core.validate_upload(str(path), settings)


def test_corrupt_and_empty_uploads(settings: UISettings) -> None:
    bad = settings.upload_roots[0] / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    with pytest.raises(UIError, match=r"^bad\.wav: unreadable or corrupt audio"):
        core.validate_upload(str(bad), settings)
    empty = settings.upload_roots[0] / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(UIError, match="empty file"):
        core.validate_upload(str(empty), settings)


def test_messages_never_reveal_server_paths(settings: UISettings) -> None:
    bad = settings.upload_roots[0] / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(UIError) as err:
        core.validate_upload(str(bad), settings)
    assert str(settings.upload_roots[0]) not in str(err.value)


def test_files_outside_the_upload_roots_are_refused(settings: UISettings, tmp_path: Path) -> None:
    outside = _wav(tmp_path / "secret.wav", 0.5)
    with pytest.raises(UIError, match="not an uploaded file"):
        core.validate_upload(str(outside), settings)
    # a path that climbs out of the upload root
    sneaky = settings.upload_roots[0] / ".." / "secret.wav"
    with pytest.raises(UIError, match="not an uploaded file"):
        core.validate_upload(str(sneaky), settings)
    # a symlink inside the upload root pointing outside it
    link = settings.upload_roots[0] / "link.wav"
    link.symlink_to(outside)
    with pytest.raises(UIError, match="not an uploaded file"):
        core.validate_upload(str(link), settings)


def _flac(path: Path, seconds: float, sr: int, channels: int) -> Path:
    """A FLAC of silence: tiny on disk however long, wide or fast it is."""
    with sf.SoundFile(path, "w", sr, channels, subtype="PCM_16", format="FLAC") as f:
        block = np.zeros((sr // 10, channels), np.int16)
        for _ in range(int(round(seconds * 10))):
            f.write(block)
    return path


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an upload is decoded (the refusal must come from the header)."""
    import auralens.audio

    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("the upload was decoded")

    monkeypatch.setattr(auralens.audio, "load_with_info", boom)


def test_wide_fast_uploads_are_refused_before_decoding(tmp_path: Path, no_decode: None) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    s = UISettings(work_root=tmp_path / "w", upload_roots=[uploads])  # default limits (600 s)
    # the reviewer's case: 8 channels at 96 kHz, a few KB of FLAC, hundreds of MB decoded
    wide = _flac(uploads / "wide.flac", 3.0, 96000, 8)
    assert wide.stat().st_size < s.max_upload_bytes
    with pytest.raises(UIError, match=r"^wide\.flac: 8 channels; uploads may have at most 2"):
        core.validate_upload(str(wide), s)
    fast = _flac(uploads / "fast.flac", 0.2, 384000, 1)
    with pytest.raises(UIError, match=r"^fast\.flac: sample rate 384000 Hz is above the upload limit of 192 kHz"):
        core.validate_upload(str(fast), s)


def test_decoded_size_is_capped(settings: UISettings, no_decode: None) -> None:
    # limit 2 s: at most 2 s of 48 kHz stereo = 192000 samples; 0.6 s of 192 kHz stereo is more
    assert core.max_upload_samples(settings) == 192_000
    big = _flac(settings.upload_roots[0] / "hires.flac", 0.6, 192000, 2)
    with pytest.raises(UIError, match=r"^hires\.flac: too much audio to decode \(0\.6 s × 2 channel\(s\) "
                                      r"at 192 kHz\); the limit is 2 s of 48 kHz stereo"):
        core.validate_upload(str(big), settings)
    long = _flac(settings.upload_roots[0] / "long.flac", 3.0, 8000, 1)
    with pytest.raises(UIError, match=r"^long\.flac: duration 3\.0 s is longer than the limit of 2 s"):
        core.validate_upload(str(long), settings)


def test_stereo_and_high_rate_uploads_within_the_cap_are_loaded(settings: UISettings) -> None:
    ok = _flac(settings.upload_roots[0] / "stereo.flac", 1.9, 48000, 2)  # 182400 samples
    up = core.validate_upload(str(ok), settings)
    assert up.sample_rate == 48000 and up.wave.shape == (91200,)
    hires = _flac(settings.upload_roots[0] / "hires.flac", 0.9, 192000, 1)  # 172800 samples
    assert core.validate_upload(str(hires), settings).wave.shape == (172800,)


def test_sonify_tab_shows_the_upload_refusal(settings: UISettings, no_decode: None) -> None:
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    wide = _flac(settings.upload_roots[0] / "wide.flac", 0.2, 8000, 6)
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(wide), settings)
    assert not view.ok and view.status == "wide.flac: 6 channels; uploads may have at most 2 (mono or stereo)"


def test_no_upload_roots_means_no_uploads(tmp_path: Path) -> None:
    s = UISettings(work_root=tmp_path / "w")
    with pytest.raises(UIError, match="not enabled"):
        core.validate_upload(str(_wav(tmp_path / "a.wav", 0.2)), s)


def test_is_within() -> None:
    assert core.is_within(Path("/a/b/c"), Path("/a/b"))
    assert not core.is_within(Path("/a/bc"), Path("/a/b"))
    assert not core.is_within(Path("/a/b/../x"), Path("/a/b"))


# --------------------------------------------------------------------------- work dirs
def test_work_dirs_are_fresh_and_pruned(tmp_path: Path) -> None:
    s = UISettings(work_root=tmp_path / "w", keep_work_dirs=3)
    made = [core.new_work_dir(s, "../../evil name") for _ in range(5)]
    for d in made:
        assert core.is_within(d, tmp_path / "w")
    assert made[-1].name.startswith("evilname-")
    assert len(set(made)) == 5
    assert len(list((tmp_path / "w").iterdir())) == 3
    assert made[-1].exists() and not made[0].exists()


def test_work_dirs_in_use_are_not_pruned(tmp_path: Path) -> None:
    """A slow Imagine request is the oldest while quick requests on other tabs make new ones."""
    s = UISettings(work_root=tmp_path / "w", keep_work_dirs=2)
    with core.request_dir(s, "imagine") as slow:
        quick = [core.new_work_dir(s, "sonify") for _ in range(4)]
        assert slow.exists() and not quick[0].exists() and quick[-1].exists()
    core.new_work_dir(s, "sonify")
    assert not slow.exists()


def test_default_ratings_path(tmp_path: Path) -> None:
    s = UISettings(runs_dir=tmp_path / "runs", work_root=tmp_path / "w")
    assert s.ratings_path == (tmp_path / "runs" / "ratings.csv").resolve()
    with pytest.raises(UIError):
        UISettings(work_root=tmp_path / "w", max_upload_mb=0)


# --------------------------------------------------------------------------- runs
def _checkpoint(path: Path, tag: str) -> None:
    """A readable gate checkpoint file whose bytes (and SHA-256) depend on ``tag``."""
    import torch

    from auralens.checkpoint_io import write_checkpoint

    write_checkpoint(path, {"w": torch.zeros(1)}, {"format": "auralens-gate/1", "tag": tag})


def _make_run(root: Path, name: str, clips: list[str], posts: list[str],
              encoder: str = "ast:tiny", gate: str = "linear") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {
        "encoder": encoder, "layer": 6, "codec": {"backend": "mel", "sample_rate": 8000},
        "gate": gate}}))
    _checkpoint(run / "best.safetensors", "x")
    for sub in ["original", "ceiling", *posts]:
        (run / "renders" / sub).mkdir(parents=True)
        for c in clips:
            _wav(run / "renders" / sub / f"{c}.wav", 0.5)
    return run


def test_discover_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _make_run(root, "ast-l6", ["c1", "c2"], ["raw", "denoise"])
    _make_run(root / "group", "hubert-l3", ["c9"], ["raw"], encoder="hubert:tiny", gate="mlp")
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("x")
    (root / "only-json").mkdir()
    (root / "only-json" / "run.json").write_text("{}")
    (root / "linked").symlink_to(root / "ast-l6")
    runs = core.discover_runs(root)
    assert list(runs) == ["ast-l6", "group/hubert-l3"]
    a = runs["ast-l6"]
    assert (a.encoder, a.layer, a.codec, a.gate) == ("ast:tiny", "6", "mel", "linear")
    assert a.clips == ["c1", "c2"]
    assert a.posts == ["denoise", "raw"]
    assert a.has_ceiling
    assert "ast:tiny" in a.label and "layer 6" in a.label
    assert runs["group/hubert-l3"].gate == "mlp"


def test_discover_runs_without_a_dir(tmp_path: Path) -> None:
    assert core.discover_runs(None) == {}
    assert core.discover_runs(tmp_path / "absent") == {}


def test_resolve_run_only_accepts_known_keys(tmp_path: Path) -> None:
    _make_run(tmp_path / "runs", "r1", ["c"], ["raw"])
    runs = core.discover_runs(tmp_path / "runs")
    assert core.resolve_run("r1", runs).path == (tmp_path / "runs" / "r1").resolve()
    assert core.resolve_run(runs["r1"].label, runs).key == "r1"
    for bad in ["../r1", str(tmp_path / "runs" / "r1"), "/etc", "r2"]:
        with pytest.raises(UIError, match="unknown run"):
            core.resolve_run(bad, runs)
    with pytest.raises(UIError, match="pick a trained run"):
        core.resolve_run(None, runs)
    with pytest.raises(UIError, match="unknown clip"):
        core.resolve_choice("../../x", ["c"], "clip")


def test_sonify_clip_copies_renders_and_plots(settings: UISettings) -> None:
    _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.ok, view.status
    for p in (view.original, view.sonified, view.ceiling):
        assert p is not None and p.is_file()
        assert core.is_within(p, settings.work_root)  # served from the work dir, not --runs
    assert view.plots and all(p.is_file() for p, _ in view.plots)


def test_sonify_refuses_bad_choices(settings: UISettings) -> None:
    assert "no trained sonify runs found under" in sonify.sonify_clip(
        "r1", "c1", "raw", None, settings).status
    _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    assert "unknown run" in sonify.sonify_clip("../r1", "c1", "raw", None, settings).status
    assert "unknown clip" in sonify.sonify_clip("r1", "../../etc/passwd", "raw", None,
                                                settings).status
    assert "unknown post-processing" in sonify.sonify_clip("r1", "c1", "../original", None,
                                                           settings).status


def test_rating_form_validation(settings: UISettings) -> None:
    _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    runs = core.discover_runs(settings.runs_dir)
    with pytest.raises(UIError, match="whole number from 1 to 5"):
        rate.save("r1", "c1", "raw", 6, 3, "", "", settings, runs)
    with pytest.raises(UIError, match="whole number from 1 to 5"):
        rate.save("r1", "c1", "raw", 2.5, 3, "", "", settings, runs)
    with pytest.raises(UIError, match="unknown clip"):
        rate.save("r1", "nope", "raw", 3, 3, "", "", settings, runs)
    with pytest.raises(UIError, match="longer than"):
        rate.save("r1", "c1", "raw", 3, 3, "x" * 600, "", settings, runs)
    with pytest.raises(UIError, match="visual rating must be a number"):  # float(True) is 1
        rate.save("r1", "c1", "raw", True, 3, "", "", settings, runs)


def test_rating_text_loses_control_characters(settings: UISettings) -> None:
    _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    runs = core.discover_runs(settings.runs_dir)
    rate.save("r1", "c1", "raw", 3, 3, "a\x00b", "\x1b[31mred\x07 text", settings, runs)
    text = settings.ratings_path.read_text()
    assert "a b" in text and "[31mred text" in text
    assert not any(ord(c) < 32 and c not in "\r\n" for c in text)


def test_ratings_round_trip(settings: UISettings) -> None:
    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    _make_run(settings.runs_dir, "r1", ["c1", "c2"], ["raw"])
    runs = core.discover_runs(settings.runs_dir)
    assert rate.rating_choices(runs["r1"]) == ["raw", "ceiling"]
    assert "no ratings yet" in rate.aggregate_md(settings)
    msg = rate.save("r1", "c1", "raw", 4, 2, "ann", "crisp\nbut noisy", settings, runs)
    assert msg.startswith("saved:") and "visual 4, audio 2" in msg
    rate.save("r1", "c2", "raw", 2, 5, "", "", settings, runs)
    rate.save("r1", "c1", "ceiling", 5, 5, "ann", "", settings, runs)
    text = settings.ratings_path.read_text()
    assert text.count("\n") == 4 and "crisp but noisy" in text and "anonymous" in text
    table = rate.aggregate_md(settings)
    row = next(ln for ln in table.splitlines() if "r1/raw" in ln)
    assert "3.00" in row and "3.50" in row and row.rstrip(" |").endswith("2")


def test_a_ratings_file_that_is_not_text_is_a_message(settings: UISettings) -> None:
    settings.ratings_path.parent.mkdir(parents=True, exist_ok=True)
    settings.ratings_path.write_bytes(b"rater,version\n\xff\xfe not text\n")
    msg = rate.aggregate_md(settings)
    assert msg.startswith("could not read the ratings: ")
    assert "not UTF-8 text (invalid start byte at byte 14)" in msg


@pytest.mark.parametrize(("rater", "comment"), [
    ("=cmd|' /C calc'!A0", "=HYPERLINK(\"http://x\",\"y\")"),
    ("+1", "-2+3"),
    ("  @SUM(A1)", "\n-oops"),
])
def test_ratings_csv_cells_never_start_a_formula(settings: UISettings, rater: str, comment: str) -> None:
    import csv

    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    runs = core.discover_runs(settings.runs_dir)
    rate.save("r1", "c1", "raw", 3, 4, rater, comment, settings, runs)
    rate.save("r1", "c1", "raw", 4, 4, "ann-marie", "a - b", settings, runs)
    with open(settings.ratings_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    cells = [c for row in rows[1:] for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")], cells
    header = rows[0]
    first, second = (dict(zip(header, r, strict=True)) for r in rows[1:])
    assert first["rater"] == "'" + rater.strip() and first["comment"] == "'" + comment.strip()
    assert second["rater"] == "ann-marie" and second["comment"] == "a - b"  # only a leading sign is escaped


# --------------------------------------------------------------------------- imagine outputs
def test_read_imagine_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sources").mkdir(parents=True)
    for i in range(4):
        _wav(out / "sources" / f"source_{i}.wav", 0.2)
    (out / "activity.json").write_text(json.dumps([
        {"index": i, "kept": i != 2, "score": 0.5 + i} for i in range(4)]))
    (out / "captions.json").write_text(json.dumps({"source_0": "a dog barks",
                                                   "source_1": "rain falls",
                                                   "source_3": "a bell rings"}))
    (out / "description.txt").write_text("A dog barks in the rain.\n")
    (out / "run.json").write_text(json.dumps({"timings_s": {"separate": 1.5, "caption": 0.5}}))
    view = imagine.read_imagine_outputs(out)
    assert [s.index for s in view.sources] == [0, 1, 2, 3]
    assert view.kept_count == 3
    assert "Sources kept: 3 of 4" in view.activity_md
    assert view.sources[1].caption == "rain falls" and view.sources[2].caption == ""
    assert "a bell rings" in view.captions_md
    assert view.description == "A dog barks in the rain."
    assert view.image is None
    assert "| total | 2.00 s |" in view.timings_md


def test_run_imagine_reports_bad_uploads(settings: UISettings) -> None:
    view = imagine.run_imagine(None, settings)
    assert not view.ok and "no audio given" in view.status


def test_markdown_is_escaped() -> None:
    assert core.md_escape("<b>|x|</b>") == "\\<b\\>\\|x\\|\\</b\\>"
    assert "\\<script\\>" in core.md_table(["a"], [["<script>"]])


def test_importing_the_ui_does_not_import_gradio() -> None:
    code = ("import sys, auralens.ui, auralens.ui_app.app; "
            "sys.exit(1 if 'gradio' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_folder_to_chain() -> None:
    assert sonify.folder_to_chain("minmax") == "minmax"
    assert sonify.folder_to_chain("minmax+threshold10") == "minmax,threshold:10"
    assert sonify.folder_to_chain("none") is None
    with pytest.raises(UIError):
        sonify.folder_to_chain("../x")


def test_sonify_upload_renders_through_the_run(settings: UISettings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:

    calls = {}

    def fake_render(run_dir, wave, sr, post=None, *, out_sr=None):  # noqa: ANN001, ANN202
        calls.update(run_dir=Path(run_dir), sr=sr, post=post, out_sr=out_sr)
        return (wave[::-1] * 0.5).astype(np.float32)

    monkeypatch.setattr("auralens.sonify.render.render", fake_render)
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax+wiener"])
    up = _wav(settings.upload_roots[0] / "mine.wav", 1.0)
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax+wiener", str(up), settings)
    assert view.ok, view.status
    assert calls == {"run_dir": (settings.runs_dir / "r1").resolve(), "sr": 8000,
                     "post": "minmax,wiener", "out_sr": 8000}
    out, sr = sf.read(view.sonified)
    assert sr == 8000 and out.shape == (8000,)
    assert {"si_sdr", "env_corr", "lsd_db"} <= set(view.metrics)
    bad = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax+wiener", None, settings)
    assert not bad.ok and "no audio given" in bad.status
    assert "only the first" not in view.status  # the whole upload was sonified


def test_sonify_upload_longer_than_the_window_says_so(settings: UISettings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:

    def cutting_render(run_dir, wave, sr, post=None, *, out_sr=None):  # noqa: ANN001, ANN202
        return (0.5 * wave[: int(0.5 * sr)]).astype(np.float32)  # a 0.5 s input window

    monkeypatch.setattr("auralens.sonify.render.render", cutting_render)
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    up = _wav(settings.upload_roots[0] / "long.wav", 1.5)
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(up), settings)
    assert view.ok, view.status
    assert "only the first 0.50 s of the 1.50 s upload were sonified" in view.status
    orig, sr = sf.read(view.original)
    est, _ = sf.read(view.sonified)
    assert sr == 8000 and orig.shape == est.shape == (4000,)
    assert view.metrics["si_sdr"] > 30  # the halved first 0.5 s against the same 0.5 s


def test_window_note() -> None:
    assert sonify.window_note(8000, 8000, 8000) is None
    assert sonify.window_note(8000, 8001, 8000) is None
    note = sonify.window_note(20 * 16000, int(5.12 * 16000), 16000)
    assert note is not None and note.startswith("only the first 5.12 s of the 20.00 s upload")


@pytest.mark.parametrize("kwargs, match", [
    ({"max_upload_mb": float("nan")}, "upload limits must be positive numbers"),
    ({"max_duration_s": 0.0}, "upload limits must be positive numbers"),
    ({"runs_dir": "afile"}, "runs directory is not a directory"),
    ({"ratings_path": "."}, "is a directory; --ratings names the CSV file"),
    ({"ratings_path": "afile/r.csv"}, "a parent of the ratings file is not a directory"),
])
def test_settings_refuse_bad_paths_and_limits(tmp_path, monkeypatch, kwargs, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UIError, match=match):
        UISettings(work_root=tmp_path / "work", **kwargs)
    assert not (tmp_path / "work").exists()


def test_address_checks_before_the_server_starts(tmp_path):
    import socket

    from auralens.ui import check_address, launch

    with pytest.raises(UIError, match="--host 'not a host!': not an address"):
        check_address("not a host!", 7860)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(UIError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_address("127.0.0.1", port)
    check_address("127.0.0.1", port)  # free again
    with pytest.raises(UIError, match="missing: runs directory not found"):
        launch(runs=tmp_path / "missing", work_root=tmp_path / "w", block=False)
    bad = tmp_path / "im.yaml"
    bad.write_text("captioner: 3\n")
    with pytest.raises(UIError, match="im.yaml: captioner must be a backend spec"):
        launch(imagine_config=bad, work_root=tmp_path / "w", block=False)


# --------------------------------------------------------------------------- short and flagged uploads
@pytest.mark.parametrize("samples", [1, 40, 799])  # one sample, 5 ms, just under 0.1 s at 8 kHz
def test_too_short_uploads_are_refused_on_both_tabs(settings: UISettings, samples: int) -> None:
    path = settings.upload_roots[0] / "tiny.wav"
    sf.write(path, np.full(samples, 0.3, np.float32), 8000)
    with pytest.raises(UIError, match=rf"^tiny\.wav: too short to analyse \(.* ms, {samples} samples "
                                      r"at 8000 Hz\); uploads must be at least 0\.1 s long$"):
        core.validate_upload(str(path), settings)
    view = imagine.run_imagine(str(path), settings)  # refused before the pipeline runs
    assert not view.ok and "too short to analyse" in view.status and view.description == ""
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    son = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(path), settings)
    assert not son.ok and "at least 0.1 s long" in son.status


def test_upload_of_the_minimum_duration_is_accepted(settings: UISettings) -> None:
    up = core.validate_upload(str(_wav(settings.upload_roots[0] / "min.wav", 0.1)), settings)
    assert up.wave.shape == (800,)


def _fake_render(monkeypatch: pytest.MonkeyPatch) -> None:

    def render(run_dir, wave, sr, post=None, *, out_sr=None):  # noqa: ANN001, ANN202
        return np.asarray(wave, np.float32).copy()  # a silent input gives a silent output

    monkeypatch.setattr("auralens.sonify.render.render", render)


def test_sonify_upload_of_silence_warns_and_leaves_the_metrics_out(
        settings: UISettings, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_render(monkeypatch)
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    path = settings.upload_roots[0] / "silent.wav"
    sf.write(path, np.zeros(8000, np.float32), 8000)
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(path), settings)
    assert view.ok, view.status
    assert "warning: input is silent" in view.status
    # silence against silence would read lsd_db 0, env_corr 1: "perfect"
    assert view.metrics == {}
    assert "not meaningful" in view.metrics_md and "lsd" not in view.metrics_md


def test_sonify_upload_of_a_dc_offset_warns_and_leaves_the_metrics_out(
        settings: UISettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """minmax maps any render onto a constant's one value: a 'perfect' score, hidden now."""
    _fake_render(monkeypatch)
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    path = settings.upload_roots[0] / "dc.wav"
    sf.write(path, np.full(8000, 0.5, np.float32), 8000, subtype="FLOAT")
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(path), settings)
    assert view.ok and "warning: input is constant" in view.status, view.status
    assert view.metrics == {} and "input is constant" in view.metrics_md


def test_sonify_upload_that_clips_warns_and_keeps_the_metrics(
        settings: UISettings, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_render(monkeypatch)
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    path = settings.upload_roots[0] / "hot.wav"
    t = np.arange(8000) / 8000
    sf.write(path, np.clip(2 * np.sin(2 * np.pi * 220 * t), -1, 1).astype(np.float32), 8000)
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(path), settings)
    assert view.ok and "warning: input is clipped" in view.status
    assert {"lsd_db", "env_corr"} <= set(view.metrics) and "not meaningful" not in view.metrics_md
    ok = _wav(settings.upload_roots[0] / "ok.wav", 1.0)
    plain = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(ok), settings)
    assert plain.ok and "warning" not in plain.status


# --------------------------------------------------------------------------- fixes
def test_captions_follow_the_real_index_when_source_0_is_dropped(tmp_path: Path) -> None:
    # what the pipeline writes: every estimate in sources/, only kept ones in captions.json
    out = tmp_path / "out"
    (out / "sources").mkdir(parents=True)
    for k in range(3):
        _wav(out / "sources" / f"source{k}.wav", 0.2)
    (out / "activity.json").write_text(json.dumps({"sources": [
        {"index": k, "kept": k > 0, "reason": "", "scores": {}} for k in range(3)]}))
    (out / "captions.json").write_text(json.dumps({"captioner": "x", "sources": [
        {"index": 1, "file": "sources/source1.wav", "caption": "dog"},
        {"index": 2, "file": "sources/source2.wav", "caption": "rain"}]}))
    view = imagine.read_imagine_outputs(out)
    assert [(s.index, s.kept, s.caption) for s in view.sources] == [
        (0, False, ""), (1, True, "dog"), (2, True, "rain")]


def test_activity_follows_the_real_index_when_source_0_is_not_listed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sources").mkdir(parents=True)
    for k in range(3):
        _wav(out / "sources" / f"source{k}.wav", 0.2)
    (out / "activity.json").write_text(json.dumps([{"index": 1, "kept": False},
                                                   {"index": 2, "kept": False}]))
    view = imagine.read_imagine_outputs(out)
    assert [s.kept for s in view.sources] == [True, False, False]


def _record_renders(run: Path, sha: str | None) -> None:
    """The renders/run.json ``sonify render`` writes (checkpoint SHA-256 and split)."""
    cfg = {"split": "test", "checkpoint": str(run / "best.safetensors")}
    if sha is not None:
        cfg["checkpoint_sha256"] = sha
    (run / "renders" / "run.json").write_text(json.dumps({"config": cfg}))


def test_renders_of_an_earlier_checkpoint_are_flagged_and_not_rated(settings: UISettings) -> None:
    import hashlib
    import os

    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    run = _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    first = (run / "best.safetensors").read_bytes()
    _record_renders(run, hashlib.sha256(first).hexdigest())
    runs = core.discover_runs(settings.runs_dir)
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.ok and "warning" not in view.status
    assert rate.save("r1", "c1", "raw", 3, 3, "ann", "", settings, runs).startswith("saved:")

    _checkpoint(run / "best.safetensors", "retrained")  # the run was trained again
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.ok and view.sonified is not None
    assert "**warning:** these renders were made with an earlier checkpoint" in view.status
    with pytest.raises(UIError, match=r"not saved: run r1: these renders were made with an "
                                      r"earlier checkpoint .* --split test"):
        rate.save("r1", "c1", "raw", 5, 5, "ann", "", settings, runs)
    assert settings.ratings_path.read_text().count("\n") == 2  # header and the first rating

    # renders of an older version record no SHA-256: stale when the checkpoint is newer
    _record_renders(run, None)
    old = (run / "renders" / "run.json").stat().st_mtime_ns
    os.utime(run / "best.safetensors", ns=(old + 10**9, old + 10**9))
    assert "earlier checkpoint" in sonify.sonify_clip("r1", "c1", "raw", None, settings).status
    os.utime(run / "best.safetensors", ns=(old - 10**9, old - 10**9))
    assert "warning" not in sonify.sonify_clip("r1", "c1", "raw", None, settings).status

    # a damaged checkpoint is named as such, not as a new training
    _record_renders(run, hashlib.sha256(first).hexdigest())
    (run / "best.safetensors").write_bytes(b"cut off")
    status = sonify.sonify_clip("r1", "c1", "raw", None, settings).status
    assert "checkpoint cannot be read" in status and "best.safetensors" in status
    assert "earlier checkpoint" not in status


def test_a_run_without_original_renders_says_so(settings: UISettings) -> None:
    import shutil

    run = _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    shutil.rmtree(run / "renders" / "original")
    view = sonify.sonify_clip("r1", None, "minmax", None, settings)
    assert not view.ok and view.status.startswith("run r1 has no rendered test clips")
    assert "--split test" in view.status


def test_a_render_shorter_than_its_original_is_scored_with_a_note(settings: UISettings) -> None:
    """Metrics of a render cut short describe only the common start: the page says so, and
    shows none when too little overlaps (a 100-sample render used to score as perfect)."""
    run = _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    _wav(run / "renders" / "original" / "c1.wav", 2.0)
    _wav(run / "renders" / "raw" / "c1.wav", 1.0)
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.ok and view.metrics
    assert "only the first 1.000 s of each were compared" in view.metrics_note
    sf.write(run / "renders" / "raw" / "c1.wav", 0.3 * np.ones(100, np.float32), 8000)
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.ok and view.metrics == {}
    assert view.metrics_note == ("metrics not shown: only 100 samples of the original and the "
                                 "sonification overlap")
    _wav(run / "renders" / "raw" / "c1.wav", 2.0)  # the same length: no note
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.metrics and view.metrics_note == ""


def test_renders_of_another_checkpoint_file_are_flagged_as_render_does(settings: UISettings) -> None:
    """Renders of an older version (no SHA-256) made from last.safetensors, now that the run
    has a best.safetensors: ``sonify render`` renders them again, so the page flags them
    (it used to look at the modification times only)."""
    import os

    run = _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    cfg = {"split": "test", "checkpoint": str(run / "last.safetensors")}
    (run / "renders" / "run.json").write_text(json.dumps({"config": cfg}))
    old = (run / "renders" / "run.json").stat().st_mtime_ns
    os.utime(run / "best.safetensors", ns=(old - 10**9, old - 10**9))  # not newer than the renders
    assert core.stale_renders(run) is not None
    assert "earlier checkpoint" in sonify.sonify_clip("r1", "c1", "raw", None, settings).status
    cfg["checkpoint"] = str(run / "best.safetensors")
    (run / "renders" / "run.json").write_text(json.dumps({"config": cfg}))
    os.utime(run / "best.safetensors", ns=(old - 10**9, old - 10**9))
    assert core.stale_renders(run) is None


def test_upload_analysis_uses_the_arrays_in_memory(settings: UISettings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_render(monkeypatch)

    def no_reading(path):  # noqa: ANN001, ANN202
        raise AssertionError(f"{path} was read back")

    monkeypatch.setattr(sonify, "_load", no_reading)
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    up = _wav(settings.upload_roots[0] / "mine.wav", 1.0)
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(up), settings)
    assert view.ok and "analysis failed" not in view.status, view.status
    assert view.metrics["si_sdr"] > 30 and view.plots  # the fake render returns its input
    out, sr = sf.read(view.sonified, dtype="float32")
    ref, _ = sf.read(up, dtype="float32")
    assert sr == 8000 and np.array_equal(out, ref)


def test_upload_rendered_to_nothing_is_a_failure(settings: UISettings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr("auralens.sonify.render.render",
                        lambda run_dir, wave, sr, post=None, *, out_sr=None: np.zeros(0, np.float32))
    _make_run(settings.runs_dir, "r1", ["c1"], ["minmax"])
    up = _wav(settings.upload_roots[0] / "mine.wav", 1.0)
    view = sonify.sonify_clip("r1", sonify.UPLOAD_CHOICE, "minmax", str(up), settings)
    assert not view.ok and "returned no samples" in view.status


def test_a_rating_names_the_render_it_rates(settings: UISettings) -> None:
    """A run trained and rendered again: the rating of its new render names another render,
    and the table counts only the new render's ratings."""
    import csv
    import hashlib

    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    run = _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    first = hashlib.sha256((run / "best.safetensors").read_bytes()).hexdigest()
    _record_renders(run, first)
    runs = core.discover_runs(settings.runs_dir)
    rate.save("r1", "c1", "raw", 1, 1, "ann", "", settings, runs)
    _checkpoint(run / "best.safetensors", "retrained")  # trained again ...
    second = hashlib.sha256((run / "best.safetensors").read_bytes()).hexdigest()
    _record_renders(run, second)  # ... and rendered again
    rate.save("r1", "c1", "raw", 5, 5, "bob", "", settings, runs)
    with open(settings.ratings_path, newline="", encoding="utf-8") as fh:
        renders = [r["render"] for r in csv.DictReader(fh)]
    assert renders == [first[:12], second[:12]]
    table = rate.aggregate_md(settings)
    row = next(ln for ln in table.splitlines() if "r1/raw" in ln)
    assert "5.00" in row and row.rstrip(" |").endswith("1")  # bob's only: not (1 + 5) / 2
    assert "left out 1 rating(s) of earlier renders of r1/raw" in table


def test_unnamed_raters_do_not_replace_each_other(settings: UISettings) -> None:
    import csv

    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    runs = core.discover_runs(settings.runs_dir)
    rate.save("r1", "c1", "raw", 1, 1, "", "", settings, runs)
    rate.save("r1", "c1", "raw", 5, 5, "  ", "", settings, runs)
    rate.save("r1", "c1", "raw", 2, 2, "ann", "", settings, runs)
    rate.save("r1", "c1", "raw", 4, 4, "ann", "", settings, runs)  # replaces ann's 2
    with open(settings.ratings_path, newline="", encoding="utf-8") as fh:
        raters = [r["rater"] for r in csv.DictReader(fh)]
    assert raters[0].startswith("anonymous-") and raters[1].startswith("anonymous-")
    assert raters[0] != raters[1]
    row = next(ln for ln in rate.aggregate_md(settings).splitlines() if "r1/raw" in ln)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-1] == "3" and cells[1].startswith("3.33")  # (1 + 5 + 4) / 3


def test_pruning_leaves_folders_the_ui_did_not_make(tmp_path: Path) -> None:
    import os

    root = tmp_path / "w"
    mine = root / "my_project"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "important.txt").write_text("x")
    os.utime(mine, (0, 0))  # the oldest folder in the work root
    s = UISettings(work_root=root, keep_work_dirs=2)
    made = [core.new_work_dir(s, "sonify") for _ in range(4)]
    assert (mine / "data" / "important.txt").is_file()
    assert [d.exists() for d in made] == [False, False, True, True]


def test_a_removed_work_root_is_made_again(settings: UISettings) -> None:
    import shutil

    _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    shutil.rmtree(settings.work_root)  # e.g. a temp-folder cleaner
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.ok, view.status
    assert view.sonified is not None and core.is_within(view.sonified, settings.work_root)


@pytest.mark.parametrize(("data", "reason"), [
    (b"RIFF garbage", "unreadable or corrupt audio"),
    (b"", "empty file (0 bytes)"),
])
def test_a_broken_render_is_named_under_runs_and_not_played(settings: UISettings, data: bytes,
                                                            reason: str) -> None:
    run = _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    (run / "renders" / "raw" / "c1.wav").write_bytes(data)
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert not view.ok and view.status.startswith(f"r1/renders/raw/c1.wav: {reason}")
    assert str(settings.work_root) not in view.status and str(settings.runs_dir) not in view.status
    assert view.original is None and view.sonified is None and view.ceiling is None


def test_a_broken_ceiling_is_left_out_with_a_note(settings: UISettings) -> None:
    run = _make_run(settings.runs_dir, "r1", ["c1"], ["raw"])
    (run / "renders" / "ceiling" / "c1.wav").write_bytes(b"junk")
    view = sonify.sonify_clip("r1", "c1", "raw", None, settings)
    assert view.ok and view.sonified is not None and view.ceiling is None
    assert "ceiling not shown: r1/renders/ceiling/c1.wav: unreadable or corrupt audio" in \
        view.status.replace("\\", "")


def test_max_duration_below_the_shortest_clip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UIError, match=r"^--max-duration-s 0.05 is below the shortest clip "
                                      r"accepted \(0.1 s\)$"):
        UISettings(work_root=tmp_path / "w", max_duration_s=0.05)
    assert UISettings(work_root=tmp_path / "w", max_duration_s=0.1).max_duration_s == 0.1


def test_an_unreadable_ratings_csv_is_a_message(settings: UISettings) -> None:
    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    settings.ratings_path.parent.mkdir(parents=True, exist_ok=True)
    settings.ratings_path.write_bytes(b"timestamp,rater,run,version,clip,visual,audio,comment\n"
                                      b"t,\xff\xfe,r1,r1/raw,c1,3,3,\n")
    md = rate.aggregate_md(settings)
    assert md.startswith("could not read the ratings:") and "ratings.csv" in md


def test_ui_config_gets_the_checks_imagine_run_makes(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from auralens import ui
    from auralens.ui_app import app

    started = []
    monkeypatch.setattr(app, "serve", lambda settings, *a, **k: started.append(settings))
    bad = tmp_path / "im.yaml"
    bad.write_text("separator: nonexistent\n")
    with pytest.raises(UIError, match=r"im.yaml: unknown separator backend 'nonexistent'"):
        ui.launch(imagine_config=bad, work_root=tmp_path / "w", port=0, block=False)
    with pytest.raises(UIError, match=r"^imagine_config: unknown separator backend"):
        ui.launch(imagine_config={"separator": "nonexistent"}, work_root=tmp_path / "w",
                  port=0, block=False)
    assert started == []
    good = tmp_path / "ok.yaml"  # the layout `imagine run --config` reads
    good.write_text("imagine:\n  separator: nmf\n")
    ui.launch(imagine_config=good, work_root=tmp_path / "w", port=0, block=False)
    assert started and started[0].imagine_config == {"separator": "nmf"}
