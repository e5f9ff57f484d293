"""The ``Judge`` protocol: an LLM that scores a description."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from auralens.registry import Registry


class Judge(ABC):
    """LLM-as-a-judge.

    ``score`` returns the parsed value for ``metric`` (int count, bool, or 1–10 score) or
    None when the answer could not be parsed after the retries (counted as missing).
    """

    name: str = "judge"

    @abstractmethod
    def score(self, metric: str, text: str, labels: list[str] | None = None) -> Any:
        """Score ``text`` on ``metric`` ("count", "recognition", "coherence" …)."""


JUDGES: Registry[Judge] = Registry("judge", default="mistral")
