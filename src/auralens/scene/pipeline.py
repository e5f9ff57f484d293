"""Imagine: sound mixture → sources → captions → one scene description → image.

Two modes share the input handling, the image stage and the outputs:

- ``pipeline``: (1) separate, (2) keep the active estimates, (3) caption each kept source,
  (4) compose one description, (5) render it.
- ``allm``: (1) an audio LLM describes the whole mixture, (5) render it.

Every run writes into ``out_dir``: ``sources/*.wav``, ``activity.json``, ``captions.json``,
``description.txt`` (+ ``reasoning.txt`` for chain-of-thought), ``image.png`` when an image
model is configured, ``reference.png`` for video input, ``report.html`` and ``run.json``
(status, config, models, timings per stage, skipped stages). Stage specs, the input and
the models are checked and loaded before ``out_dir`` is touched, so a run that cannot start
leaves an earlier result as it was; a run that starts first removes the files an earlier
imagine (or one-file ``separate``) run wrote into ``out_dir``, and when it fails records
``status: failed`` and the error in ``run.json``. A folder holding another command's outputs
is refused.

Example:
    >>> from auralens.scene.pipeline import imagine
    >>> result = imagine("mix.wav", "out/")                       # doctest: +SKIP
    >>> result.description                                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from auralens.audio import FFMPEG_TIMEOUT, VIDEO_SUFFIXES, AudioError
from auralens.checks import is_number, is_whole
from auralens.config import changed_keys, check_fingerprints, fingerprint, same_working_dir
from auralens.errors import AuralensError
from auralens.io import (
    ErrorLog,
    Timer,
    append_jsonl,
    batch_counts,
    check_out_dir,
    mask_secrets,
    read_json,
    read_jsonl,
    read_run_record,
    remove_stale_temps,
    to_jsonable,
    write_json,
    write_jsonl,
    write_run_json,
    write_text,
)
from auralens.scene.separate.run import SOURCE_RE

log = logging.getLogger(__name__)

MODES = ("pipeline", "allm")
#: Shortest input imagine describes: one 25 ms analysis window (400 samples at 16 kHz, the
#: least ``sonify render``'s AST takes). A shorter clip holds too little to caption.
MIN_INPUT_SECONDS = 0.025
_STAGE_KEYS = ("separator", "captioner", "composer", "image", "allm")


class ImagineError(AuralensError):
    """An input or configuration the imagine pipeline cannot use."""


def imagine_section(path: str | Path, error: type[Exception]) -> dict[str, Any]:
    """The settings an imagine config file holds: its ``imagine:`` section, or the whole file
    (what ``imagine run --config`` and ``auralens ui --config`` read).

    Raises:
        error: the section is not a mapping (``f"{path}: 'imagine' must be a mapping"``).
    """
    from auralens.config import load_yaml

    data = load_yaml(path)
    section = data.get("imagine", data)
    if not isinstance(section, dict):
        raise error(f"{path}: 'imagine' must be a mapping")
    return dict(section)


# --------------------------------------------------------------------------- configuration


@dataclass
class ImagineConfig:
    """Settings of one imagine run.

    Stage entries are spec strings (``"classifier"``, ``"hf:qwen2.5@quantize=4bit"`` …),
    ``{"backend": spec, "params": {...}}`` dicts, already-built backend objects, or None for
    the offline default.

    Attributes:
        mode: ``pipeline`` or ``allm``.
        separator, captioner, composer, image, allm: the stage backends.
        technique: ``zero-shot`` | ``cot`` | ``role`` | ``few-shot``.
        template: a user prompt template file (composer or audio LLM).
        seed: image seed.
        activity: :class:`~auralens.scene.separate.activity.ActivityConfig` fields (a mapping,
            or an ``ActivityConfig``, kept as its fields).
        min_kept: keep at least this many estimates (the most energetic) when the filter
            drops them all, so every mixture gets a description.
        report: write ``report.html`` (with spectrograms).
    """

    mode: str = "pipeline"
    separator: Any = None
    captioner: Any = None
    composer: Any = None
    image: Any = "none"
    allm: Any = "qwen2-audio"
    technique: str = "zero-shot"
    template: str | None = None
    seed: int = 0
    activity: dict[str, Any] = field(default_factory=dict)
    min_kept: int = 1
    report: bool = True

    def __post_init__(self) -> None:
        from auralens.scene.compose.base import TECHNIQUES
        from auralens.scene.separate.activity import ActivityConfig

        if isinstance(self.activity, ActivityConfig):  # the form separate_file takes
            self.activity = asdict(self.activity)

        if self.mode not in MODES:
            raise ImagineError(f"unknown mode {self.mode!r}; use pipeline or allm")
        if self.technique not in TECHNIQUES:
            raise ImagineError(f"unknown technique {self.technique!r}; use one of "
                               f"{', '.join(TECHNIQUES)}")
        for key in _STAGE_KEYS:
            value = getattr(self, key)
            # a number or a list is a typo in YAML / --set, not a backend
            if isinstance(value, (bool, int, float, list)) or (isinstance(value, dict) and "backend" not in value):
                raise ImagineError(f"{key} must be a backend spec (text such as 'classifier'), "
                                   f"got {value!r}")
            params = (value.get("params") or {}) if isinstance(value, dict) else {}
            if isinstance(value, dict) and not (
                    isinstance(value["backend"], str | None) and isinstance(params, dict)
                    and all(isinstance(name, str) for name in params)):
                raise ImagineError(f"{key} must be a backend spec with options as "
                                   f"{{backend: <text>, params: <mapping of option names>}}, "
                                   f"got {value!r}")
        for key in ("seed", "min_kept"):
            value = getattr(self, key)
            if not is_whole(value, 0):
                raise ImagineError(f"{key} must be a whole number ≥ 0, got {value!r}")
        if not isinstance(self.report, bool):
            raise ImagineError(f"report must be true or false, got {self.report!r}")
        if self.template is not None and not isinstance(self.template, (str, Path)):
            raise ImagineError(f"template must be a file path, got {self.template!r}")
        activity_config(self.activity)  # bad filter options fail here, before any work
        if self.template is not None and not Path(self.template).expanduser().is_file():
            raise ImagineError(f"{self.template}: template file not found (--template)")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ImagineConfig:
        """Build from a plain dict (YAML / UI); ``render`` is accepted for ``image``."""
        data = dict(data or {})
        if "render" in data and "image" not in data:
            data["image"] = data.pop("render")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names, key=str)  # YAML keys may be numbers too
        if unknown:
            raise ImagineError(f"unknown imagine option(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (built backends appear by name).

        Built backends are replaced by their names before anything is copied: deep-copying
        one would copy a whole model, or fail on the lock it holds.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _STAGE_KEYS and value is not None and not isinstance(value, (str, dict)):
                out[f.name] = str(getattr(value, "name", type(value).__name__))
            else:
                out[f.name] = copy.deepcopy(value)  # specs, dicts and numbers: small
        return out

    def uses_template_composer(self) -> bool:
        """True when pipeline mode writes descriptions with the offline template composer."""
        if self.mode != "pipeline":
            return False
        value = self.composer
        if value is None:
            return True
        if isinstance(value, (str, dict)):
            spec, _ = _spec_params(value)
            return str(spec or "template").split(":")[0].split("@")[0].lower() == "template"
        return getattr(value, "name", "") == "template"

    def notes(self) -> list[str]:
        """Settings this config asks for that its backends ignore (printed and kept in
        run.json, so a run never looks like it compared something it did not)."""
        out = []
        if self.uses_template_composer():
            if self.template:
                out.append(f"--template {self.template} is not used: the template composer "
                           "writes from labels; use an LLM composer (--composer hf:…) or "
                           "--mode allm")
            if self.technique in ("role", "few-shot"):
                out.append(f"the template composer ignores technique {self.technique!r}: the "
                           "description is the same as with zero-shot (use an LLM composer "
                           "to compare techniques)")
        return out

    def result_settings(self, *, resolve_relative: bool = True) -> dict[str, Any]:
        """The settings that shape a result (what resumable batch jobs compare), resolved so
        that equivalent spellings give the same settings.

        Stage specs are canonical (:func:`~auralens.specs.canonical_spec`: None → the default
        backend's name, local paths absolute, options sorted) and the activity filter is its
        full :class:`~auralens.scene.separate.activity.ActivityConfig` (defaults filled in,
        numbers as floats). Leaves out what cannot change a result: the report switch, the
        seed when no image model runs, a template the template composer ignores, and API keys
        (``api_key=***``). A template that is used counts by its content, not by how its path
        is spelled.

        Args:
            resolve_relative: False when the working directory these settings were typed in
                is not known (an older run's ``run.json``).

        Raises:
            auralens.specs.UnresolvedPathError: ``resolve_relative`` is False and a stage spec
                names a relative local path.
        """
        out = self.to_dict()
        out.pop("report", None)
        no_image = self.image is None or (isinstance(self.image, str)
                                          and self.image.strip().lower() in ("", "none"))
        if no_image:
            out.pop("seed", None)
        for key in _STAGE_KEYS:
            out[key] = _canonical_stage(key, getattr(self, key), resolve_relative)
        out["activity"] = asdict(activity_config(self.activity))
        if self.mode == "pipeline":
            out.pop("allm", None)
        else:
            for key in ("separator", "captioner", "composer", "activity", "min_kept"):
                out.pop(key, None)
        out.pop("template", None)
        if self.template and not self.uses_template_composer():
            import hashlib

            data = Path(self.template).expanduser().read_bytes()
            out["template_sha256"] = hashlib.sha256(data).hexdigest()[:16]
        # an API key does not shape a result, and results lines must not hold it
        return mask_secrets(to_jsonable(out))


def stage_registry(key: str) -> Any:
    """The registry that builds imagine stage ``key`` (None for the audio LLM, which has none)."""
    if key == "separator":
        from auralens.scene.separate.base import SEPARATORS as reg
    elif key == "captioner":
        from auralens.scene.caption.base import CAPTIONERS as reg
    elif key == "composer":
        from auralens.scene.compose.base import COMPOSERS as reg
    elif key == "image":
        from auralens.scene.render.base import IMAGE_GENERATORS as reg
    else:
        return None
    return reg


def check_stage(key: str, value: Any, template: Any = None) -> None:
    """Cheap checks of one configured stage before any work: the backend exists, its options
    have known names and sensible values, and a local model folder looks like the right kind
    of model. No weights are read and nothing is fetched (stages still load lazily, one big
    model at a time); a backend module's ``check_spec(spec, **params)`` does the
    backend-specific part.

    Args:
        key: ``separator``, ``captioner``, ``composer``, ``image`` or ``allm``.
        value: the stage's entry in :class:`ImagineConfig`; built backends are not checked.
        template: the config's prompt template, read by the stages that use it (the audio
            LLM and LLM composers), so a template without a user turn fails here.

    Raises:
        AuralensError: one line naming the backend or folder and the problem
            (:class:`~auralens.scene.compose.prompting.TemplateError` for the template).
    """

    if value is not None and not isinstance(value, (str, dict)):
        return  # an already-built backend (API, tests)
    spec, params = _spec_params(value)
    if key == "allm":  # one loader, no registry
        from auralens.scene.allm import check_audio_llm

        check_audio_llm(spec, template=template or None, **params)
        return
    reg = stage_registry(key)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        spec = "none" if key == "image" else reg.default
    parsed, factory = reg.resolve(spec, quiet=True)  # an unknown backend name fails here
    params = {**parsed.params, **params}
    if key == "composer" and template and parsed.kind.lower() != "template":
        params.setdefault("template", str(template))
    module = importlib.import_module(getattr(factory, "__module__", "") or __name__)
    check = getattr(module, "check_spec", None)
    if check is not None:
        check(parsed, **params)


def _canonical_stage(key: str, value: Any, resolve_relative: bool = True) -> Any:
    """A stage entry of :class:`ImagineConfig` in the spelling-independent form that settings
    fingerprints use (a built backend appears by its name)."""
    from auralens.specs import canonical_spec

    if value is not None and not isinstance(value, (str, dict)):
        return str(getattr(value, "name", type(value).__name__))
    spec, params = _spec_params(value)
    if key == "image" and isinstance(spec, str) and spec.strip().lower() in ("", "none"):
        spec = "none"
    if key == "allm" and spec is None:
        spec = "qwen2-audio"  # what load_audio_llm builds for no spec
    spec = canonical_spec(spec, stage_registry(key), resolve_relative=resolve_relative)
    return {"backend": spec, "params": dict(sorted(params.items()))} if params else spec


def activity_config(settings: Any, where: str = "activity") -> Any:
    """Check activity-filter options and build the
    :class:`~auralens.scene.separate.activity.ActivityConfig`.

    Raises:
        ImagineError: not a mapping, an unknown option or rule, or a value of the wrong type
            (one line naming the option).
    """
    from auralens.scene.separate.activity import RULES, ActivityConfig

    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ImagineError(f"{where} must be a mapping of filter options "
                           f"(e.g. --set activity.rule=frames), got {settings!r}")
    known = [f.name for f in fields(ActivityConfig)]
    unknown = sorted(set(settings) - set(known), key=str)  # YAML keys may be numbers too
    if unknown:
        raise ImagineError(f"unknown {where} option {unknown[0]!r}; known: {', '.join(known)}")
    values = dict(settings)
    for key, value in settings.items():
        if key == "rule":
            if value not in RULES:
                raise ImagineError(f"{where}.rule: unknown rule {value!r}; use one of "
                                   f"{', '.join(RULES)}")
        elif key == "frame":
            if not is_whole(value, 1):
                raise ImagineError(f"{where}.frame must be a positive whole number of samples, "
                                   f"got {value!r}")
        elif not is_number(value):
            raise ImagineError(f"{where}.{key} must be a number, got {value!r}")
        else:
            values[key] = float(value)
    try:
        return ActivityConfig(**values)
    except ValueError as exc:  # a value out of range, checked where the config is defined
        raise ImagineError(f"{where}.{exc}") from None


def _as_config(config: ImagineConfig | dict[str, Any] | None) -> ImagineConfig:
    if isinstance(config, ImagineConfig):
        return config
    return ImagineConfig.from_dict(config)


def _spec_params(value: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(value, dict):
        spec = value.get("backend", value.get("spec", value.get("name")))
        return spec, dict(value.get("params") or {})
    return value, {}


def _allm_error(exc: AuralensError) -> ImagineError:
    """In ``allm`` mode the audio LLM is the whole job: its failure is the run's error."""
    detail = str(exc).splitlines()[0].strip("\"'") if str(exc) else repr(exc)
    return ImagineError(f"--mode allm needs an audio LLM (--allm), and it cannot be loaded: "
                        f"{detail}")


class Stages:
    """The backends of a config, built on first use and reused (batch jobs load once)."""

    def __init__(self, config: ImagineConfig) -> None:
        self.config = config
        self._built: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self._checked = False
        self._reached: set[str] = set()

    def keys(self) -> tuple[str, ...]:
        """The stages the config's mode uses."""
        if self.config.mode == "allm":
            return ("allm", "image")
        return ("separator", "captioner", "composer", "image")

    def check(self) -> None:
        """Check every stage's spec (:func:`check_stage`) before any work; once per object.

        A bad spec (an unknown option, ``steps=abc``, a chat model given as the image
        model …) then fails in one line before separation rather than after it.
        """
        from auralens.scene.compose.prompting import TemplateError

        if self._checked:
            return
        for key in self.keys():
            if key in self._built:
                continue
            try:
                check_stage(key, getattr(self.config, key), self.config.template)
            except ImagineError:
                raise
            except TemplateError as exc:
                if key == "allm":  # the --template file's fault, not the audio LLM's
                    raise ImagineError(f"{exc} (--template)") from exc
                raise
            except AuralensError as exc:
                if key == "allm":
                    raise _allm_error(exc) from exc
                raise
        self._checked = True

    def _get(self, key: str, build: Any) -> Any:
        if key not in self._built:
            value = getattr(self.config, key)
            if value is not None and not isinstance(value, (str, dict)):
                self._built[key] = value  # an already-built backend (API, tests)
            else:
                spec, params = _spec_params(value)
                self._built[key] = build(spec, **params)
        return self._built[key]

    def separator(self) -> Any:
        def build(spec: Any, **params: Any) -> Any:
            from auralens.scene.separate.run import load_separator

            return load_separator(spec, **params)
        return self._get("separator", build)

    def captioner(self) -> Any:
        from auralens.scene.caption.base import CAPTIONERS

        return self._get("captioner", CAPTIONERS.build)

    def composer(self) -> Any:
        from auralens.scene.compose.base import COMPOSERS

        def build(spec: Any, **params: Any) -> Any:
            kind = str(spec or "template").split(":")[0].split("@")[0].lower()
            if self.config.template and kind != "template":
                params.setdefault("template", self.config.template)
            return COMPOSERS.build(spec, **params)
        return self._get("composer", build)

    def image(self) -> Any:
        from auralens.scene.render.base import IMAGE_GENERATORS

        return self._get("image", lambda spec, **p: IMAGE_GENERATORS.build(spec or "none", **p))

    def allm(self) -> Any:
        """The audio-LLM describer.

        Raises:
            ImagineError: it cannot be loaded. In ``allm`` mode the audio LLM is the whole
                job, so this is an error rather than a skipped stage.
        """
        from auralens.scene.allm import load_audio_llm

        try:
            return self._get("allm", lambda spec, **p: load_audio_llm(
                spec, template=self.config.template, **p))
        except ImagineError:
            raise
        except AuralensError as exc:
            raise _allm_error(exc) from exc

    def preload(self) -> None:
        """Build every backend the mode needs and reach the API servers they send requests
        to (fail early: before a batch starts, before a run clears an earlier result)."""
        self.check()
        for key in self.keys():
            getattr(self, key)()
        self.check_servers()

    def check_servers(self) -> None:
        """Open a connection (no request) to the server of every API backend built from a
        spec (``openai:…``, ``openai-audio:…``), once per server.

        Building such a backend sends nothing, so without this an unreachable server only
        fails at its stage, after separation and captioning. Backends passed in already built
        are not checked (their requests may be served some other way).

        Raises:
            ImagineError: a server cannot be reached (naming the stage and its ``base_url``).
        """
        for key in self.keys():
            value = getattr(self.config, key)
            if key not in self._built or (value is not None and not isinstance(value, (str, dict))):
                continue
            for client in _api_clients(self._built[key]):
                url = str(client.base_url)
                if url in self._reached:
                    continue
                problem = _unreachable(url, getattr(client, "timeout", 10.0))
                if problem is not None:
                    exc = AuralensError(f"{url}: the server cannot be reached ({problem}); "
                                        "start it or fix base_url")
                    if key == "allm":
                        raise _allm_error(exc)
                    name = getattr(self._built[key], "name", key)
                    raise ImagineError(f"--{key} {name}: {exc}")
                self._reached.add(url)

    def models(self) -> dict[str, dict[str, str]]:
        """``{stage: {"name", "revision"}}`` of the backends built so far (for run.json)."""
        from auralens.encoders.hf import backend_record

        return {k: backend_record(v) for k, v in self._built.items()}


def _api_clients(backend: Any) -> list[Any]:
    """The OpenAI-compatible chat clients inside a built backend (a composer's ``llm``, an
    audio LLM's ``lm.client`` …), looked up a few attributes deep."""
    from auralens.scene.llm import OpenAIChatModel

    found: list[Any] = []
    todo, seen = [(backend, 0)], set()
    while todo:
        obj, depth = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, OpenAIChatModel):
            found.append(obj)
        elif depth < 3:
            todo += [(getattr(obj, name, None), depth + 1) for name in ("llm", "lm", "client")]
    return found


