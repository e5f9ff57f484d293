"""The ``Composer`` protocol: per-source captions → one image description.

A backend module may also define ``check_spec(spec, **params)``: cheap checks of a spec (option
names and values, a local folder's files; no weights, no network) that
:func:`auralens.scene.pipeline.check_stage` runs for every configured stage before any work,
and that the backend's ``build`` calls first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from auralens.registry import Registry

#: Prompting techniques understood by composers and the audio-LLM baseline.
TECHNIQUES = ("zero-shot", "cot", "role", "few-shot")


@dataclass
class Description:
    """A scene description and, for chain-of-thought, the reasoning kept apart."""

    text: str
    reasoning: str = ""


class Composer(ABC):
    """Reason from captions to a single vivid description fit for a text-to-image model."""

    name: str = "composer"

    @abstractmethod
    def compose(self, captions: list[str], technique: str = "zero-shot",
                labels: list[str | None] | None = None) -> Description:
        """Merge captions (one per kept source) into a :class:`Description`.

        Args:
            captions: one caption per kept source.
            technique: one of :data:`TECHNIQUES`.
            labels: optional class label per caption (from classifier/CLAP captioners);
                composers that work from labels (``template``) prefer them.
        """


COMPOSERS: Registry[Composer] = Registry("composer", default="template")

# Lazy registrations: heavy libraries load only when a backend is built.
COMPOSERS.register("template", "auralens.scene.compose.template:build")
COMPOSERS.register("hf", "auralens.scene.compose.hf_chat:build",
                   aliases=("qwen2.5", "mistral", "falcon3"))
COMPOSERS.register("openai", "auralens.scene.compose.openai_api:build")
