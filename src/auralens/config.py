"""YAML presets → plain dicts with dotted-key overrides.

A pipeline config is ``{stage: {backend: spec, params...}}``. Presets live in
``configs/`` at the project root and inside the package (``auralens/presets``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from auralens.errors import AuralensError
from auralens.specs import _convert


class ConfigError(AuralensError, ValueError):
    """A config file or override that cannot be used."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8: {exc.reason} at byte "
                          f"{exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({yaml_problem(exc)})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def yaml_problem(exc: Exception) -> str:
    """A YAML parser error in one line: where it is, what is wrong, and what was being read."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return " ".join(str(exc).split())
    out = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, where = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        out += f" ({context}" + (f" from line {where.line + 1}, column {where.column + 1}"
                                 if where is not None else "") + ")"
    return " ".join(out.split())


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(cfg, "codec.backend", "mel")``."""
    parts = key.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a mapping")
    node[parts[-1]] = value


def _yaml_string(value: str) -> str:
    """``value`` read as one YAML quoted string, or kept as written when it is not one."""
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, str) else value


def apply_overrides(cfg: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values typed like spec params; a value in brackets or
    braces is a YAML list or mapping: ``count_weights=[1,1,2,3]``; a value in one pair of
    quotes is the text inside, literally: ``revision="0123"``)."""
    out = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, _, value = item.partition("=")
        value = value.strip()
        parts = [part.strip() for part in key.split(".")]  # "a. b" means "a.b", not key " b"
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key")
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
        if quoted and value[0] not in value[1:-1]:
            # one pair of quotes around the value: the text inside, taken literally (no
            # escape processing, so "D:\audio\new" stays a Windows path)
            parsed: Any = value[1:-1]
        elif quoted:  # quotes inside too ("say \"hi\""): a YAML quoted string, if it is one
            parsed = _yaml_string(value)
        elif value[:1] in ("[", "{"):
            import yaml

            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ConfigError(f"override {item!r}: not a YAML list or mapping "
                                  f"({yaml_problem(exc)})") from exc
        else:
            parsed = _convert(value)
        set_dotted(out, ".".join(parts), parsed)
    return out


def merge(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``other`` wins."""
    out = copy.deepcopy(base)
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def fingerprint(settings: Any) -> str:
    """A short, stable hash of JSON-like settings (key order does not matter).

    Resumable jobs store it with every result line and reuse a line only when the current
    settings give the same fingerprint. Values JSON cannot hold (paths, built backends) are
    hashed by their ``str``.
    """
    import hashlib
    import json

    text = json.dumps(settings, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def changed_keys(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Top-level keys whose values differ between two settings dicts (for error messages)."""
    old = old or {}
    return sorted(k for k in set(old) | set(new)
                  if fingerprint(old.get(k)) != fingerprint(new.get(k)))


def check_fingerprints(rows: list[dict[str, Any]], key: str, settings: dict[str, Any], *,
                       legacy_settings: Callable[[list[dict[str, Any]]], Any],
                       refuse: Callable[[str], NoReturn],
                       different: Callable[[Any], str]) -> list[dict[str, Any]]:
    """Check a resumable job's result ``rows`` against the current settings fingerprint.

    A row with another fingerprint is refused. Rows with none (written by an older version)
    are checked together against the settings ``legacy_settings(rows)`` derives for them
    (None: they cannot be determined, refused); when those give ``key`` the rows are
    stamped with ``key`` and ``settings`` in place. API keys in earlier settings are masked
    before comparing (``settings`` hold them masked), and rows that match only so are
    stamped too.

    Args:
        rows: result rows of the job (``fingerprint`` and ``settings`` keys when stamped).
        key: ``fingerprint(settings)``.
        settings: the current settings.
        legacy_settings: unfingerprinted rows → the settings they were made with, or None.
        refuse: raises the job's own error for ``made <what>``.
        different: earlier settings → ``"with different settings (…)"`` for ``refuse``.

    Returns:
        The rows stamped here (empty when there were none; the caller writes them back).
    """
    from auralens.io import mask_secrets

    restamped = []
    for row in rows:
        if row.get("fingerprint") not in (None, key):
            # rows from before API keys were masked in settings: the same settings once the
            # key is masked are the same settings
            if not (isinstance(row.get("settings"), dict)
                    and fingerprint(mask_secrets(row["settings"])) == key):
                refuse(different(row.get("settings")))
            restamped.append(row)
    legacy = [row for row in rows if row.get("fingerprint") is None]
    if legacy:
        old = legacy_settings(legacy)
        if old is None:
            refuse("without a settings fingerprint (an older version)")
        if fingerprint(mask_secrets(old)) != key:
            refuse(different(old))
    for row in restamped + legacy:
        row.update(mask_secrets(row))  # its other columns (a spec as given …) too
        row["fingerprint"], row["settings"] = key, settings
    return restamped + legacy


def same_working_dir(recorded: Any, actual: Path) -> bool:
    """True when ``recorded`` (a path an older run wrote as typed) is relative and, read from
    the current working directory, names ``actual``: that run was started from here, so the
    relative paths in its settings mean what they mean now."""
    if not isinstance(recorded, str) or not recorded or Path(recorded).is_absolute():
        return False
    return (Path.cwd() / recorded).resolve() == actual.resolve()
