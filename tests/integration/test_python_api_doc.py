"""docs/python-api.md stays true: its ``python`` blocks run, in order, in one namespace.

Blocks fenced as ```` ```python no-run ```` (hub models) are shown but not executed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python-api.md"

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(info string, code)`` of every fenced block, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in _FENCE.finditer(text)]


def runnable(blocks: list[tuple[str, str]]) -> list[str]:
    """The code of the ``python`` blocks that are not marked ``no-run``."""
    return [code for info, code in blocks
            if info.split()[:1] == ["python"] and "no-run" not in info.split()[1:]]


def test_block_extraction_skips_no_run() -> None:
    text = "```python\na = 1\n```\n\n```python no-run\nb = 2\n```\n```bash\nc\n```\n"
    assert runnable(code_blocks(text)) == ["a = 1\n"]


def test_python_api_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auralens import audio
    from auralens.data.synth import SYNTH_CLASSES
    from auralens.io import read_json
    from auralens.scene.caption.base import readable_label

    blocks = code_blocks(DOC.read_text(encoding="utf-8"))
    code = runnable(blocks)
    assert len(code) >= 6 and len(code) < sum(info.startswith("python") for info, _ in blocks)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("AURALENS_CACHE", str(tmp_path / "cache"))
    ns: dict[str, object] = {"__name__": "python_api_doc"}
    for k, block in enumerate(code):
        try:
            exec(compile(block, f"{DOC.name}[python block {k}]", "exec"), ns)  # noqa: S102
        except Exception as exc:
            raise AssertionError(f"python block {k} of {DOC} failed: {exc!r}\n{block}") from exc

    # 1. library and mixtures
    lib = work / "library"
    assert len(list((lib / "audio").glob("*.wav"))) == 15 and (lib / "meta" / "esc50.csv").is_file()
    assert Path(ns["mixture"]).is_file()

    # 2. sonify: every job folder has run.json; the render keeps the clip's duration
    for folder in ("library", "mixtures", "prep", "run", "separated", "scene", "scene-cot"):
        assert (work / folder / "run.json").is_file(), folder
    assert ns["prep"].n_ok == 15 and ns["result"].status == "ok"
    wave, sr = audio.load_sr(work / "layer-patch.wav")
    codec_sr = ns["loaded"].codec.sample_rate
    assert sr == codec_sr == 22050
    assert wave.shape == (int(round(2.0 * codec_sr)),) and np.all(np.isfinite(wave))

    # 3. separation: M rows that sum to the mixture
    sep, mix, est = ns["separator"], ns["mix"], ns["estimates"]
    assert est.shape == (sep.num_sources, mix.shape[0])
    assert np.max(np.abs(est.sum(0) - mix)) < 1e-4
    summary = ns["summary"]
    files = sorted((work / "separated" / "sources").glob("source*.wav"))
    assert len(files) == summary["n_estimates"] == sep.num_sources
    assert summary["max_abs_sum_error"] < 1e-4
    assert len(read_json(work / "separated" / "activity.json")["estimates"]) == sep.num_sources

    # 4. imagine: a description from the kept sources; the image stage skipped, not faked
    scene = ns["scene"]
    assert scene.description and len(scene.captions) == len(scene.kept) >= 1
    assert "image" in scene.skipped and scene.image is None
    assert (work / "scene" / "description.txt").is_file() and (work / "scene" / "report.html").is_file()
    scene_cot = ns["scene_cot"]
    assert scene_cot.reasoning and not (work / "scene-cot" / "report.html").exists()
    known = {readable_label(c) for c in SYNTH_CLASSES}  # the classifier-synth captioner
    assert scene_cot.labels and all(label in known for label in scene_cot.labels)

    # 5. metrics: a set against itself is ~0; the folder functions agree with the array ones
    assert ns["same"] < 1e-6 and ns["fad_result"]["fad"] > 0
    assert ns["fad_result"]["fad"] == pytest.approx(ns["fad"](ns["reference"], ns["evaluated"]), rel=1e-6)
    assert ns["kad_result"]["kad"] == pytest.approx(ns["kad_arrays"].value, rel=1e-6)
    assert set(ns["kad_result"]["per_file"]) == {f"source{k}.wav" for k in range(sep.num_sources)}
    written = read_json(work / "metrics-kad" / "metrics.json")
    assert written["kad"] == pytest.approx(ns["kad_result"]["kad"]) and (work / "metrics-kad" / "run.json").is_file()
    fad = ns["fad"]
    assert fad(ns["reference"], ns["reference"]) < 1e-6
    assert fad(ns["reference"], ns["evaluated"]) > 0
    assert abs(ns["kad"](ns["reference"], ns["reference"]).value) < 0.5
    assert np.isfinite(ns["metrics"]["mr_stft"])

    # 6. protocols: the documented shapes
    extractor, codec = ns["extractor"], ns["codec"]
    assert ns["embedding"].ndim == 2 and ns["embedding"].shape[1] == extractor.dim
    assert ns["latent"].shape[0] == codec.latent_dim == 80
    assert abs(ns["latent"].shape[1] - codec.num_frames(int(2.0 * codec.sample_rate))) <= 1
    assert ns["decoded"].ndim == 1
    assert ns["sources"].shape == est.shape
    assert isinstance(ns["caption"], str) and ns["caption"]
    assert ns["description"].text
