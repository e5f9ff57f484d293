"""Experiments A (prompting), B (pipeline grid) and C (video → images → CLIPScore) end to end
with offline/tiny backends on mixtures built from ESC-10, plus judge validation and the
FUSS-manifest command on their outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from auralens.cli import main
from auralens.experiments.runner import load_experiment, run_experiment
from auralens.io import read_json, read_jsonl

pytestmark = pytest.mark.shared_data
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "experiments"
TABLES = ("summary", "by_sources", "es_by_sources", "accuracy_by_sources", "missing")


def _check_outputs(out: Path, figures: tuple[str, ...]) -> None:
    for name in TABLES:
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0
        assert (out / "tables" / f"{name}.md").read_text().startswith("### ")
    for name in figures:
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    run = read_json(out / "run.json")
    assert run["command"].startswith("experiment run") and "summary" in run
    # every stage model the methods loaded is named with its revision (weights in a folder)
    stages = {key.split("/")[0] for key in run["models"] if "/" in key}
    assert "captioner" in stages, run["models"]
    for key, record in run["models"].items():
        if key.startswith("captioner/"):
            assert len(record["revision"]) == 16, record


@pytest.fixture(scope="module")
def exp_a(esc10: Path, tiny_model, tmp_path_factory) -> Path:
    """Experiment A (offline variant) on 4 two-second mixtures; also the data for B and C."""
    out = tmp_path_factory.mktemp("exp-a")
    cfg = load_experiment(CONFIGS / "prompting.yaml", [
        f"data.path={esc10}", "data.n=4", "data.duration=2.0", "subset.n=4",
        f"models.captioner=classifier:{tiny_model('ast_classifier')}",
        f"models.allm=qwen2-audio:{tiny_model('tiny_qwen2audio')}@max_new_tokens=6",
        f"clap.model={tiny_model('clap_tiny')}",
    ])
    cfg["methods"][0]["techniques"] = ["zero-shot", "cot"]  # keep the tiny LLM part short
    summary = run_experiment(cfg, out)
    assert summary["errors"] == 0, (out / "errors.jsonl").read_text()
    return out


def test_experiment_a_prompting(exp_a: Path, tiny_model) -> None:
    rows = read_jsonl(exp_a / "results.jsonl")
    methods = {r["method"] for r in rows}
    assert methods == {"allm/zero-shot", "allm/cot", "template/zero-shot", "template/cot",
                       "template/role", "template/few-shot"}
    assert len(rows) == 4 * 6
    _check_outputs(exp_a, ("perception", "label_accuracy", "quality", "es_by_sources",
                           "accuracy_by_sources", "scores"))
    # reference separation keeps every true source: the kept count equals the truth
    for r in rows:
        if r["type"] == "pipeline":
            assert r["n_kept"] == r["n_sources"] == len(r["captions"])
            assert r["count_source"] == "kept_sources" and r["count"] == min(4, r["n_sources"])
        assert r["judge_is_llm"] is False and "not an LLM" in r["judge"]
    summary = {line["method"]: line for line in csv.DictReader(open(exp_a / "tables" / "summary.csv"))}
    assert float(summary["template/cot"]["ES"]) == 1.0
    # the table's label accuracy is the mean of the per-row verdicts
    cot = [r["recognition"] for r in rows if r["method"] == "template/cot"
           and r["recognition"] is not None]
    assert float(summary["template/cot"]["label_acc"]) == pytest.approx(np.mean(cot), abs=1e-3)
    # CLAPScore equals a direct cosine on the tiny CLAP's embeddings
    from auralens.audio import load
    from auralens.evaluate.clapscore import ClapScorer

    scorer = ClapScorer(tiny_model("clap_tiny"))
    r = rows[0]
    audio = load(exp_a / "data" / f"{r['id']}.wav", 48000)  # ids are <split>/exampleNNNNN
    a = scorer.embed_audio([audio], 48000)[0]
    t = scorer.embed_text([r["description"]])[0]
    assert r["clapscore"] == pytest.approx(float(a @ t), abs=1e-5)
    # skipped judge metrics are recorded, not faked
    skipped = read_json(exp_a / "skipped.json")
    assert any("coherence" in s["what"] for s in skipped)
    assert not any("coherence" in r for r in rows)


def test_experiment_resumes(exp_a: Path, tiny_model) -> None:
    before = (exp_a / "results.jsonl").read_text()
    cfg = load_experiment(CONFIGS / "prompting.yaml", [
        f"data.path={ROOT.parent / 'shared' / 'data' / 'esc10'}", "data.n=4",
        "data.duration=2.0", "subset.n=4",
        f"models.captioner=classifier:{tiny_model('ast_classifier')}", "models.allm=none",
        f"clap.model={tiny_model('clap_tiny')}",  # the rows' CLAPScores came from this model
    ])
    cfg["methods"][0]["techniques"] = ["zero-shot", "cot"]
    summary = run_experiment(cfg, exp_a)
    assert summary["new"] == 0 and (exp_a / "results.jsonl").read_text() == before
    assert any(s["what"].startswith("method allm/") and "no audio LLM" in s["reason"]
               for s in summary["skipped"])


def test_experiment_b_pipeline_grid(exp_a: Path, tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "b"
    code = main(["experiment", "run", str(CONFIGS / "pipeline.yaml"), "--out", str(out),
                 "--set", "data.source=manifest",
                 "--set", f"data.path={exp_a / 'data' / 'manifest.jsonl'}",
                 "--set", f"models.captioner=classifier:{tiny_model('ast_classifier')}",
                 "--set", f"models.allm=qwen2-audio:{tiny_model('tiny_qwen2audio')}@max_new_tokens=6"])
    assert code == 0
    rows = read_jsonl(out / "results.jsonl")
    captioner = Path(str(tiny_model("ast_classifier"))).name
    assert {r["method"] for r in rows} == {f"{captioner}/template/zero-shot",
                                           f"{captioner}/template/cot", "baseline"}
    assert len(rows) == 3 * 4
    for r in rows:
        if r["type"] == "pipeline":
            assert r["recognition_source"] == "per_caption"
        else:
            assert r["count_source"] == "judge"
    _check_outputs(out, ("perception", "label_accuracy", "es_by_sources", "accuracy_by_sources"))
    assert any("CLAPScore" in s["what"] for s in read_json(out / "skipped.json"))

    # judge validation against constructed annotations: agree on all but one count
    method = sorted({r["method"] for r in rows if r["type"] == "pipeline"})[0]
    mine = [r for r in rows if r["method"] == method]
    ann = tmp_path / "ann.csv"
    with open(ann, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "count", "labels_included"])
        for i, r in enumerate(mine):
            count = r["count"] + (1 if i == 0 else 0)
            rec = "" if r["recognition"] is None else ("yes" if r["recognition"] else "no")
            w.writerow([r["id"], count, rec])
    from auralens.evaluate.judge_validation import judge_agreement

    rep = judge_agreement(ann, out / "results.jsonl", method=method)
    # pipeline counts are kept-source counts, not the judge's: nothing to compare
    assert rep["count"]["agreement"] is None and rep["count"]["n"] == 0
    assert rep["count"]["left_out"] == {"count from kept_sources, not the judge": 4}
    assert rep["judge_is_llm"] is False
    n_rec = sum(r["recognition"] is not None for r in mine)
    assert rep["labels"]["n"] == n_rec
    if n_rec:
        assert rep["labels"]["agreement"] == 1.0
    assert main(["experiment", "judge-validate", str(ann), str(out / "results.jsonl"),
                 "--method", method]) == 0


def _pairs(exp_a: Path, tmp_path: Path) -> list[dict]:
    """Audio + reference-frame pairs (the "video" form without ffmpeg) from A's mixtures."""
    from PIL import Image

    records = read_jsonl(exp_a / "data" / "manifest.jsonl")
    pairs = []
    rng = np.random.default_rng(0)
    for rec in records:
        img = tmp_path / f"{Path(rec['mixture']).stem}.png"
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(img)
        mix = Path(rec["mixture"])
        mix = mix if mix.is_absolute() else exp_a / "data" / mix
        srcs = [str(p if Path(p).is_absolute() else exp_a / "data" / p)
                for p in (s["path"] for s in rec["sources"])]
        pairs.append({"id": rec["id"], "audio": str(mix), "image": str(img),
                      "labels": rec["labels"], "sources": srcs})
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return pairs


