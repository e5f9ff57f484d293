"""Text-to-image with diffusers pipelines (Stable Diffusion 3.5 by default)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from auralens.checks import is_whole
from auralens.errors import AuralensError
from auralens.scene.llm import (
    BOOL_RULE,
    TEXT_RULE,
    check_options,
    check_values,
    error_line,
    from_pretrained,
    local_dir,
    number_rule,
    read_json_file,
    resolve_device,
    resolve_dtype,
    resolve_model_id,
    whole_rule,
)
from auralens.scene.render.base import ImageGenerator
from auralens.specs import ModelSpec, SpecError

log = logging.getLogger(__name__)

IMAGE_PRESETS = {"sd3.5": "stabilityai/stable-diffusion-3.5-medium",
                 "sd3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
                 "sd3.5-large": "stabilityai/stable-diffusion-3.5-large"}


#: Longest prompt in tokens the text encoders of SD3 / Flux pipelines take (T5).
MAX_SEQUENCE_LENGTH = 512

#: Spec options of the diffusers backend and what their values must be.
OPTIONS = {
    "steps": whole_rule(1),
    "guidance": number_rule(0.0, high=100.0),
    "width": whole_rule(8),
    "height": whole_rule(8),
    "max_sequence_length": (lambda v: v is None or (is_whole(v, 1) and v <= MAX_SEQUENCE_LENGTH),
                            f"a whole number in [1, {MAX_SEQUENCE_LENGTH}]"),
    "negative_prompt": (lambda v: v is None or isinstance(v, str), "text"),
    "offload": BOOL_RULE,
    "trust_remote_code": BOOL_RULE,
    "dtype": TEXT_RULE,
    "device": (lambda v: v is None or isinstance(v, str), "a device name such as cpu or cuda"),
}
#: Largest width/height accepted (a typo such as 10240 would exhaust memory, not render).
MAX_SIZE = 4096


def size_multiple(model_id: str) -> int:
    """What width and height must be multiples of: the VAE's downsampling times the
    transformer's patch size, read from a local pipeline's configs (8, or 16 for SD3, when
    only a hub id is known)."""
    path = local_dir(model_id)
    if path is None or not (path / "vae" / "config.json").is_file():
        return 16 if "stable-diffusion-3" in model_id else 8
    vae = read_json_file(path / "vae" / "config.json")
    factor = 2 ** max(len(vae.get("block_out_channels") or [0] * 4) - 1, 0)
    if (path / "transformer" / "config.json").is_file():
        factor *= int(read_json_file(path / "transformer" / "config.json").get("patch_size") or 1)
    return max(factor, 1)


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, and for a local folder that it is a diffusers pipeline
    (``model_index.json``); no weights are read.

    Raises:
        SpecError: an unknown option or a value out of range (``steps=0`` would render noise).
        AuralensError: a local path that is not a diffusers pipeline folder.
    """
    check_options("diffusers", params, OPTIONS)
    check_values("diffusers", params, OPTIONS)
    model_id = _model_id(spec)
    path = local_dir(model_id)
    if path is not None and not (path / "model_index.json").is_file():
        what = "a file" if path.is_file() else "no model_index.json"
        raise AuralensError(f"{model_id}: not a diffusers pipeline ({what}); give a folder "
                            "saved with save_pretrained or a hub id such as sd3.5")
    if path is not None:
        read_json_file(path / "model_index.json")  # a corrupt index fails here, named
    multiple = size_multiple(model_id)
    for key in ("width", "height"):
        value = params.get(key)
        if value is not None and (value > MAX_SIZE or value % multiple):
            raise SpecError(f"diffusers option {key} must be a multiple of {multiple} up to "
                            f"{MAX_SIZE} for this pipeline, got {value!r}")


