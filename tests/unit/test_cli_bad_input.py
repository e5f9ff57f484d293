"""Bad command-line input gives one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from auralens.audio import write
from auralens.cli import main


def _run(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_unwritable_output_and_non_text_inputs(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, err = _run(capsys, "data", "synth", "--out", str(blocker / "lib"), "--clips-per-class", "1")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    binary = tmp_path / "config.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    code, err = _run(capsys, "experiment", "run", str(binary))
    assert code == 1 and "not UTF-8" in err


def test_bad_backend_options_name_the_spec(tmp_path: Path, capsys) -> None:
    for name in ("a.wav", "b.wav"):
        write(tmp_path / "d" / name, 0.1 * np.ones(8000, np.float32), 16000)
    code, err = _run(capsys, "evaluate", "fad", str(tmp_path / "d"), str(tmp_path / "d"),
                     "--embedder", "logmel@n_mels=abc")
    assert code == 1 and "logmel@n_mels=abc: invalid options" in err


def test_grow_refuses_an_absurd_depth(tmp_path: Path, capsys) -> None:
    from factories.separate import make_tdcnpp

    ckpt = make_tdcnpp(tmp_path)
    code, err = _run(capsys, "separate", "grow", str(ckpt), "--repeats", "100000",
                     "--out", str(tmp_path / "big.safetensors"))
    assert code == 1 and "at most" in err


def test_grow_and_average_never_write_over_their_input(tmp_path: Path, capsys) -> None:
    from factories.separate import make_tdcnpp

    ckpt = make_tdcnpp(tmp_path)
    before = ckpt.read_bytes()
    other = tmp_path / "other.safetensors"
    other.write_bytes(before)
    for argv in (["grow", str(ckpt), "--repeats", "3", "--out", str(ckpt)],
                 ["average", str(other), str(ckpt), "--out", str(ckpt)],
                 ["average", str(tmp_path), "--out", str(ckpt)]):  # a folder means its model.safetensors
        code, err = _run(capsys, "separate", *argv)
        assert code == 1 and "is the input checkpoint" in err and err.count("\n") == 1, (argv, err)
    assert ckpt.read_bytes() == before
    # a folder as --out is named as such before any work (not a temporary file's error after it)
    for argv in (["grow", str(ckpt), "--repeats", "3", "--out", str(tmp_path)],
                 ["average", str(other), "--out", str(tmp_path)]):
        code, err = _run(capsys, "separate", *argv)
        assert code == 1 and "is a directory" in err and str(tmp_path) in err and ".tmp" not in err, (argv, err)


def test_imagine_batch_fails_when_every_mixture_fails(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "mixes" / "eval"
    folder.mkdir(parents=True)
    for i in range(2):
        (folder / f"example{i:05d}.wav").write_bytes(b"broken")
    code, err = _run(capsys, "imagine", "batch", str(tmp_path / "mixes"), "--out", str(tmp_path / "o"),
                     "--separator", "nmf")
    assert code == 1 and "no mixture could be imagined" in err, err


def test_experiment_name_must_be_a_plain_folder_name(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "e.yaml"
    cfg.write_text("kind: pipeline\nname: ../../elsewhere\n")
    code, err = _run(capsys, "experiment", "run", str(cfg), "--out", str(tmp_path / "o"))
    assert code == 1 and "plain folder name" in err


@pytest.mark.parametrize("option, message", [
    (["--batch-size", "0"], "batch_size must be a whole number ≥ 1, got 0"),
    (["--lr", "-1"], "lr must be a positive number, got -1.0"),
    (["--lr", "nan"], "lr must be a positive number, got nan"),
    (["--hidden-size", "0"], "hidden_size must be a whole number ≥ 1, got 0"),
    (["--mels", "3"], "num_mel_bins must be a whole number ≥ 16, got 3"),
    (["--max-length", "5"], "max_length must be a whole number ≥ 16, got 5"),
    (["--patch-stride", "0"], "patch_stride must be a whole number ≥ 1, got 0"),
])
def test_train_classifier_options_are_checked(tmp_path: Path, capsys, option: list[str],
                                              message: str) -> None:
    code, err = _run(capsys, "train-classifier", str(tmp_path), "--out", str(tmp_path / "o"), *option)
    assert code == 1 and err == f"error: {message}\n"  # the option is refused before the data is read
    assert not (tmp_path / "o").exists()


def _usage_text(err: str) -> str:
    """The usage error without its frame: box-drawing characters, colour codes and line wrapping."""
    err = re.sub(r"\x1b\[[0-9;]*m", "", err)
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", err).split())


GE = "Input should be greater than or equal to"


@pytest.mark.parametrize("argv, message", [
    (["data", "synth", "--out", "X", "--seed", "-1"], f"Invalid value for '--seed': {GE} 0"),
    (["data", "mix", "X", "--out", "Y", "--seed", "-1"], f"Invalid value for '--seed': {GE} 0"),
    (["sonify", "prepare", "X", "--out", "Y", "--limit", "0"], f"Invalid value for '--limit': {GE} 1"),
    (["sonify", "sweep", "X", "--out", "Y", "--layers", "1", "--render-limit", "-1"],
     f"Invalid value for '--render-limit': {GE} 1"),
    (["imagine", "batch", "X", "--out", "Y", "--limit", "-1"], f"Invalid value for '--limit': {GE} 1"),
    (["ui", "--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
    (["separate", "X.wav", "--out", "Y", "--threshold", "-1"], f"Invalid value for '--threshold': {GE} 0"),
    (["separate", "eval", "X", "--out", "Y", "--n", "-1"], f"Invalid value for '--n': {GE} 1"),
    (["separate", "eval", "X", "--out", "Y", "--seconds", "0"], f"Invalid value for '--seconds': {GE} 0.1"),
    (["data", "synth", "--out", "Y", "--classes", ","],
     "Invalid value for --classes: names no class; give a comma list of classes"),
    (["data", "mix", "X", "--out", "Y", "--n", "0"], f"Invalid value for '--n': {GE} 1"),
])
def test_out_of_range_values_are_usage_errors(capsys, argv: list[str], message: str) -> None:
    code, err = _run(capsys, *argv)
    assert code == 2
    assert message in _usage_text(err), err


@pytest.mark.parametrize("override, message", [
    ("data.n=abc", "data.n must be a whole number ≥ 1, got 'abc'"),
    ("data.duration=nan", "data.duration must be a positive number of seconds"),
    ("subset.n=abc", "subset.n must be a whole number ≥ 0"),
    ("seed=-1", "seed must be a whole number ≥ 0"),
    ("data.colour=red", "unknown data key(s) colour"),
    ("grid.technique=[foo]", "unknown technique 'foo'"),
    ("bogus.key=1", "unknown key(s) bogus"),
    ("=1", "has an empty key"),
    ("a=[1,", "not a YAML list or mapping"),
])
def test_experiment_settings_are_checked_before_any_work(tmp_path: Path, capsys, override: str,
                                                         message: str) -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "experiments" / "pipeline.yaml"
    code, err = _run(capsys, "experiment", "run", str(config), "--out", str(tmp_path / "o"),
                     "--set", f"data.path={tmp_path / 'missing'}", "--set", override)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_imagine_config_of_the_wrong_type_is_one_line(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "im.yaml"
    cfg.write_text("separator: 5\n")
    write(tmp_path / "m.wav", 0.1 * np.ones(8000, np.float32), 16000)
    code, err = _run(capsys, "imagine", "run", str(tmp_path / "m.wav"), "--out", str(tmp_path / "o"),
                     "--config", str(cfg))
    assert code == 1 and "separator must be a backend spec" in err and err.count("\n") == 1, err


def test_experiment_with_a_mistyped_backend_option_fails_before_building_data(tmp_path: Path,
                                                                              capsys) -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "experiments" / "pipeline.yaml"
    (tmp_path / "lib").mkdir()
    code, err = _run(capsys, "experiment", "run", str(config), "--out", str(tmp_path / "o"),
                     "--set", f"data.path={tmp_path / 'lib'}", "--set", "models.captioner=classifier@x=1")
    assert code == 1 and "captioner 'classifier@x=1': unknown classifier option(s) x" in err, err
    assert not (tmp_path / "o").exists()
