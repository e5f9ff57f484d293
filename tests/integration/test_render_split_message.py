"""render_split's refusal of renders of an unknown split reads as one plain sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from auralens.sonify.render import RenderError, render_split
from auralens.sonify.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_render_names_an_unknown_split_plainly(sonify_prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(sonify_prep, run, TrainConfig(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False))
    legacy = run / "renders" / "minmax"  # renders without a run.json: the split is unknown
    legacy.mkdir(parents=True)
    (legacy / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(RenderError) as exc:
        render_split(run, "test", ["minmax"], limit=1)
    msg = str(exc.value)
    assert "holds renders of an unknown split; pass --overwrite" in msg
    assert "the another" not in msg and "\n" not in msg
