"""train-classifier on a tiny synthesized ESC-50-layout dataset."""

from __future__ import annotations

import numpy as np
import pytest
from factories.classifier import tiny_classifier_config, tone_noise_dataset

from auralens.audio import write
from auralens.encoders.base import EXTRACTORS
from auralens.encoders.train_classifier import train_classifier
from auralens.io import read_json

_dataset = tone_noise_dataset
_tiny_cfg = tiny_classifier_config


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    _dataset(root)
    return root


def test_train_classifier_learns_saves_and_reloads(data, tmp_path) -> None:
    out = tmp_path / "clf"
    result = train_classifier(data, out, _tiny_cfg())
    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0], losses
    assert result["best_val_accuracy"] >= 0.75  # two easy classes, 8 validation clips
    assert result["classes"] == ["hum", "hiss"] and result["val_fold"] == 2
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "run.json",
                 "history.json"):
        assert (out / name).exists(), name
    assert read_json(out / "run.json")["result"]["best_epoch"] == result["best_epoch"]
    ext = EXTRACTORS.build(f"{out}@layer=patch")
    assert ext.labels == ["hum", "hiss"]
    assert ext.embed(np.zeros(9600, np.float32)).shape == (2 * 4, 32)  # 2 freq × 4 time patches
    same = EXTRACTORS.build(f"classifier:{out}@layer=1")
    assert same.name.startswith("classifier") and same.num_layers() == 1
    # the saved best checkpoint reproduces its validation accuracy
    import soundfile as sf

    val = sorted((data / "audio").glob("2-*.wav"))
    probs = ext.classify([sf.read(p, dtype="float32")[0] for p in val])
    truth = [0 if p.stem.endswith("-0") else 1 for p in val]
    assert np.mean(probs.argmax(1) == truth) == pytest.approx(result["best_val_accuracy"])


def test_train_classifier_resumes(data, tmp_path) -> None:
    out = tmp_path / "clf"
    first = train_classifier(data, out, _tiny_cfg(epochs=2, augment=True))
    assert first["epochs_run"] == 2
    more = train_classifier(data, out, _tiny_cfg(epochs=3, augment=True))
    assert more["epochs_run"] == 3 and [h["epoch"] for h in more["history"]] == [1, 2, 3]
    with pytest.raises(Exception, match=r"different settings or data \(hidden_size 32 → 64\)"):
        train_classifier(data, out, _tiny_cfg(epochs=4, hidden_size=64, augment=True))


def test_committed_classifier_preset() -> None:
    from auralens.encoders.ast import CLASSIFIER_DIR

    weights = CLASSIFIER_DIR / "model.safetensors"
    assert weights.exists() and weights.stat().st_size <= 10 * 1024 * 1024
    card = (CLASSIFIER_DIR / "MODEL_CARD.md").read_text()
    assert "train-classifier" in card and "Validation accuracy" in card
    ext = EXTRACTORS.build("classifier@layer=patch")
    assert ext.name == "classifier" and len(ext.labels) == 10
    assert ext.embed(np.zeros(80000, np.float32)).shape == (ext.freq_patches * ext.time_patches,
                                                             ext.dim)
    assert EXTRACTORS.build().name == "classifier"  # the registry default


@pytest.mark.shared_data
def test_committed_classifier_beats_chance_on_esc10(esc10) -> None:
    from auralens.audio import load
    from auralens.data.esc50 import load_esc50

    clips = load_esc50(esc10, folds=[4])[::4]  # 20 validation clips, 2 per class
    ext = EXTRACTORS.build("classifier")
    probs = ext.classify([load(c.path, 16000) for c in clips])
    acc = np.mean([ext.labels[i] == c.labels[0] for i, c in zip(probs.argmax(1), clips, strict=True)])
    assert acc >= 0.3  # chance is 0.1; the model card reports 0.70 on all 80 clips


def test_resume_with_dropout_equals_an_uninterrupted_run(data, tmp_path) -> None:
    # Dropout draws come from torch's global generator: a resumed run must continue it.
    cfg = dict(dropout=0.3)
    straight = train_classifier(data, tmp_path / "a", _tiny_cfg(epochs=3, **cfg))
    train_classifier(data, tmp_path / "b", _tiny_cfg(epochs=1, **cfg))
    resumed = train_classifier(data, tmp_path / "b", _tiny_cfg(epochs=3, **cfg))
    assert [h["val_loss"] for h in resumed["history"]] == pytest.approx(
        [h["val_loss"] for h in straight["history"]], rel=1e-6)