class DiffusersGenerator(ImageGenerator):
    """A diffusers text-to-image pipeline loaded by hub id or local directory.

    Args:
        model_id: e.g. ``stabilityai/stable-diffusion-3.5-medium`` or a saved pipeline dir.
        steps: denoising steps (28 for SD3.5 medium).
        guidance: classifier-free guidance scale.
        width, height: output size in pixels (multiples of 16 for SD3).
        dtype, device: ``auto`` picks bfloat16/float16 on GPU, float32 on CPU.
        offload: model CPU offload (fits SD3.5 on small GPUs).
        max_sequence_length: T5 prompt length for SD3 pipelines.
    """

    def __init__(self, model_id: str, *, steps: int = 28, guidance: float = 4.5,
                 width: int = 1024, height: int = 1024, dtype: str = "auto",
                 device: str = "auto", offload: bool = False,
                 max_sequence_length: int | None = None, negative_prompt: str | None = None,
                 **extra: Any) -> None:
        # the same checks as the spec path, for objects built in Python
        check_options("diffusers", extra, ("trust_remote_code",))
        check_values("diffusers", {"steps": steps, "guidance": guidance, "width": width,
                                   "height": height, "max_sequence_length": max_sequence_length,
                                   **extra}, OPTIONS)
        self.model_id = model_id
        self.name = f"diffusers:{model_id}"
        self.steps, self.guidance = int(steps), float(guidance)
        self.width, self.height = int(width), int(height)
        self.max_sequence_length = max_sequence_length
        self.negative_prompt = negative_prompt
        self.device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, self.device)
        cls = self._pipeline_class(model_id)
        kwargs: dict[str, Any] = {_dtype_kwarg(): torch_dtype}
        if extra.get("trust_remote_code") is True:
            kwargs["trust_remote_code"] = True
        from auralens.progress import quiet_diffusers_if_asked

        quiet_diffusers_if_asked()
        self.pipe = from_pretrained(cls.from_pretrained, model_id, **kwargs)
        if offload and self.device.startswith("cuda"):
            self.pipe.enable_model_cpu_offload()
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self._lock = threading.Lock()

    @staticmethod
    def _pipeline_class(model_id: str) -> Any:
        """StableDiffusion3Pipeline for SD3 checkpoints, AutoPipelineForText2Image otherwise."""
        import diffusers

        index = Path(model_id) / "model_index.json"
        name = ""
        if index.exists():
            name = str(read_json_file(index).get("_class_name", ""))
        elif "stable-diffusion-3" in model_id:
            name = "StableDiffusion3Pipeline"
        if name and hasattr(diffusers, name):
            return getattr(diffusers, name)
        return diffusers.AutoPipelineForText2Image

    def generate(self, prompt: str, seed: int = 0) -> Any:
        """Render ``prompt`` deterministically for ``seed``; returns a ``PIL.Image``."""
        import torch

        if not prompt.strip():
            raise AuralensError("cannot render an empty description")
        gen_device = "cpu" if self.device == "mps" else self.device
        generator = torch.Generator(device=gen_device).manual_seed(int(seed))
        kwargs: dict[str, Any] = {"num_inference_steps": self.steps,
                                  "guidance_scale": self.guidance, "width": self.width,
                                  "height": self.height, "generator": generator}
        if self.max_sequence_length is not None:
            kwargs["max_sequence_length"] = int(self.max_sequence_length)
        if self.negative_prompt:
            kwargs["negative_prompt"] = self.negative_prompt
        try:
            with self._lock, torch.inference_mode():
                out = self.pipe(prompt=prompt, **kwargs)
        except AuralensError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the model, not a traceback
            raise AuralensError(f"{self.name}: rendering failed ({error_line(exc)})") from exc
        return out.images[0]


def _dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (0.42 warns about the old name)."""
    from importlib.metadata import version

    parts = version("diffusers").split(".")[:2]
    major, minor = int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def _model_id(spec: ModelSpec) -> str:
    if spec.kind in IMAGE_PRESETS and not spec.id:
        return IMAGE_PRESETS[spec.kind]
    return resolve_model_id(spec, IMAGE_PRESETS, default="sd3.5")


def build(spec: ModelSpec, **params: Any) -> DiffusersGenerator:
    """``diffusers`` / ``sd3.5`` (SD 3.5 medium) or ``diffusers:<id or dir>@steps=28,...``."""
    check_spec(spec, **params)
    return DiffusersGenerator(_model_id(spec), **params)
