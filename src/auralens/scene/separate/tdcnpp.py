"""TDCN++ masking network for universal sound separation (the FUSS baseline recipe).

Signal path (shapes for a batch of ``B`` mixtures of ``T`` samples, ``F`` STFT bins, ``K`` frames):

    mixture [B, T] ── STFT (Hann 512 / hop 128) ──► X [B, F, K] complex
    log |X| ──► bin-wise norm ──► 1×1 conv to the bottleneck ──► improved TDCN blocks
        ──► 1×1 conv to M·F ──► sigmoid masks [B, M, F, K]
    masks · X ──► inverse STFT ──► s [B, M, T] ──► mixture consistency ──► ŝ [B, M, T]

An improved TDCN block (``TDCNBlock``) is 1×1 conv (bottleneck → conv channels), PReLU,
feature-wise norm, depthwise dilated conv (kernel 3), PReLU, feature-wise norm, 1×1 conv back
to the bottleneck, multiplied by a learnable scale initialised to ``0.9**ℓ`` and added to the
block input. Blocks come in ``repeats`` of dilations ``1, 2, 4, …, 2**(blocks_per_repeat-1)``;
each repeat's input also receives 1×1-projected copies of the inputs of all earlier repeats
(the longer-range skip-residual connections of TDCN++).

Mixture consistency projects the raw estimates so they sum to the input exactly:
``ŝ_m = s_m + w_m (x − Σ_m' s_m')`` with ``w_m = 1/M`` ("uniform") or a softmax over ``M``
predicted from the network's pooled features ("learned").

Checkpoints are a single safetensors file whose metadata holds a JSON header
(``format``, ``model_name``, ``model_args``, ``versions``); :func:`load_checkpoint` refuses a
file that is not one of ours or whose weights do not fit the stored config.
"""

from __future__ import annotations

import logging
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.scene.separate.base import MIN_SEPARATE_SAMPLES, Separator
from auralens.specs import ModelSpec, SpecError

log = logging.getLogger(__name__)

#: ``format`` value in the header of every checkpoint this module writes.
CHECKPOINT_FORMAT = "auralens-tdcnpp/1"
#: The committed tiny checkpoint (the default ``tdcnpp`` separator).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "presets" / "tdcnpp-tiny" / "model.safetensors"


