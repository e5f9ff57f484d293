"""``sonify train`` run again into the same RUN: the same command continues an interrupted run
(single learning rate and lr grid), a finished run is reported and not trained again, other
settings are refused naming them, ``--resume`` still allows a new --lr, ``--overwrite`` starts
again, and the recorded training time adds up over the interrupted and continued processes.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from factories.sonify import write_library

from auralens.errors import CheckpointMismatchError
from auralens.io import read_json, read_jsonl
from auralens.sonify import checkpoint as ckpt
from auralens.sonify import train as train_mod
from auralens.sonify.prepare import prepare
from auralens.sonify.train import NonFiniteLossError, TrainConfig, TrainError, train, train_grid

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ENC, COD = "toyband", "toyband"


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rerun")
    library = write_library(root / "lib", per_class=5, seconds=0.5)
    out = root / "prep"
    prepare(library, ENC, COD, 1, out, duration=0.5, cache_dir=root / "cache")
    return out


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(gate="lin", lr=1e-2, epochs=2, batch_size=4, tensorboard=False) | kw))


def _args(prep: Path, run: Path, *extra: str, epochs: int = 2, lr: str = "1e-2") -> list[str]:
    return ["sonify", "train", str(prep), "--out", str(run), "--gate", "lin", "--lr", lr,
            "--epochs", str(epochs), "--batch-size", "4", *extra]


def _cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    from auralens.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _stamps(folder: Path) -> dict[str, str]:
    """MD5 of every file under ``folder`` (TensorBoard events aside)."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "tb" not in p.parts}


