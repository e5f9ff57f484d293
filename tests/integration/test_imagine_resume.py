"""``imagine batch`` / ``imagine run`` against the review's reproductions: resume only with
the same settings, manifest paths relative to the manifest, a split that matches nothing,
bad activity options and templates caught before any work, the audio LLM required in allm
mode, and notes for settings the template composer ignores. Offline backends only (NMF,
the committed classifier, the template composer) on three short synthetic mixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auralens.cli import main
from auralens.io import read_json, read_jsonl
from auralens.scene.compose.base import Description
from auralens.scene.pipeline import ImagineConfig, ImagineError, imagine, imagine_batch

NMF = "nmf@n_iter=10"


@pytest.fixture(scope="module")
def fuss(tmp_path_factory) -> Path:
    """A ``data mix`` output folder: train/exampleNNNNN.wav + a manifest with relative paths."""
    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize

    root = tmp_path_factory.mktemp("imagine-resume")
    lib = synthesize(root / "lib", clips_per_class=1, seed=2, duration=1.0)
    build_mixtures(lib, root / "fuss", n=3, seed=2, duration=1.5, min_sources=2,
                   max_sources=2, reverb=False)
    return root / "fuss"


class StubAudioLLM:
    """A working audio LLM stand-in (built backend objects are accepted by the config)."""

    name = "stub-allm"
    sample_rate = 16000

    def describe(self, wave: np.ndarray, technique: str = "zero-shot") -> Description:
        return Description(f"a dog barks in a park ({technique})")


def test_batch_resume_refuses_other_settings(fuss: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    lines = imagine_batch(fuss, out, {"separator": NMF}, limit=2)
    assert len(lines) == 2 and len({ln["fingerprint"] for ln in lines}) == 1
    assert lines[0]["settings"]["separator"] == NMF
    before = (out / "results.jsonl").read_text()
    # another technique or separator into the same --out: refused, nothing changes
    with pytest.raises(ImagineError, match=r"different settings \(technique\).*another --out"):
        imagine_batch(fuss, out, {"separator": NMF, "technique": "cot"}, limit=2)
    with pytest.raises(ImagineError, match=r"different settings \(separator\)"):
        imagine_batch(fuss, out, {"separator": "nmf@n_iter=11"}, limit=2)
    assert (out / "results.jsonl").read_text() == before
    assert read_json(out / "run.json")["config"]["technique"] == "zero-shot"
    # the same settings resume: only the new mixture runs
    lines = imagine_batch(fuss, out, {"separator": NMF}, limit=3)
    assert len(lines) == 3 and read_json(out / "run.json")["n_new"] == 1
    # a line without a fingerprint (an older results file) is not trusted either
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "results.jsonl").write_text(json.dumps({"id": "train/example00000"}) + "\n")
    with pytest.raises(ImagineError, match="without a settings fingerprint"):
        imagine_batch(fuss, legacy, {"separator": NMF}, limit=1)


def test_batch_cli_refusal_is_one_line(fuss: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    assert main(["imagine", "batch", str(fuss), "--out", str(out), "--separator", NMF,
                 "--limit", "1"]) == 0
    capsys.readouterr()
    assert main(["imagine", "batch", str(fuss), "--out", str(out), "--separator", NMF,
                 "--limit", "1", "--technique", "cot"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "different settings" in err and len(err.splitlines()) == 1


def test_batch_manifest_paths_are_relative_to_the_manifest(fuss: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    manifest = fuss / "manifest.jsonl"
    assert not Path(read_jsonl(manifest)[0]["mixture"]).is_absolute()  # as data mix writes it
    monkeypatch.chdir(tmp_path)  # somewhere the relative paths do not resolve
    lines = imagine_batch(manifest, tmp_path / "b", {"separator": NMF}, limit=1)
    assert len(lines) == 1 and lines[0]["description"]
    assert read_jsonl(tmp_path / "b" / "errors.jsonl") == []
    assert Path(lines[0]["paths"]["mixture"]) == fuss / read_jsonl(manifest)[0]["mixture"]


def test_split_that_matches_nothing_is_an_error(fuss: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ImagineError, match=r"no mixture in split 'eval'.*found: train"):
        imagine_batch(fuss, tmp_path / "b", {"separator": NMF}, split="eval")
    with pytest.raises(ImagineError, match=r"split 'eval'"):
        imagine_batch(fuss / "manifest.jsonl", tmp_path / "b", {"separator": NMF}, split="eval")
    assert main(["imagine", "batch", str(fuss), "--out", str(tmp_path / "c"), "--split",
                 "eval"]) == 1
    assert capsys.readouterr().err.startswith("error:")
    assert not (tmp_path / "c" / "results.jsonl").exists()


@pytest.mark.parametrize(("activity", "message"), [
    ({"bogus": 1}, "unknown activity option 'bogus'; known: rule"),
    ({"rule": "bogus"}, "activity.rule: unknown rule 'bogus'"),
    ({"min_db": "abc"}, "activity.min_db must be a number"),
    ({"frame": 0}, "activity.frame must be a positive"),
])
def test_bad_activity_options_fail_before_any_work(activity, message) -> None:
    with pytest.raises(ImagineError, match=message):
        ImagineConfig(activity=activity)


def test_bad_activity_option_in_batch_cli(fuss: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    assert main(["imagine", "batch", str(fuss), "--out", str(out), "--separator", NMF,
                 "--limit", "2", "--set", "activity.bogus=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown activity option 'bogus'") and "Traceback" not in err
    assert not (out / "results.jsonl").exists() and not (out / "errors.jsonl").exists()


def test_template_missing_or_ignored(fuss: Path, tmp_path: Path) -> None:
    with pytest.raises(ImagineError, match=r"nope\.txt: template file not found"):
        ImagineConfig(template=str(tmp_path / "nope.txt"))
    tpl = tmp_path / "t.txt"
    tpl.write_text("### user\n{captions}\n")
    res = imagine(fuss / "train" / "example00000.wav", tmp_path / "o",
                  {"separator": NMF, "template": str(tpl), "technique": "role"})
    notes = read_json(tmp_path / "o" / "run.json")["notes"]
    assert notes == res.notes and len(notes) == 2
    assert "t.txt is not used" in notes[0] and "ignores technique 'role'" in notes[1]
    # an LLM composer uses the template, and zero-shot is no technique to ignore
    assert ImagineConfig(composer="hf:x", template=str(tpl), technique="role").notes() == []
    assert ImagineConfig().notes() == []


def test_allm_mode_needs_the_audio_llm(fuss: Path, tmp_path: Path, capsys,
                                       monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = f"qwen2-audio:{tmp_path / 'no-such-model'}"
    wav = fuss / "train" / "example00000.wav"
    with pytest.raises(ImagineError, match="--mode allm needs an audio LLM"):
        imagine(wav, tmp_path / "o", {"mode": "allm", "allm": missing})
    assert main(["imagine", str(wav), "--out", str(tmp_path / "o2"), "--mode", "allm",
                 "--allm", missing]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --mode allm needs an audio LLM") and "Traceback" not in err
    # batch: fails before the loop and records nothing as finished ...
    out = tmp_path / "b"
    with pytest.raises(ImagineError, match="needs an audio LLM"):
        imagine_batch(fuss, out, {"mode": "allm", "allm": missing}, limit=2)
    assert read_jsonl(out / "results.jsonl") == []
    # ... so a later run with a working model describes every item
    lines = imagine_batch(fuss, out, ImagineConfig(mode="allm", allm=StubAudioLLM()), limit=2)
    assert [ln["description"] for ln in lines] == ["a dog barks in a park (zero-shot)"] * 2


def test_cot_reasoning_layout_matches_the_description() -> None:
    from auralens.scene.compose.template import TemplateComposer

    composer = TemplateComposer()
    labels = ["clock_tick", "sneezing", "clock_tick", "rain"]
    desc = composer.compose(["x"] * 4, "cot", labels=labels)
    layout = next(ln for ln in desc.reasoning.splitlines() if ln.startswith("3. Layout:"))
    entries = layout.removeprefix("3. Layout: ").rstrip(".").split("; ")
    assert len(entries) == 3  # one place per distinct source, as in the text
    positions = composer.kb.positions
    for i, (entry, name) in enumerate(zip(entries, ["clock tick", "sneezing", "rain"],
                                          strict=True)):
        assert entry.startswith(f"{name} {positions[i].lower()}")
        assert f"{positions[i]}, " in desc.text  # the text puts the i-th source there too
    assert "(heard 2 times)" in entries[0]


PRESETS = Path(__file__).resolve().parents[2] / "src" / "auralens" / "presets"


def test_result_settings_resolve_equivalent_spellings(tmp_path: Path, monkeypatch) -> None:
    from auralens.config import fingerprint

    def key(**kw) -> str:
        return fingerprint(ImagineConfig(**kw).result_settings())

    base = key(separator=NMF)
    # the defaults named explicitly, a default activity value, ints for floats, option order
    assert key(separator=NMF, captioner="classifier", composer="template", image="none",
               activity={"threshold": 0.1}) == base
    assert key(separator="nmf@n_iter=10", captioner=None, composer=None, image=None) == base
    assert key(separator=None) == key(separator="tdcnpp") == key(separator={"backend": "tdcnpp"})
    assert key(activity={"min_rms_ratio": 1}) == key(activity={"min_rms_ratio": 1.0})
    assert key(separator="nmf@seed=1,n_iter=10") == key(separator="nmf@n_iter=10,seed=1")
    # ... but another value is another setting
    assert key(separator=NMF, activity={"threshold": 0.2}) != base
    assert key(separator="nmf@n_iter=11") != base
    # a model folder spelled relative or absolute is one setting; the same relative spelling
    # from another working directory names another folder
    monkeypatch.chdir(PRESETS)
    rel = key(captioner="classifier:classifier-synth")
    assert rel == key(captioner=f"classifier:{PRESETS / 'classifier-synth'}")
    assert rel == key(captioner="classifier:./classifier-synth/")
    other = tmp_path / "classifier-synth"
    other.mkdir()
    monkeypatch.chdir(tmp_path)
    assert key(captioner="classifier:classifier-synth") != rel
    # a template counts by content, not by the spelling of its path
    tpl = tmp_path / "t.txt"
    tpl.write_text("### user\n{captions}\n")
    assert key(composer="hf:x", template="t.txt") == key(composer="hf:x", template=str(tpl))


def test_batch_resumes_with_equivalent_settings(fuss: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(PRESETS)
    out = tmp_path / "b"
    imagine_batch(fuss, out, {"separator": NMF, "captioner": "classifier:classifier-synth",
                              "activity": {"min_rms_ratio": 1}}, limit=1)
    same = {"separator": "nmf@n_iter=10", "composer": "template", "image": "none",
            "captioner": f"classifier:{PRESETS / 'classifier-synth'}",
            "activity": {"min_rms_ratio": 1.0, "threshold": 0.1}}
    lines = imagine_batch(fuss, out, same, limit=2)
    assert len(lines) == 2 and read_json(out / "run.json")["n_new"] == 1
    assert len({ln["fingerprint"] for ln in lines}) == 1
    # the relative spelling from elsewhere names another folder: refused before any work
    (tmp_path / "classifier-synth").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImagineError, match=r"different settings \(captioner\)"):
        imagine_batch(fuss, out, {"separator": NMF, "captioner": "classifier:classifier-synth",
                                  "activity": {"min_rms_ratio": 1}}, limit=3)
    assert len(read_jsonl(out / "results.jsonl")) == 2


def _as_older_version(out: Path) -> None:
    """Strip what lines and run.json gained with fingerprints (as an older version wrote)."""
    lines = read_jsonl(out / "results.jsonl")
    for ln in lines:
        del ln["fingerprint"], ln["settings"]
    (out / "results.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    run = read_json(out / "run.json")
    del run["fingerprint"], run["notes"]
    (out / "run.json").write_text(json.dumps(run))


def test_batch_resumes_results_of_an_older_version(fuss: Path, tmp_path: Path) -> None:
    out = tmp_path / "old"
    imagine_batch(fuss, out, {"separator": NMF}, limit=1)
    _as_older_version(out)
    before = (out / "results.jsonl").read_text()
    # other settings than run.json records: refused, naming what changed; nothing written
    with pytest.raises(ImagineError, match=r"different settings \(technique\)"):
        imagine_batch(fuss, out, {"separator": NMF, "technique": "cot"}, limit=2)
    assert (out / "results.jsonl").read_text() == before
    # the same settings (spelled differently): resumes, and the old line gets the fingerprint
    lines = imagine_batch(fuss, out, {"separator": NMF, "captioner": "classifier"}, limit=2)
    assert len(lines) == 2 and read_json(out / "run.json")["n_new"] == 1
    assert lines[0]["fingerprint"] == lines[1]["fingerprint"]
    assert lines[0]["settings"] == lines[1]["settings"]
    # lines that disagree with run.json, or no run.json at all: cannot be determined
    _as_older_version(out)
    lines = read_jsonl(out / "results.jsonl")
    lines[0]["technique"] = "cot"
    (out / "results.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    with pytest.raises(ImagineError, match="without a settings fingerprint"):
        imagine_batch(fuss, out, {"separator": NMF}, limit=2)
    (out / "run.json").unlink()
    with pytest.raises(ImagineError, match="without a settings fingerprint"):
        imagine_batch(fuss, out, {"separator": NMF}, limit=2)


def test_older_version_relative_model_path_needs_its_working_dir(fuss: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """A relative model path in an older run.json counts only when the lines show that run
    started from the current working directory (they recorded the output folder relative)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").symlink_to(PRESETS / "classifier-synth")
    cfg = {"separator": NMF, "captioner": "classifier:m"}
    imagine_batch(fuss, "rel", cfg, limit=1)
    _as_older_version(tmp_path / "rel")
    lines = imagine_batch(fuss, "rel", cfg, limit=2)
    assert len(lines) == 2 and "fingerprint" in lines[0]
    # recorded with an absolute output folder: the old working directory is unknown
    imagine_batch(fuss, tmp_path / "abs", cfg, limit=1)
    _as_older_version(tmp_path / "abs")
    with pytest.raises(ImagineError, match="without a settings fingerprint"):
        imagine_batch(fuss, tmp_path / "abs", cfg, limit=2)


def test_batch_on_a_jsonl_that_is_no_manifest_is_one_line(fuss: Path, tmp_path: Path,
                                                          capsys) -> None:
    imagine_batch(fuss, tmp_path / "b", {"separator": NMF}, limit=1)
    results = tmp_path / "b" / "results.jsonl"
    capsys.readouterr()
    assert main(["imagine", "batch", str(results), "--out", str(tmp_path / "c"),
                 "--separator", NMF]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {results} line 1: not a scene manifest record (needs id, mixture "
                   "and sources with path and label)")
