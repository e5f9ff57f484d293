"""The ``Judge`` protocol: an LLM that scores a description."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from auralens.registry import Registry


class Judge(ABC):
    """LLM-as-a-judge.

    ``score`` returns the parsed value for ``metric`` (int count, bool, or 1–10 score) or
    None when the answer could not be parsed after the retries (counted as missing).

    Attributes:
        name: backend + model id, written into results and run.json.
        is_llm: False for heuristic judges, so tables never present them as an LLM's verdict.
        supports: the metrics this judge can score (a heuristic judge may support fewer).
    """

    name: str = "judge"
    is_llm: bool = True
    supports: frozenset[str] = frozenset(
        {"count", "recognition", "coherence", "visual_detail", "imagination", "appropriateness"}
    )

    @abstractmethod
    def score(self, metric: str, text: str, labels: list[str] | None = None) -> Any:
        """Score ``text`` on ``metric`` ("count", "recognition", "coherence" …)."""


JUDGES: Registry[Judge] = Registry("judge", default="mistral")
JUDGES.register("hf", "auralens.evaluate.judge:LLMJudge")
JUDGES.register("openai", "auralens.evaluate.judge:LLMJudge")
JUDGES.register("mistral", "auralens.evaluate.judge:mistral_judge")
JUDGES.register("keyword", "auralens.evaluate.judge:KeywordJudge", aliases=("heuristic",))
