"""Model specs: ``kind:id@key=value,key=value`` strings and local paths.

Examples:
    ``hf:MIT/ast-finetuned-audioset-10-10-0.4593@layer=4``
        kind ``hf``, id ``MIT/ast-finetuned-audioset-10-10-0.4593``, params ``{"layer": 4}``
    ``mel@n_mels=128`` kind ``mel``, no id
    ``/models/my-hubert@layer=features`` kind ``path`` (a local directory)
    ``openai:qwen2.5-7b@base_url=http://127.0.0.1:8000/v1``
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError

_KIND_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_\-]*):(?!//)(.*)$")


class SpecError(AuralensError, ValueError):
    """A model spec string that cannot be parsed."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes:
        kind: backend name ("hf", "mel", "openai", "path" for a local path …).
        id: hub id, local path or model name; empty when the backend needs none.
        params: ``@key=value`` options with ints, floats and booleans converted.
        raw: the original string.
    """

    kind: str
    id: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    raw: str = ""

    @property
    def path(self) -> Path | None:
        """The id as an existing local path, else None."""
        if not self.id:
            return None
        p = Path(os.path.expanduser(self.id))
        return p if _exists(p) else None

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def with_params(self, **params: Any) -> ModelSpec:
        return ModelSpec(self.kind, self.id, {**self.params, **params}, self.raw)

    def __str__(self) -> str:
        out = f"{self.kind}:{self.id}" if self.id else self.kind
        if self.kind == "path":
            out = self.id
        if self.params:
            out += "@" + ",".join(f"{k}={v}" for k, v in self.params.items())
        return out


def _exists(path: Path) -> bool:
    """``Path.exists`` that treats names the OS rejects (too long, NUL bytes) as absent."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


# Single underscores between digits only, as int() accepts ("1_000", not "1__0" or "1_").
_INT_RE = re.compile(r"^[+-]?(0|[1-9](_?[0-9])*)$")


def _convert(value: str) -> Any:
    """``true``/``false``/``none`` and plain numbers become Python values; everything else,
    including digit strings with a leading zero (``revision=0123``) and numbers that would not
    be finite (``12e4567``, ``nan``), stays text."""
    low = value.lower()
    if low in {"true", "yes", "on"}:
        return True
    if low in {"false", "no", "off"}:
        return False
    if low in {"none", "null"}:
        return None
    if _INT_RE.match(value):
        return int(value)
    if value.lstrip("+-")[:1].isdigit() or value.lstrip("+-").startswith("."):
        try:
            number = float(value)
        except ValueError:
            return value
        # A zero before another digit ("0123", "007.5") marks an identifier, not a number.
        if math.isfinite(number) and not re.match(r"^[+-]?0[0-9]", value):
            return number
    return value


def parse_params(text: str) -> dict[str, Any]:
    """Parse ``key=value,key=value`` into a dict with typed values."""
    params: dict[str, Any] = {}
    if not text:
        return params
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise SpecError(f"spec option {part!r} is not of the form key=value")
        key, _, value = part.partition("=")
        key = key.strip()
        if not key.isidentifier():
            raise SpecError(f"spec option name {key!r} is not a valid name")
        params[key] = _convert(value.strip())
    return params


def _split_options(text: str) -> tuple[str, str]:
    """``text`` split into its head and the option text after the ``@`` that starts it."""
    m = _KIND_RE.match(text)
    start = m.start(2) if m else 0  # a path may follow "kind:"
    ends = [len(text), *sorted((i for i, c in enumerate(text) if c == "@"), reverse=True)]
    for end in ends:
        if (end > 0 and _exists(Path(os.path.expanduser(text[:end])))) or (
                start and end > start and _exists(Path(os.path.expanduser(text[start:end])))):
            return text[:end], text[end + 1:]
    at = re.search(r"@(?=[A-Za-z_]\w*=)", text)
    if at:
        return text[:at.start()], text[at.start() + 1:]
    if "@" in text and not _looks_like_path(text[start:]):
        at_pos = text.find("@")  # "mel@bad" → reported as a malformed option
        return text[:at_pos], text[at_pos + 1:]
    return text, ""


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith(("/", "./", "../", "~"))
        or _exists(Path(os.path.expanduser(text)))
    )


