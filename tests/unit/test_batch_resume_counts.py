"""A resumed ``separate batch`` or ``imagine batch`` counts over the whole job: the closing
warning, the printed summary and ``run.json`` include the items an earlier run finished,
lines of items outside the job (another ``--limit``) are not counted, and the exit status is
non-zero only when no item of the job has a result."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from factories.audio_files import noise_wav

from auralens.cli import main
from auralens.io import read_json, read_jsonl

NMF = "nmf@n_iter=5,num_sources=2"
COUNTS = ("n_items", "n_done", "n_failed", "n_tried", "n_new", "n_earlier")
#: each batch command, with what it says when no mixture of the job could be processed
COMMANDS = {
    "separate": (["separate", "batch"], ["-s", NMF], "no mixture could be separated"),
    "imagine": (["imagine", "batch"], ["--separator", NMF, "--set", "report=false"],
                "no mixture could be imagined"),
}

pytestmark = pytest.mark.parametrize("command", sorted(COMMANDS))


def _broken(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"no audio here")
    return path


def _batch(command: str, data: Path, out: Path, *extra: str) -> int:
    head, options, _ = COMMANDS[command]
    return main([*head, str(data), "--out", str(out), *options, *extra])


def _counts(out: Path) -> dict[str, int]:
    run = read_json(out / "run.json")
    return {k: run[k] for k in COUNTS}


def _failed_warnings(stderr: str) -> list[str]:
    """The ``N of M items failed`` counts of the closing warning(s) on stderr."""
    return re.findall(r"(\d+ of \d+ items failed); see ", stderr)


def test_a_resumed_batch_counts_failures_over_the_whole_job(command, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    for k, name in enumerate("abc"):
        noise_wav(data / f"{name}.wav", k)
    _broken(data / "d.wav")
    _broken(data / "e.wav")
    # an earlier run finished the first three items (as a run killed after them leaves it)
    assert _batch(command, data, out, "--limit", "3") == 0
    assert [r["id"] for r in read_jsonl(out / "results.jsonl")] == ["a", "b", "c"]
    capsys.readouterr()

    # the resumed run tries only d and e, and both fail
    assert _batch(command, data, out) == 0  # three of the job's five items have results
    assert _counts(out) == {"n_items": 5, "n_done": 3, "n_failed": 2, "n_tried": 2, "n_new": 0,
                            "n_earlier": 3}
    assert re.fullmatch(r"2 of 5 items failed; see .*errors\.jsonl", read_json(out / "run.json")["errors"])
    assert sorted(e["item"] for e in read_jsonl(out / "errors.jsonl")) == ["d", "e"]
    captured = capsys.readouterr()
    assert _failed_warnings(captured.err) == ["2 of 5 items failed"]
    assert (f"3 of 5 items done (0 by this run, 3 earlier); 2 failed, see {out / 'errors.jsonl'}; "
            f"results in {out / 'results.jsonl'}") in captured.out

    # d is fixed: one more item done by this run, e still fails
    noise_wav(data / "d.wav", 3)
    assert _batch(command, data, out) == 0
    assert _counts(out) == {"n_items": 5, "n_done": 4, "n_failed": 1, "n_tried": 2, "n_new": 1,
                            "n_earlier": 3}
    captured = capsys.readouterr()
    assert _failed_warnings(captured.err) == ["1 of 5 items failed"]
    assert "4 of 5 items done (1 by this run, 3 earlier); 1 failed" in captured.out


def test_results_of_items_outside_the_job_are_not_counted(command, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    for k, name in enumerate("abc"):
        noise_wav(data / f"{name}.wav", k)
    assert _batch(command, data, out) == 0
    assert "3 of 3 items done (3 by this run, 0 earlier); results in" in capsys.readouterr().out
    # a smaller job over the same folder: a and b are its items, c's line is not its result
    assert _batch(command, data, out, "--limit", "2") == 0
    assert "2 of 2 items done (0 by this run, 2 earlier); results in" in capsys.readouterr().out
    assert _counts(out) == {"n_items": 2, "n_done": 2, "n_failed": 0, "n_tried": 0, "n_new": 0,
                            "n_earlier": 2}
    assert read_json(out / "run.json")["errors"] == "no errors"
    assert len(read_jsonl(out / "results.jsonl")) == 3  # every line stays


def test_a_resumed_batch_fails_when_no_item_of_the_job_has_a_result(command, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    _broken(data / "a.wav")
    noise_wav(data / "b.wav", 0)
    assert _batch(command, data, out) == 0  # b done, a failed
    assert [r["id"] for r in read_jsonl(out / "results.jsonl")] == ["b"]
    assert "1 of 2 items done (1 by this run, 0 earlier); 1 failed, see" in capsys.readouterr().out
    # the job is now the first item alone: it fails, and b's result is not this job's
    assert _batch(command, data, out, "--limit", "1") == 1
    assert COMMANDS[command][2] in capsys.readouterr().err
    run = read_json(out / "run.json")
    assert (run["n_items"], run["n_done"], run["n_failed"]) == (1, 0, 1)
