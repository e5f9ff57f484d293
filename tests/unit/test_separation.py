"""Separation: TDCN++ pieces, PIT loss, metrics, baselines, activity filter."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from factories.separate import micro_config

from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.scene.separate.activity import ActivityConfig, count_accuracy, filter_estimates
from auralens.scene.separate.loss import pairwise_loss, pit_loss
from auralens.scene.separate.loss import si_snr as si_snr_torch
from auralens.scene.separate.metrics import bss_eval, pit_align, score_mixture, si_snr, summarize
from auralens.scene.separate.nmf import NMFSeparator
from auralens.scene.separate.oracle import OracleMaskSeparator
from auralens.scene.separate.tdcnpp import (
    PRESETS,
    TDCNpp,
    TDCNppConfig,
    chunked,
    load_checkpoint,
    mixture_consistency,
    save_checkpoint,
)

SR = 16000


def _scene(seconds: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three clearly different sources: a low tone, a high tone burst, and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    low = 0.3 * np.sin(2 * np.pi * 220 * t)
    high = 0.3 * np.sin(2 * np.pi * 3000 * t) * (t > seconds / 2)
    noise = 0.05 * rng.standard_normal(t.size)
    refs = np.stack([low, high, noise]).astype(np.float32)
    return refs.sum(0), refs


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("consistency", ["uniform", "learned"])
def test_mixture_consistency_sums_to_mixture(consistency):
    torch.manual_seed(0)
    model = TDCNpp(micro_config(consistency=consistency)).eval()
    mix = torch.randn(2, 8000) * 0.3
    with torch.no_grad():
        est, masks = model(mix, return_masks=True)
    assert est.shape == (2, 4, 8000)
    assert masks.shape[:3] == (2, 4, 257) and float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert float((est.sum(1) - mix).abs().max()) < 1e-5
    # Without the projection the raw masked estimates do not sum to the mixture.
    raw = TDCNpp(micro_config(consistency="none")).eval()
    with torch.no_grad():
        assert float((raw(mix).sum(1) - mix).abs().max()) > 1e-2


def test_mixture_consistency_projection_weights():
    est = torch.zeros(1, 3, 4)
    mix = torch.ones(1, 4)
    w = torch.tensor([[0.5, 0.25, 0.25]])
    out = mixture_consistency(est, mix, w)
    assert torch.allclose(out[0, :, 0], torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(mixture_consistency(est, mix).sum(1), mix)


def test_presets_and_block_layout():
    fuss = PRESETS["fuss"]
    assert (fuss.repeats, fuss.blocks_per_repeat, fuss.bottleneck, fuss.conv_channels) == (4, 8, 256, 512)
    model = TDCNpp(fuss)
    assert len(model.blocks) == 32
    assert [b.depthwise.dilation[0] for b in model.blocks[:8]] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert float(model.blocks[5].scale.detach()) == pytest.approx(0.9**5)
    assert model.blocks[0].depthwise.groups == 512  # depthwise-separable
    tiny_params = sum(p.numel() for p in TDCNpp(PRESETS["tiny"]).parameters())
    assert tiny_params * 4 < 10 * 2**20


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    model = TDCNpp(micro_config()).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    loaded, header = load_checkpoint(path)
    assert header["model_args"]["bottleneck"] == 16
    x = torch.randn(1, 4000)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    with pytest.raises(CheckpointMismatchError, match="config mismatch"):
        load_checkpoint(path, expect=micro_config(bottleneck=32))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="not a TDCN"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(AuralensError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_a_loaded_separator_is_named_by_its_weights(tmp_path):
    """run.json's revision of a TDCN++ checkpoint is its bytes' SHA-256 prefix: another
    training of the same config gets another revision."""
    import hashlib

    from auralens.encoders.hf import backend_record
    from auralens.scene.separate.run import load_separator
    from auralens.scene.separate.tdcnpp import DEFAULT_CHECKPOINT

    record = backend_record(load_separator(None))
    assert record["revision"] == hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()[:16]
    revisions = set()
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = save_checkpoint(tmp_path / f"m{seed}.safetensors", TDCNpp(micro_config()))
        got = backend_record(load_separator(f"tdcnpp:{path}"))
        assert got["name"] == f"tdcnpp:{path}"
        revisions.add(got["revision"])
    assert len(revisions) == 2
    assert backend_record(load_separator("nmf")) == {"name": load_separator("nmf").name, "revision": ""}


def test_tiny_model_overfits_a_few_mixtures():
    torch.manual_seed(0)
    model = TDCNpp(micro_config())
    scenes = [_scene(0.3, seed=s) for s in range(3)]
    mix = torch.from_numpy(np.stack([m for m, _ in scenes]))
    refs = torch.from_numpy(np.stack([np.concatenate([r, np.zeros((1, r.shape[1]), np.float32)])
                                      for _, r in scenes]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, _ = pit_loss(refs, model(mix), mix)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < losses[0] - 3.0, losses


def test_chunked_overlap_add_matches_unchunked():
    rng = np.random.default_rng(0)
    mix = rng.standard_normal(5000).astype(np.float32)
    # A pointwise separator: chunking must reproduce it exactly and keep the sum.
    def pointwise(x):
        return np.stack([0.2 * x, 0.3 * x, 0.5 * x])

    out = chunked(pointwise, mix, chunk=1200, overlap=300)
    assert np.allclose(out, pointwise(mix), atol=1e-6)
    # A separator whose output order flips from chunk to chunk is re-aligned.
    calls = iter(itertools.count())

    def flipping(x):
        est = pointwise(x)
        return est[::-1] if next(calls) % 2 else est

    assert np.allclose(chunked(flipping, mix, 1200, 300), pointwise(mix), atol=1e-6)


def test_chunked_model_close_to_unchunked():
    from auralens.scene.separate.tdcnpp import TDCNppSeparator

    torch.manual_seed(0)
    cfg = micro_config(norm="frame", blocks_per_repeat=2, repeats=1)  # receptive field 5 frames
    sep = TDCNppSeparator(TDCNpp(cfg), chunk_seconds=1.0, overlap_seconds=0.25)
    mix = _scene(2.6)[0]
    whole = sep._run(mix)
    parts = sep.separate(mix)
    assert parts.shape == whole.shape == (4, mix.size)
    assert np.max(np.abs(parts.sum(0) - mix)) < 1e-5
    assert np.mean(si_snr(parts, whole)) > 25.0


# ----------------------------------------------------------------------------- loss


def test_pit_picks_best_permutation():
    mix, refs3 = _scene(0.25)
    refs = np.concatenate([refs3, np.zeros((1, refs3.shape[1]), np.float32)])
    true_perm = [2, 0, 3, 1]  # reference i sits in estimate true_perm[i]
    est = np.zeros_like(refs)
    rng = np.random.default_rng(1)
    for i, j in enumerate(true_perm):
        est[j] = refs[i] + 0.01 * rng.standard_normal(refs.shape[1])
    r, e, m = (torch.from_numpy(a[None]) for a in (refs, est, mix))
    loss, perm = pit_loss(r, e, m)
    assert perm[0].tolist() == true_perm
    pair = pairwise_loss(r, e, m)[0]
    manual = min(sum(float(pair[i, p[i]]) for i in range(4)) for p in itertools.permutations(range(4)))
    assert float(loss) == pytest.approx(manual / 4, rel=1e-5)
    # Active refs use 10 log10(err + τ‖y‖²); the empty slot uses 10 log10(‖ŷ‖² + τ′‖x‖²).
    y, yh = refs[0].astype(np.float64), est[true_perm[0]].astype(np.float64)
    expect = 10 * np.log10(((y - yh) ** 2).sum() + 1e-3 * (y**2).sum())
    assert float(pair[0, true_perm[0]]) == pytest.approx(expect, abs=1e-3)
    yh3 = est[true_perm[3]].astype(np.float64)
    expect0 = 10 * np.log10((yh3**2).sum() + 1e-2 * (mix.astype(np.float64) ** 2).sum())
    assert float(pair[3, true_perm[3]]) == pytest.approx(expect0, abs=1e-3)


# ----------------------------------------------------------------------------- metrics


def test_si_snr_known_answers():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000)
    ref -= ref.mean()
    noise = rng.standard_normal(4000)
    noise -= noise.mean()
    noise -= (noise @ ref) / (ref @ ref) * ref  # orthogonal to the reference
    noise *= np.sqrt((ref @ ref) / 10 / (noise @ noise))  # 10 dB below it
    assert si_snr(ref + noise, ref) == pytest.approx(10.0, abs=1e-6)
    assert si_snr(3.0 * (ref + noise), ref) == pytest.approx(10.0, abs=1e-6)  # scale-invariant
    # FUSS's form: within ±80 dB whatever the level, the mean not removed
    assert si_snr(ref, ref) == pytest.approx(80.0, abs=1e-6)
    assert si_snr(1e-4 * ref, ref) == pytest.approx(80.0, abs=1e-6)
    assert si_snr(np.zeros_like(ref), ref) == pytest.approx(-80.0, abs=1e-6)
    zero_mean = ref / np.sqrt(ref @ ref / ref.size)  # unit power
    offset = zero_mean + 0.3  # cos² = 1 / (1 + 0.3²): the offset is the error
    assert si_snr(zero_mean, offset) == pytest.approx(10 * np.log10(1 / 0.09), abs=1e-6)
    near = ref + 1e-3 * noise  # 70 dB: noise/signal r = 1e-7, near the 1e-8 floor
    r, eps = 1e-7, 1e-8
    assert si_snr(near, ref) == pytest.approx(
        10 * np.log10((1 / (1 + r) + eps) / (r / (1 + r) + eps)), abs=1e-6)
    t = si_snr_torch(torch.tensor(ref + noise), torch.tensor(ref))
    assert float(t) == pytest.approx(10.0, abs=1e-4)


def test_score_mixture_fuss_rules():
    mix, refs = _scene(0.5)
    padded = np.concatenate([refs, np.zeros((1, refs.shape[1]), np.float32)])
    est = padded[[3, 2, 0, 1]]  # perfect, permuted, silent fourth output
    score = score_mixture(mix, padded, est, bss=True)
    assert score.n_sources == 3
    assert sorted(score.pairs) == [(0, 2), (1, 3), (2, 1)]
    assert min(score.si_snr) > 60 and min(score.si_snri) > 0
    assert len(score.sdr) == 3 and min(score.sdr) > 30
    assert pit_align(refs, est).tolist() == [2, 3, 1]
    # Identity (the mixture copied to every output) has SI-SNRi exactly 0.
    ident = score_mixture(mix, padded, np.stack([mix] * 4))
    assert np.allclose(ident.si_snri, 0.0, atol=1e-9)
    # An estimate 30 dB below the quietest reference is not an active pair.
    quiet = est.copy()
    quiet[2] *= 10 ** (-40 / 20) * np.sqrt((refs[1] ** 2).mean() / (refs[0] ** 2).mean())
    assert len(score_mixture(mix, padded, quiet).si_snr) == 2


def _run_python(code: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (torch's thread settings are process-wide)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_bss_eval_survives_explicit_torch_threads():
    # torch's batched float64 solve (oneMKL) broke once set_num_threads had been called, which
    # made every bss_eval fail; the known answers must hold in such a process.
    proc = _run_python("""
        import json
        import numpy as np
        import torch
        torch.set_num_threads(1)
        torch.set_num_threads(2)
        from auralens.scene.separate.metrics import bss_eval

        rng = np.random.default_rng(0)
        refs = rng.standard_normal((2, 16000))
        noise = rng.standard_normal(refs.shape)
        noise *= np.sqrt((refs**2).sum(-1, keepdims=True) / (noise**2).sum(-1, keepdims=True) / 100)
        noisy = bss_eval(refs, refs + noise)  # 20 dB SNR
        gain = bss_eval(refs, np.array([[0.5], [-2.0]]) * refs)
        print(json.dumps({"noisy": [m.tolist() for m in noisy], "gain": [m.tolist() for m in gain]}))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    sdr, sir, sar = (np.array(m) for m in out["noisy"])
    assert np.all(np.isfinite(sdr)) and np.all(np.isfinite(sir)) and np.all(np.isfinite(sar))
    # The 512-tap filter absorbs ~512/16000 of the noise: SDR sits just above the SNR.
    assert np.allclose(sdr, 20.0, atol=0.5)
    assert np.allclose(sar, 20.0, atol=0.5)
    assert np.all(sir > 30)  # the two references are independent
    assert min(out["gain"][0]) > 60  # a gain is a (one-tap) filter: no distortion


