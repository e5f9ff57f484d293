"""benchmarks/bench_memory.py on a few seconds of noise: the fresh-process measurements and
the JSON line run_all collects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory.py"
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AURALENS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
def test_memory_benchmark_smoke(tmp_path):
    work = tmp_path / "work"
    proc = _run("--minutes", "0.05", "--only", "separate,imagine", "--work", str(work), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bench"] == "memory" and result["minutes"] == 0.05 and result["threads"] == 1
    assert result["input_mb"] == round(0.05 * 60 * 16000 * 4 / 2**20, 1)
    assert set(result["runs"]) == {"separate", "imagine"}
    for run in result["runs"].values():
        assert run["n_estimates"] == 4 and 1 <= run["n_kept"] <= 4
        assert run["peak_above_mb"] >= 0 and run["max_rss_mb"] >= run["base_rss_mb"] > 0
        # the steps cover the whole run: their highest peak is the run's
        assert max(run["steps_above_mb"].values()) == pytest.approx(run["peak_above_mb"], abs=0.02)
    assert "1_separate" in result["runs"]["imagine"]["steps_above_mb"]
    assert "imagine_over_separate" in result["ratios"]
    assert "separate" in proc.stdout and "÷input" in proc.stdout
    # the inputs stay in --work, each run's outputs are removed
    assert sorted(p.name for p in work.iterdir()) == ["noise-0.05min.wav", "warmup.wav"]


def test_memory_benchmark_refuses_unknown_measurement(tmp_path):
    proc = _run("--only", "separate,nonsense", tmp_path=tmp_path)
    assert proc.returncode == 2 and "nonsense" in proc.stderr
