"""`separate train` input checks: data identity, config sections, options the data leaves
unused, validation length, TensorBoard on resume, best checkpoint without MSi, no empty --out."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from factories.separate import MICRO, fuss_manifest_folder

from auralens.cli import main
from auralens.config import ConfigError
from auralens.io import read_json, read_jsonl
from auralens.scene.separate.run import train_config
from auralens.scene.separate.tdcnpp import load_checkpoint, preset, read_header
from auralens.scene.separate.train import (
    TrainConfig,
    TrainError,
    _load_pool,
    train,
)

SR = 16000
CONFIGS = Path(__file__).resolve().parents[2] / "configs"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _lib(root: Path, seed: int) -> Path:
    from auralens.data.synth import synthesize

    return synthesize(root, clips_per_class=2, seed=seed, sample_rate=SR, duration=1.0)


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two procedural ESC-50-layout libraries with the same file names and sizes."""
    root = tmp_path_factory.mktemp("libs")
    return _lib(root / "a", 3), _lib(root / "b", 4)


@pytest.fixture(scope="module")
def fuss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FUSS-layout folder: two train and two validation mixtures of two sources."""
    return fuss_manifest_folder(tmp_path_factory.mktemp("fuss"), {"train": 2, "validation": 2})


def _cfg(kind: str = "esc50", **kw: object) -> TrainConfig:
    base = dict(preset="tiny", model=dict(MICRO), steps=2, steps_per_epoch=2, batch_size=2,
                crop_seconds=0.4, n_val=2, val_seconds=0.5)
    if kind == "esc50":  # the libraries have folds 1 and 2
        base.update(train_folds=[1], val_folds=[2])
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_pool_cache_is_not_reused_for_other_clips(libs, tmp_path):
    a, b = libs
    cache = tmp_path / "cache"
    wa, _ = _load_pool(a, [1], SR, cache)
    wb, _ = _load_pool(b, [1], SR, cache)  # same cache file name: folds and rate alike
    fresh, _ = _load_pool(b, [1], SR, None)
    assert not np.array_equal(wa[0], fresh[0])
    assert all(np.array_equal(x, y) for x, y in zip(wb, fresh, strict=True))
    again, _ = _load_pool(b, [1], SR, cache)  # and reused for the same clips
    assert all(np.array_equal(x, y) for x, y in zip(again, fresh, strict=True))


def test_resume_with_other_data_is_refused(libs, tmp_path, caplog, monkeypatch):
    a, b = libs
    run = tmp_path / "run"
    train(a, run, _cfg())
    with pytest.raises(TrainError, match=r"holds other data .*use another --out"):
        train(b, run, _cfg(steps=4))
    assert [h["step"] for h in read_jsonl(run / "history.jsonl")] == [2]
    shutil.copytree(a, tmp_path / "copy")  # the same clips elsewhere, named relatively: a warning
    monkeypatch.chdir(tmp_path)
    assert train(Path("copy"), run, _cfg(steps=4))["step"] == 4
    assert "the same files" in caplog.text


def test_config_keys_beside_train_are_refused(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 2\nmodel: {repeats: 3}\nstepz: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: top-level key\(s\) \['model', 'stepz'\] beside 'train:'"):
        train_config(path)
    path.write_text("steps: 2\nstepz: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown training option\(s\) \['stepz'\]"):
        train_config(path)
    assert main(["separate", "train", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--config", str(path)]) == 1
    assert capsys.readouterr().err.strip().startswith("error:")
    for shipped in sorted(CONFIGS.glob("separate-*.yaml")):
        train_config(shipped)


@pytest.mark.parametrize(("kind", "sets", "message"), [
    ("fuss", {"recipe": "fuss"}, "recipe 'fuss' .applies to ESC-50 DATA only"),
    ("fuss", {"rooms": 3, "recipe_seconds": 2.0}, "rooms 3 .*recipe_seconds 2.0"),
    ("fuss", {"gain_db_min": -40.0}, "gain_db_min -40.0 .*none is given"),
    ("fuss", {"count_weights": [0, 0, 0, 1]}, r"count_weights \[0, 0, 0, 1\] .*none is given"),
    ("fuss", {"val_folds": [3]}, "val_folds"),
    ("esc50", {"dynamic_data": "x", "dynamic_share": 1.0}, "dynamic_data 'x' .*dynamic_share 1.0"),
    ("esc50", {"rooms": 3}, "rooms 3 .applies with recipe 'fuss' only"),
    ("esc50", {"recipe": "fuss", "gain_db_min": -40.0}, "gain_db_min -40.0 .applies with recipe 'dry'"),
    ("esc50", {"max_sources": 9}, "max_sources 9 is more than the model's 4 outputs"),
    ("esc50", {"max_sources": 2, "count_weights": [1, 1, 1]}, "count_weights has 3 entries .* max_sources is 2"),
])
def test_options_the_data_leaves_unused_are_refused(libs, fuss, tmp_path, kind, sets, message):
    data = libs[0] if kind == "esc50" else fuss
    with pytest.raises(TrainError, match=message):
        train(data, tmp_path / "r", _cfg(kind, **sets))
    assert not (tmp_path / "r").exists()


def test_shipped_configs_pass_on_their_data():
    from auralens.scene.separate.train import check_options

    for name, kind in [("separate-tiny.yaml", "esc50"), ("separate-tiny-classes.yaml", "esc50"),
                       ("separate-tiny-fuss-ft.yaml", "esc50"), ("separate-tiny-ft.yaml", "fuss"),
                       ("separate-fuss.yaml", "fuss")]:
        cfg = train_config(CONFIGS / name)
        assert check_options(cfg, kind, Path("DATA"), preset(cfg.preset).num_sources) == []
    # count_weights with FUSS data shapes the dynamic_data share only, and says so
    notes = check_options(_cfg("fuss", dynamic_data="esc", count_weights=[1, 1]), "fuss", Path("DATA"), 4)
    assert "only the dynamic_data mixtures" in notes[0]


def test_short_validation_and_missing_inputs_leave_no_run_folder(libs, tmp_path, capsys):
    with pytest.raises(TrainError, match="val_seconds 0.01 is shorter than one STFT window"):
        train(libs[0], tmp_path / "r1", _cfg(val_seconds=0.01))
    with pytest.raises(TrainError, match="training data not found"):
        train(tmp_path / "missing", tmp_path / "r2", _cfg())
    assert main(["separate", "train", str(tmp_path / "missing"), "--out", str(tmp_path / "r3")]) == 1
    assert capsys.readouterr().err.strip().startswith("error:")
    import torch

    from auralens.errors import CheckpointMismatchError
    from auralens.scene.separate.tdcnpp import TDCNpp, save_checkpoint

    torch.manual_seed(0)
    other = save_checkpoint(tmp_path / "o.safetensors", TDCNpp(preset("tiny", **{**MICRO, "bottleneck": 8})))
    with pytest.raises(CheckpointMismatchError):
        train(libs[0], tmp_path / "r4", _cfg(), init=other)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("r")]


def test_tensorboard_logs_redone_steps_once(libs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, saved = tmp_path / "run", tmp_path / "saved"
    train(libs[0], run, _cfg())
    saved.mkdir()
    for name in ("last.safetensors", "last_state.pt", "history.jsonl", "best.safetensors"):
        shutil.copy(run / name, saved / name)
    train(libs[0], run, _cfg(steps=4))
    for name in ("last.safetensors", "last_state.pt", "history.jsonl", "best.safetensors"):
        shutil.copy(saved / name, run / name)  # as if killed before the step-4 checkpoint
    train(libs[0], run, _cfg(steps=4))
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in acc.Scalars("val/MSi")] == [2, 4]


def test_best_follows_latest_epoch_without_validation_msi(libs, tmp_path, caplog):
    cfg = _cfg(n_val=1, steps=2, steps_per_epoch=1)
    train(libs[0], tmp_path / "run", cfg)
    run = read_json(tmp_path / "run" / "run.json")
    assert "validation MSi is undefined" in caplog.text
    assert any("latest epoch" in n for n in run["notes"])
    assert run["best_by"].startswith("latest epoch") and run["best"]["step"] == 2
    assert read_header(tmp_path / "run" / "best.safetensors")["step"] == 2
    load_checkpoint(tmp_path / "run" / "best.safetensors")
