"""Separation end to end: CLI run/eval/train on small synthetic data, the committed checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from factories.separate import MICRO

from auralens.audio import load
from auralens.cli import main
from auralens.io import read_json, read_jsonl
from auralens.scene.separate.run import evaluate_separator, load_separator, separate_file
from auralens.scene.separate.tdcnpp import TDCNppSeparator, load_checkpoint
from auralens.types import SceneRecord, Source, save_records

SR = 16000


def _sources(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    t = np.arange(length) / SR
    out = []
    for k in range(n):
        kind = k % 3
        if kind == 0:
            w = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t)
        elif kind == 1:
            w = 0.3 * np.sin(2 * np.pi * rng.uniform(2000, 4000) * t) * (t > t[-1] / 3)
        else:
            w = 0.05 * rng.standard_normal(length)
        out.append(w)
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def fuss_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FUSS-layout folder: 6 mixtures (4 train, 2 validation) with 1–3 sources, relative paths."""
    root = tmp_path_factory.mktemp("fuss")
    rng = np.random.default_rng(0)
    records = []
    for i in range(6):
        split = "train" if i < 4 else "validation"
        n = 1 + i % 3
        refs = _sources(rng, n, int(0.6 * SR))
        folder = root / split / f"ex{i}_sources"
        folder.mkdir(parents=True)
        srcs = []
        for k, w in enumerate(refs):
            sf.write(folder / f"s{k}.wav", w, SR, subtype="FLOAT")
            srcs.append(Source(path=Path(split) / f"ex{i}_sources" / f"s{k}.wav", label=f"c{k}"))
        sf.write(root / split / f"ex{i}.wav", refs.sum(0), SR, subtype="FLOAT")
        records.append(SceneRecord(id=f"ex{i}", mixture=Path(split) / f"ex{i}.wav", sources=srcs,
                                   duration=0.6, split=split))
    save_records(root / "manifest.jsonl", records)
    return root


