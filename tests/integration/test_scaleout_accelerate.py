"""Gate training under ``accelerate launch --multi_gpu --num_processes 2`` on CPUs (gloo).

``accelerate launch --cpu`` starts a single process unless MPI is set up; the torchrun-based
multi-process launcher with ``ACCELERATE_USE_CPU=1`` gives two gloo CPU processes.

The two-process run splits each global batch across the processes and weights their losses so
the averaged gradient is the one-process gradient; it must therefore end close to the
one-process run on the same prepared data (differences: float summation order only).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from launch import ACCELERATE, accelerate_env, accelerate_two_cpu, cli_two_cpu

from auralens.io import read_json, read_jsonl


@pytest.fixture(scope="module")
def prepared(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """11 procedural 1 s clips → tiny HuBERT layer 1 embeddings + mel latents."""
    from auralens.data.synth import synthesize
    from auralens.sonify.prepare import prepare

    root = tmp_path_factory.mktemp("scaleout-prep")
    synthesize(root / "lib", clips_per_class=1, seed=5, sample_rate=16000, duration=1.0)
    prepare(root / "lib", f"hubert:{tiny_model('hubert')}", "mel", 1, root / "prep", duration=1.0,
            batch_size=11, cache_dir=root / "cache")
    return root / "prep"


def _train_args(prep: Path, out: Path) -> list[str]:
    # batch 3 over 2 processes: uneven shares (2 + 1) and, for the last batch of one clip,
    # a process with nothing to do — both paths are exercised.
    return ["sonify", "train", str(prep), "--out", str(out), "--gate", "conv", "--lr", "1e-2",
            "--epochs", "2", "--batch-size", "3", "--grad-accum", "2", "--eval-batch-size", "2",
            "--device", "cpu", "--seed", "3"]


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_process_training_matches_one_process(prepared: Path, tmp_path: Path) -> None:
    from auralens.sonify.train import TrainConfig, train

    single = tmp_path / "single"
    t0 = time.perf_counter()
    train(prepared, single, TrainConfig(gate="conv", lr=1e-2, epochs=2, batch_size=3, grad_accum=2,
                                        eval_batch_size=2, device="cpu", seed=3, tensorboard=False))
    t_single = time.perf_counter() - t0

    multi = tmp_path / "multi"
    cmd = cli_two_cpu(*_train_args(prepared, multi))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=accelerate_env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    t_multi = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]

    hist = read_jsonl(multi / "history.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2]  # written once, by the main process only
    run = read_json(multi / "run.json")
    assert run["result"]["status"] == "ok" and run["result"]["num_processes"] == 2
    assert (multi / "best.safetensors").is_file() and (multi / "last.safetensors").is_file()

    ref = read_jsonl(single / "history.jsonl")
    for a, b in zip(ref, hist, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3), (ref, hist)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3), (ref, hist)
    # The losses moved: the two runs agree on a trajectory, not on an untrained model.
    assert hist[-1]["val_loss"] != pytest.approx(hist[0]["val_loss"], rel=1e-6)
    print(json.dumps({"single_s": round(t_single, 1), "two_process_s": round(t_multi, 1)}))


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_process_resume_continues(prepared: Path, tmp_path: Path) -> None:
    """A 1-epoch single-process run resumed for a second epoch under two processes."""
    from auralens.sonify.train import TrainConfig, train

    run = tmp_path / "run"
    train(prepared, run, TrainConfig(gate="conv", lr=1e-2, epochs=1, batch_size=3, grad_accum=2,
                                     eval_batch_size=2, device="cpu", seed=3, tensorboard=False))
    full = tmp_path / "full"
    train(prepared, full, TrainConfig(gate="conv", lr=1e-2, epochs=2, batch_size=3, grad_accum=2,
                                      eval_batch_size=2, device="cpu", seed=3, tensorboard=False))
    cmd = cli_two_cpu(*_train_args(prepared, run), "--resume")
    proc = subprocess.run(cmd, env=accelerate_env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    hist = read_jsonl(run / "history.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2]
    ref = read_jsonl(full / "history.jsonl")
    assert hist[1]["val_loss"] == pytest.approx(ref[1]["val_loss"], rel=1e-3)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


_CLASSIFIER_SCRIPT = """
import json, sys
from auralens.encoders.train_classifier import ClassifierConfig, train_classifier
cfg = ClassifierConfig(**json.loads(sys.argv[3]))
train_classifier(sys.argv[1], sys.argv[2], cfg)
"""


def test_two_process_classifier_matches_one_process(tmp_path: Path) -> None:
    """AST classifier: augmentation + mixup on, batch 3 over 2 processes, 2 epochs."""
    from auralens.encoders.train_classifier import train_classifier
    from tests.unit.test_classifier import _dataset

    data = tmp_path / "data"
    _dataset(data, per_class=2)  # 4 train clips, 4 validation clips
    kw = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, num_mel_bins=32,
              max_length=64, patch_stride=16, epochs=2, batch_size=3, lr=3e-3, warmup_epochs=0.5,
              augment=True, mixup=0.3, dropout=0.0, save_dtype="float32", threads=1)
    from auralens.encoders.train_classifier import ClassifierConfig

    ref = train_classifier(data, tmp_path / "single", ClassifierConfig(**kw))
    script = tmp_path / "train_clf.py"
    script.write_text(_CLASSIFIER_SCRIPT)
    cmd = accelerate_two_cpu(str(script), str(data), str(tmp_path / "multi"), json.dumps(kw))
    proc = subprocess.run(cmd, env=accelerate_env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    hist = read_json(tmp_path / "multi" / "history.json")
    assert [h["epoch"] for h in hist] == [1, 2]
    assert read_json(tmp_path / "multi" / "run.json")["result"]["num_processes"] == 2
    for a, b in zip(ref["history"], hist, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3), (ref["history"], hist)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3), (ref["history"], hist)
        assert b["val_accuracy"] == a["val_accuracy"]
    assert not list((tmp_path / "multi").glob(".errors.rank*"))


_GROUP_SCRIPT = """
import atexit, os, sys, torch
out = sys.argv[1]
rank = os.environ["RANK"]
# Registered before the accelerator, so it runs after make_accelerator's exit hook (LIFO).
atexit.register(lambda: open(f"{out}/exit-{rank}.txt", "w").write(str(torch.distributed.is_initialized())))
from auralens.distributed import make_accelerator, sum_across
acc = make_accelerator()
make_accelerator()  # a second run in the same process (a sweep) shares the group
open(f"{out}/sum-{rank}.txt", "w").write(str(sum_across(acc, 1.0 + acc.process_index)))
"""


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_process_group_is_torn_down_at_exit(tmp_path: Path) -> None:
    """A gloo group left to interpreter teardown once aborted a rank after its work was done."""
    script = tmp_path / "group.py"
    script.write_text(_GROUP_SCRIPT)
    proc = subprocess.run(accelerate_two_cpu(str(script), str(tmp_path)),
                          env=accelerate_env(tmp_path / "cache"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # one file per rank: the two processes' stdout lines can interleave
    for rank in (0, 1):
        assert (tmp_path / f"sum-{rank}.txt").read_text() == "[3.0]"
        assert (tmp_path / f"exit-{rank}.txt").read_text() == "False"
