"""Inputs of the data commands: split/mix/synth output folders, folder datasets holding auralens
outputs, flat folders, ESC-50 csv consistency, split ratios, mix limits and rerun messages,
merge of corrupt lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.cli import main
from auralens.data import DatasetError
from auralens.data.esc50 import load_esc50
from auralens.data.folder import load_folder
from auralens.data.mix import build_mixtures
from auralens.data.synth import synthesize
from auralens.io import read_json

SR = 8000
FAST = dict(sample_rate=SR, duration=1.0, reverb=False, max_sources=2)


def _tone(path: Path, freq: float, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * seconds)) / SR
    rng = np.random.default_rng(int(freq))
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), SR)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A labelled folder: dog/, rain/, siren/ with two clips each."""
    for k, label in enumerate(("dog", "rain", "siren")):
        for i in range(2):
            _tone(tmp_path / "src" / label / f"{label}{i}.wav", 200 + 150 * k + 40 * i)
    return tmp_path / "src"


def _esc(root: Path, rows: list[tuple[str, int, int, str]]) -> Path:
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for name, fold, target, category in rows:
        _tone(root / "audio" / name, 300 + 20 * len(lines))
        lines.append(f"{name},{fold},{target},{category},False,1,A")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _run(args: list[str]) -> int:
    try:
        return main(args) or 0
    except SystemExit as exc:
        return int(exc.code or 0)


# 1: data split --out


def test_split_refuses_a_data_mix_folder_and_leaves_it_resumable(src, tmp_path, capsys):
    mixes = tmp_path / "mixes"
    build_mixtures(src, mixes, n=2, seed=0, **FAST)
    before = (mixes / "run.json").read_bytes()
    assert _run(["data", "split", str(src), "--out", str(mixes)]) != 0
    err = capsys.readouterr().err
    assert str(mixes) in err and "'data mix'" in err and "not of data split" in err
    assert (mixes / "run.json").read_bytes() == before
    assert not (mixes / "train.txt").exists()
    assert len(build_mixtures(src, mixes, n=2, seed=0, **FAST)) == 2  # still resumes


def test_split_refuses_a_folder_of_other_files_but_reruns_into_its_own(src, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "readme.md").write_text("mine\n", encoding="utf-8")
    assert _run(["data", "split", str(src), "--out", str(other)]) != 0
    err = capsys.readouterr().err
    assert "holds files that data split does not write (readme.md)" in err
    assert not (other / "train.txt").exists()
    out = tmp_path / "sp"
    assert _run(["data", "split", str(src), "--out", str(out)]) == 0
    assert _run(["data", "split", str(src), "--out", str(out), "--seed", "3"]) == 0
    assert read_json(out / "run.json")["seed"] == 3


# 2: auralens outputs inside a folder dataset


def test_folder_dataset_leaves_out_a_mix_output_inside_it(src, tmp_path, capsys):
    build_mixtures(src, src / "mixes", n=2, seed=0, **FAST)
    clips = load_folder(src)
    assert {c.label for c in clips} == {"dog", "rain", "siren"}
    assert len(clips) == 6
    out = tmp_path / "sp"
    assert _run(["data", "split", str(src), "--out", str(out)]) == 0
    listed = "".join((out / f"{s}.txt").read_text() for s in ("train", "val", "test"))
    assert "mixes/" not in listed and "_sources" not in listed


def test_folder_dataset_leaves_out_other_auralens_runs_but_keeps_plain_folders(src):
    run = src / "separated"
    _tone(run / "items" / "a" / "source0.wav", 500)
    (run / "run.json").write_text(json.dumps({"command": "separate batch", "versions": {"auralens": "0"}}))
    shard = src / "imagined"
    _tone(shard / "items" / "b.wav", 600)
    (shard / "shards" / "part-0-of-2").mkdir(parents=True)
    (shard / "shards" / "part-0-of-2" / "run.json").write_text(
        json.dumps({"command": "imagine batch", "versions": {"auralens": "0"}}))
    foreign = src / "birds"  # a run.json auralens did not write: an ordinary class folder
    _tone(foreign / "b0.wav", 700)
    (foreign / "run.json").write_text("{}")
    labels = {c.label for c in load_folder(src)}
    assert labels == {"dog", "rain", "siren", "birds"}


# 3: flat folders


def test_flat_folder_warns_once_that_every_clip_is_unlabelled(tmp_path, caplog):
    for i in range(3):
        _tone(tmp_path / "flat" / f"c{i}.wav", 300 + 50 * i)
    with caplog.at_level(logging.WARNING, logger="auralens.data.folder"):
        clips = load_folder(tmp_path / "flat")
    assert all(not c.labels for c in clips)
    warnings = [r.getMessage() for r in caplog.records if "unlabelled" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "flat") in warnings[0]


def test_labelled_folder_does_not_warn(src, caplog):
    with caplog.at_level(logging.WARNING, logger="auralens.data.folder"):
        load_folder(src)
    assert not [r for r in caplog.records if "unlabelled" in r.getMessage()]


# 4: ESC-50 csv consistency


def test_esc50_refuses_a_target_with_two_categories(tmp_path):
    root = _esc(tmp_path / "e", [("1-1-A-0.wav", 1, 0, "dog"), ("1-2-A-0.wav", 1, 0, "cat")])
    with pytest.raises(DatasetError, match=r"esc50\.csv: lines 2 and 3 give target 0 two categories "
                                           r"\('dog' and 'cat'\)"):
        load_esc50(root)


