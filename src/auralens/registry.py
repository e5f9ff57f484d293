"""Explicit per-stage registries with lazy loading.

Each stage (extractor, codec, gate, separator, captioner, composer, image generator, judge,
metric embedder) owns one :class:`Registry`. A backend registers either eagerly with the
``@REGISTRY.register("name")`` decorator or lazily with a ``"module:Attr"`` string, so that
heavy libraries (transformers, diffusers, gradio) are imported only when that backend is
actually built.

Example:
    >>> CODECS = Registry("codec")
    >>> CODECS.register("mel", "auralens.codecs.mel:MelCodec")
    >>> codec = CODECS.build("mel@n_mels=80")
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from auralens.errors import AuralensError
from auralens.specs import ModelSpec, SpecError, parse_spec

T = TypeVar("T")

log = logging.getLogger(__name__)


class RegistryError(AuralensError, KeyError):
    """Unknown backend name or a lazy target that cannot be imported."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name → backend factory map for one pipeline stage.

    Args:
        stage: human-readable stage name used in error messages ("codec", "separator" …).
        default: name of the backend used when a spec is empty.
    """

    def __init__(self, stage: str, default: str | None = None) -> None:
        self.stage = stage
        self.default = default
        self._entries: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, target: str | Callable[..., T] | None = None, *,
                 aliases: tuple[str, ...] = ()) -> Any:
        """Register ``target`` under ``name``; usable as a decorator when ``target`` is None.

        ``target`` may be a class/factory or a lazy ``"package.module:Attr"`` string.
        """
        if target is None:
            def deco(obj: Callable[..., T]) -> Callable[..., T]:
                self._add(name, obj, aliases)
                return obj
            return deco
        self._add(name, target, aliases)
        return target

    def _add(self, name: str, target: Any, aliases: tuple[str, ...]) -> None:
        key = name.lower()
        if key in self._entries and self._entries[key] is not target:
            existing = self._entries[key]
            # Re-registering the lazy string with its resolved object is fine.
            if not (isinstance(existing, str) and _qualname(target) == existing):
                raise RegistryError(f"{self.stage} backend {name!r} is already registered")
        self._entries[key] = target
        for alias in aliases:
            self._aliases[alias.lower()] = key

    def names(self) -> list[str]:
        """Registered backend names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        key = name.lower()
        return key in self._entries or key in self._aliases

    def get(self, name: str) -> Callable[..., T]:
        """Resolve a backend factory by name, importing it on first use."""
        key = self._aliases.get(name.lower(), name.lower())
        if key not in self._entries:
            raise RegistryError(
                f"unknown {self.stage} backend {name!r}; available: {', '.join(self.names())}"
            )
        target = self._entries[key]
        if isinstance(target, str):
            target = _import_target(target, self.stage, name)
            self._entries[key] = target
        return target

    def resolve(self, spec: str | ModelSpec, *, quiet: bool = False) -> tuple[ModelSpec, Callable[..., T]]:
        """The parsed spec and the factory :meth:`build` would call, without calling it.

        A bare name that is also a folder in the working directory means the backend; a
        local path or hub id with no backend kind goes to ``hf`` when registered. ``quiet``
        leaves out the log line about the first case (for checks made before building).

        Raises:
            RegistryError: unknown backend name.
        """
        parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
        if parsed.kind == "path" and parsed.id in self and not any(c in parsed.id for c in "/\\~"):
            # A folder in the working directory that happens to share a backend's name ("mel",
            # "classifier") must not replace the backend; "./mel" still names the folder.
            if not quiet:
                log.info("%s: using the built-in %s backend; write ./%s for the local folder",
                         parsed.id, self.stage, parsed.id)
            parsed = ModelSpec(parsed.id.lower(), "", parsed.params, parsed.raw)
        kind = parsed.kind
        if kind not in self and kind == "path" and "hf" in self:
            kind = "hf"
        return parsed, self.get(kind)

    def build(self, spec: str | ModelSpec | None = None, **overrides: Any) -> T:
        """Build a backend from a spec string such as ``"hf:org/model@layer=4"``.

        The spec's kind selects the backend; a bare local path or hub id uses the ``hf``
        backend when registered. The factory is called as ``factory(spec, **params)`` where
        ``params`` are the spec's ``@key=value`` pairs updated by ``overrides``.
        """
        if spec is None or (isinstance(spec, str) and not spec.strip()):
            if self.default is None:
                raise RegistryError(f"no {self.stage} backend given and no default is set")
            spec = self.default
        parsed, factory = self.resolve(spec)
        params = {**parsed.params, **overrides}
        try:
            return factory(parsed, **params)
        except AuralensError:
            raise  # already a clear, typed error (SpecError, LayerError …)
        except (TypeError, ValueError) as exc:
            # Options a backend cannot take (unknown names, wrong types, impossible values)
            # surface from its constructor; name the spec instead of showing a traceback.
            raise SpecError(f"{self.stage} {parsed.raw or spec}: invalid options "
                            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"


def _import_target(target: str, stage: str, name: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(
            f"{stage} backend {name!r} needs a package that is not installed: {exc}"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise RegistryError(f"{stage} backend {name!r}: {target} does not exist") from exc
