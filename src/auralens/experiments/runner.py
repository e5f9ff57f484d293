"""YAML-defined experiments that regenerate the Imagine study's tables and figures.

Three kinds (``kind:`` in the YAML):

* ``prompting`` (A) — prompting techniques (zero-shot / CoT / role / few-shot) compared on a
  stratified subset (same source-count and label distribution as the full set);
* ``pipeline`` (B) — the settings grid captioner × LLM × technique of the cascaded pipeline
  (separate → caption → compose) against the end-to-end audio-LLM baseline;
* ``video`` (C) — clips with a reference frame → description → image → CLIPScore of the
  description against the generated image and against the reference frame.

Every kind writes ``results.jsonl`` (one line per (item, method)), ``tables/`` (CSV and
Markdown), ``figures/`` (PNG), ``skipped.json`` and ``run.json``. A rerun skips the
(item, method) pairs already in ``results.jsonl``; every row carries a fingerprint of its
method's settings and of the evaluation settings (resolved: default backends and local model
paths spelled out), and a rerun whose settings for a method differ is refused before any data
or model is loaded (use another ``--out``); rows of a version without fingerprints are checked
against the ``run.json`` beside them. Rows also carry their item's data signature (a hash of
its audio, source files and reference frame, its labels and number of sources): a rerun
whose item of the same id differs is refused naming the item (before any model is loaded),
while new items just add rows and the same data moved to another folder keeps its rows.
``run.json`` is written when the run starts (``status: running``) and again when it ends
(``done``, or ``failed`` with the error). A run whose tables end up without a single result
fails (exit 1, ``run.json`` ``failed`` with the reason, ``errors.jsonl`` and the tables still
written): no method is configured (a configuration error), no method could run, or every
(item, method) pair failed; a run where some pairs succeed stays ``done``. A method or
metric whose model is not available is skipped with the reason recorded in ``skipped.json``
and ``run.json`` — nothing is ever filled in with made-up values. Unknown backend or metric names are configuration errors,
reported before any work starts. The tables cover exactly this run's items and methods:
results of items another subset or limit chose stay in ``results.jsonl`` (reused if those
items come back) but out of the tables, and an (item, method) pair that failed gets a
``status: error`` line (retried on the next run) and counts in the ``skipped`` column.

YAML layout (see ``configs/experiments/``)::

    name: prompting
    kind: prompting
    variant: offline            # picks variants.<variant>, merged over the base
    data: {source: esc50, path: ../shared/data/esc10, n: 8, duration: 4.0}
    subset: {n: 100, seed: 0}   # optional stratified subset
    methods: [{name: …, type: allm|pipeline, …}]
    grid: {captioner: […], composer: […], technique: […]}  # expanded into pipeline methods
    judge: {spec: keyword, metrics: [count, recognition, …]}
    clap: {model: laion/clap-htsat-unfused}   # or null
    clip: {model: openai/clip-vit-base-patch32}  # video kind
    image: {generator: none}
    variants: {study: {…}, offline: {…}}
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import random
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from auralens.checks import as_whole, is_number, is_whole
from auralens.config import (
    ConfigError,
    apply_overrides,
    changed_keys,
    check_fingerprints,
    fingerprint,
    load_yaml,
    merge,
    same_working_dir,
)
from auralens.errors import AuralensError
from auralens.io import (
    ErrorLog,
    Timer,
    append_jsonl,
    check_out_dir,
    mask_secrets,
    read_jsonl_numbered,
    remove_stale_temps,
    write_json,
    write_jsonl,
    write_run_json,
)
from auralens.specs import SpecError
from auralens.types import SceneRecord, id_text

log = logging.getLogger(__name__)

KINDS = ("prompting", "pipeline", "video")
#: Top-level keys of an experiment YAML (``variants`` is merged away when loading; keys
#: starting with ``_`` are added by the loader).
TOP_KEYS = ("name", "kind", "variant", "description", "seed", "data", "subset", "models", "grid",
            "methods", "baseline", "judge", "clap", "clip", "image")
DATA_KEYS = ("source", "path", "n", "seed", "duration", "max_sources", "min_sources", "reverb",
             "folds", "sample_rate", "split", "limit")
DEFAULT_METRICS = ("count", "recognition", "coherence", "visual_detail", "imagination",
                   "appropriateness")
#: Keys of the mapping sections, as the code reads them: ``judge`` (:class:`Evaluator`,
#: :func:`settings_of`), ``clap`` / ``clip`` (``Evaluator._load``), ``subset``
#: (:func:`load_items`), ``grid`` (:func:`expand_methods`: the axes and the keys a pipeline
#: method shares), ``baseline`` (an ``allm`` method), ``image`` (the video kind's generator).
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "judge": ("spec", "metrics", "params"),
    "clap": ("model",),
    "clip": ("model",),
    "subset": ("n", "seed"),
    "grid": ("captioner", "composer", "technique", "separator", "activity"),
    "baseline": ("model", "technique", "name"),
    "image": ("generator",),
}


class ExperimentError(AuralensError):
    """An experiment definition or input that cannot be used."""


class NothingDoneError(ExperimentError):
    """A run that produced no result at all: no method could run, or every (item, method)
    pair failed. ``run.json`` already says ``failed`` with the reason when it is raised."""


# ----------------------------------------------------------------------------- config


def load_experiment(path: str | Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Read an experiment YAML, pick its variant and apply ``key=value`` overrides.

    The variant is chosen from ``variant`` (possibly set by an override), merged over the
    base, then the overrides are applied again so they win over the variant.
    """
    base = load_yaml(path)
    first = apply_overrides(base, list(overrides or []))
    variants = first.pop("variants", {}) or {}
    if not isinstance(variants, dict):
        raise ConfigError(f"{path}: variants must be a mapping of variant names to settings, "
                          f"got {variants!r}")
    variant = first.get("variant")
    if variant is not None:
        if not isinstance(variant, (str, int)) or variant not in variants:
            raise ConfigError(f"{path}: unknown variant {variant!r}; "
                              f"available: {', '.join(map(str, variants)) or 'none'}")
        chosen = variants[variant] or {}
        if not isinstance(chosen, dict):
            raise ConfigError(f"{path}: variants.{variant} must be a mapping of settings, "
                              f"got {chosen!r}")
        first = merge(first, chosen)
    cfg = apply_overrides(first, list(overrides or []))
    unknown = sorted(str(k) for k in cfg if k not in TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(TOP_KEYS)}")
    if cfg.get("name") is None:  # absent, or an empty "name:"
        cfg["name"] = Path(path).stem
    # text: "name: 2024" names the default output folder runs/experiments/2024
    name = cfg["name"] = str(cfg["name"])
    if not name or name.startswith(".") or any(c in name for c in "/\\") or name != name.strip():
        raise ConfigError(f"{path}: name {name!r} must be a plain folder name (no path separators)")
    kind = cfg.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{path}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    cfg["_source"] = str(path)
    return cfg