def test_bss_eval_matches_fast_bss_eval():
    pytest.importorskip("fast_bss_eval")
    rng = np.random.default_rng(3)
    t = 6000
    refs = np.cumsum(rng.standard_normal((3, t)), -1) * 0.05  # coloured, so the filter matters
    mixing = np.eye(3) + 0.3 * rng.standard_normal((3, 3))
    h = np.r_[1.0, 0.3 * rng.standard_normal(7)]
    est = np.stack([np.convolve(r, h)[:t] for r in mixing @ refs]) + 0.1 * rng.standard_normal((3, t))
    ours = np.array(bss_eval(refs, est))
    # The reference values come from a fresh process, where fast_bss_eval's torch solve works.
    proc = _run_python("""
        import json
        import sys
        import numpy as np
        import torch
        import fast_bss_eval

        refs, est = (np.array(x) for x in json.load(sys.stdin))
        rms = np.sqrt((refs**2).mean(-1, keepdims=True))  # the same jitter as ours
        refs = refs + 2e-6 * rms * np.random.default_rng(0).standard_normal(refs.shape)
        out = fast_bss_eval.bss_eval_sources(torch.from_numpy(refs), torch.from_numpy(est),
                                             compute_permutation=False, clamp_db=100)
        print(json.dumps([m.tolist() for m in out]))
    """, stdin=json.dumps([refs.tolist(), est.tolist()]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert np.all(np.isfinite(ours))
    assert np.allclose(ours, expected, atol=1e-6)
    # One reference: SIR is undefined and reported as NaN.
    sdr, sir, sar = bss_eval(refs[:1], est[:1])
    assert np.isnan(sir).all() and np.isfinite(sdr).all() and np.allclose(sdr, sar)


def test_bss_eval_does_not_depend_on_level():
    # Quiet but active references (FUSS counts RMS > 1e-8) must score as loud ones do.
    rng = np.random.default_rng(1)
    refs = rng.standard_normal((2, 8000))
    est = refs + 0.1 * rng.standard_normal(refs.shape)  # ≈ 20 dB
    loud = np.array(bss_eval(refs, est))
    for gain in (1e-4, 1e-6, 1e-7):
        assert np.allclose(np.array(bss_eval(gain * refs, gain * est)), loud, atol=1e-3), gain


def test_fewer_estimates_than_references_still_scores():
    mix, refs = _scene(0.5)  # three active references
    est = np.stack([refs[0], refs[1] + refs[2]])  # a two-output separator
    score = score_mixture(mix, refs, est, bss=True)
    assert score.n_sources == 3
    # Two pairs are scored; the third reference meets a silent output (not an active pair).
    assert len(score.si_snr) == 2 and len(score.sdr) == 2
    assert sorted(i for i, _ in score.pairs)[0] == 0 and max(score.si_snr) > 60
    summary = summarize([score])
    assert summary["n_mixtures"] == 1 and np.isfinite(summary["MSi"])


def test_summarize_1s_and_msi():
    one = score_mixture(np.ones(10), np.ones((1, 10)), np.ones((4, 10)))
    assert one.n_sources == 1
    from auralens.scene.separate.metrics import MixtureScore

    scores = [MixtureScore("a", 1, si_snr=[20.0], si_snri=[0.0]),
              MixtureScore("b", 2, si_snr=[5.0, 7.0], si_snri=[3.0, 5.0], n_active_est=2, n_dropped=2),
              MixtureScore("c", 3, si_snr=[1.0], si_snri=[8.0], n_active_est=4, n_dropped=0)]
    s = summarize(scores)
    assert s["1S"] == 20.0
    assert s["MSi"] == pytest.approx((3 + 5 + 8) / 3)
    assert s["by_count"][2]["equal"] == 1.0 and s["by_count"][3]["over"] == 1.0


# ----------------------------------------------------------------------------- baselines


def test_oracle_irm_beats_identity():
    mix, refs = _scene(1.0)
    irm = OracleMaskSeparator("irm")
    est = irm.separate_with_refs(mix, refs)
    assert est.shape == (4, mix.size)
    assert np.max(np.abs(est.sum(0) - mix)) < 1e-4  # ratio masks sum to one
    oracle = score_mixture(mix, refs, est)
    ident = score_mixture(mix, refs, np.stack([mix] * 4))
    assert np.mean(oracle.si_snri) > np.mean(ident.si_snri) + 10
    ibm = OracleMaskSeparator("ibm").separate_with_refs(mix, refs)
    assert np.mean(score_mixture(mix, refs, ibm).si_snri) > 5
    with pytest.raises(AuralensError, match="reference"):
        irm.separate(mix)


def test_nmf_separates_two_tones():
    t = np.arange(SR) / SR
    a = (0.3 * np.sin(2 * np.pi * 300 * t) * (t < 0.6)).astype(np.float32)
    b = (0.3 * np.sin(2 * np.pi * 2500 * t) * (t > 0.4)).astype(np.float32)
    mix = a + b
    est = NMFSeparator(num_sources=2, n_components=6, n_iter=60).separate(mix)
    assert est.shape == (2, SR)
    assert np.max(np.abs(est.sum(0) - mix)) < 1e-3
    assert np.mean(score_mixture(mix, np.stack([a, b]), est).si_snri) > 3


# ----------------------------------------------------------------------------- activity


def test_activity_rules():
    rng = np.random.default_rng(0)
    n = 2 * SR
    mix = (0.1 * rng.standard_normal(n)).astype(np.float32)
    loud = mix * 0.8
    silent = np.zeros(n, np.float32)
    burst = np.zeros(n, np.float32)
    burst[:1024] = 0.05 * rng.standard_normal(1024)  # 64 ms at −6 dB re the noise
    quiet = mix * 0.05  # −26 dB: below the 10 % RMS rule
    est = np.stack([loud, silent, burst, quiet])
    study = filter_estimates(est, mix + burst)
    # The burst's global RMS is < 10 % of the mixture's: the study rule drops it …
    assert [d["kept"] for d in study] == [True, False, False, False]
    assert "RMS" in study[3]["reason"] and "silent" in study[1]["reason"]
    # … while the frame rule sees it dominate its frames.
    frames = filter_estimates(est, mix + burst, ActivityConfig(rule="frames", frame_db=-10))
    assert [d["kept"] for d in frames] == [True, False, True, False]
    # Digital silence around a short event does not count against it: 0.125 s in 10 s.
    lone = np.zeros(10 * SR, np.float32)
    lone[SR:SR + SR // 8] = 0.3 * rng.standard_normal(SR // 8)
    alone = filter_estimates(np.stack([lone, np.zeros_like(lone)]), lone, ActivityConfig(rule="frames"))
    assert [d["kept"] for d in alone] == [True, False]
    assert alone[0]["scores"]["active_frame_fraction"] == pytest.approx(1.0)
    rel = filter_estimates(est, mix + burst, ActivityConfig(rule="relative_db", min_db=-30))
    assert [d["kept"] for d in rel] == [True, False, True, True]
    # The first rule alone is configurable: a huge threshold drops everything.
    none = filter_estimates(est, mix, ActivityConfig(threshold=1e9))
    assert not any(d["kept"] for d in none) and "max" in none[0]["reason"]
    # Non-finite or empty estimates are never kept.
    tone = np.sin(np.arange(100, dtype=np.float32))
    bad = filter_estimates(np.stack([np.full(100, np.nan, np.float32), tone]), tone)
    assert [d["kept"] for d in bad] == [False, True] and "non-finite" in bad[0]["reason"]
    assert [d["kept"] for d in filter_estimates(np.zeros((2, 0), np.float32), np.zeros(0))] == [False, False]
    assert count_accuracy([(2, 2), (3, 2), (1, 2), (4, 4)]) == {"equal": 0.5, "under": 0.25, "over": 0.25}
    with pytest.raises(ValueError):
        ActivityConfig(rule="magic")


@pytest.mark.parametrize("rule", ["study", "relative_db", "frames"])
def test_activity_drops_constant_estimates_and_everything_of_a_constant_mixture(rule):
    cfg = ActivityConfig(rule=rule)
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    dc = np.full(SR, 0.5, np.float32)
    # A DC offset passes every energy rule, but there is nothing to hear in it.
    out = filter_estimates(np.stack([dc, noise, np.zeros(SR, np.float32)]), dc + noise, cfg)
    assert [(d["kept"], d["reason"], d["audible"]) for d in out][0::2] == [
        (False, "constant (no sound)", False), (False, "silent (all zeros)", False)]
    assert out[0]["scores"]["ac_rms"] == 0.0 and out[0]["scores"]["rms"] == pytest.approx(0.5)
    assert out[1]["audible"] and "constant" not in out[1]["reason"]
    # A constant mixture holds no source: whatever the separator made of it is dropped.
    wobble = dc + 0.01 * noise  # what a separator returns for a DC input
    out = filter_estimates(np.stack([wobble, dc - wobble]), dc, cfg)
    assert [(d["kept"], d["reason"], d["audible"]) for d in out] == [
        (False, "the mixture is constant (no sound)", False)] * 2
    # One sample is a constant too.
    one = filter_estimates(np.array([[0.5], [0.0]], np.float32), np.array([0.5], np.float32), cfg)
    assert [d["reason"] for d in one] == ["constant (no sound)", "silent (all zeros)"]
    # Real audio over a DC offset is still judged by the rule.
    assert filter_estimates((dc + noise)[None], dc + noise, cfg)[0]["kept"]


@pytest.mark.parametrize("kw, match", [
    ({"threshold": -0.1}, "threshold must be ≥ 0"),
    ({"min_rms_ratio": -1.0}, "min_rms_ratio must be ≥ 0"),
    ({"min_rms_ratio": float("nan")}, "min_rms_ratio must be ≥ 0"),
    ({"min_active_frac": 5.0}, "min_active_frac must be from 0 to 1"),
    ({"min_active_frac": -0.5}, "min_active_frac must be from 0 to 1"),
])
def test_activity_thresholds_out_of_range_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        ActivityConfig(**kw)
    ActivityConfig(threshold=0.0, min_rms_ratio=0.0, min_active_frac=1.0)  # the bounds are fine


def test_config_validation():
    with pytest.raises(ValueError):
        TDCNppConfig(norm="batch")
    assert TDCNppConfig().num_bins == 257


def test_score_mixture_refuses_shapes_and_non_finite_samples() -> None:
    from auralens.scene.separate.metrics import pit_align, score_mixture

    rng = np.random.default_rng(0)
    refs = rng.standard_normal((2, 800))
    mix = refs.sum(0)
    nan_refs = refs.copy()
    nan_refs[1, 5] = np.nan
    with pytest.raises(ValueError, match="mixture 'm1': the references contain NaN"):
        score_mixture(mix, nan_refs, refs, id="m1")  # used to count the NaN row as silent
    with pytest.raises(ValueError, match=r"needs mix \[T\], refs \[N, T\] and est \[M, T\]"):
        score_mixture(mix, refs[0], refs)
    with pytest.raises(ValueError, match="kept has 3 flags for 2 estimates"):
        score_mixture(mix, refs, refs, kept=np.array([True, True, False]))
    with pytest.raises(ValueError, match="of one length"):
        pit_align(refs, refs[:, :700])
    # a few samples of STFT round-trip difference are still scored on the common part
    score = score_mixture(mix, refs, refs[:, :790])
    assert score.n_sources == 2 and min(score.si_snr) == pytest.approx(80.0, abs=1e-6)


def test_scale_invariant_loss_ignores_gain_and_matches_its_formula() -> None:
    torch.manual_seed(0)
    refs = torch.randn(2, 4, 800)
    refs[0, 3] = 0  # an absent source
    order = [2, 0, 1, 3]
    noisy = refs[:, order] + 0.05 * torch.randn(2, 4, 800)
    noisy[0, 3] = 0.01 * torch.randn(800)
    mix = refs.sum(1)
    gains = torch.tensor([0.5, 2.0, 1.0, 1.0]).view(1, 4, 1)
    loss, perm = pit_loss(refs, noisy, mix, scale_invariant=True)
    loss_gained, perm_gained = pit_loss(refs, noisy * gains, mix, scale_invariant=True)
    # reference i is estimated by output order.index(i), whatever the outputs' gains
    expect = torch.tensor([order.index(i) for i in range(4)])
    assert (perm == expect).all() and (perm_gained == expect).all()
    # gains change only the empty output's term (example 0, output 3 has gain 1): same loss
    assert loss_gained.item() == pytest.approx(loss.item(), abs=1e-3)
    # the SNR loss does see the gains
    assert pit_loss(refs, noisy * gains, mix)[0].item() > pit_loss(refs, noisy, mix)[0].item() + 1
    # an active pair: 10·log10‖y‖² + 10·log10(‖ŷ − t‖² + τ‖t‖²) − 10·log10‖t‖²
    y, e = refs[1, 0].double(), noisy[1, 1].double()
    t = (e @ y) / (y @ y) * y
    want = 10 * torch.log10(y @ y) + 10 * torch.log10(((e - t) ** 2).sum() + 1e-3 * (t @ t)) \
        - 10 * torch.log10(t @ t)
    got = pairwise_loss(refs.double(), noisy.double(), mix.double(), scale_invariant=True)[1, 0, 1]
    assert got.item() == pytest.approx(want.item(), abs=1e-6)


def test_train_loss_option_is_checked() -> None:
    from auralens.scene.separate.train import TrainConfig, TrainError

    assert TrainConfig(loss="si-snr").loss == "si-snr"
    with pytest.raises(TrainError, match="loss must be 'fuss' or 'si-snr'"):
        TrainConfig(loss="sdr")


@pytest.mark.parametrize("override, message", [
    ({"grad_clip": -1.0}, "grad_clip must be a positive number"),
    ({"grad_clip": "abc"}, "grad_clip must be a positive number"),
    ({"gain_db_min": 5}, "gain_db_min must be a number ≤ 0"),
    ({"gain_db_min": "abc"}, "gain_db_min must be a number ≤ 0"),
    ({"dynamic_share": "abc"}, "dynamic_share must be in"),
    ({"seed": -1}, "seed must be a whole number ≥ 0"),
    ({"threads": -1}, "threads must be a whole number ≥ 0"),
    ({"rooms": -1}, "rooms must be a whole number ≥ 0"),
    ({"keep": "maybe"}, "keep must be true or false"),
    ({"preset": [1]}, "preset must be a string"),
    ({"train_folds": ["a"]}, "train_folds must be a fold number"),
    ({"val_folds": []}, "val_folds must be a fold number"),
    ({"count_weights": 1}, "count_weights must be a list"),
    ({"count_weights": [0, 0]}, "count_weights must be a list"),
])
def test_train_settings_are_checked_up_front(override, message) -> None:
    from auralens.scene.separate.train import TrainConfig, TrainError

    with pytest.raises(TrainError, match=message):
        TrainConfig(**override)


def test_a_single_fold_number_means_one_fold() -> None:
    from auralens.scene.separate.train import TrainConfig

    cfg = TrainConfig(train_folds=1, val_folds=4)
    assert cfg.train_folds == [1] and cfg.val_folds == [4]


def test_numpy_settings_become_plain_numbers_that_json_can_store() -> None:
    """numpy numbers pass the checks; the stored resume settings must still be JSON."""
    import json

    from auralens.scene.separate.train import TrainConfig, _run_settings

    cfg = TrainConfig(seed=np.int64(3), crop_seconds=np.float32(2.0), val_folds=[np.int64(4)])
    assert type(cfg.seed) is int and type(cfg.crop_seconds) is float and cfg.val_folds == [4]
    assert json.loads(_run_settings(cfg, ".", None))["seed"] == 3


def test_training_data_of_neither_layout_is_named(tmp_path):
    from auralens.scene.separate.train import TrainConfig, TrainError, make_sources

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TrainError, match=r"^.+: neither an ESC-50 folder \(meta/esc50.csv\) nor a FUSS "
                                         r"folder \(manifest.jsonl of auralens data mix, or the release's "
                                         r"train/ folder\)$"):
        make_sources(tmp_path, TrainConfig(), 4, 16000, None)