def test_cli_run_writes_sources_and_activity(tmp_path, tiny_model, capsys):
    ckpt = tiny_model("tdcnpp") / "model.safetensors"
    # 44.1 kHz stereo input: resampled to 16 kHz mono before separation.
    rng = np.random.default_rng(1)
    t = np.arange(int(1.2 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.05 * rng.standard_normal(t.size)], 1)
    sf.write(tmp_path / "mix.wav", stereo, 44100)
    out = tmp_path / "out"
    code = main(["separate", str(tmp_path / "mix.wav"), "--out", str(out),
                 "--separator", f"tdcnpp:{ckpt}@chunk=0.5,overlap=0.1"])
    assert code == 0
    files = sorted((out / "sources").glob("source*.wav"))
    assert [f.name for f in files] == [f"source{k}.wav" for k in range(4)]
    waves = np.stack([sf.read(f)[0] for f in files])
    mix = load(tmp_path / "mix.wav", SR)
    assert waves.shape == (4, mix.size)
    assert np.max(np.abs(waves.sum(0) - mix)) < 1e-4  # mixture consistency survives chunking
    activity = read_json(out / "activity.json")
    assert len(activity["estimates"]) == 4
    assert {"kept", "reason", "scores"} <= set(activity["estimates"][0])
    summary = read_json(out / "summary.json")
    assert summary["n_estimates"] == 4 and summary["sample_rate"] == SR
    assert (out / "run.json").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    sf.write(tmp_path / "mix.wav", np.zeros(1600, np.float32), SR)
    assert main(["separate", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.wav" in err
    assert main(["separate", str(tmp_path / "mix.wav"), "--out", str(tmp_path / "o"),
                 "--separator", "oracle-irm"]) == 1
    assert "reference" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["separate", str(tmp_path / "mix.wav"), "--out", str(tmp_path / "o"),
                 "--separator", f"tdcnpp:{bad}"]) == 1
    assert "checkpoint" in capsys.readouterr().err


def test_batch_resumes_skips_broken_files_and_shards(tmp_path, tiny_model, fuss_dir, capsys):
    spec = f"tdcnpp:{tiny_model('tdcnpp') / 'model.safetensors'}"
    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    for rel in ("a.wav", "sub/b.flac", "sub/c.wav"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(src / rel, _sources(rng, 2, int(0.5 * SR)).sum(0), SR)
    (src / "sub" / "broken.wav").write_bytes(b"no audio here")
    (src / ".hidden").mkdir()
    sf.write(src / ".hidden" / "x.wav", np.zeros(800, np.float32), SR)
    out = tmp_path / "out"
    assert main(["separate", "batch", str(src), "--out", str(out), "-s", spec]) == 0
    lines = read_jsonl(out / "results.jsonl")
    assert [r["id"] for r in lines] == ["a", "sub/b", "sub/c"]
    assert [e["item"] for e in read_jsonl(out / "errors.jsonl")] == ["sub/broken"]
    assert "broken.wav" in read_jsonl(out / "errors.jsonl")[0]["error"]
    # Each item is exactly what the single-file command writes.
    single = separate_file(src / "sub" / "b.flac", tmp_path / "single", load_separator(spec))
    for k in range(4):
        np.testing.assert_array_equal(sf.read(out / "items" / "sub" / "b" / "sources" / f"source{k}.wav")[0],
                                      sf.read(single["sources"][k])[0])
    assert lines[1]["n_kept"] == single["n_kept"]
    # A rerun separates nothing new and lists the broken file again.
    assert main(["separate", "batch", str(src), "--out", str(out), "-s", spec]) == 0
    assert len(read_jsonl(out / "results.jsonl")) == 3
    run = read_json(out / "run.json")
    assert (run["n_new"], run["n_failed"], run["n_done"]) == (0, 1, 3)
    # Two shards share one output folder and merge into the whole set.
    sharded = tmp_path / "sharded"
    for i in range(2):
        assert main(["separate", "batch", str(src), "--out", str(sharded), "-s", spec, "--shard", f"{i}/2"]) == 0
    assert main(["data", "merge", *map(str, sorted((sharded / "shards").iterdir())),
                 "--out", str(sharded / "results.jsonl")]) == 0
    assert sorted(r["id"] for r in read_jsonl(sharded / "results.jsonl")) == ["a", "sub/b", "sub/c"]
    # A FUSS manifest gives its mixtures (not the reference sources); a list file its paths.
    assert main(["separate", "batch", str(fuss_dir), "--out", str(tmp_path / "fuss"), "-s", spec]) == 0
    assert [r["id"] for r in read_jsonl(tmp_path / "fuss" / "results.jsonl")] == [f"ex{i}" for i in range(6)]
    (tmp_path / "list.txt").write_text("# mixtures\nin/a.wav\n\nin/sub/c.wav\n")
    assert main(["separate", "batch", str(tmp_path / "list.txt"), "--out", str(tmp_path / "l"), "-s", spec]) == 0
    assert [r["id"] for r in read_jsonl(tmp_path / "l" / "results.jsonl")] == ["a", "c"]
    # Nothing separable, nothing to separate, a file listed twice: one-line errors, exit 1.
    capsys.readouterr()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"junk")
    assert main(["separate", "batch", str(tmp_path / "bad"), "--out", str(tmp_path / "b"), "-s", spec]) == 1
    assert "no mixture could be separated" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["separate", "batch", str(tmp_path / "empty"), "--out", str(tmp_path / "e")]) == 1
    assert "no audio files" in capsys.readouterr().err
    (tmp_path / "dup.txt").write_text("in/sub/c.wav\nin/sub/c.wav\n")
    assert main(["separate", "batch", str(tmp_path / "dup.txt"), "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "dup.txt: lists " in err and "c.wav twice" in err, err


def test_eval_oracle_and_nmf(fuss_dir, tmp_path):
    irm = evaluate_separator(fuss_dir, tmp_path / "irm", separator="oracle-irm", bss=True)
    assert irm["n_mixtures"] == 6
    for name in ("by_count.csv", "summary.png", "summary.json", "scores.jsonl", "run.json"):
        assert (tmp_path / "irm" / name).exists(), name
    assert irm["MSi"] > 8 and irm["1S"] > 20
    assert set(irm["by_count"]) == {1, 2, 3}
    assert np.isfinite(irm["by_count"][2]["sdr"])
    header = (tmp_path / "irm" / "by_count.csv").read_text().splitlines()[0]
    assert header.startswith("n_sources,n_mixtures,n_pairs,si_snr,si_snri,sdr")
    nmf = evaluate_separator(fuss_dir, tmp_path / "nmf", separator="nmf@n_iter=30", split="validation",
                             bss=False)
    assert nmf["n_mixtures"] == 2 and irm["MSi"] > nmf["MSi"]
    code = main(["separate", "eval", str(fuss_dir), "--out", str(tmp_path / "cli"),
                 "--separator", "oracle-ibm", "--limit", "3", "--no-bss"])
    assert code == 0
    # a weight-free separator: no revision
    assert read_json(tmp_path / "cli" / "run.json")["models"]["separator"] == {"name": "oracle-ibm",
                                                                              "revision": ""}


def test_train_resumes_and_writes_best(fuss_dir, tmp_path):
    from auralens.scene.separate.train import TrainConfig, train

    cfg = TrainConfig(preset="tiny", model=dict(MICRO), steps=2, steps_per_epoch=1, batch_size=2,
                      crop_seconds=0.4, n_val=2, val_seconds=0.5)
    out = tmp_path / "run"
    train(fuss_dir, out, cfg)
    assert [h["step"] for h in read_jsonl(out / "history.jsonl")] == [1, 2]
    # a checkpoint write killed earlier (dead pid, old file) is cleaned up on resume
    import os

    stale = out / ".last.999999999.abcd1234.tmp.safetensors"
    stale.write_bytes(b"partial")
    os.utime(stale, (1, 1))
    cfg.steps = 3
    result = train(fuss_dir, out, cfg)  # resumes at step 2
    assert not stale.exists()
    assert [h["step"] for h in read_jsonl(out / "history.jsonl")] == [1, 2, 3]
    assert result["step"] == 3
    model, header = load_checkpoint(out / "best.safetensors")
    assert header["model_args"]["bottleneck"] == MICRO["bottleneck"]
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "separate train" and run["config"]["train"]["steps"] == 3
    assert list((out / "tb").iterdir())
    # A run directory made for another config is refused instead of silently mixed.
    from auralens.errors import CheckpointMismatchError

    cfg.model = {**MICRO, "bottleneck": 8}
    with pytest.raises(CheckpointMismatchError):
        train(fuss_dir, out, cfg)
    # Other settings are refused too (another seed would change the validation set that
    # `best` is chosen on); the learning rate and the step count may change.
    from dataclasses import replace

    from auralens.scene.separate.train import TrainError

    cfg.model = dict(MICRO)
    for change in ({"seed": 5}, {"batch_size": 3}, {"loss": "si-snr"}):
        with pytest.raises(TrainError, match=f"resumed with other settings \\({next(iter(change))} "):
            train(fuss_dir, out, replace(cfg, **change))
    with pytest.raises(TrainError, match="at step 3, past --steps 2"):
        train(fuss_dir, out, replace(cfg, steps=2))
    assert train(fuss_dir, out, replace(cfg, steps=4, lr=1e-4))["step"] == 4
    assert [h["step"] for h in read_jsonl(out / "history.jsonl")] == [1, 2, 3, 4]


def test_train_cli_help_and_config(tmp_path, fuss_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  steps: 1\n  steps_per_epoch: 1\n  batch_size: 1\n  crop_seconds: 0.3\n"
                   "  n_val: 1\n  val_seconds: 0.3\n")
    code = main(["separate", "train", str(fuss_dir), "--out", str(tmp_path / "r"), "--config", str(cfg),
                 "--set", f"model.bottleneck={MICRO['bottleneck']}", "--set", "model.conv_channels=32",
                 "--set", "model.blocks_per_repeat=2", "--set", "model.repeats=1"])
    assert code == 0
    assert (tmp_path / "r" / "best.safetensors").exists()


def test_train_fuss_recipe_on_the_fly_with_config_preset(tmp_path):
    """``recipe: fuss`` on an ESC-50 folder; the YAML's preset is used unless --preset is given."""
    from auralens.data.synth import synthesize

    lib = synthesize(tmp_path / "lib", clips_per_class=2, seed=3, sample_rate=SR, duration=1.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  preset: small\n  recipe: fuss\n  rooms: 2\n  recipe_seconds: 1.5\n"
                   "  count_weights: [0, 1, 1]\n  steps: 2\n  steps_per_epoch: 2\n  batch_size: 2\n"
                   "  crop_seconds: 0.5\n  n_val: 3\n  val_seconds: 1.0\n  train_folds: [1]\n"
                   "  val_folds: [2]\n")
    micro = ["--set", "model.bottleneck=8", "--set", "model.conv_channels=16",
             "--set", "model.blocks_per_repeat=2", "--set", "model.repeats=1"]
    assert main(["separate", "train", str(lib), "--out", str(tmp_path / "r"), "--config", str(cfg), *micro]) == 0
    run = read_json(tmp_path / "r" / "run.json")
    assert run["config"]["train"]["preset"] == "small" and run["config"]["train"]["recipe"] == "fuss"
    assert run["config"]["train"]["count_weights"] == [0, 1, 1]
    assert [h["step"] for h in read_jsonl(tmp_path / "r" / "history.jsonl")] == [2]
    assert main(["separate", "train", str(lib), "--out", str(tmp_path / "r2"), "--config", str(cfg),
                 "--preset", "tiny", "--set", "steps=1", "--set", "steps_per_epoch=1", *micro]) == 0
    assert read_json(tmp_path / "r2" / "run.json")["config"]["train"]["preset"] == "tiny"
    assert main(["separate", "train", str(lib), "--out", str(tmp_path / "r3"), "--config", str(cfg),
                 "--set", "recipe=wet", *micro]) == 1


def test_keep_and_average_checkpoints(fuss_dir, tmp_path):
    import torch

    from auralens.errors import CheckpointMismatchError
    from auralens.scene.separate.tdcnpp import TDCNpp, average_checkpoints, preset, save_checkpoint
    from auralens.scene.separate.train import TrainConfig, train

    cfg = TrainConfig(preset="tiny", model=dict(MICRO), steps=3, steps_per_epoch=1, batch_size=2,
                      crop_seconds=0.4, n_val=2, val_seconds=0.5, keep=True)
    out = tmp_path / "run"
    train(fuss_dir, out, cfg)
    kept = sorted((out / "keep").glob("step*.safetensors"))
    assert [p.name for p in kept] == ["step1.safetensors", "step2.safetensors", "step3.safetensors"]
    assert main(["separate", "average", *map(str, kept), "--out", str(tmp_path / "avg.safetensors")]) == 0
    avg, header = load_checkpoint(tmp_path / "avg.safetensors")
    assert [s["step"] for s in header["averaged_from"]] == [1, 2, 3]
    states = [load_checkpoint(p)[0].state_dict() for p in kept]
    for k, v in avg.state_dict().items():
        torch.testing.assert_close(v, sum(s[k] for s in states) / 3, rtol=1e-6, atol=1e-7)
    # the average of one checkpoint is that checkpoint; other configs are refused
    one = average_checkpoints([kept[-1]], tmp_path / "one.safetensors")
    for k, v in load_checkpoint(one)[0].state_dict().items():
        torch.testing.assert_close(v, states[-1][k], rtol=0, atol=0)
    other = save_checkpoint(tmp_path / "o.safetensors", TDCNpp(preset("tiny", **{**MICRO, "bottleneck": 8})))
    with pytest.raises(CheckpointMismatchError, match="different TDCN"):
        average_checkpoints([kept[0], other], tmp_path / "bad.safetensors")
    assert main(["separate", "average", str(kept[0]), str(other), "--out", str(tmp_path / "b.safetensors")]) == 1


def test_grow_keeps_the_function_and_trains_on(fuss_dir, tmp_path):
    import torch

    from auralens.errors import AuralensError
    from auralens.scene.separate.tdcnpp import TDCNpp, grow_repeats, preset, save_checkpoint
    from auralens.scene.separate.train import TrainConfig, train

    torch.manual_seed(0)
    small = TDCNpp(preset("tiny", **MICRO))
    # randomise every tensor so "same output" cannot come from untouched initial values
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.1 * torch.randn_like(p))
    src = save_checkpoint(tmp_path / "src.safetensors", small)
    assert main(["separate", "grow", str(src), "--out", str(tmp_path / "g.safetensors"),
                 "--repeats", str(small.cfg.repeats + 2)]) == 0
    grown, header = load_checkpoint(tmp_path / "g.safetensors")
    assert grown.cfg.repeats == small.cfg.repeats + 2
    assert header["grown_from"]["repeats"] == small.cfg.repeats
    assert len(grown.blocks) == len(small.blocks) + 2 * small.cfg.blocks_per_repeat
    x = 0.1 * torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(x), small.eval()(x), rtol=0, atol=1e-6)
    # the new blocks are not stuck at the identity: their scales get gradients
    grown.train()
    grown(x).pow(2).sum().backward()
    new_scales = [b.scale.grad for b in grown.blocks[len(small.blocks):]]
    assert all(g is not None for g in new_scales) and any(float(g.abs()) > 0 for g in new_scales)
    with pytest.raises(AuralensError, match="already has"):
        grow_repeats(small, small.cfg.repeats)
    # training goes on from the grown checkpoint with the deeper config
    cfg = TrainConfig(preset="tiny", model={**MICRO, "repeats": grown.cfg.repeats}, steps=1,
                      steps_per_epoch=1, batch_size=2, crop_seconds=0.4, n_val=2, val_seconds=0.5)
    res = train(fuss_dir, tmp_path / "run", cfg, init=tmp_path / "g.safetensors")
    assert res["step"] == 1
    assert load_checkpoint(tmp_path / "run" / "last.safetensors")[0].cfg.repeats == grown.cfg.repeats