def expand_methods(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The explicit ``methods`` plus the ``grid`` product, each with a unique ``name``.

    A grid is ``{captioner: [...], composer: [...], technique: [...]}`` (lists or scalars)
    plus shared keys (``separator`` …); each combination becomes a ``pipeline`` method
    named ``<captioner-name>/<composer-name>/<technique>``.
    """
    src = cfg.get("_source")
    given = cfg.get("methods") or []
    if not isinstance(given, list) or not all(isinstance(m, dict) for m in given):
        raise ConfigError(f"{src}: methods must be a list of mappings (e.g. [{{name: m, "
                          f"type: pipeline, …}}]), got {given!r}")
    methods = []
    for m in given:
        m = resolve_refs(dict(m), cfg)
        techniques = m.pop("techniques", None)
        if techniques is not None and not isinstance(techniques, list):
            # a bare string would give one method per letter
            raise ConfigError(f"{src}: method {m.get('name')!r}: techniques must be a list "
                              f"(e.g. [zero-shot, cot]), got {techniques!r}")
        if techniques:  # one method per prompting technique
            for t in techniques:
                methods.append({**m, "technique": t, "name": f"{m.get('name', m.get('type'))}/{t}"})
        else:
            methods.append(m)
    grid = resolve_refs(cfg.get("grid"), cfg)
    if grid:
        axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()
                if k in ("captioner", "composer", "technique")}
        shared = {k: v for k, v in grid.items() if k not in axes}
        for combo in itertools.product(*axes.values()):
            m = {"type": "pipeline", **shared, **dict(zip(axes, combo, strict=True))}
            m["name"] = "/".join(_short(m.get(k)) for k in axes)
            methods.append(m)
    if cfg.get("baseline"):
        methods.append({"name": "baseline", "type": "allm", **resolve_refs(cfg["baseline"], cfg)})
    names = Counter(m.get("name") for m in methods)
    if None in names or any(c > 1 for c in names.values()):
        raise ConfigError(f"{src}: every method needs a unique name "
                          f"(got {[m.get('name') for m in methods]})")
    return methods


def resolve_refs(value: Any, cfg: dict[str, Any]) -> Any:
    """Replace strings ``"${a.b}"`` by ``cfg["a"]["b"]`` (so ``--set models.x=…`` reaches
    values inside method lists)."""
    if isinstance(value, dict):
        return {k: resolve_refs(v, cfg) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, cfg) for v in value]
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        node: Any = cfg
        for part in value[2:-1].split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{cfg.get('_source')}: unresolved reference {value}")
            node = node[part]
        return resolve_refs(node, cfg)
    return value


def _short(value: Any) -> str:
    """A short display name for a backend spec: its ``name`` or the last path component."""
    if isinstance(value, dict):
        return str(value.get("name") or value.get("spec"))
    text = str(value)
    return text.rstrip("/").split("/")[-1].split("@")[0]


def _spec(value: Any) -> Any:
    return value.get("spec") if isinstance(value, dict) else value


def _registry(stage: str) -> Any:
    """The registry of an imagine stage or of the judge."""
    if stage == "judge":
        from auralens.evaluate.judge_base import JUDGES

        return JUDGES
    from auralens.scene.pipeline import stage_registry

    reg = stage_registry(stage)
    if reg is None:  # pragma: no cover - internal misuse
        raise ValueError(stage)
    return reg


def _check_backend_name(stage: str, value: Any, where: str) -> None:
    """Raise :class:`ConfigError` when ``value`` names no registered ``stage`` backend (a typo,
    unlike a known backend whose model is missing, which is skipped later)."""
    from auralens.specs import ModelSpec, parse_spec

    spec = _spec(value)
    if spec is None:
        return  # the registry's default
    reg = _registry(stage)
    kind = spec.kind if isinstance(spec, ModelSpec) else parse_spec(str(spec)).kind
    if kind in reg or (kind == "path" and "hf" in reg):
        return
    raise ConfigError(f"{where}: unknown {stage} backend {kind!r}; known: {', '.join(reg.names())}")


def validate_experiment(cfg: dict[str, Any], methods: list[dict[str, Any]]) -> None:
    """Check names and options before any work: method types, stage backend names, activity
    options, the judge backend and the judge metrics.

    Raises:
        ConfigError: one line naming the setting and the problem.
    """
    from auralens.evaluate.judge import METRICS
    from auralens.scene.compose.base import TECHNIQUES
    from auralens.scene.pipeline import ImagineError, activity_config

    src = cfg.get("_source") or "experiment"
    _check_numbers(cfg, src)
    if not methods:
        raise ConfigError(f"{src}: no method to run: methods, grid and baseline are all empty "
                          "(give at least one, e.g. methods: [{name: m, type: pipeline, …}])")
    for m in methods:
        name = m.get("name")
        if m.get("type") not in ("allm", "pipeline"):
            raise ConfigError(f"{src}: method {name!r}: type must be allm or pipeline, "
                              f"got {m.get('type')!r}")
        if m.get("technique", "zero-shot") not in TECHNIQUES:
            raise ConfigError(f"{src}: method {name!r}: unknown technique {m.get('technique')!r}; "
                              f"use one of {', '.join(TECHNIQUES)}")
        for key in ("model",) if m["type"] == "allm" else ("separator", "captioner", "composer"):
            _check_params(m.get(key), f"{src}: method {name!r}: {key}.params")
        if m["type"] != "pipeline":
            continue
        if _spec(m.get("separator", "reference")) != "reference":
            _check_backend_name("separator", m.get("separator"), f"{src}: method {name!r}")
        _check_backend_name("captioner", m.get("captioner"), f"{src}: method {name!r}")
        _check_backend_name("composer", m.get("composer"), f"{src}: method {name!r}")
        try:
            activity_config(m.get("activity"), where=f"method {name!r}: activity")
        except ImagineError as exc:
            raise ConfigError(f"{src}: {exc}") from exc
    jcfg = cfg.get("judge") or {}
    _check_params(jcfg, f"{src}: judge.params")
    _check_params((cfg.get("image") or {}).get("generator"), f"{src}: image.generator.params")
    if jcfg.get("spec") not in (None, "none"):
        _check_backend_name("judge", jcfg["spec"], f"{src}: judge.spec")
    metrics = jcfg.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, list):
            raise ConfigError(f"{src}: judge.metrics must be a list (e.g. [count, recognition]), "
                              f"got {metrics!r}")
        for metric in metrics:
            if metric not in METRICS:
                raise ConfigError(f"{src}: unknown judge metric {metric!r} (judge.metrics); "
                                  f"known: {', '.join(METRICS)}")


def _check_params(entry: Any, where: str) -> None:
    """Refuse the ``params`` of a ``{spec, params}`` entry (or of ``judge``) when it is not a
    mapping: they become keyword options, so ``params: 5`` would be a traceback later."""
    params = entry.get("params") if isinstance(entry, dict) else None
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"{where} must be a mapping of options (e.g. {{device: cpu}}), "
                          f"got {params!r}")


def _check_numbers(cfg: dict[str, Any], src: str) -> None:
    """The mapping sections and their keys (:data:`DATA_KEYS`, :data:`SECTION_KEYS`), whole
    numbers and durations of ``data``, ``subset`` and ``seed``, ``data.folds`` and
    ``data.reverb`` (a typo such as ``data.n=abc`` or ``judge.spex=…`` is one line here
    instead of a traceback, or of a setting silently ignored)."""
    data, subset = cfg.get("data") or {}, cfg.get("subset") or {}
    for key, known in (("data", DATA_KEYS), *SECTION_KEYS.items()):
        section = cfg.get(key) or {}
        if not isinstance(section, dict):
            hint = f" (e.g. {key}.{known[0]}=…)"
            raise ConfigError(f"{src}: {key} must be a mapping{hint}, got {section!r}")
        unknown = sorted(str(k) for k in section if k not in known)
        if unknown:
            raise ConfigError(f"{src}: unknown {key} key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(known)}")
    wholes = [("seed", cfg, "seed", 0), ("data.n", data, "n", 1), ("data.limit", data, "limit", 1),
              ("data.seed", data, "seed", 0), ("data.max_sources", data, "max_sources", 1),
              ("data.min_sources", data, "min_sources", 1), ("data.sample_rate", data, "sample_rate", 1),
              ("subset.n", subset, "n", 0), ("subset.seed", subset, "seed", 0)]
    # null means "none" only for these; elsewhere the default applies only to an absent key
    nullable = ("seed", "data.limit", "subset.n")
    for label, section, key, low in wholes:
        value = section.get(key)
        if key not in section or (value is None and label in nullable):
            continue
        if not is_whole(value, low):
            raise ConfigError(f"{src}: {label} must be a whole number ≥ {low}, got {value!r}")
    duration = data.get("duration")
    if "duration" in data and not (is_number(duration) and duration > 0):
        raise ConfigError(f"{src}: data.duration must be a positive number of seconds, got {duration!r}")
    folds = data.get("folds")
    if folds is not None and not (
            is_whole(folds, 0) or (isinstance(folds, list) and all(is_whole(f, 0) for f in folds))):
        raise ConfigError(f"{src}: data.folds must be a list of whole numbers ≥ 0 (e.g. [1, 2]) "
                          f"or one such number, got {folds!r}")
    reverb = data.get("reverb")
    if reverb is not None and not isinstance(reverb, bool):
        raise ConfigError(f"{src}: data.reverb must be true or false, got {reverb!r}")


def _is_template_composer(value: Any) -> bool:
    spec = _spec(value)
    return spec is None or str(spec).split(":")[0].split("@")[0].lower() == "template"


def method_notes(methods: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Techniques the offline template composer ignores (its rows equal zero-shot's);
    entries of ``skipped.json`` with ``kind: note``."""
    notes = []
    for m in methods:
        technique = m.get("technique", "zero-shot")
        if (m.get("type") == "pipeline" and _is_template_composer(m.get("composer"))
                and technique in ("role", "few-shot")):
            notes.append({"kind": "note", "what": f"technique {technique!r} of method {m['name']}",
                          "reason": "the template composer ignores it: these rows are the same "
                                    "as zero-shot by construction (compare techniques with an "
                                    "LLM composer)"})
    return notes


def _canonical_entry(stage: str | None, value: Any, resolve_relative: bool) -> Any:
    """A stage entry (spec string or ``{spec, params}``) in the spelling-independent form of
    :func:`~auralens.specs.canonical_spec` (display names dropped)."""
    from auralens.specs import canonical_spec

    reg = None if stage is None else _registry(stage)
    if isinstance(value, dict):
        spec = canonical_spec(value.get("spec"), reg, resolve_relative=resolve_relative)
        params = dict(sorted((value.get("params") or {}).items()))
        return {"spec": spec, "params": params} if params else spec
    return canonical_spec(value, reg, resolve_relative=resolve_relative)


def _canonical_model(value: Any, resolve_relative: bool) -> Any:
    """A metric model (hub id or local directory): None when switched off, local paths
    absolute."""
    from auralens.specs import resolve_local

    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if not isinstance(value, str):
        return value
    return resolve_local(value, resolve_relative) or value


def settings_of(method: dict[str, Any], cfg: dict[str, Any], *,
                resolve_relative: bool = True) -> dict[str, Any]:
    """What shapes a method's result rows: the method itself and the evaluation settings.

    Resolved so that equivalent spellings give the same settings: stage specs canonical (None
    → the backend the runner builds for it, local paths absolute, options sorted; an absent
    separator is the reference sources), the activity filter with its defaults filled in
    (and left out with reference sources, which it never filters), the default technique and
    judge metrics spelled out.

    Args:
        resolve_relative: False when the working directory ``cfg`` was written for is not
            known (an older run's ``run.json``).

    Raises:
        auralens.specs.UnresolvedPathError: ``resolve_relative`` is False and a spec names a
            relative local path.
    """
    from dataclasses import asdict

    from auralens.scene.pipeline import activity_config

    rr = resolve_relative
    m = {k: v for k, v in method.items() if k != "name"}
    m["technique"] = m.get("technique", "zero-shot")
    if m.get("type") == "pipeline":
        sep = m.get("separator", "reference")
        m["separator"] = ("reference" if _spec(sep) == "reference"
                          else _canonical_entry("separator", sep, rr))
        m["captioner"] = _canonical_entry("captioner", m.get("captioner"), rr)
        m["composer"] = _canonical_entry("composer", m.get("composer"), rr)
        if m["separator"] == "reference":
            m.pop("activity", None)
        else:
            m["activity"] = asdict(activity_config(m.get("activity")))
    elif m.get("type") == "allm":
        m["model"] = _canonical_entry(None, m.get("model"), rr)
    jcfg = dict(cfg.get("judge") or {})
    spec = jcfg.get("spec")
    jcfg["spec"] = "none" if spec in (None, "none") else _canonical_entry("judge", spec, rr)
    jcfg["metrics"] = list(jcfg.get("metrics") or DEFAULT_METRICS)
    if not jcfg.get("params"):
        jcfg.pop("params", None)
    evaluation: dict[str, Any] = {"judge": jcfg,
                                  "clap": _canonical_model((cfg.get("clap") or {}).get("model"),
                                                           rr)}
    if cfg.get("kind") == "video":
        evaluation["clip"] = _canonical_model((cfg.get("clip") or {}).get("model"), rr)
        image = dict(cfg.get("image") or {})
        image["generator"] = _canonical_stage_image(image.get("generator"), rr)
        evaluation["image"] = image
        evaluation["seed"] = cfg.get("seed", 0)
    # an API key does not shape a result, and results lines must not hold one
    return mask_secrets({"method": m, "evaluation": evaluation})


def _canonical_stage_image(value: Any, resolve_relative: bool) -> Any:
    from auralens.scene.render.base import IMAGE_GENERATORS
    from auralens.specs import canonical_spec

    spec = _spec(value)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none", "null")):
        return "none"
    params = dict(sorted(((value.get("params") if isinstance(value, dict) else None)
                          or {}).items()))
    spec = canonical_spec(spec, IMAGE_GENERATORS, resolve_relative=resolve_relative)
    return {"spec": spec, "params": params} if params else spec


def switched_off(method: dict[str, Any]) -> bool:
    """True for a method that never runs whatever is installed: an audio-LLM baseline with no
    model given (``models.allm=none``). Its old rows are kept as they are and not compared."""
    spec = _spec(method.get("model"))
    return method.get("type") == "allm" and (not spec or str(spec).lower() in ("none", "null"))


def _row_setting(method: dict[str, Any]) -> dict[str, Any]:
    """The ``setting`` column of a result row (the method's specs as given)."""
    return mask_secrets({k: _spec(v) for k, v in method.items() if k != "name"})


def _legacy_methods(out: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any] | None]]:
    """Per method name in the ``run.json`` an older version wrote: its method dict and its
    settings (None when they cannot be determined, e.g. a relative model path whose working
    directory is unknown). Empty when ``run.json`` is missing or unreadable."""
    from auralens.io import read_json

    try:
        run = read_json(out / "run.json")
        config = run.get("config")
        if not isinstance(config, dict):
            return {}
        cfg = {**copy.deepcopy(config), "_source": str(out / "run.json")}
        methods = expand_methods(cfg)
        here = same_working_dir((run.get("summary") or {}).get("out_dir"), out)
    except (OSError, ValueError, TypeError, AttributeError, AuralensError):
        return {}
    found: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    for m in methods:
        try:
            settings: dict[str, Any] | None = settings_of(m, cfg, resolve_relative=here)
        except (ValueError, TypeError, AttributeError, AuralensError):
            settings = None
        found[str(m.get("name"))] = (m, settings)
    return found


