"""Output folders, lost training state and the demo's classifier and --quick limit on --data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from factories.classifier import tiny_classifier_config, tone_noise_dataset

from auralens.audio import write
from auralens.demo import DemoError, DemoPlan, check_demo_dir, demo_settings
from auralens.encoders.train_classifier import ClassifierConfig, train_classifier
from auralens.errors import AuralensError
from auralens.io import read_json, write_run_json

PRESETS = Path(__file__).resolve().parents[2] / "src" / "auralens" / "presets"


def _dataset(root: Path, per_class: int = 2) -> Path:
    return tone_noise_dataset(root, per_class)


def _tiny_cfg(**kw) -> ClassifierConfig:
    return tiny_classifier_config(**{"epochs": 1, **kw})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return _dataset(tmp_path / "data")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1. an --out of another command, or holding foreign files, is refused -------------------

@pytest.mark.parametrize("command", ["data mix", "sonify sweep", "demo"])
def test_train_classifier_refuses_another_commands_folder(data, tmp_path, command) -> None:
    out = tmp_path / "other"
    write_run_json(out, command=command, config={"n": 3})
    before = _snapshot(out)
    with pytest.raises(AuralensError) as err:
        train_classifier(data, out, _tiny_cfg())
    assert str(err.value) == (f"{out}: holds the output of {command!r}, not of train-classifier; "
                              "choose an empty or new --out")
    assert _snapshot(out) == before  # its run.json is not replaced


def test_train_classifier_refuses_foreign_files_and_unreadable_run_json(data, tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(AuralensError, match=r"mine: holds files that train-classifier does not "
                                            r"write \(notes\.txt\); choose an empty or new --out"):
        train_classifier(data, out, _tiny_cfg())
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "notes.txt").unlink()
    (out / "run.json").write_text("{not json")
    with pytest.raises(AuralensError, match=r"its run.json is unreadable"):
        train_classifier(data, out, _tiny_cfg())


def test_train_classifier_resumes_into_its_own_folder(data, tmp_path) -> None:
    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    more = train_classifier(data, out, _tiny_cfg(epochs=2))
    assert more["epochs_run"] == 2 and read_json(out / "run.json")["result"]["resumed_from_epoch"] == 1


@pytest.mark.parametrize("files", [{"notes.txt": "x"}, {"sonify/run.json": "{}"}])
def test_demo_refuses_a_folder_with_files_it_does_not_write(tmp_path, files) -> None:
    out = tmp_path / "other"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    settings = demo_settings(None, quick=True, seed=42, plan=DemoPlan.quick())
    if "sonify/run.json" in files:  # a demo's own subfolder is its step's business
        check_demo_dir(out, settings)
        return
    with pytest.raises(DemoError, match=r"other: holds files that demo does not write \(notes\.txt\); "
                                        r"choose an empty or new --out"):
        check_demo_dir(out, settings)


def test_demo_refuses_another_commands_run_json(tmp_path) -> None:
    out = tmp_path / "clf"
    write_run_json(out, command="train-classifier", config={})
    with pytest.raises(DemoError, match=r"clf: holds the output of 'train-classifier', not of demo"):
        check_demo_dir(out, demo_settings(None, quick=True, seed=42, plan=DemoPlan.quick()))


# --- 2. a trained model without train_state.pt is never silently retrained ----------------

def test_missing_train_state_is_refused_not_retrained(data, tmp_path) -> None:
    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    (out / "train_state.pt").unlink()
    before = _snapshot(out)
    with pytest.raises(AuralensError) as err:
        train_classifier(data, out, _tiny_cfg(epochs=2))
    message = str(err.value)
    assert message.startswith(f"{out}: holds a trained model (model.safetensors, history.json) but "
                              "no train_state.pt to resume from; use another --out")
    assert "\n" not in message
    assert _snapshot(out) == before  # the model is not overwritten


def test_stop_before_the_first_state_was_saved_starts_over(data, tmp_path, caplog) -> None:
    out = tmp_path / "clf"
    train_classifier(data, out, _tiny_cfg(epochs=1))
    (out / "train_state.pt").unlink()
    run = read_json(out / "run.json")
    run["result"].update(status="running", epochs_run=0)  # killed while saving epoch 1
    (out / "run.json").write_text(json.dumps(run))
    again = train_classifier(data, out, _tiny_cfg(epochs=1))
    assert again["epochs_run"] == 1 and (out / "train_state.pt").is_file()
    assert "first epoch's training state is missing" in caplog.text


# --- 3. the demo captions with a classifier that knows the data's classes ----------------

def _labels(name: str) -> list[str]:
    return sorted(json.loads((PRESETS / name / "config.json").read_text())["id2label"].values())


def test_choose_classifier_picks_the_one_whose_labels_cover_the_classes() -> None:
    from auralens.demo import choose_classifier

    assert choose_classifier(_labels("classifier")) == (PRESETS / "classifier", [])
    assert choose_classifier(_labels("classifier-synth")) == (PRESETS / "classifier-synth", [])
    assert choose_classifier(["rain", "siren"]) == (PRESETS / "classifier-synth", [])
    assert choose_classifier(None) == (PRESETS / "classifier-synth", [])  # the built library
    assert choose_classifier(["dog", "gunshot"]) == (PRESETS / "classifier", ["gunshot"])


def test_classifier_for_a_synth_library_is_classifier_synth(tmp_path) -> None:
    from auralens.data.synth import synthesize
    from auralens.demo import classifier_for

    lib = synthesize(tmp_path / "lib", clips_per_class=1, seed=1, sample_rate=8000, duration=0.5,
                     classes=["rain", "siren"])
    assert classifier_for(lib) == PRESETS / "classifier-synth"


def _fake_stages(monkeypatch) -> dict:
    """Replace the heavy steps of the demo; returns what they were given."""
    import auralens.data.mix
    import auralens.evaluate.report
    import auralens.scene.pipeline
    import auralens.sonify.sweep

    passed: dict = {}

    def sweep(data, extractor, layers, codec, gate, out, **kwargs):
        passed["sweep"] = (extractor, kwargs.get("limit"))
        return []

    def build_mixtures(data, out, **kwargs):
        out.mkdir(parents=True, exist_ok=True)

    def imagine_batch(mixtures, out, config):
        passed["imagine"] = config
        return []

    monkeypatch.setattr(auralens.sonify.sweep, "sweep", sweep)
    monkeypatch.setattr(auralens.evaluate.report, "build_report", lambda *a, **k: None)
    monkeypatch.setattr(auralens.data.mix, "build_mixtures", build_mixtures)
    monkeypatch.setattr(auralens.scene.pipeline, "imagine_batch", imagine_batch)
    return passed


def _folder_library(root: Path, classes: list[str]) -> Path:
    for name in classes:
        write(root / name / f"{name}.wav", np.zeros(4000, np.float32), 8000)
    return root


def test_demo_on_data_no_classifier_knows_warns_in_log_and_index(tmp_path, monkeypatch, caplog) -> None:
    from auralens.demo import run_demo

    passed = _fake_stages(monkeypatch)
    data = _folder_library(tmp_path / "mine", ["dog", "gunshot"])
    index = run_demo(tmp_path / "demo", data=data, quick=True).read_text()
    assert passed["imagine"] == {"captioner": f"classifier:{PRESETS / 'classifier'}"}
    assert "does not know gunshot, so its captions name only its own classes" in caplog.text
    assert ("<b>Warning:</b> no committed classifier knows all the data's classes; "
            "<code>presets/classifier</code> does not know gunshot, so its captions name only its "
            "own classes.") in index
    run = read_json(tmp_path / "demo" / "run.json")
    assert run["classifier"] == {"name": "classifier", "unknown_classes": ["gunshot"]}


def test_demo_on_a_synth_library_captions_with_classifier_synth(tmp_path, monkeypatch, caplog) -> None:
    from auralens.demo import run_demo

    passed = _fake_stages(monkeypatch)
    data = _folder_library(tmp_path / "lib", ["rain", "siren"])
    index = run_demo(tmp_path / "demo", data=data, quick=True).read_text()
    synth = PRESETS / "classifier-synth"
    assert passed["imagine"] == {"captioner": f"classifier:{synth}"}
    assert passed["sweep"][0] == f"classifier:{synth}"
    assert "Warning" not in index and "captions name only" not in caplog.text


# --- 4. demo --quick --data uses a limited, recorded number of clips ----------------------

def test_quick_demo_limits_the_clips_of_data_and_records_it(tmp_path, monkeypatch) -> None:
    from auralens.demo import CONFIG_NAME, run_demo

    assert DemoPlan.quick().data_limit is not None
    passed = _fake_stages(monkeypatch)
    data = _folder_library(tmp_path / "lib", ["rain", "siren"])
    run_demo(tmp_path / "demo", data=data, quick=True)
    limit = DemoPlan.quick().data_limit
    assert passed["sweep"][1] == limit
    run = read_json(tmp_path / "demo" / "run.json")
    assert run["config"]["data_limit"] == run["config"]["plan"]["data_limit"] == limit
    assert read_json(tmp_path / "demo" / CONFIG_NAME)["plan"]["data_limit"] == limit
    run_demo(tmp_path / "demo", data=data, quick=True)  # the same settings resume
    assert passed["sweep"][1] == limit


def test_quick_demo_on_the_built_library_is_not_limited(tmp_path, monkeypatch) -> None:
    """The library is sized by clips_per_class; an older quick demo (no data_limit) resumes."""
    import auralens.data.synth
    from auralens.demo import run_demo

    passed = _fake_stages(monkeypatch)
    monkeypatch.setattr(auralens.data.synth, "synthesize", lambda out, **kw: out)
    out = tmp_path / "demo"
    old = {**DemoPlan.quick().__dict__, "data_limit": None}
    write_run_json(out, command="demo", seed=42,
                   config={"data": str(out / "library"), "quick": True, "plan": old})
    run_demo(out, quick=True)
    assert passed["sweep"][1] is None