def test_committed_checkpoint_separates_10s(tmp_path):
    sep = load_separator()
    assert isinstance(sep, TDCNppSeparator)
    rng = np.random.default_rng(2)
    mix = _sources(rng, 3, 10 * SR).sum(0)
    est = sep.separate(mix)
    assert est.shape == (4, 10 * SR) and est.dtype == np.float32
    assert np.max(np.abs(est.sum(0) - mix)) < 1e-4
    summary = separate_file(_write(tmp_path / "m.wav", mix), tmp_path / "o")
    assert summary["n_estimates"] == 4 and 1 <= summary["n_kept"] <= 4


def _write(path: Path, wave: np.ndarray) -> Path:
    sf.write(path, wave, SR, subtype="FLOAT")
    return path


@pytest.mark.shared_data
def test_benchmark_script_reports_targets(esc10, tmp_path):
    """benchmarks/bench_separation.py end to end on a few short held-out mixtures."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_separation.py"
    proc = subprocess.run([sys.executable, str(script), "--data", str(esc10), "--n", "4",
                           "--seconds", "2", "--no-bss", "--skip-rtf", "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] == 4 and set(result["separators"]) == {"tdcnpp", "nmf", "oracle-irm", "oracle-ibm"}
    seps = result["separators"]
    # the oracle bounds every mask model; the reported gap is the printed difference
    assert seps["oracle-irm"]["MSi"] > seps["tdcnpp"]["MSi"]
    assert result["targets"]["msi_minus_nmf"] == pytest.approx(seps["tdcnpp"]["MSi"] - seps["nmf"]["MSi"], abs=1e-3)
    assert (tmp_path / "bench-sep-fold4-n4-2s" / "manifest.jsonl").exists()


def test_train_class_slots_from_a_universal_checkpoint(tmp_path, fuss_dir):
    """``assign: classes``: one slot per training class, started from a 4-output checkpoint;
    the trained separator still returns M estimates that sum to the input."""
    import torch

    from auralens.data.synth import synthesize
    from auralens.scene.separate.tdcnpp import TDCNpp, preset, save_checkpoint
    from auralens.scene.separate.train import TrainConfig, TrainError, train

    lib = synthesize(tmp_path / "lib", clips_per_class=2, seed=3, sample_rate=SR, duration=1.0)
    classes = sorted({line.split(",")[3] for line in (lib / "meta" / "esc50.csv").read_text().splitlines()[1:]})
    torch.manual_seed(0)
    start = save_checkpoint(tmp_path / "u.safetensors", TDCNpp(preset("tiny", **MICRO)))
    cfg = TrainConfig(preset="tiny", model=dict(MICRO), assign="classes", recipe="fuss", rooms=0,
                      recipe_seconds=1.5, steps=2, steps_per_epoch=1, batch_size=2, crop_seconds=0.5,
                      n_val=3, val_seconds=1.0, train_folds=[1], val_folds=[2])
    train(lib, tmp_path / "r", cfg, init=start)
    model, _ = load_checkpoint(tmp_path / "r" / "best.safetensors")
    assert model.cfg.slot_labels == classes and model.cfg.outputs == len(classes) > 4
    sep = TDCNppSeparator(model)
    mix = 0.1 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    est = sep.separate(mix)
    assert est.shape == (4, SR)
    np.testing.assert_allclose(est.sum(0), mix, atol=1e-5)
    # resumes with the slot config it was made with
    cfg.steps = 3
    assert train(lib, tmp_path / "r", cfg)["step"] == 3
    # class slots need class labels: a FUSS-layout folder is refused in one line
    with pytest.raises(TrainError, match="needs an ESC-50 folder"):
        train(fuss_dir, tmp_path / "r2", cfg)
    assert main(["separate", "train", str(lib), "--out", str(tmp_path / "r3"), "--set", "assign=slots"]) == 1
