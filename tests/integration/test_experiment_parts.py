"""Experiment building blocks without models: stratified sampling, YAML variants and method
expansion, FUSS-with-labels manifests from a FUSS-layout folder, judge-validation input checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.config import ConfigError
from auralens.evaluate.judge_validation import ValidationError, judge_agreement
from auralens.experiments.fussmanifest import ManifestError, fuss_manifest
from auralens.experiments.runner import Item, expand_methods, load_experiment, stratified_sample

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "experiments"


def _population(n: int = 200, seed: int = 1) -> list[Item]:
    rng = np.random.default_rng(seed)
    labels = [f"l{i}" for i in range(10)]
    weights = np.linspace(3, 1, 10) / np.linspace(3, 1, 10).sum()
    items = []
    for i in range(n):
        k = int(rng.choice([1, 2, 3, 4], p=[0.1, 0.2, 0.3, 0.4]))
        labs = list(rng.choice(labels, size=k, replace=False, p=weights))
        items.append(Item(f"x{i}", Path(f"x{i}.wav"), labs, k))
    return items


def test_stratified_sample_keeps_distributions() -> None:
    pop = _population()
    sub = stratified_sample(pop, 50, seed=0)
    assert len(sub) == 50 and len({s.id for s in sub}) == 50
    full = Counter(p.n_sources for p in pop)
    got = Counter(s.n_sources for s in sub)
    for k, c in full.items():  # largest-remainder allocation: within one of the exact share
        assert abs(got[k] - 50 * c / 200) < 1
    full_lab = Counter(lab for p in pop for lab in p.labels)
    sub_lab = Counter(lab for s in sub for lab in s.labels)
    tot_f, tot_s = sum(full_lab.values()), sum(sub_lab.values())
    tv = 0.5 * sum(abs(full_lab[k] / tot_f - sub_lab[k] / tot_s) for k in full_lab)
    rng = np.random.default_rng(0)  # compare with a plain random draw of the same size
    rand = [pop[i] for i in rng.choice(len(pop), 50, replace=False)]
    rand_lab = Counter(lab for s in rand for lab in s.labels)
    tv_rand = 0.5 * sum(abs(full_lab[k] / tot_f - rand_lab[k] / sum(rand_lab.values()))
                        for k in full_lab)
    assert tv < 0.05 and tv <= tv_rand
    assert stratified_sample(pop, 50, seed=0) == sub  # seeded
    assert [s.id for s in stratified_sample(pop, 500)] == [p.id for p in pop]


def test_yaml_variants_overrides_and_grid() -> None:
    study = load_experiment(CONFIGS / "pipeline.yaml", ["variant=study"])
    names = [m["name"] for m in expand_methods(study)]
    assert len(names) == 2 * 3 * 2 + 1 and names[-1] == "baseline"
    assert "qwen2-audio/mistral/cot" in names
    offline = load_experiment(CONFIGS / "pipeline.yaml", ["models.captioner=classifier:/x/tiny",
                                                          "judge.spec=keyword"])
    methods = expand_methods(offline)
    assert [m["name"] for m in methods] == ["tiny/template/zero-shot", "tiny/template/cot",
                                            "baseline"]
    assert methods[0]["captioner"] == "classifier:/x/tiny" and methods[0]["separator"] == "reference"
    prompting = expand_methods(load_experiment(CONFIGS / "prompting.yaml", ["variant=study"]))
    assert [m["technique"] for m in prompting] == ["zero-shot", "cot", "role", "few-shot"]
    with pytest.raises(ConfigError, match="unknown variant"):
        load_experiment(CONFIGS / "video.yaml", ["variant=nope"])


def _fake_fuss(root: Path) -> Path:
    """Two FUSS eval examples with scaper JAMS files and an FSD50K eval.csv."""
    split = root / "ssdata" / "eval"
    events = {"example0": [("background", "fsd/eval/sound/1001.wav"),
                           ("foreground", "fsd/eval/sound/2002.wav")],
              "example1": [("background", "fsd/eval/sound/3003.wav")]}
    for ex, evs in events.items():
        (split / f"{ex}_sources").mkdir(parents=True)
        sf.write(split / f"{ex}.wav", np.zeros(160, np.float32), 16000)
        counts: Counter[str] = Counter()
        for role, _ in evs:
            sf.write(split / f"{ex}_sources" / f"{role}{counts[role]}_sound.wav",
                     np.zeros(160, np.float32), 16000)
            counts[role] += 1
        jams = {"annotations": [{"namespace": "scaper", "data": [
            {"time": 0.0, "duration": 10.0, "confidence": 1.0,
             "value": {"label": "sound", "role": role, "source_file": f"/data/{src}"}}
            for role, src in evs]}]}
        (split / f"{ex}.jams").write_text(json.dumps(jams))
    gt = root / "FSD50K.ground_truth"
    gt.mkdir()
    (gt / "eval.csv").write_text('fname,labels,mids\n1001,"Rain,Water",/m/a,/m/b\n'
                                 '2002,Bark,/m/c\n3003,"Wind",/m/d\n')
    return root


def test_fuss_manifest_labels_sources_from_fsd50k(tmp_path: Path) -> None:
    root = _fake_fuss(tmp_path)
    out = tmp_path / "manifest.jsonl"
    stats = fuss_manifest(root / "ssdata", out, fsd50k_ground_truth=root / "FSD50K.ground_truth")
    assert stats == {"n": 2, "labels": 3, "source_counts": {1: 1, 2: 1}, "unlabelled": 0}
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs[0]["labels"] == ["Rain", "Bark"] and recs[0]["sources"][1]["origin"] == "2002"
    assert recs[0]["meta"]["all_labels"][0] == ["Rain", "Water"]
    fuss_manifest(root / "ssdata", out, fsd50k_ground_truth=root / "FSD50K.ground_truth",
                  label_mode="all")
    assert json.loads(out.read_text().splitlines()[0])["labels"][0] == "Rain|Water"
    with pytest.raises(ManifestError, match="split directory not found"):
        fuss_manifest(root / "ssdata", out, split="train", fsd50k_ground_truth=root)


def test_judge_validation_rejects_bad_annotations(tmp_path: Path) -> None:
    res = tmp_path / "results.jsonl"
    res.write_text(json.dumps({"id": "a", "method": "m", "count": 2, "count_source": "judge",
                               "recognition": True, "recognition_source": "judge"}) + "\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,count,labels_included\na,2,maybe\n")
    with pytest.raises(ValidationError, match="bad.csv:2: labels_included"):
        judge_agreement(bad, res)
    good = tmp_path / "good.csv"
    good.write_text("id,count,labels_included\na,2,yes\nzzz,1,no\n")
    rep = judge_agreement(good, res)
    assert rep["count"] == {"agreement": 1.0, "n": 1, "confusion": {"2->2": 1}, "left_out": {}}
    assert rep["labels"] == {"agreement": 1.0, "n": 1, "left_out": {}}
    assert rep["unmatched"] == ["zzz"]
    other = tmp_path / "other.csv"
    other.write_text("id,count,labels_included\nx,1,no\ny,2,yes\n")
    with pytest.raises(ValidationError, match=r"none of the 2 annotated ids of .*other.csv \('x', 'y'\)"):
        judge_agreement(other, res)