def test_esc50_refuses_a_category_with_two_targets(tmp_path, capsys):
    root = _esc(tmp_path / "e", [("1-1-A-0.wav", 1, 0, "dog"), ("2-1-A-1.wav", 2, 1, "rain"),
                                 ("1-2-A-5.wav", 1, 5, "dog")])
    with pytest.raises(DatasetError, match=r"lines 2 and 4 give category 'dog' two targets \(0 and 5\)"):
        load_esc50(root)
    assert _run(["data", "split", str(root), "--out", str(tmp_path / "sp")]) != 0
    assert "two targets" in capsys.readouterr().err
    assert not (tmp_path / "sp").exists()


# 5: split ratios


@pytest.mark.parametrize("ratios", ["0.4,0.05,0.05", "0.8,0.2,0.1"])
def test_split_refuses_ratios_not_summing_to_one(src, tmp_path, capsys, ratios):
    out = tmp_path / "sp"
    assert _run(["data", "split", str(src), "--out", str(out), "--ratios", ratios]) != 0
    err = capsys.readouterr().err
    assert "--ratios must sum to 1" in err and f"sum {sum(map(float, ratios.split(','))):g}" in err
    assert not out.exists()


def test_split_accepts_ratios_summing_to_one_within_rounding(src, tmp_path):
    assert _run(["data", "split", str(src), "--out", str(tmp_path / "sp"), "--ratios", "0.7,0.2,0.1"]) == 0


# 6: mix limits


def test_mix_refuses_too_many_sources_before_any_work(src, tmp_path):
    with pytest.raises(DatasetError, match=r"max_sources must be at most 8.*got 50"):
        build_mixtures(src, tmp_path / "m", n=1, seed=0, sample_rate=SR, duration=1.0, reverb=False,
                       max_sources=50)
    assert not (tmp_path / "m").exists()


def test_mix_refuses_a_duration_below_half_a_second(src, tmp_path, capsys):
    out = tmp_path / "m"
    assert _run(["data", "mix", str(src), "--out", str(out), "--n", "1", "--duration", "0.01",
                 "--sample-rate", str(SR), "--no-reverb"]) != 0
    assert "duration must be at least 0.5 s" in capsys.readouterr().err
    assert not out.exists()


# 7: mix rerun messages and folds


def test_mix_rerun_refusal_names_old_and_new_values(src, tmp_path):
    out = tmp_path / "m"
    build_mixtures(src, out, n=1, seed=0, **FAST)
    with pytest.raises(DatasetError, match=r"different settings \(seed 0 → 1\)"):
        build_mixtures(src, out, n=1, seed=1, **FAST)


def test_mix_explicit_all_folds_is_the_default(tmp_path):
    rows = [(f"{fold}-{i}-A-{t}.wav", fold, t, cat) for fold in (1, 2)
            for i, (t, cat) in enumerate([(0, "dog"), (1, "rain")])]
    root = _esc(tmp_path / "e", rows)
    out = tmp_path / "m"
    first = build_mixtures(root, out, n=2, seed=0, **FAST)
    again = build_mixtures(root, out, n=2, seed=0, folds=[1, 2], **FAST)
    assert [r.mixture for r in again] == [r.mixture for r in first]
    with pytest.raises(DatasetError, match=r"folds all → 1"):
        build_mixtures(root, out, n=2, seed=0, folds=[1], **FAST)


# 8: synth class order


def test_synth_rerun_with_classes_in_another_order_resumes(tmp_path):
    out = tmp_path / "lib"
    kw = dict(clips_per_class=1, seed=3, sample_rate=SR, duration=0.5)
    synthesize(out, classes=["siren", "rain"], **kw)
    files = {p.name: p.read_bytes() for p in sorted((out / "audio").iterdir())}
    csv = (out / "meta" / "esc50.csv").read_bytes()
    other = tmp_path / "lib2"
    synthesize(other, classes=["rain", "siren"], **kw)  # made in the other order: the same files
    assert {p.name: p.read_bytes() for p in sorted((other / "audio").iterdir())} == files
    assert (other / "meta" / "esc50.csv").read_bytes() == csv
    synthesize(out, classes=["rain", "siren"], **kw)  # so a rerun in that order resumes
    assert read_json(out / "run.json")["n_new"] == 0
    with pytest.raises(DatasetError, match=r"classes \['rain', 'siren'\] → \['rain'\]"):
        synthesize(out, classes=["rain"], **kw)


# 10: an --out that cannot be written


def test_synth_out_that_cannot_be_created_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = Path("/proc/auralens-nope") if Path("/proc").is_dir() else blocker / "sub"
    with pytest.raises(DatasetError, match=r"cannot create or write this folder") as exc:
        synthesize(out, clips_per_class=1, classes=["siren"], sample_rate=SR, duration=0.5)
    assert str(out) in str(exc.value) and "is free" not in str(exc.value)
    assert not out.exists()


def test_synth_write_check_leaves_no_folder_behind_on_success_path(tmp_path):
    out = tmp_path / "a" / "b"
    synthesize(out, clips_per_class=1, classes=["siren"], sample_rate=SR, duration=0.5)
    assert not [p for p in out.rglob(".write-check.*")]
