"""The ``Extractor`` protocol: audio → hidden states of one layer of an audio model.

Backends register in :data:`EXTRACTORS` and are built from specs such as
``hf:MIT/ast-finetuned-audioset-10-10-0.4593@layer=4`` or a local directory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from auralens.registry import Registry


class Extractor(ABC):
    """Hidden states of one layer of an audio model.

    Attributes:
        name: backend + model id, e.g. ``"ast:MIT/ast-…"``; used in cache keys and run.json.
        sample_rate: rate the model expects (input waves must already be at this rate).
        frame_rate: embedding frames per second of audio (approximate for patch grids).
        dim: embedding size.
        layer: ``"patch"`` / ``"features"`` (the first hidden state, before the encoder)
            or an int k (output of block k).
        revision: model revision/hash for cache keys.
        max_duration: seconds of audio the model sees at most (a fixed input window, e.g.
            AST's ``max_length`` fbank frames); longer input is cut by the model's feature
            extractor. None: no limit (the backend handles any length).
        min_samples: the fewest samples (at :attr:`sample_rate`) the model can embed, e.g.
            one filterbank window; None: any non-empty clip.
        first_name: name of the first hidden state (``"patch"``/``"features"``) for backends
            whose layers :meth:`check_layer` can validate; None otherwise.
        zero_is_first: True when ``layer=0`` is that first hidden state (AST, Whisper), so
            both spellings are recorded as :attr:`first_name`.
    """

    name: str = "extractor"
    sample_rate: int = 16000
    frame_rate: float = 50.0
    dim: int = 0
    layer: str | int = "features"
    revision: str = ""
    max_duration: float | None = None
    min_samples: int | None = None
    first_name: str | None = None
    zero_is_first: bool = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        from auralens.audio import check_clip_methods

        check_clip_methods(cls, ("embed",), batch=("embed_batch",))

    @abstractmethod
    def embed(self, wave: np.ndarray) -> np.ndarray:
        """Embed one clip.

        Args:
            wave: ``[T]`` float32 mono at :attr:`sample_rate`.
        Returns:
            ``[frames, dim]`` float32. For AST-type models the frames are the tokens of a fixed
            patch grid (frequency × time, in the model's order, the padded input included),
            not time steps; :mod:`auralens.sonify.align` maps them to time.
        """

    def embed_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Embed several clips (backends override with a truly batched forward).

        Returns:
            one ``[frames_i, dim]`` array per input.
        """
        return [self.embed(w) for w in waves]

    def num_layers(self) -> int:
        """Number of blocks k usable as ``layer``; 0 when only one layer exists."""
        return 0

    def check_layer(self, layer: str | int | None) -> str | int | None:
        """Validate a layer option against this model without building another one.

        Returns:
            the normalised layer, or None when this backend cannot tell without being built
            with that layer.

        Raises:
            LayerError: an unknown or out-of-range layer.
        """
        if self.first_name is None or self.num_layers() <= 0:
            return None
        return self.resolve_layer(layer)

    def resolve_layer(self, layer: str | int | None) -> str | int:
        """``layer`` as this backend records it (:attr:`layer`, cache keys, run.json).

        Raises:
            LayerError: an unknown or out-of-range layer.
        """
        from auralens.encoders.hf import parse_layer

        k = parse_layer(layer, str(self.first_name), self.num_layers())
        # One layer, one name: otherwise ``0`` and the first name key, sweep and resume apart.
        return self.first_name if self.zero_is_first and k == 0 else k

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "layer": self.layer, "sample_rate": self.sample_rate,
                "frame_rate": self.frame_rate, "dim": self.dim, "revision": self.revision}


EXTRACTORS: Registry[Extractor] = Registry("extractor", default="classifier")

# Lazy registrations: transformers is imported only when a backend is built.
EXTRACTORS.register("hf", "auralens.encoders.hf:build_hf")
EXTRACTORS.register("ast", "auralens.encoders.ast:build_ast")
EXTRACTORS.register("classifier", "auralens.encoders.ast:build_classifier")
EXTRACTORS.register("hubert", "auralens.encoders.hf_ssl:build_hubert")
EXTRACTORS.register("wav2vec2", "auralens.encoders.hf_ssl:build_wav2vec2")
EXTRACTORS.register("wavlm", "auralens.encoders.hf_ssl:build_wavlm")
EXTRACTORS.register("data2vec-audio", "auralens.encoders.hf_ssl:build_data2vec_audio")
EXTRACTORS.register("whisper", "auralens.encoders.whisper:build_whisper")
EXTRACTORS.register("clap", "auralens.encoders.clap:build_clap")
