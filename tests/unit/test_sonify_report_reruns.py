"""Sonify report, render, train and sweep on reruns and bad input.

Covers: renders of an older checkpoint refused by the report (older renders without a
checkpoint SHA-256 judged as ``sonify render`` judges them), an lr grid reported as its best
run, options and runs checked before the report folder exists, a rerun keeping no files of runs
it no longer holds, AUDIO given with --split, --resume with --overwrite, a missing sweep
dataset, and damaged JSON read by the report and the sweep.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from factories.sonify import toy_prep

from auralens import audio
from auralens.evaluate.report import build_report
from auralens.evaluate.sonify_eval import RunDirError, StaleRendersError, load_run
from auralens.io import read_json, write_json
from auralens.sonify.render import render_split, resolve_run
from auralens.sonify.train import TrainConfig, train, train_grid

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SR = 8000


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_prep(tmp_path_factory.mktemp("reruns"), per_class=6)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False) | kw))


def _fake_run(root: Path, name: str, clips: tuple[str, ...] = ("a", "b")) -> Path:
    """A rendered run without a checkpoint (as copied from elsewhere)."""
    rng = np.random.default_rng(len(name))
    run = root / name
    for cid in clips:
        x = (0.3 * rng.standard_normal(SR // 2)).astype(np.float32)
        for version, noise in (("original", 0.0), ("ceiling", 0.01), ("none", 0.1)):
            y = x + noise * rng.standard_normal(x.shape[0]).astype(np.float32)
            audio.write(run / "renders" / version / f"{cid}.wav", y, SR)
    write_json(run / "run.json", {"command": "sonify train", "config": {"gate": "lin", "epochs": 1}})
    return run


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    from auralens.cli import main

    capsys.readouterr()
    rc = main(["sonify", *args])
    return rc, capsys.readouterr().err


# --- renders of another checkpoint ----------------------------------------------------------


def test_report_refuses_renders_made_by_an_older_checkpoint(prep: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    train(prep, run, _cfg(epochs=2))
    render_split(run, "test", ["none"], limit=2)
    assert load_run(run).clips  # renders of the current checkpoint are scored
    train(prep, run, _cfg(epochs=1, lr=0.2), overwrite=True)  # keeps renders/
    with pytest.raises(StaleRendersError, match="another checkpoint than .*trained again") as exc:
        load_run(run)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{run}:")
    assert f"`auralens sonify render --run {run} --split test --limit 2 --post none`" in msg
    out = tmp_path / "rep"
    with pytest.raises(StaleRendersError):
        build_report([run], out, use_cache=False)
    assert not out.exists()
    rc, err = _cli(capsys, "report", str(run), "--out", str(out))
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1 and "render" in err
    assert not out.exists()
    # The suggested command renders them again; then the report scores them.
    render_split(run, "test", ["none"], limit=2)
    assert load_run(run).clips


def test_a_rebuilt_report_names_ratings_of_earlier_renders(prep: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Ratings made on a report's renders are kept when the report is rebuilt; when a run was
    trained and rendered again since, the rebuild says they rate the earlier renders."""
    import logging

    from auralens.evaluate.ratings import save_rating

    run = tmp_path / "run"
    train(prep, run, _cfg(epochs=2))
    render_split(run, "test", ["none"], limit=1)
    out = tmp_path / "rep"
    build_report([run], out, use_cache=False)
    save_rating(out / "ratings.csv", rater="ann", run="run", version="none", clip="c", visual=3, audio=4)
    with caplog.at_level(logging.WARNING, logger="auralens.evaluate.report"):
        build_report([run], out, use_cache=False)  # the same renders: nothing to say
    assert "rating(s) of earlier renders" not in caplog.text
    assert read_json(out / "run.json")["stale_ratings"] is None
    train(prep, run, _cfg(epochs=1, lr=0.2), overwrite=True)
    render_split(run, "test", ["none"], limit=1, overwrite=True)
    with caplog.at_level(logging.WARNING, logger="auralens.evaluate.report"):
        build_report([run], out, use_cache=False)
    said = f"{out / 'ratings.csv'} holds 1 rating(s) of earlier renders of run (trained and rendered again since)"
    assert said in caplog.text and read_json(out / "run.json")["stale_ratings"].startswith(said)
    assert (out / "ratings.csv").read_text().count("\n") == 2  # kept: header and the rating


