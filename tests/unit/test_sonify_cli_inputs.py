"""Sonify commands on inputs they used to take silently or answer unclearly.

Covers: a repeated --post or a --limit for a single-clip render, a sweep or prepared-data folder
given to the report, a run given twice, a --duration below the extractor's least input, a
negative or poorly fitted FAD∞, a ratings table suffix, an empty learning rate in a list, the
ratings lock file, the mixed-lengths warning printed once, and an --out that is a file.
"""

from __future__ import annotations

import csv
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from factories.sonify import ToyExtractor, mixed_length_library, toy_prep, write_library

from auralens import audio
from auralens.evaluate.report import ReportError, build_report
from auralens.evaluate.sonify_eval import RunDirError
from auralens.io import write_json
from auralens.sonify.prepare import PrepareError, prepare
from auralens.sonify.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SR = 8000


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_prep(tmp_path_factory.mktemp("inputs"), per_class=4)


@pytest.fixture(scope="module")
def trained(prep: Path) -> Path:
    run = prep.parent / "run"
    train(prep, run, TrainConfig(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False))
    return run


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    from auralens.cli import main

    capsys.readouterr()
    rc = main(["sonify", *args])
    return rc, capsys.readouterr().err


def _one_line_error(rc: int, err: str) -> None:
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1, err


