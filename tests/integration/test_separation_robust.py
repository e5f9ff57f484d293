"""Separation with awkward inputs: very short files, odd options, broken checkpoints and run
directories, output folders inside the input, chunk alignment, validation of mixed lengths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from factories.separate import MICRO, micro_config

from auralens.checkpoint_io import read_checkpoint, write_checkpoint
from auralens.cli import main
from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.io import read_jsonl
from auralens.scene.separate.run import (
    MIN_SEPARATE_SAMPLES,
    load_separator,
    min_samples,
    separate_array,
    separate_file,
)
from auralens.scene.separate.tdcnpp import (
    TDCNpp,
    TDCNppSeparator,
    average_checkpoints,
    chunked,
    load_checkpoint,
    save_checkpoint,
)
from auralens.scene.separate.train import RecordCropper, TrainConfig, TrainError, train
from auralens.types import SceneRecord, Source, save_records

SR = 16000


def _micro(tmp_path: Path, **overrides: object) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "micro.safetensors", TDCNpp(micro_config(**overrides)))


def _fuss(root: Path, lengths: dict[str, list[float]]) -> Path:
    """A FUSS-layout folder; ``lengths[split]`` lists each mixture's duration (two sources:
    a noise background over the whole mixture and a tone over its first half)."""
    rng = np.random.default_rng(0)
    records = []
    for split, durations in lengths.items():
        for i, dur in enumerate(durations):
            n = int(dur * SR)
            bg = (0.05 * rng.standard_normal(n)).astype(np.float32)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n // 2) / SR)).astype(np.float32)
            folder = root / split / f"{split}{i}_sources"
            folder.mkdir(parents=True)
            sf.write(folder / "bg.wav", bg, SR, subtype="FLOAT")
            sf.write(folder / "fg.wav", tone, SR, subtype="FLOAT")  # shorter than the mixture
            mix = bg.copy()
            mix[: tone.size] += tone
            sf.write(root / split / f"{split}{i}.wav", mix, SR, subtype="FLOAT")
            records.append(SceneRecord(
                id=f"{split}{i}", mixture=Path(split) / f"{split}{i}.wav", split=split, duration=dur,
                sources=[Source(path=Path(split) / f"{split}{i}_sources" / f, label=f[:2]) for f in ("bg.wav", "fg.wav")]))
    save_records(root / "manifest.jsonl", records)
    return root


def test_very_short_inputs_are_separated(tmp_path, capsys):
    spec = f"tdcnpp:{_micro(tmp_path)}"
    mix = (0.2 * np.random.default_rng(1).standard_normal(100)).astype(np.float32)
    sf.write(tmp_path / "short.wav", mix, SR, subtype="FLOAT")
    for sep in (spec, "nmf"):
        out = tmp_path / sep.split(":")[0]
        assert main(["separate", str(tmp_path / "short.wav"), "--out", str(out), "-s", sep]) == 0
        waves = np.stack([sf.read(f)[0] for f in sorted((out / "sources").glob("source*.wav"))])
        assert waves.shape[1] == 100
        assert np.max(np.abs(waves.sum(0) - mix)) < 1e-5  # still sums to the input
    irm = load_separator("oracle-irm").separate_with_refs
    from auralens.scene.separate.run import _padded

    est = _padded(irm, mix, np.stack([mix, np.zeros_like(mix)]))
    assert est.shape[-1] == 100 and np.allclose(est.sum(0), mix, atol=1e-5)


def test_windows_longer_than_the_padding_are_separated(tmp_path, capsys):
    # Short inputs are padded for the separator; a window above 2048 samples needs more.
    mix = (0.2 * np.random.default_rng(1).standard_normal(800)).astype(np.float32)  # 0.05 s
    sf.write(tmp_path / "short.wav", mix, SR, subtype="FLOAT")
    out = tmp_path / "nmf"
    assert main(["separate", str(tmp_path / "short.wav"), "--out", str(out),
                 "-s", "nmf@n_fft=4096,hop=1024"]) == 0
    waves = np.stack([sf.read(f)[0] for f in sorted((out / "sources").glob("source*.wav"))])
    assert waves.shape == (4, 800) and np.max(np.abs(waves.sum(0) - mix)) < 1e-5
    assert min_samples(load_separator("nmf@n_fft=4096,hop=1024")) == 4096
    assert min_samples(load_separator("nmf")) == MIN_SEPARATE_SAMPLES
    # The oracle in evaluation: every short mixture is scored, none skipped.
    root = _fuss(tmp_path / "f", {"eval": [0.05, 0.05]})
    assert main(["separate", "eval", str(root), "--out", str(tmp_path / "e"), "--no-bss",
                 "-s", "oracle-irm@n_fft=4096,hop=1024"]) == 0
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["n_mixtures"] == 2
    assert read_jsonl(tmp_path / "e" / "errors.jsonl") == []
    # A TDCN++ separator does not declare its window; its network's config gives it.
    torch.manual_seed(0)
    sep = TDCNppSeparator(TDCNpp(micro_config(n_fft=4096, hop=1024)))
    assert min_samples(sep) == 4096
    est = separate_array(sep, mix)
    assert est.shape == (4, 800) and np.max(np.abs(est.sum(0) - mix)) < 1e-5


def test_batch_refuses_an_oracle_before_any_file(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        sf.write(src / f"{name}.wav", np.zeros(4000, np.float32), SR)
    capsys.readouterr()
    assert main(["separate", "batch", str(src), "--out", str(tmp_path / "bo"), "-s", "oracle-irm"]) == 1
    captured = capsys.readouterr()
    assert "oracle-irm needs reference sources" in captured.err and captured.err.count("\n") == 1
    assert "skipped" not in captured.err + captured.out
    assert not (tmp_path / "bo").exists()  # refused before anything was written


def test_batch_and_eval_refuse_an_out_that_is_a_file(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", np.zeros(4000, np.float32), SR)
    root = _fuss(tmp_path / "f", {"eval": [0.5]})
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    capsys.readouterr()
    for args in (["batch", str(src)], ["eval", str(root), "--no-bss"]):
        assert main(["separate", *args, "--out", str(afile), "-s", "nmf"]) == 1
        err = capsys.readouterr().err
        assert f"{afile}: exists and is not a directory" in err and err.count("\n") == 1, err
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize(("spec", "message"), [
    ("@chunk=abc", "chunk must be a number"),
    ("@chunk=2,overlap=3", "overlap must be above 0"),
    ("@overlap=0", "overlap must be above 0"),
    ("@chunk=0.01", "at least one STFT window"),
    ("@device=gpu", "unknown device"),
])
def test_bad_tdcnpp_options_fail_before_separating(tmp_path, capsys, spec, message):
    ckpt = _micro(tmp_path)
    sf.write(tmp_path / "mix.wav", np.zeros(4000, np.float32), SR)
    assert main(["separate", str(tmp_path / "mix.wav"), "--out", str(tmp_path / "o"),
                 "-s", f"tdcnpp:{ckpt}{spec}"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_nmf_and_oracle_options(tmp_path):
    with pytest.raises(AuralensError, match=r"unknown nmf options \['foo'\]"):
        load_separator("nmf@foo=1")
    with pytest.raises(AuralensError, match="n_iter must be a whole number"):
        load_separator("nmf@n_iter=abc")
    with pytest.raises(AuralensError, match="unknown oracle-irm options"):
        load_separator("oracle-irm@cluster=x")


def test_chunks_start_on_the_hop_grid():
    # A frame-normalised model is local: away from chunk edges, chunked output must equal the
    # whole-input output, which needs every chunk to see the whole input's frame grid.
    torch.manual_seed(0)
    model = TDCNpp(micro_config(norm="frame", consistency="none")).eval()
    hop = model.cfg.hop
    x = (0.1 * np.random.default_rng(0).standard_normal(200 * hop + 37)).astype(np.float32)

    def run(seg: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(seg))[None])[0].numpy()

    whole = run(x)
    chunk, overlap = 80 * hop + 5, 20 * hop
    out = chunked(run, x, chunk, overlap, align=hop)
    margin = (model.cfg.receptive_field_frames + 4) * hop
    last = (x.size - chunk) // hop * hop
    assert last % hop == 0 and x.size - last < chunk + hop
    # Where the last chunk alone speaks (after the cross-fade, away from both of its edges).
    seg = slice(last + overlap + margin, x.size - margin)
    assert seg.stop - seg.start > 10 * hop
    assert np.allclose(out[:, seg], whole[:, seg], atol=1e-5)
    with pytest.raises(ValueError, match="0 < overlap"):
        chunked(run, x, chunk, 0)


def test_malformed_checkpoint_headers_are_refused(tmp_path):
    good = _micro(tmp_path)
    header, state = read_checkpoint(good, "TDCN++", CheckpointMismatchError)
    cases = {
        "no_args": {k: v for k, v in header.items() if k != "model_args"},
        "bad_norm": {**header, "model_args": {**header["model_args"], "norm": "batch"}},
        "bad_hop": {**header, "model_args": {**header["model_args"], "hop": 100}},
        "str_rate": {**header, "model_args": {**header["model_args"], "sample_rate": "16000"}},
        "not_a_dict": {**header, "model_args": [1, 2]},
    }
    for name, bad in cases.items():
        path = write_checkpoint(tmp_path / f"{name}.safetensors", state, bad)
        with pytest.raises(CheckpointMismatchError):
            load_checkpoint(path)
        with pytest.raises(CheckpointMismatchError):
            average_checkpoints([path], tmp_path / f"avg-{name}.safetensors")
        assert not (tmp_path / f"avg-{name}.safetensors").exists()
    # A folder holding model.safetensors averages like the file itself.
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "model.safetensors").write_bytes(good.read_bytes())
    average_checkpoints([tmp_path / "dir"], tmp_path / "avg.safetensors")
    assert load_checkpoint(tmp_path / "avg.safetensors")[0].cfg == load_checkpoint(good)[0].cfg


def test_batch_output_inside_the_input_is_not_separated_again(tmp_path):
    spec = f"tdcnpp:{_micro(tmp_path)}"
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32), SR)
    # an --out inside the input is refused; an output folder moved into it is left out
    assert main(["separate", "batch", str(src), "--out", str(src / "out"), "-s", spec]) == 1
    assert not (src / "out").exists()
    assert main(["separate", "batch", str(src), "--out", str(tmp_path / "out"), "-s", spec]) == 0
    (tmp_path / "out").rename(src / "out")
    assert main(["separate", "batch", str(src), "--out", str(tmp_path / "again"), "-s", spec]) == 0
    assert [r["id"] for r in read_jsonl(tmp_path / "again" / "results.jsonl")] == ["a"]


def test_single_file_and_output_folder_mistakes(tmp_path, capsys):
    six = save_checkpoint(tmp_path / "six.safetensors", TDCNpp(micro_config(num_sources=6)))
    sf.write(tmp_path / "mix.wav", (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32), SR)
    out = tmp_path / "out"
    separate_file(tmp_path / "mix.wav", out, f"tdcnpp:{six}")
    summary = separate_file(tmp_path / "mix.wav", out, f"tdcnpp:{_micro(tmp_path)}")
    assert sorted(p.name for p in (out / "sources").iterdir()) == [f"source{k}.wav" for k in range(4)]
    assert summary["n_estimates"] == 4
    capsys.readouterr()
    assert main(["separate", str(tmp_path / "mix.wav"), "--out", str(tmp_path / "mix.wav")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert main(["separate", "batch", str(tmp_path / "mix.wav"), "--out", str(tmp_path / "b")]) == 1
    assert "one audio file" in capsys.readouterr().err


def test_eval_argument_mistakes_broken_items_and_total_failure(tmp_path, capsys):
    from auralens.scene.separate.base import Separator
    from auralens.scene.separate.run import SeparationError, evaluate_separator

    assert main(["separate", "eval", str(tmp_path), "--out", str(tmp_path / "e"), "--folds", "a"]) == 2
    assert main(["separate", "eval", str(tmp_path), "--out", str(tmp_path / "e"), "--limit", "0"]) == 2
    # One unreadable mixture is skipped and listed; the others are scored.
    root = _fuss(tmp_path / "f", {"eval": [0.5, 0.5, 0.5]})
    (root / "eval" / "eval1.wav").write_bytes(b"broken")
    assert main(["separate", "eval", str(root), "--out", str(tmp_path / "e1"), "--no-bss", "-s", "nmf"]) == 0
    assert json.loads((tmp_path / "e1" / "summary.json").read_text())["n_mixtures"] == 2
    assert [e["item"] for e in read_jsonl(tmp_path / "e1" / "errors.jsonl")] == ["eval1"]
    assert json.loads((tmp_path / "e1" / "run.json").read_text())["errors"] == 1  # as summary.json

    class Broken(Separator):
        name, sample_rate, num_sources = "broken", SR, 2

        def separate(self, mix):
            raise AuralensError("cannot separate")

    with pytest.raises(SeparationError, match="no mixture could be evaluated"):
        evaluate_separator(root, tmp_path / "e2", separator=Broken(), bss=False)
    assert json.loads((tmp_path / "e2" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "e2" / "summary.json").exists()


@pytest.mark.parametrize(("override", "message"), [
    ({"steps_per_epoch": 0}, "steps_per_epoch must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"max_sources": 0}, "max_sources must be"),
    ({"crop_seconds": -1.0}, "crop_seconds must be"),
    ({"recipe": "wet"}, "recipe must be"),
])
def test_train_config_values_are_checked(override, message):
    with pytest.raises(TrainError, match=message):
        TrainConfig(**override)


def test_training_refuses_bad_model_options_devices_and_half_run_dirs(tmp_path):
    root = _fuss(tmp_path / "f", {"train": [1.0, 1.0], "validation": [0.5, 0.8]})
    base = dict(preset="tiny", model=dict(MICRO), steps=2, steps_per_epoch=1, batch_size=2,
                crop_seconds=0.2, n_val=2, val_seconds=4.0)
    with pytest.raises(TrainError, match="unknown TDCN.. config keys"):
        train(root, tmp_path / "r0", TrainConfig(**{**base, "model": {**MICRO, "typo": 1}}))
    with pytest.raises(TrainError, match="CUDA is not available|unknown device"):
        if torch.cuda.is_available():
            raise TrainError("unknown device")  # nothing to check on a GPU machine
        train(root, tmp_path / "r1", TrainConfig(**base, device="cuda"))
    with pytest.raises(TrainError, match="shorter than one STFT window"):
        train(root, tmp_path / "r2", TrainConfig(**{**base, "crop_seconds": 0.01}))
    # Validation mixtures of different lengths, shorter than val_seconds, are padded and batched.
    run = tmp_path / "run"
    train(root, run, TrainConfig(**base))
    assert [h["step"] for h in read_jsonl(run / "history.jsonl")] == [1, 2]
    # A run directory with only one of the two resume files is refused, not wiped.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "last.safetensors").write_bytes((run / "last.safetensors").read_bytes())
    (copy / "history.jsonl").write_text((run / "history.jsonl").read_text())
    with pytest.raises(TrainError, match="no last_state.pt"):
        train(root, copy, TrainConfig(**{**base, "steps": 3}))
    assert len(read_jsonl(copy / "history.jsonl")) == 2  # untouched
    (copy / "last.safetensors").unlink()
    (copy / "last_state.pt").write_bytes((run / "last_state.pt").read_bytes())
    with pytest.raises(TrainError, match="no last.safetensors"):
        train(root, copy, TrainConfig(**{**base, "steps": 3}))
    with pytest.raises(TrainError, match="not a directory"):
        train(root, tmp_path / "f" / "manifest.jsonl", TrainConfig(**base))


def test_record_cropper_keeps_the_whole_mixture(tmp_path):
    from auralens.types import load_scenes

    root = _fuss(tmp_path / "f", {"train": [1.0]})
    recs = load_scenes(root / "manifest.jsonl")
    for r in recs:
        r.mixture = root / r.mixture
        for s in r.sources:
            s.path = root / s.path
    cropper = RecordCropper(recs, num_outputs=4, sr=SR)
    assert cropper.items[0].shape == (2, SR)  # padded to the background, not cut to the tone
    mix, refs = cropper.sample(SR, np.random.default_rng(0))
    original = sf.read(root / "train" / "train0.wav")[0]
    assert np.allclose(mix, original, atol=2e-3)  # float16 storage


def test_state_saved_anywhere_loads_on_cpu(tmp_path, monkeypatch):
    # The training state is read with map_location="cpu", so a GPU run resumes on a CPU machine.
    import auralens.scene.separate.train as train_mod

    seen = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod.torch, "load", spy)
    root = _fuss(tmp_path / "f", {"train": [1.0, 1.0], "validation": [0.5]})
    cfg = dict(preset="tiny", model=dict(MICRO), steps=1, steps_per_epoch=1, batch_size=2,
               crop_seconds=0.2, n_val=1, val_seconds=0.5)
    train(root, tmp_path / "run", TrainConfig(**cfg))
    train(root, tmp_path / "run", TrainConfig(**{**cfg, "steps": 2}))
    assert seen.get("map_location") == "cpu"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["train"]["steps"] == 2


def test_batch_refuses_results_of_other_settings(tmp_path, monkeypatch, capsys):
    ckpt = _micro(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32), SR)
    out = tmp_path / "out"
    assert main(["separate", "batch", str(src), "--out", str(out), "-s", f"tdcnpp:{ckpt}"]) == 0
    capsys.readouterr()
    for other in (["-s", "nmf"], ["-s", f"tdcnpp:{ckpt}", "--rule", "frames"]):
        assert main(["separate", "batch", str(src), "--out", str(out), *other]) == 1
        assert "other settings" in capsys.readouterr().err
    # The same checkpoint spelled relative to the working directory is the same setting.
    monkeypatch.chdir(tmp_path)
    assert main(["separate", "batch", "in", "--out", "out", "-s", "tdcnpp:micro.safetensors"]) == 0
    assert len(read_jsonl(out / "results.jsonl")) == 1


def test_nmf_seed_zero_is_a_valid_option():
    assert load_separator("nmf@seed=0").seed == 0
    with pytest.raises(AuralensError, match="seed must be a whole number ≥ 0"):
        load_separator("nmf@seed=-1")

