"""The listening report reads each run's ``renders/run.json`` once (kept on the loaded run), and
judges a damaged one as before: it records nothing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from auralens import audio
from auralens.evaluate.report import _render_identities
from auralens.evaluate.sonify_eval import RunDirError, StaleRendersError, load_run
from auralens.io import write_json
from auralens.sonify.render import checkpoint_sha256

SR = 8000


def _run(root: Path, clips: tuple[str, ...] = ("a", "b", "c"), *, checkpoint: bool = True) -> Path:
    """A rendered run (a stand-in checkpoint file when ``checkpoint``)."""
    rng = np.random.default_rng(0)
    run = root / "run"
    for cid in clips:
        x = (0.3 * rng.standard_normal(SR // 4)).astype(np.float32)
        for version in ("original", "none"):
            audio.write(run / "renders" / version / f"{cid}.wav", x, SR)
    write_json(run / "run.json", {"command": "sonify train", "config": {"gate": "lin"}})
    if checkpoint:
        (run / "best.safetensors").write_bytes(b"weights")
    return run


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every read of a ``renders/run.json``."""
    seen: list[Path] = []
    read_text = Path.read_text

    def counting(self: Path, *args: object, **kw: object) -> str:
        if self.name == "run.json" and self.parent.name == "renders":
            seen.append(self)
        return read_text(self, *args, **kw)

    monkeypatch.setattr(Path, "read_text", counting)
    return seen


def test_a_run_and_its_render_identity_read_renders_run_json_once(tmp_path: Path, reads: list[Path]) -> None:
    run = _run(tmp_path)
    sha = checkpoint_sha256(run / "best.safetensors")
    record = {"command": "sonify render", "status": "ok",
              "config": {"split": "test", "clips": ["a", "b"], "checkpoint_sha256": sha}}
    write_json(run / "renders" / "run.json", record)
    loaded = load_run(run)
    assert loaded.clips == ["a", "b"]  # the clips renders/run.json lists
    assert loaded.renders == record
    assert _render_identities([loaded]) == {"run": sha}
    assert reads == [run / "renders" / "run.json"]


def test_an_unfinished_render_is_told_from_one_read(tmp_path: Path, reads: list[Path]) -> None:
    run = _run(tmp_path)
    write_json(run / "renders" / "run.json", {
        "command": "sonify render", "status": "running",
        "config": {"split": "val", "clips": [], "checkpoint_sha256": checkpoint_sha256(run / "best.safetensors")}})
    with pytest.raises(RunDirError, match=r"renders/run.json says 'running'\); run `auralens sonify "
                                          r"render --run \S+ --split val` to finish it"):
        load_run(run)
    assert len(reads) == 1


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"config": [1]}'])
def test_a_damaged_renders_run_json_records_nothing(tmp_path: Path, damage: str) -> None:
    run = _run(tmp_path, checkpoint=False)
    manifest = run / "renders" / "run.json"
    manifest.write_text(damage, encoding="utf-8")
    loaded = load_run(run)  # no clip list: every rendered clip is scored
    assert loaded.clips == ["a", "b", "c"]
    assert loaded.renders == ({"config": [1]} if damage.startswith('{"') else {})
    assert _render_identities([loaded]) == {}
    # with a checkpoint it is judged as `sonify render` judges renders that record none
    (run / "best.safetensors").write_bytes(b"weights")
    written = manifest.stat().st_mtime_ns
    os.utime(run / "best.safetensors", ns=(written - 10**9, written - 10**9))
    assert load_run(run).clips == ["a", "b", "c"]
    os.utime(run / "best.safetensors", ns=(written + 10**9, written + 10**9))
    with pytest.raises(StaleRendersError, match="was written after these renders"):
        load_run(run)


def test_a_run_without_renders_run_json_has_no_record(tmp_path: Path) -> None:
    run = _run(tmp_path, checkpoint=False)
    loaded = load_run(run)
    assert loaded.renders is None and loaded.clips == ["a", "b", "c"]
    (run / "best.safetensors").write_bytes(b"weights")
    with pytest.raises(StaleRendersError, match="holds no run.json"):
        load_run(run)
