"""``auralens imagine`` end to end: offline defaults (or tiny stand-ins), the audio-LLM
baseline, a tiny SD3 image stage, the CLI, batch jobs with resume and error collection."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from auralens.audio import load, write
from auralens.cache import hash_array
from auralens.encoders.hf import weights_revision
from auralens.io import read_json, read_jsonl
from auralens.scene.caption.base import readable_label
from auralens.scene.pipeline import ImagineConfig, ImagineError, imagine, imagine_batch
from auralens.scene.separate.base import Separator
from auralens.types import SceneRecord, save_records

ROOT = Path(__file__).resolve().parents[2]


class LookupSeparator(Separator):
    """Test double: returns a mixture's true sources (looked up by content) plus one silent
    estimate, so the activity filter has something to drop."""

    name = "lookup"
    sample_rate = 16000
    num_sources = 4

    def __init__(self, records: list[SceneRecord]) -> None:
        self.table = {}
        for rec in records:
            mix = load(rec.mixture, 16000)
            srcs = [load(s.path, 16000)[: mix.shape[0]] for s in rec.sources]
            self.table[hash_array(mix)] = srcs

    def separate(self, mix: np.ndarray) -> np.ndarray:
        srcs = self.table[hash_array(np.asarray(mix, np.float32))]
        est = np.zeros((self.num_sources, mix.shape[0]), np.float32)
        for k, s in enumerate(srcs[: self.num_sources - 1]):
            est[k, : s.shape[0]] = s
        return est


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[SceneRecord]:
    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize

    root = tmp_path_factory.mktemp("imagine-data")
    lib = synthesize(root / "lib", clips_per_class=2, seed=1, duration=2.0)
    recs = build_mixtures(lib, root / "fuss", n=3, seed=1, duration=3.0, min_sources=2,
                          max_sources=3, reverb=False)
    save_records(root / "manifest.jsonl", recs)
    return recs


@pytest.fixture(scope="module")
def separator(scenes) -> LookupSeparator:
    return LookupSeparator(scenes)


def _cfg(separator, tiny_model, **kw) -> ImagineConfig:
    return ImagineConfig(separator=separator,
                         captioner=f"classifier:{tiny_model('ast_classifier')}", **kw)


def test_offline_pipeline_writes_everything(scenes, separator, tiny_model, tmp_path):
    rec = scenes[0]
    out = tmp_path / "out"
    res = imagine(rec.mixture, out, _cfg(separator, tiny_model, technique="cot"))
    # true sources kept, the silent 4th estimate dropped
    assert res.n_estimates == 4 and res.kept == list(range(rec.n_sources))
    assert sorted(p.name for p in (out / "sources").glob("*.wav")) == [
        f"source{k}.wav" for k in range(4)]
    act = read_json(out / "activity.json")
    assert [s["kept"] for s in act["sources"]] == [k < rec.n_sources for k in range(4)]
    caps = read_json(out / "captions.json")["sources"]
    assert [c["index"] for c in caps] == res.kept
    desc = (out / "description.txt").read_text()
    assert desc.strip() == res.description and desc.strip()
    for c in caps:  # the description names every kept source's label
        assert readable_label(c["label"]) in desc.lower()
    assert (out / "reasoning.txt").read_text().startswith("1. Sources:")
    assert not (out / "image.png").exists() and "image" in res.skipped
    report = (out / "report.html").read_text()
    assert report.count("<audio") == 5 and "spectrograms/source3.png" in report
    assert (out / "spectrograms" / "mixture.png").exists()
    run = read_json(out / "run.json")
    for stage in ("1_separate", "2_activity", "3_caption", "4_compose", "6_report"):
        assert stage in run["timings_s"]
    assert run["config"]["separator"] == "lookup" and run["skipped"]["image"]


@pytest.mark.parametrize("n", [1, 100, 399])
def test_clips_shorter_than_25_ms_are_refused(tmp_path, n):
    clip = write(tmp_path / "tiny.wav", np.full(n, 0.3, np.float32), 16000)
    with pytest.raises(ImagineError, match=rf"^{re.escape(str(clip))}: too short to describe: "
                                           rf"{1000 * n / 16000:.1f} ms \({n} sample\(s\) at 16000 Hz\); "
                                           r"imagine needs at least 25 ms \(400 samples at 16000 Hz\)$"):
        imagine(clip, tmp_path / "o", ImagineConfig(separator="nmf"))
    assert not (tmp_path / "o").exists()  # an unusable input: the run never started


@pytest.mark.parametrize("n", [400, 1000])
def test_clips_shorter_than_an_analysis_window_still_get_a_report(tiny_model, tmp_path, n):
    rng = np.random.default_rng(n)
    clip = tmp_path / "tiny.wav"
    write(clip, (0.3 * rng.standard_normal(n)).astype(np.float32), 16000)
    cfg = ImagineConfig(separator="nmf", captioner=f"classifier:{tiny_model('ast_classifier')}",
                        activity={"threshold": 0.0, "min_rms_ratio": 0.0})
    res = imagine(clip, tmp_path / "o", cfg)
    assert (tmp_path / "o" / "spectrograms" / "mixture.png").stat().st_size > 0
    assert (tmp_path / "o" / "report.html").exists()
    caps = read_json(tmp_path / "o" / "captions.json")["sources"]
    assert caps and len(caps) == len(res.kept) and all(c["caption"].startswith("the sound of") for c in caps)


def test_report_escapes_html(scenes, separator, tmp_path):
    class Evil:
        name = "evil"
        sample_rate = 16000

        def describe(self, wave):
            from auralens.scene.caption.base import CaptionResult

            return CaptionResult("<script>alert(1)</script>", "dog")

    out = tmp_path / "o"
    imagine(scenes[0].mixture, out, ImagineConfig(separator=separator, captioner=Evil()))
    report = (out / "report.html").read_text()
    assert "<script>" not in report and html.escape("<script>alert(1)</script>") in report



def test_report_links_survive_odd_file_names(separator, tiny_model, scenes, tmp_path):
    """A '#', '%' or quote in the input's name used to cut the mixture's link (HTML-escaped,
    not URL-encoded): every local src resolves to a file."""
    import urllib.parse

    odd = tmp_path / "in" / "a #1 50% 'q'.wav"
    odd.parent.mkdir()
    shutil.copy(scenes[0].mixture, odd)
    out = tmp_path / "o"
    imagine(odd, out, _cfg(separator, tiny_model))
    report = (out / "report.html").read_text()
    srcs = re.findall(r"src='([^']*)'", report)
    assert srcs and any("%231%2050%25" in s for s in srcs)
    for src in srcs:
        target = out / urllib.parse.unquote(html.unescape(src))
        assert target.is_file(), src


def test_real_offline_defaults_when_committed(scenes, tmp_path):
    from auralens.scene.caption.classifier import PRESET_DIR
    from auralens.scene.separate.tdcnpp import DEFAULT_CHECKPOINT

    # The presets are committed: their absence is a packaging bug, not a reason to skip.
    assert (PRESET_DIR / "config.json").exists() and DEFAULT_CHECKPOINT.exists()
    res = imagine(scenes[0].mixture, tmp_path / "o")
    assert (tmp_path / "o" / "description.txt").exists() and res.kept
    for label in res.labels:
        assert label in res.description.lower()


def test_allm_mode_with_tiny_qwen2audio(scenes, tiny_model, tmp_path):
    cfg = ImagineConfig(mode="allm", allm=f"qwen2-audio:{tiny_model('tiny_qwen2audio')}"
                        "@max_new_tokens=6", technique="role")
    res = imagine(scenes[0].mixture, tmp_path / "o", cfg)
    assert (tmp_path / "o" / "description.txt").exists()
    assert res.n_estimates == 0 and "allm" not in res.skipped
    allm = read_json(tmp_path / "o" / "run.json")["models"]["allm"]
    # run.json names the exact weights: the folder's revision, which changes with its weights
    assert allm["name"].startswith("allm:")
    assert allm["revision"] == weights_revision(tiny_model("tiny_qwen2audio"))
    assert re.fullmatch(r"[0-9a-f]{16}", allm["revision"])
    # the same model through the experiment runner's entry point and a bare directory
    from auralens.scene.allm import load_allm

    model = load_allm(str(tiny_model("tiny_qwen2audio")), max_new_tokens=4)
    assert isinstance(model.describe(np.zeros(16000, np.float32), "cot").text, str)


def test_allm_unavailable_is_an_error_not_faked(scenes, tmp_path, monkeypatch):
    # In allm mode the audio LLM is the whole job: no model, no run (and no empty report).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ImagineError, match="needs an audio LLM.*Qwen/Qwen2-Audio-7B-Instruct"):
        imagine(scenes[0].mixture, tmp_path / "o", {"mode": "allm"})
    assert not (tmp_path / "o" / "description.txt").exists()
    assert not (tmp_path / "o" / "report.html").exists()
    # the hub model is only found missing when it loads: run.json records the failure
    run = read_json(tmp_path / "o" / "run.json")
    assert run["status"] == "failed" and "Qwen/Qwen2-Audio-7B-Instruct" in run["error"]


def test_image_stage_with_tiny_sd3(scenes, separator, tiny_model, tmp_path):
    cfg = _cfg(separator, tiny_model, seed=5,
               image=f"diffusers:{tiny_model('tiny_sd3')}@steps=2,width=32,height=32")
    res = imagine(scenes[1].mixture, tmp_path / "o", cfg)
    from PIL import Image

    assert res.image == tmp_path / "o" / "image.png"
    assert Image.open(res.image).size == (32, 32)
    assert "5_image" in res.timings and "image" not in res.skipped


def test_hf_composer_and_user_template_in_pipeline(scenes, separator, tiny_model, tmp_path):
    tpl = tmp_path / "t.txt"
    tpl.write_text("### user\nSounds:\n{captions}\nDescribe the picture.")
    cfg = _cfg(separator, tiny_model, composer=f"hf:{tiny_model('tiny_chat_lm')}"
               "@max_new_tokens=6", template=str(tpl))
    res = imagine(scenes[0].mixture, tmp_path / "o", cfg)
    assert (tmp_path / "o" / "description.txt").read_text().strip() == res.description.strip()
    run = read_json(tmp_path / "o" / "run.json")
    assert run["models"]["composer"]["name"].startswith("hf:") and run["config"]["template"] == str(tpl)
    assert run["models"]["composer"]["revision"] == weights_revision(tiny_model("tiny_chat_lm"))


def test_video_without_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    import shutil

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 100)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ImagineError, match="clip.mp4: video input needs ffmpeg"):
        imagine(video, tmp_path / "o")


def test_activity_takes_the_config_object_separate_file_takes():
    from auralens.scene.separate.activity import ActivityConfig

    as_object = ImagineConfig(activity=ActivityConfig(rule="frames", threshold=0.2))
    as_mapping = ImagineConfig(activity={"rule": "frames", "threshold": 0.2})
    assert as_object.activity["rule"] == "frames" and as_object.activity["threshold"] == 0.2
    assert as_object.result_settings() == as_mapping.result_settings()
    assert as_object.to_dict()["activity"] == as_object.activity


def test_bad_config_is_rejected():
    with pytest.raises(ImagineError, match="technique"):
        ImagineConfig(technique="telepathy")
    with pytest.raises(ImagineError, match="unknown imagine option"):
        ImagineConfig.from_dict({"colour": "blue"})


@pytest.mark.parametrize("data, match", [
    ({"separator": 5}, "separator must be a backend spec"),
    ({"captioner": ["classifier"]}, "captioner must be a backend spec"),
    ({"composer": {"params": {}}}, "composer must be a backend spec"),
    ({"seed": "abc"}, "seed must be a whole number"),
    ({"seed": -1}, "seed must be a whole number"),
    ({"min_kept": 1.5}, "min_kept must be a whole number"),
    ({"report": "yes"}, "report must be true or false"),
    ({"activity": [0.1]}, "activity must be a mapping"),
    ({"activity": {"min_rms_ratio": -1}}, r"activity.min_rms_ratio must be ≥ 0, got -1"),
    ({"activity": {"threshold": -0.5}}, r"activity.threshold must be ≥ 0"),
    ({"activity": {"min_active_frac": 5}}, r"activity.min_active_frac must be from 0 to 1"),
])
def test_config_values_of_the_wrong_type_are_one_line_errors(data, match):
    with pytest.raises(ImagineError, match=match):
        ImagineConfig.from_dict(data)
    assert ImagineConfig.from_dict({"composer": {"backend": "template"}, "seed": 3}).seed == 3


def test_batch_takes_a_plain_folder_or_a_path_list(tiny_model, tmp_path):
    folder = tmp_path / "clips"
    rng = np.random.default_rng(0)
    for name in ("a.wav", "sub/b.flac"):
        write(folder / name, (0.2 * rng.standard_normal(8000)).astype(np.float32), 16000)
    cfg = ImagineConfig(separator="nmf", captioner=f"classifier:{tiny_model('ast_classifier')}")
    out = tmp_path / "out"
    lines = imagine_batch(folder, out, cfg)
    assert [ln["id"] for ln in lines] == ["a", "sub/b"]
    assert all(ln["n_sources"] is None and ln["true_labels"] == [] and ln["description"] for ln in lines)
    assert len(imagine_batch(folder, out, cfg)) == 2  # a rerun finds nothing new
    listing = tmp_path / "list.txt"
    listing.write_text("# two clips\nclips/a.wav\n" + str(folder / "sub" / "b.flac") + "\n")
    assert [ln["id"] for ln in imagine_batch(listing, tmp_path / "o2", cfg)] == ["a", "b"]
    with pytest.raises(ImagineError, match="one audio file; batch takes a folder"):
        imagine_batch(folder / "a.wav", tmp_path / "o3", cfg)
    with pytest.raises(ImagineError, match="--split needs a FUSS folder or manifest"):
        imagine_batch(listing, tmp_path / "o4", cfg, split="eval")


def test_a_folder_with_example_names_and_other_audio_is_a_plain_folder(tiny_model, tmp_path):
    """Files named like FUSS mixtures beside other audio: every file is an item, and the
    broken ones are listed, as separate batch does (a FUSS split folder has nothing else)."""
    folder = tmp_path / "clips"
    rng = np.random.default_rng(0)
    for name in ("example00000.wav", "example00001.wav", "yy.wav"):
        write(folder / name, (0.2 * rng.standard_normal(8000)).astype(np.float32), 16000)
    (folder / "zz.wav").write_bytes(b"")
    cfg = ImagineConfig(separator="nmf", captioner=f"classifier:{tiny_model('ast_classifier')}")
    lines = imagine_batch(folder, tmp_path / "out", cfg)
    assert [ln["id"] for ln in lines] == ["example00000", "example00001", "yy"]
    assert [e["item"] for e in read_jsonl(tmp_path / "out" / "errors.jsonl")] == ["zz"]
    (folder / "yy.wav").unlink()
    (folder / "zz.wav").unlink()
    fuss = imagine_batch(folder, tmp_path / "out2", cfg)  # only example*.wav: a FUSS split folder
    assert [ln["id"] for ln in fuss] == ["clips/example00000", "clips/example00001"]  # FUSS ids


def test_batch_resumes_and_collects_errors(scenes, separator, tiny_model, tmp_path):
    manifest = tmp_path / "m.jsonl"
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    recs = [*scenes[:2], SceneRecord("broken", broken, [])]
    save_records(manifest, recs)
    out = tmp_path / "batch"
    lines = imagine_batch(manifest, out, _cfg(separator, tiny_model))
    assert [ln["id"] for ln in lines] == [scenes[0].id, scenes[1].id]
    first = lines[0]
    assert first["n_sources"] == scenes[0].n_sources and first["kept"] == scenes[0].n_sources
    assert first["true_labels"] == scenes[0].labels and len(first["captions"]) == first["kept"]
    assert first["description"] and "3_caption" in first["timings"]
    errs = read_jsonl(out / "errors.jsonl")
    assert [e["item"] for e in errs] == ["broken"]
    # resume: finished items are not redone; the broken one is retried and fails again
    mtime = (out / "items" / scenes[0].id / "description.txt").stat().st_mtime_ns
    lines = imagine_batch(manifest, out, _cfg(separator, tiny_model))
    assert len(lines) == 2 and len(read_jsonl(out / "errors.jsonl")) == 1
    assert (out / "items" / scenes[0].id / "description.txt").stat().st_mtime_ns == mtime
    assert read_json(out / "run.json")["n_failed"] == 1


def test_cli_run_and_batch(scenes, tiny_model, tmp_path):
    from auralens.cli import app

    # The CLI takes specs only; a short NMF keeps this test fast (the TDCN++ default is tested
    # in test_separation_e2e).
    wav = tmp_path / "mix.wav"
    write(wav, load(scenes[2].mixture, 16000)[:16000 * 2], 16000)
    cfg = tmp_path / "imagine.yaml"
    cfg.write_text("imagine:\n  technique: cot\n  min_kept: 1\n")
    runner = CliRunner()
    res = runner.invoke(app, ["imagine", str(wav), "--out", str(tmp_path / "o"),
                              "--separator", "nmf@n_iter=20", "--captioner",
                              f"classifier:{tiny_model('ast_classifier')}",
                              "--config", str(cfg), "--set", "seed=2"])
    assert res.exit_code == 0, res.output
    assert "description:" in res.output and (tmp_path / "o" / "report.html").exists()
    assert (tmp_path / "o" / "reasoning.txt").exists()  # technique from the YAML
    assert read_json(tmp_path / "o" / "run.json")["config"]["seed"] == 2
    res = runner.invoke(app, ["imagine", "batch", "--help"])
    assert res.exit_code == 0 and "FUSS" in res.output
    res = runner.invoke(app, ["imagine", str(tmp_path / "missing.wav"), "--out",
                              str(tmp_path / "o2")])
    assert res.exit_code != 0


def test_cli_dc_only_file_at_another_rate_gives_no_description(tiny_model, tmp_path):
    """Resampling used to ring at the ends of a DC-only file, which then passed as sound."""
    from auralens.cli import app

    wav = tmp_path / "dc.wav"
    write(wav, np.full(44100, 0.3, np.float32), 44100, subtype="FLOAT")
    res = CliRunner().invoke(app, ["imagine", str(wav), "--out", str(tmp_path / "o"),
                                   "--separator", "nmf@n_iter=20", "--captioner",
                                   f"classifier:{tiny_model('ast_classifier')}"])
    assert res.exit_code == 0, res.output
    assert "4 estimates, 0 kept\n" in res.output and "description:" not in res.output
    reasons = {s["reason"] for s in read_json(tmp_path / "o" / "activity.json")["sources"]}
    assert reasons == {"the mixture is constant (no sound)"}


@pytest.mark.parametrize("text", ["imagine: 5\n", "imagine:\n", "imagine: [a, b]\n"])
@pytest.mark.parametrize("command", ["run", "batch"])
def test_cli_imagine_section_that_is_no_mapping_is_one_line(tmp_path, capsys, text, command):
    from auralens.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    capsys.readouterr()
    code = main(["imagine", command, str(tmp_path / "in.wav"), "--out", str(tmp_path / "o"),
                 "--config", str(cfg)])
    assert code == 1
    assert capsys.readouterr().err == f"error: {cfg}: 'imagine' must be a mapping\n"


def test_cli_out_that_is_a_file_is_refused_up_front(tmp_path, capsys):
    from auralens.cli import main

    afile = tmp_path / "afile"
    afile.write_text("keep")
    wav = tmp_path / "in.wav"
    write(wav, 0.1 * np.ones(8000, np.float32), 16000)
    for argv in (["imagine", str(wav)], ["imagine", "batch", str(tmp_path)]):
        capsys.readouterr()
        assert main([*argv, "--out", str(afile)]) == 1
        assert capsys.readouterr().err == (f"error: {afile}: exists and is not a directory "
                                           "(--out names a folder)\n")
    assert afile.read_text() == "keep"


def test_cli_missing_input_is_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "auralens.cli", "imagine",
                           str(tmp_path / "nope.wav"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and "nope.wav" in proc.stderr


def test_video_input_uses_ffmpeg_for_audio_and_reference_frame(scenes, separator, tiny_model,
                                                               tmp_path, monkeypatch):
    """A stand-in ``ffmpeg`` on PATH: copies a known mixture as the audio track and draws a
    frame, so the extraction and reference-frame calls are exercised end to end."""
    import stat
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ffmpeg"
    fake.write_text(f"""#!{sys.executable}
