"""What an imagine run leaves in its folder: built backends recorded by name (never copied),
no files of an earlier run that its run.json does not describe, a failed run recorded as
failed, bad specs refused before any work, and one-line errors naming the input. Stage test
doubles (no models) keep these fast; the spec checks use tiny random-weight models."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auralens.audio import write
from auralens.cli import main
from auralens.errors import AuralensError
from auralens.io import read_json, read_jsonl
from auralens.scene.caption.base import CaptionResult
from auralens.scene.compose.chat import ChatComposer
from auralens.scene.pipeline import ImagineConfig, ImagineError, imagine, imagine_batch
from auralens.scene.render.base import ImageGenerator
from auralens.scene.separate.base import Separator

ALL_KEPT = {"threshold": 0.0, "min_rms_ratio": 0.0}


class SplitSeparator(Separator):
    """``m`` equal shares of the mixture (every one active); counts its calls."""

    name = "split"
    sample_rate = 16000

    def __init__(self, m: int) -> None:
        self.num_sources = m
        self.calls = 0

    def separate(self, mix: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.stack([mix / self.num_sources] * self.num_sources)


class NoCopy:
    """A backend holding a lock, as the model wrappers do; copying one is a bug."""

    copies = 0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.weights = np.zeros(1000, np.float32)  # stands in for a model

    def __deepcopy__(self, memo):
        type(self).copies += 1
        raise AssertionError(f"{self.name} was deep-copied")


class Captioner(NoCopy):
    name = "locked-captioner"
    sample_rate = 16000

    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error

    def describe(self, wave: np.ndarray) -> CaptionResult:
        if self.error:
            raise AuralensError(self.error)
        return CaptionResult("the sound of a dog", "dog", 0.9)


class Chat(NoCopy):
    name = "locked-chat"

    def chat(self, messages, **gen) -> str:
        return "A dog barks in a sunny park."


class Picture(NoCopy, ImageGenerator):
    name = "locked-image"

    def generate(self, prompt: str, seed: int = 0):
        return Image.new("RGB", (8, 8), (200, seed, 0))


@pytest.fixture
def mix(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return write(tmp_path / "mix.wav", (0.2 * rng.standard_normal(16000)).astype(np.float32),
                 16000)


def _config(m: int = 2, **kw) -> ImagineConfig:
    return ImagineConfig(**{"separator": SplitSeparator(m), "captioner": Captioner(),
                            "activity": ALL_KEPT, **kw})


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_built_backends_are_recorded_by_name_and_never_copied(mix, tmp_path):
    NoCopy.copies = 0
    cfg = _config(composer=ChatComposer(Chat()), image=Picture())
    res = imagine(mix, tmp_path / "o", cfg)
    run = read_json(tmp_path / "o" / "run.json")
    assert run["status"] == "ok" and NoCopy.copies == 0
    assert run["config"]["captioner"] == "locked-captioner"
    assert run["config"]["composer"] == "locked-chat" and run["config"]["image"] == "locked-image"
    assert run["config"]["separator"] == "split" and run["config"]["activity"] == ALL_KEPT
    assert res.image == tmp_path / "o" / "image.png" and res.description
    assert cfg.to_dict()["activity"] is not cfg.activity  # plain settings are still copied


def test_rerun_removes_the_earlier_runs_files_and_keeps_the_users(mix, tmp_path):
    out = tmp_path / "o"
    imagine(mix, out, _config(4, image=Picture(), technique="cot"))
    assert (out / "image.png").exists() and (out / "reasoning.txt").exists()
    assert len(_names(out / "sources")) == 4
    (out / "notes.txt").write_text("mine")
    (out / "sources" / "mine.wav").write_bytes(b"mine")
    (out / "spectrograms" / "keep.png").write_bytes(b"mine")
    res = imagine(mix, out, _config(2))  # fewer sources, no image, zero-shot
    assert not (out / "image.png").exists() and not (out / "reasoning.txt").exists()
    assert _names(out / "sources") == ["mine.wav", "source0.wav", "source1.wav"]
    assert _names(out / "spectrograms") == ["keep.png", "mixture.png", "source0.png",
                                            "source1.png"]
    assert (out / "notes.txt").read_text() == "mine"
    report = (out / "report.html").read_text()
    assert "source2" not in report and "image.png" not in report
    run = read_json(out / "run.json")
    assert run["status"] == "ok" and run["n_estimates"] == 2 == res.n_estimates
    assert "image" in run["skipped"]


def test_a_folder_that_held_no_imagine_run_keeps_every_file(mix, tmp_path):
    out = tmp_path / "myproject"
    mine = {"image.png": b"my picture", "reasoning.txt": b"my notes",
            "sources/source3.wav": b"my recording", "run.json": b'{"command": "sonify train"}'}
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    # another command's folder is refused before any work, every file left as it was
    with pytest.raises(ImagineError, match="holds the outputs of 'sonify train'"):
        imagine(mix, out, _config(2))
    for rel, data in mine.items():
        assert (out / rel).read_bytes() == data, rel
    (out / "run.json").unlink()  # a folder of the user's files, with no command's record
    with pytest.raises(ImagineError):  # fails after starting: writes its failed record
        imagine(mix, out, _config(2, captioner=Captioner("model fell over")))
    for rel, data in mine.items():
        if rel != "run.json":
            assert (out / rel).read_bytes() == data, rel
    assert read_json(out / "run.json")["status"] == "failed"
    imagine(mix, out, _config(2))  # now an imagine run's folder: a rerun clears its file names
    assert not (out / "sources" / "source3.wav").exists() and not (out / "image.png").exists()
    assert read_json(out / "run.json")["status"] == "ok"


def test_a_failed_rerun_is_recorded_as_failed_not_as_the_earlier_run(mix, tmp_path):
    out = tmp_path / "o"
    imagine(mix, out, _config(3, image=Picture()))
    broken = _config(2, captioner=Captioner("model fell over\n  a long trace line"))
    with pytest.raises(ImagineError) as err:
        imagine(mix, out, broken)
    assert str(err.value) == f"{mix}: captioning source 0: model fell over"
    run = read_json(out / "run.json")
    assert run["status"] == "failed" and run["error"] == str(err.value)
    assert run["error_type"] == "ImagineError" and run["config"]["separator"] == "split"
    for stale in ("image.png", "report.html", "description.txt", "captions.json"):
        assert not (out / stale).exists(), stale
    assert _names(out / "sources") == ["source0.wav", "source1.wav"]  # this run's, and said so
    assert run["paths"]["sources"] == [str(out / "sources" / f"source{k}.wav") for k in (0, 1)]


def test_a_bad_spec_fails_before_any_work_and_leaves_the_folder_alone(mix, tiny_model, tmp_path):
    out = tmp_path / "o"
    imagine(mix, out, _config(2))
    before = (out / "run.json").read_text()
    chat = tiny_model("tiny_chat_lm")
    for image, message in ((f"diffusers:{chat}", "not a diffusers pipeline (no model_index.json)"),
                           (f"diffusers:{tiny_model('tiny_sd3')}@steps=abc",
                            "diffusers option steps must be a whole number ≥ 1, got 'abc'"),
                           (f"diffusers:{tiny_model('tiny_sd3')}@stesp=1",
                            "unknown diffusers option(s) stesp")):
        cfg = _config(2, image=image)
        with pytest.raises(AuralensError) as err:
            imagine(mix, out, cfg)
        assert message in str(err.value)
        assert cfg.separator.calls == 0  # refused before separation
    with pytest.raises(AuralensError, match="unknown hf composer option"):
        imagine(mix, out, _config(2, composer=f"hf:{chat}@temprature=0.5"))
    assert (out / "run.json").read_text() == before  # nothing ran, nothing changed


def test_an_input_inside_the_output_folder_is_kept(tmp_path):
    out = tmp_path / "o"
    wav = write(out / "input.wav", 0.2 * np.ones(8000, np.float32), 16000)
    imagine(wav, out, _config(2))
    assert wav.exists() and read_json(out / "run.json")["status"] == "ok"


def test_batch_items_are_cleaned_and_failures_are_one_line(tmp_path):
    clips = tmp_path / "clips"
    rng = np.random.default_rng(1)
    for name, n in (("a", 8000), ("b", 12000)):
        write(clips / f"{name}.wav", (0.2 * rng.standard_normal(n)).astype(np.float32), 16000)
    (clips / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "batch"
    # files an earlier run left in the item folders
    for item in ("a", "b", "broken"):
        (out / "items" / item).mkdir(parents=True)
        (out / "items" / item / "image.png").write_bytes(b"old")
        (out / "items" / item / "run.json").write_text(
            '{"command": "imagine --mode pipeline", "status": "ok", "old": true}')

    class FailsOnB(Captioner):
        def describe(self, wave):
            if wave.shape[-1] == 12000:  # b.wav's sources
                raise AuralensError("the model fell over\nTraceback (most recent call last):")
            return super().describe(wave)

    lines = imagine_batch(clips, out, ImagineConfig(separator=SplitSeparator(2),
                                                    captioner=FailsOnB(), activity=ALL_KEPT))
    assert [ln["id"] for ln in lines] == ["a"]
    assert not (out / "items" / "a" / "image.png").exists()
    assert read_json(out / "items" / "a" / "run.json")["status"] == "ok"
    errors = {e["item"]: e["error"] for e in read_jsonl(out / "errors.jsonl")}
    assert errors["b"] == f"{clips / 'b.wav'}: captioning source 0: the model fell over"
    assert all("\n" not in e for e in errors.values()) and set(errors) == {"b", "broken"}
    for item in ("b", "broken"):
        run = read_json(out / "items" / item / "run.json")
        assert run["status"] == "failed" and "old" not in run and run["error"], item
        assert not (out / "items" / item / "image.png").exists()


class Wobble(SplitSeparator):
    """What a trained separator makes of a DC input: the offset plus a faint ripple."""

    def separate(self, mix: np.ndarray) -> np.ndarray:
        ripple = 0.01 * np.sin(np.arange(mix.shape[-1], dtype=np.float32))
        return np.stack([mix - ripple, ripple])


@pytest.mark.parametrize("separator", [SplitSeparator(2), Wobble(2)])
def test_a_dc_offset_alone_is_not_described(tmp_path, separator):
    dc = write(tmp_path / "dc.wav", np.full(3 * 16000, 0.5, np.float32), 16000)

    class Counting(Captioner):
        calls = 0

        def describe(self, wave):
            type(self).calls += 1
            return super().describe(wave)

    result = imagine(dc, tmp_path / "o", ImagineConfig(separator=separator, captioner=Counting(),
                                                       activity=ALL_KEPT))
    assert result.kept == [] and result.captions == [] and result.description == ""
    assert Counting.calls == 0
    reasons = {d["reason"] for d in read_json(tmp_path / "o" / "activity.json")["sources"]}
    if isinstance(separator, Wobble):  # the estimates are not constant, but the mixture is
        assert reasons == {"the mixture is constant (no sound)"}
    else:
        assert reasons == {"constant (no sound)"}


def test_inputs_shorter_than_25_ms_are_refused_naming_the_file(tmp_path, capsys):
    rng = np.random.default_rng(2)
    clips = tmp_path / "clips"
    short = write(clips / "short.wav", (0.2 * rng.standard_normal(160)).astype(np.float32), 16000)
    write(clips / "ok.wav", (0.2 * rng.standard_normal(400)).astype(np.float32), 16000)
    message = (f"{short}: too short to describe: 10.0 ms (160 sample(s) at 16000 Hz); imagine "
               "needs at least 25 ms (400 samples at 16000 Hz)")
    with pytest.raises(ImagineError) as err:
        imagine(short, tmp_path / "o", _config(2))
    assert str(err.value) == message
    assert imagine(clips / "ok.wav", tmp_path / "o2", _config(2)).kept == [0, 1]
    capsys.readouterr()
    assert main(["imagine", str(short), "--out", str(tmp_path / "o3")]) == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    # A batch lists the short clip in errors.jsonl and goes on.
    lines = imagine_batch(clips, tmp_path / "batch", _config(2))
    assert [ln["id"] for ln in lines] == ["ok"]
    errors = read_jsonl(tmp_path / "batch" / "errors.jsonl")
    assert [(e["item"], e["error"]) for e in errors] == [("short", message)]


def test_cli_bad_specs_are_one_line_before_any_output(mix, tiny_model, tmp_path, capsys):
    chat = tiny_model("tiny_chat_lm")
    for flags, message in ((["--captioner", str(chat)],
                            f"{chat}: not an audio-language model (no audio feature extractor)"),
                           (["--mode", "allm", "--allm", str(chat)],
                            f"{chat}: not an audio-language model (no audio feature extractor)"),
                           (["--image", f"diffusers:{chat}"],
                            f"{chat}: not a diffusers pipeline (no model_index.json)")):
        out = tmp_path / "o"
        code = main(["imagine", str(mix), "--out", str(out), "--separator", "nmf@n_iter=5",
                     *flags])
        err = capsys.readouterr().err
        assert code == 1 and message in err and err.count("\n") == 1, err
        assert not (out / "sources").exists() and not (out / "run.json").exists()
