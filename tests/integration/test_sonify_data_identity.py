"""Sonify refuses to continue runs on other data, checks --post and --config values up front,
and writes a run.json for an lr grid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from factories.sonify import write_library
from typer.testing import CliRunner

from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.io import read_json, read_jsonl
from auralens.sonify import checkpoint as ckpt
from auralens.sonify.cli import app
from auralens.sonify.prepare import load_prepared, prepare
from auralens.sonify.sweep import sweep
from auralens.sonify.train import (
    TrainConfig,
    TrainError,
    check_resumable,
    prepared_fingerprint,
    train,
    train_grid,
)

ENC, COD = "toyband", "toyband"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity-cache")


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two libraries of the same layout and shapes but other audio."""
    return (write_library(tmp_path_factory.mktemp("lib-a"), per_class=4, seconds=1.0, seed=0),
            write_library(tmp_path_factory.mktemp("lib-b"), per_class=4, seconds=1.0, seed=1))


@pytest.fixture(scope="module")
def preps(libs: tuple[Path, Path], cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = []
    for lib in libs:
        prep = tmp_path_factory.mktemp("prep")
        prepare(lib, ENC, COD, 1, prep, duration=1.0, cache_dir=cache)
        out.append(prep)
    return out[0], out[1]


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False) | kw))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_resume_on_other_prepared_data_is_refused(preps: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = preps
    run = tmp_path / "rk"
    train(a, run, _cfg())
    before = _md5(run / "last.safetensors")
    with pytest.raises(CheckpointMismatchError, match="prepared data"):
        train(b, run, _cfg(epochs=2), resume=True)
    assert _md5(run / "last.safetensors") == before and read_json(run / "run.json")["config"]["prepared"] == str(a)
    res = CliRunner().invoke(app, ["train", str(b), "--out", str(run), "--epochs", "2", "--lr", "1e-2",
                                   "--batch-size", "4", "--resume"])
    assert res.exit_code != 0 and "prepared data" in str(res.exception)
    # The same data resumes.
    assert train(a, run, _cfg(epochs=2), resume=True).epochs_run == 2


def test_checkpoint_without_fingerprint_resumes_unchecked(preps: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = preps
    run = tmp_path / "old"
    train(a, run, _cfg())
    ck = ckpt.load(run / "last.safetensors")
    header = {k: v for k, v in ck.header.items() if k != "prepared_sha256"}
    check_resumable(header, _cfg(epochs=2), run / "last.safetensors", prepared=load_prepared(b))
    assert prepared_fingerprint(load_prepared(a)) != prepared_fingerprint(load_prepared(b))


def test_lr_grid_resume_on_other_prepared_data_is_refused(preps: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = preps
    grid = tmp_path / "rg"
    train_grid(a, grid, _cfg(), [1e-3, 1e-2])
    with pytest.raises(TrainError, match="prepared data"):
        train_grid(b, grid, _cfg(), [1e-3, 1e-2], resume=True)
    assert [r.status for r in train_grid(a, grid, _cfg(), [1e-3, 1e-2], resume=True)] == ["ok", "ok"]


def test_lr_grid_writes_a_top_level_run_json(preps: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = preps
    grid = tmp_path / "rg"
    res = CliRunner().invoke(app, ["train", str(a), "--out", str(grid), "--lr", "1e-3,1e-2",
                                   "--epochs", "1", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    record = read_json(grid / "run.json")
    assert record["command"] == "sonify train" and record["config"]["lr"] == [1e-3, 1e-2]
    assert record["config"]["prepared"] == str(a) and len(record["result"]["grid"]) == 2


def test_sweep_refuses_another_dataset(libs: tuple[Path, Path], cache: Path, tmp_path: Path) -> None:
    a, b = libs
    out = tmp_path / "sw"
    kw = dict(duration=1.0, render_limit=1, cache_dir=cache)
    sweep(a, ENC, "1", COD, "lin", out, cfg=_cfg(), **kw)
    stamp = _md5(out / "layer=1" / "run" / "best.safetensors")
    index = read_jsonl(out / "layer=1" / "prep" / "index.jsonl")
    with pytest.raises(TrainError, match=r"layer=1: was prepared and trained from .*not .*--overwrite"):
        sweep(b, ENC, "1", COD, "lin", out, cfg=_cfg(), **kw)
    assert _md5(out / "layer=1" / "run" / "best.safetensors") == stamp
    assert read_jsonl(out / "layer=1" / "prep" / "index.jsonl") == index  # not prepared again


def test_sweep_checks_post_chains_before_preparing(libs: tuple[Path, Path], cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    with pytest.raises(AuralensError, match=r"^--post 'foo': "):
        sweep(libs[0], ENC, "1", COD, "lin", out, cfg=_cfg(), duration=1.0, post=["minmax", "foo"],
              cache_dir=cache)
    assert not (out / "layer=1").exists()
    res = CliRunner().invoke(app, ["sweep", str(libs[0]), "--encoder", ENC, "--codec", COD, "--layers", "1",
                                   "--out", str(out), "--post", "foo"])
    assert res.exit_code != 0 and "--post 'foo'" in str(res.exception)
    assert not (out / "layer=1").exists()


@pytest.mark.parametrize(("section", "key", "command"), [
    ("train", "epochs", "train"), ("train", "batch_size", "train"), ("prepare", "limit", "prepare"),
])
def test_config_booleans_are_refused_for_non_flag_options(preps: tuple[Path, Path], libs: tuple[Path, Path],
                                                          tmp_path: Path, section: str, key: str,
                                                          command: str) -> None:
    cfg = tmp_path / "preset.yaml"
    cfg.write_text(f"{section}:\n  {key}: true\n")
    src = preps[0] if command == "train" else libs[0]
    res = CliRunner().invoke(app, [command, str(src), "--config", str(cfg), "--out", str(tmp_path / "o")])
    msg = str(res.exception)
    assert res.exit_code != 0 and f"{section}.{key}" in msg and "\n" not in msg, res.output
    assert not (tmp_path / "o").exists()


def test_config_boolean_flag_is_still_accepted(preps: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "preset.yaml"
    cfg.write_text("train:\n  blur: true\n  epochs: 1\n  batch_size: 4\n")
    res = CliRunner().invoke(app, ["train", str(preps[0]), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert read_json(tmp_path / "o" / "run.json")["config"]["blur"] is True