def test_renders_without_a_recorded_checkpoint_are_judged_like_render(prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(prep, run, _cfg())
    renders = render_split(run, "test", ["none"], limit=1)
    manifest = read_json(renders / "run.json")
    for key in ("checkpoint_sha256", "checkpoint_epoch"):  # as an older version wrote it
        manifest["config"].pop(key)
    (renders / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    written = (run / "best.safetensors").stat().st_mtime_ns
    os.utime(renders / "run.json", ns=(written + 10**9, written + 10**9))
    assert load_run(run).clips  # rendered after the checkpoint: kept, as render keeps them
    os.utime(renders / "run.json", ns=(written - 10**9, written - 10**9))
    with pytest.raises(StaleRendersError, match="was written after these renders"):
        load_run(run)
    (renders / "run.json").unlink()
    with pytest.raises(StaleRendersError, match="holds no run.json"):
        load_run(run)


# --- lr grids --------------------------------------------------------------------------------


def test_report_takes_an_lr_grid_as_its_best_run(prep: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    train_grid(prep, grid, _cfg(), [1e-2, 2e-2])
    best = resolve_run(grid)
    with pytest.raises(RunDirError, match=rf"an lr grid whose best run {best} has no renders") as exc:
        load_run(grid)
    assert f"sonify render --run {grid} --split test" in str(exc.value)
    render_split(grid, "test", ["none"], limit=1)
    run = load_run(grid)
    assert run.path == best and run.name == "grid" and run.clips
    assert any("an lr grid" in w and str(best) in w for w in run.warnings)


@pytest.mark.parametrize("status", ["running", "interrupted"])
def test_report_of_an_interrupted_render_says_to_finish_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          status: str) -> None:
    run = _fake_run(tmp_path, "r1")  # renders/original/ holds files of clips not yet finished
    write_json(run / "renders" / "run.json",
               {"command": "sonify render", "status": status,
                "config": {"split": "test", "limit": 2, "post": ["none"], "clips": []}})
    want = (f"{run}: its `sonify render` was interrupted before it finished any clip "
            f"(renders/run.json says '{status}'); run `auralens sonify render --run {run} "
            "--split test --limit 2 --post none` to finish it, then report")
    with pytest.raises(RunDirError) as exc:
        load_run(run)
    assert str(exc.value) == want
    out = tmp_path / "rep"
    rc, err = _cli(capsys, "report", str(run), "--out", str(out))
    assert rc == 1 and err.strip() == f"error: {want}"
    assert not out.exists()


# --- the report folder -----------------------------------------------------------------------


def test_failing_report_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _fake_run(tmp_path, "r1")
    out = tmp_path / "new" / "rp"
    rc, err = _cli(capsys, "report", str(tmp_path / "nonexist"), "--out", str(out))
    assert rc == 1 and "run directory not found" in err
    rc, err = _cli(capsys, "report", str(run), "--out", str(out), "--embedder", "nonsense")
    assert rc == 1 and "nonsense" in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()


def test_rerun_replaces_the_report_and_keeps_other_files(tmp_path: Path, monkeypatch) -> None:
    from auralens.evaluate import sonify_eval

    r1, r2 = _fake_run(tmp_path, "r1"), _fake_run(tmp_path, "r2", clips=("c",))
    out = tmp_path / "rep"
    build_report([r1, r2], out, use_cache=False)
    assert (out / "audio" / "r2").is_dir() and (out / "img" / "r2").is_dir()
    (out / "ratings.csv").write_text("kept\n")
    (out / "errors.jsonl").write_text('{"item": "old"}\n')
    build_report([r1], out, use_cache=False)
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["r1"]
    assert not (out / "img" / "r2").exists()
    assert not (out / "errors.jsonl").exists()  # no errors this time
    assert (out / "ratings.csv").read_text() == "kept\n"
    items = json.loads((out / "items.json").read_text())
    assert {it["run"] for it in items} == {"r1"} and all((out / it["audio"]).exists() for it in items)
    # A report that fails half-way keeps the previous one, and nothing beside it.
    page = (out / "index.html").read_text()

    def boom(*args, **kwargs):
        raise RunDirError("scoring failed")

    monkeypatch.setattr(sonify_eval, "evaluate_run", boom)
    with pytest.raises(RunDirError, match="scoring failed"):
        build_report([r2], out, use_cache=False)
    assert (out / "index.html").read_text() == page and (out / "audio" / "r1").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1", "r2", "rep"]


def test_linked_audio_points_at_the_runs_after_the_swap(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, "r1")
    out = tmp_path / "rep"
    build_report([run], out, use_cache=False, link_audio=True)
    build_report([run], out, use_cache=False, link_audio=True)
    link = out / "audio" / "r1" / "original" / "a.wav"
    assert link.is_symlink() and link.resolve() == (run / "renders" / "original" / "a.wav").resolve()


# --- command-line combinations ---------------------------------------------------------------


def test_render_refuses_audio_or_out_with_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wav = tmp_path / "clip.wav"
    audio.write(wav, np.zeros(SR // 4, np.float32), SR)
    run = _fake_run(tmp_path, "r1")
    for extra in ([str(wav)], ["--out", str(tmp_path / "o.wav")]):
        rc, err = _cli(capsys, "render", *extra, "--run", str(run), "--split", "test")
        assert rc == 1 and "not both" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.wav").exists()


def test_train_refuses_overwrite_with_resume(prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    opts = ["train", str(prep), "--out", str(run), "--device", "cpu", "--batch-size", "4"]
    assert _cli(capsys, *opts, "--epochs", "1")[0] == 0
    before = (run / "last.safetensors").read_bytes()
    rc, err = _cli(capsys, *opts, "--epochs", "2", "--overwrite", "--resume")
    assert rc == 1 and "--resume" in err and "--overwrite" in err and err.count("\n") == 1
    assert (run / "last.safetensors").read_bytes() == before


# --- sweep -----------------------------------------------------------------------------------


def test_sweep_of_a_missing_dataset_fails_first(tmp_path: Path, monkeypatch) -> None:
    from auralens.data import DatasetError
    from auralens.sonify import sweep as sweep_mod

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before DATA was checked")

    monkeypatch.setattr(sweep_mod, "build_extractor", no_model)
    out = tmp_path / "sw"
    with pytest.raises(DatasetError, match="dataset directory not found"):
        sweep_mod.sweep(tmp_path / "nonexist", "toyband", "1", "toyband", "lin", out, cfg=_cfg())
    assert not out.exists()


def test_sweep_names_a_damaged_prep_run_json(tmp_path: Path) -> None:
    from auralens.errors import AuralensError
    from auralens.sonify import sweep as sweep_mod

    ldir = tmp_path / "layer=2"
    (ldir / "prep").mkdir(parents=True)
    (ldir / "run").mkdir()
    (ldir / "run" / "run.json").write_text("{}")
    (ldir / "prep" / "run.json").write_text("{")
    with pytest.raises(AuralensError, match=r"prep/run\.json: not valid JSON") as exc:
        sweep_mod._check_prepared(ldir, tmp_path, None, "hint")
    assert "\n" not in str(exc.value)


def test_rate_names_a_damaged_items_json(tmp_path: Path, capsys) -> None:
    from auralens.evaluate import report
    from auralens.io import JSONFileError

    (tmp_path / "items.json").write_text("not json")
    rc, err = _cli(capsys, "rate", str(tmp_path), "--rater", "bob")
    assert rc == 1 and err.startswith("error: ") and "items.json: not valid JSON" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(JSONFileError, match="items.json"):
        report.write_rating_page(tmp_path, "bob")
