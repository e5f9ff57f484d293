"""Prompt template files and parsing of chain-of-thought answers.

A template is a text file with ``### system`` / ``### user`` / ``### assistant`` sections (see
``prompts/README.md``). Only the known placeholders ``{captions}`` and ``{n_sources}`` are
replaced, so braces elsewhere in a user's template are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from auralens.errors import AuralensError
from auralens.scene.compose.base import TECHNIQUES, Description

PROMPTS_DIR = Path(__file__).with_name("prompts")
_ROLES = ("system", "user", "assistant")
_HEADER = re.compile(r"^###\s*(system|user|assistant)\s*$", re.IGNORECASE | re.MULTILINE)
#: Markers a CoT answer may use before the final description (first is the one we ask for).
FINAL_MARKERS = ("final description", "final answer", "scene description", "description")


class TemplateError(AuralensError):
    """A prompt template file that cannot be used."""


@dataclass
class PromptTemplate:
    """Chat turns with placeholders.

    Attributes:
        messages: ``[{"role", "content"}]`` in order.
        source: file it came from.
    """

    messages: list[dict[str, str]]
    source: str = ""

    def render(self, **values: str) -> list[dict[str, str]]:
        """Replace ``{name}`` placeholders for the given names only."""
        out = []
        for m in self.messages:
            text = m["content"]
            for key, value in values.items():
                text = text.replace("{" + key + "}", str(value))
            out.append({"role": m["role"], "content": text})
        return out


def parse_template(text: str, source: str = "") -> PromptTemplate:
    """Split a template's text into chat turns (no header → a single user turn)."""
    parts = _HEADER.split(text)
    messages: list[dict[str, str]] = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for role, body in zip(parts[1::2], parts[2::2], strict=True):
        if body.strip():
            messages.append({"role": role.lower(), "content": body.strip()})
    if not any(m["role"] == "user" for m in messages):
        raise TemplateError(f"{source or 'template'}: no user turn")
    if messages[-1]["role"] != "user":
        raise TemplateError(f"{source or 'template'}: the last turn must be a user turn")
    return PromptTemplate(messages, source)


def load_template(task: str, technique: str = "zero-shot",
                  path: str | Path | None = None) -> PromptTemplate:
    """A user's template file, or the built-in ``prompts/<task>_<technique>.txt``.

    Args:
        task: ``"compose"`` or ``"allm"``.
        technique: one of :data:`TECHNIQUES` (ignored when ``path`` is given).
        path: a user template file.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise TemplateError(f"{p}: template file not found")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"{p}: template file cannot be read as UTF-8 text "
                                f"({type(exc).__name__})") from exc
        return parse_template(text, str(p))
    if technique not in TECHNIQUES:
        raise TemplateError(f"unknown technique {technique!r}; use one of {', '.join(TECHNIQUES)}")
    p = PROMPTS_DIR / f"{task}_{technique}.txt"
    if not p.exists():
        raise TemplateError(f"no built-in {task} template for technique {technique!r}")
    return parse_template(p.read_text(encoding="utf-8"), str(p))


def require_description(desc: Description, answer: str, name: str) -> Description:
    """``desc`` when it holds text.

    Raises:
        AuralensError: the model's answer holds no description (empty, or a marker with
            nothing after it), naming the model and how the answer starts.
    """
    if desc.text.strip():
        return desc
    start = " ".join((answer or "").split())[:60]
    said = f"its answer starts with {start!r}" if start else "its answer was empty"
    raise AuralensError(f"{name}: the model gave no description ({said}; if it was cut off "
                        "at the token limit, raise max_new_tokens)")


def format_captions(captions: list[str]) -> str:
    """Numbered list, one caption per line."""
    return "\n".join(f"{i}. {c.strip()}" for i, c in enumerate(captions, 1))


def _clean(text: str) -> str:
    text = text.strip().strip("*_ ").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    if text.startswith("“") and text.endswith("”"):
        text = text[1:-1].strip()
    return text


def parse_answer(text: str, cot: bool = False) -> Description:
    """Split an LLM answer into the final description and the reasoning before it.

    The last ``Final description:`` (or a similar marker, in bold or not) wins. With no
    marker, a CoT answer's last paragraph is the description and the rest the reasoning;
    a non-CoT answer is the description as a whole. A marker with nothing after it (an
    answer cut off at the token limit) gives an empty description, never the marker itself.
    """
    raw = (text or "").strip()
    if not raw:
        return Description("", "")
    for marker in FINAL_MARKERS:
        pattern = re.compile(rf"(?:^|\n)[#>*_\s]*{marker}\s*[*_]*\s*[:：]\s*[*_]*",
                             re.IGNORECASE)
        hits = list(pattern.finditer(raw))
        if hits:
            last = hits[-1]
            return Description(_clean(raw[last.end():]), raw[:last.start()].strip())
    if not cot:
        return Description(_clean(raw), "")
    paragraphs = [p for p in re.split(r"\n\s*\n", raw) if p.strip()]
    if len(paragraphs) == 1:
        return Description(_clean(raw), "")
    return Description(_clean(paragraphs[-1]), "\n\n".join(paragraphs[:-1]).strip())