def check_resume(out: Path, old: list[dict[str, Any]], methods: list[dict[str, Any]],
                 cfg: dict[str, Any]) -> dict[str, str]:
    """Fingerprint per method; refuse when ``old`` rows of one of ``methods`` differ.

    Needs neither the items nor the models, so the runner calls it before any work. Rows
    written before rows carried a fingerprint are checked against the method's settings in
    the ``run.json`` beside them; when those give the current fingerprint the rows get it
    (in ``old``, which the caller writes back).

    Raises:
        ExperimentError: a row of one of ``methods`` was made with other settings, or with
            no fingerprint and settings that differ or cannot be determined.
    """
    keys = {}
    legacy_methods = functools.cache(lambda: _legacy_methods(out))  # read once, when needed
    for m in methods:
        settings = settings_of(m, cfg)
        keys[m["name"]] = key = fingerprint(settings)

        def refuse(what: str, name: str = m["name"]) -> NoReturn:
            raise ExperimentError(f"{out}: results.jsonl holds rows of method {name!r} made "
                                  f"{what}; use another --out, or delete "
                                  f"{out / 'results.jsonl'} to start over")

        def different(prev: Any, settings: dict[str, Any] = settings) -> str:
            prev = prev if isinstance(prev, dict) else {}
            diff = changed_keys(prev.get("method"), settings["method"])
            if changed_keys(prev.get("evaluation"), settings["evaluation"]):
                diff.append("evaluation (judge, clap …)")
            return "with different settings" + (f" ({', '.join(diff)})" if diff else "")

        def from_run_json(legacy: list[dict[str, Any]], name: str = m["name"]) -> Any:
            """The method's settings in the run.json beside the rows, if the rows match it."""
            prev_method, prev = legacy_methods().get(name, (None, None))
            if prev_method is None or any(
                    fingerprint(mask_secrets(r.get("setting"))) != fingerprint(_row_setting(prev_method))
                    for r in legacy):
                return None
            return prev

        check_fingerprints([r for r in old if r.get("method") == m["name"]], key, settings,
                           legacy_settings=from_run_json, refuse=refuse, different=different)
    return keys


# ----------------------------------------------------------------------------- items