def test_experiment_c_video_pairs(exp_a: Path, tiny_model, tmp_path: Path) -> None:
    pairs = _pairs(exp_a, tmp_path)
    out = tmp_path / "c"  # ffmpeg is not required: clips are given as audio + frame pairs
    base = [f"data.path={tmp_path / 'pairs.jsonl'}",
            f"models.captioner=classifier:{tiny_model('ast_classifier')}",
            f"clip.model={tiny_model('clip_tiny')}"]
    summary = run_experiment(load_experiment(CONFIGS / "video.yaml", base), out)
    assert summary["errors"] == 0
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == len(pairs)
    from auralens.evaluate.clipscore import ClipScorer

    clip = ClipScorer(tiny_model("clip_tiny"))
    for r in rows:
        ref = clip.score([r["description"]], [tmp_path / f"{r['id'].split('/')[-1]}.png"])
        assert r["clip_reference_cos"] == pytest.approx(float(ref["cos"][0]), abs=1e-5)
        assert r["clip_reference"] == pytest.approx(2.5 * max(r["clip_reference_cos"], 0), abs=1e-9)
        assert "clip_generated" not in r  # no image model offline: skipped, never faked
    assert any("image generation" in s["what"] and "none" in s["reason"]
               for s in read_json(out / "skipped.json"))
    _check_outputs(out, ("scores",))


def test_fuss_manifest_from_mixer(exp_a: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    assert main(["experiment", "fuss-manifest", str(out), "--from-mixer", str(exp_a / "data")]) == 0
    recs = read_jsonl(out)
    assert len(recs) == 4 and all(Path(r["mixture"]).is_absolute() for r in recs)
    assert all(Path(s["path"]).exists() for r in recs for s in r["sources"])


@pytest.mark.slow
def test_experiment_c_with_generated_images(exp_a: Path, tiny_model, tmp_path: Path) -> None:
    """With a (tiny) text-to-image model the generated images are scored too."""
    from auralens.evaluate.clipscore import ClipScorer

    _pairs(exp_a, tmp_path)
    clip = ClipScorer(tiny_model("clip_tiny"))
    base = [f"data.path={tmp_path / 'pairs.jsonl'}",
            f"models.captioner=classifier:{tiny_model('ast_classifier')}",
            f"clip.model={tiny_model('clip_tiny')}"]
    out2 = tmp_path / "c-images"
    sd3 = tiny_model("tiny_sd3")
    run_experiment(load_experiment(CONFIGS / "video.yaml", [
        *base, "data.limit=2", f"image.generator=diffusers:{sd3}@steps=2,width=32,height=32"]), out2)
    rows = read_jsonl(out2 / "results.jsonl")
    assert len(rows) == 2
    for r in rows:
        gen = clip.score([r["description"]], [out2 / r["image"]])
        assert r["clip_generated_cos"] == pytest.approx(float(gen["cos"][0]), abs=1e-5)
    _check_outputs(out2, ("scores",))
