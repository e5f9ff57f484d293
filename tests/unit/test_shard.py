from __future__ import annotations

import re

import pytest

from auralens.errors import AuralensError
from auralens.io import read_jsonl, write_json, write_jsonl
from auralens.shard import ShardError, merge_jsonl, parse_shard, shard_items
from auralens.types import Clip, id_text


def test_parse():
    assert parse_shard(None) is None and parse_shard("") is None
    assert parse_shard("1/4") == (1, 4)
    for bad in ["4/4", "-1/2", "1", "a/b", "0/0"]:
        with pytest.raises(ShardError):
            parse_shard(bad)


def test_parse_env(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert parse_shard("env") == (2, 3)


def test_parse_env_takes_a_whole_zero_based_array(monkeypatch):
    for name, value in (("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_MAX", "3"),
                        ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_ID", "3")):
        monkeypatch.setenv(name, value)
    assert parse_shard("env") == (3, 4)


@pytest.mark.parametrize(("low", "high", "count", "step", "task"), [
    ("1", "4", "4", None, "1"),  # --array=1-4: the ids are not the shard indices
    ("0", "12", "4", "4", "4"),  # --array=0-12:4
    ("2", "2", "1", None, "2"),  # shard 2 submitted again alone: a count of 1 is not the shards'
    ("0", "2", "2", None, "2"),  # --array=0,2 submitted again
])
def test_parse_env_refuses_arrays_whose_count_is_not_the_shards(monkeypatch, low, high, count,
                                                                 step, task):
    for name, value in (("SLURM_ARRAY_TASK_MIN", low), ("SLURM_ARRAY_TASK_MAX", high),
                        ("SLURM_ARRAY_TASK_COUNT", count), ("SLURM_ARRAY_TASK_ID", task),
                        ("SLURM_ARRAY_TASK_STEP", step)):
        if value is not None:
            monkeypatch.setenv(name, value)
    with pytest.raises(ShardError, match=r"needs an array of every shard from 0 .* use "
                                         r"--shard \$SLURM_ARRAY_TASK_ID/N"):
        parse_shard("env")


def test_shards_are_disjoint_and_cover_in_any_order():
    clips = [Clip(f"c{i:02d}", f"{i}.wav") for i in range(23)]
    parts = [shard_items(clips, f"{i}/4") for i in range(4)]
    ids = [c.id for p in parts for c in p]
    assert sorted(ids) == sorted(c.id for c in clips) and len(set(ids)) == 23
    shuffled = list(reversed(clips))
    assert [c.id for c in shard_items(shuffled, "1/4")] == [c.id for c in parts[1]]


def test_merge(tmp_path):
    write_jsonl(tmp_path / "a" / "results.jsonl", [{"id": "x", "v": 1}, {"id": "z", "v": 3}])
    write_jsonl(tmp_path / "b" / "results.jsonl", [{"id": "y", "v": 2}, {"id": "x", "v": 9}])
    n = merge_jsonl([tmp_path / "a", tmp_path / "b"], tmp_path / "all.jsonl")
    assert n == 3
    assert read_jsonl(tmp_path / "all.jsonl") == [{"id": "x", "v": 9}, {"id": "y", "v": 2}, {"id": "z", "v": 3}]
    with pytest.raises(AuralensError, match=f"^{re.escape(str(tmp_path / 'missing'))}: shard results not found$"):
        merge_jsonl([tmp_path / "missing"], tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("lines, match", [
    (['[1, 2]'], "no result records"),  # skipped and named like other corrupt lines
    (['{"name": "x"}'], "no 'id' field"),
    (['not json at all'], "no result records"),
    ([], "no result records"),
])
def test_merge_refuses_what_is_not_shard_results(tmp_path, lines, match):
    part = tmp_path / "p.jsonl"
    part.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(AuralensError, match=match):
        merge_jsonl([part], tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("bad, why", [('["a"]', "not text or a number"), ('{"a": 1}', "not text or a number"),
                                      ("true", "not text or a number"), ("null", "not text or a number"),
                                      ("NaN", "not a finite number"), ('""', "id is empty"),
                                      ('"  "', "id is empty")])
def test_merge_refuses_ids_that_are_not_text_or_numbers(tmp_path, bad, why):
    part = tmp_path / "p.jsonl"
    part.write_text('{"id": "a"}\n{"id": ' + bad + '}\n', encoding="utf-8")
    with pytest.raises(AuralensError, match=rf"p\.jsonl:2: 'id' is .*{why}"):
        merge_jsonl([part], tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("value", ["", " ", 1.5, 1.0, -2.25])
def test_merge_keys_ids_as_manifests_do(tmp_path, value):
    """Merging used its own id rule: it took an empty id (which no manifest or batch job
    accepts) and refused a number with a fraction (which they key as its text)."""
    part = tmp_path / "p.jsonl"
    write_jsonl(part, [{"id": value, "v": 1}])
    try:
        want = id_text(value)
    except ValueError:
        with pytest.raises(AuralensError, match="id is empty"):
            merge_jsonl([part], tmp_path / "o.jsonl")
        return
    write_jsonl(tmp_path / "q.jsonl", [{"id": want, "v": 2}])
    assert merge_jsonl([part, tmp_path / "q.jsonl"], tmp_path / "o.jsonl") == 1
    assert read_jsonl(tmp_path / "o.jsonl") == [{"id": want, "v": 2}]


def test_merge_treats_number_and_text_ids_alike(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "v": "c"}])
    assert merge_jsonl([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "o.jsonl") == 2
    assert read_jsonl(tmp_path / "o.jsonl") == [{"id": "1", "v": "c"}, {"id": 2, "v": "b"}]


def test_merge_by_another_key(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"name": "b"}, {"name": "a", "v": 1}])
    write_jsonl(tmp_path / "b.jsonl", [{"name": "a", "v": 2}])
    assert merge_jsonl([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "o.jsonl", key="name") == 2
    assert read_jsonl(tmp_path / "o.jsonl") == [{"name": "a", "v": 2}, {"name": "b"}]


def test_merge_refuses_parts_made_with_different_settings(tmp_path):
    """`separate batch --shard 0/2` and `--shard 1/2 --rule frames` used to merge silently."""
    a, b = tmp_path / "part-0-of-2", tmp_path / "part-1-of-2"
    write_jsonl(a / "results.jsonl", [{"id": "x", "fingerprint": "f1"}, {"id": "z", "fingerprint": "f1"}])
    write_jsonl(b / "results.jsonl", [{"id": "y", "fingerprint": "f2"}])
    out = tmp_path / "all.jsonl"
    with pytest.raises(AuralensError, match=r"part-0-of-2/results.jsonl:1 and .*part-1-of-2/results.jsonl:1 were "
                                            r"made with different settings \(fingerprints f1 and f2\)"):
        merge_jsonl([a, b], out)
    assert not out.exists()
    # separate batch: what differs is named from each part's run.json (when it describes those lines)
    write_json(a / "run.json", {"config": {"separator": "tdcnpp", "activity": {"rule": "energy"},
                                           "fingerprint": "f1"}})
    write_json(b / "run.json", {"config": {"separator": "tdcnpp", "activity": {"rule": "frames"},
                                           "fingerprint": "f2"}})
    with pytest.raises(AuralensError, match=r"different settings \(activity differs\); merge only the parts of one run"):
        merge_jsonl([a, b], out)
    # imagine batch: the lines carry their settings
    write_jsonl(b / "results.jsonl", [{"id": "y", "fingerprint": "f3", "settings": {"seed": 1, "mode": "pipeline"}}])
    write_jsonl(a / "results.jsonl", [{"id": "x", "fingerprint": "f4", "settings": {"seed": 2, "mode": "pipeline"}}])
    with pytest.raises(AuralensError, match=r"\(seed differs\)"):
        merge_jsonl([a, b], out)
    # the same fingerprint everywhere, or none (older versions, other JSONL): merged as before
    write_jsonl(b / "results.jsonl", [{"id": "y", "fingerprint": "f4"}, {"id": "w"}])
    assert merge_jsonl([a, b], out) == 3


def test_merge_out_naming_a_directory_names_out(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "x"}])
    (tmp_path / "o").mkdir()
    with pytest.raises(AuralensError, match=r"^\S+/o: is a directory; --out names the merged JSONL file") as exc:
        merge_jsonl([tmp_path / "a.jsonl"], tmp_path / "o")
    assert ".tmp" not in str(exc.value)


def _merge_one(tmp_path, text: str, caplog) -> tuple[int, list[str], object]:
    """Merge one part holding ``text``: ``(records written, warnings logged, the part)``."""
    part = tmp_path / "p.jsonl"
    part.write_text(text, encoding="utf-8")
    with caplog.at_level("WARNING"):
        n = merge_jsonl([part], tmp_path / "o.jsonl")
    return n, [r.getMessage() for r in caplog.records], part


def test_merge_names_a_corrupt_middle_line(tmp_path, caplog):
    n, messages, part = _merge_one(tmp_path, '{"id": "a"}\nnot json\n{"id": "b"}\n{"id": "c", "v"', caplog)
    assert n == 2
    assert f"skipping corrupt line 2 of {part} (not valid JSON)" in messages
    assert f"{part}: skipping an incomplete last line 4" in messages
    assert not any("incomplete" in m and "line 2" in m for m in messages)


def test_merge_skips_and_names_a_corrupt_last_line_that_ends_in_a_newline(tmp_path, caplog):
    n, messages, part = _merge_one(tmp_path, '{"id": "a"}\n{"id": "b", "v"\n', caplog)
    assert n == 1
    assert f"skipping corrupt line 2 of {part} (not valid JSON)" in messages
    assert not any("incomplete" in m for m in messages)


def test_merge_skips_and_names_a_line_that_is_not_an_object(tmp_path, caplog):
    n, messages, part = _merge_one(tmp_path, '{"id": "a"}\n[1,2]\n{"id": "b"}\n', caplog)
    assert n == 2
    assert any(m.startswith(f"skipping corrupt line 2 of {part}") and "not a record object" in m
               for m in messages)


def test_merge_still_refuses_parts_without_any_record(tmp_path):
    part = tmp_path / "p.jsonl"
    part.write_text("[1,2]\n", encoding="utf-8")
    with pytest.raises(AuralensError, match="no result records"):
        merge_jsonl([part], tmp_path / "o.jsonl")


def test_merge_checks_shard_folders_form_one_complete_set(tmp_path, capsys):
    """A stale part-1-of-3 beside part-0-of-2, or a shard left out, used to merge silently."""
    from auralens.cli import main

    shards = tmp_path / "shards"
    write_jsonl(shards / "part-0-of-2" / "results.jsonl", [{"id": "a"}, {"id": "c"}])
    write_jsonl(shards / "part-1-of-3" / "results.jsonl", [{"id": "b"}])
    out = tmp_path / "all.jsonl"
    with pytest.raises(ShardError, match=rf"^{re.escape(str(shards))}: shards of different counts \[2, 3\] "
                                         r"\(part-0-of-2, part-1-of-3\); remove the stale ones$"):
        merge_jsonl(sorted(shards.iterdir()), out)
    with pytest.raises(ShardError, match=rf"^{re.escape(str(shards))}: shard\(s\) 1/2 not among the parts given"):
        merge_jsonl([shards / "part-0-of-2" / "results.jsonl"], out)
    capsys.readouterr()
    assert main(["data", "merge", str(shards / "part-0-of-2"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {shards}: shard(s) 1/2") and err.count("\n") == 1, err
    assert not out.exists()
    write_jsonl(shards / "part-1-of-2" / "results.jsonl", [{"id": "b"}])
    assert merge_jsonl([shards / "part-0-of-2", shards / "part-1-of-2"], out) == 3
    # files given as results.jsonl inside the folders are checked the same way
    (shards / "part-1-of-3" / "results.jsonl").unlink()
    (shards / "part-1-of-3").rmdir()
    write_jsonl(shards / "part-2-of-2" / "results.jsonl", [{"id": "d"}])
    with pytest.raises(ShardError, match="part-2-of-2 is not a shard folder name"):
        merge_jsonl(sorted(shards.glob("*/results.jsonl")), out)


def test_merge_refuses_an_out_that_is_one_of_its_parts(tmp_path):
    """`--out sh/shards/part-0-of-2/results.jsonl` used to overwrite that shard's results."""
    shards = tmp_path / "shards"
    write_jsonl(shards / "part-0-of-2" / "results.jsonl", [{"id": "a"}])
    write_jsonl(shards / "part-1-of-2" / "results.jsonl", [{"id": "b"}])
    out = shards / "part-0-of-2" / "results.jsonl"
    with pytest.raises(AuralensError, match=rf"^{re.escape(str(out))}: --out is one of the parts being merged; "):
        merge_jsonl([shards / "part-0-of-2", shards / "part-1-of-2"], out)
    assert read_jsonl(out) == [{"id": "a"}]
    # another spelling of the same file is caught too, and plain files as well
    write_jsonl(tmp_path / "x.jsonl", [{"id": "x"}])
    with pytest.raises(AuralensError, match=r"--out is one of the parts being merged \(.*x\.jsonl\)"):
        merge_jsonl([tmp_path / "x.jsonl"], tmp_path / "shards" / ".." / "x.jsonl")
    assert read_jsonl(tmp_path / "x.jsonl") == [{"id": "x"}]


def test_merge_keeps_records_whose_text_holds_line_separators(tmp_path, caplog):
    # JSON leaves U+2028, U+2029 and U+0085 unescaped: they are no line ends of a JSONL file
    texts = ["one\u2028two", "three\u2029four", "five\x85six"]
    write_jsonl(tmp_path / "p.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts)])
    with caplog.at_level("WARNING"):
        assert merge_jsonl([tmp_path / "p.jsonl"], tmp_path / "o.jsonl") == 3
    assert not caplog.records
    assert [r["text"] for r in read_jsonl(tmp_path / "o.jsonl")] == texts