@dataclass
class Item:
    """One clip to describe.

    Attributes:
        id: item id.
        audio: mixture / clip audio file.
        labels: true (weak) labels; empty when unknown.
        n_sources: true number of sources, or None.
        sources: per-source files (for reference separation), possibly empty.
        image: reference frame (video kind), or None.
    """

    id: str
    audio: Path
    labels: list[str] = field(default_factory=list)
    n_sources: int | None = None
    sources: list[Path] = field(default_factory=list)
    image: Path | None = None

    @classmethod
    def from_scene(cls, rec: SceneRecord) -> Item:
        # a manifest may give numeric ids; results and resume compare them as text
        return cls(str(rec.id), rec.mixture, list(dict.fromkeys(rec.labels)), rec.n_sources,
                   [s.path for s in rec.sources])


def stratified_sample(records: Sequence[Any], n: int, seed: int = 0) -> list[Any]:
    """Pick ``n`` records keeping the source-count and label distribution of the whole set.

    Records are split into strata by number of sources; each stratum gets a share of ``n``
    proportional to its size (largest remainders). Inside a stratum records are chosen
    greedily: at each step the candidate whose labels are most under-represented relative
    to the full set's label frequencies (scaled to ``n``) is taken, ties broken by a seeded
    shuffle. Works with :class:`SceneRecord` or :class:`Item` (``n_sources`` and ``labels``).

    Returns:
        The chosen records, in their original order.
    """
    records = list(records)
    if n >= len(records):
        return records
    if n <= 0:
        return []
    rng = random.Random(seed)
    strata: dict[Any, list[int]] = {}
    for i, r in enumerate(records):
        strata.setdefault(r.n_sources, []).append(i)
    total = len(records)
    quotas = {k: n * len(v) / total for k, v in strata.items()}
    alloc = {k: int(q) for k, q in quotas.items()}
    for k in sorted(quotas, key=lambda k: quotas[k] - alloc[k], reverse=True)[: n - sum(alloc.values())]:
        alloc[k] += 1
    label_freq = Counter(lab for r in records for lab in set(r.labels))
    target = {lab: c * n / total for lab, c in label_freq.items()}
    have: Counter[str] = Counter()
    chosen: list[int] = []
    for key in sorted(strata, key=str):
        pool = strata[key][:]
        rng.shuffle(pool)
        for _ in range(alloc[key]):
            def need(i: int) -> float:
                labs = set(records[i].labels) or {""}
                return sum(target.get(lab, 0.0) - have[lab] for lab in labs) / len(labs)
            best = max(pool, key=need)  # max keeps the first (shuffled) on ties
            pool.remove(best)
            chosen.append(best)
            have.update(set(records[best].labels))
    return [records[i] for i in sorted(chosen)]


def _resolve(path: Any, base: Path) -> Path:
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else (base / p)


#: What ``data.path`` holds for each ``data.source`` (for messages); esc50 has a default path.
DATA_SOURCES = {"esc50": "dataset directory", "folder": "dataset directory", "manifest": "manifest",
                "fuss": "FUSS directory", "pairs": "pairs manifest", "videos": "video directory"}


#: How to make a missing ``data.path`` (appended to the not-found message).
_HOW_TO_MAKE = {
    "pairs": "; it is a JSONL of {\"id\", \"audio\", \"image\"?, \"labels\"?, \"sources\"?} lines — make "
             "one offline with: auralens data mix ../shared/data/esc10 --out data/video_mix --n 8 "
             "--duration 4 --no-reverb && auralens experiment video-pairs data/video_pairs.jsonl "
             "--from-mixer data/video_mix (see configs/experiments/video.yaml)",
    "manifest": "; make one with auralens experiment fuss-manifest (--fuss … or --from-mixer …)",
}


def data_path(cfg: dict[str, Any]) -> Path:
    """The experiment's existing ``data.path`` (resolved), checked before any model loads.

    Raises:
        ExperimentError: an unknown ``data.source``, or a missing path (one line).
    """
    data = cfg.get("data") or {}
    source = data.get("source", "esc50")
    if source not in DATA_SOURCES:
        raise ExperimentError(f"unknown data.source {source!r}; use {', '.join(DATA_SOURCES)}")
    if "path" not in data and source != "esc50":
        raise ExperimentError(f"data.path is required with data.source {source}")
    path = _resolve(data.get("path", "../shared/data/esc10"), Path(cfg.get("_root", ".")))
    if not path.exists():
        raise ExperimentError(f"{path}: {DATA_SOURCES[source]} not found (data.path)" + _HOW_TO_MAKE.get(source, ""))
    if DATA_SOURCES[source].endswith("directory") and not path.is_dir():
        raise ExperimentError(f"{path}: {DATA_SOURCES[source]} is not a directory (data.path)")
    return path


def load_items(cfg: dict[str, Any], out_dir: Path) -> list[Item]:
    """Build or read the experiment's items from ``cfg["data"]``.

    Sources:
        ``esc50`` / ``folder``: FUSS-style mixtures made with
        :func:`auralens.data.mix.build_mixtures` into ``out_dir/data`` (``n``, ``seed``,
        ``duration``, ``max_sources``, ``reverb``, ``folds``);
        ``manifest``: a SceneRecord JSONL (``auralens experiment fuss-manifest``);
        ``fuss``: an official FUSS directory via :func:`auralens.data.fuss.load_fuss`;
        ``pairs``: a JSONL of ``{id, audio, image, labels?}`` (audio + reference frame);
        ``videos``: a directory of videos; audio and the middle frame are extracted with
        ffmpeg (an error naming ffmpeg when it is not installed).
    """
    data = dict(cfg.get("data") or {})
    source = data.get("source", "esc50")
    path = data_path(cfg)  # a known source and an existing path
    lines: list[int] = []  # each item's line in path (pairs, manifest), for messages
    if source in ("esc50", "folder"):
        from auralens.data.mix import build_mixtures

        kw = {k: data[k] for k in ("seed", "duration", "max_sources", "min_sources", "reverb",
                                   "folds", "sample_rate", "split") if k in data}
        if isinstance(kw.get("folds"), int):  # one fold
            kw["folds"] = [kw["folds"]]
        # keep_more: a rerun on fewer items reuses the first n (the tables cover only those)
        recs = build_mixtures(path, out_dir / "data", n=int(data.get("n", 8)), keep_more=True, **kw)
        items = [Item.from_scene(r) for r in recs]
    elif source == "manifest":
        from auralens.types import load_scenes

        items = [Item.from_scene(r) for r in load_scenes(path)]
        # load_scenes refuses any line that is not a record: the records are these lines
        lines = [n for n, _ in read_jsonl_numbered(path)]
        for it in items:
            it.audio = _resolve(it.audio, path.parent)
            it.sources = [_resolve(s, path.parent) for s in it.sources]
    elif source == "fuss":
        from auralens.data.fuss import load_fuss

        items = [Item.from_scene(r) for r in load_fuss(path)]
    elif source == "pairs":
        items = []
        for line, d in read_jsonl_numbered(path):
            lines.append(line)
            items.append(_pair_item(d, path, line))
    else:  # videos: data_path() knows no other source
        items = extract_videos(path, out_dir / "data" / "frames")
    _check_unique_ids(items, path, lines)
    subset = cfg.get("subset")
    if subset and subset.get("n"):
        items = stratified_sample(items, int(subset["n"]), int(subset.get("seed", 0)))
    if data.get("limit"):
        items = items[: int(data["limit"])]
    if not items:
        raise ExperimentError("the experiment has no items (check data.*)")
    return items


