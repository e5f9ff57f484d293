"""LLM-as-a-judge for scene descriptions, plus an offline keyword heuristic.

Metrics (see ``prompts/``):

* ``count`` — how many distinct sound sources the description mentions (1–4, 4 = four or
  more); compared with the true count it gives the under-/equal-/over-separation rates
  (US / ES / OS) of :func:`perception_rates`;
* ``recognition`` — Yes/No: does the description cover all the (weak) labels; → accuracy;
* ``coherence``, ``visual_detail``, ``imagination`` (plausible details inferred from the
  sounds, not invented objects), ``appropriateness`` (fitness as a text-to-image prompt):
  1–10 each.

Answers must end with a line ``ANSWER: <value>``. A reply that does not is re-asked once
(by default) with a format reminder; if that fails too the value is None — missing, counted
in :attr:`LLMJudge.missing`, never silently turned into 0.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from itertools import pairwise
from typing import Any

from auralens.checks import is_whole
from auralens.errors import AuralensError
from auralens.evaluate.judge_base import JUDGES, Judge
from auralens.specs import ModelSpec, parse_spec

log = logging.getLogger(__name__)

MISTRAL_ID = "mistralai/Mistral-7B-Instruct-v0.3"

Message = dict[str, str]
ChatFn = Callable[[list[Message]], str]


class JudgeError(AuralensError):
    """A judge backend that cannot be reached or used."""


@dataclass(frozen=True)
class Metric:
    """How one judge metric is asked and parsed.

    Attributes:
        name: metric key.
        kind: "int" (a bounded integer) or "bool" (Yes/No).
        lo: smallest valid integer.
        hi: largest valid integer.
        needs_labels: the prompt shows the true labels.
    """

    name: str
    kind: str
    lo: int = 1
    hi: int = 10
    needs_labels: bool = False

    @property
    def expected(self) -> str:
        return "Yes or No" if self.kind == "bool" else f"a whole number from {self.lo} to {self.hi}"


METRICS: dict[str, Metric] = {
    "count": Metric("count", "int", 1, 4),
    "recognition": Metric("recognition", "bool", needs_labels=True),
    "coherence": Metric("coherence", "int"),
    "visual_detail": Metric("visual_detail", "int"),
    "imagination": Metric("imagination", "int", needs_labels=True),
    "appropriateness": Metric("appropriateness", "int"),
}
SCORE_METRICS = ("coherence", "visual_detail", "imagination", "appropriateness")


@cache
def load_prompt(name: str) -> str:
    """Text of ``prompts/<name>.txt`` shipped with the package."""
    return resources.files("auralens.evaluate").joinpath("prompts", f"{name}.txt").read_text(
        encoding="utf-8")


def _metric(name: str) -> Metric:
    if name not in METRICS:
        raise JudgeError(f"unknown judge metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]


def format_labels(labels: Sequence[str] | None) -> str:
    """``["crackling_fire", "dog"]`` → ``"crackling fire, dog"``."""
    return ", ".join(str(lab).replace("_", " ") for lab in labels or []) or "(none given)"


_PLACEHOLDER_RE = re.compile(r"\{(text|labels)\}")


def build_messages(metric: str, text: str, labels: Sequence[str] | None = None) -> list[Message]:
    """System + user messages asking ``metric`` about ``text``.

    The placeholders are filled in one pass, so a description or label that itself contains
    ``{labels}`` or ``{text}`` is inserted verbatim.
    """
    m = _metric(metric)
    values = {"text": text.strip(), "labels": format_labels(labels)}
    user = _PLACEHOLDER_RE.sub(lambda match: values[match.group(1)], load_prompt(m.name))
    return [{"role": "system", "content": load_prompt("system").strip()},
            {"role": "user", "content": user.strip()}]


_ANSWER_RE = re.compile(r"^[\s*_#>`]*answer[\s*_]*[:=][\s*_`]*(.+?)[\s*_`.]*$",
                        re.IGNORECASE)


def parse_answer(reply: str, metric: str) -> Any:
    """Strictly parse a judge reply: the last non-empty line must be ``ANSWER: <value>``.

    Returns:
        int within the metric's range, bool for Yes/No metrics, or None when the reply does
        not follow the format or the value is out of range.
    """
    m = _metric(metric)
    lines = [ln for ln in (reply or "").strip().splitlines() if ln.strip()]
    if not lines:
        return None
    match = _ANSWER_RE.match(lines[-1])
    if not match:
        return None
    # Markdown emphasis around the label or the value (``**ANSWER:** 7``, ``ANSWER: **Yes**``)
    value = match.group(1).strip().strip("\"'*_`").strip()
    if m.kind == "bool":
        low = value.lower()
        return True if low == "yes" else False if low == "no" else None
    # "7/10" restates the 1–10 scale; on any other scale ("3/10" for a 1–4 count) it is a
    # confused answer, not a value
    scale = r"(?:\s*/\s*10)?" if m.hi == 10 else ""
    num = re.fullmatch(rf"(\d+){scale}", value)
    if not num:
        return None
    n = int(num.group(1))
    return n if m.lo <= n <= m.hi else None


@dataclass
class JudgeAnswer:
    """One judged value with the raw replies kept for auditing."""

    metric: str
    value: Any
    replies: list[str] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.replies)


# ----------------------------------------------------------------------------- chat backends


#: Options of :class:`LLMJudge` itself; every other spec option belongs to the chat model.
#: (On an ``openai:`` judge ``retries`` is the judge's re-asks, not the connection retries.)
JUDGE_OPTIONS = ("retries", "name")


def check_chat_spec(spec: ModelSpec) -> None:
    """Refuse chat-model options the backend would silently ignore, and bad values, before
    anything loads (the checks the ``hf`` / ``openai`` composers run).

    Raises:
        SpecError: one line naming the unknown options and the allowed ones.
    """
    from auralens.scene.llm import (
        CHAT_PRESETS,
        check_hf_chat_spec,
        check_openai_spec,
        resolve_model_id,
    )

    if spec.kind == "openai":
        check_openai_spec("openai judge", spec.id, spec.params)
    elif spec.kind in CHAT_PRESETS and not spec.id:
        check_hf_chat_spec("hf judge", CHAT_PRESETS[spec.kind], spec.params)
    elif spec.kind in ("hf", "path"):
        check_hf_chat_spec("hf judge", resolve_model_id(spec, CHAT_PRESETS), spec.params)
    # any other kind: load_chat_model refuses it with the list of accepted specs


def load_chat(spec: str | ModelSpec, **params: Any) -> tuple[ChatFn, str]:
    """A chat callable for ``hf:`` / ``openai:`` specs (or a local model directory), built by
    the loader the composers use (:func:`auralens.scene.llm.load_chat_model`).

    ``openai:<model>@base_url=…,api_key_env=MY_KEY`` reads the API key from ``$MY_KEY``.
    The judge's own options (:data:`JUDGE_OPTIONS`) are taken out of the spec first; the
    rest is checked (:func:`check_chat_spec`), so a misspelt option is refused, not ignored.

    Returns:
        ``(chat, name)``.

    Raises:
        SpecError: an unknown option or a bad value.
    """
    from auralens.scene.llm import load_chat_model

    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    merged = {k: v for k, v in {**parsed.params, **params}.items() if k not in JUDGE_OPTIONS}
    parsed = ModelSpec(parsed.kind, parsed.id, merged, parsed.raw)
    check_chat_spec(parsed)
    model = load_chat_model(parsed)
    return model.chat, str(getattr(model, "name", parsed))


# ----------------------------------------------------------------------------- judges


class LLMJudge(Judge):
    """A chat LLM asked one metric at a time with strict answer parsing and a retry.

    Args:
        spec: ``hf:<id or dir>`` or ``openai:<model>@base_url=…``; ignored when ``chat`` is
            given.
        chat: any callable ``messages -> reply`` (e.g. a ``ChatModel.chat``).
        retries: re-asks with a format reminder after an unparseable reply.
        name: label for outputs (defaults to the spec).
    """

    is_llm = True

    def __init__(self, spec: str | ModelSpec | None = None, *, chat: ChatFn | None = None,
                 retries: int = 1, name: str | None = None, **params: Any) -> None:
        if not is_whole(retries, 0):
            raise JudgeError(f"judge option retries must be a whole number ≥ 0, got {retries!r}")
        if chat is None:
            if spec is None:
                raise JudgeError("LLMJudge needs a model spec or a chat callable")
            chat, auto_name = load_chat(spec, **params)
            name = name or auto_name
        self.chat = chat
        self.llm = getattr(chat, "__self__", None)  # the chat model, whose weights run.json names
        self.retries = int(retries)
        self.name = name or "llm"
        self.missing: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()

    def ask(self, metric: str, text: str, labels: list[str] | None = None) -> JudgeAnswer:
        """Ask one metric, re-asking with a reminder until it parses or retries run out.

        Recognition without labels has nothing to check: missing (None), the model is not
        asked, as with the keyword judge.
        """
        m = _metric(metric)
        answer = JudgeAnswer(metric, None)
        if metric == "recognition" and not labels:
            self.missing[metric] += 1
            return answer
        messages = build_messages(metric, text, labels)
        for attempt in range(self.retries + 1):
            self.calls[metric] += 1
            reply = self.chat(messages)
            answer.replies.append(reply)
            value = parse_answer(reply, metric)
            if value is not None:
                answer.value = value
                return answer
            if attempt < self.retries:
                self.retried[metric] += 1
                reminder = load_prompt("reminder").replace("{expected}", m.expected).strip()
                messages = [*messages, {"role": "assistant", "content": reply},
                            {"role": "user", "content": reminder}]
        self.missing[metric] += 1
        log.info("judge reply for %s unparseable after %d attempts", metric, len(answer.replies))
        return answer

    def score(self, metric: str, text: str, labels: list[str] | None = None) -> Any:
        return self.ask(metric, text, labels).value

    def stats(self) -> dict[str, Any]:
        """Calls, retries and missing answers per metric (for run.json)."""
        return {"calls": dict(self.calls), "retried": dict(self.retried),
                "missing": dict(self.missing)}


def mistral_judge(spec: ModelSpec, **params: Any) -> LLMJudge:
    """The study's judge, Mistral-7B-Instruct-v0.3, through transformers (``hf:``)."""
    return LLMJudge(ModelSpec("hf", MISTRAL_ID, dict(spec.params), MISTRAL_ID), **params)


