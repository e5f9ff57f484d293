"""`separate train` lists each ESC-50 folder once at start-up: a clip that its csv lists but
whose audio file is missing is warned about once per run, whatever reads the folds (the data
check, the data signature, the class slots, the dry pools, the recipe mixers, dynamic_data)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from factories.separate import MICRO, fuss_manifest_folder

from auralens.io import read_jsonl
from auralens.scene.separate.train import TrainConfig, train

SR = 16000
MISSING = "1-999999-A-0.wav"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A procedural ESC-50-layout library (folds 1 and 2) whose csv also lists ``MISSING``,
    a fold-1 clip of the first row's class with no audio file."""
    from auralens.data.synth import synthesize

    root = synthesize(tmp_path_factory.mktemp("lib") / "lib", clips_per_class=2, seed=3,
                      sample_rate=SR, duration=1.0)
    csv = root / "meta" / "esc50.csv"
    header, first = csv.read_text().splitlines()[:2]
    cols = header.split(",")
    row = dict(zip(cols, first.split(","), strict=True))
    row.update(filename=MISSING, fold="1", src_file="999999", take="A")
    with open(csv, "a") as fh:
        fh.write(",".join(row[c] for c in cols) + "\n")
    assert not (root / "audio" / MISSING).exists()
    return root


def _cfg(**kw: object) -> TrainConfig:
    base = dict(preset="tiny", model=dict(MICRO), steps=2, steps_per_epoch=2, batch_size=2,
                crop_seconds=0.4, n_val=2, val_seconds=0.5, train_folds=[1], val_folds=[2])
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def _warnings_naming(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and text in r.getMessage()]


@pytest.mark.parametrize("options", [
    {},
    {"assign": "classes", "model": {**MICRO, "num_sources": 2}, "max_sources": 2},
    {"recipe": "fuss", "rooms": 0, "recipe_seconds": 1.0},
], ids=["dry", "classes", "recipe-fuss"])
def test_a_missing_esc50_clip_is_warned_about_once(lib, tmp_path, caplog, options):
    caplog.set_level(logging.WARNING)
    result = train(lib, tmp_path / "run", _cfg(**options))
    assert result["step"] == 2
    assert [h["step"] for h in read_jsonl(tmp_path / "run" / "history.jsonl")] == [2]
    assert len(_warnings_naming(caplog, MISSING)) == 1, caplog.text
    assert len(_warnings_naming(caplog, "listed audio file(s) missing")) == 1, caplog.text


def test_a_missing_dynamic_data_clip_is_warned_about_once(lib, tmp_path, caplog):
    fuss = fuss_manifest_folder(tmp_path / "fuss", {"train": 2, "validation": 2})
    caplog.set_level(logging.WARNING)
    cfg = _cfg(dynamic_data=str(lib))
    cfg.val_folds = TrainConfig().val_folds  # FUSS data leaves val_folds unused: the default
    result = train(fuss, tmp_path / "run", cfg)
    assert result["step"] == 2
    assert len(_warnings_naming(caplog, MISSING)) == 1, caplog.text
    assert len(_warnings_naming(caplog, "listed audio file(s) missing")) == 1, caplog.text
