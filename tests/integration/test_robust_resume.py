"""Kill-and-resume: long CLI jobs SIGKILLed mid-run and started again.

Each test runs the real command line in a subprocess (``python -m auralens.cli …``), waits for
the first finished item (a cache entry, a checkpoint, a result line), SIGKILLs the process,
runs the same command again and checks:

* nothing the killed run wrote is corrupt (every cache entry / checkpoint loads);
* finished work is kept (the resumed run recomputes only what was missing);
* deterministic stages end exactly where an uninterrupted run ends (prepared arrays
  bit-identical, ``imagine batch`` results equal modulo timings, training histories with every
  epoch exactly once and the same losses).

Subprocesses run with one BLAS/OpenMP thread so results are bit-comparable between runs and
the machine is not oversubscribed. Sizes are tiny: 1 s clips, a few epochs, tiny models.

A second group reproduces, without any timing luck, the state a kill leaves inside the short
windows between two writes of one step; those tests document races in the job code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from auralens.io import append_jsonl, read_jsonl

CLI = [sys.executable, "-m", "auralens.cli"]
MICRO_MODEL = {"bottleneck": 16, "conv_channels": 32, "blocks_per_repeat": 2, "repeats": 2}


# --------------------------------------------------------------------------- helpers


def cli_env(cache: Path) -> dict[str, str]:
    """Environment of a CLI subprocess: its own cache, offline, one thread, no bars."""
    env = dict(os.environ)
    env.update(AURALENS_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               AURALENS_NO_PROGRESS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"auralens {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}"
    return proc


def kill_when(args: list[str], env: dict[str, str], ready: Callable[[], bool],
              timeout: float = 240) -> None:
    """Start the CLI, SIGKILL it as soon as ``ready()`` is true; fail if it ends first."""
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"auralens {' '.join(args[:2])}: nothing finished in {timeout} s")
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"auralens {' '.join(args[:2])} ended (rc {proc.returncode}) before it "
                         f"could be killed mid-run; make the job longer\n{err[-2000:]}")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run an in-process reference with the subprocesses' single torch and BLAS thread
    (float sums depend on the thread count, and the comparisons below are bit-exact)."""
    import torch

    threadpoolctl = pytest.importorskip("threadpoolctl")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpoolctl.threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(n)


def cache_entries(root: Path) -> list[Path]:
    """Cache entries (temporary files of interrupted writes start with a dot)."""
    return sorted(p for p in root.rglob("*.safetensors") if not p.name.startswith("."))


def load_all(paths: list[Path]) -> None:
    from safetensors.numpy import load_file

    for p in paths:
        arrays = load_file(str(p))  # raises on a truncated or garbled entry
        assert arrays and all(np.all(np.isfinite(a)) for a in arrays.values()), p


def complete_lines(path: Path) -> list[dict]:
    """JSON lines that parse (a killed writer may leave one truncated last line)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """22 procedural 1 s clips at 16 kHz (11 classes × 2, folds 1 and 2), made by the CLI."""
    root = tmp_path_factory.mktemp("robust-lib")
    run_cli(["data", "synth", "--out", str(root / "lib"), "--clips-per-class", "2",
             "--duration", "1", "--sample-rate", "16000", "--seed", "3"], cli_env(root / "cache"))
    return root / "lib"


@pytest.fixture(scope="module")
def fuss(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 dry 1 s mixtures of 1–2 sources in FUSS layout, made by the CLI."""
    root = tmp_path_factory.mktemp("robust-fuss")
    run_cli(["data", "mix", str(library), "--out", str(root / "fuss"), "--n", "6", "--duration", "1",
             "--no-reverb", "--max-sources", "2", "--sample-rate", "16000", "--seed", "1"],
            cli_env(root / "cache"))
    return root / "fuss"


