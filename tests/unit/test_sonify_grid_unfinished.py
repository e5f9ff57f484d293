"""Rendering and reporting an lr grid whose training was stopped before every learning rate
finished: the best run so far is used, with a one-line warning saying that the grid is
unfinished, recorded in ``renders/run.json`` and shown as a note in the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from factories.sonify import toy_prep

from auralens.evaluate import sonify_eval
from auralens.evaluate.report import build_report
from auralens.io import read_json
from auralens.sonify import render as render_mod
from auralens.sonify import train as train_mod
from auralens.sonify.render import render_split, resolve_run
from auralens.sonify.train import TrainConfig, train_grid

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LRS = [1e-2, 2e-2, 3e-2]


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_prep(tmp_path_factory.mktemp("grid_unfinished"), per_class=6)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False) | kw))


def _grid_stopped_in_its_last_lr(prep: Path, grid: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train ``LRS`` (one epoch each) into ``grid`` with Ctrl-C during lr=0.03's validation."""
    original, calls = train_mod._evaluate, {"n": 0}

    def hook(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate", hook)
    with pytest.raises(KeyboardInterrupt):
        train_grid(prep, grid, _cfg(), LRS)
    monkeypatch.setattr(train_mod, "_evaluate", original)


def test_render_and_report_of_an_unfinished_grid_say_so(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from auralens.cli import main

    grid = tmp_path / "grid"
    _grid_stopped_in_its_last_lr(prep, grid, monkeypatch)
    assert read_json(grid / "run.json")["result"]["status"] == "running"
    best = resolve_run(grid)
    assert best.name in ("lr=0.01", "lr=0.02")
    want = (f"{grid}: the lr grid is unfinished (2 of 3 learning rates trained; not yet: lr=0.03); "
            f"rendering the best so far, {best.name}")

    # Rendered all the same, with one warning line.
    monkeypatch.setattr(render_mod, "_WARNED", set())
    capsys.readouterr()
    assert main(["sonify", "render", "--run", str(grid), "--split", "test", "--limit", "2",
                 "--post", "none"]) == 0
    err = capsys.readouterr().err
    told = [line for line in err.splitlines() if "the lr grid is unfinished" in line]
    assert len(told) == 1 and told[0].endswith(want)
    config = read_json(best / "renders" / "run.json")["config"]
    assert config["grid"] == str(grid) and config["grid_unfinished"] is True
    assert config["grid_lrs"] == ["lr=0.01", "lr=0.02", "lr=0.03"]
    assert config["grid_lrs_done"] == ["lr=0.01", "lr=0.02"]

    # The report reports the best so far, with a note on the page.
    run = sonify_eval.load_run(grid)
    note = want.replace("rendering", "reporting")
    assert run.path == best and note in run.warnings
    assert [line for line in capsys.readouterr().err.splitlines() if "unfinished" in line] == [
        f"WARNING auralens.evaluate.sonify_eval: {note}"]  # the CLI's log format
    out = build_report([grid], tmp_path / "report", use_cache=False)
    report = out.parent if out.is_file() else out
    assert note in read_json(report / "metrics.json")["warnings"]
    assert "the lr grid is unfinished (2 of 3 learning rates trained" in (report / "index.html").read_text()

    from auralens.sonify.render import grid_progress

    assert grid_progress(grid) == {"grid": str(grid), "unfinished": True,
                                   "lrs": ["lr=0.01", "lr=0.02", "lr=0.03"],
                                   "lrs_done": ["lr=0.01", "lr=0.02"]}

    # Once the grid has finished, neither says so and the renders record it.
    train_grid(prep, grid, _cfg(), LRS)
    assert grid_progress(grid)["unfinished"] is False
    capsys.readouterr()
    renders = render_split(grid, "test", ["none"], limit=2)
    run = sonify_eval.load_run(grid)
    assert "unfinished" not in capsys.readouterr().err  # logged there, as above
    assert not any("unfinished" in w for w in run.warnings)
    config = read_json(renders / "run.json")["config"]
    assert config["grid_unfinished"] is False and config["grid_lrs_done"] == config["grid_lrs"]


def test_a_single_run_records_no_grid(prep: Path, tmp_path: Path) -> None:
    from auralens.sonify.render import grid_progress

    run = tmp_path / "run"
    train_mod.train(prep, run, _cfg())
    assert grid_progress(run) is None
    config = read_json(render_split(run, "test", ["none"], limit=1) / "run.json")["config"]
    assert not any(key.startswith("grid") for key in config)
