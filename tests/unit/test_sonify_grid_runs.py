"""Sonify lr grids, single runs and sweeps on reruns, and what renders record.

Covers: rendering an lr grid takes the best of the learning rates its run.json records (not a
left-over ``lr=<v>`` folder of an earlier grid), a single run and an lr grid refused in one
folder, --resume with nothing to resume told, a sweep rerun with other --epochs refused,
rendering an unfinished run warned about and recorded, and renders/run.json agreeing with the
clips it lists after a smaller --limit.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from factories.sonify import write_library

from auralens.io import read_json, write_json
from auralens.sonify.prepare import prepare
from auralens.sonify.render import load_run, render_split, resolve_run
from auralens.sonify.sweep import sweep
from auralens.sonify.train import TrainConfig, TrainError, train, train_grid

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ENC, COD = "toyband", "toyband"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("gridlib") / "lib", per_class=5, seconds=0.5)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gridcache")


@pytest.fixture(scope="module")
def prep(library: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gridprep") / "prep"
    prepare(library, ENC, COD, 1, out, duration=0.5, cache_dir=cache)
    return out


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False) | kw))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _summary_best(grid: Path) -> str:
    line = next(x for x in (grid / "summary.md").read_text().splitlines() if x.startswith("Best: "))
    return line.split()[1]  # "lr=<v>"


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    from auralens.cli import main

    rc = main(list(args))
    return rc, capsys.readouterr().err


# --- 1. an lr grid renders the best of its own learning rates ----------------------------------

def test_grid_rerun_with_other_learning_rates_renders_the_best_of_the_recorded_grid(
        prep: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    grid = tmp_path / "grid"
    train_grid(prep, grid, _cfg(), [1e-3, 1e-2])
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.train"):
        results = train_grid(prep, grid, _cfg(epochs=2), [1e-3, 3e-2], resume=True)
    assert [r.epochs_run for r in results] == [2, 2]
    assert any("lr=0.01 not in this grid" in r.getMessage() for r in caplog.records)
    record = read_json(grid / "run.json")
    assert record["config"]["lr"] == [1e-3, 3e-2] and record["result"]["outside_grid"] == ["lr=0.01"]
    # The left-over run of the first grid has the lowest loss of every lr folder.
    stale = read_json(grid / "lr=0.01" / "run.json")
    stale["result"]["best_val_loss"] = 1e-12
    write_json(grid / "lr=0.01" / "run.json", stale)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.render"):
        best = resolve_run(grid)
    assert best.name == _summary_best(grid) and best.name in ("lr=0.001", "lr=0.03")
    assert any("ignoring lr=0.01, not among the learning rates its run.json records" in r.getMessage()
               for r in caplog.records)
    renders = render_split(grid, "test", ["none"], limit=1)
    assert renders == best / "renders" and (renders / "none").is_dir()
    assert not (grid / "lr=0.01" / "renders").exists()


# --- 2. a single run and an lr grid in one folder; nothing to resume --------------------------

def test_single_run_into_a_grid_folder_and_a_grid_into_a_run_folder_are_refused(
        prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    grid = tmp_path / "grid"
    train_grid(prep, grid, _cfg(), [1e-2, 2e-2])
    stamp = _md5(grid / "run.json")
    for kw in ({"resume": True}, {}, {"overwrite": True}):
        with pytest.raises(TrainError, match=r"grid: holds an lr grid \(lr=0.01, lr=0.02\); one learning "
                                             r"rate cannot train into it"):
            train(prep, grid, _cfg(lr=3e-2), **kw)
    assert _md5(grid / "run.json") == stamp and not (grid / "last.safetensors").exists()
    rc, err = _cli(capsys, "sonify", "train", str(prep), "--out", str(grid), "--lr", "3e-2",
                   "--epochs", "1", "--batch-size", "4", "--resume")
    assert rc == 1 and "holds an lr grid" in err and err.strip().count("\n") == 0
    assert _md5(grid / "run.json") == stamp

    run = tmp_path / "run"
    train(prep, run, _cfg())
    for kw in ({"resume": True}, {}):
        with pytest.raises(TrainError, match=r"run: holds a single training run \(lr=0.01\); an lr grid "
                                             r"cannot train into it"):
            train_grid(prep, run, _cfg(), [1e-2, 2e-2], **kw)
    assert not list(run.glob("lr=*"))
    rc, err = _cli(capsys, "sonify", "train", str(prep), "--out", str(run), "--lr", "1e-2,2e-2",
                   "--epochs", "1", "--batch-size", "4", "--resume")
    assert rc == 1 and "holds a single training run" in err and err.strip().count("\n") == 0
    assert not list(run.glob("lr=*"))


def test_resume_with_nothing_to_resume_says_so(prep: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.train"):
        res = train(prep, tmp_path / "fresh", _cfg(), resume=True)
    assert res.status == "ok"
    told = [r.getMessage() for r in caplog.records if "nothing to resume" in r.getMessage()]
    assert len(told) == 1 and str(tmp_path / "fresh") in told[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.train"):
        train_grid(prep, tmp_path / "grid", _cfg(), [1e-2, 2e-2], resume=True)
    told = [r.getMessage() for r in caplog.records if "nothing to resume" in r.getMessage()]
    assert len(told) == 1 and str(tmp_path / "grid") in told[0]  # once for the grid
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.train"):
        train(prep, tmp_path / "fresh", _cfg(epochs=2), resume=True)  # something to resume
    assert not any("nothing to resume" in r.getMessage() for r in caplog.records)


# --- 3. a sweep rerun with other --epochs ------------------------------------------------------

def test_sweep_rerun_with_other_epochs_is_refused(library: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    kw = dict(duration=0.5, render_limit=1, cache_dir=cache)
    sweep(library, ENC, "1", COD, "lin", out, cfg=_cfg(epochs=2), **kw)
    stamp = _md5(out / "layer=1" / "run" / "best.safetensors")
    with pytest.raises(TrainError, match=r"layer=1/run: was trained with other settings \(epochs 2 → 1\); "
                                         r"pass the same options, or --overwrite \(or another --out\)"):
        sweep(library, ENC, "1,2", COD, "lin", out, cfg=_cfg(epochs=1), **kw)
    assert not (out / "layer=2").exists() and read_json(out / "run.json")["config"]["train"]["epochs"] == 2
    assert _md5(out / "layer=1" / "run" / "best.safetensors") == stamp
    # A layer not swept now still holds a run of the sweep: other settings are refused too.
    with pytest.raises(TrainError, match=r"layer=1/run: was trained with other settings \(epochs 2 → 3\).*"
                                         r"it is not among --layers now \(--overwrite would not train it again\): pass the same options, or another --out"):
        sweep(library, ENC, "2", COD, "lin", out, cfg=_cfg(epochs=3), **kw)
    assert not (out / "layer=2").exists()
    # The same settings resume; --overwrite trains again with the new ones.
    rows = sweep(library, ENC, "1", COD, "lin", out, cfg=_cfg(epochs=2), **kw)
    assert rows[0]["status"] == "ok" and _md5(out / "layer=1" / "run" / "best.safetensors") == stamp
    rows = sweep(library, ENC, "1", COD, "lin", out, cfg=_cfg(epochs=1), overwrite=True, **kw)
    assert rows[0]["status"] == "ok"
    assert read_json(out / "layer=1" / "run" / "run.json")["result"]["epochs_run"] == 1


# --- 4. rendering an unfinished run ------------------------------------------------------------

def test_rendering_an_unfinished_run_warns_once_and_is_recorded(
        prep: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    train(prep, run, _cfg(epochs=2))
    # What a run killed during epoch 3 of 40 leaves: the record written at its start.
    record = read_json(run / "run.json")
    record["config"]["epochs"] = 40
    record["result"] = {"status": "running", "val_split": "val"}
    write_json(run / "run.json", record)
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.render"):
        loaded = load_run(run)
        load_run(run)
        renders = render_split(run, "test", ["none"], limit=1)
    told = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert len(told) == 1 and str(run) in told[0] and "status running, 2 of 40 epochs" in told[0]
    assert loaded.status == {"status": "running", "epochs_run": 2, "epochs": 40}
    config = read_json(renders / "run.json")["config"]
    assert (config["run_status"], config["run_epochs_run"], config["run_epochs"]) == ("running", 2, 40)

    done = tmp_path / "done"
    train(prep, done, _cfg())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.render"):
        renders = render_split(done, "test", ["none"], limit=1)
    assert not any("did not finish" in r.getMessage() for r in caplog.records)
    assert read_json(renders / "run.json")["config"]["run_status"] == "ok"


# --- 5. renders/run.json after a smaller --limit -----------------------------------------------

def test_renders_record_the_limit_of_the_clips_they_hold(prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(prep, run, _cfg())
    renders = render_split(run, "test", ["none"], limit=2)
    render_split(run, "test", ["none"], limit=1)
    config = read_json(renders / "run.json")["config"]
    on_disk = sorted(p.stem for p in (renders / "original").glob("*.wav"))
    assert len(on_disk) == 2 and sorted(config["clips"]) == on_disk
    assert config["limit"] == 2  # the first 2 clips of the split are held
    assert config["call_limit"] == 1 and config["call_clips"] == config["clips"][:1]
    render_split(run, "test", ["none"])
    config = read_json(renders / "run.json")["config"]
    render_split(run, "test", ["none"], limit=1)
    again = read_json(renders / "run.json")["config"]
    assert again["limit"] is None and again["clips"] == config["clips"]  # the whole split
    assert len(again["clips"]) == len(list((renders / "original").glob("*.wav"))) >= 2
    assert again["call_limit"] == 1 and len(again["call_clips"]) == 1
