"""The offline demo in its reduced --quick form, through the console script as a user runs it."""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
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
    # The index names the captioner the demo used, every link resolves from the index's folder,
    # and its command describes a mixture again as the demo did.
    assert "captioner <code>classifier:presets/classifier-synth</code>" in index
    assert _links(index) and all((out / href).is_file() for href in _links(index))
    argv = _rerun_argv(index)
    rerun = subprocess.run([sys.executable, "-m", "auralens.cli", *argv[1:]], cwd=tmp_path,
                           capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    item = next(r for r in results if argv[3].endswith(f"/{r['id']}.wav"))
    assert f"description: {item['description']}" in rerun.stdout
    # A copied demo folder is tied to the library it was made from: the message says what a
    # demo user can do (demo has no --overwrite).
    shutil.copytree(out, tmp_path / "copy")
    moved = subprocess.run([sys.executable, "-m", "auralens.cli", "demo", "--out",
                            str(tmp_path / "copy"), "--quick"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert moved.returncode == 1 and "run the demo into a new --out" in moved.stderr
    assert "--overwrite" not in moved.stderr


def _links(index: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r"href='([^']*)'", index)]


def _rerun_argv(index: str) -> list[str]:
    """The command the index gives to describe one mixture again."""
    command = html.unescape(re.search(r"<pre>(auralens imagine run .*?)</pre>", index).group(1))
    return shlex.split(command)


def test_demo_index_names_its_models_and_gives_paths_that_resolve(tmp_path, monkeypatch):
    """The index said it "ran offline with the default backends", but the demo captions with
    classifier-synth, not the default `classifier` of `auralens imagine`; and it said
    "Data: demo1/library", a path relative to where the demo was started, not to the index."""
    import auralens.data.mix
    import auralens.data.synth
    import auralens.evaluate.report
    import auralens.scene.pipeline
    import auralens.sonify.sweep
    from auralens.demo import run_demo

    passed = {}

    def synthesize(out, **kwargs):
        out.mkdir(parents=True)
        return out

    def sweep(data, extractor, layers, codec, gate, out, **kwargs):
        passed["sweep"] = (extractor, codec, gate)
        (out / "layer=2").mkdir(parents=True)
        return [{"layer": "2", "status": "ok", "run": "layer=2", "first_val_loss": 2.0, "best_val_loss": 1.0}]

    def build_report(runs, out, **kwargs):
        out.mkdir(parents=True)
        (out / "index.html").write_text("report")
        return out / "index.html"

    def build_mixtures(data, out, **kwargs):
        (out / "train").mkdir(parents=True)
        (out / "train" / "example00000.wav").write_bytes(b"RIFF")

    def imagine_batch(mixtures, out, config):
        passed["imagine"] = config
        item = out / "items" / "train" / "example00000"
        item.mkdir(parents=True)
        (item / "report.html").write_text("item")
        return [{"id": "train/example00000", "true_labels": ["rain"], "kept": 1, "n_estimates": 4,
                 "description": "Rain on a roof."}]

    monkeypatch.setattr(auralens.data.synth, "synthesize", synthesize)
    monkeypatch.setattr(auralens.sonify.sweep, "sweep", sweep)
    monkeypatch.setattr(auralens.evaluate.report, "build_report", build_report)
    monkeypatch.setattr(auralens.data.mix, "build_mixtures", build_mixtures)
    monkeypatch.setattr(auralens.scene.pipeline, "imagine_batch", imagine_batch)
    monkeypatch.chdir(tmp_path)
    index_path = run_demo(Path("demo1"), quick=True)
    out = tmp_path / "demo1"
    assert index_path.resolve() == out / "index.html"
    index = index_path.read_text()

    synth = PRESETS / "classifier-synth"
    assert passed["sweep"] == (f"classifier:{synth}", "mel", "lin")
    assert passed["imagine"] == {"captioner": f"classifier:{synth}"}
    assert "the default backends" not in index
    # the page names the package's preset, not this machine's folder
    assert ("<li>Sonify: extractor <code>classifier:presets/classifier-synth</code>, codec "
            "<code>mel</code>, gate <code>lin</code></li>") in index
    assert ("<li>Imagine: separator <code>tdcnpp</code>, captioner <code>classifier:presets/"
            "classifier-synth</code>, composer <code>template</code>, image <code>none</code></li>") in index
    argv = _rerun_argv(index)
    assert argv[:3] == ["auralens", "imagine", "run"]
    assert argv[3] == str(out / "mixtures" / "train" / "example00000.wav")
    assert argv[argv.index("--captioner") + 1] == f"classifier:{synth}"
    assert len(argv) == 8  # MIX, --out DIR and exactly the options the demo passed

    assert f"Data: {out / 'library'} (the procedural sound library this demo built)." in index
    assert sorted(_links(index)) == ["imagine/items/train/example00000/report.html",
                                     "sonify/report/index.html"]
    assert all((out / href).is_file() for href in _links(index))


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