def test_resume_after_a_kill_between_history_and_state(data, tmp_path) -> None:
    import json

    out = tmp_path / "clf"
    bad = data / "audio" / "1-99-A-0.wav"
    bad.write_bytes(b"not audio")  # one broken clip: listed once per run, not once per resume
    with open(data / "meta" / "esc50.csv", "a") as fh:
        fh.write("1-99-A-0.wav,1,0,hum,True,99,A\n")
    train_classifier(data, out, _tiny_cfg(epochs=2))
    # The history of epoch 3 was written, then the run died before its state was saved.
    history = read_json(out / "history.json")
    history.append({**history[-1], "epoch": 3})
    (out / "history.json").write_text(json.dumps(history))
    more = train_classifier(data, out, _tiny_cfg(epochs=3))
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3] and more["epochs_run"] == 3
    assert len((out / "errors.jsonl").read_text().splitlines()) == 1


def _stop_at(monkeypatch, call: int, exc: BaseException, out=None, seen: list | None = None) -> None:
    """Make the ``call``-th validation (1-based: the end of that epoch) raise ``exc``; with
    ``seen``, record the run.json status under ``out`` at each validation."""
    import auralens.encoders.train_classifier as tc

    real, count = tc._evaluate, {"n": 0}

    def evaluate(model, x, y, batch_size, acc=None):  # noqa: ANN001, ANN202
        count["n"] += 1
        if seen is not None:  # what run.json says while the run trains
            seen.append(read_json(out / "run.json")["result"]["status"])
        if count["n"] == call:
            raise exc
        return real(model, x, y, batch_size, acc)

    monkeypatch.setattr(tc, "_evaluate", evaluate)


def test_interrupted_run_says_so_in_run_json_and_resumes(data, tmp_path, monkeypatch) -> None:
    out = tmp_path / "clf"
    seen: list[str] = []
    _stop_at(monkeypatch, 3, KeyboardInterrupt(), out, seen)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(data, out, _tiny_cfg(epochs=6))
    assert seen == ["running"] * 3
    assert (out / "model.safetensors").exists()  # the best of the two finished epochs …
    res = read_json(out / "run.json")["result"]
    assert res["status"] == "interrupted" and res["epochs_run"] == 2  # … is marked unfinished
    assert res["message"].startswith("interrupted after epoch 2 of 6")
    assert res["best_epoch"] in (1, 2) and read_json(out / "run.json")["config"]["epochs"] == 6
    monkeypatch.undo()
    done = train_classifier(data, out, _tiny_cfg(epochs=6))
    run = read_json(out / "run.json")
    assert run["result"]["status"] == "ok" and run["result"]["epochs_run"] == done["epochs_run"] == 6
    assert run["result"]["resumed_from_epoch"] == 2 and run["result"]["epochs_this_run"] == 4
    assert [h["epoch"] for h in done["history"]] == [1, 2, 3, 4, 5, 6]


def test_failed_run_says_so_in_run_json(data, tmp_path, monkeypatch) -> None:
    out = tmp_path / "clf"
    _stop_at(monkeypatch, 2, RuntimeError("out of memory"))
    with pytest.raises(RuntimeError):
        train_classifier(data, out, _tiny_cfg(epochs=3))
    res = read_json(out / "run.json")["result"]
    assert res["status"] == "failed" and res["epochs_run"] == 1
    assert res["message"] == "RuntimeError: out of memory"


