"""The 12 gates and the time alignment helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auralens.sonify import align, gates

# Small stand-ins for AST ([12 freq × 3 time patches] tokens) and HuBERT (50 fps) shapes.
SMALL_SHAPES = {
    "ast-like": dict(in_dim=24, out_dim=8, frames_in=36, frames_out=21),
    "hubert-like": dict(in_dim=24, out_dim=8, frames_in=13, frames_out=22),
}


pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.mark.parametrize("shape", list(SMALL_SHAPES))
@pytest.mark.parametrize("name", gates.GATE_NAMES)
def test_every_gate_forward_backward(name: str, shape: str) -> None:
    s = SMALL_SHAPES[shape]
    torch.manual_seed(0)
    gate = gates.build(name, **s)
    x = torch.randn(3, s["in_dim"], s["frames_in"])
    y = gate(x)
    assert y.shape == (3, s["out_dim"], s["frames_out"])
    loss = y.square().mean()
    loss.backward()
    grads = [p.grad for p in gate.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["v0", "v1", "v2"])
def test_real_shapes_ast_and_hubert(name: str) -> None:
    # AST patch tokens (1212, time-major) and HuBERT features (249 frames) → DAC latent [64, 431].
    for frames_in in (1212, 249):
        gate = gates.build(name, 768, 64, frames_in, 431).eval()
        with torch.no_grad():
            assert gate(torch.randn(1, 768, frames_in)).shape == (1, 64, 431)


def test_aliases_and_unknown() -> None:
    assert gates.canonical("conv") == "v1" and gates.canonical("V11") == "v11"
    assert gates.alias("v8") == "conv-rdn"
    assert len(set(gates.GATE_ALIASES.values())) == 12
    with pytest.raises(gates.UnknownGateError, match="unknown gate"):
        gates.canonical("v12")


def test_layer_orders_match_the_study() -> None:
    def kinds(name: str) -> list[str]:
        names = {nn: k for k, nn in [("Linear", torch.nn.Linear), ("Conv", gates.Conv2dSame),
                                     ("ReLU", torch.nn.ReLU), ("Dropout", torch.nn.Dropout),
                                     ("LayerNorm", torch.nn.LayerNorm), ("GroupNorm", torch.nn.GroupNorm),
                                     ("Attn", gates.SelfAttentionBlock)]}
        out = []
        for m in gates.build(name, 16, 8, 10, 10).body:
            k = names.get(type(m))
            if k:
                out.append(k if k != "Dropout" else f"Dropout({m.p})")
        return out

    assert kinds("lin") == ["Linear", "Linear"]
    assert kinds("conv") == ["Conv", "ReLU", "Linear", "Linear"]
    assert kinds("attn") == ["Linear", "Attn", "Linear"]
    assert kinds("conv-r") == ["Conv", "ReLU", "Conv", "ReLU", "Linear", "Linear"]
    assert kinds("conv-d") == ["Conv", "Conv", "ReLU", "Dropout(0.2)", "Linear", "Linear"]
    assert kinds("conv-rdd") == ["Conv", "ReLU", "Dropout(0.1)", "Conv", "ReLU", "Dropout(0.1)", "Linear", "Linear"]
    assert kinds("conv-ln") == ["Conv", "Conv", "ReLU", "LayerNorm", "Linear", "Linear"]
    assert kinds("conv-gn") == ["Conv", "Conv", "ReLU", "GroupNorm", "Linear", "Linear"]
    assert kinds("conv-rdn") == ["Conv", "ReLU", "Dropout(0.1)", "Conv", "ReLU", "Dropout(0.1)",
                                 "LayerNorm", "Linear", "Linear"]
    assert kinds("lin-d") == ["Linear", "Dropout(0.2)", "Linear"]
    assert kinds("lin-r") == ["Linear", "Linear", "ReLU"]
    assert kinds("lin-c") == ["Linear", "Conv", "ReLU", "Linear", "Linear"]
    conv = gates.build("conv", 16, 8, 10, 10).body[1].conv
    assert conv.kernel_size == (10, 10) and conv.stride == (2, 1)
    attn = gates.build("attn", 16, 8, 10, 10).body[2].attn
    assert attn.num_heads == 3 and attn.embed_dim % 3 == 0


@pytest.mark.parametrize("mode", align.RESAMPLE_MODES)
def test_resample_modes_and_frame_override(mode: str) -> None:
    gate = gates.build("conv", 12, 6, 40, 17, resample=mode)
    x = torch.randn(2, 12, 40)
    assert gate(x).shape == (2, 6, 17)
    # Another clip length: the caller states the latent frames it needs.
    assert gate(torch.randn(1, 12, 55), frames_out=23).shape == (1, 6, 23)


def test_gate_rejects_wrong_input_dim() -> None:
    with pytest.raises(ValueError, match=r"expects \[B, 12, frames\]"):
        gates.build("lin", 12, 6, 10, 10)(torch.randn(1, 11, 10))


# --- alignment ------------------------------------------------------------------------

def test_channel_first_is_a_transpose() -> None:
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)  # [frames=4, dim=3]
    out = align.channel_first(emb)
    assert out.shape == (3, 4) and np.array_equal(out, emb.T)


def test_patch_grid_to_time_major_known_answer() -> None:
    f, t, dim = 3, 4, 2
    # token value encodes (f, t): 10 * f + t, in AST's frequency-major order.
    tokens = np.array([[10 * fi + ti] * dim for fi in range(f) for ti in range(t)], np.float32)
    out = align.patch_grid_to_time_major(tokens, freq_patches=f)
    expected = [10 * fi + ti for ti in range(t) for fi in range(f)]
    assert out[:, 0].tolist() == expected
    pooled = align.pool_patch_grid(tokens, freq_patches=f)
    assert pooled[:, 0].tolist() == [10 + ti for ti in range(t)]  # mean over f of 10f + t
    with pytest.raises(ValueError, match=r"^11 tokens do not form a grid with 3 frequency patches$"):
        align.patch_grid_to_time_major(tokens[:-1], freq_patches=f)


def test_interp_keeps_constants_and_ramps() -> None:
    const = torch.full((1, 2, 50), 3.0)
    assert torch.allclose(align.interp_frames(const, 17), torch.full((1, 2, 17), 3.0))
    m = align.interp_matrix(7, 13)
    assert m.shape == (13, 7) and torch.allclose(m.sum(1), torch.ones(13))
    x = torch.randn(1, 3, 7)
    assert torch.allclose(align.interp_frames(x, 13), x @ m.T, atol=1e-6)


def test_dense_resampler_starts_as_interpolation() -> None:
    r = align.TimeResampler(4, 9, 20, "dense")
    x = torch.randn(2, 4, 9)
    assert torch.allclose(r(x), align.interp_frames(x, 20), atol=1e-6)
    with pytest.raises(ValueError, match="unknown resample mode"):
        align.TimeResampler(4, 9, 20, "reshape")



def test_dense_resampler_says_when_it_stretches_another_length(caplog) -> None:
    """A clip of another length than the training clips is squeezed to the trained frame
    count before the dense map: said once per length, not per call."""
    import logging

    r = align.TimeResampler(4, 9, 20, "dense")
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.align"):
        r(torch.randn(1, 4, 9))
        assert caplog.text == ""
        for _ in range(3):
            assert r(torch.randn(1, 4, 22), frames_out=49).shape == (1, 4, 49)
    assert caplog.text.count("trained on 9 frames; 22 frames are interpolated to 9") == 1


def test_to_gate_input_reorders_flat_patch_grids_only() -> None:
    tokens = np.arange(2 * 3 * 4, dtype=np.float32).reshape(6, 4)  # F=2 × T=3 tokens, dim 4
    flat = align.to_gate_input(tokens, {"layout": "flat", "freq_patches": 2})
    assert flat.shape == (4, 6)
    assert np.array_equal(flat, align.patch_grid_to_time_major(tokens, 2).T)
    # Frame-based extractors (no grid info) and AST's own time layout are only transposed.
    assert np.array_equal(align.to_gate_input(tokens, {}), tokens.T)
    assert np.array_equal(align.to_gate_input(tokens, {"layout": "time", "freq_patches": 2}), tokens.T)


def test_to_gate_input_drops_padding_time_patches() -> None:
    tokens = np.arange(2 * 5 * 3, dtype=np.float32).reshape(10, 3)  # F=2 × T=5, dim 3
    info = {"layout": "flat", "freq_patches": 2, "valid_time_patches": 3}
    out = align.to_gate_input(tokens, info)
    assert out.shape == (3, 6)  # 3 time steps × 2 frequency patches
    assert np.array_equal(out, align.patch_grid_to_time_major(tokens, 2)[:6].T)
    assert align.to_gate_input(tokens, info, valid_time_patches=5).shape == (3, 10)
