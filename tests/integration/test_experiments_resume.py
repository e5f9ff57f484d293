"""The experiment runner against the review's reproductions: resume only with the same
method settings, the caption cache keyed on the activity settings, recognition False for
items that kept nothing, config errors before any work, and a note for techniques the
template composer ignores. NMF + the committed classifier + the template composer + the
keyword judge on three short synthetic mixtures (no shared data)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from auralens.cli import main
from auralens.config import ConfigError, load_yaml
from auralens.evaluate.aggregate import summarize_group
from auralens.experiments.runner import (
    ExperimentError,
    _check_numbers,
    expand_methods,
    load_experiment,
    load_items,
    run_experiment,
    validate_experiment,
)
from auralens.io import read_json, read_jsonl

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "experiments"
LOOSE = {"rule": "relative_db", "min_db": -60}
STRICT = {"rule": "relative_db", "min_db": 30}  # no estimate is 30 dB above its mixture


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    from auralens.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("exp-resume") / "lib", clips_per_class=1, seed=3,
                      duration=1.0)


def _method(name: str, activity: dict, **kw) -> dict:
    return {"name": name, "type": "pipeline", "separator": "nmf@n_iter=10",
            "captioner": "classifier", "composer": "template", "activity": activity, **kw}


def _cfg(lib: Path, methods: list[dict], **kw) -> dict:
    cfg = {"name": "t", "kind": "pipeline", "_source": "t.yaml",
           "data": {"source": "esc50", "path": str(lib), "n": 3, "duration": 1.5,
                    "reverb": False, "seed": 0, "max_sources": 2},
           "methods": methods, "judge": {"spec": "keyword", "metrics": ["count", "recognition"]},
           "clap": {"model": None}}
    cfg.update(kw)
    return copy.deepcopy(cfg)


def test_caption_cache_is_keyed_on_activity(lib: Path, tmp_path: Path) -> None:
    both = run_experiment(_cfg(lib, [_method("loose", LOOSE), _method("strict", STRICT)]),
                          tmp_path / "both")
    assert both["errors"] == 0
    rows = read_jsonl(tmp_path / "both" / "results.jsonl")
    kept = {m: [r["n_kept"] for r in rows if r["method"] == m] for m in ("loose", "strict")}
    run_experiment(_cfg(lib, [_method("strict", STRICT)]), tmp_path / "alone")
    alone = read_jsonl(tmp_path / "alone" / "results.jsonl")
    assert kept["strict"] == [r["n_kept"] for r in alone] == [0, 0, 0]
    assert all(k > 0 for k in kept["loose"])
    # B6: nothing kept → a definite "not recognised" that counts in label accuracy
    strict = [r for r in rows if r["method"] == "strict"]
    assert all(r["recognition"] is False and r["recognition_source"] == "nothing_kept"
               and r["count"] == 0 for r in strict)
    summary = summarize_group(strict)
    assert summary["label_acc"] == 0.0 and summary["recognition_missing"] == 0


def test_resume_refuses_changed_method_settings(lib: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    first = run_experiment(_cfg(lib, [_method("m", LOOSE)]), out)
    assert first["new"] == 3
    rows = read_jsonl(out / "results.jsonl")
    assert len({r["fingerprint"] for r in rows}) == 1
    before = (out / "results.jsonl").read_text()
    changed = _method("m", {"rule": "relative_db", "min_db": -40})
    with pytest.raises(ExperimentError, match=r"method 'm' made with different settings "
                                              r"\(activity\).*another --out"):
        run_experiment(_cfg(lib, [changed]), out)
    other_sep = _method("m", LOOSE, separator="nmf@n_iter=11")
    with pytest.raises(ExperimentError, match=r"different settings \(separator\)"):
        run_experiment(_cfg(lib, [other_sep]), out)
    other_judge = _cfg(lib, [_method("m", LOOSE)],
                       judge={"spec": "keyword", "metrics": ["count"]})
    with pytest.raises(ExperimentError, match=r"evaluation \(judge"):
        run_experiment(other_judge, out)
    assert (out / "results.jsonl").read_text() == before
    # same settings: resumes with nothing to do
    assert run_experiment(_cfg(lib, [_method("m", LOOSE)]), out)["new"] == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"judge": {"spec": "bogus"}}, "judge.spec: unknown judge backend 'bogus'"),
    ({"judge": {"spec": "keyword", "metrics": ["bogus"]}}, "unknown judge metric 'bogus'"),
    ({"judge": {"spec": "keyword", "metrics": "count"}}, "judge.metrics must be a list"),
    ({"methods": [_method("m", {"bogus": 1})]}, "method 'm': activity.*'bogus'"),
    ({"methods": [_method("m", LOOSE, captioner="captionr")]}, "unknown captioner backend"),
    ({"methods": [_method("m", LOOSE, separator="nfm")]}, "unknown separator backend 'nfm'"),
])
def test_config_errors_before_any_work(lib: Path, tmp_path: Path, change: dict,
                                       message: str) -> None:
    cfg = _cfg(lib, [_method("m", LOOSE)])
    cfg.update(copy.deepcopy(change))
    with pytest.raises(ConfigError, match=message):
        run_experiment(cfg, tmp_path / "e")
    assert not (tmp_path / "e").exists()  # no mixtures built, nothing written


def test_cli_unknown_judge_is_one_line(lib: Path, tmp_path: Path, capsys) -> None:
    yaml = tmp_path / "e.yaml"
    yaml.write_text(f"name: e\nkind: pipeline\ndata: {{source: esc50, path: {lib}, n: 2}}\n"
                    "methods: [{name: m, type: pipeline, separator: nmf, captioner: classifier,"
                    " composer: template}]\njudge: {spec: keyword}\n")
    assert main(["experiment", "run", str(yaml), "--out", str(tmp_path / "o"),
                 "--set", "judge.spec=bogus"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unknown judge backend 'bogus'" in err
    assert len(err.splitlines()) == 1


def test_template_composer_techniques_are_noted(lib: Path, tmp_path: Path, capsys) -> None:
    methods = [{**_method("t", LOOSE), "name": f"t/{t}", "technique": t}
               for t in ("zero-shot", "cot", "role", "few-shot")]
    summary = run_experiment(_cfg(lib, methods, data={
        "source": "esc50", "path": str(lib), "n": 1, "duration": 1.5, "reverb": False}),
        tmp_path / "e")
    notes = [s for s in read_json(tmp_path / "e" / "skipped.json") if s.get("kind") == "note"]
    assert sorted(n["what"] for n in notes) == ["technique 'few-shot' of method t/few-shot",
                                                "technique 'role' of method t/role"]
    assert all("same as zero-shot by construction" in n["reason"] for n in notes)
    assert notes[0] in summary["skipped"]
    assert any(n["what"].startswith("technique") for n in
               read_json(tmp_path / "e" / "run.json")["summary"]["skipped"])


def test_resume_accepts_equivalent_method_settings(lib: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    cfg = _cfg(lib, [_method("m", LOOSE)])
    assert run_experiment(cfg, out)["new"] == 3
    # defaults named, ints for floats, a dict spec, option order: the same settings
    same = _method("m", {"rule": "relative_db", "min_db": -60.0, "threshold": 0.1},
                   separator="nmf@n_iter=10", captioner=None, composer={"spec": "template"},
                   technique="zero-shot")
    assert run_experiment(_cfg(lib, [same]), out)["new"] == 0
    # the judge's default metrics spelled out are the default
    out2 = tmp_path / "d"
    run_experiment(_cfg(lib, [_method("m", LOOSE)], judge={"spec": "keyword"}), out2)
    from auralens.experiments.runner import DEFAULT_METRICS

    spelled = {"spec": "keyword", "metrics": list(DEFAULT_METRICS)}
    assert run_experiment(_cfg(lib, [_method("m", LOOSE)], judge=spelled), out2)["new"] == 0


def test_settings_of_resolves_model_paths(tmp_path: Path, monkeypatch) -> None:
    from auralens.config import fingerprint
    from auralens.experiments.runner import settings_of

    (tmp_path / "a" / "clf").mkdir(parents=True)
    (tmp_path / "b" / "clf").mkdir(parents=True)
    cfg = _cfg(tmp_path, [])

    def key(captioner: str) -> str:
        return fingerprint(settings_of(_method("m", LOOSE, captioner=captioner), cfg))

    monkeypatch.chdir(tmp_path / "a")
    rel = key("classifier:clf")
    assert rel == key(f"classifier:{tmp_path / 'a' / 'clf'}") == key("classifier:./clf")
    monkeypatch.chdir(tmp_path / "b")
    assert key("classifier:clf") != rel
    # with reference sources the activity filter is not used, so it does not count
    ref = {"name": "r", "type": "pipeline", "captioner": "classifier", "composer": "template"}
    assert (fingerprint(settings_of(ref, cfg))
            == fingerprint(settings_of({**ref, "separator": "reference", "activity": LOOSE}, cfg)))
    assert (fingerprint(settings_of(ref, cfg))
            != fingerprint(settings_of({**ref, "separator": None}, cfg)))  # None → tdcnpp


def _as_older_version(out: Path) -> None:
    """Strip what rows gained with fingerprints (as an older version wrote them)."""
    rows = read_jsonl(out / "results.jsonl")
    for r in rows:
        del r["fingerprint"], r["settings"]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_resume_rows_of_an_older_version(lib: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    run_experiment(_cfg(lib, [_method("m", LOOSE)]), out)
    _as_older_version(out)
    before = (out / "results.jsonl").read_text()
    changed = _method("m", {"rule": "relative_db", "min_db": -40})
    with pytest.raises(ExperimentError, match=r"method 'm' made with different settings "
                                              r"\(activity\)"):
        run_experiment(_cfg(lib, [changed]), out)
    assert (out / "results.jsonl").read_text() == before
    # the settings run.json records: resumes, and the old rows get the fingerprint
    assert run_experiment(_cfg(lib, [_method("m", LOOSE)]), out)["new"] == 0
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 3 and len({r["fingerprint"] for r in rows}) == 1
    assert all(r["settings"]["method"]["activity"]["min_db"] == -60.0 for r in rows)
    # rows whose own setting column disagrees with run.json, or no run.json: refused
    _as_older_version(out)
    rows = read_jsonl(out / "results.jsonl")
    rows[0]["setting"]["separator"] = "nmf@n_iter=99"
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ExperimentError, match="without a settings fingerprint"):
        run_experiment(_cfg(lib, [_method("m", LOOSE)]), out)
    (out / "run.json").unlink()
    with pytest.raises(ExperimentError, match="without a settings fingerprint"):
        run_experiment(_cfg(lib, [_method("m", LOOSE)]), out)


def test_other_settings_refused_before_data_and_models(lib: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    import auralens.experiments.runner as runner

    out = tmp_path / "e"
    run_experiment(_cfg(lib, [_method("m", LOOSE)]), out)
    mixtures = sorted(p.name for p in (out / "data").rglob("*.wav"))

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the settings check")

    monkeypatch.setattr(runner, "load_items", no_work)
    monkeypatch.setattr(runner.Describer, "check", no_work)
    more = _cfg(lib, [_method("m", LOOSE)], judge={"spec": "keyword", "metrics": ["count"]})
    more["data"]["n"] = 5
    with pytest.raises(ExperimentError, match=r"evaluation \(judge"):
        run_experiment(more, out)
    # a changed method is refused even when its model would turn out to be missing
    missing = _method("m", LOOSE, captioner=f"classifier:{tmp_path / 'no-such-model'}")
    with pytest.raises(ExperimentError, match=r"different settings \(captioner\)"):
        run_experiment(_cfg(lib, [missing]), out)
    assert sorted(p.name for p in (out / "data").rglob("*.wav")) == mixtures


@pytest.mark.parametrize(("override", "message"), [
    ("judge.spex=mistral", "unknown judge key(s) spex; known: spec, metrics, params"),
    ("clap.modl=x", "unknown clap key(s) modl; known: model"),
    ("grid.captionr=[x]", "unknown grid key(s) captionr; known: captioner, composer, technique"),
    ("subset.nn=1", "unknown subset key(s) nn; known: n, seed"),
    ("baseline.modle=x", "unknown baseline key(s) modle; known: model, technique"),
    ("judge=keyword", "judge must be a mapping (e.g. judge.spec=…), got 'keyword'"),
    ("grid=5", "grid must be a mapping (e.g. grid.captioner=…), got 5"),
    ("data.folds=abc", "data.folds must be a list of whole numbers ≥ 0 (e.g. [1, 2]) or one"),
    ("data.folds=[1,x]", "data.folds must be a list of whole numbers ≥ 0"),
    ("data.folds=[-1]", "data.folds must be a list of whole numbers ≥ 0"),
    ("data.folds=-1", "data.folds must be a list of whole numbers ≥ 0"),
    ("data.reverb=maybe", "data.reverb must be true or false, got 'maybe'"),
    # a quoted value is text (the quotes are not part of it), and text is not a boolean
    ("data.reverb='false'", "data.reverb must be true or false, got 'false'"),
])
def test_section_keys_folds_and_reverb_are_checked(tmp_path: Path, capsys, override: str,
                                                  message: str) -> None:
    capsys.readouterr()
    code = main(["experiment", "run", str(CONFIGS / "pipeline.yaml"), "--out", str(tmp_path / "o"),
                 "--set", f"data.path={tmp_path / 'missing'}", "--set", override])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_pass_the_config_check(config: Path) -> None:
    for variant in [None, *(load_yaml(config).get("variants") or {})]:
        cfg = load_experiment(config, [f"variant={variant}"] if variant else [])
        _check_numbers(cfg, str(config))
        validate_experiment(cfg, expand_methods(cfg))


def test_one_fold_is_a_one_item_list(lib: Path, tmp_path: Path) -> None:
    cfg = _cfg(lib, [_method("m", LOOSE)])
    cfg["data"].update(n=1, folds=1)
    _check_numbers(cfg, "t.yaml")
    assert len(load_items(cfg, tmp_path)) == 1
    # this library's clips are all in fold 1: [1] is every fold, recorded as the default
    from auralens.data.esc50 import load_esc50

    assert {c.fold for c in load_esc50(lib)} == {1}
    assert read_json(tmp_path / "data" / "train_mix_config.json")["folds"] is None


def test_out_that_is_a_file_is_refused_up_front(lib: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep")
    with pytest.raises(ExperimentError,
                       match=r"afile: exists and is not a directory \(--out names a folder\)"):
        run_experiment(_cfg(lib, [_method("m", LOOSE)]), afile)
    assert afile.read_text() == "keep"
