"""Truthful outcomes of sonify commands: interrupted training, empty splits, sweep settings,
render inputs and the run.json records (with the weight-free toyband test doubles)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.cli import main
from auralens.io import read_json, read_jsonl
from auralens.sonify import checkpoint as ckpt
from auralens.sonify import train as train_mod
from auralens.sonify.prepare import prepare
from auralens.sonify.render import RenderError, load_run, render, render_split
from auralens.sonify.sweep import sweep
from auralens.sonify.train import TrainConfig, train

ENC, COD = "toyband", "toyband"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def trained(sonify_prep: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "lin"
    train(sonify_prep, run, TrainConfig(gate="lin", lr=1e-2, epochs=2, batch_size=4, tensorboard=False))
    return run


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- Ctrl-C in train


@pytest.mark.parametrize("where", ["evaluate", "checkpoint"])
def test_ctrl_c_in_train_is_recorded_as_interrupted_and_resumes(
        sonify_prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], where: str) -> None:
    """A real SIGINT in epoch 3 (during validation, or between its history line and its
    checkpoint): run.json says interrupted with the 2 finished epochs, stderr says so, and
    --resume finishes the run."""
    run = tmp_path / "run"
    calls = {"n": 0}
    if where == "evaluate":
        original = train_mod._evaluate

        def hook(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls["n"] += 1
            if calls["n"] == 3:
                signal.raise_signal(signal.SIGINT)
            return original(*args, **kwargs)

        monkeypatch.setattr(train_mod, "_evaluate", hook)
    else:
        original = ckpt.save

        def hook(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if Path(path).name == "last.safetensors":
                calls["n"] += 1
                if calls["n"] == 3:
                    signal.raise_signal(signal.SIGINT)
            return original(path, *args, **kwargs)

        monkeypatch.setattr(ckpt, "save", hook)
    args = ["sonify", "train", str(sonify_prep), "--gate", "conv", "--epochs", "5", "--batch-size", "4",
            "--device", "cpu", "--out", str(run)]
    code, _, err = _cli(capsys, *args)
    assert code == 130
    assert "interrupted" in err.splitlines()
    result = read_json(run / "run.json")["result"]
    assert result["status"] == "interrupted" and result["epochs_run"] == 2
    assert int(ckpt.read_header(run / "last.safetensors")["epoch"]) == 2
    hist = [h["epoch"] for h in read_jsonl(run / "history.jsonl")]
    assert hist == ([1, 2] if where == "evaluate" else [1, 2, 3])  # resume trims the extra line
    assert result["final_train_loss"] == pytest.approx(read_jsonl(run / "history.jsonl")[1]["train_loss"])

    monkeypatch.undo()
    code, out, err = _cli(capsys, *args, "--resume")
    assert code == 0, err
    assert [h["epoch"] for h in read_jsonl(run / "history.jsonl")] == [1, 2, 3, 4, 5]
    result = read_json(run / "run.json")["result"]
    assert result["status"] == "ok" and result["epochs_run"] == 5


def test_other_failures_are_not_recorded_as_ok(sonify_prep: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(train_mod, "_evaluate", boom)
    with pytest.raises(RuntimeError):
        train(sonify_prep, tmp_path / "run", TrainConfig(gate="lin", epochs=3, batch_size=4, tensorboard=False))
    result = read_json(tmp_path / "run" / "run.json")["result"]
    assert result["status"] == "failed" and "disk on fire" in result["message"]
    assert result["epochs_run"] == 0


def test_train_records_requested_and_resolved_device(trained: Path) -> None:
    config = read_json(trained / "run.json")["config"]
    assert config["device"] == "auto" and config["device_resolved"] == "cpu"


# --------------------------------------------------------------------------- empty splits


def test_split_files_list_only_prepared_clips(sonify_prep: Path) -> None:
    ids = {r["id"] for r in read_jsonl(sonify_prep / "index.jsonl")}
    listed = [line for n in ("train", "val", "test") for line in (sonify_prep / f"{n}.txt").read_text().split()]
    assert len(listed) == len(ids) == 24 and not any("bad0" in line for line in listed)


def test_empty_validation_split_is_named_training_loss(
        sonify_library: Path, sonify_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    # The dataset's own split puts only the corrupt clip in val: nothing usable is left there.
    data = tmp_path / "data"
    data.mkdir()
    (data / "audio").symlink_to(sonify_library / "audio")
    (data / "meta").symlink_to(sonify_library / "meta")
    names = sorted(p.name for p in (sonify_library / "audio").glob("*.wav") if "bad" not in p.name)
    (data / "val.txt").write_text("1-bad0-A-0.wav\n")
    (data / "test.txt").write_text("".join(f"{n}\n" for n in names[:3]))
    (data / "train.txt").write_text("".join(f"{n}\n" for n in names[3:]))
    with caplog.at_level(logging.WARNING):
        res = prepare(data, ENC, COD, 1, tmp_path / "prep", duration=1.0, cache_dir=sonify_cache)
    assert res.splits == {"train": 21, "val": 0, "test": 3}
    assert (tmp_path / "prep" / "val.txt").read_text() == ""
    assert "no usable clips in the val split" in caplog.text
    code, out, err = _cli(capsys, "sonify", "train", str(tmp_path / "prep"), "--epochs", "1",
                          "--batch-size", "4", "--out", str(tmp_path / "run"))
    assert code == 0
    assert "best training loss (no validation clips)" in out and "best validation" not in out
    assert "no validation clips" in err and "TRAINING loss" in err  # the warning
    assert read_json(tmp_path / "run" / "run.json")["result"]["val_split"] == "train"


def test_limit_two_gives_train_only_splits_with_a_warning(sonify_library: Path, sonify_cache: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        res = prepare(sonify_library, ENC, COD, 1, tmp_path / "prep", duration=1.0, limit=2, cache_dir=sonify_cache)
    assert res.splits == {"train": 2, "val": 0, "test": 0}
    assert "no usable clips in the val and test splits" in caplog.text
    out = train(tmp_path / "prep", tmp_path / "run", TrainConfig(epochs=1, batch_size=2, tensorboard=False))
    assert out.val_split == "train"


# --------------------------------------------------------------------------- sweep


def test_sweep_duration_limit_and_empty_test_split(sonify_library: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    base = ["sonify", "sweep", str(sonify_library), "--encoder", ENC, "--codec", COD, "--layers", "1",
            "--epochs", "1", "--lr", "1e-2", "--render-limit", "1", "--out", str(out)]
    code, stdout, err = _cli(capsys, *base, "--duration", "0.5")
    assert code == 0, err
    prep_info = read_json(out / "layer=1" / "prep" / "run.json")["prepared"]
    assert prep_info["duration"] == 0.5 and prep_info["emb_shape"][0] == 26  # 0.5 s, not 5 s
    wav = next((out / "layer=1" / "run" / "renders" / "original").glob("*.wav"))
    assert sf.info(str(wav)).frames == 4000  # 0.5 s at the codec's 8 kHz

    # A changed --limit is refused before anything is prepared again …
    index_before = (out / "layer=1" / "prep" / "index.jsonl").read_bytes()
    code, _, err = _cli(capsys, *base, "--duration", "0.5", "--limit", "20")
    assert code == 1 and "no --limit, not --limit 20" in err and len(err.strip().splitlines()) == 1
    assert (out / "layer=1" / "prep" / "index.jsonl").read_bytes() == index_before
    # … as is a changed --duration; the same settings resume.
    code, _, err = _cli(capsys, *base)
    assert code == 1 and "duration" in err
    code, _, err = _cli(capsys, *base, "--duration", "0.5")
    assert code == 0, err

    # A fresh sweep whose test split is empty stops before training the first layer.
    code, _, err = _cli(capsys, *[a if a != str(out) else str(tmp_path / "small") for a in base],
                        "--duration", "0.5", "--limit", "3")
    assert code == 1 and "no usable clips in the test split" in err
    assert not (tmp_path / "small" / "layer=1" / "run").exists()


def test_sweep_keep_length_duration_zero(sonify_library: Path, sonify_cache: Path, tmp_path: Path) -> None:
    rows = sweep(sonify_library, ENC, "1", COD, "lin", tmp_path / "sweep", cfg=TrainConfig(epochs=1, tensorboard=False),
                 duration=None, render_limit=1, cache_dir=sonify_cache)
    assert rows[0]["status"] == "ok"
    assert read_json(tmp_path / "sweep" / "layer=1" / "prep" / "run.json")["prepared"]["duration"] is None


# --------------------------------------------------------------------------- render


def test_render_refuses_multichannel_and_non_finite(trained: Path) -> None:
    loaded = load_run(trained)
    mono = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    stereo = np.stack([mono, mono], axis=1)  # [T, C]
    with pytest.raises(RenderError, match=r"mono \[T\] clip, got shape \(8000, 2\)"):
        render(loaded, stereo, 8000)
    with pytest.raises(RenderError, match="mono"):
        render(loaded, stereo.T, 8000)
    # A single channel in either layout is the mono clip.
    expected = render(loaded, mono, 8000)
    np.testing.assert_array_equal(render(loaded, mono[:, None], 8000), expected)
    np.testing.assert_array_equal(render(loaded, mono[None], 8000), expected)
    bad = mono.copy()
    bad[[10, 20]] = [np.nan, np.inf]
    with pytest.raises(RenderError, match="2 NaN or Inf samples"):
        render(loaded, bad, 8000)
    for rate in (0, -8000, 8000.5):  # used to divide by zero or resample nonsense
        with pytest.raises(RenderError, match=r"sr must be a positive whole number of Hz"):
            render(loaded, mono, rate)
    with pytest.raises(RenderError, match=r"out_sr must be a positive whole number of Hz, got 0"):
        render(loaded, mono, 8000, out_sr=0)


def test_render_cli_names_the_bad_post_option(trained: Path, sonify_library: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    clip = next((sonify_library / "audio").glob("2-*.wav"))
    code, _, err = _cli(capsys, "sonify", "render", str(clip), "--run", str(trained),
                        "--out", str(tmp_path / "o.wav"), "--post", "bogus")
    assert code == 1 and err.startswith("error: --post 'bogus': unknown post-processing step")
    assert str(clip) not in err and not (tmp_path / "o.wav").exists()


def test_renders_manifest_lists_every_post_folder(sonify_prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(sonify_prep, run, TrainConfig(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False))
    render_split(run, "test", ["peak"])
    out = render_split(run, "test", ["minmax"])
    config = read_json(out / "run.json")["config"]
    assert config["folders"] == ["minmax", "peak"] and config["post"] == ["minmax", "peak"]
    render_split(run, "test", ["minmax"], overwrite=True)  # overwrite empties renders/ first
    assert read_json(out / "run.json")["config"]["folders"] == ["minmax"]


def test_interrupted_render_split_records_its_finished_clips(
        trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auralens.sonify import postprocess

    original, calls = postprocess.apply, {"n": 0}

    def hook(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 2:  # the second clip
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(postprocess, "apply", hook)
    with pytest.raises(KeyboardInterrupt):
        render_split(trained, "val", ["peak"], overwrite=True)
    manifest = read_json(trained / "renders" / "run.json")
    assert manifest["status"] == "interrupted" and len(manifest["config"]["clips"]) == 1
    monkeypatch.undo()
    out = render_split(trained, "val", ["peak"])
    manifest = read_json(out / "run.json")
    assert manifest["status"] == "done" and manifest["counts"]["skipped"] == 1
    assert len(manifest["config"]["clips"]) == 3


# --------------------------------------------------------------------------- prepare shapes


def test_keep_length_prepare_records_varying_shapes(sonify_cache: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label, seconds in (("a", 0.5), ("b", 1.0), ("c", 0.8)):
        (data / label).mkdir(parents=True)
        sf.write(str(data / label / "x.wav"), (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32), 8000)
    prepare(data, ENC, COD, 1, tmp_path / "prep", duration=None, cache_dir=sonify_cache)
    info = read_json(tmp_path / "prep" / "run.json")["prepared"]
    assert info["emb_shape"] is None and info["lat_shape"] is None and info["shapes_vary"] is True
    # 0.5 s and 1 s at 8 kHz: toyband's 50 fps gives 26 and 51 frames of 16 dims.
    assert info["emb_shape_min"] == [26, 16] and info["emb_shape_max"] == [51, 16]  # [frames, dim]
    lat = [r["lat_shape"] for r in read_jsonl(tmp_path / "prep" / "index.jsonl")]
    assert info["lat_shape_min"] == [12, min(s[1] for s in lat)] and info["lat_shape_max"] == [12, 63]



def test_render_never_writes_over_its_input(trained: Path, sonify_library: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "mine.wav"
    clip.write_bytes(next((sonify_library / "audio").glob("2-*.wav")).read_bytes())
    before = clip.read_bytes()
    code, _, err = _cli(capsys, "sonify", "render", str(clip), "--run", str(trained), "--out", str(clip))
    assert code == 1 and "is the input audio" in err and clip.read_bytes() == before
