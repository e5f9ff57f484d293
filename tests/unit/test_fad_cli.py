"""`auralens evaluate fad|kad|spectral` on small folders of synthetic audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from factories.audio_files import tone_folder as _folder

from auralens import audio
from auralens.cli import main

SR = 16000


def test_evaluate_commands(tmp_path: Path, capsys) -> None:
    ref = _folder(tmp_path, "ref", [220, 330, 440, 550], 0.01)
    est = _folder(tmp_path, "est", [220, 330, 440, 550], 0.2)
    assert main(["evaluate", "fad", str(ref), str(ref), "--out", str(tmp_path / "o1")]) == 0
    same = json.loads((tmp_path / "o1" / "metrics.json").read_text())
    assert same["fad"] < 1e-6 and same["n_ref_frames"] == 4 * 101 and same["dim"] == 64
    assert (tmp_path / "o1" / "run.json").exists()
    assert main(["evaluate", "fad", str(ref), str(est), "--out", str(tmp_path / "o2")]) == 0
    assert json.loads((tmp_path / "o2" / "metrics.json").read_text())["fad"] > 1
    assert main(["evaluate", "kad", str(ref), str(est), "--per-file", "--out", str(tmp_path / "o3")]) == 0
    k = json.loads((tmp_path / "o3" / "metrics.json").read_text())
    assert k["kad"] > 0 and len(k["per_file"]) == 4
    capsys.readouterr()
    assert main(["evaluate", "spectral", str(ref / "tone220.wav"), str(ref / "tone220.wav")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mr_stft"] == 0 and abs(out["env_corr"] - 1.0) < 1e-9
    assert main(["evaluate", "fad", str(tmp_path / "nope"), str(est)]) == 1
    # Too few frames for a 64-dim covariance: a clear error, or shrinkage on request.
    one = tmp_path / "one"
    audio.write(one / "a.wav", np.zeros(1600, dtype=np.float32) + 0.1, SR)
    assert main(["evaluate", "fad", str(one), str(est)]) == 1
    assert "more frames than embedding dimensions" in capsys.readouterr().err
    assert main(["evaluate", "fad", str(one), str(est), "--shrinkage", "ledoit-wolf"]) == 0


def test_unreadable_file_is_skipped_and_reported(tmp_path: Path, capsys) -> None:
    ref = _folder(tmp_path, "ref", [220, 330, 440, 550], 0.01)
    est = _folder(tmp_path, "est", [220, 330, 440, 550], 0.2)
    assert main(["evaluate", "fad", str(ref), str(est), "--out", str(tmp_path / "clean")]) == 0
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    (est / "broken.wav").write_bytes(b"not audio at all")
    for metric in ("fad", "kad"):
        assert main(["evaluate", metric, str(ref), str(est), "--out", str(tmp_path / metric)]) == 0
        res = json.loads((tmp_path / metric / "metrics.json").read_text())
        assert [s["file"] for s in res["skipped"]] == [str(est / "broken.wav")]
        assert "broken.wav" in res["skipped"][0]["error"]
    fad = json.loads((tmp_path / "fad" / "metrics.json").read_text())
    # The skipped file changes nothing: the score is the one of the four readable files.
    assert fad["fad"] == clean["fad"] and fad["n_eval_frames"] == clean["n_eval_frames"]
    assert "skipped" not in clean
    # A folder with nothing readable is an error; so is a missing second folder (found before
    # the first folder is embedded).
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"junk")
    capsys.readouterr()
    assert main(["evaluate", "fad", str(ref), str(bad)]) == 1
    assert "none of the 1 audio files could be read" in capsys.readouterr().err
    assert main(["evaluate", "kad", str(ref), str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "evaluated directory not found" in err and "embed reference" not in err


def test_kad_device_is_checked_before_embedding(tmp_path: Path, capsys) -> None:
    import torch

    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    for device, message in [("foo", "--device: unknown device 'foo'"),
                            *([] if torch.cuda.is_available() else
                              [("cuda", "--device cuda: CUDA is not available on this machine")])]:
        capsys.readouterr()
        assert main(["evaluate", "kad", str(ref), str(ref), "--device", device]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and "embed" not in err
    scores = []
    for device in ("cpu", "auto"):
        assert main(["evaluate", "kad", str(ref), str(ref), "--device", device, "--out", str(tmp_path / device)]) == 0
        scores.append(json.loads((tmp_path / device / "metrics.json").read_text())["kad"])
    assert np.isfinite(scores[0]) and abs(scores[0] - scores[1]) < 1e-9


def test_hidden_files_are_not_metric_inputs(tmp_path: Path) -> None:
    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    (ref / ".partial.wav").write_bytes(b"half-written")  # an atomic writer's temp file
    (ref / ".cache").mkdir()
    (ref / ".cache" / "x.wav").write_bytes(b"junk")
    assert main(["evaluate", "fad", str(ref), str(ref), "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "skipped" not in res and res["n_ref_frames"] == 2 * 101


def _short(root: Path, name: str, n: int = 80) -> Path:
    """A folder with one 5 ms clip (80 samples at 16 kHz: one log-mel frame)."""
    audio.write(root / name / "blip.wav", (0.3 * np.ones(n)).astype(np.float32), SR)
    return root / name


def test_too_short_clips_name_the_folder_and_the_frames(tmp_path: Path, capsys) -> None:
    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    short = _short(tmp_path, "short")
    for metric in ("fad", "kad"):
        for args, what in (([short, ref], "reference"), ([ref, short], "evaluated")):
            capsys.readouterr()
            assert main(["evaluate", metric, *map(str, args)]) == 1
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert err == (f"error: {short}: the {what} clips are too short for {metric.upper()}: "
                           f"1 embedding frame(s) in all (blip.wav: 1); {metric.upper()} needs at "
                           "least 2 — use longer clips or more of them")
    # Enough frames for a covariance but not for 64 dims: the folder is named too.
    _short(tmp_path, "short", 800)
    audio.write(short / "blip2.wav", 0.3 * np.ones(800, np.float32), SR)
    capsys.readouterr()
    assert main(["evaluate", "fad", str(ref), str(short)]) == 1
    err = capsys.readouterr().err
    assert f"error: {short} (evaluated): FAD needs more frames than embedding dimensions" in err


def test_kad_per_file_reports_a_too_short_file_instead_of_failing(tmp_path: Path) -> None:
    ref = _folder(tmp_path, "ref", [220, 330, 440], 0.01)
    est = _folder(tmp_path, "est", [220, 330], 0.2)
    audio.write(est / "blip.wav", 0.3 * np.ones(80, np.float32), SR)
    assert main(["evaluate", "kad", str(ref), str(est), "--per-file", "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert res["per_file"]["blip.wav"] is None and res["per_file_too_short"] == ["blip.wav"]
    assert res["per_file"]["tone220.wav"] > 0


def test_run_json_records_absolute_paths_cwd_and_timings(tmp_path: Path, monkeypatch) -> None:
    _folder(tmp_path, "ref", [220, 330], 0.01)
    _folder(tmp_path, "est", [220, 330], 0.2)
    monkeypatch.chdir(tmp_path)
    for metric, extra in (("fad", []), ("kad", ["--kernel", "imq"])):
        assert main(["evaluate", metric, "ref", "est", "--out", f"o_{metric}", *extra]) == 0
        run = json.loads((tmp_path / f"o_{metric}" / "run.json").read_text())
        assert run["config"]["ref_dir"] == str(tmp_path.resolve() / "ref")
        assert run["config"]["eval_dir"] == str(tmp_path.resolve() / "est")
        assert run["cwd"] == str(tmp_path)
        assert set(run["timings_s"]) == {"embed", "metric", "total"}
        assert run["timings_s"]["total"] >= run["timings_s"]["embed"] > 0
        metrics = json.loads((tmp_path / f"o_{metric}" / "metrics.json").read_text())
        assert metrics["config"] == run["config"]
        # the embedder, and no revision for weight-free features
        assert run["models"]["metric_embedder"] == {"name": metrics["embedder"], "revision": ""}
        assert metrics["embedder"].startswith("logmel")
    assert run["config"]["kernel"] == "imq" and run["config"]["per_file"] is False
    assert main(["evaluate", "spectral", "ref/tone220.wav", "est/tone220.wav", "--out", "o_sp"]) == 0
    run = json.loads((tmp_path / "o_sp" / "run.json").read_text())
    assert run["config"]["est"] == str(tmp_path.resolve() / "est" / "tone220.wav")
    assert set(run["timings_s"]) == {"load", "metric", "total"}


def test_unwritable_out_is_refused_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:
    import tempfile

    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for metric in ("fad", "kad"):
        for out in (blocker, blocker / "sub"):
            capsys.readouterr()
            assert main(["evaluate", metric, str(ref), str(ref), "--out", str(out)]) == 1
            err = capsys.readouterr().err
            assert f"error: {out}: " in err and "embed" not in err and "Traceback" not in err
    # A directory the user may not write to (root ignores modes, so the probe is made to fail).
    def denied(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    capsys.readouterr()
    assert main(["evaluate", "fad", str(ref), str(ref), "--out", str(tmp_path / "ro")]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'ro'}: output directory is not writable (Permission denied)" in err
    assert "embed" not in err


def test_kad_of_a_few_frames_warns_in_the_result(tmp_path: Path, capsys) -> None:
    ref = _folder(tmp_path, "ref", [220, 330], 0.01)
    short = tmp_path / "short"
    t = np.arange(480) / SR  # 30 ms: 4 frames
    audio.write(short / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    assert main(["evaluate", "kad", str(ref), str(short), "--out", str(tmp_path / "o")]) == 0
    k = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert (k["n_ref_frames"], k["n_eval_frames"]) == (2 * 101, 4)
    assert k["warnings"] == ["only 202 reference and 4 evaluated embedding frames: a KAD from "
                             "fewer than 10 frames a set is a very noisy estimate; use longer "
                             "clips or more of them"]
    assert main(["evaluate", "kad", str(ref), str(ref), "--out", str(tmp_path / "o2")]) == 0
    assert "warnings" not in json.loads((tmp_path / "o2" / "metrics.json").read_text())
