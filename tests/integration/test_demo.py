"""The offline demo in its reduced --quick form, through the console script as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PRESETS = Path(__file__).resolve().parents[2] / "src" / "auralens" / "presets"


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    for name in ("classifier", "classifier-synth", "tdcnpp-tiny"):
        assert (PRESETS / name / "MODEL_CARD.md").exists(), f"committed preset {name} is missing"
    out = tmp_path / "demo"
    env = {**os.environ, "AURALENS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "auralens.cli", "demo", "--out", str(out), "--quick"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demo written" in proc.stdout
    index = (out / "index.html").read_text()
    assert "listening report" in index and "Imagine" in index
    # The sonify report exists and links real audio.
    report = out / "sonify" / "report" / "index.html"
    assert report.exists() and "<audio" in report.read_text()
    # Every mixture was described; descriptions are non-empty.
    results = [json.loads(x) for x in (out / "imagine" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 3 and all(r["description"].strip() for r in results)
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "demo" and run["timings_s"]["total"] > 0
    # Nothing downloaded: the stderr mentions no hub traffic and no image was produced.
    assert not list((out / "imagine").rglob("image.png"))
