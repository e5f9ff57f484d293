"""Experiment inputs that are not what they should be: pairs and manifest lines, ids, a data
file changed behind a resumed run, corrupt results lines, FUSS-manifest inputs; and the run's
own records (run.json while it runs, one image per method, notes on earlier rows). The
reference separation + the committed classifier + the template composer + the keyword judge
on three short synthetic mixtures."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import auralens.experiments.runner as runner
from auralens.cli import main
from auralens.experiments.fussmanifest import (
    ManifestError,
    fuss_manifest,
    manifest_from_mixer,
    pairs_from_mixer,
)
from auralens.experiments.runner import ExperimentError, image_name, run_experiment
from auralens.io import read_json, read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def mixes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two mixer folders (recipe seeds 0 and 1): the same ids, other audio."""
    root = tmp_path_factory.mktemp("exp-inputs")
    assert main(["data", "synth", "--out", str(root / "lib"), "--clips-per-class", "1",
                 "--sample-rate", "16000", "--duration", "1", "--classes",
                 "siren,rain,engine,clock_tick"]) == 0
    for seed in (0, 1):
        assert main(["data", "mix", str(root / "lib"), "--out", str(root / f"mix{seed}"), "--n",
                     "3", "--duration", "1", "--no-reverb", "--max-sources", "2",
                     "--seed", str(seed)]) == 0
    return {seed: root / f"mix{seed}" for seed in (0, 1)}


def _cfg(path: Path, source: str = "pairs", names: tuple[str, ...] = ("m",), **kw) -> dict:
    methods = [{"name": n, "type": "pipeline", "separator": "reference",
                "captioner": "classifier", "composer": "template"} for n in names]
    return copy.deepcopy({
        "name": "t", "kind": "pipeline", "_source": "t.yaml",
        "data": {"source": source, "path": str(path)}, "methods": methods,
        "judge": {"spec": "keyword", "metrics": ["count", "recognition"]},
        "clap": {"model": None}, **kw})


def _pairs(mixes: dict[int, Path], tmp_path: Path, seed: int = 0) -> Path:
    path = tmp_path / "pairs.jsonl"
    pairs_from_mixer(mixes[seed], path)
    return path


def _table(out: Path, name: str) -> dict[str, dict[str, str]]:
    with open(out / "tables" / f"{name}.csv") as fh:
        return {r["method"]: r for r in csv.DictReader(fh)}


def test_resume_refuses_an_item_whose_data_changed(mixes: dict[int, Path],
                                                   tmp_path: Path) -> None:
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    assert run_experiment(_cfg(path), out)["new"] == 3
    before = (out / "results.jsonl").read_text()
    pairs = read_jsonl(path)
    write_jsonl(path, [pairs[0], {**pairs[1], "audio": pairs[2]["audio"]}, pairs[2]])
    with pytest.raises(ExperimentError) as exc:
        run_experiment(_cfg(path), out)
    item = pairs[1]["id"]
    assert str(exc.value) == (f"{out}: results.jsonl holds rows of item {item!r} made from "
                              f"other data (its audio changed since; data.path is {path}); use "
                              f"another --out, or remove the rows of {item!r} from "
                              f"{out / 'results.jsonl'} to redo them")
    assert (out / "results.jsonl").read_text() == before  # nothing mixed in
    write_jsonl(path, [pairs[0], {**pairs[1], "labels": ["not a label"]}, pairs[2]])
    with pytest.raises(ExperimentError, match=r"\(its labels changed since;"):
        run_experiment(_cfg(path), out)
    _pairs(mixes, tmp_path, seed=1)  # same ids, other mixtures
    with pytest.raises(ExperimentError, match=f"holds rows of item {pairs[0]['id']!r} made"):
        run_experiment(_cfg(path), out)
    assert run_experiment(_cfg(path), tmp_path / "other")["new"] == 3
    # rows without a signature (older versions, also the one that hashed the whole data
    # file into "data") are not checked
    write_jsonl(out / "results.jsonl", [
        {**{k: v for k, v in r.items() if k != "data_signature"},
         "data": {"source": "pairs", "sha256": "0" * 64}} for r in read_jsonl(out / "results.jsonl")])
    assert run_experiment(_cfg(path), out)["new"] == 0


