"""Judge answers and judge validation against the review's reproductions: per-caption
recognition that does not depend on label order, answer parsing of out-of-scale and
Markdown forms, and ``judge-validate`` comparing only the judge's own verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auralens.cli import main
from auralens.evaluate.judge import LLMJudge, parse_answer, recognition_per_caption
from auralens.evaluate.judge_validation import ValidationError, judge_agreement


def _order_judge() -> LLMJudge:
    """Unreadable for the label "dog", a definite No for every other label."""

    def chat(messages: list[dict]) -> str:
        if "present in the recording: dog" in messages[1]["content"]:
            return "I think so"
        return "ANSWER: No"

    return LLMJudge(chat=chat, retries=0, name="fn")


def test_recognition_per_caption_does_not_depend_on_label_order() -> None:
    judge = _order_judge()
    caps = ["a bird sings"]
    assert recognition_per_caption(judge, caps, ["dog", "rain"]) is False
    assert recognition_per_caption(judge, caps, ["rain", "dog"]) is False
    # only unknowns (no definite No): unknown; a Yes for every label: True
    assert recognition_per_caption(judge, caps, ["dog"]) is None

    def yes(messages: list[dict]) -> str:
        return "ANSWER: Yes"

    assert recognition_per_caption(LLMJudge(chat=yes, name="y"), caps, ["dog", "rain"]) is True
    assert recognition_per_caption(judge, [], ["rain"]) is None  # nothing to judge


@pytest.mark.parametrize(("reply", "metric", "value"), [
    ("ANSWER: 3/10", "count", None),        # a 1–10 answer is no 1–4 count
    ("ANSWER: 7/10", "coherence", 7),
    ("**ANSWER:** 7", "coherence", 7),
    ("**Answer**: 2", "count", 2),
    ("ANSWER: **Yes**", "recognition", True),
    ("__ANSWER:__ no", "recognition", False),
    ("**ANSWER:** 11", "coherence", None),
    ("**ANSWER:** 7 points", "coherence", None),
])
def test_parse_answer_scale_and_markdown(reply: str, metric: str, value: object) -> None:
    assert parse_answer(reply, metric) == value


def _results(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_judge_validate_compares_only_the_judges_verdicts(tmp_path: Path, capsys) -> None:
    heuristic = {"judge": "keyword-heuristic (not an LLM)", "judge_is_llm": False}
    res = _results(tmp_path / "results.jsonl", [
        {"id": "a", "method": "m", "count": 2, "count_source": "kept_sources",
         "recognition": False, "recognition_source": "nothing_kept", **heuristic},
        {"id": "b", "method": "m", "count": 3, "count_source": "judge",
         "recognition": True, "recognition_source": "per_caption", **heuristic},
        {"id": "c", "method": "m", "count": 1, "count_source": "kept_sources",
         "recognition": True, "recognition_source": "judge", **heuristic},
    ])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,2,no\nb,2,yes\nc,1,yes\n")
    rep = judge_agreement(ann, res)
    # kept-source counts agree with the truth by construction and are left out
    assert rep["count"]["n"] == 1 and rep["count"]["agreement"] == 0.0
    assert rep["count"]["left_out"] == {"count from kept_sources, not the judge": 2}
    assert rep["labels"]["n"] == 2 and rep["labels"]["agreement"] == 1.0
    assert rep["labels"]["left_out"] == {"recognition from nothing_kept, not the judge": 1}
    assert rep["judges"] == ["keyword-heuristic (not an LLM)"] and rep["judge_is_llm"] is False
    assert main(["experiment", "judge-validate", str(ann), str(res)]) == 0
    out = capsys.readouterr()
    assert "source count agreement: 0.0 % (n=1; left out: 2 count from kept_sources" in out.out
    assert "keyword heuristic, not an LLM" in out.err


def test_judge_validate_counts_rows_without_a_verdict_as_left_out(tmp_path: Path) -> None:
    # an unreadable judge answer is recorded as null: left out with a reason, not hidden
    res = _results(tmp_path / "results.jsonl", [
        {"id": "a", "method": "m", "count": 2, "count_source": "judge",
         "recognition": True, "recognition_source": "judge"},
        {"id": "d", "method": "m", "count": 1, "count_source": "judge",
         "recognition": None, "recognition_source": "judge"},
        {"id": "e", "method": "m", "count": None, "count_source": "judge", "recognition": True,
         "recognition_source": "judge"},
        {"id": "f", "method": "m"},
    ])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,2,yes\nd,1,yes\ne,3,no\nf,1,\n")
    rep = judge_agreement(ann, res)
    assert rep["count"]["n"] == 2 and rep["count"]["agreement"] == 1.0
    assert rep["count"]["left_out"] == {"no count from the judge": 1, "no count in the result row": 1}
    assert rep["labels"]["n"] == 2 and rep["labels"]["agreement"] == 0.5
    assert rep["labels"]["left_out"] == {"no recognition from the judge": 1}


def test_judge_validate_says_when_it_cannot_compare_counts(tmp_path: Path, capsys) -> None:
    res = _results(tmp_path / "results.jsonl", [
        {"id": i, "method": "m", "count": n, "count_source": "kept_sources"}
        for i, n in (("a", 4), ("b", 2))])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,4,\nb,2,\n")
    rep = judge_agreement(ann, res)
    assert rep["count"]["agreement"] is None and rep["count"]["n"] == 0
    assert rep["judge_is_llm"] is None
    assert main(["experiment", "judge-validate", str(ann), str(res)]) == 0
    out = capsys.readouterr()
    assert "source count agreement: n/a" in out.out and "cannot compare source counts" in out.err


def test_judge_validate_refuses_a_repeated_annotation(tmp_path: Path, capsys) -> None:
    res = _results(tmp_path / "results.jsonl", [
        {"id": "a", "method": "m", "count": 2, "count_source": "judge"},
        {"id": "a", "method": "n", "count": 2, "count_source": "judge"}])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included,method\na,2,,m\na,2,,n\nb,1,,m\na,3,,m\n")
    capsys.readouterr()
    assert main(["experiment", "judge-validate", str(ann), str(res)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {ann}: lines 2 and 5 both annotate id 'a', method 'm'; keep one\n"
    ann.write_text("id,count,labels_included\na,2,\na,2,\n")  # no method column
    with pytest.raises(ValidationError, match=r"lines 2 and 3 both annotate id 'a'; keep one"):
        judge_agreement(ann, res, method="m")
    ann.write_text("id,count,labels_included,method\na,2,,m\na,2,,n\n")  # one per method
    assert judge_agreement(ann, res)["count"] == {"agreement": 1.0, "n": 2, "confusion": {"2->2": 2},
                                                 "left_out": {}}


@pytest.mark.parametrize(("row", "problem"), [
    ({"count": "many", "count_source": "judge"}, "count 'many' is not a whole number ≥ 0"),
    ({"count": 2.5, "count_source": "judge"}, "count 2.5 is not a whole number ≥ 0"),
    ({"recognition": "false", "recognition_source": "judge"},
     "recognition 'false' is not true or false"),
    ({"recognition": 1, "recognition_source": "per_caption"}, "recognition 1 is not true or false"),
])
def test_judge_validate_refuses_values_of_the_wrong_kind(tmp_path: Path, capsys, row: dict,
                                                         problem: str) -> None:
    res = _results(tmp_path / "results.jsonl", [
        {"id": "a", "method": "m", "count": 2, "count_source": "judge"},
        {"id": "b", "method": "m", **row}])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,2,yes\nb,2,no\n")
    with pytest.raises(ValidationError) as err:
        judge_agreement(ann, res)
    assert str(err.value) == f"{res}:2: {problem}; fix or remove the line"
    capsys.readouterr()
    assert main(["experiment", "judge-validate", str(ann), str(res)]) == 1
    assert capsys.readouterr().err == f"error: {res}:2: {problem}; fix or remove the line\n"



def test_judge_validate_reads_a_whole_float_count_as_the_number(tmp_path: Path) -> None:
    res = _results(tmp_path / "results.jsonl", [
        {"id": "a", "method": "m", "count": 2.0, "count_source": "judge"},
        {"id": "b", "method": "m", "count": 3, "count_source": "judge"}])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,2,\nb,3,\n")
    assert judge_agreement(ann, res)["count"]["confusion"] == {"2->2": 1, "3->3": 1}


def test_judge_validate_checks_only_the_values_it_compares(tmp_path: Path) -> None:
    res = _results(tmp_path / "results.jsonl", [
        {"id": "a", "method": "m", "count": 2, "count_source": "judge", "clapscore": "n/a"},
        {"id": "b", "method": "m", "count": "many", "count_source": "judge"}])
    ann = tmp_path / "ann.csv"
    ann.write_text("id,count,labels_included\na,2,\n")  # b is not annotated
    rep = judge_agreement(ann, res)
    assert rep["count"] == {"agreement": 1.0, "n": 1, "confusion": {"2->2": 1}, "left_out": {}}
    ann.write_text("id,count,labels_included\na,2,\nb,2,\n")
    with pytest.raises(ValidationError) as err:
        judge_agreement(ann, res)
    assert str(err.value) == f"{res}:2: count 'many' is not a whole number ≥ 0; fix or remove the line"
