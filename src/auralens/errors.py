"""The exception family the CLI turns into one-line messages and non-zero exits."""

from __future__ import annotations


class AuralensError(Exception):
    """Base class for expected, user-facing failures (bad input, missing model …)."""


class ModelUnavailableError(AuralensError):
    """A model could not be loaded offline; the message says how to provide it."""

    def __init__(self, model: str, detail: str = "") -> None:
        hint = (
            f"model {model!r} is not available offline: pass a local directory "
            "(e.g. one saved with save_pretrained) or pre-populate the Hugging Face cache "
            "(HF_HOME) on a machine with access"
        )
        super().__init__(f"{hint}{f' ({detail})' if detail else ''}")
        self.model = model


class MissingModelDirError(ModelUnavailableError):
    """A model given as a local path (``/…``, ``./…``, ``../…``, ``~…``) that does not exist."""

    def __init__(self, path: str) -> None:
        AuralensError.__init__(self, f"{path}: directory does not exist")
        self.model = path


class CheckpointMismatchError(AuralensError):
    """A checkpoint was made for a different extractor/codec/model than requested."""