# Synonym groups for the heuristic judge: ESC-10 classes and a few common FSD50K ones, in
# base form (a word of the text is reduced to its candidate base forms, see _stems). A group
# names one source: a sound many sources make ("cries" of a baby or a seagull) is no term.
SOUND_SYNONYMS: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "bark", "puppy", "hound", "woof", "doggy", "doggie"),
    "rooster": ("rooster", "cock", "crow", "cockerel", "chicken"),
    "rain": ("rain", "drizzle", "downpour", "raindrop", "shower"),
    "sea_waves": ("wave", "sea", "ocean", "surf", "shore", "beach"),
    "crackling_fire": ("fire", "flame", "crackle", "campfire", "fireplace", "ember"),
    "crying_baby": ("baby", "infant", "newborn", "toddler"),
    "sneezing": ("sneeze",),
    "clock_tick": ("clock", "tick"),
    "helicopter": ("helicopter", "rotor", "chopper"),
    # "saw" matches saws, sawing, sawed and "chain saw", but a bare "saw" is never a mention
    # (see _NOT_SOUNDS): "I saw" is no sound, so "a saw cuts wood" is not recognised either
    "chainsaw": ("chainsaw", "saw", "logging"),
    "cat": ("cat", "meow", "kitten"),
    "bird": ("bird", "chirp", "tweet", "birdsong", "sparrow"),
    "car": ("car", "vehicle", "engine", "traffic"),
    "speech": ("speech", "talk", "voice", "conversation", "speak", "people"),
    "music": ("music", "song", "melody", "guitar", "piano"),
    "water": ("water", "stream", "river", "splash", "drip"),
    "wind": ("wind", "gust", "breeze"),
    "door": ("door", "knock"),
    "footsteps": ("footstep", "walking", "step"),
    "bell": ("bell", "chime"),
}
#: The terms of ESC-50 classes whose label words recognise them badly: a word that names
#: something else too ("can", "crow" of a rooster) or a common other name ("washer",
#: "thunder"). A term of two words needs both (``can open``: "a can is opened", not "you can
#: hear"). An entry decides the label's recognition; no synonym group is merged into it.
CLASS_TERMS: dict[str, tuple[str, ...]] = {
    "airplane": ("airplane", "aeroplane", "aircraft", "airliner", "jet"),
    "brushing_teeth": ("toothbrush", "brush teeth", "brush tooth"),
    "can_opening": ("can open", "can opener"),
    "car_horn": ("horn", "honk"),
    "chirping_birds": ("bird", "songbird", "birdsong", "sparrow"),
    "crow": ("crow", "caw"),
    "engine": ("engine", "motor"),
    "glass_breaking": ("shatter", "smash", "glass break"),
    "hand_saw": ("handsaw", "saw"),
    "thunderstorm": ("thunderstorm", "thunder", "thunderclap"),
    "vacuum_cleaner": ("vacuum", "hoover"),
    "washing_machine": ("washer", "wash machine"),
    "water_drops": ("drip", "droplet", "drop water"),
}
VISUAL_WORDS = frozenset((
    "red orange yellow green blue purple pink brown black white grey gray golden silver dark "
    "bright dim light shadow shadows sunlight sunset sunrise dusk dawn night morning evening "
    "afternoon moon moonlit sky cloud clouds cloudy fog foggy mist misty glow glowing warm "
    "cold wet dry large small tall tiny huge wide narrow old wooden stone metal glass brick "
    "grass tree trees forest field street road room window wall floor table background "
    "foreground distance left right center corner above below near far"
).split())
_WORD_RE = re.compile(r"[a-z]+")
#: Words of a label that name no source: "Dishes_and_pots_and_pans" is dishes, pots, pans.
_STOPWORDS = frozenset(
    "a an and or the of with without in on at by for from to into onto off over under "
    "sound sounds".split())
