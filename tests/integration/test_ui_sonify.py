"""The Sonify and Rate handlers on a really trained run (weight-free toy extractor/codec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from factories.sonify import write_library

from auralens.sonify.prepare import prepare
from auralens.sonify.render import render_split
from auralens.sonify.train import TrainConfig, train
from auralens.ui_app import core, rate, sonify
from auralens.ui_app.core import UISettings


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = write_library(tmp_path_factory.mktemp("lib"), per_class=6, seconds=1.0)
    prep = tmp_path_factory.mktemp("prep")
    prepare(lib, "toyband", "toyband", 1, prep, duration=1.0, batch_size=6,
            cache_dir=tmp_path_factory.mktemp("cache"))
    runs = tmp_path_factory.mktemp("runs")
    train(prep, runs / "toy-lin", TrainConfig(gate="lin", lr=1e-2, epochs=6, batch_size=4))
    render_split(runs / "toy-lin", "test", post=["minmax", "none"])
    return runs


@pytest.fixture
def settings(runs_dir: Path, tmp_path: Path) -> UISettings:
    (tmp_path / "uploads").mkdir()
    return UISettings(runs_dir=runs_dir, work_root=tmp_path / "work",
                      ratings_path=tmp_path / "ratings.csv", upload_roots=[tmp_path / "uploads"])


def test_discovers_the_trained_run(settings: UISettings) -> None:
    runs = core.discover_runs(settings.runs_dir)
    assert list(runs) == ["toy-lin"]
    info = runs["toy-lin"]
    assert info.encoder == "toyband" and info.codec == "toyband" and info.layer == "1"
    assert info.gate != "?"
    assert info.posts == ["minmax", "none"] and info.has_ceiling
    assert len(info.clips) >= 2


def test_test_clip_view(settings: UISettings) -> None:
    info = core.discover_runs(settings.runs_dir)["toy-lin"]
    view = sonify.sonify_clip("toy-lin", info.clips[0], "minmax", None, settings)
    assert view.ok, view.status
    ref, _ = sf.read(view.original)
    est, _ = sf.read(view.sonified)
    assert ref.shape == est.shape
    assert -1.0 <= view.metrics["env_corr"] <= 1.0
    assert {p.name for p, _ in view.plots} == {"waveforms.png", "spectrograms.png"}


def test_upload_is_rendered_through_the_gate(settings: UISettings) -> None:
    sr = 11025  # not the codec's rate: the rendition must come back at the upload's rate
    t = np.arange(int(0.8 * sr)) / sr
    path = settings.upload_roots[0] / "chirp.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32), sr)
    view = sonify.sonify_clip("toy-lin", sonify.UPLOAD_CHOICE, "minmax", str(path), settings)
    assert view.ok, view.status
    out, out_sr = sf.read(view.sonified)
    assert out_sr == sr and out.shape == (len(t),) and np.all(np.isfinite(out))
    assert "si_sdr" in view.metrics


def test_upload_longer_than_the_window_is_cut_and_said(settings: UISettings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from factories.sonify import ToyExtractor

    monkeypatch.setattr(ToyExtractor, "max_duration", 0.5)  # as AST's 5.12 s input window
    sr = 8000
    t = np.arange(int(1.5 * sr)) / sr
    path = settings.upload_roots[0] / "long.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    view = sonify.sonify_clip("toy-lin", sonify.UPLOAD_CHOICE, "minmax", str(path), settings)
    assert view.ok, view.status
    assert "only the first 0.50 s of the 1.50 s upload were sonified (the model's input window)" in view.status
    ref, _ = sf.read(view.original)
    est, _ = sf.read(view.sonified)
    assert ref.shape == est.shape == (sr // 2,)
    assert np.allclose(ref, 0.3 * np.sin(2 * np.pi * 440 * t[: sr // 2]), atol=1e-4)


def test_rate_the_trained_run(settings: UISettings) -> None:
    runs = core.discover_runs(settings.runs_dir)
    clip = runs["toy-lin"].clips[0]
    rate.save("toy-lin", clip, "minmax", 2, 4, "r1", "", settings, runs)
    rate.save("toy-lin", clip, "minmax", 4, 4, "r2", "", settings, runs)
    table = rate.aggregate_md(settings)
    row = next(ln for ln in table.splitlines() if "toy-lin/minmax" in ln)
    assert "3.00 ± 1.41" in row and "4.00 ± 0.00" in row


def test_renders_of_a_run_trained_again_are_flagged_and_not_rated(runs_dir: Path,
                                                                    tmp_path: Path) -> None:
    import json
    import shutil

    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    runs = tmp_path / "runs"
    shutil.copytree(runs_dir / "toy-lin", runs / "toy-lin")
    prep = json.loads((runs / "toy-lin" / "run.json").read_text())["config"]["prepared"]
    (tmp_path / "uploads").mkdir()
    settings = UISettings(runs_dir=runs, work_root=tmp_path / "work",
                          ratings_path=tmp_path / "ratings.csv", upload_roots=[tmp_path / "uploads"])
    found = core.discover_runs(runs)
    clip = found["toy-lin"].clips[0]
    assert "warning" not in sonify.sonify_clip("toy-lin", clip, "minmax", None, settings).status
    # trained again in place: best.safetensors changes, renders/ stays
    train(prep, runs / "toy-lin", TrainConfig(gate="lin", lr=5e-2, epochs=3, batch_size=4),
          overwrite=True)
    assert (runs / "toy-lin" / "renders" / "minmax" / f"{clip}.wav").is_file()
    view = sonify.sonify_clip("toy-lin", clip, "minmax", None, settings)
    assert view.ok and "earlier checkpoint" in view.status
    with pytest.raises(core.UIError, match="not saved: run toy-lin: these renders were made"):
        rate.save("toy-lin", clip, "minmax", 3, 3, "ann", "", settings, found)
    assert not settings.ratings_path.exists()
    render_split(runs / "toy-lin", "test", post=["minmax"])  # rendered again: current
    assert "warning" not in sonify.sonify_clip("toy-lin", clip, "minmax", None, settings).status
    assert rate.save("toy-lin", clip, "minmax", 3, 3, "ann", "", settings, found).startswith("saved:")
