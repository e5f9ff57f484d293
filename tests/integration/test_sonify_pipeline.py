"""prepare → train → render on a tiny procedural library with weight-free test doubles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from auralens.data import DatasetError
from auralens.errors import CheckpointMismatchError
from auralens.io import read_json, read_jsonl
from auralens.sonify.cli import app
from auralens.sonify.prepare import PrepareError, load_prepared, prepare
from auralens.sonify.render import load_run, render, render_split
from auralens.sonify.sweep import sweep
from auralens.sonify.train import NonFiniteLossError, TrainConfig, train, train_grid

ENC, COD = "toyband", "toyband"


pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def prep(sonify_prep: Path) -> Path:
    return sonify_prep


@pytest.fixture(scope="module")
def trained(prep: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "lin"
    train(prep, run, TrainConfig(gate="lin", lr=1e-2, epochs=12, batch_size=4))
    return run


def test_prepare_writes_index_splits_and_errors(prep: Path) -> None:
    index = read_jsonl(prep / "index.jsonl")
    assert len(index) == 24  # 3 classes × 8, the corrupt file skipped
    errors = read_jsonl(prep / "errors.jsonl")
    assert len(errors) == 1 and "bad0" in errors[0]["item"]
    splits = {n: (prep / f"{n}.txt").read_text().split() for n in ("train", "val", "test")}
    assert [len(splits[n]) for n in ("train", "val", "test")] == [18, 3, 3]  # usable clips only
    info = read_json(prep / "run.json")["prepared"]
    assert info["splits"] == {"train": 18, "val": 3, "test": 3}  # usable clips per split
    assert info["extractor"]["layer"] == 1 and info["codec"]["name"].startswith("toyband-codec")
    # 1 s at 8 kHz: toy extractor 50 fps (hop 160) → 51 frames of 16 dims; codec hop 128 → 63 frames.
    assert info["emb_shape"] == [51, 16] and info["lat_shape"] == [12, 63]
    data = load_prepared(prep)
    assert data.emb["train"].shape == (18, 16, 51)  # channel-first, as the gates expect
    assert data.lat["val"].shape == (3, 12, 63)


def test_second_prepare_hits_the_cache(prep: Path, sonify_library: Path, sonify_cache: Path, tmp_path: Path) -> None:
    entries = sorted(sonify_cache.rglob("*.safetensors"))
    mtimes = [p.stat().st_mtime_ns for p in entries]
    res = prepare(sonify_library, ENC, COD, 1, tmp_path / "again", duration=1.0, cache_dir=sonify_cache)
    assert (res.computed_embeddings, res.computed_latents) == (0, 0) and res.n_ok == 24
    assert [p.stat().st_mtime_ns for p in sorted(sonify_cache.rglob("*.safetensors"))] == mtimes
    # Another layer is another key: embeddings are recomputed, latents reused.
    res2 = prepare(sonify_library, ENC, COD, 2, tmp_path / "layer2", duration=1.0, cache_dir=sonify_cache)
    assert (res2.computed_embeddings, res2.computed_latents) == (24, 0)


def test_training_loss_falls_and_run_layout(trained: Path) -> None:
    hist = read_jsonl(trained / "history.jsonl")
    assert [h["epoch"] for h in hist] == list(range(1, 13))
    assert set(hist[0]) == {"epoch", "train_loss", "val_loss", "lr", "time_s"}
    assert min(h["val_loss"] for h in hist) < 0.25 * hist[0]["val_loss"]
    for name in ("run.json", "best.safetensors", "last.safetensors"):
        assert (trained / name).exists()
    assert any((trained / "tb").iterdir())
    cfg = read_json(trained / "run.json")
    assert cfg["config"]["encoder"] == ENC and cfg["config"]["codec"] == COD
    assert cfg["config"]["layer"] == 1 and cfg["config"]["gate"] == "v0" and cfg["config"]["epochs"] == 12
    assert cfg["result"]["status"] == "ok"
    assert cfg["result"]["best_val_loss"] == pytest.approx(min(h["val_loss"] for h in hist))


def test_render_is_finite_with_original_length(trained: Path) -> None:
    loaded = load_run(trained)
    rng = np.random.default_rng(0)
    for n, sr in ((16000, 16000), (11025, 22050), (8000, 8000)):
        wave = (0.1 * rng.standard_normal(n)).astype(np.float32)
        out = render(loaded, wave, sr, post="minmax")
        assert out.shape == (round(n * 8000 / sr),) and np.all(np.isfinite(out))
        assert render(loaded, wave, sr, post="none", out_sr=sr).shape == (n,)
    silent = render(loaded, np.zeros(16000, np.float32), 16000, post="minmax,wiener")
    assert np.all(np.isfinite(silent)) and silent.shape == (8000,)


def test_render_split_layout_and_resume(trained: Path) -> None:
    out = render_split(trained, "test", ["minmax", "none"])
    for folder in ("original", "ceiling", "minmax", "none"):
        assert len(list((out / folder).glob("*.wav"))) == 3
    counts = read_json(out / "run.json")["counts"]
    assert counts["rendered"] == 3
    render_split(trained, "test", ["minmax", "none"])
    assert read_json(out / "run.json")["counts"]["skipped"] == 3


def test_resume_continues_from_last_epoch(prep: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(gate="conv", lr=5e-3, epochs=2, batch_size=8, tensorboard=False)
    train(prep, tmp_path / "run", cfg)
    assert train(prep, tmp_path / "run", cfg).already_finished  # the same call again: nothing to do
    cfg.epochs = 4
    res = train(prep, tmp_path / "run", cfg, resume=True)
    hist = read_jsonl(tmp_path / "run" / "history.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and res.epochs_run == 4
    # Same result as an uninterrupted 4-epoch run (batch order and RNG state are restored).
    full = train(prep, tmp_path / "full", TrainConfig(gate="conv", lr=5e-3, epochs=4, batch_size=8,
                                                      tensorboard=False))
    assert full.best_val_loss == pytest.approx(res.best_val_loss, rel=1e-4)


def test_non_finite_loss_stops_and_grid_continues(prep: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match="non-finite|became"):
        train(prep, tmp_path / "boom", TrainConfig(gate="lin", lr=1e6, epochs=3, batch_size=4, tensorboard=False))
    assert read_json(tmp_path / "boom" / "run.json")["result"]["status"] == "diverged"
    results = train_grid(prep, tmp_path / "grid", TrainConfig(gate="lin", epochs=2, batch_size=4, tensorboard=False),
                         [1e6, 1e-2])
    assert [r.status for r in results] == ["diverged", "ok"]
    assert (tmp_path / "grid" / "lr=0.01" / "best.safetensors").exists()
    assert "diverged" in (tmp_path / "grid" / "summary.csv").read_text()
    assert "Best: lr=0.01" in (tmp_path / "grid" / "summary.md").read_text()
    # An lr grid directory renders with its best run.
    assert load_run(tmp_path / "grid").run_dir.name == "lr=0.01"


def test_normalize_and_blur_ablation_renders(prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "norm"
    train(prep, run, TrainConfig(gate="lin-r", lr=1e-2, epochs=2, batch_size=4, normalize="minmax",
                                 blur=True, tensorboard=False))
    loaded = load_run(run)
    assert loaded.header["normalize"] == "minmax" and set(loaded.norm) >= {"lat_min", "lat_max"}
    out = render(loaded, np.ones(16000, np.float32) * 0.1, 16000)
    assert np.all(np.isfinite(out)) and out.shape == (8000,)


def test_checkpoint_mismatch_is_refused(trained: Path) -> None:
    with pytest.raises(CheckpointMismatchError, match="extractor"):
        load_run(trained, encoder="toyband@dim=8")
    with pytest.raises(CheckpointMismatchError, match="codec"):
        load_run(trained, codec="toyband@bands=6")


def test_prepare_rejects_empty_dataset(tmp_path: Path, sonify_cache: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no audio files found \(looked for \.aac, .*\.wav, \.webm\)$"):
        prepare(tmp_path / "empty", ENC, COD, 1, tmp_path / "p", cache_dir=sonify_cache)
    with pytest.raises(PrepareError, match="dtype"):
        prepare(tmp_path / "empty", ENC, COD, 1, tmp_path / "p", dtype="int8", cache_dir=sonify_cache)
    for bad in (float("nan"), -1.0, 0.0, float("inf")):
        with pytest.raises(PrepareError, match="--duration must be a positive number"):
            prepare(tmp_path / "empty", ENC, COD, 1, tmp_path / "p2", duration=bad, cache_dir=sonify_cache)
    assert not (tmp_path / "p2").exists()


def test_sweep_two_layers(sonify_library: Path, sonify_cache: Path, tmp_path: Path) -> None:
    rows = sweep(sonify_library, ENC, "features,2", COD, "lin", tmp_path / "sweep",
                 cfg=TrainConfig(lr=1e-2, epochs=2, batch_size=4, tensorboard=False),
                 duration=1.0, render_limit=2, cache_dir=sonify_cache)
    assert [r["layer"] for r in rows] == ["features", "2"] and all(r["status"] == "ok" for r in rows)
    names = [sorted(p.name for p in (tmp_path / "sweep" / f"layer={x}" / "run" / "renders" / "minmax").glob("*.wav"))
             for x in ("features", 2)]
    assert names[0] == names[1] and len(names[0]) == 2  # the same test clips for every layer
    assert "features" in (tmp_path / "sweep" / "summary.md").read_text()
    record = json.loads((tmp_path / "sweep" / "run.json").read_text())
    assert record["status"] == "done" and [r["layer"] for r in record["layers"]] == ["features", "2"]


def test_a_sweep_stopped_part_way_leaves_a_running_record(sonify_library: Path, sonify_cache: Path,
                                                          tmp_path: Path, monkeypatch) -> None:
    """The layer folders of a killed sweep are described by its run.json from the start."""
    import auralens.sonify.sweep as sweep_mod

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_mod, "train", stop)
    with pytest.raises(KeyboardInterrupt):
        sweep(sonify_library, ENC, "features,2", COD, "lin", tmp_path / "sweep",
              cfg=TrainConfig(lr=1e-2, epochs=2, batch_size=4, tensorboard=False),
              duration=1.0, render_limit=2, cache_dir=sonify_cache)
    record = json.loads((tmp_path / "sweep" / "run.json").read_text())
    assert record["status"] == "running" and record["command"] == "sonify sweep"
    assert record["config"]["layers"] == ["features", "2"] and record["config"]["gate"] == "lin"


def test_cli_train_and_render(prep: Path, tmp_path: Path, sonify_library: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(prep), "--gate", "v9", "--out", str(tmp_path / "run"),
                              "--epochs", "2", "--lr", "1e-2", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert "best validation loss" in res.output
    clip = next((sonify_library / "audio").glob("2-*.wav"))
    res = runner.invoke(app, ["render", str(clip), "--run", str(tmp_path / "run"),
                              "--out", str(tmp_path / "out.wav"), "--post", "minmax,wiener"])
    assert res.exit_code == 0, res.output
    import soundfile as sf

    info = sf.info(str(tmp_path / "out.wav"))
    assert info.samplerate == 8000 and info.frames == 8000
    res = runner.invoke(app, ["render", "--run", str(tmp_path / "run"), "--split", "val",
                              "--post", "minmax", "--post", "peak,square"])
    assert res.exit_code == 0, res.output
    for folder in ("original", "ceiling", "minmax", "peak+square"):
        assert len(list((tmp_path / "run" / "renders" / folder).glob("*.wav"))) == 3
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0 and "--normalize" in res.output
    assert json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[-1])["epoch"] == 2


def test_cli_config_preset_and_explicit_flags(prep: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "preset.yaml"
    cfg.write_text("train:\n  gate: lin-d\n  epochs: 1\n  batch_size: 4\n  lr: '2e-2'\n")
    res = CliRunner().invoke(app, ["train", str(prep), "--config", str(cfg), "--epochs", "2",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    conf = read_json(tmp_path / "run" / "run.json")["config"]
    assert (conf["gate"], conf["epochs"], conf["batch_size"], conf["lr"]) == ("v9", 2, 4, 0.02)
    cfg.write_text("train:\n  epochz: 3\n")
    res = CliRunner().invoke(app, ["train", str(prep), "--config", str(cfg), "--out", str(tmp_path / "r2")])
    assert res.exit_code != 0 and "epochz" in str(res.exception)


@pytest.mark.parametrize("text, match", [
    ("train:\n  batch_size: abc\n", "train.batch_size: .*integer"),
    ("train:\n  seed: -1\n", "train.seed: .*greater than or equal to 0"),
    ("train:\n  epochs: [3]\n", "train.epochs must be a single value"),
    ("train:\n  epochs: 1\nrender:\n  post: x\n", "unknown section.*render"),
])
def test_cli_config_values_are_checked_like_flags(prep: Path, tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "preset.yaml"
    cfg.write_text(text)
    res = CliRunner().invoke(app, ["train", str(prep), "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code != 0 and re.search(match, str(res.exception)), res.output
    assert str(cfg) in str(res.exception) and not (tmp_path / "run").exists()


def test_shipped_presets_use_known_options() -> None:
    from dataclasses import fields

    from auralens.config import load_yaml
    from auralens.sonify.train import TrainConfig

    root = Path(__file__).resolve().parents[2] / "configs"
    train_keys = {f.name for f in fields(TrainConfig)}
    prep_keys = {"encoder", "layer", "codec", "seed", "batch_size", "duration", "dtype", "limit"}
    for name in ("sonify-offline.yaml", "sonify-study.yaml"):
        preset = load_yaml(root / name)
        assert set(preset["train"]) <= train_keys and set(preset["prepare"]) <= prep_keys
        assert preset["train"]["batch_size"] == 64 and preset["train"]["grad_accum"] == 2