def _unreachable(url: str, timeout: Any) -> str | None:
    """Why a TCP connection to ``url``'s host cannot be opened (None when it can, or when a
    proxy carries the requests, so only the proxy would tell)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None  # a malformed URL: the request names the problem
    if not host:
        return None
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(host):
        return None
    try:
        wait = min(max(float(timeout), 0.1), 10.0)
    except (TypeError, ValueError):
        wait = 10.0
    try:
        with socket.create_connection((host, port), timeout=wait):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- results


@dataclass
class SceneResult:
    """What one imagine run produced.

    Attributes:
        id: input stem (or the mixture id in batch jobs).
        out_dir: output directory.
        mode: ``pipeline`` or ``allm``.
        n_estimates: separator outputs M (0 in allm mode).
        kept: indices of the kept estimates.
        labels: per kept source, the captioner's class label (None for free-text captioners).
        captions: per kept source, the caption.
        description: the scene description ("" when the stage was skipped).
        reasoning: chain-of-thought reasoning, if any.
        image: ``image.png`` or None.
        reference: ``reference.png`` (video input) or None.
        paths: every file written, by role.
        timings: seconds per stage.
        skipped: stage → reason, for stages that did not run.
        notes: settings the backends ignore (see :meth:`ImagineConfig.notes`).
    """

    id: str
    out_dir: Path
    mode: str = "pipeline"
    n_estimates: int = 0
    kept: list[int] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    description: str = ""
    reasoning: str = ""
    image: Path | None = None
    reference: Path | None = None
    paths: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- input handling


#: Rate of the audio track imagine extracts from a video (``input.wav``).
VIDEO_AUDIO_RATE = 16000


def read_input(path: str | Path) -> tuple[np.ndarray, int]:
    """The sound of an input, read (and so checked) before the run touches its output folder:
    an audio file as float32 mono at its own rate, a video's audio track extracted with ffmpeg
    as mono at :data:`VIDEO_AUDIO_RATE`.

    Returns:
        ``(wave [T], sample_rate)``.

    Raises:
        ImagineError: missing input, video input without ffmpeg, or a video without sound
            (``"<video>: no audio track"``, as ``separate`` says).
        AudioError: an unreadable, empty or too long audio file (one line naming it).
    """
    from auralens.audio import load_with_info

    path = Path(path)
    if not path.exists():
        raise ImagineError(f"{path}: file not found")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        wave, info = load_with_info(path)
        return wave, info.sample_rate
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ImagineError(f"{path}: video input needs ffmpeg, which is not on PATH; install "
                           "ffmpeg or pass an audio file")
    with tempfile.TemporaryDirectory(prefix="auralens-imagine-") as tmp:
        audio = Path(tmp) / "input.wav"
        try:
            proc = subprocess.run([ffmpeg, "-nostdin", "-y", "-v", "error", "-i", str(path),
                                   "-map", "0:a:0", "-vn", "-ac", "1", "-ar",
                                   str(VIDEO_AUDIO_RATE), "-c:a", "pcm_s16le", str(audio)],
                                  capture_output=True, text=True, check=False,
                                  timeout=FFMPEG_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ImagineError(f"{path}: ffmpeg took over {FFMPEG_TIMEOUT} s to extract the "
                               "audio track") from None
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 0 or not audio.exists():
            # -map 0:a:0 found nothing (older ffmpeg: the output holds no stream)
            if any("matches no streams" in ln or "does not contain any stream" in ln
                   for ln in lines):
                raise ImagineError(f"{path}: no audio track")
            raise ImagineError(f"{path}: could not extract the audio track "
                               f"({lines[-1] if lines else 'ffmpeg failed'})")
        try:
            wave, info = load_with_info(audio)
        except AudioError as exc:  # name the video, not the temporary file
            raise ImagineError(f"{path}: {exc.reason}") from None
    return wave, info.sample_rate


class _NoFrame(Exception):
    """ffmpeg gave no reference frame (the temporary file is then dropped)."""


def _reference_frame(path: Path, out_dir: Path, duration: float) -> Path | None:
    """``reference.png`` (written atomically): the video's frame at the clip's middle, or
    None (logged) when ffmpeg gives none."""
    from auralens.io import atomic_path

    ffmpeg = shutil.which("ffmpeg")
    reference = out_dir / "reference.png"
    try:
        with atomic_path(reference) as tmp:
            if ffmpeg is None:
                raise _NoFrame
            try:
                proc = subprocess.run([ffmpeg, "-nostdin", "-y", "-v", "error", "-ss",
                                       f"{duration / 2:.3f}", "-i", str(path), "-frames:v", "1",
                                       str(tmp)], capture_output=True, text=True, check=False,
                                      timeout=FFMPEG_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise _NoFrame from None
            if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
                raise _NoFrame
    except _NoFrame:
        log.warning("%s: no reference frame could be extracted", path)
        return None
    return reference


def check_input_length(input: str | Path, wave: np.ndarray, sample_rate: int) -> None:
    """Refuse an input shorter than :data:`MIN_INPUT_SECONDS` (``wave`` at ``sample_rate``).

    Raises:
        ImagineError: naming the input and its length.
    """
    n = int(wave.shape[-1])
    need = int(round(MIN_INPUT_SECONDS * sample_rate))
    if n < need:
        raise ImagineError(f"{input}: too short to describe: {1000 * n / sample_rate:.1f} ms "
                           f"({n} sample(s) at {sample_rate} Hz); imagine needs at least "
                           f"{1000 * MIN_INPUT_SECONDS:g} ms ({need} samples at {sample_rate} Hz)")


# --------------------------------------------------------------------------- the run


def _keep(decisions: list[dict[str, Any]], min_kept: int) -> list[int]:
    kept = [d["index"] for d in decisions if d["kept"]]
    if len(kept) >= min_kept or not decisions:
        return kept
    # No estimate passed: keep the most energetic ones so the scene still gets described;
    # never one with nothing to hear (silent, constant, or of a silent or constant mixture).
    order = sorted(decisions, key=lambda d: -d["scores"].get("rms_ratio", 0.0))
    for d in order:
        if len(kept) >= min_kept:
            break
        if d["index"] not in kept and d["audible"]:  # audible: finite, not silent, not constant
            d["kept"] = True
            d["reason"] = "kept as the most energetic estimate (none passed the filter)"
            kept.append(d["index"])
    return sorted(kept)


def _resample(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    from auralens.audio import resample

    return resample(wave, sr, target)


def _read_source(path: Path) -> tuple[np.ndarray, int]:
    """``(wave [T] float32, sample_rate)`` of a source this run wrote (a mono float WAV, so
    the samples are those that were written; a one-channel file is loaded into a single
    float32 array, with no copy).
    """
    from auralens.audio import load_with_info

    # no duration limit: the file is as long as the input this run accepted
    wave, info = load_with_info(path, max_duration=None)
    if info.channels != 1:  # not a file this run wrote
        raise ImagineError(f"{path}: expected one channel, found {info.channels}")
    return wave, info.sample_rate


#: Files an imagine run writes at the top of its folder; run.json first, so that a run
#: stopped while clearing leaves no run.json rather than the previous run's.
OUTPUT_FILES = ("run.json", "report.html", "activity.json", "captions.json", "description.txt",
                "reasoning.txt", "image.png", "reference.png", "input.wav")
#: Files it writes in sub-folders (sources and report spectrograms), by name pattern.
OUTPUT_PATTERNS = (("sources", SOURCE_RE),
                   ("spectrograms", re.compile(r"(?:mixture|source\d+)\.png")))
#: The same for ``auralens separate`` (one file), whose folder an imagine run may replace:
#: both write ``sources/source<k>.wav`` and ``activity.json``.
SEPARATE_FILES = ("run.json", "summary.json", "activity.json")
SEPARATE_PATTERNS = (("sources", SOURCE_RE),)


def _command(record: Any) -> str | None:
    """The command a ``run.json`` record names (None for anything else)."""
    if isinstance(record, dict) and isinstance(record.get("command"), str):
        return record["command"]
    return None


def _is_imagine(command: str | None) -> bool:
    return command is not None and command.startswith("imagine --mode")


def earlier_run(out: Path) -> dict[str, Any] | None:
    """The ``run.json`` of the run whose outputs an imagine run into ``out`` replaces: an
    earlier imagine run's or ``auralens separate``'s (one file); None when ``out`` holds no
    command's record.

    Raises:
        ImagineError: ``out`` holds another command's outputs (``separate eval``, ``data
            mix``, an experiment, ``sonify`` …), which imagine would mix its files with.
    """
    record = read_run_record(out)
    command = _command(record)
    if command is None or not command.strip():
        return None
    if _is_imagine(command) or command == "separate":
        return record
    raise ImagineError(f"{out}: holds the outputs of '{command}' (its run.json); imagine "
                       "would mix its files with them; use another --out")


def _holds_result(record: dict[str, Any] | None) -> bool:
    """True when ``record`` describes finished outputs worth keeping (not a failed run)."""
    if record is None:
        return False
    if _is_imagine(_command(record)):
        return record.get("status") not in ("failed", "interrupted")
    return True


def clear_outputs(out: Path, keep: Path | None = None) -> list[Path]:
    """Remove the files an earlier imagine run, or ``auralens separate`` on one file, wrote
    into ``out`` (only names that command writes, never other files), so a rerun never leaves
    an image, sources, spectrograms or a ``summary.json`` that its ``run.json`` does not
    describe.

    Nothing is removed unless ``out/run.json`` is the record of one of those commands: a
    folder that never held such a run may hold a user's own ``image.png`` or
    ``sources/source1.wav``.

    Args:
        out: the output folder.
        keep: the run's input, left alone when it lies among those names.

    Returns:
        The removed paths.
    """
    command = _command(read_run_record(out))
    if _is_imagine(command):
        names, patterns = OUTPUT_FILES, OUTPUT_PATTERNS
    elif command == "separate":
        names, patterns = SEPARATE_FILES, SEPARATE_PATTERNS
    else:
        return []
    keep = keep.resolve() if keep is not None else None
    found = [out / name for name in names]
    for sub, pattern in patterns:
        if (out / sub).is_dir():
            found += sorted(p for p in (out / sub).iterdir() if pattern.fullmatch(p.name))
    removed = []
    for path in found:
        if (path.is_file() or path.is_symlink()) and path.resolve() != keep:
            path.unlink()
            removed.append(path)
    for sub, _ in patterns:
        with contextlib.suppress(OSError):  # only when nothing else is in it
            (out / sub).rmdir()
    if removed:
        log.info("%s: removed %d file(s) of an earlier run", out, len(removed))
    return removed


def _message(exc: BaseException) -> str:
    """An exception as one line (expected errors as their message, others with their type)."""
    from auralens.scene.llm import error_line

    if isinstance(exc, AuralensError) and str(exc).strip():
        return str(exc).strip().splitlines()[0]
    return error_line(exc)


@contextlib.contextmanager
def _about(input: str | Path, what: str) -> Iterator[None]:
    """Name the input and the step in a model's one-line failure (``errors.jsonl`` and the
    CLI then say which file broke which stage)."""
    try:
        yield
    except ImagineError:
        raise
    except AuralensError as exc:
        raise ImagineError(f"{input}: {what}: {_message(exc)}") from exc


def imagine(input: str | Path, out_dir: str | Path,
            config: ImagineConfig | dict[str, Any] | None = None, *,
            stages: Stages | None = None, scene_id: str | None = None,
            keep_earlier: bool = True) -> SceneResult:
    """Run the Imagine pipeline (or the audio-LLM baseline) on one audio or video file.

    Args:
        input: audio (wav/flac/ogg/mp3; m4a/aac need ffmpeg) or video (needs ffmpeg).
        out_dir: output directory (created).
        config: :class:`ImagineConfig`, a plain dict, or None for the offline defaults.
        stages: loaded backends to reuse (batch jobs); built from ``config`` when None.
        scene_id: id recorded in the result (default: the input's stem).
        keep_earlier: False for batch items, whose folders always record the latest run
            (``results.jsonl`` and ``errors.jsonl`` say which succeeded): a run that fails
            before it starts then replaces the earlier files with its failed record too.

    Returns:
        A :class:`SceneResult`; the same facts are in ``out_dir/run.json``.

    Before ``out_dir`` is touched the stage specs are checked (:meth:`Stages.check`), a
    folder holding another command's outputs is refused (:func:`earlier_run`), the input is
    read (:func:`read_input`; an unusable input creates no folder) and the backends are
    loaded and their API servers reached (:meth:`Stages.preload`). A run that cannot start
    so leaves ``out_dir`` as it was, an earlier result included (with no earlier result, a
    backend that cannot be loaded is recorded as a failed run). Then the files of an earlier
    run are removed (:func:`clear_outputs`); when the run fails after that, ``run.json``
    says so (``status: failed`` and the error) and the exception propagates.
    """
    cfg = _as_config(config)
    out = Path(out_dir)
    check_out_dir(out, ImagineError)
    stages = stages or Stages(cfg)
    stages.check()  # a bad spec fails here, before separation, leaving out_dir as it was
    earlier = earlier_run(out)  # another command's folder is refused, leaving it as it was
    timer = Timer()
    result = SceneResult(id=scene_id or Path(input).stem, out_dir=out, mode=cfg.mode,
                         notes=cfg.notes())
    step = "input"
    try:
        with timer("0_input"):
            sound = read_input(input)  # an unusable input fails here, before out_dir is made
        step = "models"
        with timer("0_load_models"):
            stages.preload()
        step = "input"
        first = stages.separator() if cfg.mode == "pipeline" else stages.allm()
        mix = _resample(sound[0], sound[1], first.sample_rate)
        check_input_length(input, mix, first.sample_rate)
    except BaseException as exc:
        # the run did not start: out_dir stays as it was, unless it holds no result to keep
        # and a model failed (then the failure is its record), or this is a batch item
        if not keep_earlier or (step == "models" and not _holds_result(earlier)):
            out.mkdir(parents=True, exist_ok=True)
            clear_outputs(out, keep=Path(input))
            _write_failed_run(out, cfg, stages, timer, input, result, exc)
        raise
    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out, keep=Path(input))
    try:
        return _run(input, out, cfg, stages, timer, result, sound, mix)
    except BaseException as exc:
        _write_failed_run(out, cfg, stages, timer, input, result, exc)
        raise


def _write_failed_run(out: Path, cfg: ImagineConfig, stages: Stages, timer: Timer,
                      input: str | Path, result: SceneResult, exc: BaseException) -> None:
    """``run.json`` of a run that started and failed: ``status`` and the error, so the
    folder never shows the previous run's record next to this run's partial outputs."""
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    try:
        write_run_json(out, command=f"imagine --mode {cfg.mode}", config=cfg.to_dict(),
                       models=stages.models(), timings=timer.timings, seed=cfg.seed,
                       extra={"input": str(input), "status": status, "error": _message(exc),
                              "error_type": type(exc).__name__, "paths": result.paths})
    except Exception as write_exc:  # noqa: BLE001 - the run's own error is the one to report
        log.warning("%s: could not record the failed run (%s)", out, write_exc)


def _run(input: str | Path, out: Path, cfg: ImagineConfig, stages: Stages, timer: Timer,
         result: SceneResult, sound: tuple[np.ndarray, int], mix: np.ndarray) -> SceneResult:
    """The stages of :func:`imagine` (``out`` exists and holds no earlier run's files; the
    stages' backends are loaded; ``sound`` is the input's :func:`read_input` and ``mix`` that
    sound at the rate of the first stage's model, checked to be long enough)."""
    from auralens.audio import write

    skipped: dict[str, str] = {}

    # 0. input (read before the run started): video → input.wav + reference frame
    wave, sr = sound
    audio_path = Path(input)
    if audio_path.suffix.lower() in VIDEO_SUFFIXES:
        with timer("0_video"):
            audio_path = write(out / "input.wav", wave, sr, subtype="PCM_16")
            reference = _reference_frame(Path(input), out, wave.shape[-1] / sr)
        result.reference = reference
        if reference is not None:
            result.paths["reference"] = str(reference)

    description = None
    if cfg.mode == "pipeline":
        # 1. separation
        with timer("1_load_separator"):
            sep = stages.separator()
        from auralens.scene.separate.run import separate_array

        with timer("1_separate"):
            est = separate_array(sep, mix)
        result.n_estimates = int(est.shape[0])
        source_files = [write(out / "sources" / f"source{k}.wav", w, sep.sample_rate)
                        for k, w in enumerate(est)]
        result.paths["sources"] = [str(p) for p in source_files]

        # 2. activity filter
        with timer("2_activity"):
            from auralens.scene.separate.activity import filter_estimates

            act_cfg = activity_config(cfg.activity)
            decisions = filter_estimates(est, mix, act_cfg)
            kept = _keep(decisions, cfg.min_kept)
        for d in decisions:
            d["file"] = f"sources/source{d['index']}.wav"
        write_json(out / "activity.json", {"config": act_cfg, "n_estimates": len(decisions),
                                           "n_kept": len(kept), "sources": decisions})
        result.kept = kept
        result.paths["activity"] = str(out / "activity.json")

        # The sources are on disk (float WAV: reading one back gives the same samples): from
        # here on only one of them is held at a time, not all M ([M, T] float32) beside the
        # captioner's and the report's own work.
        del est

        # 3. per-source captions
        with timer("3_load_captioner"):
            captioner = stages.captioner()
        records = []
        with timer("3_caption"):
            for k in kept:
                wave_k, sr_k = _read_source(source_files[k])
                clip = _resample(wave_k, sr_k, captioner.sample_rate)
                del wave_k  # clip may be the same array; else only the resampled one is held
                with _about(input, f"captioning source {k}"):
                    cap = captioner.describe(clip)
                del clip  # released before the next source is read
                if not str(cap.text or "").strip():  # would become an empty label downstream
                    raise ImagineError(f"{input}: captioning source {k}: {captioner.name} "
                                       "gave an empty caption")
                records.append({"index": k, "file": f"sources/source{k}.wav",
                                "caption": cap.text, "label": cap.label, "score": cap.score,
                                "top": [list(t) for t in cap.top]})
        result.captions = [r["caption"] for r in records]
        result.labels = [r["label"] for r in records]
        write_json(out / "captions.json", {"captioner": captioner.name, "sources": records})
        result.paths["captions"] = str(out / "captions.json")

        # 4. compose one description
        if records:
            with timer("4_load_composer"):
                composer = stages.composer()
            with timer("4_compose"), _about(input, "composing the description"):
                description = composer.compose(result.captions, cfg.technique,
                                               labels=result.labels)
        else:
            skipped["compose"] = "no source was kept, nothing to describe"
    else:
        # 1. the audio LLM hears the whole mixture
        with timer("1_load_allm"):
            describer = stages.allm()
        with timer("1_allm_describe"), _about(input, "the audio LLM"):
            description = describer.describe(mix, cfg.technique)

    if description is not None:
        result.description, result.reasoning = description.text, description.reasoning
        write_text(out / "description.txt", description.text.strip() + "\n")
        result.paths["description"] = str(out / "description.txt")
        if description.reasoning:
            write_text(out / "reasoning.txt", description.reasoning.strip() + "\n")
            result.paths["reasoning"] = str(out / "reasoning.txt")

    # 5. image
    with timer("5_load_image"):
        generator = stages.image()
    if not getattr(generator, "available", True):
        skipped["image"] = getattr(generator, "reason", "no image model configured")
        log.info("%s", skipped["image"])
    elif not result.description.strip():
        skipped["image"] = "image stage skipped: there is no description to render"
    else:
        with timer("5_image"), _about(input, "rendering the image"):
            img = generator.generate(result.description, seed=cfg.seed)
        from auralens.io import atomic_path

        with atomic_path(out / "image.png") as tmp:
            img.save(tmp, format="PNG")
        result.image = out / "image.png"
        result.paths["image"] = str(result.image)

    result.skipped = skipped
    # 6. report + run.json
    if cfg.report:
        with timer("6_report"):
            # The input's samples are in memory already (no second read, which would hold
            # them twice); a video's input.wav is read back as written, a mono float32
            # array, so the picture shows what is played.
            drawn = sound if audio_path == Path(input) else _read_source(audio_path)
            result.paths["report"] = str(write_report(out, result, audio_path, drawn))
            del drawn
    result.timings = dict(timer.timings)
    write_run_json(out, command=f"imagine --mode {cfg.mode}", config=cfg.to_dict(),
                   models=stages.models(), timings=result.timings, seed=cfg.seed,
                   extra={"input": str(input), "status": "ok", "skipped": skipped,
                          "kept": result.kept, "n_estimates": result.n_estimates,
                          "notes": result.notes})
    return result


# --------------------------------------------------------------------------- report


def _spectrogram_png(wave: np.ndarray, sr: int, path: Path, title: str) -> Path:
    """A small log-magnitude spectrogram image of ``[T]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from auralens.evaluate.spectral import overview_mag
    from auralens.io import atomic_path

    if wave.shape[-1] < 512:  # a clip shorter than one window still gets a (short) picture
        wave = np.pad(wave, (0, 512 - wave.shape[-1]))
    mag, _ = overview_mag(wave, 512, 128)  # a long input is pooled to the picture's width
    db = 20 * np.log10(mag / 256 + 1e-6)  # / Σ window: the level scipy's stft gave
    fig, ax = plt.subplots(figsize=(5, 1.6), dpi=80)
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
              extent=(0, wave.shape[-1] / sr, 0, sr / 2000))
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_report(out: Path, result: SceneResult, audio_path: Path,
                 mix: tuple[np.ndarray, int] | None = None) -> Path:
    """``report.html``: players, spectrograms, captions, description, image (all escaped).

    Args:
        out: the run's folder.
        result: the run's result (its ``paths`` name the sources).
        audio_path: the input's audio file, played and drawn as the mixture.
        mix: ``(wave [T], sample_rate)``, the samples of ``audio_path`` already in memory (as
            :func:`auralens.audio.load_sr` gives them); None reads them from the file.
    """
    import html
    import os

    from auralens.audio import load_sr

    def rel(p: str | Path) -> str:
        # a URL: '#', '?' and '%' in a file name would cut or change the link
        from urllib.parse import quote

        return html.escape(quote(os.path.relpath(Path(p), out).replace(os.sep, "/"), safe="/"),
                           quote=True)

    esc = html.escape
    spec_dir = out / "spectrograms"
    rows = []
    wave, sr = load_sr(audio_path) if mix is None else mix
    mix_png = _spectrogram_png(wave, sr, spec_dir / "mixture.png", "mixture")
    del wave, mix  # one wave at a time: each source is read while drawing it
    rows.append(f"<tr><td>mixture</td><td><audio controls src='{rel(audio_path)}'></audio></td>"
                f"<td><img src='{rel(mix_png)}' alt='mixture spectrogram'></td><td></td></tr>")
    captions = dict(zip(result.kept, result.captions, strict=False))
    for k, src in enumerate(result.paths.get("sources", [])):
        wave, ssr = _read_source(Path(src))
        png = _spectrogram_png(wave, ssr, spec_dir / f"source{k}.png", f"source {k}")
        del wave  # not held while the next one is read
        kept = k in captions
        cap = esc(captions.get(k, "")) if kept else "<em>dropped by the activity filter</em>"
        rows.append(f"<tr class='{'kept' if kept else 'dropped'}'><td>source {k}</td>"
                    f"<td><audio controls src='{rel(src)}'></audio></td>"
                    f"<td><img src='{rel(png)}' alt='source {k} spectrogram'></td>"
                    f"<td>{cap}</td></tr>")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>auralens imagine: {esc(result.id)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td{padding:4px 8px;vertical-align:middle}tr.dropped{opacity:.5}"
        "pre{white-space:pre-wrap;background:#f5f5f5;padding:1em}</style></head><body>",
        f"<h1>Imagine: {esc(result.id)}</h1>",
        f"<p>mode <b>{esc(result.mode)}</b>; {result.n_estimates} estimates, "
        f"{len(result.kept)} kept</p>",
        "<table><tr><th></th><th>audio</th><th>spectrogram</th><th>caption</th></tr>",
        *rows, "</table>",
        "<h2>Description</h2>",
        f"<p>{esc(result.description) or '<em>no description</em>'}</p>",
    ]
    if result.reasoning:
        parts.append(f"<h2>Reasoning</h2><pre>{esc(result.reasoning)}</pre>")
    parts.append("<h2>Image</h2>")
    if result.image is not None:
        parts.append(f"<img src='{rel(result.image)}' alt='generated image' style='max-width:512px'>")
    else:
        parts.append(f"<p><em>{esc(result.skipped.get('image', 'no image'))}</em></p>")
    if result.reference is not None:
        parts.append(f"<h2>Reference frame</h2><img src='{rel(result.reference)}' "
                     "alt='reference frame' style='max-width:512px'>")
    if result.skipped:
        parts.append("<h2>Skipped stages</h2><ul>" + "".join(
            f"<li>{esc(k)}: {esc(v)}</li>" for k, v in result.skipped.items()) + "</ul>")
    parts.append("</body></html>\n")
    return write_text(out / "report.html", "\n".join(parts))


# --------------------------------------------------------------------------- batch


def _rebase(path: Path, base: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def _plain_scenes(root: Path, exclude: tuple[Path, ...]) -> list[Any]:
    """Records without references for a folder of audio files or a text list of paths (ids as
    ``separate batch`` gives them; files below ``exclude``, the output folder, left out)."""
    from auralens.scene.separate.run import batch_inputs
    from auralens.types import SceneRecord

    try:
        pairs = batch_inputs(root, exclude=exclude, command="imagine")
    except AuralensError as exc:
        raise ImagineError(str(exc)) from exc
    return [SceneRecord(rid, path, []) for rid, path in pairs]


def _manifest_scenes(path: Path) -> list[Any]:
    """The records of a scene manifest, read strictly, with relative paths resolved against
    the manifest's folder (``data mix`` writes them that way), not the working directory."""
    from auralens.types import load_scenes

    records = load_scenes(path, unique=True)
    for rec in records:
        rec.mixture = _rebase(rec.mixture, path.parent)
        for src in rec.sources:
            src.path = _rebase(src.path, path.parent)
    return records


def _in_split(records: list[Any], split: str | None, where: Path) -> list[Any]:
    """The records of ``split`` (all for None).

    Raises:
        ImagineError: ``split`` matches no record (naming ``where`` and the splits found).
    """
    if split is None:
        return records
    found = sorted({str(r.split) for r in records if r.split})
    records = [r for r in records if r.split == split]
    if not records:
        raise ImagineError(f"{where}: no mixture in split {split!r} (--split); splits found: "
                           f"{', '.join(found) or 'none'}")
    return records


def _load_scenes(root: Path, split: str | None, exclude: tuple[Path, ...] = ()) -> list[Any]:
    """FUSS-style directory, a JSONL manifest, a folder of audio files or a text list of
    audio paths → SceneRecords (the last two without reference sources).

    Relative paths in a manifest are resolved against the manifest's folder (``data mix``
    writes them that way), not the working directory.

    Raises:
        ImagineError: the dataset is missing, or ``split`` matches no mixture.
    """
    from auralens.data import DatasetError

    if root.is_file() and root.suffix != ".jsonl":
        if split is not None:
            raise ImagineError(f"{root}: --split needs a FUSS folder or manifest")
        return _plain_scenes(root, exclude)
    if root.is_file() and root.suffix == ".jsonl":
        return _in_split(_manifest_scenes(root), split, root)
    if not root.exists():
        raise ImagineError(f"{root}: dataset directory not found")
    from auralens.data.fuss import load_fuss, stray_audio

    if (root / "manifest.jsonl").is_file():
        # read here, and only here: strictly (a bad line or id names the file and line, where
        # load_fuss's DatasetError would end in the plain-folder fallback below)
        records = _manifest_scenes(root / "manifest.jsonl")
        if records:
            return _in_split(records, split, root)
        # an empty manifest: the folder's FUSS layout decides, as load_fuss does
    if split is None and not (root / "manifest.jsonl").exists() and stray_audio(root):
        # other audio beside example*.wav: a folder of recordings, not a FUSS split folder
        return _plain_scenes(root, exclude)
    try:
        records = load_fuss(root, split)
    except DatasetError:
        if split is not None:
            raise
        return _plain_scenes(root, exclude)  # not FUSS-style: every audio file below root
    if not records and split is not None:
        try:
            found = sorted({str(r.split) for r in load_fuss(root) if r.split})
        except AuralensError:
            found = []
        raise ImagineError(f"{root}: no mixture in split {split!r} (--split); splits found: "
                           f"{', '.join(found) or 'none'}")
    return records


def _legacy_settings(dest: Path, out: Path, legacy: list[dict[str, Any]]
                     ) -> dict[str, Any] | None:
    """The result settings behind results lines written before lines carried a fingerprint,
    derived from the ``config`` of the ``run.json`` beside them; None when they cannot be
    determined (no readable config, a template whose content then is unknown, a relative
    model path whose working directory is unknown, or lines that disagree with the config)."""
    try:
        config = read_json(dest / "run.json").get("config")
        if not isinstance(config, dict):
            return None
        old = ImagineConfig.from_dict(config)
        first = legacy[0]
        here = same_working_dir((first.get("paths") or {}).get("out_dir"),
                                 out / "items" / str(first.get("id")))
        settings = old.result_settings(resolve_relative=here)
    except (OSError, ValueError, TypeError, AttributeError, AuralensError):
        return None
    if "template_sha256" in settings:
        return None
    if any(ln.get("mode", old.mode) != old.mode or ln.get("technique", old.technique)
           != old.technique for ln in legacy):
        return None
    return settings


def _check_resume(results_path: Path, lines: list[dict[str, Any]], key: str,
                  settings: dict[str, Any], out: Path | None = None, *, restamp: bool = True) -> None:
    """Refuse to add to ``results.jsonl`` when its lines were made with other settings.

    Lines written before lines carried a fingerprint are checked against the settings in the
    ``run.json`` beside them (see :func:`_legacy_settings`); when those give ``key`` the
    lines get the fingerprint (the file is rewritten atomically, unless ``restamp`` is false:
    another run's file, only checked).

    Raises:
        ImagineError: a line has another settings fingerprint, or none and the settings it
            was made with differ or cannot be determined.
    """
    dest = results_path.parent
    out = dest if out is None else out

    def refuse(what: str) -> NoReturn:
        raise ImagineError(f"{dest}: results.jsonl holds results made {what}; use another "
                           f"--out, or delete {results_path} to start over")

    def different(old: Any) -> str:
        diff = changed_keys(old, settings)
        return "with different settings" + (f" ({', '.join(diff)})" if diff else "")

    legacy = check_fingerprints(lines, key, settings, refuse=refuse, different=different,
                                legacy_settings=lambda rows: _legacy_settings(dest, out, rows))
    if not legacy or not restamp:
        return
    write_jsonl(results_path, lines)
    log.info("%s: %d results lines from an older version match these settings; "
             "fingerprint added", results_path, len(legacy))


def imagine_batch(data: str | Path, out_dir: str | Path,
                  config: ImagineConfig | dict[str, Any] | None = None, *,
                  split: str | None = None, limit: int | None = None,
                  shard: str | tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Imagine every mixture of a FUSS-style dataset (or a JSONL manifest of SceneRecords).

    Writes ``out_dir/items/<id>/…`` per mixture, one line per finished mixture in
    ``results.jsonl`` (resumable: finished ids are skipped on the next run), per-item
    failures in ``errors.jsonl`` and ``run.json``. Every line carries the fingerprint of
    :meth:`ImagineConfig.result_settings` (resolved, so equivalent spellings match); a rerun
    with other settings into the same ``out_dir`` is refused rather than mixing results of two
    settings. Lines of a version without fingerprints are checked against the ``config`` of
    the ``run.json`` beside them (and get the fingerprint when it matches).

    With ``shard="i/n"`` (or ``"env"`` in a SLURM array) only every n-th mixture in id order
    is processed; items still go to ``out_dir/items/<id>`` but ``results.jsonl``,
    ``errors.jsonl`` and ``run.json`` go to ``out_dir/shards/part-i-of-n/``, so n jobs can
    share one ``out_dir``; ``auralens data merge out_dir/shards/* --out
    out_dir/results.jsonl`` joins them. Since items are shared, any run recorded in
    ``out_dir`` (unsharded or another shard) made with other settings is refused too.

    ``run.json`` and the closing ``N of M items failed`` warning count over every item of the
    job, those an earlier (interrupted) run finished included: ``n_items``, ``n_done`` (items
    with a result), ``n_failed`` (items that failed, each tried again by this run), and of
    this run ``n_tried`` and ``n_new`` (``n_earlier`` = ``n_done`` − ``n_new``).

    Returns:
        All result lines (previous runs' included).

    Raises:
        ImagineError: bad data or split, ``out_dir`` made with other settings, or (in
            ``allm`` mode) an audio LLM that cannot be loaded — all before any item runs;
            items were left to do and not one item of the job has a result (earlier runs'
            included).
        AuralensError: a bad stage spec (:meth:`Stages.check`), before the data is read.
    """
    from auralens.progress import progress
    from auralens.scene.separate.run import recorded_results
    from auralens.shard import parse_shard, shard_dir, shard_items
    from auralens.types import check_record_ids

    cfg = _as_config(config)
    settings = cfg.result_settings()
    key = fingerprint(settings)
    parsed = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    out = Path(out_dir)
    dest = shard_dir(out, parsed)
    check_out_dir(out, ImagineError)
    check_out_dir(dest, ImagineError)
    results_path = dest / "results.jsonl"
    _check_resume(results_path, read_jsonl(results_path), key, settings, out)
    # Item folders are shared by the unsharded run and every shard: a run recorded in out with
    # other settings would have its items overwritten under its results.
    for path in recorded_results(out):
        if path != results_path:
            _check_resume(path, read_jsonl(path), key, settings, out, restamp=False)
    stages = Stages(cfg)
    stages.check()  # bad specs fail before the data is read or a model is loaded
    timer = Timer()
    with timer("load_data"):
        records = _load_scenes(Path(data), split, exclude=(out.resolve(),))
    try:  # ids name folders below out/items: text, inside it, one item each
        check_record_ids(records, str(data))
    except ValueError as exc:
        raise ImagineError(str(exc)) from None
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    if limit is not None:
        records = records[: int(limit)]
    records = shard_items(records, parsed)
    done = {r.get("id") for r in read_jsonl(results_path)}
    todo = [r for r in records if r.id not in done]
    errors = ErrorLog(dest / "errors.jsonl", reset=True)
    with timer("load_models"):
        if todo:
            stages.preload()
    start = time.perf_counter()
    for rec in progress(todo, desc="imagine", total=len(todo)):
        with errors.guard(rec.id, rec.mixture):
            res = imagine(rec.mixture, out / "items" / rec.id, cfg, stages=stages,
                          scene_id=rec.id, keep_earlier=False)
            append_jsonl(results_path, {
                "id": rec.id, "fingerprint": key, "settings": settings,
                "mode": cfg.mode, "technique": cfg.technique,
                # a plain audio file has no references: its source count is unknown
                "n_sources": rec.n_sources if rec.sources else None, "true_labels": rec.labels,
                "n_estimates": res.n_estimates, "kept": len(res.kept),
                "kept_indices": res.kept, "labels": res.labels, "captions": res.captions,
                "description": res.description, "reasoning": res.reasoning,
                "paths": {"mixture": str(rec.mixture), "out_dir": str(res.out_dir),
                          **res.paths},
                "timings": {k: round(v, 4) for k, v in res.timings.items()},
                "skipped": res.skipped})
    timer.timings["items"] = time.perf_counter() - start
    lines = read_jsonl(results_path)
    # counts over the whole job (this shard's items), earlier runs' finished items included
    counts = batch_counts(errors, (r.id for r in records), lines, len(todo))
    write_run_json(dest, command=f"imagine batch --mode {cfg.mode}", config=cfg.to_dict(),
                   models=stages.models(), timings=timer.timings, seed=cfg.seed,
                   extra={"data": str(data), **counts,
                          "shard": None if parsed is None else f"{parsed[0]}/{parsed[1]}",
                          "skipped": stages.skipped, "notes": cfg.notes(), "fingerprint": key})
    if todo and not counts["n_done"]:  # every item of the job failed; a rerun that only retries broken ones is fine
        raise ImagineError(f"{data}: no mixture could be imagined; see {errors.path}")
    return lines
