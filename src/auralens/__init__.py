"""auralens: listen to what audio models perceive, and turn sound scenes into images."""

import os as _os

__version__ = "0.1.0"

__all__ = ["__version__"]

# Quiet also the model-loading bars of transformers and the hub: they read this variable
# when first imported, which happens later (inside backend loaders). diffusers does not read
# it; its loaders call auralens.progress.quiet_diffusers_if_asked.
if _os.environ.get("AURALENS_NO_PROGRESS"):
    _os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
