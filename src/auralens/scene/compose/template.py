"""Offline default composer: a small label → setting knowledge base, no model at all.

It picks the setting compatible with the most sources (``knowledge.json``), places every
source at a position in that place, turns each label into a visual phrase and writes one
deterministic paragraph that names every source's label.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError
from auralens.scene.caption.base import readable_label
from auralens.scene.compose.base import TECHNIQUES, Composer, Description
from auralens.specs import ModelSpec, SpecError

KNOWLEDGE = Path(__file__).with_name("knowledge.json")
_CONFIDENCE = re.compile(r"\s*\((?:confidence\s*)?[0-9.]+\)")
_SOUND_OF = re.compile(r"^(?:the\s+)?sound\s+of\s+(?:an?\s+)?", re.IGNORECASE)


@dataclass
class Setting:
    """One place of the knowledge base."""

    name: str
    place: str
    mood: str
    labels: set[str] = field(default_factory=set)
    core: set[str] = field(default_factory=set)


@dataclass
class Knowledge:
    """Settings, label → visual phrases and position words."""

    settings: list[Setting]
    visuals: dict[str, str]
    positions: list[str]

    @property
    def vocabulary(self) -> set[str]:
        words = set(self.visuals)
        for s in self.settings:
            words |= s.labels
        return words


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(_text(v) for v in value)


def check_knowledge(data: Any, path: Path) -> None:
    """Check a knowledge base's layout, so a bad file fails when it is read, not halfway
    through a description (an empty ``place`` or a string of ``positions``).

    Raises:
        AuralensError: ``"<file>: knowledge base <key> must be …"``.
    """
    def bad(key: str, what: str) -> AuralensError:
        return AuralensError(f"{path}: knowledge base {key} must be {what}")

    if not isinstance(data, dict):
        raise AuralensError(f"{path}: knowledge base must be a JSON object")
    settings = data.get("settings")
    if not isinstance(settings, list) or not settings:
        raise bad("settings", "a non-empty list of settings")
    for i, setting in enumerate(settings):
        if not isinstance(setting, dict):
            raise bad(f"settings[{i}]", "an object with name, place, mood and labels")
        for key in ("name", "place"):
            if not _text(setting.get(key)):
                raise bad(f"settings[{i}].{key}", "non-empty text")
        if not isinstance(setting.get("mood", ""), str):
            raise bad(f"settings[{i}].mood", "text")
        for key in ("labels", "core"):
            if not _texts(setting.get(key, [])):
                raise bad(f"settings[{i}].{key}", "a list of non-empty labels")
    visuals = data.get("visuals", {})
    if not isinstance(visuals, dict) or not all(_text(k) and _text(v)
                                                for k, v in visuals.items()):
        raise bad("visuals", "an object of label → non-empty phrase")
    positions = data.get("positions")
    if positions is not None and not _texts(positions):
        raise bad("positions", "a list of non-empty phrases")


@lru_cache(maxsize=4)
def load_knowledge(path: str | Path = KNOWLEDGE) -> Knowledge:
    """Read a knowledge-base JSON file (same layout as the shipped ``knowledge.json``).

    Raises:
        AuralensError: an unreadable file or a bad layout (:func:`check_knowledge`).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuralensError(f"{path}: not a usable knowledge base ({exc})") from exc
    check_knowledge(data, path)
    settings = []
    for s in data["settings"]:
        core = {readable_label(x) for x in s.get("core", [])}
        labels = {readable_label(x) for x in s.get("labels", [])} | core
        settings.append(Setting(s["name"], s["place"], s.get("mood", ""), labels, core))
    visuals = {readable_label(k): v for k, v in data.get("visuals", {}).items()}
    positions = list(data.get("positions") or ["In the foreground", "In the background"])
    return Knowledge(settings, visuals, positions)


def label_from_caption(caption: str, vocabulary: set[str]) -> str:
    """Best label for a free-text caption: a "the sound of X" caption gives X; otherwise the
    longest knowledge-base label mentioned in the text; otherwise the caption itself."""
    text = _CONFIDENCE.sub("", caption).strip()
    text = text.split(", possibly also")[0].strip()
    low = text.lower()
    if _SOUND_OF.match(low):
        return readable_label(_SOUND_OF.sub("", low))
    found = [v for v in vocabulary if re.search(rf"\b{re.escape(v)}\b", low)]
    if found:
        return max(found, key=len)
    return readable_label(text.rstrip("."))


