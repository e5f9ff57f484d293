"""``imagine``: each input check or read runs once, and bad config entries fail in one line.

Offline only: a hand-written manifest, an audio LLM on a server that is never reached, and
configs that fail before any model loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auralens.cli import main
from auralens.scene.pipeline import ImagineConfig, ImagineError, Stages, imagine_batch

NO_SERVER = "base_url=http://127.0.0.1:9/v1,retries=0"


def _manifest_folder(root: Path, noise: np.ndarray) -> Path:
    from auralens.audio import write

    root.mkdir()
    write(root / "a.wav", noise, 16000)
    (root / "manifest.jsonl").write_text(json.dumps(
        {"id": "eval/a", "mixture": "a.wav", "split": "eval",
         "sources": [{"path": "a.wav", "label": "rain"}]}) + "\n")
    return root


def test_a_folders_manifest_is_read_once(tmp_path: Path, noise: np.ndarray,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import auralens.types
    from auralens.scene.pipeline import _load_scenes

    root = _manifest_folder(tmp_path / "data", noise)
    reads: list[Path] = []
    load_scenes = auralens.types.load_scenes

    def counting(path, **kw):
        reads.append(Path(path))
        return load_scenes(path, **kw)

    monkeypatch.setattr(auralens.types, "load_scenes", counting)
    records = _load_scenes(root, "eval")
    assert [r.id for r in records] == ["eval/a"] and records[0].mixture == root / "a.wav"
    assert records[0].sources[0].path == root / "a.wav"
    assert reads == [root / "manifest.jsonl"]
    reads.clear()
    with pytest.raises(ImagineError) as err:  # a split it lacks: refused, still one read
        imagine_batch(root, tmp_path / "out", {"separator": "nmf"}, split="train")
    assert str(err.value) == f"{root}: no mixture in split 'train' (--split); splits found: eval"
    assert reads == [root / "manifest.jsonl"]


def test_a_bad_line_of_a_folders_manifest_names_the_file_and_line(tmp_path: Path,
                                                                 noise: np.ndarray) -> None:
    from auralens.data import DatasetError
    from auralens.scene.pipeline import _load_scenes

    root = _manifest_folder(tmp_path / "data", noise)
    with (root / "manifest.jsonl").open("a") as f:
        f.write('{"id": "eval/a", "mixture": "a.wav", "sources": []}\n')
    with pytest.raises(DatasetError, match=r"manifest\.jsonl line 2: id 'eval/a' repeats line 1"):
        _load_scenes(root, None)


def test_the_audio_llm_checks_the_wave_once(sine: np.ndarray,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import auralens.scene.allm
    import auralens.scene.caption.openai_audio as openai_audio
    from auralens.errors import AuralensError
    from auralens.scene.allm import load_audio_llm
    from auralens.scene.caption.base import mono_wave

    allm = load_audio_llm(f"openai-audio:served@{NO_SERVER}")
    monkeypatch.setattr(allm.lm.client, "chat", lambda messages, **gen: "Rain on a tin roof.")
    checks: list[str] = []

    def counting(wave, name):
        checks.append(name)
        return mono_wave(wave, name)

    monkeypatch.setattr(openai_audio, "mono_wave", counting)
    monkeypatch.setattr(auralens.scene.allm, "mono_wave", counting, raising=False)
    assert allm.describe(sine).text == "Rain on a tin roof."
    assert len(checks) == 1
    with pytest.raises(AuralensError, match=r"expected mono audio of shape \[T\], got shape "
                                            r"\(16000, 2\)"):
        allm.describe(np.stack([sine, sine], axis=1))


def test_the_audio_llm_template_is_checked_with_the_stage(tmp_path: Path) -> None:
    from auralens.scene.allm import check_audio_llm
    from auralens.scene.compose.prompting import TemplateError

    no_user = tmp_path / "no_user.txt"
    no_user.write_text("### system\nYou are helpful.\n")
    with pytest.raises(TemplateError, match="no user turn"):
        check_audio_llm(f"openai-audio:served@{NO_SERVER}", template=no_user)
    stages = Stages(ImagineConfig(mode="allm", allm=f"openai-audio:served@{NO_SERVER}",
                                  template=str(no_user)))
    with pytest.raises(ImagineError) as err:
        stages.check()
    assert str(err.value) == f"{no_user}: no user turn (--template)"


@pytest.mark.parametrize(("data", "message"), [
    ({1: "x", "bogus": "y"}, "unknown imagine option(s) [1, 'bogus']"),
    ({"activity": {1: 2, "bogus": 3}}, "unknown activity option 1"),
    ({"separator": {"backend": "nmf", "params": 5}}, "separator must be a backend spec with "
                                                     "options as {backend: <text>, params: "
                                                     "<mapping of option names>}"),
    ({"separator": {"backend": "nmf", "params": {1: 2}}}, "separator must be a backend spec"),
    ({"separator": {"backend": 5}}, "separator must be a backend spec"),
    ({"mode": "allm", "allm": {"backend": ["qwen2-audio"]}}, "allm must be a backend spec"),
])
def test_config_entries_of_the_wrong_type_fail_in_one_line(data: dict, message: str) -> None:
    with pytest.raises(ImagineError) as err:
        ImagineConfig.from_dict(data)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_config_file_with_number_keys_fails_in_one_line(tmp_path: Path, noise: np.ndarray,
                                                          capsys) -> None:
    from auralens.audio import write

    clip = write(tmp_path / "a.wav", noise, 16000)
    config = tmp_path / "c.yaml"
    config.write_text("imagine:\n  separator: {backend: nmf, params: {1: 2}}\n")
    assert main(["imagine", str(clip), "--out", str(tmp_path / "o"), "--config",
                 str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: separator must be a backend spec") and "Traceback" not in err
    assert not (tmp_path / "o").exists()
