"""Gate checkpoints: one safetensors file with a JSON header in its metadata.

Tensors:
    ``model.<param>``        gate weights
    ``optim.<i>.<key>``      AdamW state (``last.safetensors`` only, for ``--resume``)
    ``norm.<name>``          min-max normalisation statistics (when used)
    ``rng.torch``            torch CPU RNG state (resume continues the same random stream)

Header (metadata key ``auralens``, JSON):
    ``format, model_name, model_args, extractor {spec, name, layer, dim, sample_rate},
    codec {spec, name, latent_dim, sample_rate}, normalize, epoch, best_val_loss, lr,
    optimizer_groups, versions``.

Loading with an expected extractor/layer/codec refuses a checkpoint made for another
combination with :class:`~auralens.errors.CheckpointMismatchError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auralens.checkpoint_io import read_checkpoint, write_checkpoint
from auralens.checkpoint_io import read_header as _read_header
from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.io import package_versions

FORMAT = "auralens.sonify.gate/1"


class CheckpointError(AuralensError):
    """A checkpoint file that is missing or unreadable."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    header: dict[str, Any]
    model: dict[str, torch.Tensor]
    optim: dict[str, torch.Tensor] = field(default_factory=dict)
    norm: dict[str, np.ndarray] = field(default_factory=dict)
    rng: torch.Tensor | None = None


def save(path: str | Path, model: torch.nn.Module, header: dict[str, Any], *,
         optimizer: torch.optim.Optimizer | None = None,
         norm: dict[str, np.ndarray] | None = None, rng: bool = False) -> Path:
    """Atomically write a checkpoint (see the module docstring for the layout)."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    head = {"format": FORMAT, **header}
    head.setdefault("versions", package_versions())
    if optimizer is not None:
        state = optimizer.state_dict()
        for idx, st in state["state"].items():
            for key, value in st.items():
                tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        head["optimizer_groups"] = state["param_groups"]
    for key, value in (norm or {}).items():
        tensors[f"norm.{key}"] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if rng:
        tensors["rng.torch"] = torch.get_rng_state()
    return write_checkpoint(path, tensors, head)


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint file.

    Raises:
        CheckpointError: missing, unreadable, or not an auralens gate checkpoint.
    """
    header, tensors = read_checkpoint(path, "gate", CheckpointError)
    ck = Checkpoint(header=header, model={})
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "model":
            ck.model[rest] = value
        elif kind == "optim":
            ck.optim[rest] = value
        elif kind == "norm":
            ck.norm[rest] = value.numpy()
        elif key == "rng.torch":
            ck.rng = value
    return ck


def read_header(path: str | Path) -> dict[str, Any]:
    """Only the JSON header (cheap: no tensor is read)."""
    return _read_header(path, "gate", CheckpointError)


def optimizer_state(ck: Checkpoint) -> dict[str, Any]:
    """Rebuild a ``torch.optim`` state dict from the flattened tensors."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in ck.optim.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": ck.header.get("optimizer_groups", [])}


def check_compatible(header: dict[str, Any], path: str | Path = "checkpoint", *,
                     extractor: str | None = None, layer: str | int | None = None,
                     codec: str | None = None, model_name: str | None = None) -> None:
    """Refuse a checkpoint whose extractor, layer, codec or gate differ from what is expected.

    Each expected value that is not None is compared with the header (extractor and codec by
    their resolved ``name``, falling back to the spec string).

    Raises:
        CheckpointMismatchError: naming the file, the field and both values.
    """
    ext = header.get("extractor", {})
    cod = header.get("codec", {})
    checks = [
        ("extractor", extractor, {ext.get("name"), ext.get("spec")}),
        ("layer", None if layer is None else str(layer), {str(ext.get("layer"))}),
        ("codec", codec, {cod.get("name"), cod.get("spec")}),
        ("gate", model_name, {header.get("model_name")}),
    ]
    for what, want, have in checks:
        if want is None:
            continue
        if str(want) not in {str(h) for h in have if h is not None}:
            shown = ext.get("name") if what == "extractor" else cod.get("name") if what == "codec" \
                else next(iter(have))
            raise CheckpointMismatchError(
                f"{path}: checkpoint was trained for {what} {shown!r}, not {want!r}; "
                "use a checkpoint trained with the same extractor, layer and codec"
            )


def load_gate(path: str | Path, *, extractor: str | None = None, layer: str | int | None = None,
              codec: str | None = None) -> tuple[torch.nn.Module, dict[str, Any], dict[str, np.ndarray]]:
    """Build the gate stored in ``path`` after checking it matches the expected setup.

    Returns:
        ``(gate in eval mode, header, normalisation stats)``.
    """
    from auralens.sonify import gates

    ck = load(path)
    check_compatible(ck.header, path, extractor=extractor, layer=layer, codec=codec)
    args = dict(ck.header["model_args"])
    name = args.pop("name", ck.header.get("model_name"))
    model = gates.build(name, **args)
    model.load_state_dict(ck.model)
    model.eval()
    return model, ck.header, ck.norm
