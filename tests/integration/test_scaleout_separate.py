"""TDCN++ training under ``accelerate launch --multi_gpu --num_processes 2`` on CPUs (gloo).

Every process draws the same whole batch from the seeded generator and trains on its share,
with the loss weighted so the averaged gradient is the one-process gradient. The two-process
run must therefore follow the one-process run (differences: float summation order and the
batch composition of the forward passes), record each epoch once and write its files once.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from launch import ACCELERATE, accelerate_env, cli_two_cpu

from auralens.io import read_json, read_jsonl

MICRO_MODEL = {"bottleneck": 16, "conv_channels": 32, "blocks_per_repeat": 2, "repeats": 2}
# batch 3 over 2 processes: uneven shares (2 + 1); 3 validation mixtures split 2 + 1.
SETTINGS = {"preset": "tiny", "model": MICRO_MODEL, "steps": 4, "steps_per_epoch": 2, "batch_size": 3,
            "crop_seconds": 0.5, "n_val": 3, "val_seconds": 0.5, "train_folds": [1], "val_folds": [2],
            "threads": 1, "seed": 0, "lr": 3e-3, "device": "cpu"}






@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """22 procedural 1 s clips at 16 kHz (11 classes × 2, folds 1 and 2)."""
    from auralens.data.synth import synthesize

    root = tmp_path_factory.mktemp("scaleout-sep")
    synthesize(root / "lib", clips_per_class=2, seed=3, sample_rate=16000, duration=1.0)
    return root / "lib"


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_process_separation_training_matches_one_process(library: Path, tmp_path: Path) -> None:
    import yaml

    from auralens.scene.separate.run import train_config
    from auralens.scene.separate.train import train

    cfg_path = tmp_path / "sep.yaml"
    cfg_path.write_text(yaml.safe_dump({"train": SETTINGS}))
    t0 = time.perf_counter()
    train(library, tmp_path / "single", train_config(cfg_path))
    t_single = time.perf_counter() - t0

    multi = tmp_path / "multi"
    cmd = cli_two_cpu("separate", "train", str(library), "--config", str(cfg_path),
                      "--out", str(multi))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=accelerate_env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    t_multi = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]

    hist = read_jsonl(multi / "history.jsonl")
    assert [h["step"] for h in hist] == [2, 4]  # written once, by the main process only
    run = read_json(multi / "run.json")
    assert run["num_processes"] == 2 and run["last"]["step"] == 4
    assert (multi / "best.safetensors").is_file() and (multi / "last.safetensors").is_file()

    ref = read_jsonl(tmp_path / "single" / "history.jsonl")
    for a, b in zip(ref, hist, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4, abs=1e-4), (ref, hist)
        assert b["val_MSi"] == pytest.approx(a["val_MSi"], abs=1e-3), (ref, hist)
        assert b["val_1S"] == pytest.approx(a["val_1S"], abs=1e-3), (ref, hist)
    # Training moved the model: the runs agree on a trajectory, not on an untrained model.
    assert hist[-1]["train_loss"] != pytest.approx(hist[0]["train_loss"], rel=1e-4)
    print(json.dumps({"single_s": round(t_single, 1), "two_process_s": round(t_multi, 1),
                      "single": ref, "two_process": hist}))