import sys, shutil
from PIL import Image
args = sys.argv[1:]
out = args[-1]
if "-vn" in args:
    assert args[args.index("-ar") + 1] == "16000"
    shutil.copy({str(scenes[0].mixture)!r}, out)
elif "-frames:v" in args:
    assert float(args[args.index("-ss") + 1]) > 0
    Image.new("RGB", (8, 6), (200, 10, 10)).save(out)
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    res = imagine(video, tmp_path / "o", _cfg(separator, tiny_model))
    assert (tmp_path / "o" / "input.wav").exists() and res.kept
    assert res.reference == tmp_path / "o" / "reference.png"
    assert "reference.png" in (tmp_path / "o" / "report.html").read_text()


def test_batch_fails_early_on_unavailable_model(scenes, separator, tmp_path, monkeypatch):
    from auralens.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = tmp_path / "m.jsonl"
    save_records(manifest, scenes[:1])
    cfg = ImagineConfig(separator=separator, captioner="qwen2-audio")
    with pytest.raises(ModelUnavailableError, match="Qwen2-Audio"):
        imagine_batch(manifest, tmp_path / "b", cfg)
    assert read_jsonl(tmp_path / "b" / "results.jsonl") == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_real_video_gives_audio_track_and_middle_frame(tmp_path):
    """A real MP4 made by ffmpeg (test pattern + 440 Hz tone) through the offline defaults:
    the 16 kHz audio track is extracted and the reference frame has the video's size."""
    import subprocess

    import numpy as np
    from PIL import Image

    from auralens.audio import load_with_info

    video = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=10", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=16000", "-t", "3", "-shortest", str(video)],
                   check=True)
    res = imagine(video, tmp_path / "o")
    wave, info = load_with_info(tmp_path / "o" / "input.wav")
    assert info.sample_rate == 16000 and abs(info.duration - 3.0) < 0.2
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 5  # the tone survived
    assert Image.open(res.reference).size == (160, 120)
    assert (tmp_path / "o" / "description.txt").read_text().strip()