def test_rerun_with_fewer_epochs_is_refused_and_a_no_op_rerun_stays_truthful(data, tmp_path) -> None:
    out = tmp_path / "clf"
    first = train_classifier(data, out, _tiny_cfg(epochs=3))
    before = (out / "run.json").read_text()
    with pytest.raises(Exception, match=r"already trained for 3 epochs, more than epochs 2; pass "
                                        r"--epochs 3 or more to continue it"):
        train_classifier(data, out, _tiny_cfg(epochs=2))
    assert (out / "run.json").read_text() == before  # the refusal changed nothing
    again = train_classifier(data, out, _tiny_cfg(epochs=3))  # nothing left to train
    run = read_json(out / "run.json")
    assert run["config"]["epochs"] == run["result"]["epochs_run"] == again["epochs_run"] == 3
    assert run["result"]["epochs_this_run"] == 0 and run["timings_s"]["train"] == 0
    # the training time of the run that did the work is kept, not replaced by the rerun's
    assert run["result"]["train_seconds"] == first["train_seconds"] > 0


def test_rerun_removes_save_folders_a_killed_save_left(data, tmp_path) -> None:
    """A kill inside _save_model leaves its hidden .save-* folder; the next run removes it
    once its writer is gone (or it is a day old), and leaves one that may still be in use."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()

    def plant(name: str, age: float) -> Path:
        folder = out / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
        then = time.time() - age
        for path in (folder / "model.safetensors", folder):
            os.utime(path, (then, then))
        return folder

    gone = [plant(".save-abc123", 2 * 86400), plant(f".save-{dead}-abcd1234", 120)]
    kept = [plant(".save-def456", 120),  # no pid in its name: it could be a writer's
            plant(f".save-{os.getpid()}-efgh5678", 2 * 3600)]  # its writer is alive
    train_classifier(data, out, _tiny_cfg(epochs=1))  # nothing left to train
    assert not any(p.exists() for p in gone)
    assert all((p / "model.safetensors").exists() for p in kept)


def test_resume_with_other_settings_names_the_differing_keys(data, tmp_path) -> None:
    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(Exception) as err:
        train_classifier(data, out, _tiny_cfg(epochs=2, lr=1e-3, seed=5))
    msg = str(err.value)
    assert "lr 0.003 → 0.001" in msg and "seed 0 → 5" in msg and "hidden_size" not in msg
    assert "only epochs, max_steps, threads may change" in msg and "\n" not in msg
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # other data (a class renamed) is named as such
    csv = data / "meta" / "esc50.csv"
    csv.write_text(csv.read_text().replace(",hiss,", ",fizz,"))
    with pytest.raises(Exception, match=r"the data's classes \(missing now: hiss; new: fizz\)"):
        train_classifier(data, out, _tiny_cfg(epochs=2))


def test_stop_right_after_a_saved_epoch_reports_that_epoch(data, tmp_path, monkeypatch) -> None:
    # Ctrl-C after the state of epoch 2 reached the disk but before the loop noted it.
    import auralens.encoders.train_classifier as tc

    real, calls = tc._save_state, {"n": 0}

    def save_then_stop(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(tc, "_save_state", save_then_stop)
    out = tmp_path / "clf"
    with pytest.raises(KeyboardInterrupt):
        train_classifier(data, out, _tiny_cfg(epochs=4))
    res = read_json(out / "run.json")["result"]
    assert res["status"] == "interrupted" and res["epochs_run"] == 2 and res["steps"] == 4


def _edit_csv(root, old: str, new: str) -> None:
    csv = root / "meta" / "esc50.csv"
    text = csv.read_text()
    assert old in text
    csv.write_text(text.replace(old, new))


def test_resume_on_other_data_or_val_fold_is_refused(data, tmp_path) -> None:
    import shutil

    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # the same classes, one clip moved into the validation fold
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    _edit_csv(moved, "1-00-A-0.wav,1,", "1-00-A-0.wav,2,")
    with pytest.raises(Exception, match=r"the data's clips \(other files, folds or targets\)"):
        train_classifier(moved, out, _tiny_cfg(epochs=2))
    # the same clips and classes, the validation fold renumbered: the default fold moves
    renumbered = tmp_path / "renumbered"
    shutil.copytree(data, renumbered)
    _edit_csv(renumbered, ",2,", ",3,")
    with pytest.raises(Exception, match=r"val_fold 2 → 3; the data's clips"):
        train_classifier(renumbered, out, _tiny_cfg(epochs=2))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # --val-fold naming the default fold is the same run
    again = train_classifier(data, out, _tiny_cfg(epochs=2, val_fold=2))
    assert again["epochs_run"] == 2 and again["val_fold"] == 2


def test_state_without_a_data_fingerprint_resumes_unchecked(data, tmp_path) -> None:
    import json

    import torch

    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    state = torch.load(out / "train_state.pt", weights_only=True)
    saved = json.loads(state["config"])
    saved["cfg"]["val_fold"] = None  # what the option held; no "data" entry
    del saved["cfg"]["reverb"]  # nor reverberant copies
    state["config"] = json.dumps({"cfg": saved["cfg"], "classes": saved["classes"]})
    torch.save(state, out / "train_state.pt")
    _edit_csv(data, "1-00-A-0.wav,1,", "1-00-A-0.wav,2,")  # other data, which it cannot tell
    assert train_classifier(data, out, _tiny_cfg(epochs=2, val_fold=2))["epochs_run"] == 2


@pytest.mark.parametrize("old,new,match", [
    ("1-03-A-3.wav,1,3,hiss", "1-03-A-3.wav,1,3,Hiss",
     r"esc50\.csv: lines 3 and 5 give target 3 two categories \('Hiss' and 'hiss'\)"),
    ("1-00-A-0.wav,1,0,hum", "1-00-A-0.wav,1,1,hum",
     r"esc50\.csv: lines 2 and 4 give category 'hum' two targets \(1 and 0\)"),
])
def test_category_not_matching_its_target_is_refused_before_out_exists(data, tmp_path, old, new,
                                                                       match) -> None:
    _edit_csv(data, old, new)
    out = tmp_path / "clf"
    with pytest.raises(Exception, match=match):
        train_classifier(data, out, _tiny_cfg(epochs=1))
    assert not out.exists()


def test_missing_data_creates_no_out(tmp_path) -> None:
    out = tmp_path / "clf"
    with pytest.raises(Exception, match=r"esc50\.csv: ESC-50 metadata file not found"):
        train_classifier(tmp_path / "nowhere", out, _tiny_cfg(epochs=1))
    assert not out.exists()


def test_unreadable_state_is_a_one_line_error(data, tmp_path) -> None:
    from auralens.errors import AuralensError

    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    state = out / "train_state.pt"
    state.write_bytes(state.read_bytes()[:300])  # truncated by a full disk or a kill
    with pytest.raises(AuralensError) as err:
        train_classifier(data, out, _tiny_cfg(epochs=2))
    assert str(err.value).startswith(f"{state}: unreadable (")
    assert str(err.value).endswith("; use a new --out or delete it") and "\n" not in str(err.value)


def test_save_dtype_is_checked_with_the_other_settings() -> None:
    with pytest.raises(Exception, match=r"save_dtype must be one of \['bfloat16', 'float16', "
                                        r"'float32'\], got 'foo'"):
        _tiny_cfg(save_dtype="foo")
    assert _tiny_cfg(save_dtype="bf16").save_dtype == "bf16"


def test_too_short_clip_is_skipped_saying_so(data, tmp_path) -> None:
    import json

    write(data / "audio" / "1-98-A-0.wav", np.zeros(100, np.float32), 16000)
    with open(data / "meta" / "esc50.csv", "a") as fh:
        fh.write("1-98-A-0.wav,1,0,hum,True,98,A\n")
    out = tmp_path / "clf"
    result = train_classifier(data, out, _tiny_cfg(epochs=1))
    assert result["errors"] == 1
    (entry,) = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert entry["item"] == "1-98-A-0"
    assert entry["error"] == "too short: 100 samples at 16 kHz, needs at least 400 (25 ms)"


def test_max_steps_stop_mid_epoch_resumes_where_it_stopped(data, tmp_path) -> None:
    # 8 training clips, batches of 3: 3 steps per epoch; a one-step warm-up, so the cosine
    # decay covers most steps and would differ if max_steps moved the end of the schedule.
    cfg = dict(epochs=2, batch_size=3, warmup_epochs=0.34, augment=True)
    straight = train_classifier(data, tmp_path / "a", _tiny_cfg(**cfg))
    assert [(h["epoch"], h["step"]) for h in straight["history"]] == [(1, 3), (2, 6)]
    out = tmp_path / "b"
    first = train_classifier(data, out, _tiny_cfg(max_steps=2, **cfg))
    assert first["epochs_run"] == 0 and first["steps"] == 2 and first["history"] == []
    res = read_json(out / "run.json")["result"]
    assert res["epochs_run"] == 0 and res["steps"] == 2
    assert res["message"].startswith("stopped at max_steps 2 after batch 2 of 3 of epoch 1")
    second = train_classifier(data, out, _tiny_cfg(max_steps=4, **cfg))
    assert [(h["epoch"], h["step"]) for h in second["history"]] == [(1, 3)]
    done = train_classifier(data, out, _tiny_cfg(**cfg))
    assert [(h["epoch"], h["step"]) for h in done["history"]] == [(1, 3), (2, 6)]
    for key in ("train_loss", "val_loss"):
        assert [h[key] for h in done["history"]] == pytest.approx(
            [h[key] for h in straight["history"]], rel=1e-5), key


def test_cli_says_when_max_steps_stopped_the_first_epoch(data, tmp_path, capsys) -> None:
    from auralens.cli import main

    args = ["train-classifier", str(data), "--out", str(tmp_path / "clf"), "--hidden-size", "32",
            "--layers", "1", "--heads", "2", "--intermediate-size", "64", "--mels", "32",
            "--max-length", "64", "--batch-size", "3", "--epochs", "1", "--threads", "1"]
    assert main([*args, "--max-steps", "1"]) == 0
    assert capsys.readouterr().out.strip() == ("no epoch finished (1 steps); rerun with the same "
                                               "--out to continue")
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("best val accuracy ")


def test_reverberate_is_the_rooms_impulse_response_cut_to_length() -> None:
    from auralens.data.mix import room_impulse_responses
    from auralens.encoders.train_classifier import clip_room, reverberate

    room = clip_room(0, "1-00-A-0", 1)
    assert room == clip_room(0, "1-00-A-0", 1)  # seeded: the same copy is the same room
    assert room != clip_room(0, "1-00-A-0", 2) and room != clip_room(0, "1-01-A-0", 1)
    assert room != clip_room(1, "1-00-A-0", 1)
    impulse = np.zeros(4000, np.float32)
    impulse[0] = 1.0
    rir = room_impulse_responses(room, 16000)[0]
    out = reverberate(impulse, room)
    assert out.shape == (4000,) and out.dtype == np.float32
    np.testing.assert_allclose(out, rir[:4000], atol=1e-6)


def test_reverberant_copies_join_the_training_set_only(data, tmp_path) -> None:
    from auralens.data.esc50 import load_esc50
    from auralens.encoders import train_classifier as tc
    from auralens.io import ErrorLog

    cfg = _tiny_cfg(epochs=1, reverb=2)
    clips = [c for c in load_esc50(data) if c.fold == 1]
    kept, x, valid = tc._features(clips, cfg, ErrorLog(tmp_path / "e.jsonl"), copies=2)
    assert [c.id for c in kept] == [c.id for c in clips for _ in range(3)]
    assert x.shape == (3 * len(clips), 64, 32) and valid.shape == (3 * len(clips),)
    dry, wet1, wet2 = x[0].astype(np.float32), x[1].astype(np.float32), x[2].astype(np.float32)
    assert np.abs(dry - wet1).mean() > 0.01 and np.abs(wet1 - wet2).mean() > 0.01
    # the same copy again comes from the cache, unchanged
    _, again, _ = tc._features(clips[:1], cfg, ErrorLog(tmp_path / "e2.jsonl"), copies=2)
    np.testing.assert_array_equal(again, x[:3])
    out = tmp_path / "clf"
    result = train_classifier(data, out, cfg)
    run = read_json(out / "run.json")
    assert run["result"]["train_clips"] == 3 * len(clips) and run["result"]["val_clips"] == len(clips)
    assert result["epochs_run"] == 1
    with pytest.raises(Exception, match=r"different settings or data \(reverb 2 → 0\)"):
        train_classifier(data, out, _tiny_cfg(epochs=2))


def test_reverb_copies_must_be_a_whole_number() -> None:
    from auralens.errors import AuralensError

    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(AuralensError, match=rf"^reverb must be a whole number ≥ 0, got {bad!r}$"):
            _tiny_cfg(reverb=bad)
