"""One-line refusals of impossible options: mel codec settings, device names, report --out,
post-processing arguments and a file passed where a folder is expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auralens.codecs.base import CODECS
from auralens.errors import AuralensError
from auralens.specs import SpecError

# --- 1. mel codec options ----------------------------------------------------------------


@pytest.mark.parametrize(("spec", "option"), [
    ("mel@sample_rate=0", "sample_rate"),
    ("mel@sample_rate=-8000", "sample_rate"),
    ("mel@fmin=20000", "fmin"),
    ("mel@fmin=-1", "fmin"),
    ("mel@fmax=1e9", "fmax"),
    ("mel@fmax=0", "fmax"),
    ("mel@fmin=4000,fmax=3000", "fmin"),
    ("mel@n_iter=-1", "n_iter"),
    ("mel@nnls_iter=-2", "nnls_iter"),
    ("mel@log_floor=0", "log_floor"),
    ("mel@log_floor=-1e-5", "log_floor"),
    ("mel@n_fft=1000.5", "n_fft"),
    ("mel@n_mels=0", "n_mels"),
    ("mel@hop_length=0", "hop_length"),
    ("mel@momentum=-1", "momentum"),
    ("mel@fmin=11000", "n_mels"),  # below Nyquist, but every band but two is empty
])
def test_mel_refuses_impossible_options(spec: str, option: str) -> None:
    with pytest.raises(SpecError, match=option) as exc:
        CODECS.build(spec)
    assert "\n" not in str(exc.value) and spec in str(exc.value)


def test_mel_accepts_edge_options() -> None:
    codec = CODECS.build("mel@sample_rate=16000,fmin=0,fmax=8000,n_iter=0,n_mels=64,n_fft=400,hop_length=160")
    assert codec.fmax == 8000 and codec.n_iter == 0
    z = codec.encode(np.sin(np.arange(16000) / 5).astype(np.float32))
    assert np.ptp(z) > 1.0  # not a constant latent
    assert codec.decode(z).shape == ((z.shape[1] - 1) * 160,)


# --- 2. device names -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["foo", "meta", "xla", "cuda:x"])
def test_unknown_devices_are_one_line_errors(name: str) -> None:
    from auralens.devices import check_device
    from auralens.encoders.hf import pick_device

    for fn in (check_device, pick_device):
        with pytest.raises(AuralensError, match="unknown device") as exc:
            fn(name)
        assert "\n" not in str(exc.value)


def test_cuda_refused_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from auralens.devices import check_device
    from auralens.encoders.hf import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for fn in (check_device, pick_device):
        for name in ("cuda", "cuda:0"):
            with pytest.raises(AuralensError, match="CUDA is not available"):
                fn(name)
    assert pick_device("auto") == pick_device(None) == "cpu"
    assert pick_device("cpu") == "cpu"


# --- 3. sonify report --out inside a run ---------------------------------------------------


@pytest.mark.parametrize("sub", ["", "renders", "renders/deeper"])
def test_report_refuses_out_inside_a_run(tmp_path: Path, sub: str) -> None:
    from auralens.evaluate.report import ReportError, build_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    out = run / sub if sub else tmp_path / "." / "run"
    with pytest.raises(ReportError, match="--out") as exc:
        build_report([tmp_path / "other", run], out)
    assert "\n" not in str(exc.value)
    assert (run / "run.json").read_text() == "{}"
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]


# --- 4. post-processing arguments ----------------------------------------------------------


@pytest.mark.parametrize(("chain", "match"), [
    ("threshold:150", "threshold"), ("threshold:100.5", "threshold"),
    ("minmax:3", "minmax takes no argument"), ("square:7", "square takes no argument"),
    ("peak:1", "peak takes no argument"), ("none:2", "none takes no argument"),
    ("minmax,square:2", "square"),
])
def test_postprocess_refuses_bad_arguments(chain: str, match: str) -> None:
    from auralens.sonify.postprocess import PostprocessError, parse_chain

    with pytest.raises(PostprocessError, match=match):
        parse_chain(chain)


def test_postprocess_threshold_bounds_accepted() -> None:
    from auralens.sonify.postprocess import apply, parse_chain

    assert parse_chain("threshold:0,threshold:100,wiener:31") == [
        ("threshold", 0.0), ("threshold", 100.0), ("wiener", 31.0)]
    x = np.array([0.1, -1.0, 0.5], np.float32)
    assert np.array_equal(apply(x, "threshold:100"), [0.0, -1.0, 0.0])


# --- 5. a file where a folder is expected --------------------------------------------------


def test_folder_audio_names_a_file_as_not_a_directory(tmp_path: Path) -> None:
    from auralens.evaluate.fad import MetricInputError
    from auralens.evaluate.folders import folder_audio

    f = tmp_path / "clip.wav"
    f.write_bytes(b"RIFF")
    with pytest.raises(MetricInputError, match="is not a directory"):
        folder_audio(f, "evaluated")
    with pytest.raises(MetricInputError, match="directory not found"):
        folder_audio(tmp_path / "missing", "evaluated")
