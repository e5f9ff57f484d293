"""Experiment definitions of the wrong shape are one-line errors before any work (not a
traceback, nor a setting split into letters), a numeric or empty name names the default
output folder, and ffmpeg failing on a video is named and leaves no cut-off file behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from auralens.cli import main
from auralens.config import ConfigError
from auralens.experiments.runner import ExperimentError, extract_videos, load_experiment

BASE = """\
name: e
kind: pipeline
data: {source: pairs, path: missing.jsonl}
methods: [{name: m, type: pipeline, separator: reference, captioner: classifier,
           composer: template}]
judge: {spec: keyword}
clap: {model: none}
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["experiment", "run", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("override", "message"), [
    ("methods=[x]", "methods must be a list of mappings (e.g. [{name: m, type: pipeline, …}]), "
                    "got ['x']"),
    ("methods=5", "methods must be a list of mappings"),
    ("methods=[{name: m, type: allm, techniques: cot}]",
     "method 'm': techniques must be a list (e.g. [zero-shot, cot]), got 'cot'"),
    ("methods=[{name: m, type: allm, techniques: 5}]", "method 'm': techniques must be a list"),
    ("judge.params=5", "judge.params must be a mapping of options (e.g. {device: cpu}), got 5"),
    ("methods=[{name: m, type: allm, model: {spec: x, params: 3}}]",
     "method 'm': model.params must be a mapping of options"),
    ("methods=[{name: m, type: pipeline, captioner: {spec: classifier, params: [1]}}]",
     "method 'm': captioner.params must be a mapping of options"),
    (("kind=video", "image.generator={spec: x, params: 5}"),
     "image.generator.params must be a mapping"),
    ("data.n=null", "data.n must be a whole number ≥ 1, got None"),
    ("data.seed=null", "data.seed must be a whole number ≥ 0, got None"),
    ("data.max_sources=null", "data.max_sources must be a whole number ≥ 1, got None"),
    ("data.duration=null", "data.duration must be a positive number of seconds, got None"),
    ("subset={n: 1, seed: null}", "subset.seed must be a whole number ≥ 0, got None"),
])
def test_settings_of_the_wrong_shape_are_one_line(tmp_path: Path, capsys,
                                                  override: str | tuple[str, ...],
                                                  message: str) -> None:
    yaml = tmp_path / "e.yaml"
    yaml.write_text(BASE)
    sets = [a for o in ((override,) if isinstance(override, str) else override)
            for a in ("--set", o)]
    code, err = _run(capsys, str(yaml), "--out", str(tmp_path / "o"), *sets)
    assert code == 1 and err.startswith(f"error: {yaml}: {message}"), err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_null_limit_and_subset_size_still_mean_none(tmp_path: Path, capsys) -> None:
    yaml = tmp_path / "e.yaml"
    yaml.write_text(BASE)
    code, err = _run(capsys, str(yaml), "--out", str(tmp_path / "o"), "--set", "data.limit=null",
                     "--set", "subset.n=null", "--set", "seed=null")
    assert code == 1 and "missing.jsonl: pairs manifest not found (data.path)" in err, err


@pytest.mark.parametrize(("variants", "message"), [
    ("variants: [a]", "variants must be a mapping of variant names to settings, got ['a']"),
    ("variants: 5", "variants must be a mapping of variant names to settings, got 5"),
    ("variants: {a: 5}", "variants.a must be a mapping of settings, got 5"),
    ("variants: {a: [1]}", "variants.a must be a mapping of settings, got [1]"),
    ("variants: {b: {}}", "unknown variant 'a'; available: b"),
])
def test_variants_of_the_wrong_shape_are_refused(tmp_path: Path, variants: str,
                                                 message: str) -> None:
    yaml = tmp_path / "e.yaml"
    yaml.write_text(f"{BASE}variant: a\n{variants}\n")
    with pytest.raises(ConfigError) as exc:
        load_experiment(yaml)
    assert str(exc.value) == f"{yaml}: {message}"


@pytest.mark.parametrize(("name", "folder"), [("2024", "2024"), ("", "stem")])
def test_a_numeric_or_empty_name_names_the_default_folder(tmp_path: Path, capsys,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          name: str, folder: str) -> None:
    yaml = tmp_path / "stem.yaml"
    yaml.write_text(BASE.replace("name: e", f"name: {name}"))
    assert load_experiment(yaml)["name"] == folder
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, str(yaml))  # no --out: runs/experiments/<name>
    assert code == 1 and "pairs manifest not found (data.path)" in err, err


def test_ffmpeg_failing_on_a_video_is_named_and_leaves_no_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               ) -> None:
    # an ffmpeg that writes part of the audio, then fails (a broken or cut-off video)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text('#!/bin/sh\nfor last; do :; done\ncase "$last" in *.wav) '
                    'printf partial > "$last";; esac\necho "moov atom not found" >&2\nexit 1\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    (tmp_path / "videos").mkdir()
    video = tmp_path / "videos" / "clip.mp4"
    video.write_bytes(b"not a video")
    frames = tmp_path / "frames"
    with pytest.raises(ExperimentError) as exc:
        extract_videos(tmp_path / "videos", frames)
    assert str(exc.value) == (f"{video}: ffmpeg could not extract the audio "
                              "(moov atom not found)")
    # nothing a rerun would take for the extracted audio
    assert list(frames.iterdir()) == []