def parse_spec(spec: str | ModelSpec) -> ModelSpec:
    """Parse a model spec string.

    The longest head that is an existing local path (the whole text, or the text after a
    ``kind:`` prefix) is kept whole, so directories named ``model@v1`` or ``m@x=1`` work; what
    follows it must be empty or ``@key=value,…``. Otherwise options start at the first ``@``
    followed by ``name=``, and URLs inside option values keep their slashes.

    Raises:
        SpecError: when the string is empty, an option is malformed or a second ``@name=``
            options part follows the first.
    """
    if isinstance(spec, ModelSpec):
        return spec
    raw = spec
    text = spec.strip()
    if not text:
        raise SpecError("empty model spec")
    head, params_text = _split_options(text)
    if not head.strip():  # "" would name the working directory as a model folder
        raise SpecError(f"spec {text!r} names no model before its '@' options")
    # One options part only: "m@x=1@layer=3" would otherwise hide layer inside x's value.
    extra = re.search(r"@[A-Za-z_]\w*=", params_text)
    if extra:
        raise SpecError(f"spec {text!r} has a second '@' options part {params_text[extra.start():]!r}; "
                        "separate options with ','")
    params = parse_params(params_text)
    if _looks_like_path(head):
        return ModelSpec("path", os.path.expanduser(head), params, raw)
    m = _KIND_RE.match(head)
    if m:
        kind, ident = m.group(1).lower(), m.group(2)
        return ModelSpec(kind, ident, params, raw)
    if "/" in head:  # bare hub id such as "facebook/hubert-base-ls960"
        return ModelSpec("hf", head, params, raw)
    return ModelSpec(head.lower(), "", params, raw)


class UnresolvedPathError(SpecError):
    """A spec names a relative local path, and the directory it was relative to is unknown."""


def resolve_local(text: str, resolve_relative: bool = True) -> str | None:
    """``text`` as an absolute, symlink-free local path, or None when it names no local path
    (a hub id or a served model's name): an absolute path, or a relative one that starts
    with ``./`` / ``../`` or exists (read from the working directory, as backends read it).

    Raises:
        UnresolvedPathError: ``resolve_relative`` is False and ``text`` is a relative local
            path.
    """
    p = Path(os.path.expanduser(text))
    if p.is_absolute():
        return str(p.resolve())
    if not (text.startswith(("./", "../")) or _exists(p)):
        return None
    if not resolve_relative:
        raise UnresolvedPathError(f"{text}: a relative path, and the directory it was given "
                                  "from is not known")
    return str(p.resolve())


def canonical_spec(spec: str | ModelSpec | None, registry: Any = None, *,
                   resolve_relative: bool = True) -> Any:
    """The spelling-independent form of a stage spec, for settings fingerprints.

    Two spellings that build the same backend give the same string: an empty spec becomes the
    registry's default backend name (``None`` → ``"tdcnpp"`` for separators); a local path —
    the whole spec or the id after ``kind:`` — becomes absolute with ``~`` expanded and
    symlinks resolved (relative paths are read from the working directory, as the backends
    read them); a local path that is what a backend builds when given no id (its factory's
    ``default_ids``, e.g. the committed TDCN++ checkpoint file or its folder) becomes that
    backend's bare name (``tdcnpp:/…/tdcnpp-tiny/model.safetensors`` → ``"tdcnpp"``, and a
    bare path to it → the registry default when that is the backend building bare paths);
    options are sorted. Backend aliases are kept (some select a model).

    Args:
        spec: a spec string, a :class:`ModelSpec`, None, or anything else (a built backend),
            which is returned unchanged.
        registry: the stage's :class:`~auralens.registry.Registry` (its ``default`` and its
            names), or None.
        resolve_relative: False when the working directory the spec was written for is not
            known (a spec read back from an older run's ``run.json``).

    Raises:
        SpecError: the spec cannot be parsed.
        UnresolvedPathError: ``resolve_relative`` is False and the spec names a relative
            local path.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        default = getattr(registry, "default", None)
        if default is None:
            return None
        spec = default
    if not isinstance(spec, (str, ModelSpec)):
        return spec
    parsed = parse_spec(spec)
    kind, ident = parsed.kind, parsed.id
    if (kind == "path" and registry is not None and ident in registry
            and not any(c in ident for c in "/\\~")):
        kind, ident = ident.lower(), ""  # a bare backend name wins over a same-named folder
    if ident:
        local = resolve_local(ident, resolve_relative)
        ident = local or ident
        if local is not None and registry is not None:
            name = _default_name(registry, kind, local)
            if name is not None:  # the backend's own default, spelled as its path
                kind, ident = name, ""
    out = ident if kind == "path" else (f"{kind}:{ident}" if ident else kind)
    if parsed.params:
        out += "@" + ",".join(f"{k}={parsed.params[k]}" for k in sorted(parsed.params))
    return out


def _default_name(registry: Any, kind: str, local: str) -> str | None:
    """The backend name whose factory builds the local path ``local`` when given no id (the
    path is one of the factory's ``default_ids``), for a spec of ``kind``; else None.

    A ``path`` spec (a bare local path) is built by the registry's ``path`` backend; it names
    the registry's default backend when that backend has the same factory. Only a spec that
    names a local path gets here, so looking the factory up (importing its module) costs
    nothing a build of that spec would not.
    """
    from auralens.errors import AuralensError

    get = getattr(registry, "get", None)
    if get is None or kind not in registry:
        return None
    try:
        factory = get(kind)
        name = kind
        if kind == "path":
            default = getattr(registry, "default", None)
            if default is None or default == "path" or default not in registry or get(default) is not factory:
                return None
            name = default
    except (AuralensError, ImportError):
        return None
    ids = getattr(factory, "default_ids", ())
    if not any(resolve_local(str(p)) == local for p in ids):
        return None
    return name.lower()
