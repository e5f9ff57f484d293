"""Outcomes of experiment commands on inputs where nothing (or not everything) can be done:
`experiment run` fails when its tables would hold no result, `fuss-manifest` records each
mixture's own rate and length and says which label ids it ignored, `judge-validate` names the
file it cannot use, and `data mix` leaves constant (DC-only) clips out like silent ones.
Reference separation + the committed classifier + the template composer + the keyword judge
on short synthetic tones (no shared data)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.cli import main
from auralens.config import ConfigError
from auralens.data.mix import build_mixtures
from auralens.evaluate.judge_validation import ValidationError, judge_agreement
from auralens.experiments.fussmanifest import ManifestError, fuss_manifest
from auralens.experiments.runner import ExperimentError, run_experiment
from auralens.io import read_json, read_jsonl, write_jsonl

SR = 16000


def _tone(path: Path, freq: float, seconds: float = 1.0, sr: int = SR) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def _pairs(tmp_path: Path, short: tuple[int, ...] = ()) -> Path:
    """Three one-source pairs; those in ``short`` get a 1 ms mixture (too short to describe)."""
    pairs = []
    for i, freq in enumerate((440.0, 660.0, 880.0)):
        audio = _tone(tmp_path / "audio" / f"p{i}.wav", freq, 0.001 if i in short else 1.0)
        src = _tone(tmp_path / "audio" / f"p{i}_src.wav", freq)
        pairs.append({"id": f"p{i}", "audio": str(audio), "labels": ["siren"], "n_sources": 1,
                      "sources": [str(src)]})
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, pairs)
    return path


def _cfg(path: Path, methods: list[dict] | None = None) -> dict:
    if methods is None:
        methods = [{"name": "m", "type": "pipeline", "separator": "reference",
                    "captioner": "classifier", "composer": "template"}]
    return copy.deepcopy({
        "name": "t", "kind": "pipeline", "data": {"source": "pairs", "path": str(path)},
        "methods": methods, "judge": {"spec": "keyword", "metrics": ["count", "recognition"]},
        "clap": {"model": None}})


def _yaml(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------------------- experiment run


def test_a_run_whose_every_item_fails_exits_1_and_says_why(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    yaml = _yaml(tmp_path, _cfg(_pairs(tmp_path, short=(0, 1, 2))))
    assert main(["experiment", "run", str(yaml), "--out", str(out)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {out}: every (item, method) pair failed (3 of 3); first: ")
    assert "too short to describe" in line and line.endswith(f"see {out / 'errors.jsonl'}")
    run = read_json(out / "run.json")
    assert run["status"] == "failed" and run["error"] == line.removeprefix("error: ")
    assert run["summary"]["rows"] == 0 and run["summary"]["errors"] == 3
    # what could be written still is: the failures (retried by a rerun) and the tables
    assert len(read_jsonl(out / "errors.jsonl")) == 3
    assert [r["status"] for r in read_jsonl(out / "results.jsonl")] == ["error"] * 3
    assert (out / "tables" / "summary.csv").is_file() and (out / "skipped.json").is_file()


def test_a_run_where_some_items_succeed_stays_done(tmp_path: Path) -> None:
    out = tmp_path / "e"
    summary = run_experiment(_cfg(_pairs(tmp_path, short=(1,))), out)
    assert summary["rows"] == 2 and summary["errors"] == 1
    assert read_json(out / "run.json")["status"] == "done"


def test_a_run_where_no_method_can_run_exits_1_before_the_data(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    cfg = _cfg(_pairs(tmp_path), methods=[{"name": "a", "type": "allm", "model": "none"},
                                          {"name": "b", "type": "allm", "model": "none"}])
    assert main(["experiment", "run", str(_yaml(tmp_path, cfg)), "--out", str(out)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {out}: no method could run (a: no audio LLM given")
    assert "; b: no audio LLM given" in line
    run = read_json(out / "run.json")
    assert run["status"] == "failed" and run["error"] == line.removeprefix("error: ")
    assert [s["what"] for s in read_json(out / "skipped.json")] == ["method a", "method b"]
    assert not (out / "data").exists() and read_jsonl(out / "results.jsonl") == []
    with pytest.raises(ExperimentError, match="no method could run"):
        run_experiment(cfg, tmp_path / "e2")


def test_a_run_with_no_method_is_a_config_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _cfg(_pairs(tmp_path))
    out = tmp_path / "e"
    assert main(["experiment", "run", str(_yaml(tmp_path, cfg)), "--out", str(out),
                 "--set", "methods=[]"]) == 1
    assert "no method to run: methods, grid and baseline are all empty" in _error_line(capsys)
    assert not out.exists()
    with pytest.raises(ConfigError, match="no method to run"):
        run_experiment({**cfg, "methods": []}, out)


# ----------------------------------------------------------------------------- fuss-manifest


def _fuss(root: Path, rates: dict[str, tuple[int, float]]) -> Path:
    """FUSS eval examples with one background source each, at the given (rate, seconds)."""
    split = root / "ssdata" / "eval"
    for ex, (sr, seconds) in rates.items():
        _tone(split / f"{ex}.wav", 440.0, seconds, sr)
        _tone(split / f"{ex}_sources" / "background0_sound.wav", 440.0, seconds, sr)
    return root / "ssdata"


def test_fuss_manifest_reads_rate_and_length_from_each_mixture(tmp_path: Path) -> None:
    fuss = _fuss(tmp_path, {"example00000": (8000, 3.0), "example00001": (16000, 1.5)})
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\nexample00000,Rain\nexample00001,Bark\n")
    out = tmp_path / "m.jsonl"
    fuss_manifest(fuss, out, labels_csv=labels)
    recs = {r["id"]: r for r in read_jsonl(out)}
    assert (recs["example00000"]["sample_rate"], recs["example00000"]["duration"]) == (8000, 3.0)
    assert (recs["example00001"]["sample_rate"], recs["example00001"]["duration"]) == (16000, 1.5)
    (fuss / "eval" / "example00001.wav").write_bytes(b"RIFF\x00\x00not audio" * 4)
    with pytest.raises(ManifestError, match=r"example00001\.wav: not a readable audio file"):
        fuss_manifest(fuss, tmp_path / "m2.jsonl", labels_csv=labels)


def test_labels_csv_ids_that_match_no_mixture_are_named(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    fuss = _fuss(tmp_path, {"example00000": (16000, 0.5)})
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\nexample00000,Rain\n" + "".join(
        f"ex{i},Bark\n" for i in range(5)))
    with caplog.at_level(logging.WARNING, logger="auralens.experiments.fussmanifest"):
        stats = fuss_manifest(fuss, tmp_path / "m.jsonl", labels_csv=labels)
    assert stats["unmatched_ids"] == 5 and stats["unlabelled"] == 0
    warning = caplog.records[-1].getMessage()
    assert warning.startswith(f"{labels}: 5 id(s) name no mixture of {fuss / 'eval'}")
    assert "'ex0', 'ex1', 'ex2', …" in warning
    nothing = tmp_path / "other.csv"
    nothing.write_text("id,labels\nclip1,Rain\nclip2,Bark\n")
    with pytest.raises(ManifestError, match=r"none of its 2 id\(s\) names a mixture") as exc:
        fuss_manifest(fuss, tmp_path / "m2.jsonl", labels_csv=nothing)
    assert str(exc.value).startswith(f"{nothing}: ") and "'clip1'" in str(exc.value)
    assert not (tmp_path / "m2.jsonl").exists()


def test_fuss_without_labels_names_the_flags(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    fuss = _fuss(tmp_path, {"example00000": (16000, 0.5)})
    assert main(["experiment", "fuss-manifest", str(tmp_path / "m.jsonl"), "--fuss", str(fuss)]) == 1
    line = _error_line(capsys)
    assert "--fsd50k" in line and "--labels-csv" in line and "fsd50k_ground_truth" not in line
    with pytest.raises(ManifestError, match="--fsd50k DIR .* or --labels-csv FILE"):
        fuss_manifest(fuss, tmp_path / "m.jsonl")


# ----------------------------------------------------------------------------- judge-validate


def _results(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [{"id": "a", "method": "m", "count": 2, "count_source": "judge",
                        "recognition": True, "recognition_source": "judge"}])
    return path


def test_judge_validate_names_the_file_it_cannot_use(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,2,yes\n")
    res = _results(tmp_path / "exp" / "results.jsonl")
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"id,count\n" + bytes(range(128, 256)) * 4)
    cases = [
        ([str(binary), str(res)], f"error: {binary}: not UTF-8 text (invalid start byte at byte 9); "
                                  "expected the annotations CSV file"),
        ([str(ann), str(binary)], f"error: {binary}: not UTF-8 text (invalid start byte at byte 9); "
                                  "expected an experiment's results.jsonl"),
        ([str(ann), str(tmp_path / "nonexist.jsonl")],
         f"error: {tmp_path / 'nonexist.jsonl'}: results file not found"),
        ([str(ann), str(tmp_path)], f"error: {tmp_path}: is a directory without results.jsonl; "
                                    "expected an experiment's results.jsonl"),
        ([str(tmp_path), str(res)], f"error: {tmp_path}: is a directory; expected the "
                                    "annotations CSV file"),
    ]
    for args, start in cases:
        assert main(["experiment", "judge-validate", *args]) == 1
        assert _error_line(capsys).startswith(start), args
    # an experiment's --out folder stands for its results.jsonl
    assert main(["experiment", "judge-validate", str(ann), str(res.parent)]) == 0
    assert "source count agreement: 100.0 % (n=1)" in capsys.readouterr().out
    with pytest.raises(ValidationError, match="results file not found"):
        judge_agreement(ann, tmp_path / "nonexist.jsonl")


def test_a_label_file_that_is_not_text_is_named_by_its_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from auralens.scene.caption.clap_zeroshot import read_labels

    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"ok\n\xff\xfe")

    def read_it(*_args: object, **_kw: object) -> None:
        read_labels(binary)

    monkeypatch.setattr("auralens.evaluate.judge_validation.judge_agreement", read_it)
    assert main(["experiment", "judge-validate", "a.csv", "r.jsonl"]) == 1
    assert _error_line(capsys) == (f"error: {binary}: not UTF-8 text (invalid start byte at "
                                   "byte 3)")


def test_a_decode_error_from_elsewhere_is_one_general_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(*_args: object, **_kw: object) -> None:
        b"ok\xff".decode("utf-8")

    monkeypatch.setattr("auralens.evaluate.judge_validation.judge_agreement", fail)
    assert main(["experiment", "judge-validate", "a.csv", "r.jsonl"]) == 1
    err = capsys.readouterr().err
    assert err == "error: an input file is not UTF-8 text (invalid start byte at byte 2)\n"


# ----------------------------------------------------------------------------- data mix


def test_a_constant_clip_is_no_mixture_source(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "loose"
    _tone(src / "a.wav", 440.0)
    _tone(src / "b.wav", 700.0)
    sf.write(src / "dc.wav", np.full(SR, 0.25, np.float32), SR, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="auralens.data.mix"):
        recs = build_mixtures(src, tmp_path / "out", n=6, seed=0, sample_rate=SR, duration=1.0,
                              min_sources=2, max_sources=2, reverb=False)
    assert len(recs) == 6
    assert {s.origin for r in recs for s in r.sources} == {"a", "b"}
    assert f"{src / 'dc.wav'}: constant (no sound), not used in mixtures" in caplog.messages
