"""`separate train` inputs: unreadable clips are skipped and listed, --out must be a run of
separate train (or new/empty), ESC-50 train and validation folds must not overlap, and a
model config that differs on resume or --init names the --set options that match."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from factories.separate import MICRO, fuss_manifest_folder

from auralens.cli import main
from auralens.errors import CheckpointMismatchError
from auralens.io import read_json, read_jsonl, write_run_json
from auralens.scene.separate.train import TrainConfig, TrainError, train

SR = 16000

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: `--set` options for the micro network and a two-step run on folds 1 (train) and 2 (val).
MICRO_SETS = [x for k, v in MICRO.items() for x in ("--set", f"model.{k}={v}")]
QUICK = ["--steps", "2", "--batch-size", "2", "--crop", "0.4", "--set", "steps_per_epoch=2",
         "--set", "n_val=2", "--set", "val_seconds=0.5"]
FOLDS = ["--set", "train_folds=[1]", "--set", "val_folds=[2]"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A procedural ESC-50-layout library: 11 classes, one clip per class in folds 1 and 2."""
    from auralens.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("lib") / "lib", clips_per_class=2, seed=3,
                      sample_rate=SR, duration=1.0)


def _broken_copy(lib: Path, dest: Path, names: list[str]) -> Path:
    """A copy of ``lib`` with the clips ``names`` replaced by junk bytes."""
    shutil.copytree(lib, dest)
    for name in names:
        (dest / "audio" / name).write_bytes(b"not audio at all " * 64)
    return dest


def _train_cli(data: Path, out: Path, *extra: str) -> int:
    return main(["separate", "train", str(data), "--out", str(out), *QUICK, *FOLDS, *MICRO_SETS, *extra])


def _cfg(**kw: object) -> TrainConfig:
    base = dict(preset="tiny", model=dict(MICRO), steps=2, steps_per_epoch=2, batch_size=2,
                crop_seconds=0.4, n_val=2, val_seconds=0.5, train_folds=[1], val_folds=[2])
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- unreadable clips


def test_corrupt_clip_is_skipped_listed_and_reported_again_on_resume(lib, tmp_path, capsys):
    bad = "1-100000-A-0.wav"
    data = _broken_copy(lib, tmp_path / "bad", [bad])
    out = tmp_path / "run"
    assert _train_cli(data, out) == 0
    err = capsys.readouterr().err
    assert "error:" not in err
    assert str(data / "audio" / bad) in err  # the skipped clip is named
    run = read_json(out / "run.json")
    assert [Path(s["path"]).name for s in run["skipped"]] == [bad]
    assert "unreadable or corrupt audio" in run["skipped"][0]["error"]
    assert any("1 unreadable clip(s) skipped" in n for n in run["notes"])
    assert [Path(e["path"]).name for e in read_jsonl(out / "errors.jsonl")] == [bad]
    assert (out / "best.safetensors").exists()
    # a resume reads the decoded pool from the cache and lists the skipped clip once again
    assert main(["separate", "train", str(data), "--out", str(out), *QUICK[2:], "--steps", "4",
                 *FOLDS, *MICRO_SETS]) == 0
    assert [h["step"] for h in read_jsonl(out / "history.jsonl")] == [2, 4]
    assert [Path(e["path"]).name for e in read_jsonl(out / "errors.jsonl")] == [bad]
    assert [Path(s["path"]).name for s in read_json(out / "run.json")["skipped"]] == [bad]
    assert str(data / "audio" / bad) in capsys.readouterr().err


def test_no_readable_clip_fails_in_one_line_and_leaves_no_run_folder(lib, tmp_path, capsys):
    fold2 = sorted(p.name for p in (lib / "audio").glob("2-*.wav"))
    data = _broken_copy(lib, tmp_path / "bad", fold2)
    out = tmp_path / "runs" / "bad1"
    assert _train_cli(data, out) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {data}: none of the {len(fold2)} clips in folds [2] is readable")
    assert not out.exists()
    # the same through the API, into a folder of a parent that does not exist yet
    with pytest.raises(TrainError, match=r"none of the \d+ clips in folds \[2\] is readable"):
        train(data, tmp_path / "r2", _cfg())
    assert not (tmp_path / "r2").exists()


def test_class_slot_without_a_readable_clip_is_refused(lib, tmp_path):
    data = _broken_copy(lib, tmp_path / "bad", ["1-100000-A-0.wav"])  # fold 1's only siren
    with pytest.raises(TrainError, match=r"no readable clip of class\(es\) \['siren'\] in train_folds \[1\]"):
        train(data, tmp_path / "r", _cfg(assign="classes"))
    assert not (tmp_path / "r").exists()


def test_fuss_mixture_with_an_unreadable_source_is_skipped(tmp_path, caplog):
    root = fuss_manifest_folder(tmp_path / "fuss", {"train": 3, "validation": 2})
    broken = root / "train" / "train1_sources" / "s1.wav"
    broken.write_bytes(b"junk" * 100)
    cfg = _cfg()
    cfg.train_folds, cfg.val_folds = TrainConfig().train_folds, TrainConfig().val_folds
    train(root, tmp_path / "run", cfg)
    assert [e["path"] for e in read_jsonl(tmp_path / "run" / "errors.jsonl")] == [str(broken)]
    assert read_json(tmp_path / "run" / "run.json")["skipped"][0]["item"] == "train1"
    assert str(broken) in caplog.text



