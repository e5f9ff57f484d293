from __future__ import annotations

import pytest

from auralens.errors import AuralensError
from auralens.io import read_jsonl, write_jsonl
from auralens.shard import ShardError, merge_jsonl, parse_shard, shard_items
from auralens.types import Clip


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
    with pytest.raises(Exception, match="not found"):
        merge_jsonl([tmp_path / "missing"], tmp_path / "o.jsonl")


@pytest.mark.parametrize("lines, match", [
    (['[1, 2]'], "not a JSON object"),
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


def test_merge_by_another_key(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"name": "b"}, {"name": "a", "v": 1}])
    write_jsonl(tmp_path / "b.jsonl", [{"name": "a", "v": 2}])
    assert merge_jsonl([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "o.jsonl", key="name") == 2
    assert read_jsonl(tmp_path / "o.jsonl") == [{"name": "a", "v": 2}, {"name": "b"}]
