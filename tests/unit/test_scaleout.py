"""Scale-out helpers: shard folders, merge checks, the launcher guard, CLI options."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from auralens.io import read_jsonl, write_jsonl
from auralens.shard import ShardError, find_parts, part_name, shard_dir


def test_shard_dir_and_parts(tmp_path):
    assert part_name((2, 5)) == "part-2-of-5"
    assert shard_dir(tmp_path, None) == tmp_path
    assert shard_dir(tmp_path, (0, 3)) == tmp_path / "shards" / "part-0-of-3"
    with pytest.raises(ShardError, match="no shard outputs"):
        find_parts(tmp_path)
    for i in (0, 2):
        shard_dir(tmp_path, (i, 3)).mkdir(parents=True)
    with pytest.raises(ShardError, match="1/3 not run yet"):
        find_parts(tmp_path)
    shard_dir(tmp_path, (1, 3)).mkdir()
    assert [p.name for p in find_parts(tmp_path)] == [f"part-{i}-of-3" for i in range(3)]
    shard_dir(tmp_path, (0, 2)).mkdir()
    with pytest.raises(ShardError, match="different counts"):
        find_parts(tmp_path)


def test_data_merge_cli(tmp_path):
    from auralens.cli import app

    write_jsonl(tmp_path / "a" / "results.jsonl", [{"id": "b", "v": 1}])
    write_jsonl(tmp_path / "b" / "results.jsonl", [{"id": "a", "v": 2}, {"id": "c", "v": 3}])
    runner = CliRunner()
    res = runner.invoke(app, ["data", "merge", str(tmp_path / "a"), str(tmp_path / "b" / "results.jsonl"),
                              "--out", str(tmp_path / "all.jsonl")])
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in read_jsonl(tmp_path / "all.jsonl")] == ["a", "b", "c"]
    res = runner.invoke(app, ["data", "merge", str(tmp_path / "nope"), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 1 and "shard results not found" in str(res.exception)


def test_cli_help_lists_shard_options():
    from auralens.cli import app

    runner = CliRunner()
    for args, opt in ((["sonify", "prepare", "--help"], "--merge"), (["sonify", "prepare", "--help"], "--shard"),
                      (["imagine", "batch", "--help"], "--shard"), (["data", "merge", "--help"], "--out")):
        res = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert res.exit_code == 0 and opt in res.output, (args, res.output)


def test_bad_shard_is_a_one_line_error(tmp_path):
    from auralens.cli import app

    res = CliRunner().invoke(app, ["sonify", "prepare", str(tmp_path), "--out", str(tmp_path / "p"),
                                   "--shard", "2/2"])
    assert res.exit_code == 1 and "need 0 <= i < n" in str(res.exception)


def test_training_refuses_a_launch_accelerate_does_not_see(monkeypatch, tmp_path):
    """WORLD_SIZE=2 without a process group: training alone into a shared RUN is refused."""
    from auralens.sonify.train import TrainError, _accelerator

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainError, match="ACCELERATE_USE_CPU"):
        _accelerator()