@dataclass
class TDCNppConfig:
    """Every size of the network.

    Attributes:
        sample_rate: input rate in Hz (inputs at other rates must be resampled first).
        n_fft: STFT window/FFT length in samples (512 = 32 ms at 16 kHz).
        hop: STFT hop in samples (128 = 8 ms).
        num_sources: M, outputs (FUSS: background + 3 foreground).
        bottleneck: channels between blocks.
        conv_channels: channels inside a block.
        kernel_size: depthwise kernel width (frames).
        blocks_per_repeat: dilations ``1 … 2**(n-1)``.
        repeats: how many times the dilation ladder repeats.
        norm: ``"feature"`` (per channel over time, the TDCN++ choice) or ``"frame"``
            (per frame over channels; local, so chunked inference matches exactly).
        consistency: ``"uniform"``, ``"learned"`` or ``"none"``.
        scale_init: block scales start at ``scale_init**ℓ``.
        long_skips: add the TDCN++ skip-residual connections between repeats.
        feature_floor: added to ``|X|`` before the log.
        num_slots: mask outputs of the network (0: ``num_sources``). With more slots than
            sources the network predicts one slot per sound class (``slot_labels``, trained with
            a fixed class-to-slot assignment) and :func:`merge_slots` folds them into
            ``num_sources`` estimates: the ``num_sources − 1`` loudest slots and the sum of the rest.
        slot_labels: the class each slot stands for (empty: slots are unnamed).
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 128
    num_sources: int = 4
    bottleneck: int = 256
    conv_channels: int = 512
    kernel_size: int = 3
    blocks_per_repeat: int = 8
    repeats: int = 4
    norm: str = "feature"
    consistency: str = "uniform"
    scale_init: float = 0.9
    long_skips: bool = True
    feature_floor: float = 1e-6
    num_slots: int = 0
    slot_labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.norm not in ("feature", "frame"):
            raise ValueError(f"norm must be 'feature' or 'frame', got {self.norm!r}")
        if self.consistency not in ("uniform", "learned", "none"):
            raise ValueError(f"consistency must be uniform/learned/none, got {self.consistency!r}")
        if self.n_fft % self.hop:
            raise ValueError("n_fft must be a multiple of hop")
        sizes = ("sample_rate", "n_fft", "hop", "num_sources", "bottleneck", "conv_channels",
                 "kernel_size", "blocks_per_repeat", "repeats")
        for name in sizes:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_slots and self.num_slots < self.num_sources:
            raise ValueError(f"num_slots must be 0 or at least num_sources ({self.num_sources}), "
                             f"got {self.num_slots}")
        if self.slot_labels and len(self.slot_labels) != self.outputs:
            raise ValueError(f"slot_labels names {len(self.slot_labels)} slots, the network has {self.outputs}")

    @property
    def outputs(self) -> int:
        """Mask outputs of the network (slots, or sources when there are no extra slots)."""
        return self.num_slots or self.num_sources

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def receptive_field_frames(self) -> int:
        """Frames one output frame can see (convolutions only; ``norm="feature"`` sees all)."""
        per_repeat = sum((self.kernel_size - 1) * 2**i for i in range(self.blocks_per_repeat))
        return 1 + self.repeats * per_repeat

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TDCNppConfig:
        """Build from a mapping (a checkpoint header's ``model_args`` or user overrides).

        Raises:
            CheckpointMismatchError: not a mapping, unknown keys, values of the wrong type or
                out of range.
        """
        if not isinstance(data, dict):
            raise CheckpointMismatchError(f"TDCN++ config must be a mapping, got {type(data).__name__}")
        types = {f.name: type(f.default_factory() if f.default is MISSING else f.default)  # type: ignore[misc]
                 for f in fields(cls)}
        unknown = sorted(set(data) - set(types))
        if unknown:
            raise CheckpointMismatchError(f"unknown TDCN++ config keys {unknown}")
        for key, value in data.items():
            want = types[key]
            ok = (isinstance(value, bool) if want is bool
                  else isinstance(value, (int, float)) and not isinstance(value, bool) if want is float
                  else isinstance(value, want) and not isinstance(value, bool))
            if want is list:
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            if not ok:
                raise CheckpointMismatchError(f"TDCN++ config {key} must be {want.__name__}, got {value!r}")
        try:
            return cls(**data)
        except ValueError as exc:
            raise CheckpointMismatchError(f"invalid TDCN++ config: {exc}") from None


#: Named size presets.
PRESETS: dict[str, TDCNppConfig] = {
    # The FUSS baseline: 4 × 8 blocks, bottleneck 256, 512 conv channels.
    "fuss": TDCNppConfig(),
    # Trainable on two CPU cores in well under an hour; < 1 MB of weights.
    "tiny": TDCNppConfig(bottleneck=64, conv_channels=128, blocks_per_repeat=6, repeats=2),
    # About 3× the tiny network's compute per step (≈ 1 M parameters, 4 MB of weights).
    "small": TDCNppConfig(bottleneck=96, conv_channels=192, blocks_per_repeat=7, repeats=3),
}


def preset(name: str, **overrides: Any) -> TDCNppConfig:
    """A copy of a named preset with single fields overridden."""
    if name not in PRESETS:
        raise AuralensError(f"unknown TDCN++ preset {name!r}; available: {', '.join(PRESETS)}")
    return TDCNppConfig.from_dict({**PRESETS[name].to_dict(), **overrides})


class FeatureNorm(nn.Module):
    """Normalisation with a per-channel scale and bias on ``[B, C, K]``.

    ``"feature"``: mean/variance of each channel over time (instance norm, TDCN++'s
    feature-wise layer norm). ``"frame"``: mean/variance over channels for each frame.
    """

    def __init__(self, channels: int, mode: str = "feature", eps: float = 1e-8) -> None:
        super().__init__()
        self.mode = mode
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = -1 if self.mode == "feature" else 1
        mean = x.mean(dim=dim, keepdim=True)
        var = x.var(dim=dim, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.gain + self.bias


class TDCNBlock(nn.Module):
    """One improved TDCN block: ``[B, bottleneck, K] → [B, bottleneck, K]`` (residual)."""

    def __init__(self, cfg: TDCNppConfig, dilation: int, scale: float) -> None:
        super().__init__()
        ch = cfg.conv_channels
        self.inp = nn.Conv1d(cfg.bottleneck, ch, 1)
        self.act1 = nn.PReLU(ch)
        self.norm1 = FeatureNorm(ch, cfg.norm)
        pad = dilation * (cfg.kernel_size - 1) // 2
        self.depthwise = nn.Conv1d(ch, ch, cfg.kernel_size, dilation=dilation, padding=pad, groups=ch)
        self.act2 = nn.PReLU(ch)
        self.norm2 = FeatureNorm(ch, cfg.norm)
        self.out = nn.Conv1d(ch, cfg.bottleneck, 1)
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(self.act1(self.inp(x)))
        y = self.norm2(self.act2(self.depthwise(y)))
        return x + self.scale * self.out(y)


def stft(wave: torch.Tensor, cfg: TDCNppConfig) -> torch.Tensor:
    """``[..., T]`` → complex ``[..., F, K]`` with a periodic Hann window, centred frames."""
    window = torch.hann_window(cfg.n_fft, device=wave.device, dtype=wave.dtype)
    lead = wave.shape[:-1]
    spec = torch.stft(wave.reshape(-1, wave.shape[-1]), cfg.n_fft, cfg.hop, window=window,
                      center=True, return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: torch.Tensor, cfg: TDCNppConfig, length: int) -> torch.Tensor:
    """Complex ``[..., F, K]`` → ``[..., length]`` (inverse of :func:`stft`)."""
    window = torch.hann_window(cfg.n_fft, device=spec.device, dtype=spec.real.dtype)
    lead = spec.shape[:-2]
    wave = torch.istft(spec.reshape(-1, *spec.shape[-2:]), cfg.n_fft, cfg.hop, window=window,
                       center=True, length=length)
    return wave.reshape(*lead, length)


def mixture_consistency(estimates: torch.Tensor, mixture: torch.Tensor,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Project estimates so they sum to the mixture: ``ŝ_m = s_m + w_m (x − Σ s)``.

    Args:
        estimates: ``[B, M, T]``.
        mixture: ``[B, T]``.
        weights: ``[B, M]`` (or ``[B, M, T]``) summing to 1 over M; None → uniform ``1/M``.

    Returns:
        ``[B, M, T]`` whose sum over M equals ``mixture`` (up to float rounding).
    """
    residual = mixture - estimates.sum(dim=1)
    if weights is None:
        weights = torch.full(estimates.shape[:2], 1.0 / estimates.shape[1],
                             device=estimates.device, dtype=estimates.dtype)
    if weights.dim() == 2:
        weights = weights.unsqueeze(-1)
    return estimates + weights * residual.unsqueeze(1)


class TDCNpp(nn.Module):
    """TDCN++ mask estimator with STFT front end and mixture consistency.

    Args:
        cfg: network sizes.
    """

    def __init__(self, cfg: TDCNppConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or TDCNppConfig()
        n_bins = cfg.num_bins
        self.in_norm = FeatureNorm(n_bins, "feature" if cfg.norm == "feature" else "frame")
        self.in_proj = nn.Conv1d(n_bins, cfg.bottleneck, 1)
        self.blocks = nn.ModuleList()
        level = 0
        for _ in range(cfg.repeats):
            for i in range(cfg.blocks_per_repeat):
                self.blocks.append(TDCNBlock(cfg, 2**i, cfg.scale_init**level))
                level += 1
        # skips[r - 1][q] projects the input of repeat q into the input of repeat r (q < r).
        self.skips = nn.ModuleList(
            nn.ModuleList(nn.Conv1d(cfg.bottleneck, cfg.bottleneck, 1) for _ in range(r))
            for r in range(1, cfg.repeats if cfg.long_skips else 1)
        )
        self.out_act = nn.PReLU(cfg.bottleneck)
        self.mask_proj = nn.Conv1d(cfg.bottleneck, cfg.outputs * n_bins, 1)
        self.weight_proj = (nn.Linear(cfg.bottleneck, cfg.outputs)
                            if cfg.consistency == "learned" else None)

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex ``[B, F, K]`` → log-magnitude features ``[B, F, K]``."""
        return torch.log(spec.abs() + self.cfg.feature_floor)

    def forward(self, mixture: torch.Tensor, *, return_masks: bool = False,
                slots: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Separate ``[B, T]`` mixtures into ``[B, M, T]`` estimates.

        With ``return_masks`` also returns the masks ``[B, S, F, K]`` (``S`` = ``cfg.outputs``).
        With ``slots`` the estimates are every slot's, ``[B, S, T]``, not merged into ``M``.
        """
        cfg = self.cfg
        if mixture.dim() != 2:
            raise ValueError(f"expected mixture [B, T], got {tuple(mixture.shape)}")
        length = mixture.shape[-1]
        spec = stft(mixture, cfg)  # [B, F, K]
        h = self.in_proj(self.in_norm(self.features(spec)))
        repeat_inputs: list[torch.Tensor] = []
        for idx, block in enumerate(self.blocks):
            r, i = divmod(idx, cfg.blocks_per_repeat)
            if i == 0:
                if r > 0 and cfg.long_skips:
                    h = h + sum(proj(x) for proj, x in zip(self.skips[r - 1], repeat_inputs, strict=True))
                repeat_inputs.append(h)
            h = block(h)
        h = self.out_act(h)
        b, _, k = h.shape
        masks = torch.sigmoid(self.mask_proj(h)).reshape(b, cfg.outputs, cfg.num_bins, k)
        est = istft(masks * spec.unsqueeze(1), cfg, length)  # [B, M, T]
        if cfg.consistency != "none":
            weights = None
            if self.weight_proj is not None:
                weights = torch.softmax(self.weight_proj(h.mean(dim=-1)), dim=-1)
            est = mixture_consistency(est, mixture, weights)
        if cfg.outputs > cfg.num_sources and not slots:
            est = merge_slots(est, cfg.num_sources)
        return (est, masks) if return_masks else est


def merge_slots(est: torch.Tensor, m: int) -> torch.Tensor:
    """Fold ``[B, S, T]`` slot estimates into ``[B, m, T]``: the ``m − 1`` loudest slots of each
    example (loudest first) and, last, the sum of all the others. The sum over outputs is kept,
    so mixture consistency still holds."""
    if est.shape[1] <= m:
        return est
    order = est.pow(2).sum(-1).argsort(dim=1, descending=True)  # [B, S]
    idx = order.unsqueeze(-1).expand(-1, -1, est.shape[-1])
    ranked = est.gather(1, idx)
    return torch.cat([ranked[:, : m - 1], ranked[:, m - 1:].sum(dim=1, keepdim=True)], dim=1)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, model: TDCNpp, extra: dict[str, Any] | None = None) -> Path:
    """Atomically write ``model`` as safetensors with a JSON header in the metadata."""
    from auralens.checkpoint_io import write_checkpoint
    from auralens.io import package_versions

    # The keys describing the model come last: they always describe ``model``, even when
    # ``extra`` is the header of another checkpoint. ``run`` (the training folder: the one
    # holding ``path``, or holding its ``keep/`` folder) tells checkpoints of different runs
    # apart when they are averaged; a header given in ``extra`` keeps its own.
    header = {
        "run": str(run_folder(path)),
        **(extra or {}),
        "format": CHECKPOINT_FORMAT,
        "model_name": "tdcnpp",
        "model_args": model.cfg.to_dict(),
        "versions": {k: v for k, v in package_versions().items() if k in ("auralens", "torch")},
    }
    return write_checkpoint(path, dict(model.state_dict()), header)


def run_folder(path: str | Path) -> Path:
    """The training folder a checkpoint file at ``path`` belongs to (``RUN/best.safetensors``,
    ``RUN/last.safetensors``, ``RUN/keep/stepN.safetensors`` → ``RUN``), absolute."""
    parent = Path(os.path.abspath(Path(path).expanduser())).parent
    return parent.parent if parent.name == "keep" else parent


def _check_header(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    if header.get("format") != CHECKPOINT_FORMAT or header.get("model_name") != "tdcnpp":
        raise CheckpointMismatchError(
            f"{path}: checkpoint is {header.get('model_name')!r} ({header.get('format')}), "
            f"expected tdcnpp ({CHECKPOINT_FORMAT})")
    if not isinstance(header.get("model_args"), dict):
        raise CheckpointMismatchError(f"{path}: the header holds no TDCN++ config (model_args)")
    return header


def checkpoint_file(path: str | Path) -> Path:
    """``path``, or ``path/model.safetensors`` when ``path`` is a folder."""
    path = Path(path)
    return path / "model.safetensors" if path.is_dir() else path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a checkpoint file or folder (raises CheckpointMismatchError when absent)."""
    from auralens.checkpoint_io import read_header as read_any

    path = checkpoint_file(path)
    return _check_header(path, read_any(path, "TDCN++", CheckpointMismatchError))


def _parse_config(path: Path, header: dict[str, Any]) -> TDCNppConfig:
    try:
        return TDCNppConfig.from_dict(header["model_args"])
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(f"{path}: {exc}") from None


def load_checkpoint(path: str | Path, expect: TDCNppConfig | None = None,
                    map_location: str = "cpu") -> tuple[TDCNpp, dict[str, Any]]:
    """Build a :class:`TDCNpp` from a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: ``.safetensors`` file (or a directory holding ``model.safetensors``).
        expect: when given, the stored config must equal it.

    Raises:
        CheckpointMismatchError: foreign file, config mismatch or weights that do not fit.
    """
    from auralens.checkpoint_io import read_checkpoint

    path = checkpoint_file(path)
    header, state = read_checkpoint(path, "TDCN++", CheckpointMismatchError, device=map_location)
    _check_header(path, header)
    cfg = _parse_config(path, header)
    if expect is not None and cfg != expect:
        diff = {k: (v, getattr(cfg, k)) for k, v in expect.to_dict().items() if getattr(cfg, k) != v}
        raise CheckpointMismatchError(
            f"{path}: config mismatch (expected, stored): {diff}")
    model = TDCNpp(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointMismatchError(f"{path}: weights do not match the stored config ({first})") from exc
    model.eval()
    return model, header


def _refuse_writing_over_inputs(out: str | Path, inputs: list[str | Path]) -> None:
    """A derived checkpoint must not replace one it is made from (a typo would otherwise
    destroy a trained model, or the committed default)."""
    if Path(out).is_dir():
        raise CheckpointMismatchError(f"--out {out} is a directory; name the .safetensors file to write")
    target = Path(out).resolve()
    for path in inputs:
        if checkpoint_file(path).resolve() == target:
            raise CheckpointMismatchError(f"--out {out} is the input checkpoint {path}; write the "
                                          "new checkpoint to another file")


def _training_run(path: Path, header: dict[str, Any]) -> tuple[str | None, Any]:
    """``(run folder, seed)`` of the training run a checkpoint comes from, each None when
    unknown: the folder its header records (``run``), else the folder it lies in when that is
    a training folder (a ``separate train`` run.json or ``last_state.pt`` there); the seed that
    folder's ``separate train`` run.json records."""
    from auralens.io import read_run_record

    recorded = header.get("run")
    known = isinstance(recorded, str) and bool(recorded)
    folder = Path(recorded) if known else run_folder(path)
    record = read_run_record(folder)
    trained = isinstance(record, dict) and record.get("command") == "separate train"
    seed = record.get("seed") if trained else None
    if not (known or trained or (folder / "last_state.pt").is_file()):
        return None, None  # not a training folder: the run is unknown
    try:
        folder = folder.resolve() if folder.exists() else folder
    except (OSError, ValueError):
        pass
    return str(folder), seed


def average_checkpoints(paths: list[str | Path], out: str | Path) -> Path:
    """Write the element-wise mean of several checkpoints of one model (weight averaging).

    Averaging the weights of late checkpoints of one training run smooths out the noise of
    the last updates. Every checkpoint must have the same config and come from one training
    run: the training folder its header records (``run``, written since checkpoints record
    it), else the training folder it lies in, and the seed that folder's ``run.json``
    records, must agree where known. The header of the last one is kept, with
    ``averaged_from`` listing the sources and their steps.

    Raises:
        CheckpointMismatchError: no paths, a checkpoint given twice, ``out`` not a
            ``.safetensors`` file, checkpoints of different configs, tensors or training runs.
    """
    from auralens.checkpoint_io import read_checkpoint, write_checkpoint

    if not paths:
        raise CheckpointMismatchError("no checkpoints to average")
    _refuse_writing_over_inputs(out, list(paths))
    if not str(out).lower().endswith(".safetensors"):
        raise CheckpointMismatchError(f"--out {out}: name a .safetensors file to write the "
                                      "averaged checkpoint to")
    seen: dict[Path, str | Path] = {}
    for path in paths:
        key = checkpoint_file(path).resolve()
        if key in seen:  # a file given twice would count twice in the mean
            same = "twice" if str(seen[key]) == str(path) else f"twice (as {seen[key]} and {path})"
            raise CheckpointMismatchError(f"{checkpoint_file(path)}: given {same}; list each "
                                          "checkpoint once")
        seen[key] = path
    total: dict[str, torch.Tensor] = {}
    header: dict[str, Any] = {}
    first: TDCNppConfig | None = None
    first_run: tuple[str | None, Any] = (None, None)
    sources = []
    for path in paths:
        path = checkpoint_file(path)
        h, state = read_checkpoint(path, "TDCN++", CheckpointMismatchError)
        _check_header(path, h)
        run, seed = _training_run(path, h)
        if first is None:  # the first one must be a loadable model, or the average would not be
            first = load_checkpoint(path)[0].cfg
            first_run = (run, seed)
        # parsed configs, so a header written before a field existed matches its default
        elif _parse_config(path, h) != first:
            raise CheckpointMismatchError(f"{path}: a different TDCN++ config than {paths[0]}; "
                                          "only checkpoints of one model can be averaged")
        else:
            (run0, seed0) = first_run
            if seed is not None and seed0 is not None and seed != seed0:
                raise CheckpointMismatchError(
                    f"{path}: trained with seed {seed}, {paths[0]} with seed {seed0}; only "
                    "checkpoints of one training run can be averaged")
            if run is not None and run0 is not None and run != run0:
                raise CheckpointMismatchError(
                    f"{path}: from the training run in {run}, {paths[0]} from the one in {run0}; "
                    "only checkpoints of one training run can be averaged")
        if total and set(state) != set(total):
            raise CheckpointMismatchError(f"{path}: other tensors than {paths[0]}")
        for k, v in state.items():
            total[k] = total[k] + v.double() if k in total else v.double()
        header = h
        sources.append({"path": str(path), "step": h.get("step")})
    mean = {k: (v / len(paths)).to(torch.float32) for k, v in total.items()}
    header = {**header, "averaged_from": sources}
    return write_checkpoint(out, mean, header)


#: Deepest network ``grow`` builds (the FUSS baseline has 4 repeats).
MAX_REPEATS = 64


def grow_repeats(model: TDCNpp, repeats: int) -> TDCNpp:
    """A deeper copy of ``model`` that computes exactly the same function.

    The new repeats of blocks are appended after the existing ones with their learnable scales
    set to 0, so each new block is the identity, and their long-range skip projections are
    zero, so they add nothing; every existing weight is copied. Training then starts from the
    trained network's output and the new blocks (whose scales receive gradients at once) add
    capacity without the collapse of a fresh start.

    Raises:
        AuralensError: ``repeats`` not larger than the model's.
    """
    cfg = model.cfg
    if repeats <= cfg.repeats:
        raise AuralensError(f"the model already has {cfg.repeats} repeats; grow to more than that")
    if repeats > MAX_REPEATS:
        raise AuralensError(f"grow to at most {MAX_REPEATS} repeats, got {repeats}")
    grown = TDCNpp(replace(cfg, repeats=repeats))
    # strict=False: the new blocks and skip projections are missing from the original
    unexpected = grown.load_state_dict(model.state_dict(), strict=False).unexpected_keys
    assert not unexpected, unexpected  # the grown network has every tensor of the original
    with torch.no_grad():
        for block in grown.blocks[cfg.repeats * cfg.blocks_per_repeat:]:
            block.scale.zero_()
        if cfg.long_skips:
            for projs in grown.skips[cfg.repeats - 1:]:
                for proj in projs:
                    proj.weight.zero_()
                    proj.bias.zero_()
    return grown.train(model.training)


def grow_checkpoint(path: str | Path, out: str | Path, repeats: int) -> Path:
    """Write :func:`grow_repeats` of the checkpoint at ``path`` (header notes ``grown_from``);
    ``out`` must be another file."""
    _refuse_writing_over_inputs(out, [path])
    model, header = load_checkpoint(path)
    return save_checkpoint(out, grow_repeats(model, repeats),
                           {**header, "grown_from": {"path": str(path), "repeats": model.cfg.repeats}})


# ----------------------------------------------------------------------------- separator


def _crossfade(n: int) -> np.ndarray:
    """Raised-cosine fade-in of ``n`` samples (its mirror is the matching fade-out)."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


def _align(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Order of ``cur``'s rows best matching ``prev`` over an overlap (``[M, L]`` each)."""
    from scipy.optimize import linear_sum_assignment

    # Squared distance (not correlation) so equally shaped outputs of different level differ.
    cost = ((prev[:, None, :] - cur[None, :, :]) ** 2).sum(-1)
    _, order = linear_sum_assignment(cost)
    return order


def chunked(fn: Any, mix: np.ndarray, chunk: int, overlap: int, align: int = 1) -> np.ndarray:
    """Run ``fn([T']) -> [M, T']`` on overlapping chunks and cross-fade them together.

    Outputs of each chunk are permuted to match the previous chunk over the overlap, and the
    raised-cosine fades sum to one, so when every chunk's estimates sum to its mixture segment
    the result still sums to ``mix``.

    Args:
        fn: separator on ``[T']`` float32.
        mix: ``[T]``.
        chunk: chunk length in samples (> overlap).
        overlap: samples shared by neighbouring chunks (> 0: the overlap is what re-orders
            the outputs of one chunk to match the previous one).
        align: every chunk starts at a multiple of this (the STFT hop), so each chunk sees the
            same frame grid as the whole input; the last chunk runs to the end and may be up
            to ``align - 1`` samples longer than ``chunk``.

    Returns:
        ``[M, T]`` float32.
    """
    total = mix.shape[-1]
    if total <= chunk:
        return fn(mix)
    if not 0 < overlap < chunk:
        raise ValueError("need 0 < overlap < chunk")
    align = max(1, int(align))
    step = max(align, (chunk - overlap) // align * align)
    last = (total - chunk) // align * align
    starts = [s for s in range(0, last, step)] + [last]
    out: np.ndarray | None = None
    fade_in = _crossfade(overlap)
    prev_end = 0
    for i, start in enumerate(starts):
        end = total if i == len(starts) - 1 else start + chunk
        est = np.asarray(fn(mix[start:end]), dtype=np.float32)
        if out is None:
            out = np.zeros((est.shape[0], total), np.float32)
            out[:, start:end] = est
            prev_end = end
            continue
        ov = prev_end - start  # actual overlap (the last chunk may overlap more)
        est = est[_align(out[:, start:prev_end], est[:, :ov])]
        fin = _crossfade(ov) if ov != overlap else fade_in
        out[:, start:prev_end] = out[:, start:prev_end] * (1 - fin) + est[:, :ov] * fin
        out[:, prev_end:end] = est[:, ov:]
        prev_end = end
    assert out is not None
    return out


class TDCNppSeparator(Separator):
    """A trained TDCN++ checkpoint as a :class:`Separator`.

    Args:
        model: the network (eval mode).
        name: shown in run.json.
        chunk_seconds: inputs longer than this are processed in overlapping chunks.
        overlap_seconds: overlap between chunks.
        device: torch device.
    """

    def __init__(self, model: TDCNpp, name: str = "tdcnpp", *, chunk_seconds: float = 10.0,
                 overlap_seconds: float = 1.0, device: str = "cpu") -> None:
        self.sample_rate = model.cfg.sample_rate
        self.chunk = int(round(chunk_seconds * self.sample_rate))
        self.overlap = int(round(overlap_seconds * self.sample_rate))
        if not model.cfg.n_fft <= self.chunk:
            raise AuralensError(f"tdcnpp chunk must be at least one STFT window "
                                f"({model.cfg.n_fft / self.sample_rate:g} s), got {chunk_seconds} s")
        if not 0 < self.overlap < self.chunk:
            raise AuralensError(f"tdcnpp overlap must be above 0 and below the chunk ({chunk_seconds} s), "
                                f"got {overlap_seconds} s")
        self.device = _torch_device(device)
        self.model = model.to(self.device).eval()
        self.name = name
        self.num_sources = model.cfg.num_sources
        # torch.stft needs more samples than half a window: shorter inputs are padded to this
        self.min_samples = max(MIN_SEPARATE_SAMPLES, model.cfg.n_fft)

    @torch.inference_mode()
    def _run(self, mix: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32)).to(self.device)[None]
        return self.model(x)[0].cpu().numpy()

    def separate(self, mix: np.ndarray) -> np.ndarray:
        """``[T]`` → ``[M, T]``; long inputs go through :func:`chunked` overlap-add."""
        mix = np.asarray(mix, dtype=np.float32)
        if mix.ndim != 1:
            raise ValueError(f"expected a mono [T] mixture, got shape {mix.shape}")
        if mix.shape[0] == 0:
            raise ValueError("empty mixture")
        return chunked(self._run, mix, self.chunk, self.overlap, align=self.model.cfg.hop)


def _torch_device(name: str) -> str:
    """``name`` checked to be a device this machine has (a one-line error otherwise)."""
    from auralens.devices import check_device

    return str(check_device(name))


def _seconds(params: dict[str, Any], key: str, default: float) -> float:
    value = params.get(key, default)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"tdcnpp option {key} must be a number of seconds, got {value!r}") from None
    if not np.isfinite(out):
        raise SpecError(f"tdcnpp option {key} must be finite, got {value!r}")
    return out


def build_tdcnpp(spec: ModelSpec, **params: Any) -> TDCNppSeparator:
    """Registry factory: ``tdcnpp`` (committed tiny checkpoint) or ``tdcnpp:/path/ckpt``.

    Spec params: ``chunk`` (seconds), ``overlap`` (seconds), ``device``.
    """
    path = Path(spec.id).expanduser() if spec.id else DEFAULT_CHECKPOINT
    if spec.kind == "path":
        path = Path(spec.id)
    if not path.exists():
        raise AuralensError(f"{path}: TDCN++ checkpoint not found")
    unknown = set(params) - {"chunk", "overlap", "device"}
    if unknown:
        raise SpecError(f"unknown tdcnpp options {sorted(unknown)}; use chunk, overlap, device")
    chunk, overlap = _seconds(params, "chunk", 10.0), _seconds(params, "overlap", 1.0)
    device = _torch_device(str(params.get("device", "cpu")))
    model, _ = load_checkpoint(path)
    sep = TDCNppSeparator(model, name=f"tdcnpp:{path}", chunk_seconds=chunk,
                          overlap_seconds=overlap, device=device)
    from auralens.encoders.hf import weights_revision

    sep.revision = weights_revision(checkpoint_file(path))  # run.json names the exact weights
    return sep


#: What ``tdcnpp`` with no checkpoint builds, as a local path may spell it (the file or its
#: folder): :func:`auralens.specs.canonical_spec` gives these paths the bare name.
build_tdcnpp.default_ids = (DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT.parent)  # type: ignore[attr-defined]