def _pair_item(d: Any, path: Path, line: int) -> Item:
    """One line of a pairs manifest as an :class:`Item`.

    Raises:
        ExperimentError: ``path:line`` and what is wrong with the line.
    """
    where = f"{path}:{line}"
    if not isinstance(d, dict):
        raise ExperimentError(f"{where}: a pair must be a JSON object with id and audio, "
                              f"got {str(d)[:60]}")
    for key in ("id", "audio"):
        if key not in d:
            raise ExperimentError(f"{where}: the pair has no {key!r}")
    try:
        # text as a manifest's ids (3 and 3.0 are "3" and "3.0"); a pair's id names no folder
        # (image names are made safe apart), so "/" and ".." are fine
        rid = id_text(d["id"])
    except ValueError as exc:
        raise ExperimentError(f"{where}: {exc}") from None
    if not (isinstance(d["audio"], str) and d["audio"]):
        raise ExperimentError(f"{where}: audio must be a file path, got {d['audio']!r}")
    if d.get("image") is not None and not isinstance(d["image"], str):
        raise ExperimentError(f"{where}: image must be a file path, got {d['image']!r}")
    for key in ("labels", "sources"):  # a bare string would be split into letters
        value = d.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(x, str) for x in value)):
            raise ExperimentError(f"{where}: {key} must be a list of strings, got {value!r}")
    labels = list(d.get("labels") or [])
    n_sources = d.get("n_sources", len(labels) or None)
    if n_sources is not None:  # 1.0 too: pandas writes floats in a column holding a null
        whole = as_whole(n_sources)
        if whole is None:
            raise ExperimentError(f"{where}: n_sources must be a whole number ≥ 0 or null, "
                                  f"got {n_sources!r}")
        n_sources = whole
    return Item(rid, _resolve(d["audio"], path.parent), labels, n_sources,
                [_resolve(x, path.parent) for x in d.get("sources") or []],
                _resolve(d["image"], path.parent) if d.get("image") else None)


def _check_unique_ids(items: Sequence[Item], path: Path, lines: Sequence[int]) -> None:
    """Refuse two items with one id: results are keyed on it, so one would be lost.

    Args:
        lines: the line of each item in ``path`` (empty when not read from lines).
    """
    first: dict[str, int] = {}
    for i, it in enumerate(items):
        if it.id in first:
            if lines:
                raise ExperimentError(f"{path}:{lines[i]}: duplicate id {it.id!r} (also on line "
                                      f"{lines[first[it.id]]}); ids must be unique")
            raise ExperimentError(f"{path}: two items have the id {it.id!r}; ids must be unique")
        first[it.id] = i


def extract_videos(video_dir: Path, out_dir: Path) -> list[Item]:
    """Videos → (16 kHz mono wav, middle frame PNG) pairs with ffmpeg.

    Raises:
        ExperimentError: the folder does not exist, ffmpeg is not installed, the folder
            holds no videos, or ffmpeg fails on one (naming the video).
    """
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        what = "is not a directory" if video_dir.exists() else "not found"
        raise ExperimentError(f"{video_dir}: video directory {what} (data.path)")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ExperimentError("ffmpeg is not installed: give clips as audio + reference image "
                              "pairs instead (data.source: pairs)")
    videos = sorted(p for p in video_dir.iterdir()
                    if p.suffix.lower() in (".mp4", ".mkv", ".webm", ".mov", ".avi"))
    if not videos:
        raise ExperimentError(f"{video_dir}: no video files found")
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for v in videos:
        wav, png = out_dir / f"{v.stem}.wav", out_dir / f"{v.stem}.png"
        # An existing file is reused by the next run, so each is written whole or not at all
        # (a killed or failed ffmpeg must not leave a cut-off file behind).
        if not wav.exists():
            _ffmpeg(ffmpeg, v, wav, "the audio", ["-vn", "-ac", "1", "-ar", "16000"])
        if not png.exists():
            probe = subprocess.run([ffmpeg, "-nostdin", "-i", str(v)], capture_output=True,
                                   text=True, timeout=60).stderr
            dur = _ffmpeg_duration(probe)
            _ffmpeg(ffmpeg, v, png, "the middle frame", ["-frames:v", "1"],
                    ["-ss", f"{dur / 2:.3f}"])
        items.append(Item(v.stem, wav, [], None, [], png))
    return items


def _ffmpeg(ffmpeg: str, video: Path, target: Path, what: str, options: Sequence[str],
            before: Sequence[str] = ()) -> None:
    """Run ``ffmpeg`` on ``video`` into ``target`` atomically (``before``: input options).

    Raises:
        ExperimentError: ffmpeg failed (with its last message line) or took too long.
    """
    from auralens.io import atomic_path

    try:
        with atomic_path(target) as tmp:
            subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", *before, "-i",
                            str(video), *options, str(tmp)], check=True, timeout=300,
                           capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        lines = (exc.stderr or "").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {exc.returncode}"
        raise ExperimentError(f"{video}: ffmpeg could not extract {what} ({detail})") from None
    except subprocess.TimeoutExpired:
        raise ExperimentError(f"{video}: ffmpeg took over 300 s to extract {what}") from None


def _ffmpeg_duration(text: str) -> float:
    m = re.search(r"Duration:\s*(\d+):(\d+):([\d.]+)", text)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0


# ----------------------------------------------------------------------------- describers


class Skip(Exception):
    """A method or stage that cannot run here; the message says why."""


class Describer:
    """Turns an item into a description for one method; stage models are shared."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self._cache: dict[tuple[str, str], Any] = {}
        self._captions: dict[tuple[str, ...], tuple[list[str], int]] = {}

    def _build(self, stage: str, spec: Any) -> Any:
        key = (stage, repr(spec))
        if key not in self._cache:
            try:
                self._cache[key] = _build_stage(stage, spec)
            except Skip:
                raise
            except SpecError as exc:
                # a mistyped option is the configuration's fault, not a model missing here
                raise ExperimentError(f"{stage} {_spec(spec)!r}: {str(exc).splitlines()[0]}") from exc
            except (AuralensError, ImportError, OSError) as exc:
                detail = str(exc).splitlines()[0].strip("\"'") if str(exc) else repr(exc)
                self._cache[key] = Skip(f"{stage} {_spec(spec)!r} unavailable: {detail}")
        obj = self._cache[key]
        if isinstance(obj, Skip):
            raise obj
        return obj

    def models(self) -> dict[str, dict[str, str]]:
        """``{"stage/name": {"name", "revision"}}`` of every stage model the methods loaded."""
        from auralens.encoders.hf import backend_record

        out = {}
        for (stage, _), obj in self._cache.items():
            if not isinstance(obj, Skip):
                record = backend_record(obj)
                out[f"{stage}/{record['name']}"] = record
        return out

    def check(self, method: dict[str, Any]) -> None:
        """Load a method's models up front; raises :class:`Skip` when one is missing."""
        if method.get("type") == "allm":
            self._build("allm", method.get("model"))
        elif method.get("type") == "pipeline":
            if _spec(method.get("separator", "reference")) != "reference":
                self._build("separator", method.get("separator"))
            self._build("captioner", method.get("captioner"))
            self._build("composer", method.get("composer"))
        else:
            raise ExperimentError(f"method {method.get('name')!r}: type must be allm or pipeline")

    def describe(self, method: dict[str, Any], item: Item) -> dict[str, Any]:
        """``{"description", "reasoning", "captions"?, "n_kept"?}`` for one item."""
        technique = method.get("technique", "zero-shot")
        if method["type"] == "allm":
            model = self._build("allm", method.get("model"))
            return _allm_describe(model, item, technique)
        captions, n_kept = self._pipeline_captions(method, item)
        composer = self._build("composer", method.get("composer"))
        desc = composer.compose(captions, technique) if captions else None
        return {"description": getattr(desc, "text", "") if desc else "",
                "reasoning": getattr(desc, "reasoning", "") if desc else "",
                "captions": captions, "n_kept": n_kept}

    def _pipeline_captions(self, method: dict[str, Any], item: Item) -> tuple[list[str], int]:
        sep_spec = method.get("separator", "reference")
        # Everything that decides the kept sources and their captions; the composer and the
        # technique come after, so their settings share one entry.
        key = (item.id, repr(sep_spec), repr(method.get("captioner")),
               repr(method.get("activity")))
        if key in self._captions:
            return self._captions[key]
        from auralens.audio import load, resample
        from auralens.scene.pipeline import activity_config, check_input_length
        from auralens.scene.separate.activity import filter_estimates, nothing_to_hear
        from auralens.scene.separate.run import separate_array

        captioner = self._build("captioner", method.get("captioner"))
        csr = int(getattr(captioner, "sample_rate", 16000))
        if _spec(sep_spec) == "reference":  # oracle separation: the true source files
            if not item.sources:
                raise ExperimentError(f"{item.id}: reference separation needs source files")
            # The mixture is what every other method hears: one that is missing or too short
            # to describe fails here too, as it does in `imagine`.
            check_input_length(item.audio, load(item.audio, csr), csr)
            waves = [load(p, csr) for p in item.sources]
            # Silent or constant (DC-only) sources have nothing to caption.
            waves = [w for w in waves if np.sqrt(np.mean(np.square(w, dtype=np.float64))) > 1e-6
                     and nothing_to_hear(w) is None]
        else:
            separator = self._build("separator", sep_spec)
            ssr = int(getattr(separator, "sample_rate", 16000))
            mix = load(item.audio, ssr)
            check_input_length(item.audio, mix, ssr)
            est = separate_array(separator, mix)  # pads inputs shorter than the model's window
            act = activity_config(method.get("activity"), where=f"method {method['name']!r}: "
                                  "activity")
            kept = [d["index"] for d in filter_estimates(est, mix, act) if d["kept"]]
            waves = [resample(est[k], ssr, csr) for k in kept]
        captions = [captioner.caption(w) for w in waves]
        self._captions[key] = (captions, len(waves))
        return captions, len(waves)


