"""The Rate tab's wiring in the built gradio app: the handlers its events call, called directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from auralens.ui_app.core import UISettings


def _make_run(root: Path) -> None:
    run = root / "r1"
    (run / "run.json").parent.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"encoder": "ast:tiny", "layer": 6,
                                                         "codec": "mel", "gate": "linear"}}))
    (run / "best.safetensors").write_bytes(b"x")
    t = np.arange(4000) / 8000
    for sub in ("original", "ceiling", "raw"):
        (run / "renders" / sub).mkdir(parents=True)
        for clip in ("c1", "c2"):
            sf.write(run / "renders" / sub / f"{clip}.wav",
                     (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("gradio")
    from auralens.ui_app.app import build_app

    base = tmp_path_factory.mktemp("ui")
    _make_run(base / "runs")
    (base / "uploads").mkdir()
    settings = UISettings(runs_dir=base / "runs", work_root=base / "work",
                          upload_roots=[base / "uploads"])
    return build_app(settings), settings


def _handler(demo: Any, event: str, inputs: list[str]) -> Any:
    """The function behind ``event`` whose inputs have the given elem_ids."""
    for fn in demo.fns.values():
        if (any(name == event for _, name in fn.targets)
                and [getattr(c, "elem_id", None) for c in fn.inputs][:len(inputs)] == inputs):
            return fn
    raise AssertionError(f"no {event} handler on {inputs}")


def _by_id(fn: Any, values: list[Any]) -> dict[str, Any]:
    return {c.elem_id: v for c, v in zip(fn.outputs, values, strict=True) if c.elem_id}


def _value(update: Any) -> Any:
    return update.get("value") if isinstance(update, dict) else update


def test_changing_the_clip_or_variant_clears_the_loaded_players(app: Any) -> None:
    demo, _ = app
    load = _handler(demo, "click", ["rate-run", "rate-clip", "rate-post"])
    loaded = _by_id(load, load.fn("r1", "c1", "raw"))
    assert loaded["rate-original"] and loaded["rate-sonified"]
    for picker, value in (("rate-clip", "c2"), ("rate-post", "ceiling")):
        change = _handler(demo, "change", [picker])
        out = _by_id(change, change.fn(value))
        # saving rates the picked clip: the previous clip must not keep playing
        assert _value(out["rate-original"]) is None and _value(out["rate-sonified"]) is None
        assert out["rate-status"] == ""


def test_changing_the_run_puts_its_summary_beside_it_not_in_the_status(app: Any) -> None:
    demo, _ = app
    change = _handler(demo, "change", ["rate-run"])
    out = _by_id(change, change.fn("r1"))
    assert "**Run r1**" in out["rate-summary"] and "linear" in out["rate-summary"]
    assert out["rate-status"] == ""
    assert _value(out["rate-original"]) is None and _value(out["rate-sonified"]) is None
    assert _value(out["rate-clip"]) == "c1"


def test_an_unreadable_ratings_file_is_shown_at_page_load(app: Any) -> None:
    import auralens.evaluate.ratings  # noqa: F401 - rate.* loads it on demand; it must import
    demo, settings = app
    settings.ratings_path.write_bytes(b"timestamp,rater,run,version,clip,visual,audio,comment\n"
                                      b"t,\xff,r1,r1/raw,c1,3,3,\n")
    try:
        page_load = _handler(demo, "load", [])
        out = _by_id(page_load, page_load.fn())
    finally:
        settings.ratings_path.unlink()
    assert out["rate-aggregate"].startswith("could not read the ratings:")
