"""The FUSS training loss: permutation-invariant thresholded log-MSE.

For a reference ``y`` that is active (non-zero) and the estimate ``ŷ`` assigned to it:
``10·log10(‖y − ŷ‖² + τ‖y‖²)`` with ``τ = 10^(−30/10) = 1e-3`` (an SNR cap of 30 dB, so
sources already separated well stop dominating the gradient).
For an output slot with no reference (an all-zero reference):
``10·log10(‖ŷ‖² + τ′‖x‖²)`` with ``τ′ = 1e-2`` relative to the mixture ``x`` (the estimate is
pushed towards silence, but only down to −20 dB of the mixture).

With ``scale_invariant=True`` an active pair is scored on the estimate's SI-SNR instead
(the metric FUSS reports): ``10·log10(‖y‖²) + 10·log10(‖ŷ − t‖² + τ‖t‖²) − 10·log10(‖t‖²)`` with
``t`` the projection of ``ŷ`` on ``y``. The first term is constant for each reference, so it
changes neither the chosen permutation nor any gradient; it keeps the loss on the FUSS loss's
scale (a silent estimate of an active reference scores ``10·log10‖y‖²`` in both).

The assignment of outputs to references is the permutation with the smallest total loss;
with ``M = 4`` all 24 permutations are scored at once from the ``[B, M, M]`` pairwise matrix.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch

#: Soft floor for active references (30 dB SNR cap).
TAU = 1e-3
#: Soft floor, relative to the mixture, for outputs without a reference (20 dB).
TAU_ZERO = 1e-2
#: A reference whose RMS is at most this counts as absent (FUSS: 1e-8).
ACTIVE_RMS = 1e-8


@lru_cache(maxsize=8)
def _perms(m: int) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(m))), dtype=torch.long)


def active_refs(refs: torch.Tensor, threshold: float = ACTIVE_RMS) -> torch.Tensor:
    """``[B, M, T]`` → bool ``[B, M]``: references with RMS above ``threshold``."""
    return refs.pow(2).mean(dim=-1).sqrt() > threshold


def _pair_losses(refs: torch.Tensor, est: torch.Tensor, mixture: torch.Tensor, tau: float,
                 tau_zero: float, scale_invariant: bool, pairwise: bool) -> torch.Tensor:
    """Loss of every (reference i, estimate j) pair ``[B, M, M]`` (``pairwise``), or of the pairs
    (i, i) only, ``[B, M]``."""
    ref_pow = refs.pow(2).sum(-1)  # [B, M]
    est_pow = est.pow(2).sum(-1)  # [B, M]
    mix_pow = mixture.pow(2).sum(-1)  # [B]
    active = active_refs(refs)  # [B, M]
    # r[i] against e[j]: broadcast to [B, Mi, Mj] for every pair, [B, M] for the diagonal
    r_pow, e_pow = (ref_pow.unsqueeze(-1), est_pow.unsqueeze(1)) if pairwise else (ref_pow, est_pow)
    if scale_invariant:
        dot = torch.einsum("bit,bjt->bij", refs, est) if pairwise else (refs * est).sum(-1)
        # t = (⟨ŷ, y⟩ / ‖y‖²) y: ‖t‖² = ⟨ŷ, y⟩² / ‖y‖², ‖ŷ − t‖² = ‖ŷ‖² − ‖t‖²
        target_pow = dot.pow(2) / (r_pow + 1e-12)
        noise_pow = (e_pow - target_pow).clamp_min(0)
        loss_active = (10 * torch.log10(r_pow + 1e-12)
                       + 10 * torch.log10(noise_pow + tau * target_pow + 1e-12)
                       - 10 * torch.log10(target_pow + 1e-12))
    else:
        diff = refs.unsqueeze(2) - est.unsqueeze(1) if pairwise else refs - est
        loss_active = 10 * torch.log10(diff.pow(2).sum(-1) + tau * r_pow + 1e-12)
    loss_zero = 10 * torch.log10(est_pow + tau_zero * mix_pow.unsqueeze(-1) + 1e-12)  # [B, Mj]
    if pairwise:
        return torch.where(active.unsqueeze(-1), loss_active, loss_zero.unsqueeze(1).expand_as(loss_active))
    return torch.where(active, loss_active, loss_zero)


def pairwise_loss(refs: torch.Tensor, est: torch.Tensor, mixture: torch.Tensor,
                  tau: float = TAU, tau_zero: float = TAU_ZERO, *,
                  scale_invariant: bool = False) -> torch.Tensor:
    """Loss of every (reference i, estimate j) pair: ``[B, M, M]``.

    Args:
        refs: ``[B, M, T]`` references, all-zero rows for absent sources.
        est: ``[B, M, T]`` estimates.
        mixture: ``[B, T]``.
        scale_invariant: score active pairs by SI-SNR (see the module docstring).
    """
    return _pair_losses(refs, est, mixture, tau, tau_zero, scale_invariant, pairwise=True)


def pit_loss(refs: torch.Tensor, est: torch.Tensor, mixture: torch.Tensor,
             tau: float = TAU, tau_zero: float = TAU_ZERO, *,
             scale_invariant: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant FUSS loss.

    Args:
        refs: ``[B, M, T]`` (absent sources as zero rows).
        est: ``[B, M, T]``.
        mixture: ``[B, T]``.
        scale_invariant: score active pairs by SI-SNR rather than SNR.

    Returns:
        ``(loss, perm)``: the mean over the batch of the per-example minimum of the summed
        pair losses divided by ``M`` (a scalar), and ``[B, M]`` where ``perm[b, i]`` is the
        estimate assigned to reference ``i``.
    """
    if refs.shape != est.shape:
        raise ValueError(f"refs {tuple(refs.shape)} and estimates {tuple(est.shape)} differ")
    m = refs.shape[1]
    pair = pairwise_loss(refs, est, mixture, tau, tau_zero, scale_invariant=scale_invariant)  # [B, M, M]
    perms = _perms(m).to(refs.device)  # [P, M]
    # total[b, p] = Σ_i pair[b, i, perms[p, i]]
    idx = perms.T.unsqueeze(0).expand(pair.shape[0], m, perms.shape[0])  # [B, M, P]
    total = pair.gather(2, idx).sum(dim=1)  # [B, P]
    best, which = total.min(dim=1)
    return best.mean() / m, perms[which]


def assigned_loss(refs: torch.Tensor, est: torch.Tensor, mixture: torch.Tensor,
                  tau: float = TAU, tau_zero: float = TAU_ZERO, *,
                  scale_invariant: bool = False) -> torch.Tensor:
    """The FUSS loss with a fixed assignment: estimate ``i`` is scored against reference ``i``
    (class slots, where each output stands for one class). Same scale as :func:`pit_loss`:
    the mean over the batch of the summed pair losses divided by the number of outputs.

    Args:
        refs: ``[B, S, T]`` (absent classes as zero rows).
        est: ``[B, S, T]``.
        mixture: ``[B, T]``.
    """
    if refs.shape != est.shape:
        raise ValueError(f"refs {tuple(refs.shape)} and estimates {tuple(est.shape)} differ")
    return _pair_losses(refs, est, mixture, tau, tau_zero, scale_invariant, pairwise=False).mean()


def si_snr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB over the last axis (zero-mean signals), shape ``[...]``."""
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))