#: Everyday objects and materials: in a label of several words they only say whose sound it
#: is (car_horn is a horn, mouse_click a click), so alone they do not recognise it.
_GENERIC_WORDS = frozenset(
    "can hand car clock mouse paper fire toilet door wood glass water keyboard computer "
    "church machine".split())
#: Text words that are never a sound mention on their own ("I saw" is the past of "see").
_NOT_SOUNDS = frozenset({"saw"})
#: A word that, followed by one of these, names something that is neither: a fire engine is
#: no fire (nor the engine class), a fire alarm no fire.
_NOT_SOUND_PAIRS = {"fire": frozenset({"engine", "truck", "alarm"})}
#: Closed compounds that name the sound of their first part (never "sea" in "season", "rain"
#: in "brainstorm" or "water" in "waterfront": only these words).
_COMPOUNDS = {"rainfall": "rain", "rainstorm": "rain", "raindrop": "rain",
              "rainwater": "rain", "seashore": "sea", "seaside": "sea", "seafront": "sea",
              "shoreline": "shore", "waterfall": "water", "windstorm": "wind"}
#: Sound terms that are also verbs naming something else (a woman waves, a man fires a gun)
#: or another source (a rooster crows, which is no crow), each with the term its verb use
#: stands for: None for no sound source. See :func:`_verb_use`.
_VERB_SENSES: dict[str, str | None] = {"wave": None, "fire": None, "crow": "rooster"}
#: Subjects after which one of those terms is the verb ("she waves", "the rooster crows"):
#: pronouns and the people and birds that do such things. Never a word that also makes a
#: compound noun with them ("the sea waves", "ocean waves", "a forest fire").
_SUBJECTS = frozenset(
    "i you he she it we they who someone somebody everyone everybody anyone nobody man men "
    "woman women boy girl child children kid baby person people crowd guy lady friend "
    "soldier hunter rooster cock cockerel hen chicken bird".split())