def _interrupt_evaluation(monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
    """Ctrl-C during the ``at_call``-th validation (that epoch's checkpoint is never written)."""
    original, calls = train_mod._evaluate, {"n": 0}

    def hook(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate", hook)


def _epochs(run: Path) -> list[int]:
    return [h["epoch"] for h in read_jsonl(run / "history.jsonl")]


# --- a single learning rate ----------------------------------------------------------------

def test_rerun_of_the_same_command_continues_an_interrupted_run(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _interrupt_evaluation(monkeypatch, 3)
    code, _, err = _cli(capsys, _args(prep, run, epochs=4))
    assert code == 130 and "interrupted" in err
    first = read_json(run / "run.json")
    assert first["result"]["status"] == "interrupted" and first["result"]["epochs_run"] == 2
    assert int(ckpt.read_header(run / "last.safetensors")["epoch"]) == 2

    monkeypatch.undo()
    code, out, err = _cli(capsys, _args(prep, run, epochs=4))
    assert code == 0, err
    assert f"{run}: continued after epoch 2; best" in out
    assert _epochs(run) == [1, 2, 3, 4]
    record = read_json(run / "run.json")
    assert record["result"]["status"] == "ok" and record["result"]["epochs_run"] == 4
    assert record["result"]["resumed_from_epoch"] == 2
    # The recorded time covers both processes: the interrupted one and this one.
    timings = record["timings_s"]
    assert timings["train"] >= first["timings_s"]["train"] + timings["train_this_process"] - 1e-3
    assert timings["train"] > timings["train_this_process"]
    # The same losses as an uninterrupted run of 4 epochs.
    full = train(prep, tmp_path / "full", _cfg(epochs=4))
    assert record["result"]["best_val_loss"] == pytest.approx(full.best_val_loss, rel=1e-5)
    # The interrupted run's record told how to go on.
    assert "rerun the same command to continue" in first["result"]["message"]


def test_rerun_of_a_finished_run_is_reported_and_not_trained_again(
        prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _cli(capsys, _args(prep, run))[0] == 0
    before = _stamps(run)
    code, out, err = _cli(capsys, _args(prep, run, "--device", "cpu", "--eval-batch-size", "8"))
    assert code == 0, err
    assert f"{run}: already finished (2 epochs), not trained again; best" in out
    assert _stamps(run) == before  # nothing written: run.json, history and checkpoints as they were
    res = train(prep, run, _cfg())
    assert res.already_finished and res.status == "ok" and res.epochs_run == 2
    assert res.seconds == read_json(run / "run.json")["timings_s"]["train"]
    assert _stamps(run) == before


def test_rerun_with_other_settings_is_refused_naming_them(
        prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _cli(capsys, _args(prep, run))[0] == 0
    before = _stamps(run)
    # Only the learning rate differs: --resume would take it.
    code, _, err = _cli(capsys, _args(prep, run, lr="5e-3"))
    assert code == 1 and err.strip().count("\n") == 0
    assert f"{run}: holds a run trained with other settings (lr 0.01 → 0.005)" in err
    assert "--resume to continue it with the new --lr" in err and "--overwrite" in err and "--out" in err
    # A setting that changes the model or the loss: only --overwrite or another --out.
    code, _, err = _cli(capsys, _args(prep, run, "--blur", "--epochs", "3"))
    assert code == 1 and err.strip().count("\n") == 0
    assert "blur False → True" in err and "--resume" not in err
    assert "--overwrite to train it again, or choose another --out" in err
    # Fewer epochs than the run trained.
    code, _, err = _cli(capsys, _args(prep, run, epochs=1))
    assert code == 1 and err.strip().count("\n") == 0
    assert "already trained for 2 epochs, more than --epochs 1; pass --epochs 2 or more" in err
    with pytest.raises(CheckpointMismatchError, match=r"hidden 256 → 32"):
        train(prep, run, _cfg(hidden=32))
    assert _stamps(run) == before  # every refusal left the run as it was


def test_resume_still_takes_a_new_learning_rate_and_overwrite_starts_again(
        prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _cli(capsys, _args(prep, run))[0] == 0
    code, out, err = _cli(capsys, _args(prep, run, "--resume", epochs=3, lr="5e-3"))
    assert code == 0, err
    assert "continued after epoch 2" in out and _epochs(run) == [1, 2, 3]
    assert read_json(run / "run.json")["config"]["lr"] == 5e-3
    code, out, err = _cli(capsys, _args(prep, run, "--overwrite", "--blur"))
    assert code == 0, err
    assert "continued" not in out and "already finished" not in out and _epochs(run) == [1, 2]
    record = read_json(run / "run.json")
    assert record["config"]["blur"] is True and record["result"]["resumed_from_epoch"] == 0
    with pytest.raises(TrainError, match="give one of them"):
        train(prep, run, _cfg(), resume=True, overwrite=True)


def test_overwrite_interrupted_in_its_first_epoch_leaves_no_checkpoint_of_the_old_run(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    train(prep, run, _cfg())
    _interrupt_evaluation(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(prep, run, _cfg(blur=True), overwrite=True)
    monkeypatch.undo()
    # The old run's checkpoint would otherwise be continued under the new run's record.
    assert not (run / "last.safetensors").exists() and not (run / "best.safetensors").exists()
    res = train(prep, run, _cfg(blur=True))
    assert res.resumed_from_epoch == 0 and _epochs(run) == [1, 2]


def test_rerun_of_a_diverged_run_reports_it_without_training(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    original, calls = train_mod._evaluate, {"n": 0}

    def nan_at_epoch_2(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        return math.nan if calls["n"] == 2 else original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate", nan_at_epoch_2)
    with pytest.raises(NonFiniteLossError, match="validation loss became nan at epoch 2"):
        train(prep, run, _cfg(epochs=3))
    before, count = _stamps(run), calls["n"]
    # epochs_run of a diverged run is the epoch the loss became non-finite in
    with pytest.raises(NonFiniteLossError, match=r"run: already stopped with a non-finite loss during "
                                                 r"epoch 2 \(lr=0.01\); not trained again"):
        train(prep, run, _cfg(epochs=3))
    assert calls["n"] == count and _stamps(run) == before


def _diverge_at(monkeypatch: pytest.MonkeyPatch, *at_calls: int) -> dict[str, int]:
    """A NaN validation loss at the ``at_calls``-th validations; returns the call counter."""
    original, calls = train_mod._evaluate, {"n": 0}

    def hook(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        return math.nan if calls["n"] in at_calls else original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate", hook)
    return calls


def test_rerun_of_a_run_that_diverged_in_its_first_epoch_reports_it(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No checkpoint (the loss was non-finite in epoch 1): run.json alone tells what happened."""
    run = tmp_path / "run"
    calls = _diverge_at(monkeypatch, 1)
    with pytest.raises(NonFiniteLossError, match="at epoch 1"):
        train(prep, run, _cfg())
    assert not (run / "last.safetensors").exists()
    before, count = _stamps(run), calls["n"]
    with pytest.raises(NonFiniteLossError, match=r"already stopped with a non-finite loss during "
                                                 r"epoch 1 \(lr=0.01\); not trained again"):
        train(prep, run, _cfg())
    code, _, err = _cli(capsys, _args(prep, run, "--epochs", "3"))
    assert code == 1 and "during epoch 1" in err and "not trained again" in err
    assert calls["n"] == count and _stamps(run) == before
    # Another learning rate: refused without --resume (as for a run with a checkpoint) …
    code, _, err = _cli(capsys, _args(prep, run, lr="1e-3"))
    assert code == 1 and err.strip().count("\n") == 0
    assert "holds a run trained with other settings (lr 0.01 → 0.001)" in err and "--resume" in err
    assert _stamps(run) == before
    # … and trained from epoch 1 with it.
    monkeypatch.undo()
    res = train(prep, run, _cfg(lr=1e-3), resume=True)
    assert res.status == "ok" and not res.already_finished and _epochs(run) == [1, 2]
    assert read_json(run / "run.json")["config"]["lr"] == 1e-3


def test_run_without_checkpoint_refuses_other_settings_and_starts_afresh_with_its_own(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """run.json but no last.safetensors: diverged or interrupted in epoch 1 (or killed before it
    ended): other settings are refused, the run's own start it again."""
    diverged, stopped = tmp_path / "diverged", tmp_path / "stopped"
    _diverge_at(monkeypatch, 1)
    with pytest.raises(NonFiniteLossError):
        train(prep, diverged, _cfg())
    monkeypatch.undo()
    _interrupt_evaluation(monkeypatch, 1)
    code, _, _ = _cli(capsys, _args(prep, stopped))
    assert code == 130 and read_json(stopped / "run.json")["result"]["status"] == "interrupted"
    monkeypatch.undo()
    for run in (diverged, stopped):
        before = _stamps(run)
        code, _, err = _cli(capsys, ["sonify", "train", str(prep), "--out", str(run), "--gate", "conv",
                                     "--lr", "1e-2", "--epochs", "2", "--batch-size", "4"])
        assert code == 1 and err.strip().count("\n") == 0, err
        assert f"{run}: holds a run trained with other settings (gate 'v0' → " in err
        assert "--overwrite" in err and _stamps(run) == before
        with pytest.raises(CheckpointMismatchError, match=r"cannot resume with changed settings \(blur"):
            train(prep, run, _cfg(blur=True), resume=True)
        assert _stamps(run) == before
    # The interrupted run's own settings: trained from epoch 1.
    code, out, err = _cli(capsys, _args(prep, stopped))
    assert code == 0, err
    assert "continued" not in out and "already" not in out and _epochs(stopped) == [1, 2]
    record = read_json(stopped / "run.json")
    assert record["result"]["status"] == "ok" and record["config"]["gate"] == "v0"
    # A killed run (its run.json still "running") of other settings is refused too.
    killed = tmp_path / "killed"
    _interrupt_evaluation(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(prep, killed, _cfg(hidden=32))
    monkeypatch.undo()
    record = read_json(killed / "run.json")
    record["result"] = {"status": "running", "val_split": "val"}
    from auralens.io import write_json

    write_json(killed / "run.json", record)
    with pytest.raises(CheckpointMismatchError, match=r"hidden 32 → 256"):
        train(prep, killed, _cfg())
    assert train(prep, killed, _cfg(hidden=32)).status == "ok" and _epochs(killed) == [1, 2]


def test_resume_with_a_new_lr_of_a_finished_run_says_the_lr_is_not_used(
        prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _cli(capsys, _args(prep, run))[0] == 0
    before = _stamps(run)
    code, out, err = _cli(capsys, _args(prep, run, "--resume", lr="5e-3"))
    assert code == 0, err
    assert (f"{run}: already finished (2 epochs with lr 0.01; --lr 0.005 not used), not trained "
            "again; best") in out
    assert _stamps(run) == before
    code, out, _ = _cli(capsys, _args(prep, run, "--resume"))
    assert "already finished (2 epochs), not trained again" in out


def test_run_killed_after_its_final_checkpoint_is_finished_without_more_time(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The process wrote the last epoch's checkpoint and was killed before run.json said "ok"."""
    run = tmp_path / "run"
    original = train_mod._write_run

    def killed_before_the_end(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = args[4] if len(args) > 4 else kwargs.get("result")
        if (result or {}).get("status") == "running":
            original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_write_run", killed_before_the_end)
    train(prep, run, _cfg())
    monkeypatch.undo()
    assert read_json(run / "run.json")["result"]["status"] == "running"
    header = ckpt.read_header(run / "last.safetensors")
    history = _stamps(run)["history.jsonl"]
    code, out, err = _cli(capsys, _args(prep, run))
    assert code == 0, err
    assert f"{run}: already finished (2 epochs), not trained again; best" in out
    assert "continued" not in out
    record = read_json(run / "run.json")
    assert record["result"]["status"] == "ok" and record["result"]["epochs_run"] == 2
    assert record["result"]["best_val_loss"] == pytest.approx(header["best_val_loss"])
    # The run's time is the checkpoint's: nothing of the process that trained nothing.
    assert record["timings_s"]["train"] == pytest.approx(header["train_seconds"], abs=1e-4)
    assert record["timings_s"]["train_this_process"] == 0
    assert _stamps(run)["history.jsonl"] == history and _epochs(run) == [1, 2]
    # From now on a plain finished run: reported, nothing written.
    before = _stamps(run)
    res = train(prep, run, _cfg())
    assert res.already_finished and res.seconds == record["timings_s"]["train"]
    assert _stamps(run) == before


# --- the recorded training time ----------------------------------------------------------

def test_training_time_adds_up_over_a_continued_run(prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = train(prep, run, _cfg(epochs=2))
    recorded = read_json(run / "run.json")["timings_s"]["train"]
    assert recorded == pytest.approx(first.seconds, abs=1e-3)
    kept = ckpt.read_header(run / "last.safetensors").get("train_seconds")
    res = train(prep, run, _cfg(epochs=4), resume=True)
    record = read_json(run / "run.json")
    this = record["timings_s"].get("train_this_process", res.seconds)  # this process's share
    assert res.seconds == pytest.approx(recorded + this, abs=1e-3) and res.seconds >= recorded
    assert record["timings_s"]["train"] == pytest.approx(res.seconds, abs=1e-3)
    assert _epochs(run) == [1, 2, 3, 4] and res.epochs_run == 4
    # Each checkpoint records the time so far (what a killed process's successor adds to).
    assert kept is not None and 0 < float(kept) <= recorded
    assert float(ckpt.read_header(run / "last.safetensors")["train_seconds"]) >= recorded
    assert res.resumed_from_epoch == 2


def test_checkpoint_of_an_older_version_counts_its_epochs_times(prep: Path, tmp_path: Path) -> None:
    """A checkpoint without ``train_seconds`` and a run.json of a killed process: the time before
    is the history's epoch times."""
    from auralens.io import write_json

    run = tmp_path / "run"
    train(prep, run, _cfg(epochs=2))
    header = ckpt.read_header(run / "last.safetensors")
    header.pop("train_seconds")
    record = read_json(run / "run.json")
    record["result"] = {"status": "running"}
    write_json(run / "run.json", record)
    epoch_times = sum(h["time_s"] for h in read_jsonl(run / "history.jsonl"))
    assert train_mod._seconds_before(run, header, read_json(run / "run.json")) == pytest.approx(epoch_times)


# --- an lr grid ---------------------------------------------------------------------------

def test_grid_rerun_continues_skips_finished_and_refuses_other_settings(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid"
    # lr=0.01 finishes both epochs; lr=0.02 is interrupted in its second epoch.
    _interrupt_evaluation(monkeypatch, 4)
    code, _, _ = _cli(capsys, _args(prep, grid, lr="1e-2,2e-2"))
    assert code == 130
    monkeypatch.undo()
    interrupted = read_json(grid / "lr=0.02" / "run.json")
    assert interrupted["result"]["status"] == "interrupted" and interrupted["result"]["epochs_run"] == 1
    finished = _stamps(grid / "lr=0.01")

    code, out, err = _cli(capsys, _args(prep, grid, lr="1e-2,2e-2"))
    assert code == 0, err
    assert f"{grid / 'lr=0.01'}: already finished (2 epochs), not trained again" in out
    assert f"{grid / 'lr=0.02'}: continued after epoch 1" in out
    assert _stamps(grid / "lr=0.01") == finished and _epochs(grid / "lr=0.02") == [1, 2]
    rows = read_json(grid / "run.json")["result"]["grid"]
    assert [(r["lr"], r["status"], r["epochs_run"]) for r in rows] == [("0.01", "ok", "2"), ("0.02", "ok", "2")]
    # lr=0.02's time covers its interrupted process too.
    assert float(rows[1]["time_s"]) >= round(interrupted["timings_s"]["train"], 1)
    assert read_json(grid / "lr=0.02" / "run.json")["timings_s"]["train"] > \
        interrupted["timings_s"]["train"]

    # Everything finished: nothing is trained again.
    before = _stamps(grid)
    res = train_grid(prep, grid, _cfg(), [1e-2, 2e-2])
    assert all(r.already_finished for r in res)
    assert {k: v for k, v in _stamps(grid).items() if "/" in k} == {k: v for k, v in before.items() if "/" in k}

    # Other settings, fewer epochs or another lr list: refused before anything trains.
    before = _stamps(grid)
    code, _, err = _cli(capsys, _args(prep, grid, "--normalize", "minmax", lr="1e-2,2e-2"))
    assert code == 1 and err.strip().count("\n") == 0 and "normalize 'none' → 'minmax'" in err
    code, _, err = _cli(capsys, _args(prep, grid, lr="1e-2,2e-2", epochs=1))
    assert code == 1 and "already trained for 2 epochs, more than --epochs 1" in err
    code, _, err = _cli(capsys, _args(prep, grid, lr="1e-2,3e-2"))
    assert code == 1 and err.strip().count("\n") == 0
    assert "holds an lr grid of other learning rates (lr 0.01,0.02 → 0.01,0.03)" in err
    assert "--resume" in err and "--overwrite" in err
    assert _stamps(grid) == before and not (grid / "lr=0.03").exists()
    # --resume takes the other list (the runs of the first one are kept).
    code, _, err = _cli(capsys, _args(prep, grid, "--resume", lr="1e-2,3e-2"))
    assert code == 0, err
    assert read_json(grid / "run.json")["config"]["lr"] == [1e-2, 3e-2] and (grid / "lr=0.02").is_dir()


def test_grid_continues_with_more_epochs(prep: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    first = train_grid(prep, grid, _cfg(epochs=1), [1e-2, 2e-2])
    res = train_grid(prep, grid, _cfg(epochs=2), [1e-2, 2e-2])
    assert [(r.epochs_run, r.resumed_from_epoch, r.already_finished) for r in res] == [(2, 1, False)] * 2
    assert all(r.seconds >= f.seconds for r, f in zip(res, first, strict=True))
    assert _epochs(grid / "lr=0.01") == [1, 2] and _epochs(grid / "lr=0.02") == [1, 2]


def test_grid_records_its_learning_rates_before_the_first_one_trains(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A grid stopped in its first learning rate: a rerun with another list is refused."""
    from auralens.sonify.render import resolve_run

    grid = tmp_path / "grid"
    _interrupt_evaluation(monkeypatch, 2)  # lr=0.01 stopped in epoch 2, lr=0.02 not started
    code, _, _ = _cli(capsys, _args(prep, grid, lr="1e-2,2e-2"))
    assert code == 130
    monkeypatch.undo()
    record = read_json(grid / "run.json")
    assert record["config"]["lr"] == [1e-2, 2e-2] and record["result"]["status"] == "running"
    assert train_mod.recorded_grid(grid) == ["lr=0.01", "lr=0.02"]
    assert resolve_run(grid) == grid / "lr=0.01"  # render copes with the running record
    with pytest.raises(TrainError, match="holds an lr grid"):
        train(prep, grid, _cfg())
    before = _stamps(grid)
    code, _, err = _cli(capsys, _args(prep, grid, lr="1e-2,3e-2"))
    assert code == 1 and err.strip().count("\n") == 0
    assert "holds an lr grid of other learning rates (lr 0.01,0.02 → 0.01,0.03)" in err
    assert _stamps(grid) == before and not (grid / "lr=0.03").exists()
    # The same list continues; the end-of-grid record replaces the running one.
    code, out, err = _cli(capsys, _args(prep, grid, lr="1e-2,2e-2"))
    assert code == 0, err
    assert f"{grid / 'lr=0.01'}: continued after epoch 1" in out
    record = read_json(grid / "run.json")
    assert record["result"]["status"] == "done"
    assert [r["lr"] for r in record["result"]["grid"]] == ["0.01", "0.02"]


def test_grid_of_an_older_version_without_record_refuses_another_list(
        prep: Path, tmp_path: Path) -> None:
    """Without run.json (a grid of an older version stopped early) its lr=<v> folders count."""
    grid = tmp_path / "grid"
    train_grid(prep, grid, _cfg(epochs=1), [1e-2, 2e-2])
    (grid / "run.json").unlink()
    with pytest.raises(TrainError, match=r"other learning rates \(lr 0.01,0.02 → 0.01,0.03\)"):
        train_grid(prep, grid, _cfg(epochs=1), [1e-2, 3e-2])
    # a list holding every folder's learning rate continues
    res = train_grid(prep, grid, _cfg(epochs=1), [1e-2, 2e-2, 3e-2])
    assert [r.already_finished for r in res] == [True, True, False]


def test_grid_rerun_reports_a_diverged_learning_rate_during_its_epoch(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid"
    _diverge_at(monkeypatch, 3)  # lr=0.02's first validation
    code, _, _ = _cli(capsys, _args(prep, grid, lr="1e-2,2e-2"))
    assert code == 0
    monkeypatch.undo()
    code, out, err = _cli(capsys, _args(prep, grid, lr="1e-2,2e-2"))
    assert code == 0, err
    assert f"{grid / 'lr=0.02'}: already diverged (during epoch 1), not trained again" in out


# --- folders whose run.json is not a readable sonify train record ---------------------------

def test_a_damaged_record_without_checkpoint_is_refused_until_overwrite(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _interrupt_evaluation(monkeypatch, 1)  # stopped in epoch 1: run.json, no checkpoint
    assert _cli(capsys, _args(prep, run))[0] == 130
    monkeypatch.undo()
    assert not (run / "last.safetensors").exists()
    damaged = '{"command": "sonify train", "config": {"gate": "conv"'
    (run / "run.json").write_text(damaged)
    # what it records is unknown: a rerun, even with other settings, must not train over it
    code, _, err = _cli(capsys, _args(prep, run, "--blur"))
    assert code == 1 and err.strip().count("\n") == 0, err
    assert err.startswith(f"error: {run / 'run.json'}: not valid JSON")
    assert "pass --overwrite to train it again, or choose another --out" in err
    assert (run / "run.json").read_text() == damaged
    code, _, err = _cli(capsys, _args(prep, run, "--blur", "--overwrite"))
    assert code == 0, err
    assert read_json(run / "run.json")["config"]["blur"] is True


def test_a_damaged_lr_record_in_a_grid_says_what_to_do(prep: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    train_grid(prep, grid, _cfg(), [1e-2, 2e-2])
    (grid / "lr=0.02" / "run.json").write_text("{")
    with pytest.raises(TrainError, match=r"lr=0.02/run.json: not valid JSON .*pass --overwrite to train "
                                         r"it again, or choose another --out"):
        train_grid(prep, grid, _cfg(), [1e-2, 2e-2])


def test_training_into_another_commands_folder_is_refused(
        prep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _stamps(prep)
    code, _, err = _cli(capsys, _args(prep, prep))
    assert code == 1 and err.strip().count("\n") == 0, err
    assert f"{prep}: holds the output of 'sonify prepare', not of sonify train; choose another --out" in err
    code, _, err = _cli(capsys, _args(prep, prep, "--overwrite"))
    assert code == 1 and "holds the output of 'sonify prepare'" in err
    assert _stamps(prep) == before  # the prepared data is as it was, still loadable
    from auralens.sonify.prepare import load_prepared

    load_prepared(prep)