@pytest.fixture(scope="module")
def prepared(library: Path, tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PREP directory (tiny HuBERT layer 1 + mel codec) made in-process."""
    from auralens.sonify.prepare import prepare

    root = tmp_path_factory.mktemp("robust-prep")
    prepare(library, f"hubert:{tiny_model('hubert')}", "mel", 1, root / "prep", duration=1.0,
            batch_size=11, cache_dir=root / "cache")
    return root / "prep"


def _prepare_args(library: Path, hubert: Path, out: Path) -> list[str]:
    return ["sonify", "prepare", str(library), "--encoder", f"hubert:{hubert}", "--layer", "1",
            "--codec", "mel", "--duration", "1", "--batch-size", "1", "--out", str(out)]


# --------------------------------------------------------------------------- kill and resume


def test_prepare_killed_then_resumed_is_bit_identical(library: Path, tiny_model, tmp_path: Path) -> None:
    from auralens.sonify.prepare import prepare

    hubert = tiny_model("hubert")
    ref_cache, cache = tmp_path / "ref-cache", tmp_path / "cache"
    with one_thread():  # the uninterrupted reference, in-process
        prepare(library, f"hubert:{hubert}", "mel", 1, tmp_path / "ref", duration=1.0,
                batch_size=1, cache_dir=ref_cache)
    n = len(read_jsonl(tmp_path / "ref" / "index.jsonl"))
    assert n == 22

    args = _prepare_args(library, hubert, tmp_path / "prep")
    kill_when(args, cli_env(cache), lambda: bool(cache_entries(cache / "latents")))
    emb_before, lat_before = cache_entries(cache / "embeddings"), cache_entries(cache / "latents")
    load_all(emb_before + lat_before)  # the kill left no corrupt entry behind
    assert 1 <= len(lat_before) < n, "the kill must land mid-run"

    out = run_cli(args, cli_env(cache)).stdout
    m = re.search(r"prepared (\d+)/(\d+) clips .*\((\d+) embeddings and (\d+) latents computed", out)
    assert m, out
    ok, total, emb_new, lat_new = map(int, m.groups())
    assert ok == total == n
    # finished clips were reused, only the missing ones computed
    assert (emb_new, lat_new) == (n - len(emb_before), n - len(lat_before))

    ref_index = read_jsonl(tmp_path / "ref" / "index.jsonl")
    index = read_jsonl(tmp_path / "prep" / "index.jsonl")
    assert index == ref_index
    for name in ("train.txt", "val.txt", "test.txt"):
        assert (tmp_path / "prep" / name).read_text() == (tmp_path / "ref" / name).read_text()
    from safetensors.numpy import load_file

    for rec in index:
        for kind, key in (("embeddings", rec["emb_key"]), ("latents", rec["lat_key"])):
            rel = Path(kind) / key[:2] / f"{key}.safetensors"
            a, b = load_file(str(cache / rel)), load_file(str(ref_cache / rel))
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), (rec["id"], kind)
    load_all(cache_entries(cache))


def test_sonify_train_killed_then_resumed(prepared: Path, tmp_path: Path) -> None:
    from auralens.sonify import checkpoint as ckpt
    from auralens.sonify.train import TrainConfig, train

    epochs = 12

    def args(out: Path, *extra: str) -> list[str]:
        return ["sonify", "train", str(prepared), "--gate", "lin", "--epochs", str(epochs),
                "--batch-size", "4", "--grad-accum", "1", "--lr", "1e-2", "--device", "cpu",
                "--out", str(out), *extra]

    env = cli_env(tmp_path / "cache")
    with one_thread():  # the same settings the command line uses
        train(prepared, tmp_path / "ref", TrainConfig(gate="lin", lr=1e-2, epochs=epochs, batch_size=4,
                                                      grad_accum=1, device="cpu", tensorboard=False))
    run = tmp_path / "run"
    # Each epoch writes its history line, then its checkpoint. Once two lines exist, epoch 1's
    # checkpoint surely does: kill then (a later epoch is training or being recorded); the
    # history→checkpoint window itself is reproduced further down.
    kill_when(args(run), env, lambda: len(complete_lines(run / "history.jsonl")) >= 2)
    last = ckpt.load(run / "last.safetensors")  # loads: written atomically
    done = int(last.header["epoch"])
    hist = complete_lines(run / "history.jsonl")
    assert 1 <= done < epochs
    assert [h["epoch"] for h in hist] in (list(range(1, done + 1)), list(range(1, done + 2)))

    run_cli(args(run, "--resume"), env)
    hist = read_jsonl(run / "history.jsonl")
    ref = read_jsonl(tmp_path / "ref" / "history.jsonl")
    assert [h["epoch"] for h in hist] == list(range(1, epochs + 1))  # every epoch exactly once
    # same batches, optimizer state and RNG: the losses of an uninterrupted run
    np.testing.assert_allclose([h["val_loss"] for h in hist], [h["val_loss"] for h in ref], rtol=1e-6)
    np.testing.assert_allclose([h["train_loss"] for h in hist], [h["train_loss"] for h in ref], rtol=1e-6)
    result = json.loads((run / "run.json").read_text())["result"]
    assert result["status"] == "ok" and result["epochs_run"] == epochs
    assert int(ckpt.load(run / "best.safetensors").header["epoch"]) == result["best_epoch"]


def _sep_config(path: Path, steps: int) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"train": {
        "preset": "tiny", "model": MICRO_MODEL, "steps": steps, "steps_per_epoch": 2,
        "batch_size": 2, "crop_seconds": 0.5, "n_val": 2, "val_seconds": 0.5,
        "train_folds": [1], "val_folds": [2], "threads": 1, "seed": 0}}))
    return path


def test_separate_train_killed_then_resumed(library: Path, tmp_path: Path) -> None:
    import torch

    from auralens.scene.separate.run import train_config
    from auralens.scene.separate.tdcnpp import load_checkpoint
    from auralens.scene.separate.train import train

    cfg = _sep_config(tmp_path / "sep.yaml", steps=8)
    env = cli_env(tmp_path / "cache")
    with one_thread():
        train(library, tmp_path / "ref", train_config(cfg))
    run = tmp_path / "run"
    args = ["separate", "train", str(library), "--config", str(cfg), "--out", str(run)]
    # last_state.pt is the final write of an epoch's checkpoint
    kill_when(args, env, lambda: (run / "last_state.pt").exists())
    load_checkpoint(run / "last.safetensors")
    state = torch.load(run / "last_state.pt", weights_only=True)
    assert 2 <= int(state["step"]) < 8

    run_cli(args, env)  # a run directory with a checkpoint resumes by itself
    hist = read_jsonl(run / "history.jsonl")
    ref = read_jsonl(tmp_path / "ref" / "history.jsonl")
    assert [h["step"] for h in hist] == [2, 4, 6, 8]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    np.testing.assert_allclose([h["val_MSi"] for h in hist], [h["val_MSi"] for h in ref], rtol=1e-5)
    np.testing.assert_allclose([h["train_loss"] for h in hist], [h["train_loss"] for h in ref],
                               rtol=1e-5)
    load_checkpoint(run / "best.safetensors")
    info = json.loads((run / "run.json").read_text())
    assert info["last"]["step"] == 8


def _imagine_args(fuss: Path, out: Path, classifier: Path) -> list[str]:
    return ["imagine", "batch", str(fuss), "--out", str(out), "--separator", "nmf",
            "--captioner", f"classifier:{classifier}", "--set", "report=false"]


def _comparable(line: dict, out: Path) -> str:
    line = {k: v for k, v in line.items() if k != "timings"}
    return json.dumps(line, sort_keys=True).replace(str(out), "OUT")


def test_imagine_batch_killed_then_resumed(fuss: Path, tiny_model, tmp_path: Path) -> None:
    from auralens.scene.pipeline import imagine_batch

    classifier = tiny_model("ast_classifier")
    env = cli_env(tmp_path / "cache")
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    with one_thread():
        imagine_batch(fuss, ref_out, {"separator": "nmf", "captioner": f"classifier:{classifier}",
                                      "report": False})
    ref = read_jsonl(ref_out / "results.jsonl")
    assert len(ref) == 6

    kill_when(_imagine_args(fuss, out, classifier), env,
              lambda: len(complete_lines(out / "results.jsonl")) >= 1)
    raw = (out / "results.jsonl").read_text(encoding="utf-8")
    first = complete_lines(out / "results.jsonl")
    assert 1 <= len(first) < 6
    # every finished item's outputs are on disk and readable
    for line in first:
        item = Path(line["paths"]["out_dir"])
        assert json.loads((item / "activity.json").read_text())["n_estimates"] == line["n_estimates"]
        assert (item / "description.txt").read_text().strip() == line["description"].strip()

    run_cli(_imagine_args(fuss, out, classifier), env)
    lines = read_jsonl(out / "results.jsonl")
    ids = [line["id"] for line in lines]
    assert sorted(ids) == sorted(r["id"] for r in ref) and len(set(ids)) == len(ids)
    assert (out / "results.jsonl").read_text(encoding="utf-8").startswith(raw.rsplit("\n", 1)[0])
    by_id = {line["id"]: _comparable(line, out) for line in lines}
    assert by_id == {r["id"]: _comparable(r, ref_out) for r in ref}
    assert read_jsonl(out / "errors.jsonl") == []


# --------------------------------------------------------------------------- kill windows


def test_append_after_a_truncated_line_keeps_the_new_record(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"id": "a"})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"id": "b", "descr')  # SIGKILL in the middle of a write
    append_jsonl(path, {"id": "c"})
    assert [r["id"] for r in read_jsonl(path)] == ["a", "c"]


def test_sonify_kill_between_history_and_checkpoint(prepared: Path, tmp_path: Path) -> None:
    """The epoch's history line is written, the kill lands before its checkpoint: resume trims
    the line and redoes the epoch, so every epoch is recorded exactly once."""
    import shutil

    from auralens.sonify.train import TrainConfig, train

    def cfg(epochs: int) -> TrainConfig:
        return TrainConfig(gate="lin", lr=1e-2, epochs=epochs, batch_size=4, grad_accum=1,
                           device="cpu", tensorboard=False)

    run = tmp_path / "run"
    train(prepared, run, cfg(2))
    shutil.copy(run / "last.safetensors", tmp_path / "epoch2.safetensors")
    train(prepared, run, cfg(3), resume=True)
    shutil.copy(tmp_path / "epoch2.safetensors", run / "last.safetensors")  # checkpoint 3 lost
    hist = run / "history.jsonl"
    assert [h["epoch"] for h in read_jsonl(hist)] == [1, 2, 3]
    train(prepared, run, cfg(3), resume=True)
    assert [h["epoch"] for h in read_jsonl(hist)] == [1, 2, 3]


def test_separate_kill_between_history_and_checkpoint(library: Path, tmp_path: Path) -> None:
    """Kills inside an epoch's writes (history line, last.safetensors, last_state.pt): every
    epoch is recorded once and training state is never mixed across steps."""
    import torch

    from auralens.scene.separate.train import TrainConfig, TrainError, train

    def cfg(steps: int) -> TrainConfig:
        return TrainConfig(preset="tiny", model=dict(MICRO_MODEL), steps=steps, steps_per_epoch=2,
                           batch_size=2, crop_seconds=0.5, n_val=2, val_seconds=0.5,
                           train_folds=[1], val_folds=[2], threads=0, seed=0)

    run = tmp_path / "run"
    train(library, run, cfg(2))
    saved = tmp_path / "epoch1"
    saved.mkdir()
    for name in ("last.safetensors", "last_state.pt"):
        shutil.copy2(run / name, saved / name)
    train(library, run, cfg(4))
    for name in ("last.safetensors", "last_state.pt"):  # epoch 2 logged, checkpoint still epoch 1
        shutil.copy2(saved / name, run / name)
    train(library, run, cfg(4))
    hist = read_jsonl(run / "history.jsonl")
    assert [h["step"] for h in hist] == [2, 4]

    # The kill lands between last.safetensors (step 4) and last_state.pt (still step 2): the
    # older state with its own copy of the weights is used and the epoch is redone, same result.
    shutil.copy2(saved / "last_state.pt", run / "last_state.pt")
    train(library, run, cfg(4))
    again = read_jsonl(run / "history.jsonl")
    assert [h["step"] for h in again] == [2, 4]
    np.testing.assert_allclose(again[-1]["val_MSi"], hist[-1]["val_MSi"], rtol=1e-5)
    assert int(torch.load(run / "last_state.pt", weights_only=True)["step"]) == 4

    # A pair from different steps with no weights in the state cannot be made consistent.
    state = torch.load(saved / "last_state.pt", weights_only=True)
    del state["model"]
    torch.save(state, run / "last_state.pt")
    with pytest.raises(TrainError, match="step 4 but last_state.pt at step 2"):
        train(library, run, cfg(6))