#: A one-syllable base ending in one vowel and one consonant doubles it before ed / ing
#: (hop → hopping), so "hoping" comes from "hope", and "caring" from "care", not "car".
_SHORT_CVC_RE = re.compile(r"[^aeiou]*[aeiou][^aeiouwxy]")
_GROUPS = {key: frozenset(terms) for key, terms in SOUND_SYNONYMS.items()}


@lru_cache(maxsize=16384)
def _stems(word: str) -> frozenset[str]:
    """Candidate base forms of ``word``: itself, and with a plural or verb ending (s, es,
    ies, ed, ied, ing) taken off, a dropped final e put back and a doubled consonant
    undoubled: ``growls``, ``growling`` → growl; ``drilling`` → drill; ``snoring`` → snore;
    ``horses`` → horse; ``babies``, ``cried`` → baby, cry. Candidates that are no words
    (``drille``) match nothing."""
    out = {word}
    if len(word) >= 4 and word.endswith("s") and not word.endswith("ss"):
        out.add(word[:-1])  # waves → wave, horses → horse
        if re.search(r"(?:[sxz]|[cs]h)es$", word):
            out.add(word[:-2])  # dishes → dish
        if word.endswith("ies") and len(word) >= 5:
            out.add(word[:-3] + "y")  # babies → baby
    for ending in ("ing", "ed"):
        base = word[: -len(ending)]
        if not word.endswith(ending) or len(base) < 3:
            continue
        if ending == "ed" and base.endswith("i"):
            out.add(base[:-1] + "y")  # cried → cry
        if base[-1] == base[-2] and base[-1] not in "aeiou":
            out.add(base[:-1])  # dripping → drip
        if not _SHORT_CVC_RE.fullmatch(base):
            out.add(base)  # barking → bark
        if not base.endswith("e"):
            out.add(base + "e")  # snoring → snore, crackling → crackle
    return frozenset(out)


