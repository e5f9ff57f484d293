"""A composer driven by any :class:`~auralens.scene.llm.ChatModel` and a prompt template."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError
from auralens.scene.compose.base import Composer, Description
from auralens.scene.compose.prompting import (
    format_captions,
    load_template,
    parse_answer,
    require_description,
)
from auralens.scene.llm import ChatModel

log = logging.getLogger(__name__)


class ChatComposer(Composer):
    """Captions → prompt (built-in ``compose_<technique>.txt`` or a user file) → LLM → parsed
    :class:`Description` (reasoning separated for chain-of-thought).

    Args:
        llm: the chat model.
        template: a user template file used for every technique.
        **gen: generation options passed to ``llm.chat`` (``max_new_tokens``, ``temperature``).
    """

    def __init__(self, llm: ChatModel, *, template: str | Path | None = None, **gen: Any) -> None:
        self.llm = llm
        self.template = template
        self.gen = gen
        self.name = llm.name

    def messages(self, captions: list[str], technique: str = "zero-shot") -> list[dict[str, str]]:
        """The chat turns sent for ``captions``."""
        tpl = load_template("compose", technique, self.template)
        return tpl.render(captions=format_captions(captions), n_sources=str(len(captions)))

    def compose(self, captions: list[str], technique: str = "zero-shot",
                labels: list[str | None] | None = None) -> Description:
        if not captions:
            raise AuralensError("nothing to compose: no captions (no source was kept)")
        empty = [i for i, c in enumerate(captions, 1) if not str(c).strip()]
        if empty:
            raise AuralensError(f"caption {empty[0]} is empty: nothing to describe for it")
        answer = self.llm.chat(self.messages(captions, technique), **self.gen)
        return require_description(parse_answer(answer, cot=technique == "cot"), answer,
                                   self.name)