def test_changed_data_is_refused_before_any_model_loads(mixes: dict[int, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    assert run_experiment(_cfg(path), out)["new"] == 3
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    loads: list[str] = []
    real = runner._build_stage

    def build(stage: str, spec: object) -> object:
        loads.append(stage)
        return real(stage, spec)

    monkeypatch.setattr(runner, "_build_stage", build)
    real_init = runner.Evaluator.__init__

    def evaluator(self: runner.Evaluator, *args: object, **kwargs: object) -> None:
        loads.append("judge and metric models")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(runner.Evaluator, "__init__", evaluator)
    pairs = read_jsonl(path)
    write_jsonl(path, [pairs[0], {**pairs[1], "audio": pairs[2]["audio"]}, pairs[2]])
    with pytest.raises(ExperimentError, match=f"holds rows of item {pairs[1]['id']!r} made "
                                              r"from other data \(its audio changed since;"):
        run_experiment(_cfg(path), out)
    assert loads == []  # refused before the captioner, composer or judge was loaded
    # and before anything was written: run.json still describes the rows beside it
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    pairs_from_mixer(mixes[0], path)  # the data back as it was: resumes, nothing to do
    assert run_experiment(_cfg(path), out)["new"] == 0
    assert loads  # a run that goes on loads its models as before


def test_resume_keeps_rows_of_unchanged_items(mixes: dict[int, Path], tmp_path: Path) -> None:
    pairs, out = read_jsonl(_pairs(mixes, tmp_path)), tmp_path / "e"
    path = tmp_path / "data" / "pairs.jsonl"
    write_jsonl(path, pairs[:2])
    assert run_experiment(_cfg(path), out)["new"] == 2
    assert [r["data_signature"]["labels"] for r in read_jsonl(out / "results.jsonl")] == [
        p["labels"] for p in pairs[:2]]
    write_jsonl(path, pairs)  # an appended pair just adds its rows
    assert run_experiment(_cfg(path), out)["new"] == 1
    # the same data in another folder, the pairs file rewritten with the new paths
    shutil.copytree(mixes[0], tmp_path / "moved")
    pairs_from_mixer(tmp_path / "moved", path)
    assert read_jsonl(path) != pairs
    summary = run_experiment(_cfg(path), out)
    assert summary["new"] == 0 and summary["in_tables"] == 3
    assert read_json(out / "run.json")["data"] == {"source": "pairs", "path": str(path)}
    # an item outside this run's selection is not compared (it stays out of the tables)
    moved = read_jsonl(path)
    write_jsonl(path, [*moved[:2], {**moved[2], "audio": moved[0]["audio"]}])
    limited = copy.deepcopy(_cfg(path))
    limited["data"]["limit"] = 2
    assert run_experiment(limited, out)["outside_tables"] == 1


def test_numeric_manifest_ids_fill_the_tables_and_resume(mixes: dict[int, Path],
                                                        tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    manifest_from_mixer(mixes[0], path)
    write_jsonl(path, [{**r, "id": i} for i, r in enumerate(read_jsonl(path))])
    out = tmp_path / "e"
    first = run_experiment(_cfg(path, "manifest"), out)
    assert first["new"] == 3 and first["in_tables"] == 3
    assert _table(out, "summary")["m"]["n"] == "3"
    assert [r["id"] for r in read_jsonl(out / "results.jsonl")] == ["0", "1", "2"]
    assert run_experiment(_cfg(path, "manifest"), out)["new"] == 0


@pytest.mark.parametrize("source", ["pairs", "manifest"])
def test_duplicate_ids_are_refused(mixes: dict[int, Path], tmp_path: Path, source: str) -> None:
    path = tmp_path / "data.jsonl"
    (pairs_from_mixer if source == "pairs" else manifest_from_mixer)(mixes[0], path)
    lines = read_jsonl(path)
    write_jsonl(path, [*lines, {**lines[2], "id": lines[0]["id"]}])
    with pytest.raises(ExperimentError) as exc:
        run_experiment(_cfg(path, source), tmp_path / "e")
    assert str(exc.value) == (f"{path}:4: duplicate id {lines[0]['id']!r} (also on line 1); "
                              "ids must be unique")
    assert not (tmp_path / "e" / "results.jsonl").read_text().strip()


@pytest.mark.parametrize(("change", "problem"), [
    ({"labels": "dog"}, "labels must be a list of strings, got 'dog'"),
    ({"sources": "a.wav"}, "sources must be a list of strings, got 'a.wav'"),
    ({"n_sources": "4"}, "n_sources must be a whole number ≥ 0 or null, got '4'"),
    ({"n_sources": 1.5}, "n_sources must be a whole number ≥ 0 or null, got 1.5"),
    ({"n_sources": True}, "n_sources must be a whole number ≥ 0 or null, got True"),
    ({"audio": None}, "the pair has no 'audio'"),
    ({"id": None}, "the pair has no 'id'"),
    ({"id": True}, "id True is not text or a number"),
    ({"id": "  "}, "id is empty"),  # as in a manifest (auralens.types.id_text)
    (42, "a pair must be a JSON object with id and audio, got 42"),
    (["a"], "a pair must be a JSON object with id and audio, got ['a']"),
])
def test_bad_pairs_lines_are_one_line_errors(mixes: dict[int, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], change: object,
                                            problem: str) -> None:
    path = _pairs(mixes, tmp_path)
    lines: list = read_jsonl(path)
    if isinstance(change, dict):
        lines[1] = {k: v for k, v in {**lines[1], **change}.items() if v is not None}
    else:
        lines[1] = change
    write_jsonl(path, lines)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(json.dumps({k: v for k, v in _cfg(path).items() if k != "_source"}))
    assert main(["experiment", "run", str(cfg), "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path}:2: {problem}\n"
    run = read_json(tmp_path / "e" / "run.json")  # the run that stopped says so
    assert run["status"] == "failed" and run["error"] == f"{path}:2: {problem}"


@pytest.mark.parametrize(("bad", "problem"), [
    (lambda r: 42, "not a JSON object, so not a result row"),
    (lambda r: None, "not a JSON object, so not a result row"),
    (lambda r: {k: v for k, v in r.items() if k != "id"},
     "a result row needs an id and a method name"),
    (lambda r: {**r, "count": "many"}, "count 'many' is not a whole number ≥ 0"),
    (lambda r: {**r, "recognition": "false"}, "recognition 'false' is not true or false"),
    (lambda r: {**r, "n_sources": "3"}, "n_sources '3' is not a whole number ≥ 0"),
    (lambda r: {**r, "n_sources": 1.5}, "n_sources 1.5 is not a whole number ≥ 0"),
])
def test_bad_results_lines_are_refused(mixes: dict[int, Path], tmp_path: Path, bad,
                                       problem: str) -> None:
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    run_experiment(_cfg(path), out)
    rows: list = read_jsonl(out / "results.jsonl")
    rows[1] = bad(rows[1])
    write_jsonl(out / "results.jsonl", rows)
    with pytest.raises(ExperimentError) as exc:
        run_experiment(_cfg(path), out)
    assert str(exc.value).startswith(f"{out / 'results.jsonl'}:2: {problem}")
    assert "\n" not in str(exc.value)


def test_whole_valued_float_n_sources_are_whole_numbers(mixes: dict[int, Path],
                                                       tmp_path: Path) -> None:
    # pandas writes a column holding a null as floats: 2.0 in a pairs file or results.jsonl
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    pairs = read_jsonl(path)
    write_jsonl(path, [{**p, "n_sources": float(p["n_sources"])} for p in pairs])
    assert run_experiment(_cfg(path), out)["new"] == 3
    rows = read_jsonl(out / "results.jsonl")
    assert [r["n_sources"] for r in rows] == [p["n_sources"] for p in pairs]
    assert all(type(r["n_sources"]) is int for r in rows)
    write_jsonl(out / "results.jsonl", [{**r, "n_sources": float(r["n_sources"]),
                                         "count": float(r["count"])} for r in rows])
    summary = run_experiment(_cfg(path), out)  # a resume of rows written that way
    assert summary["new"] == 0 and summary["in_tables"] == 3
    with open(out / "tables" / "by_sources.csv") as fh:
        groups = [(int(r["n_sources"]), int(r["n"])) for r in csv.DictReader(fh)]
    counts = Counter(p["n_sources"] for p in pairs)
    assert groups == sorted(counts.items())


def test_pairs_ids_are_read_as_manifest_ids(mixes: dict[int, Path], tmp_path: Path) -> None:
    path = _pairs(mixes, tmp_path)
    pairs = read_jsonl(path)
    # a pair's id names no folder: a path-like id is fine there (not in a manifest)
    write_jsonl(path, [{**p, "id": i} for p, i in zip(pairs, (3.0, 4, "/clips/a.wav"), strict=True)])
    assert run_experiment(_cfg(path, "pairs"), tmp_path / "paths")["new"] == 3
    write_jsonl(path, [{**p, "id": i} for p, i in zip(pairs, (3.0, 4, "x"), strict=True)])
    manifest = tmp_path / "manifest.jsonl"
    manifest_from_mixer(mixes[0], manifest)
    write_jsonl(manifest, [{**r, "id": i} for r, i in
                           zip(read_jsonl(manifest), (3.0, 4, "x"), strict=True)])
    for data, source in ((path, "pairs"), (manifest, "manifest")):
        out = tmp_path / source
        assert run_experiment(_cfg(data, source), out)["new"] == 3
        assert [r["id"] for r in read_jsonl(out / "results.jsonl")] == ["3.0", "4", "x"]


def test_a_truncated_last_results_line_is_still_skipped(mixes: dict[int, Path],
                                                       tmp_path: Path) -> None:
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    run_experiment(_cfg(path), out)
    text = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(text[:2]) + text[2][:40])
    assert run_experiment(_cfg(path), out)["new"] == 1  # the killed line is redone


class _Canvas:
    """An image generator that paints a canvas per description."""

    def generate(self, text: str, seed: int = 0):
        from PIL import Image

        return Image.new("RGB", (8, 8), (len(text) % 256, 0, 0))


def test_method_names_differing_in_slash_get_their_own_images(mixes: dict[int, Path],
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = runner._build_stage
    monkeypatch.setattr(runner, "_build_stage", lambda stage, spec: _Canvas() if stage == "image"
                        else real(stage, spec))
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    cfg = _cfg(path, names=("p/x", "p_x"), kind="video", image={"generator": "none"})
    cfg["methods"][1]["technique"] = "cot"  # other descriptions: other images
    summary = run_experiment(cfg, out)
    assert summary["errors"] == 0
    rows = read_jsonl(out / "results.jsonl")
    images = {(r["id"], r["method"]): r["image"] for r in rows}
    assert len(images) == 6 and len(set(images.values())) == 6
    for (item, method), image in images.items():
        assert (out / image).is_file() and (out / image).parent == out / "images"
        assert image == f"images/{image_name(item, method)}"
    assert image_name("a", "p_x") == "a__p_x.png"  # plain names keep their file names
    assert image_name("a", "p/x") != "a__p_x.png"
    assert "/" not in image_name("../../x", "m") and "__" not in image_name("a__b", "m")[:-8]
    assert image_name("a" * 60, "m") == "a" * 60 + "__m.png"
    long = [image_name("a" * 250, "m"), image_name("a" * 249 + "b", "m"),
            image_name("a" * 250 + "/x", "m" * 300)]
    assert len(set(long)) == 3 and max(len(n) for n in long) <= 150
    (out / "images" / long[2]).write_bytes(b"")  # within the file system's limit


def test_run_json_says_running_while_the_run_works(mixes: dict[int, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    seen = []
    real = runner.Describer.describe

    def describe(self, method, item):
        seen.append(read_json(out / "run.json")["status"])
        return real(self, method, item)

    monkeypatch.setattr(runner.Describer, "describe", describe)
    run_experiment(_cfg(path), out)
    assert seen == ["running"] * 3
    run = read_json(out / "run.json")
    assert run["status"] == "done" and run["data"]["source"] == "pairs"
    assert run["summary"]["new"] == 3


def test_rows_of_a_switched_off_baseline_are_marked(mixes: dict[int, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, out = _pairs(mixes, tmp_path), tmp_path / "e"
    cfg = _cfg(path, baseline={"model": "none"})
    run_experiment(cfg, out)
    rows = read_jsonl(out / "results.jsonl")
    earlier = [{**r, "method": "baseline", "type": "allm", "setting": {
        "type": "allm", "model": "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct",
        "technique": "zero-shot"}} for r in rows]
    write_jsonl(out / "results.jsonl", rows + earlier)
    yaml = tmp_path / "t.yaml"
    yaml.write_text(json.dumps({k: v for k, v in cfg.items() if k != "_source"}))
    assert main(["experiment", "run", str(yaml), "--out", str(out)]) == 0
    note = ("Note: the 3 rows of baseline come from an earlier run (model "
            "qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct); this run gives baseline no model.")
    assert note in capsys.readouterr().out
    assert _table(out, "summary")["baseline"]["n"] == "3"
    assert note in (out / "tables" / "summary.md").read_text()
    assert read_json(out / "run.json")["summary"]["notes"] == [note]


# ----------------------------------------------------------------------------- FUSS manifest


def _fuss(root: Path, events: object) -> Path:
    """One FUSS eval example with the given JAMS data and an FSD50K eval.csv."""
    split = root / "ssdata" / "eval"
    (split / "example0_sources").mkdir(parents=True)
    sf.write(split / "example0.wav", np.zeros(160, np.float32), 16000)
    sf.write(split / "example0_sources" / "background0_sound.wav", np.zeros(160, np.float32), 16000)
    (split / "example0.jams").write_text(json.dumps({"annotations": [{"data": events}]}))
    (root / "eval.csv").write_text("fname,labels,mids\n1001,Rain,/m/a\n")
    return root


EVENT = {"value": {"role": "background", "source_file": "/fsd/1001.wav"}}


@pytest.mark.parametrize(("events", "problem"), [
    ([{"time": 0.0}], "event 0 has no value object"),
    ([EVENT, {"value": "background"}], "event 1 has no value object"),
    ({"time": [0.0, 1.0], "value": [EVENT["value"]]}, "data columns are not lists of one length"),
    ("nothing", "data is not a list of events"),
    ([3], "event 0 has no value object"),
])
def test_bad_jams_files_are_one_line_errors(tmp_path: Path, events: object, problem: str) -> None:
    root = _fuss(tmp_path, events)
    with pytest.raises(ManifestError) as exc:
        fuss_manifest(root / "ssdata", tmp_path / "m.jsonl", fsd50k_ground_truth=root / "eval.csv")
    jams = root / "ssdata" / "eval" / "example0.jams"
    assert str(exc.value).startswith(f"{jams}: ") and problem in str(exc.value)
    assert not (tmp_path / "m.jsonl").exists()


def test_fuss_manifest_column_major_jams_and_short_csv_rows(tmp_path: Path) -> None:
    root = _fuss(tmp_path, {"time": [0.0], "value": [EVENT["value"]]})
    stats = fuss_manifest(root / "ssdata", tmp_path / "m.jsonl", fsd50k_ground_truth=root / "eval.csv")
    assert stats["labels"] == 1 and stats["unlabelled"] == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\nexample0,Rain\nexample1\n")
    with pytest.raises(ManifestError, match=f"^{labels}:3: the row has no id or labels column$"):
        fuss_manifest(root / "ssdata", tmp_path / "m.jsonl", labels_csv=labels)
    (root / "eval.csv").write_text("fname,labels,mids\n1001\n")
    with pytest.raises(ManifestError, match="eval.csv:2: the row has no fname or labels column$"):
        fuss_manifest(root / "ssdata", tmp_path / "m.jsonl", fsd50k_ground_truth=root / "eval.csv")


def test_unknown_label_mode_is_refused(mixes: dict[int, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _fuss(tmp_path, [EVENT])
    with pytest.raises(ManifestError, match="label mode must be one of first, all, got 'frist'"):
        fuss_manifest(root / "ssdata", tmp_path / "m.jsonl", fsd50k_ground_truth=root / "eval.csv",
                      label_mode="frist")
    out = tmp_path / "m2.jsonl"
    assert main(["experiment", "fuss-manifest", str(out), "--from-mixer", str(mixes[0]),
                 "--label-mode", "frist"]) == 1
    assert capsys.readouterr().err == ("error: --label-mode must be one of first, all, "
                                       "got 'frist'\n")
    assert not out.exists()


@pytest.mark.parametrize("separator", ["reference", "nmf@n_iter=10"])
def test_pipeline_methods_check_inputs_as_imagine_does(mixes: dict[int, Path], tmp_path: Path,
                                                        separator: str) -> None:
    """A missing or 0.6 ms mixture fails its row (named, as `imagine` refuses it) whatever the
    separator; a DC-only reference source is not captioned."""
    pairs = read_jsonl(_pairs(mixes, tmp_path))
    short = tmp_path / "short.wav"
    sf.write(short, np.full(10, 0.1, np.float32), 16000)
    dc = tmp_path / "dc.wav"
    sf.write(dc, np.full(16000, 0.5, np.float32), 16000, subtype="FLOAT")
    pairs[0]["audio"] = str(tmp_path / "gone.wav")
    pairs[1]["audio"] = str(short)
    pairs[2]["sources"] = [pairs[2]["sources"][0], str(dc)]
    path = tmp_path / "edited.jsonl"
    write_jsonl(path, pairs)
    cfg = _cfg(path)
    cfg["methods"][0]["separator"] = separator
    run_experiment(cfg, tmp_path / "e")
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "e" / "results.jsonl")}
    assert rows[pairs[0]["id"]]["status"] == "error"
    assert "gone.wav: file not found" in rows[pairs[0]["id"]]["error"]
    assert rows[pairs[1]["id"]]["status"] == "error"
    assert rows[pairs[1]["id"]]["error"].startswith(f"{short}: too short to describe: 0.6 ms")
    if separator == "reference":
        assert rows[pairs[2]["id"]]["status"] == "ok" and rows[pairs[2]["id"]]["n_kept"] == 1