def _verb_use(words: Sequence[str], i: int) -> str | None:
    """The term of :data:`_VERB_SENSES` that ``words[i]`` uses as a verb, or None when it is
    no such term or reads as the noun.

    Only what the words decide: an ``ed`` or ``ing`` form (``waving``, ``fired``, ``crowing``)
    is always the verb; the bare or ``s`` form (``wave``, ``waves``) is the verb right after a
    subject of :data:`_SUBJECTS` ("a woman waves", "they wave", "the rooster crows") and the
    noun anywhere else ("waves crash", "the sea waves", "ocean waves", "a crow caws").
    """
    word = words[i]
    terms = _stems(word) & _VERB_SENSES.keys()
    if not terms:
        return None
    term = min(terms)
    if word not in (term, term + "s"):
        return term
    return term if i > 0 and _stems(words[i - 1]) & _SUBJECTS else None


def _text_stems(text: str) -> frozenset[str]:
    """Candidate base forms of every word of ``text`` (:func:`_stems`), of every compound
    written as two words (``chain saw`` → chainsaw) and the sound named by a compound of
    :data:`_COMPOUNDS` (``rainfall`` → rain). The words of a pair of :data:`_NOT_SOUND_PAIRS`
    are left out, and a verb use of a term of :data:`_VERB_SENSES` (:func:`_verb_use`) stands
    for what the verb names ("a woman waves": nothing; "the rooster crows": a rooster)."""
    words = _WORD_RE.findall(text.lower())
    joined = [a + b for a, b in pairwise(words) if len(a) >= 3 and len(b) >= 3]
    skip = {i + k for i, (a, b) in enumerate(pairwise(words))
            if a in _NOT_SOUND_PAIRS and _stems(b) & _NOT_SOUND_PAIRS[a] for k in (0, 1)}
    out: set[str] = set()
    kept = []
    for i, word in enumerate(words):
        if word in _NOT_SOUNDS or i in skip:
            continue
        verb = _verb_use(words, i)
        if verb is None:
            kept.append(word)
        elif _VERB_SENSES[verb] is not None:
            out.add(_VERB_SENSES[verb])
    for word in kept + joined:
        for stem in _stems(word):
            out.add(stem)
            if stem in _COMPOUNDS:
                out.add(_COMPOUNDS[stem])
    return frozenset(out)


