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


def _older_quick_demo(out: Path) -> dict[str, bytes]:
    """The state a finished `demo --quick --out OUT` of a version without demo_config.json left
    (a small library stands in for the real one); returns the library's files."""
    from auralens.data.synth import synthesize
    from auralens.demo import DemoPlan
    from auralens.io import write_run_json

    synthesize(out / "library", clips_per_class=1, seed=42, sample_rate=8000, duration=0.5,
               classes=["rain", "siren"])
    write_run_json(out, command="demo", seed=42,
                   config={"data": str(out / "library"), "quick": True, "plan": DemoPlan.quick().__dict__})
    return {str(p): p.read_bytes() for p in sorted((out / "library").rglob("*")) if p.is_file()}


def test_demo_with_other_settings_is_refused_before_step_1(tmp_path, capsys):
    """`demo --quick --seed 7` into a seed-42 demo used to rebuild the library with seed 7 and then
    stop at step 2 with a hint naming a --overwrite option demo does not have."""
    from auralens.cli import main

    out = tmp_path / "demo"
    library = _older_quick_demo(out)
    cases = [
        (["--quick", "--seed", "7"], "(seed 42 → 7)"),
        (["--quick", "--data", str(tmp_path / "esc")], f"(data the procedural library → {tmp_path / 'esc'})"),
        ([], "(quick True → False)"),
    ]
    for args, what in cases:
        assert main(["demo", *args, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.strip().count("\n") == 0, err
        assert f"{out}: holds a demo made with other settings {what}; choose another --out" in err
        assert "--overwrite" not in err
    assert {str(p): p.read_bytes() for p in sorted((out / "library").rglob("*")) if p.is_file()} == library
    assert sorted(p.name for p in out.iterdir()) == ["library", "run.json"]


def test_demo_records_its_settings_before_step_1(tmp_path, monkeypatch):
    """An interrupted demo (no run.json yet) is guarded too; the same settings get past the check."""
    import auralens.data.synth
    from auralens.demo import DemoError, run_demo
    from auralens.io import read_json

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(auralens.data.synth, "synthesize", stop)  # step 1 starts: the demo is killed
    out = tmp_path / "demo"
    with pytest.raises(Stop):
        run_demo(out, quick=True, seed=7)
    assert read_json(out / "demo_config.json")["seed"] == 7 and not (out / "run.json").exists()
    with pytest.raises(DemoError, match=r"\(seed 7 → 42\)"):
        run_demo(out, quick=True, seed=42)
    with pytest.raises(Stop):  # resuming with the same settings reaches step 1 again
        run_demo(out, quick=True, seed=7)
    (out / "demo_config.json").write_text("")
    with pytest.raises(DemoError, match="demo_config.json: unreadable settings record"):
        run_demo(out, quick=True, seed=7)
