"""An lr grid of ``sonify train`` under ``accelerate launch --multi_gpu --num_processes 2`` on
CPUs (gloo; see test_scaleout_accelerate.py for the launcher's settings).

Every process sets up the run's Accelerator before anything asks which process it is (a bare
``PartialState`` would set up one process and stop the launch), and every process prints the
grid's summary only after the main process wrote it.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from factories.sonify import write_library
from launch import ACCELERATE, accelerate_env, cli_two_cpu

from auralens.io import read_json, read_jsonl


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from auralens.sonify.prepare import prepare

    root = tmp_path_factory.mktemp("grid-launch")
    library = write_library(root / "lib", per_class=5, seconds=0.5)
    prepare(library, "toyband", "toyband", 1, root / "prep", duration=0.5, cache_dir=root / "cache")
    return root / "prep"


def _launch(prep: Path, out: Path, lr: str, cache: Path) -> subprocess.CompletedProcess[str]:
    cmd = cli_two_cpu("sonify", "train", str(prep), "--out", str(out), "--gate", "lin", "--lr", lr,
                      "--epochs", "2", "--batch-size", "4", "--device", "cpu")
    return subprocess.run(cmd, env=accelerate_env(cache), capture_output=True, text=True, timeout=300)


def _stamps(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "tb" not in p.parts}


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_process_lr_grid_trains_and_reruns(prep: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    proc = _launch(prep, grid, "1e-2,2e-2", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-4000:]
    # both processes print the summary, which the main process wrote before either read it
    assert proc.stdout.count("| lr | status |") == 2
    record = read_json(grid / "run.json")
    assert record["config"]["lr"] == [1e-2, 2e-2] and record["result"]["status"] == "done"
    for name in ("lr=0.01", "lr=0.02"):
        run = read_json(grid / name / "run.json")
        assert run["result"]["status"] == "ok" and run["result"]["num_processes"] == 2
        assert [h["epoch"] for h in read_jsonl(grid / name / "history.jsonl")] == [1, 2]

    # The same command again: every learning rate is reported, none trained.
    runs = {k: v for k, v in _stamps(grid).items() if "/" in k}
    proc = _launch(prep, grid, "1e-2,2e-2", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count(f"{grid / 'lr=0.01'}: already finished (2 epochs), not trained again") == 2
    assert {k: v for k, v in _stamps(grid).items() if "/" in k} == runs

    # One learning rate's run on its own: reported as finished by every process.
    proc = _launch(prep, grid / "lr=0.02", "2e-2", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "already finished (2 epochs), not trained again" in proc.stdout
    assert {k: v for k, v in _stamps(grid).items() if "/" in k} == runs