def _matched(found: frozenset[str], terms: frozenset[str]) -> frozenset[str]:
    """The terms found in a text's stems; a term of two words needs both."""
    return frozenset(t for t in terms if t in found or (" " in t and found.issuperset(t.split())))


def _name_terms(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """``(names, words)`` of one name of a label (see :func:`_label_terms`)."""
    key = name.lower().replace(" ", "_")
    tokens = re.split(r"[_\s,/\-]+", re.sub(r"\([^)]*\)", " ", name.lower()))
    content = [t for t in tokens if len(t) >= 3 and t not in _STOPWORDS]
    # a qualifier in brackets ("Motor_vehicle_(road)") says which one, never the source
    qualifiers = [t for inner in re.findall(r"\(([^)]*)\)", name.lower())
                  for t in re.split(r"[_\s,/\-]+", inner) if len(t) >= 3 and t not in _STOPWORDS]
    words = frozenset().union(*map(_stems, content + qualifiers))
    if key in CLASS_TERMS:
        names = frozenset(CLASS_TERMS[key])
        return names, words - names
    if key in _GROUPS:
        return _GROUPS[key], frozenset()
    if not content:
        if words:
            return words, frozenset()
        if all(t in _STOPWORDS for t in tokens if t):
            # "sound" (every source of the official FUSS release) names no source: were it
            # a term, every "the sound of …" would mention one more source
            return frozenset(), frozenset()
        return frozenset({name.lower()}), frozenset()
    specific = [t for t in content if not _stems(t) & _GENERIC_WORDS] or content
    own = frozenset().union(*map(_stems, specific))
    own |= {a + b for a, b in pairwise(tokens) if a in content and b in content}  # handsaw
    weak = words - own
    return own.union(*(g for g in _GROUPS.values() if g & own)) - weak, weak


@lru_cache(maxsize=4096)
def _label_terms(label: str) -> tuple[frozenset[str], frozenset[str]]:
    """``(names, words)`` of a label: the terms that recognise it, and the other words of its
    name, which tell it apart from other labels but do not recognise it alone.

    A label joined with ``|`` ("Bark|Dog|Animal") is one source with several names. A name of
    :data:`CLASS_TERMS` is recognised by its terms; a name of :data:`SOUND_SYNONYMS` by its
    group; any other by the base forms of its words, stopwords, words in brackets and (when
    it has other words) :data:`_GENERIC_WORDS` left out, and of the groups sharing one of
    them ("Dog barking" and the dog group are one dog). A name of stopwords only
    (``sound``) has no terms: it names no source.
    """
    names: frozenset[str] = frozenset()
    words: frozenset[str] = frozenset()
    for part in filter(None, (p.strip() for p in label.split("|"))):
        n, w = _name_terms(part)
        names, words = names | n, words | w
    return names, words - names


def _count_sources(found: frozenset[str], labels: Sequence[str]) -> int:
    """Distinct sound sources mentioned (see :class:`KeywordJudge`)."""
    sources = [_label_terms(lab) for lab in dict.fromkeys(labels)]
    sources += [(g, frozenset()) for g in _GROUPS.values()
                if not any(g <= names for names, _ in sources)]
    every = [names | words for names, words in sources]
    hits = [_matched(found, names) for names, _ in sources]
    counted, taken = 0, set()
    for i, hit in enumerate(hits):
        if hit - frozenset().union(*(t for j, t in enumerate(every) if j != i)):
            counted += 1
            taken |= every[i]
    # the others are named only by terms other sources have too: one source for each set of
    # them sharing such terms, none where a counted source has the term
    shared: list[set[str]] = []
    for hit in hits:
        terms = set(hit - taken)
        for other in [s for s in shared if s & terms]:
            terms |= other
            shared.remove(other)
        if terms:
            shared.append(terms)
    return counted + len(shared)


class KeywordJudge(Judge):
    """An offline keyword heuristic — NOT an LLM; its numbers are labelled as such.

    * ``count``: distinct sound sources mentioned, clipped to 1–4; None when no sound word
      is found. The sources are the given labels (a label joined with ``|`` is one) and the
      built-in synonym groups that are not wholly a label's (:func:`_label_terms`). A source
      counts when the text names it by a term no other source has; the others named only by
      terms they share count once for each set of them sharing a term, and not at all when a
      counted source has that term: ``clock_alarm`` and ``clock_tick`` with "a clock ticks"
      are one clock, "a man speaks while a woman speaks" two speakers.
    * ``recognition``: every label is named in the text: one of its names for a ``|`` label;
      None (missing) when a label names no source (only words such as ``sound``, the label
      of every source in the official FUSS release), which no text can be checked against.
    * ``visual_detail``: 1 + number of distinct visual words (colours, light, materials,
      places, layout), capped at 10.

    Sound words match whole, compared by their candidate base forms (:func:`_stems`):
    ``bark`` matches ``barks``, ``barking``, ``barked``; the label ``Growling`` matches
    ``growls`` and ``growl``; ``cat`` does not match ``category``. A compound matches its
    first part when written as two words (``chain saw``) or when it is one of
    :data:`_COMPOUNDS` (``rainfall``, ``seashore``). A term that is also a verb naming
    something else counts only where the words show it is the noun (:func:`_verb_use`): "a
    woman waves" and "she waves" name no sea waves, "the rooster crows" and "a rooster
    crowing" no crow (but a rooster); "waves crash", "the sea waves" and "ocean waves" do.

    Coherence, imagination and appropriateness need language understanding; this judge
    does not support them (see :attr:`supports`), so runners skip them with a note.
    """

    name = "keyword-heuristic (not an LLM)"
    is_llm = False
    supports = frozenset({"count", "recognition", "visual_detail"})

    def __init__(self, spec: ModelSpec | None = None, **params: Any) -> None:
        self.missing: Counter[str] = Counter()

    def score(self, metric: str, text: str, labels: list[str] | None = None) -> Any:
        _metric(metric)
        if metric not in self.supports:
            raise JudgeError(f"the keyword heuristic cannot score {metric!r} "
                             f"(supported: {', '.join(sorted(self.supports))})")
        if metric == "visual_detail":
            return 1 + min(9, len(set(_WORD_RE.findall(text.lower())) & VISUAL_WORDS))
        found = _text_stems(text)
        if metric == "recognition":
            if not labels:
                self.missing[metric] += 1
                return None
            names = [_label_terms(str(lab))[0] for lab in labels]
            if not all(names):  # a label that names no source ("sound") cannot be checked
                self.missing[metric] += 1
                return None
            return all(_matched(found, n) for n in names)
        n = _count_sources(found, [str(lab) for lab in labels or []])
        if not n:
            self.missing[metric] += 1
            return None
        return min(4, n)

    def stats(self) -> dict[str, Any]:
        return {"missing": dict(self.missing), "note": "keyword heuristic, not an LLM"}


def build_judge(spec: str | ModelSpec | None = None, **params: Any) -> Judge:
    """``JUDGES.build`` with the registry's default (``mistral``)."""
    return JUDGES.build(spec, **params)


# ----------------------------------------------------------------------------- metrics


def perception_rates(pred: Sequence[int | None], true: Sequence[int]) -> dict[str, Any]:
    """Source-perception rates over items with a parsed count.

    ``US`` = fraction with ``pred < true`` (under-separated), ``ES`` = ``pred == true``,
    ``OS`` = ``pred > true``. True counts above 4 are clipped to 4 (the judge's scale).

    Returns:
        ``{"US", "ES", "OS", "n", "missing"}``; rates are None when nothing parsed.
    """
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predicted counts but {len(true)} true counts")
    pairs = [(int(p), min(int(t), 4)) for p, t in zip(pred, true, strict=True) if p is not None]
    missing = len(pred) - len(pairs)
    n = len(pairs)
    if n == 0:
        return {"US": None, "ES": None, "OS": None, "n": 0, "missing": missing}
    return {"US": sum(p < t for p, t in pairs) / n, "ES": sum(p == t for p, t in pairs) / n,
            "OS": sum(p > t for p, t in pairs) / n, "n": n, "missing": missing}


def accuracy(values: Sequence[bool | None]) -> dict[str, Any]:
    """Fraction of True among parsed Yes/No answers; ``{"acc", "n", "missing"}``."""
    parsed = [bool(v) for v in values if v is not None]
    n = len(parsed)
    return {"acc": (sum(parsed) / n) if n else None, "n": n, "missing": len(values) - n}


def recognition_per_caption(judge: Judge, captions: Sequence[str],
                            labels: Sequence[str]) -> bool | None:
    """Label recognition for a pipeline output, judged caption by caption.

    A label counts as recognised when some caption is judged to cover it, as not recognised
    when every caption is definitely judged not to, and as unknown otherwise (a missing
    judgement). Every label is judged, so the verdict does not depend on label order: False
    when any label is definitely not recognised, else None when any is unknown, else True.
    """
    if not labels:
        return None
    verdicts = []
    for label in labels:
        values = [judge.score("recognition", cap, [label]) for cap in captions]
        if any(v is True for v in values):
            verdicts.append(True)
        elif values and all(v is False for v in values):
            verdicts.append(False)
        else:
            verdicts.append(None)
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


def judge_description(
    judge: Judge,
    text: str,
    labels: Sequence[str],
    metrics: Sequence[str] = ("count", "recognition", *SCORE_METRICS),
    *,
    n_kept: int | None = None,
    captions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All judge metrics for one description.

    Args:
        judge: the judge.
        text: the description.
        labels: the true (weak) labels of the clip.
        metrics: which metrics to compute; ones the judge does not support are left out.
        n_kept: for pipeline outputs, the number of kept sources is the perceived count
            (no judge call).
        captions: for pipeline outputs, recognition is judged per caption
            (:func:`recognition_per_caption`).

    Returns:
        ``{metric: value or None}`` plus ``count_source`` / ``recognition_source`` saying
        where those came from.
    """
    out: dict[str, Any] = {}
    for metric in metrics:
        if metric not in judge.supports and not (metric == "count" and n_kept is not None):
            continue
        if metric == "count" and n_kept is not None:
            out["count"] = min(4, int(n_kept))  # 0 kept sources is a real (under-)count
            out["count_source"] = "kept_sources"
        elif metric == "recognition" and captions:
            out["recognition"] = recognition_per_caption(judge, captions, labels)
            out["recognition_source"] = "per_caption"
        else:
            out[metric] = judge.score(metric, text, list(labels))
            if metric in ("count", "recognition"):
                out[f"{metric}_source"] = "judge"
    return out