class TemplateComposer(Composer):
    """Deterministic description from labels; ``cot`` also returns the reasoning steps.

    Args:
        knowledge: path of a knowledge-base JSON (default: the shipped one).
    """

    name = "template"

    def __init__(self, knowledge: str | Path | None = None) -> None:
        self.kb = load_knowledge(Path(knowledge) if knowledge else KNOWLEDGE)

    def choose_setting(self, labels: list[str]) -> tuple[Setting, list[str]]:
        """The setting compatible with most labels; ties go to the setting for which more of
        them are characteristic ("core"), then to file order. No fit → the last setting."""
        best, best_fit, best_key = self.kb.settings[-1], [], (0, 0)
        for setting in self.kb.settings:
            fit = [lb for lb in labels if self._fits(lb, setting)]
            key = (len(fit), sum(lb in setting.core for lb in fit))
            if fit and key > best_key:
                best, best_fit, best_key = setting, fit, key
        return best, best_fit

    @staticmethod
    def _fits(label: str, setting: Setting) -> bool:
        if label in setting.labels:
            return True
        # "dog bark" fits a setting that knows "dog"; "church bell" one that knows "church bells".
        return any(re.search(rf"\b{re.escape(k)}s?\b", label) or
                   re.search(rf"\b{re.escape(label)}s?\b", k) for k in setting.labels)

    def visual(self, label: str) -> str:
        phrase = self.kb.visuals.get(label)
        if phrase is None:
            for key, value in self.kb.visuals.items():
                if re.search(rf"\b{re.escape(key)}\b", label):
                    phrase = f"{value}, the {label} clearly in view"
                    break
        if phrase is None:
            phrase = f"the source of the {label} sound, shown as a clearly visible detail"
        if label not in phrase.lower():  # the description must name every source
            phrase = f"{phrase} ({label})"
        return phrase

    def compose(self, captions: list[str], technique: str = "zero-shot",
                labels: list[str | None] | None = None) -> Description:
        if technique not in TECHNIQUES:  # as the prompted composers refuse it
            raise AuralensError(f"unknown technique {technique!r}; use one of {', '.join(TECHNIQUES)}")
        if not captions:
            raise AuralensError("nothing to compose: no captions (no source was kept)")
        vocab = self.kb.vocabulary
        names = [readable_label(lb) if lb else label_from_caption(c, vocab)
                 for c, lb in zip(captions, labels or [None] * len(captions), strict=True)]
        empty = [i for i, name in enumerate(names, 1) if not name]
        if empty:  # "" would describe "the source of the  sound"
            raise AuralensError(f"caption {empty[0]} ({captions[empty[0] - 1]!r}) names no "
                                "sound: nothing to describe for it")
        setting, fit = self.choose_setting(names)
        positions = self.kb.positions
        parts = []
        # Several estimates with one label describe one thing seen once, heard from several
        # places, rather than the same sentence repeated.
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        unique = list(dict.fromkeys(names))  # the text and the reasoning share this layout
        for i, name in enumerate(unique):
            where = positions[i] if i < len(positions) else positions[-1]
            phrase = self.visual(name)
            if counts[name] > 1:
                phrase = f"{phrase}, heard from several places at once"
            parts.append(f"{where}, {phrase}.")
        place = setting.place[0].upper() + setting.place[1:]
        text = " ".join([f"{place}.", *parts, setting.mood]).strip()
        reasoning = ""
        if technique == "cot":
            lines = [f"1. Sources: {', '.join(names)}.",
                     f"2. Setting: {setting.name} fits {len(fit)} of {len(names)} sources"
                     f"{' (' + ', '.join(fit) + ')' if fit else ''}.",
                     "3. Layout: " + "; ".join(
                         f"{name} {positions[min(i, len(positions) - 1)].lower()}"
                         + (f" (heard {counts[name]} times)" if counts[name] > 1 else "")
                         for i, name in enumerate(unique)) + ".",
                     "4. Visual form: " + "; ".join(f"{n} → {self.visual(n)}" for n in unique)
                     + ".",
                     "5. Combined into one description of the place."]
            reasoning = "\n".join(lines)
        return Description(text, reasoning)


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and the knowledge file (cheap: no model)."""
    unknown = sorted(set(params) - {"knowledge"})
    if unknown:
        raise SpecError(f"unknown template composer option(s) {', '.join(unknown)}; use knowledge")
    knowledge = params.get("knowledge") or (spec.id or None)
    if knowledge is not None and not Path(str(knowledge)).expanduser().is_file():
        raise AuralensError(f"{knowledge}: knowledge file not found (template composer)")
    if knowledge is not None:  # a bad layout fails here, before any work
        load_knowledge(Path(str(knowledge)).expanduser())


def build(spec: ModelSpec, **params: Any) -> TemplateComposer:
    """``template`` or ``template@knowledge=FILE.json``."""
    check_spec(spec, **params)
    knowledge = params.get("knowledge") or (spec.id or None)
    return TemplateComposer(Path(str(knowledge)).expanduser() if knowledge else None)
