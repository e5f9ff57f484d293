"""Post-processing steps, checkpoints and training helpers (no dataset needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auralens.errors import CheckpointMismatchError
from auralens.sonify import checkpoint as ckpt
from auralens.sonify import gates, postprocess
from auralens.sonify.train import (
    STUDY_LRS,
    TrainError,
    denormalize,
    gaussian_blur,
    minmax_stats,
    normalize,
    parse_lrs,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_peak_minmax_threshold_square_known_answers() -> None:
    x = np.array([0.1, -0.2, 0.05, 0.4], np.float32)
    assert np.allclose(postprocess.apply(x, "peak"), x / 0.4)
    ref = np.array([-0.5, 0.0, 0.25], np.float32)
    y = postprocess.apply(x, "minmax", reference=ref)
    assert np.isclose(y.min(), -0.5) and np.isclose(y.max(), 0.25)
    assert np.isclose(y[0], (0.1 + 0.2) / 0.6 * 0.75 - 0.5)
    assert np.allclose(postprocess.apply(x, "threshold:30"), [0, -0.2, 0, 0.4])
    assert np.allclose(postprocess.apply(x, "square"), np.sign(x) * x * x)
    chained = postprocess.apply(x, "peak,square")
    assert np.allclose(chained, np.sign(x) * (x / 0.4) ** 2)


def test_wiener_smooths_noise() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    clean = np.sin(2 * np.pi * 5 * t)
    noisy = (clean + 0.3 * rng.standard_normal(t.size)).astype(np.float32)
    out = postprocess.apply(noisy, "wiener")
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


@pytest.mark.parametrize("chain", ["none", "peak", "minmax", "threshold:10", "square", "wiener",
                                   "minmax,wiener,peak"])
def test_silent_and_nan_inputs_stay_finite(chain: str) -> None:
    for x in (np.zeros(1000, np.float32), np.full(1000, np.nan, np.float32)):
        out = postprocess.apply(x, chain, reference=np.zeros(1000, np.float32))
        assert out.shape == (1000,) and np.all(np.isfinite(out)) and np.all(out == 0)


def test_chain_parsing() -> None:
    assert postprocess.parse_chain("minmax, threshold:10") == [("minmax", None), ("threshold", 10.0)]
    assert postprocess.chain_name("minmax,wiener") == "minmax+wiener"
    assert postprocess.chain_name(None) == "none"
    with pytest.raises(postprocess.PostprocessError, match="unknown post-processing step"):
        postprocess.parse_chain("reverb")
    with pytest.raises(postprocess.PostprocessError, match="not a number"):
        postprocess.parse_chain("threshold:lots")
    with pytest.raises(postprocess.PostprocessError, match="reference"):
        postprocess.apply(np.ones(4), "minmax")


def _header(extractor: str = "ext-a", codec: str = "cod-a", layer: object = 3) -> dict:
    return {"model_name": "v1", "model_args": gates.gate_args("v1", 8, 4, 10, 12),
            "extractor": {"spec": extractor, "name": extractor, "layer": layer},
            "codec": {"spec": codec, "name": codec}, "normalize": "minmax", "epoch": 2}


def test_checkpoint_round_trip_and_mismatch(tmp_path) -> None:
    torch.manual_seed(0)
    model = gates.build("v1", 8, 4, 10, 12)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 8, 10)).sum().backward()
    opt.step()
    norm = {"emb_min": np.zeros(8, np.float32), "emb_max": np.ones(8, np.float32)}
    path = ckpt.save(tmp_path / "last.safetensors", model, _header(), optimizer=opt, norm=norm, rng=True)
    loaded, header, stats = ckpt.load_gate(path, extractor="ext-a", layer=3, codec="cod-a")
    x = torch.randn(1, 8, 10)
    model.eval()
    assert torch.allclose(loaded(x), model(x))
    assert header["epoch"] == 2 and "versions" in header and np.array_equal(stats["emb_max"], np.ones(8))
    ck = ckpt.load(path)
    opt2 = torch.optim.AdamW(gates.build("v1", 8, 4, 10, 12).parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt.optimizer_state(ck))
    assert int(opt2.state_dict()["state"][0]["step"]) == 1
    for kwargs, what in (({"extractor": "ext-b"}, "extractor"), ({"codec": "cod-b"}, "codec"),
                         ({"layer": 4}, "layer")):
        with pytest.raises(CheckpointMismatchError, match=what):
            ckpt.load_gate(path, **kwargs)
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "missing.safetensors")


def test_minmax_normalisation_round_trip() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(5, 3, 7)).astype(np.float32)
    lat = rng.normal(size=(5, 2, 9)).astype(np.float32)
    lat[:, 1] = 4.0  # a constant channel must not divide by zero
    s = minmax_stats(emb, lat)
    n = normalize(emb, s["emb_min"], s["emb_max"])
    assert np.isclose(n.min(), 0) and np.isclose(n.max(), 1)
    assert np.allclose(denormalize(n, s["emb_min"], s["emb_max"]), emb, atol=1e-5)
    nl = normalize(lat, s["lat_min"], s["lat_max"])
    assert np.all(np.isfinite(nl)) and np.allclose(denormalize(nl, s["lat_min"], s["lat_max"]), lat, atol=1e-5)


def test_gaussian_blur_preserves_mean_and_smooths() -> None:
    x = torch.zeros(1, 20, 30)
    x[0, 10, 15] = 1.0
    y = gaussian_blur(x, sigma=1.5)
    assert y.shape == x.shape
    assert torch.isclose(y.sum(), torch.tensor(1.0), atol=1e-4)  # reflect padding, impulse far from edges
    assert y[0, 10, 15] < 0.2 and y[0, 10, 16] > 0
    const = torch.full((2, 5, 9), 2.5)  # fewer feature rows than the 13-tap kernel half-width+1
    assert torch.allclose(gaussian_blur(const, 2.0), const, atol=1e-5)


def test_parse_lrs() -> None:
    assert parse_lrs("study") == list(STUDY_LRS) and len(STUDY_LRS) == 11
    assert parse_lrs("1e-3, 5e-4") == [1e-3, 5e-4]
    with pytest.raises(TrainError, match="not a number"):
        parse_lrs("fast")
    for typo in ("1e-3,,1e-2", "1e-3,", ",1e-3"):  # a stray comma used to drop a rate unnoticed
        with pytest.raises(TrainError, match="an empty entry in the list"):
            parse_lrs(typo)