def test_fuss_manifest_is_read_once_per_start(tmp_path, monkeypatch):
    import auralens.types

    root = fuss_manifest_folder(tmp_path / "fuss", {"train": 3, "validation": 2})
    reads: list[Path] = []
    load_scenes = auralens.types.load_scenes

    def counted(path: Path):  # noqa: ANN202
        reads.append(Path(path))
        return load_scenes(path)

    monkeypatch.setattr(auralens.types, "load_scenes", counted)
    cfg = _cfg()
    cfg.train_folds, cfg.val_folds = TrainConfig().train_folds, TrainConfig().val_folds
    train(root, tmp_path / "run", cfg)  # the data check, its signature and the samplers
    assert reads == [root / "manifest.jsonl"]


# ----------------------------------------------------------------------------- --out


def test_out_holding_another_commands_output_or_user_files_is_refused(lib, tmp_path, capsys):
    evald = tmp_path / "eval"
    write_run_json(evald, command="separate eval", config={"separator": "oracle"})
    before = (evald / "run.json").read_bytes()
    assert _train_cli(lib, evald) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {evald}: holds the output of 'separate eval', not of separate train; "
                   "choose an empty or new --out")
    assert (evald / "run.json").read_bytes() == before
    assert sorted(p.name for p in evald.iterdir()) == ["run.json"]

    audio = tmp_path / "my_audio"
    audio.mkdir()
    shutil.copy(lib / "audio" / "1-100000-A-0.wav", audio / "take1.wav")
    with pytest.raises(TrainError, match=r"my_audio: holds files that separate train does not write "
                                         r"\(take1\.wav\); choose an empty or new --out"):
        train(lib, audio, _cfg())
    assert sorted(p.name for p in audio.iterdir()) == ["take1.wav"]


def test_resume_into_a_run_folder_still_works(lib, tmp_path):
    out = tmp_path / "run"
    (out / ".DS_Store").parent.mkdir()
    (out / ".DS_Store").write_bytes(b"x")  # a file browser's hidden file is not the user's data
    train(lib, out, _cfg(keep=True, steps_per_epoch=1))
    assert train(lib, out, _cfg(keep=True, steps_per_epoch=1, steps=3))["step"] == 3
    assert [h["step"] for h in read_jsonl(out / "history.jsonl")] == [1, 2, 3]
    assert read_json(out / "run.json")["command"] == "separate train"
    (out / "notes.txt").write_text("mine")  # a file training does not write: refused from now on
    with pytest.raises(TrainError, match=r"holds files that separate train does not write \(notes\.txt\)"):
        train(lib, out, _cfg(keep=True, steps_per_epoch=1, steps=4))


# ----------------------------------------------------------------------------- folds


def test_overlapping_train_and_validation_folds_are_refused(lib, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["separate", "train", str(lib), "--out", str(out), *QUICK, *MICRO_SETS,
                 "--set", "train_folds=[1,2]", "--set", "val_folds=[1]"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: train_folds [1, 2] and val_folds [1] share fold(s) [1]")
    assert not out.exists()
    with pytest.raises(TrainError, match=r"share fold\(s\) \[2\]"):
        train(lib, out, _cfg(train_folds=[1, 2], val_folds=[2]))


# ----------------------------------------------------------------------------- model settings


def test_resume_without_the_model_set_names_the_option(lib, tmp_path, capsys):
    out = tmp_path / "t1"
    repeats1 = [*MICRO_SETS, "--set", "model.repeats=1"]
    assert main(["separate", "train", str(lib), "--out", str(out), *QUICK, *FOLDS, *repeats1]) == 0
    # the resume leaves out --set model.repeats=1 (MICRO has repeats 2)
    assert main(["separate", "train", str(lib), "--out", str(out), *QUICK[2:], "--steps", "4",
                 *FOLDS, *MICRO_SETS]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {out}: resumed with other model settings (model.repeats 1 → 2); "
                   "give --set model.repeats=1 to resume, or another --out")
    with pytest.raises(CheckpointMismatchError, match=r"model\.bottleneck 16 → 8; model\.repeats 1 → 2\); "
                                                      r"give --set model\.bottleneck=16 --set model\.repeats=1"):
        train(lib, out, _cfg(steps=4, model={**MICRO, "bottleneck": 8}))
    # with the option the run goes on
    assert main(["separate", "train", str(lib), "--out", str(out), *QUICK[2:], "--steps", "4",
                 *FOLDS, *repeats1]) == 0
    assert [h["step"] for h in read_jsonl(out / "history.jsonl")] == [2, 4]


def test_init_from_another_size_names_the_option(lib, tmp_path, capsys):
    import torch

    from auralens.scene.separate.tdcnpp import TDCNpp, preset, save_checkpoint

    torch.manual_seed(0)
    grown = save_checkpoint(tmp_path / "g.safetensors", TDCNpp(preset("tiny", **{**MICRO, "repeats": 3})))
    out = tmp_path / "r"
    assert _train_cli(lib, out, "--init", str(grown)) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {grown}: config mismatch with this run's model (model.repeats 3 in the "
                   "checkpoint, 2 here); give --set model.repeats=3 to start from it")
    assert not out.exists()
    assert _train_cli(lib, out, "--init", str(grown), "--set", "model.repeats=3") == 0