def _fake_run(root: Path, name: str, layer: int = 1) -> Path:
    """A rendered run without a checkpoint (as copied from elsewhere)."""
    rng = np.random.default_rng(len(name) + layer)
    run = root / name
    for cid in ("a", "b"):
        x = (0.3 * rng.standard_normal(SR // 2)).astype(np.float32)
        for version, noise in (("original", 0.0), ("ceiling", 0.01), ("none", 0.1)):
            y = x + noise * rng.standard_normal(x.shape[0]).astype(np.float32)
            audio.write(run / "renders" / version / f"{cid}.wav", y, SR)
    write_json(run / "run.json", {"command": "sonify train",
                                  "config": {"gate": "lin", "epochs": 1, "layer": layer}})
    return run


def _report_runs(out: Path) -> list[str]:
    with open(out / "metrics.csv", encoding="utf-8", newline="") as fh:
        return list(dict.fromkeys(row["run"] for row in csv.DictReader(fh)))


# --- 1. single-clip render ---------------------------------------------------------------------


def test_single_clip_render_refuses_a_repeated_post(trained: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    clip = sorted((trained.parent / "lib" / "audio").glob("*.wav"))[0]
    out = tmp_path / "m.wav"
    rc, err = _cli(capsys, "render", str(clip), "--run", str(trained), "--out", str(out),
                   "--post", "minmax", "--post", "peak")
    _one_line_error(rc, err)
    assert "--post minmax,peak" in err and "--split" in err and "one chain" in err
    assert not out.exists()
    # One chain of two steps is what a single clip takes.
    rc, err = _cli(capsys, "render", str(clip), "--run", str(trained), "--out", str(out),
                   "--post", "minmax,peak")
    assert rc == 0 and out.is_file(), err


def test_single_clip_render_refuses_limit(trained: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    clip = sorted((trained.parent / "lib" / "audio").glob("*.wav"))[0]
    out = tmp_path / "m.wav"
    rc, err = _cli(capsys, "render", str(clip), "--run", str(trained), "--out", str(out), "--limit", "3")
    _one_line_error(rc, err)
    assert "--limit 3" in err and "--split" in err
    assert not out.exists()


# --- 2. and 3. what the report is given ----------------------------------------------------------


def test_report_of_a_sweep_reports_its_layer_runs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _fake_run(sweep / "layer=2", "run", layer=2)
    _fake_run(sweep / "layer=1", "run", layer=1)
    (sweep / "layer=3" / "run").mkdir(parents=True)  # diverged: trained, never rendered
    write_json(sweep / "run.json", {"command": "sonify sweep",
                                    "config": {"layers": ["2", "1", "3"]}})
    out = tmp_path / "rep"
    build_report([sweep], out, use_cache=False)
    assert _report_runs(out) == ["layer=2", "layer=1"]


def test_report_of_an_unrendered_sweep_points_to_its_runs(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "layer=1" / "run").mkdir(parents=True)
    (sweep / "layer=1" / "prep").mkdir(parents=True)
    write_json(sweep / "run.json", {"command": "sonify sweep", "config": {"layers": ["1"]}})
    rc, err = _cli(capsys, "report", str(sweep), "--out", str(tmp_path / "rep"))
    _one_line_error(rc, err)
    assert "layer sweep" in err and "layer=*/run" in err and "no renders/original" not in err
    assert not (tmp_path / "rep").exists()


def test_report_names_prepared_data(prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(RunDirError, match="prepared data"):
        build_report([prep], tmp_path / "rep", use_cache=False)
    rc, err = _cli(capsys, "report", str(prep), "--out", str(tmp_path / "rep"))
    _one_line_error(rc, err)
    assert f"{prep}: prepared data" in err and "not a trained run" in err and "sonify train" in err
    assert not (tmp_path / "rep").exists()


def test_report_refuses_a_run_given_twice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _fake_run(tmp_path, "run1")
    out = tmp_path / "rep"
    with pytest.raises(ReportError, match="given twice"):
        build_report([run, run], out, use_cache=False)
    # Spelt another way, it is still the same folder.
    with pytest.raises(ReportError, match="are the same run"):
        build_report([run, tmp_path / "x" / ".." / "run1"], out, use_cache=False)
    rc, err = _cli(capsys, "report", str(run), str(run), "--out", str(out))
    _one_line_error(rc, err)
    assert "given twice" in err
    assert not out.exists()


# --- 4. --duration below the least input -----------------------------------------------------


def test_prepare_refuses_a_duration_below_the_extractors_least_input(tmp_path: Path) -> None:
    library = write_library(tmp_path / "lib", per_class=2, seconds=0.5)
    toy = ToyExtractor(layer=1)
    toy.min_samples = 400  # 0.05 s at 8 kHz
    out = tmp_path / "prep"
    with pytest.raises(PrepareError, match=r"--duration 0.01 s is shorter than .*400 samples") as exc:
        prepare(library, toy, "toyband", 1, out, duration=0.01, cache_dir=tmp_path / "cache")
    assert "--duration 0.05 or more" in str(exc.value)
    assert toy.calls == 0 and not out.exists()  # refused before any work


def test_prepare_cli_refuses_a_too_short_duration_for_the_ast_classifier(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    library = write_library(tmp_path / "lib", per_class=2, seconds=0.5)
    out = tmp_path / "prep"
    rc, err = _cli(capsys, "prepare", str(library), "--encoder", "classifier", "--codec", "toyband",
                   "--duration", "0.01", "--out", str(out))
    _one_line_error(rc, err)
    assert "--duration 0.01 s is shorter" in err and "400 samples" in err  # one 25 ms fbank window
    assert not out.exists()


# --- 5. FAD∞ ---------------------------------------------------------------------------------


def test_negative_fad_inf_is_reported_with_a_warning(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from auralens.evaluate.folders import fad_folders

    rng = np.random.default_rng(0)
    folder = tmp_path / "a"
    for i in range(6):
        audio.write(folder / f"n{i}.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    with caplog.at_level(logging.WARNING):
        res = fad_folders(folder, folder, inf=True)
    assert res["fad_inf"] < 0  # not clamped
    assert any("FAD∞ is negative" in w for w in res["warnings"])
    assert "FAD∞ is negative" in caplog.text


def test_poor_fad_inf_fit_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    from auralens.evaluate.fad import FAD_INF_MIN_R2, fad_inf, fad_inf_warnings

    # Two samples of one distribution, subsets close to the full size: FAD(n) is noise.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4000, 4)), rng.standard_normal((4000, 4))
    with caplog.at_level(logging.WARNING):
        res = fad_inf(x, y, sizes=[3000, 3200, 3400, 3600, 3800, 4000], seed=1)
    assert res.r2 < FAD_INF_MIN_R2 and res.fad_inf > 0
    assert len(res.warnings) == 1 and "FAD∞ fit is poor" in res.warnings[0]
    assert "FAD∞ fit is poor" in caplog.text
    assert fad_inf_warnings(1.2, 0.95) == []
    poor = fad_inf_warnings(1.2, 0.35)
    assert len(poor) == 1 and "r² 0.35" in poor[0] and f"{FAD_INF_MIN_R2:g}" in poor[0]
    assert len(fad_inf_warnings(-0.278, 0.35)) == 2


# --- 6. ratings table suffix and learning-rate lists -----------------------------------------


def test_ratings_table_must_be_md_or_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from auralens.evaluate.ratings import save_rating

    ratings = tmp_path / "ratings.csv"
    save_rating(ratings, rater="ann", run="r", version="r/none", clip="c1", visual=3, audio=4)
    out = tmp_path / "t.txt"
    rc, err = _cli(capsys, "ratings", str(ratings), "--out", str(out))
    _one_line_error(rc, err)
    assert str(out) in err and ".md" in err and ".csv" in err
    assert not out.exists()
    rc, err = _cli(capsys, "ratings", str(ratings), "--out", str(tmp_path / "t.CSV"))
    assert rc == 0 and (tmp_path / "t.CSV").read_text().startswith("version,n,"), err


@pytest.mark.parametrize("lrs", ["1e-3,,1e-2", "1e-3,", ",1e-3"])
def test_train_refuses_an_empty_learning_rate_in_a_list(prep: Path, tmp_path: Path, lrs: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    rc, err = _cli(capsys, "train", str(prep), "--out", str(out), "--lr", lrs, "--epochs", "1")
    _one_line_error(rc, err)
    assert "--lr" in err and "empty entry" in err
    assert not out.exists()


# --- 7. the ratings lock file ------------------------------------------------------------------


def test_rating_leaves_no_lock_file_and_keeps_every_concurrent_rating(tmp_path: Path) -> None:
    from auralens.evaluate.ratings import load_ratings, save_rating

    ratings = tmp_path / "report" / "ratings.csv"
    save_rating(ratings, rater="ann", run="r", version="r/none", clip="c0", visual=3, audio=4)
    assert not ratings.with_name("ratings.csv.lock").exists()
    errors: list[BaseException] = []

    def rate(rater: str) -> None:
        try:
            for i in range(15):
                save_rating(ratings, rater=rater, run="r", version="r/none", clip=f"c{i}",
                            visual=1 + i % 5, audio=5 - i % 5)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=rate, args=(f"rater{k}",)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(load_ratings(ratings)) == 1 + 6 * 15  # no rating lost to a removed lock
    assert sorted(p.name for p in ratings.parent.iterdir()) == ["ratings.csv"]


# --- 8. prepare's warning printed once, --out that is a file ------------------------------------


def test_mixed_lengths_warning_is_printed_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mixed_length_library(tmp_path / "var")
    rc, err = _cli(capsys, "prepare", str(tmp_path / "var"), "--encoder", "toyband", "--codec",
                   "toyband", "--layer", "1", "--duration", "0", "--out", str(tmp_path / "p"))
    assert rc == 0, err
    assert err.count("cannot be trained on together") == 1, err


@pytest.mark.parametrize("command", ["prepare", "train", "sweep"])
def test_out_that_is_a_file_is_named_as_such(command: str, prep: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    taken = tmp_path / "env.sh"
    taken.write_text("export X=1\n")
    library = prep.parent / "lib"
    args = {"prepare": ["prepare", str(library), "--encoder", "toyband", "--codec", "toyband"],
            "train": ["train", str(prep), "--epochs", "1"],
            "sweep": ["sweep", str(library), "--encoder", "toyband", "--codec", "toyband",
                      "--layers", "1", "--epochs", "1"]}[command]
    for out, where in ((taken, "exists and is not a directory"),
                       (taken / "sub", f"lies under {taken}, which is not a directory")):
        rc, err = _cli(capsys, *args, "--out", str(out))
        _one_line_error(rc, err)
        assert f"error: {out}: {where} (--out names the " in err, err
    assert taken.read_text() == "export X=1\n"
