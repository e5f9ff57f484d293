"""`data mix` reruns and outputs inside the source; `fuss-manifest` / `video-pairs` from its output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.cli import main
from auralens.data import DatasetError
from auralens.data.mix import build_mixtures
from auralens.experiments.fussmanifest import ManifestError, manifest_from_mixer, pairs_from_mixer
from auralens.io import read_json, read_jsonl

SR = 8000
FAST = dict(sample_rate=SR, duration=1.0, reverb=False, max_sources=2)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A plain labelled folder: dog/, rain/, siren/ with two short clips each."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    for k, label in enumerate(("dog", "rain", "siren")):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(2):
            wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * k + 40 * i) * t) + 0.05 * rng.standard_normal(SR)
            sf.write(tmp_path / "src" / label / f"{label}{i}.wav", wave.astype(np.float32), SR)
    return tmp_path / "src"


def _labels(out: Path) -> set[str]:
    return {s["label"] for r in read_jsonl(out / "manifest.jsonl") for s in r["sources"]}


def test_output_inside_the_source_is_not_read_back(src: Path) -> None:
    first = build_mixtures(src, src / "mixed", n=3, seed=1, **FAST)
    again = build_mixtures(src, src / "mixed", n=3, seed=1, **FAST)  # resumes, not "different settings"
    assert [r.mixture.read_bytes() for r in again] == [r.mixture.read_bytes() for r in first]
    build_mixtures(src, src / "mixed2", n=4, seed=1, **FAST)
    assert _labels(src / "mixed2") <= {"dog", "rain", "siren"}
    # the second output does not change the clips the first one was made from
    assert len(build_mixtures(src, src / "mixed", n=4, seed=1, **FAST)) == 4
    with pytest.raises(DatasetError, match="--out is the source folder"):
        build_mixtures(src, src, n=1, **FAST)
    with pytest.raises(DatasetError, match="--out holds the source folder"):
        build_mixtures(src / "dog", src, n=1, **FAST)


def test_smaller_n_is_refused_and_larger_n_extends(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    build_mixtures(src, out, n=4, seed=1, **FAST)
    manifest = (out / "manifest.jsonl").read_bytes()
    with pytest.raises(DatasetError, match=r"split 'train' already holds 4 mixtures .*use --n 4 or more"):
        build_mixtures(src, out, n=2, seed=1, **FAST)
    assert (out / "manifest.jsonl").read_bytes() == manifest
    assert read_json(out / "run.json")["config"]["n"] == 4
    assert len(build_mixtures(src, out, n=5, seed=1, **FAST)) == 5
    assert len(read_jsonl(out / "manifest.jsonl")) == 5
    # An experiment rerun on a subset: the first n, the rest left in place and recorded.
    first = build_mixtures(src, out, n=2, seed=1, keep_more=True, **FAST)
    assert [r.id for r in first] == ["train/example00000", "train/example00001"]
    assert len(read_jsonl(out / "manifest.jsonl")) == 5
    assert read_json(out / "run.json")["splits"]["train"]["n"] == 5


def test_run_json_keeps_every_split(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    build_mixtures(src, out, n=3, seed=1, **FAST)
    build_mixtures(src, out, n=2, seed=1, split="eval", **FAST)
    run = read_json(out / "run.json")
    assert run["config"]["split"] == "eval"
    assert {k: v["n"] for k, v in run["splits"].items()} == {"eval": 2, "train": 3}
    assert run["splits"]["train"]["seed"] == 1 and run["splits"]["train"]["duration"] == 1.0


def test_out_made_by_another_command_is_refused(src: Path, tmp_path: Path) -> None:
    sep = tmp_path / "sep"
    sep.mkdir()
    (sep / "run.json").write_text(json.dumps({"command": "separate batch", "config": {}}))
    before = (sep / "run.json").read_bytes()
    with pytest.raises(DatasetError, match="holds the output of 'separate batch'"):
        build_mixtures(src, sep, n=1, **FAST)
    assert (sep / "run.json").read_bytes() == before and sorted(p.name for p in sep.iterdir()) == ["run.json"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"holds files that data mix does not write \(notes.txt\)"):
        build_mixtures(src, mine, n=1, **FAST)


def test_fuss_manifest_from_mixer_keeps_to_the_split(src: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    mix = tmp_path / "mix"
    build_mixtures(src, mix, n=3, seed=1, **FAST)
    build_mixtures(src, mix, n=2, seed=1, split="eval", **FAST)
    out = tmp_path / "m.jsonl"
    assert main(["experiment", "fuss-manifest", str(out), "--from-mixer", str(mix), "--split", "train"]) == 0
    assert [r["split"] for r in read_jsonl(out)] == ["train"] * 3
    assert main(["experiment", "fuss-manifest", str(out), "--from-mixer", str(mix), "--split", "eval"]) == 0
    assert [r["split"] for r in read_jsonl(out)] == ["eval"] * 2
    assert main(["experiment", "fuss-manifest", str(out), "--from-mixer", str(mix)]) == 0
    assert len(read_jsonl(out)) == 5
    capsys.readouterr()
    assert main(["experiment", "fuss-manifest", str(out), "--from-mixer", str(mix), "--split", "validation"]) == 1
    assert capsys.readouterr().err == (f"error: {mix / 'manifest.jsonl'}: no mixtures of split 'validation' "
                                       "(splits there: eval, train)\n")


def test_fuss_manifest_from_mixer_refuses_a_missing_mixture(src: Path, tmp_path: Path) -> None:
    mix = tmp_path / "mix"
    build_mixtures(src, mix, n=2, seed=1, **FAST)
    with open(mix / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "train/example00009", "mixture": "train/example00009.wav",
                             "sources": [], "split": "train"}) + "\n")
    out = tmp_path / "m.jsonl"
    with pytest.raises(ManifestError, match=r"train/example00009: mixture file not found"):
        manifest_from_mixer(mix, out)
    assert not out.exists()


def test_video_pairs_frames_are_checked(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    mix = tmp_path / "mix"
    build_mixtures(src, mix, n=2, seed=1, **FAST)
    out = tmp_path / "pairs.jsonl"
    capsys.readouterr()
    assert main(["experiment", "video-pairs", str(out), "--from-mixer", str(mix),
                 "--frames", str(tmp_path / "nodir")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nodir'}: frames folder not found\n"
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (8, 8)).save(frames / "example00000.png")
    (frames / "example00001.png").write_bytes(b"not an image")
    with pytest.raises(ManifestError, match=r"example00001.png: not a readable image"):
        pairs_from_mixer(mix, out, frames=frames)
    assert not out.exists()
    Image.new("RGB", (8, 8)).save(frames / "example00001.png")
    assert pairs_from_mixer(mix, out, frames=frames)["n"] == 2