def _build_stage(stage: str, spec: Any) -> Any:
    """Build one stage backend from its registry (lazy imports)."""
    params = dict(spec.get("params") or {}) if isinstance(spec, dict) else {}
    spec = _spec(spec)
    if stage == "allm":
        if not spec or str(spec).lower() in ("none", "null"):
            raise Skip("no audio LLM given (e.g. --set models.allm=qwen2-audio:"
                       "Qwen/Qwen2-Audio-7B-Instruct, or qwen2-audio:<local dir>)")
        try:
            from auralens.scene.allm import load_audio_llm
        except ImportError as exc:
            raise Skip(f"the audio-LLM baseline is not installed ({exc})") from exc
        return load_audio_llm(spec, **params)
    if stage == "separator":
        from auralens.scene.separate.base import SEPARATORS as reg
    elif stage == "captioner":
        from auralens.scene.caption.base import CAPTIONERS as reg
    elif stage == "composer":
        from auralens.scene.compose.base import COMPOSERS as reg
    elif stage == "image":
        from auralens.scene.render.base import IMAGE_GENERATORS as reg
        if not spec or str(spec).lower() in ("none", "null"):
            raise Skip("no image generator configured (image.generator: none)")
    else:  # pragma: no cover - internal misuse
        raise ValueError(stage)
    return reg.build(spec, **params)


def _allm_describe(model: Any, item: Item, technique: str) -> dict[str, Any]:
    """Run the audio-LLM baseline on the mixture and return its description."""
    from auralens.audio import load
    from auralens.scene.pipeline import check_input_length

    sr = int(getattr(model, "sample_rate", 16000))
    wave = load(item.audio, sr)
    check_input_length(item.audio, wave, sr)
    desc = model.describe(wave, technique)
    return {"description": getattr(desc, "text", str(desc)),
            "reasoning": getattr(desc, "reasoning", "")}


# ----------------------------------------------------------------------------- runner


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    return (str(row.get("id")), str(row.get("method")))


def table_rows(rows: Sequence[dict[str, Any]], items: Sequence[Item],
               methods: Sequence[str]) -> list[dict[str, Any]]:
    """The rows the tables of this run are computed over.

    Only rows of the current ``items`` and configured ``methods`` count: a rerun into the
    same folder with another subset or limit leaves older items in ``results.jsonl`` (they
    are reused when they come back) but out of the tables. An ``ok`` row wins over a failure
    record of the same pair. For every method with a row here, each current item without
    one gets a ``status: missing`` row, so the ``skipped`` column shows items a method
    lacks (a failure, or a model unavailable in this run) instead of a smaller ``n``.
    """
    ids = {it.id: it for it in items}
    names = set(methods)
    picked: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if str(r.get("id")) not in ids or r.get("method") not in names:
            continue
        key = _row_key(r)
        if key not in picked or (r.get("status", "ok") == "ok"
                                 and picked[key].get("status", "ok") != "ok"):
            picked[key] = r
    present = {m for _, m in picked}
    out = []
    for m in methods:  # configured order, items in their order
        if m not in present:
            continue
        for it in ids.values():
            out.append(picked.get((it.id, m)) or {
                "id": it.id, "method": m, "n_sources": it.n_sources, "status": "missing",
                "error": "no result for this item"})
    return out


