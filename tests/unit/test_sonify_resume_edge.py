"""``sonify train --resume`` of a run that diverged in its last epoch E, asking for a smaller
--lr and --epochs E-1: the checkpoint of epoch E-1 already holds the epochs asked for, so the run
is recorded as finished from it (trained with its own learning rate, nothing trained now), and
the record says how the run really stopped instead of claiming a killed process.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import pytest
from factories.sonify import write_library

from auralens.io import read_json, read_jsonl
from auralens.sonify import train as train_mod
from auralens.sonify.prepare import prepare
from auralens.sonify.train import NonFiniteLossError, TrainConfig, train

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume_edge")
    library = write_library(root / "lib", per_class=5, seconds=0.5)
    out = root / "prep"
    prepare(library, "toyband", "toyband", 1, out, duration=0.5, cache_dir=root / "cache")
    return out


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(gate="lin", lr=1e-2, epochs=3, batch_size=4, tensorboard=False) | kw))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_resume_with_a_smaller_lr_and_one_epoch_less_records_the_divergence(
        prep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    original, calls = train_mod._evaluate, {"n": 0}

    def nan_in_epoch_3(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        return math.nan if calls["n"] == 3 else original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate", nan_in_epoch_3)
    with pytest.raises(NonFiniteLossError, match="at epoch 3"):
        train(prep, run, _cfg())
    diverged = read_json(run / "run.json")
    assert (diverged["result"]["status"], diverged["result"]["epochs_run"]) == ("diverged", 3)
    stamps = {name: _md5(run / name) for name in ("last.safetensors", "best.safetensors", "history.jsonl")}
    count = calls["n"]

    with caplog.at_level(logging.WARNING, logger="auralens.sonify.train"):
        res = train(prep, run, _cfg(lr=1e-3, epochs=2), resume=True)
    # The 2 epochs asked for are the checkpoint's, trained with lr 0.01 before the divergence.
    assert (res.status, res.epochs_run, res.lr, res.already_finished) == ("ok", 2, 1e-2, True)
    assert calls["n"] == count  # nothing trained, nothing evaluated
    assert {name: _md5(run / name) for name in stamps} == stamps
    record = read_json(run / "run.json")
    result = record["result"]
    assert (result["status"], result["epochs_run"]) == ("ok", 2)
    assert (record["config"]["lr"], record["config"]["epochs"]) == (1e-2, 2)
    assert record["timings_s"]["train"] == diverged["timings_s"]["train"]
    assert record["timings_s"]["train_this_process"] == 0
    # The record tells how the run stopped, not of a process killed before the end.
    assert "stopped before recording the end" not in result["message"]
    assert result["message"].startswith("diverged during epoch 3 (lr=0.01); its checkpoint of epoch 2")
    assert res.message == result["message"]
    assert result["stopped_earlier"] == {"status": "diverged", "epochs_run": 3, "lr": 1e-2,
                                         "message": diverged["result"]["message"]}
    told = [r.getMessage() for r in caplog.records if "nothing is trained" in r.getMessage()]
    assert len(told) == 1 and str(run) in told[0]
    assert "--lr 0.001 not used" in told[0] and "pass --epochs 3 or more" in told[0]

    # Asking for the third epoch again trains it with the smaller learning rate.
    res = train(prep, run, _cfg(lr=1e-3, epochs=3), resume=True)
    assert (res.status, res.epochs_run, res.resumed_from_epoch, res.already_finished) == ("ok", 3, 2, False)
    assert [h["lr"] for h in read_jsonl(run / "history.jsonl")] == [1e-2, 1e-2, 1e-3]
    assert "stopped_earlier" not in read_json(run / "run.json")["result"]