def run_experiment(config: str | Path | dict[str, Any], out_dir: str | Path | None = None, *,
                   overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or resume) an experiment and write all its outputs.

    Args:
        config: YAML path or an already-loaded config dict.
        out_dir: output directory (default ``runs/experiments/<name>``).
        overrides: ``key=value`` strings applied over the YAML (``variant=study`` …).

    Returns:
        A summary: ``out_dir``, ``rows`` (results in ``results.jsonl``), ``in_tables``
        (those of this run's items and methods, which the tables use), ``outside_tables``
        (the others, e.g. from a run with another subset), ``lacking`` ((item, method)
        pairs of this run without a result: failed, or the method's model was missing),
        ``new`` (this run), ``skipped`` (methods / metrics / stages with reasons),
        ``notes`` (said below the tables), ``tables``, ``figures``.

    Raises:
        ConfigError: a bad definition, no method configured included.
        ExperimentError: bad data or output folder, or a run with no result at all (no
            method could run, or every (item, method) pair failed; :class:`NothingDoneError`
            when the tables and ``errors.jsonl`` were written).
    """
    cfg = load_experiment(config, overrides) if not isinstance(config, dict) else copy.deepcopy(config)
    out = Path(out_dir or Path("runs") / "experiments" / cfg["name"])
    _check_numbers(cfg, cfg.get("_source") or "experiment")  # sections expand_methods reads
    methods = expand_methods(cfg)
    validate_experiment(cfg, methods)  # config errors before any work
    check_out_dir(out, ExperimentError)
    results_path = out / "results.jsonl"
    old = [r for r in read_results(results_path) if r.get("status", "ok") == "ok"]
    # Other settings than the rows already there: refused before any data or model is
    # loaded, for every method that is not switched off, whether or not its model turns out
    # to be available here.
    keys = check_resume(out, old, [m for m in methods if not switched_off(m)], cfg)
    path = data_path(cfg)
    identity = {"source": (cfg.get("data") or {}).get("source", "esc50"), "path": str(path)}
    timer = Timer()
    skipped: list[dict[str, str]] = []
    names = {m["name"] for m in methods}
    loaded = None
    if any(r.get("data_signature") is not None and r.get("method") in names for r in old):
        # A resume whose rows may be of other data: refused before any model loads (seconds
        # to minutes with real models) and before anything is written.
        loaded = _load_checked_items(cfg, out, old, methods, path, timer)
    # Otherwise models before data: a mistyped backend option fails here, before mixtures
    # are built.
    describer = Describer(cfg)
    runnable = []
    for m in methods:
        try:
            with timer("load"):
                describer.check(m)
            runnable.append(m)
        except Skip as exc:
            skipped.append({"what": f"method {m['name']}", "reason": str(exc)})
            log.warning("skipping method %s: %s", m["name"], exc)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    # drops stale "skipped" lines (they are retried) and keeps fingerprints added to rows of
    # an older version
    write_jsonl(results_path, old)
    record = {"command": f"experiment run {cfg.get('_source', '')}".strip(),
              "config": {k: v for k, v in cfg.items() if not k.startswith("_")},
              "seed": cfg.get("seed")}
    # a run stopped part-way still says what made the rows beside it
    write_run_json(out, **record, extra={"status": "running", "data": identity})
    try:
        return _run(cfg, out, methods, runnable, keys, identity, describer, skipped, timer,
                    record, old, loaded)
    except NothingDoneError:
        raise  # run.json already records the failure with what was written
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            write_run_json(out, **record, timings=timer.timings,
                           extra={"status": status, "data": identity,
                                  "error": str(exc).splitlines()[0] if str(exc) else repr(exc)})
        except Exception as write_exc:  # noqa: BLE001 - the run's own error is the one to report
            log.warning("%s: could not record the failed run (%s)", out, write_exc)
        raise


def _load_checked_items(cfg: dict[str, Any], out: Path, old: Sequence[dict[str, Any]],
                        methods: Sequence[dict[str, Any]], path: Path, timer: Timer,
                        ) -> tuple[list[Item], dict[str, dict[str, Any] | None]]:
    """The run's items and their :func:`item_signature`, after :func:`check_data` on ``old``.

    Raises:
        ExperimentError: bad data, or a row of ``old`` made from other data.
    """
    with timer("data"):
        items = load_items(cfg, out)
        signatures = {it.id: item_signature(it) for it in items}
    check_data(out, old, signatures, [m["name"] for m in methods], path)
    return items, signatures


def _run(cfg: dict[str, Any], out: Path, methods: list[dict[str, Any]],
         runnable: list[dict[str, Any]], keys: dict[str, str], identity: dict[str, Any],
         describer: Describer, skipped: list[dict[str, str]], timer: Timer,
         record: dict[str, Any], old: list[dict[str, Any]],
         loaded: tuple[list[Item], dict[str, dict[str, Any] | None]] | None,
         ) -> dict[str, Any]:
    """The part of :func:`run_experiment` after ``run.json`` says the run started.

    Args:
        old: the ``ok`` rows of ``results.jsonl``, as written back when the run started.
        loaded: the items and signatures when already loaded and checked, else None.
    """
    from auralens.evaluate.aggregate import write_report

    results_path = out / "results.jsonl"
    names = {m["name"] for m in methods}
    if not runnable and not any(r.get("method") in names for r in old):
        # nothing could run and no earlier row could fill the tables: fail before the data
        # is built (the generic handler records it in run.json)
        write_json(out / "skipped.json", skipped)
        raise ExperimentError(_no_method_reason(out, methods, skipped))
    settings = {m["name"]: settings_of(m, cfg) for m in methods}
    items, signatures = loaded or _load_checked_items(cfg, out, old, methods,
                                                      Path(identity["path"]), timer)
    evaluator = Evaluator(cfg, out, skipped)
    done = {_row_key(r) for r in old}
    errors = ErrorLog(out / "errors.jsonl", reset=True)
    for note in method_notes(runnable):
        skipped.append(note)
        log.warning("%s: %s", note["what"], note["reason"])
    image_gen = None
    if cfg["kind"] == "video":
        try:
            image_gen = describer._build("image", (cfg.get("image") or {}).get("generator"))
        except Skip as exc:
            skipped.append({"what": "image generation (CLIPScore vs generated image)",
                            "reason": str(exc)})

    from auralens.progress import progress

    todo = [(it, m) for m in runnable for it in items if (it.id, m["name"]) not in done]
    new = 0
    for item, method in progress(todo, desc=f"experiment {cfg['name']}", total=len(todo)):
        n_errors = len(errors)
        with errors.guard(f"{item.id}:{method['name']}", item.audio):
            with timer("describe"):
                out_desc = describer.describe(method, item)
            row: dict[str, Any] = {
                "id": item.id, "method": method["name"], "type": method["type"],
                "technique": method.get("technique", "zero-shot"),
                "setting": _row_setting(method),
                "fingerprint": keys[method["name"]], "settings": settings[method["name"]],
                "data_signature": signatures[item.id],
                "n_sources": item.n_sources, "labels": item.labels, **out_desc, "status": "ok",
            }
            if image_gen is not None and row["description"]:
                with timer("image"):
                    img = image_gen.generate(row["description"], seed=int(cfg.get("seed", 0)))
                    img_path = out / "images" / image_name(item.id, method["name"])
                    from auralens.io import atomic_path

                    with atomic_path(img_path) as tmp:
                        img.save(tmp, format="PNG")
                    row["image"] = str(img_path.relative_to(out))
            with timer("evaluate"):
                row.update(evaluator.evaluate(row, item))
            append_jsonl(results_path, row)
            new += 1
        if len(errors) > n_errors:
            # a failure record: counted as skipped in the tables, dropped and retried on
            # the next run (only ok rows are kept)
            append_jsonl(results_path, {
                "id": item.id, "method": method["name"], "type": method["type"],
                "technique": method.get("technique", "zero-shot"),
                "n_sources": item.n_sources, "labels": item.labels, "status": "error",
                "error": errors.items[-1]["error"]})
    errors.summary(len(todo))

    all_rows = read_results(results_path)
    rows = table_rows(all_rows, items, [m["name"] for m in methods])
    n_ok = sum(1 for r in all_rows if r.get("status", "ok") == "ok")
    n_ok_tables = sum(1 for r in rows if r.get("status", "ok") == "ok")
    outside = n_ok - n_ok_tables
    if outside:
        log.warning("results.jsonl holds %d results of items or methods outside this run "
                    "(another subset, limit or method list); the tables leave them out",
                    outside)
    notes = earlier_rows_notes(rows, methods)
    for note in notes:
        log.warning("%s", note)
    write_json(out / "skipped.json", evaluator.skipped_unique())
    with timer("report"):
        written = write_report(rows, out, title=cfg["name"], notes=notes)
    summary = {"out_dir": str(out), "rows": n_ok, "in_tables": n_ok_tables,
               "outside_tables": outside, "lacking": len(rows) - n_ok_tables,
               "new": new, "items": len(items),
               "methods": [m["name"] for m in runnable], "skipped": evaluator.skipped_unique(),
               "notes": notes, "errors": len(errors), **written}
    failure = nothing_done(out, methods, runnable, skipped, errors, len(todo), n_ok_tables)
    extra: dict[str, Any] = {"status": "failed" if failure else "done", "data": identity,
                             "summary": summary, "judge": evaluator.judge_info()}
    if failure:
        extra["error"] = failure
    write_run_json(out, **record, models={**describer.models(), **evaluator.models()},
                   timings=timer.timings, extra=extra)
    if failure:
        raise NothingDoneError(failure)
    return summary


def nothing_done(out: Path, methods: Sequence[dict[str, Any]],
                 runnable: Sequence[dict[str, Any]], skipped: Sequence[dict[str, str]],
                 errors: ErrorLog, n_todo: int, n_ok_tables: int) -> str | None:
    """Why a run produced nothing, or None when its tables hold at least one result.

    A run whose tables have a result is fine even when some (or all) of its new pairs failed
    (a rerun that only retries broken items); one with none fails, naming why: no method
    could run (with their reasons) or every (item, method) pair failed (with the first error).
    """
    if n_ok_tables:
        return None
    if not runnable:
        return _no_method_reason(out, methods, skipped)
    if n_todo and len(errors) >= n_todo:
        first = str(errors.items[0].get("error") or "") if errors.items else ""
        first = first.splitlines()[0] if first.strip() else "unknown error"
        return (f"{out}: every (item, method) pair failed ({len(errors)} of {n_todo}); first: "
                f"{first}; see {errors.path}")
    return None


def _no_method_reason(out: Path, methods: Sequence[dict[str, Any]],
                      skipped: Sequence[dict[str, str]]) -> str:
    """One line: no method could run, naming the first methods and why each was skipped."""
    reasons = {s["what"].removeprefix("method "): s["reason"] for s in skipped
               if s["what"].startswith("method ")}
    shown = [f"{m['name']}: {reasons.get(m['name'], 'not available')}" for m in methods[:3]]
    more = f"; … ({len(methods) - 3} more)" if len(methods) > 3 else ""
    return (f"{out}: no method could run ({'; '.join(shown)}{more}); nothing to put in the "
            "tables (see skipped.json)")


def earlier_rows_notes(rows: Sequence[dict[str, Any]], methods: Sequence[dict[str, Any]]) -> list[str]:
    """Notes for the tables on methods switched off in this run (``models.allm=none``) whose
    rows come from an earlier run, naming the model that made them."""
    notes = []
    for m in methods:
        if not switched_off(m):
            continue
        made = [r for r in rows if r.get("method") == m["name"] and r.get("status", "ok") == "ok"]
        if made:
            models = sorted({str(_spec((r.get("setting") or {}).get("model"))) for r in made})
            notes.append(f"Note: the {len(made)} rows of {m['name']} come from an earlier run "
                         f"(model {', '.join(models)}); this run gives {m['name']} no model.")
    return notes


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of an experiment's ``results.jsonl`` (a truncated last line, left by a killed
    run, is skipped by :func:`~auralens.io.read_jsonl`).

    Raises:
        ExperimentError: ``path:line`` of a line that is not a result row: not a JSON object,
            no id or method, or a value the tables cannot use (``count: "many"`` …).
    """
    from auralens.evaluate.aggregate import row_problem

    rows = []
    for line, r in read_jsonl_numbered(path):
        where = f"{path}:{line}"
        if not isinstance(r, dict):
            raise ExperimentError(f"{where}: not a JSON object, so not a result row; fix or "
                                  "remove the line, or use another --out")
        if not ((isinstance(r.get("id"), str) or is_whole(r.get("id")))
                and isinstance(r.get("method"), str)):
            raise ExperimentError(f"{where}: a result row needs an id and a method name; fix "
                                  "or remove the line, or use another --out")
        problem = row_problem(r)
        if problem:
            raise ExperimentError(f"{where}: {problem}; fix or remove the line, or use "
                                  "another --out")
        rows.append(r)
    return rows


def item_signature(item: Item) -> dict[str, Any] | None:
    """What an item's result rows are made from, compared on resume: a hash of the contents of
    its audio (and of its source files and reference frame when it has them), its labels and
    its number of sources. Paths are left out: the same data in another folder keeps its rows.

    Returns:
        The signature, or None when one of its files cannot be read (the item then fails on
        its own, and its earlier rows are not checked).
    """
    from auralens.cache import hash_file

    def digest(path: Path) -> str:
        return hash_file(path)[:16]

    try:
        sig: dict[str, Any] = {"audio": digest(item.audio)}
        if item.sources:
            sig["sources"] = [digest(p) for p in item.sources]
        if item.image is not None:
            sig["image"] = digest(item.image)
    except OSError:
        return None
    return {**sig, "labels": list(item.labels), "n_sources": item.n_sources}


def check_data(out: Path, old: Sequence[dict[str, Any]],
               signatures: dict[str, dict[str, Any] | None], methods: Sequence[str],
               path: Path) -> None:
    """Refuse to add to rows made from other data: a row of one of this run's items and
    ``methods`` whose ``data_signature`` differs from its item's :func:`item_signature` now.

    Rows of items or methods outside this run stay as they are (checked when they come
    back); rows without a signature (older versions, also the one that kept a hash of the
    whole data file in ``data``) and items whose files cannot be read are not checked.

    Raises:
        ExperimentError: naming the item and what changed.
    """
    what = {"audio": "its audio", "sources": "its source files", "image": "its reference frame",
            "labels": "its labels", "n_sources": "its n_sources"}
    names = set(methods)
    for r in old:
        prev, now = r.get("data_signature"), signatures.get(str(r.get("id")))
        if prev is None or now is None or r.get("method") not in names or prev == now:
            continue
        diff = changed_keys(prev, now) if isinstance(prev, dict) else []
        changed = ", ".join(what.get(k, k) for k in diff) or "its data"
        raise ExperimentError(f"{out}: results.jsonl holds rows of item {r['id']!r} made from "
                              f"other data ({changed} changed since; data.path is {path}); use "
                              f"another --out, or remove the rows of {r['id']!r} from "
                              f"{out / 'results.jsonl'} to redo them")


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*(?:_[A-Za-z0-9.-]+)*")


def image_name(item_id: str, method: str) -> str:
    """``<item>__<method>.png``, one file per (item, method).

    A part that is not a plain name (letters, digits, ``.``, ``-``, single ``_``) or is longer
    than 60 characters becomes its first plain letters plus a short hash of the whole: ``p/x``
    and ``p_x`` get different files, an id cannot reach outside ``images/``, a file name stays
    within the file system's limit, and as neither form holds ``__`` the pair is unambiguous.
    """
    import hashlib

    def part(text: str) -> str:
        if _SAFE_NAME.fullmatch(text) and len(text) <= 60:
            return text
        stem = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.")[:60]
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
        return f"{stem}-{digest}" if stem else digest

    return f"{part(item_id)}__{part(method)}.png"


class Evaluator:
    """Judge + CLAPScore (+ CLIPScore for the video kind), each loaded once or skipped."""

    def __init__(self, cfg: dict[str, Any], out_dir: Path, skipped: list[dict[str, str]]) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.skipped = skipped
        jcfg = cfg.get("judge") or {}
        self.metrics = [m for m in (jcfg.get("metrics") or DEFAULT_METRICS)]
        self.judge = None
        if jcfg.get("spec") not in (None, "none"):
            from auralens.evaluate.judge import build_judge

            try:
                self.judge = build_judge(jcfg["spec"], **(jcfg.get("params") or {}))
            except (AuralensError, ImportError, OSError) as exc:
                skipped.append({"what": "LLM judge (all judge metrics)",
                                "reason": str(exc).splitlines()[0]})
        else:
            skipped.append({"what": "LLM judge (all judge metrics)", "reason": "judge.spec is none"})
        if self.judge is not None:
            for m in self.metrics:
                if m not in self.judge.supports and m != "count":
                    skipped.append({"what": f"judge metric {m}",
                                    "reason": f"{self.judge.name} does not support it"})
        self.clap = self._load("clap", "CLAPScore (description vs audio)")
        self.clip = self._load("clip", "CLIPScore") if cfg["kind"] == "video" else None
        self._audio_emb: dict[str, np.ndarray] = {}

    def _load(self, key: str, what: str) -> Any:
        model = (self.cfg.get(key) or {}).get("model")
        if not model or str(model).lower() in ("none", "null"):
            self.skipped.append({"what": what, "reason": f"{key}.model is not set"})
            return None
        try:
            if key == "clap":
                from auralens.evaluate.clapscore import ClapScorer

                return ClapScorer(model)
            from auralens.evaluate.clipscore import ClipScorer

            return ClipScorer(model)
        except (AuralensError, ImportError, OSError) as exc:
            self.skipped.append({"what": what, "reason": str(exc).splitlines()[0]})
            return None

    def evaluate(self, row: dict[str, Any], item: Item) -> dict[str, Any]:
        from auralens.evaluate.judge import judge_description

        text = row.get("description") or ""
        out: dict[str, Any] = {}
        pipeline = row.get("type") == "pipeline"
        if self.judge is not None and text:
            metrics = [m for m in self.metrics if item.labels or m not in ("recognition", "imagination")]
            out.update(judge_description(self.judge, text, item.labels, metrics,
                                         n_kept=row.get("n_kept") if pipeline else None,
                                         captions=row.get("captions") if pipeline else None))
            out["judge"] = self.judge.name
            out["judge_is_llm"] = self.judge.is_llm
        else:
            if pipeline and row.get("n_kept") is not None and "count" in self.metrics:
                out["count"] = min(4, int(row["n_kept"]))
                out["count_source"] = "kept_sources"
            if (self.judge is not None and item.labels and "recognition" in self.metrics
                    and "recognition" in self.judge.supports):
                # Nothing to describe names no label: a certain "not recognised", which
                # must count in label accuracy rather than vanish as missing.
                out["recognition"] = False
                out["recognition_source"] = ("nothing_kept" if pipeline and row.get("n_kept") == 0
                                             else "empty_description")
                out["judge"] = self.judge.name
                out["judge_is_llm"] = self.judge.is_llm
        if self.clap is not None and text:
            if item.id not in self._audio_emb:  # one mixture is shared by every method
                from auralens.audio import load

                wave = load(item.audio, self.clap.sample_rate)
                self._audio_emb[item.id] = self.clap.embed_audio([wave], self.clap.sample_rate)[0]
            t = self.clap.embed_text([text])[0]
            out["clapscore"] = float(np.dot(self._audio_emb[item.id], t))  # both unit-norm
        if self.clip is not None and text:
            if item.image is not None:
                s = self.clip.score([text], [item.image])
                out["clip_reference_cos"] = float(s["cos"][0])
                out["clip_reference"] = float(s["clipscore"][0])
            if row.get("image"):
                s = self.clip.score([text], [self.out_dir / row["image"]])
                out["clip_generated_cos"] = float(s["cos"][0])
                out["clip_generated"] = float(s["clipscore"][0])
        return out

    def skipped_unique(self) -> list[dict[str, str]]:
        seen, out = set(), []
        for s in self.skipped:
            key = (s["what"], s["reason"])
            if key not in seen:
                seen.add(key)
                out.append(s)
        return out

    def models(self) -> dict[str, Any]:
        """``{"judge", "clap", "clip"}``: each ``{"name", "revision"}``, or None when not used."""
        from auralens.encoders.hf import backend_record

        return {k: None if v is None else backend_record(v)
                for k, v in (("judge", self.judge), ("clap", self.clap), ("clip", self.clip))}

    def judge_info(self) -> dict[str, Any]:
        if self.judge is None:
            return {}
        stats = self.judge.stats() if hasattr(self.judge, "stats") else {}
        return {"name": self.judge.name, "is_llm": self.judge.is_llm, **stats}

