"""The offline demo: the whole toolkit end to end with offline defaults, nothing downloaded.

Steps (each with a progress bar and a log line):

1. **Data** — the procedural sound library (``auralens data synth``) or ``--data`` (any
   ESC-50-layout folder, e.g. ``../shared/data/esc10``).
2. **Sonify** — a layer sweep over the committed offline classifier (AST architecture): one
   ``lin`` gate per layer mapping its hidden states into the weight-free ``mel`` codec latent,
   trained on the train split, rendered on held-out test clips.
3. **Evaluate** — the listening report: every sonification beside the codec ceiling, FAD / KAD
   on a weight-free log-mel embedder, spectral metrics, waveform and spectrogram figures.
4. **Imagine** — FUSS-recipe mixtures built from the same data, separated by the committed
   TDCN++ checkpoint, captioned by the classifier, composed into a scene description by the
   template composer. No image model is available offline, so no image is made (and none is
   faked).
5. ``DIR/index.html`` links everything.
"""

from __future__ import annotations

import html
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auralens.config import changed_keys
from auralens.errors import AuralensError
from auralens.io import (
    Timer,
    check_out_dir,
    read_jsonl,
    read_recorded_settings,
    to_jsonable,
    write_json,
    write_run_json,
    write_text,
)

log = logging.getLogger(__name__)


@dataclass
class DemoPlan:
    """Sizes of one demo run (``quick`` shrinks everything for tests)."""

    clips_per_class: int = 10
    layers: tuple[str, ...] = ("patch", "2", "4")
    gate: str = "lin"
    epochs: int = 30
    #: Higher than the study's 1e-3: on the small demo set the log-mel latent is fitted far
    #: better in 30 epochs (measured: best val loss 5.0 at 1e-2 vs 16.9 at 1e-3, layer 4).
    lr: float = 1e-2
    render_limit: int = 6
    mixtures: int = 8
    #: Sonify uses only the first ``data_limit`` clips of ``--data`` (by id, so a rerun uses the
    #: same ones); None: all. The procedural library is sized by ``clips_per_class`` instead.
    data_limit: int | None = None

    @classmethod
    def quick(cls) -> DemoPlan:
        # 30 clips of --data: about the size of the quick library (3 clips of each class)
        return cls(clips_per_class=3, layers=("patch", "2"), epochs=6, render_limit=2,
                   mixtures=3, data_limit=30)


PRESETS = Path(__file__).resolve().parent / "presets"


#: The committed classifiers the demo chooses from, in order of preference.
CLASSIFIERS = ("classifier", "classifier-synth")


def classifier_labels(model: Path) -> set[str]:
    """The class names of a classifier folder (``config.json`` ``id2label``; empty when it
    cannot be read)."""
    import json

    try:
        labels = json.loads((Path(model) / "config.json").read_text(encoding="utf-8")).get("id2label")
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(v) for v in labels.values()} if isinstance(labels, dict) else set()


def data_classes(data: Path) -> list[str]:
    """The class names of the clips of ``data`` (sorted).

    Raises:
        DemoError: ``data`` holds no clip.
        auralens.data.DatasetError: ``data`` is missing or not a dataset.
    """
    from auralens.data import load_dataset

    clips = load_dataset(Path(data))
    if not clips:
        raise DemoError(f"{data}: no audio clips to use (--data)")
    return sorted({str(label) for clip in clips for label in clip.labels})


def choose_classifier(classes: list[str] | None) -> tuple[Path, list[str]]:
    """The committed classifier whose labels cover ``classes``, and the classes it does not know.

    ``classes`` None means the procedural library (``classifier-synth`` was trained on it,
    ``classifier`` on ESC-10). Of several covering classifiers the first of
    :data:`CLASSIFIERS` wins; when none covers them, the one that knows most of them is taken
    and the classes it does not know are returned (its captions name only its own classes).
    """
    synth = PRESETS / "classifier-synth"
    if classes is None:
        return (synth if (synth / "config.json").exists() else PRESETS / "classifier"), []
    found = [PRESETS / name for name in CLASSIFIERS if (PRESETS / name / "config.json").exists()]
    if not found:
        return PRESETS / "classifier", []
    unknown = {model: sorted(set(classes) - classifier_labels(model)) for model in found}
    best = min(found, key=lambda model: len(unknown[model]))  # min keeps the first of equals
    return best, unknown[best]


def classifier_for(data: Path | None) -> Path:
    """The committed classifier that knows the data's classes (:func:`choose_classifier`).

    Explaining (and captioning with) a model that never saw the classes would say little.
    """
    return choose_classifier(None if data is None else data_classes(data))[0]


class DemoError(AuralensError):
    """A demo output folder that cannot be used for this run (message names the folder)."""


#: The settings a demo folder was made with, written before step 1 (resume guard).
CONFIG_NAME = "demo_config.json"


def demo_settings(data: Path | None, *, quick: bool, seed: int, plan: DemoPlan) -> dict[str, Any]:
    """What shapes a demo's outputs: seed, data (None: the procedural library), quick, plan."""
    return to_jsonable({"seed": seed, "data": None if data is None else str(Path(data).resolve()),
                        "quick": quick, "plan": plan.__dict__})


def _recorded(out: Path) -> dict[str, Any] | None:
    """The settings of the demo in ``out``: its config, or (older versions) its ``run.json``."""
    def refuse(message: str) -> None:  # cannot tell which demo is there: never mix into it
        raise DemoError(message)

    old, run = read_recorded_settings(out, CONFIG_NAME, "demo", refuse)
    if run is None:
        return old
    cfg = run["config"]
    data = cfg.get("data")
    if isinstance(data, str) and (data == str(out / "library")
                                  or Path(data).resolve() == (out / "library").resolve()):
        data = None  # that run built the procedural library itself
    elif isinstance(data, str):
        data = str(Path(data).resolve())
    return {"seed": run.get("seed"), "data": data, "quick": cfg.get("quick"), "plan": cfg.get("plan")}


def _show(key: str, value: Any) -> str:
    if key == "data":
        return "the procedural library" if value is None else str(value)
    return str(value)


def check_demo_dir(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to run into a demo folder made with other settings (before anything is written).

    Every step resumes from what is in ``out``; a folder of another seed or dataset would
    otherwise be rewritten step by step until one refuses, leaving a mix of both runs.

    Raises:
        DemoError: ``out`` is a file, holds another command's output or files a demo does
            not write, or holds a demo whose seed, data, quick or plan differ.
    """
    check_out_dir(out, DemoError, "; choose another --out")
    check_demo_owner(out)
    old = _recorded(out) if out.is_dir() else None
    if old is None:
        return
    library = old.get("data") is None or settings.get("data") is None
    diff = changed_keys(_comparable(old, library), _comparable(settings, library))
    if "quick" in diff and "plan" in diff:
        diff.remove("plan")  # the sizes follow from --quick
    if diff:
        order = list(settings)
        what = "; ".join(f"{k} {_show(k, old.get(k))} → {_show(k, settings[k])}" if k != "plan" else "plan sizes"
                         for k in sorted(diff, key=order.index))
        raise DemoError(f"{out}: holds a demo made with other settings ({what}); choose another --out, "
                        f"or remove {out} to run the demo there again")


def _comparable(settings: dict[str, Any], library: bool) -> dict[str, Any]:
    """``settings`` as a rerun compares them: ``data_limit`` shapes only a demo on ``--data``
    (the procedural library is sized by ``clips_per_class``), so it is left out when either
    demo is on the library (``library``; another data is named as such)."""
    plan = settings.get("plan")
    if not library or not isinstance(plan, dict):
        return settings
    return {**settings, "plan": {k: v for k, v in plan.items() if k != "data_limit"}}


#: What a demo writes at the top of its folder (each subfolder is its step's command's output,
#: which that command checks).
_DEMO_ENTRIES = frozenset({"run.json", CONFIG_NAME, "index.html", "library", "sonify", "mixtures",
                           "imagine"})


def check_demo_owner(out: Path) -> None:
    """Refuse an existing ``out`` that holds another command's output (its ``run.json`` names
    another command) or files a demo does not write; a demo's own folder is resumed.

    Raises:
        DemoError: naming the folder and the command or the first foreign file.
    """
    from auralens.data.folder import check_out_owner

    # each step's own command checks inside its subfolder
    check_out_owner(out, "demo", lambda rel: rel.parts[0] in _DEMO_ENTRIES, DemoError, scan_own=True)


def _say(step: str) -> None:
    """Progress line on stderr (visible without -v)."""
    import sys

    print(f"[auralens demo] {step}", file=sys.stderr, flush=True)


def run_demo(out: Path, *, data: Path | None = None, quick: bool = False, seed: int = 42,
             plan: DemoPlan | None = None) -> Path:
    """Run the offline demo into ``out`` and return ``out/index.html``.

    Args:
        out: output directory (re-running with the same settings resumes: finished steps are
            reused; other settings are refused before anything is written).
        data: ESC-50-layout dataset; None builds the procedural library.
        quick: a reduced run (for tests).
        seed: seed for data, splits, mixtures and training.
        plan: explicit sizes (overrides ``quick``).

    Raises:
        DemoError: ``out`` holds a demo made with other settings, or ``data`` has no clips.
        auralens.data.DatasetError: ``data`` is missing or not a dataset.
    """
    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize
    from auralens.evaluate.report import build_report
    from auralens.scene.pipeline import ImagineConfig, imagine_batch
    from auralens.sonify.sweep import sweep
    from auralens.sonify.train import TrainConfig

    plan = plan or (DemoPlan.quick() if quick else DemoPlan())
    out = Path(out)
    settings = demo_settings(data, quick=quick, seed=seed, plan=plan)
    check_demo_dir(out, settings)  # before step 1 rewrites anything of an earlier demo
    classes: list[str] | None = None
    if data is not None:
        # before the settings are recorded: a demo that cannot start must not claim the folder
        classes = data_classes(Path(data))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_NAME, settings)
    timer = Timer()
    start = time.perf_counter()

    classifier, unknown = choose_classifier(classes)
    if unknown:
        log.warning("%s: no committed classifier knows all the data's classes; %s does not know "
                    "%s, so its captions name only its own classes", data, classifier.name,
                    ", ".join(unknown))
    built_library = data is None
    data_limit = None if built_library else plan.data_limit
    extractor, codec = f"classifier:{classifier}", "mel"
    imagine_cfg = {"captioner": f"classifier:{classifier}"}
    imagine_settings = ImagineConfig.from_dict(imagine_cfg).result_settings()
    models = {"extractor": extractor, "codec": codec,
              **{k: imagine_settings[k] for k in ("separator", "captioner", "composer", "image")}}
    with timer("data"):
        if data is None:
            _say(f"1/5 building the procedural sound library ({plan.clips_per_class} clips per class)")
            data = synthesize(out / "library", clips_per_class=plan.clips_per_class, seed=seed)
        else:
            data = Path(data)
            _say(f"1/5 using the dataset at {data}"
                 + (f" (sonify: its first {data_limit} clips)" if data_limit else ""))

    with timer("sonify"):
        _say(f"2/5 sonify: one '{plan.gate}' gate per classifier layer ({', '.join(plan.layers)}) "
             f"into the mel codec, {plan.epochs} epochs each (lr {plan.lr:g})")
        cfg = TrainConfig(gate=plan.gate, epochs=plan.epochs, lr=plan.lr, seed=seed,
                          tensorboard=False)
        rows = sweep(data, extractor, list(plan.layers), codec, plan.gate,
                     out / "sonify",
                     cfg=cfg, seed=seed, post=("minmax",), render_limit=plan.render_limit,
                     limit=data_limit,
                     other_data_hint="a demo folder stays tied to the library it was made from "
                                     "(moved or copied, it cannot be resumed); run the demo into "
                                     "a new --out")

    with timer("report"):
        _say("3/5 evaluating sonifications against the codec ceiling (listening report)")
        runs = [out / "sonify" / r["run"] for r in rows if r.get("status") == "ok"]
        report = build_report(runs, out / "sonify" / "report", embedder="logmel") if runs else None

    with timer("mix"):
        _say(f"4/5 imagine: building {plan.mixtures} FUSS-recipe mixtures and describing them")
        build_mixtures(data, out / "mixtures", n=plan.mixtures, seed=seed)
    with timer("imagine"):
        results = imagine_batch(out / "mixtures", out / "imagine", imagine_cfg)

    _say("5/5 writing the index page")
    index = _write_index(out, rows, report, results, data, built_library=built_library,
                         classifier=classifier, models=models, gate=plan.gate,
                         imagine_cfg=imagine_cfg, unknown_classes=unknown)
    write_run_json(out, command="demo",
                   config={"data": str(data), "quick": quick, "plan": plan.__dict__,
                           "data_limit": data_limit},
                   models=models,
                   timings={**timer.timings, "total": time.perf_counter() - start}, seed=seed,
                   extra={"classifier": {"name": classifier.name, "unknown_classes": unknown}})
    _say(f"done in {time.perf_counter() - start:.0f} s: open {index}")
    return index


def _rel(path: Path | str, base: Path) -> str:
    """``path`` relative to the folder ``base`` (a link that resolves from a page in ``base``)."""
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def _backends(models: dict[str, str], gate: str, classifier: Path,
              unknown_classes: list[str] | None = None) -> str:
    """The index's account of the models the demo ran, with why its classifier was chosen."""
    from auralens.evaluate.report import shown_spec

    def code(value: str) -> str:  # the package's presets by name, not this machine's folders
        return f"<code>{html.escape(shown_spec(value))}</code>"

    why = ""
    if classifier == PRESETS / "classifier-synth":
        why = ("<p>The classifier is the committed <code>classifier-synth</code>, trained on the "
               "procedural library's classes. The default <code>classifier</code> of "
               "<code>auralens imagine</code> and <code>auralens sonify</code> is the one trained "
               "on ESC-10, whose classes are mostly not the library's: its captions of these "
               "mixtures differ.</p>")
    if unknown_classes:
        why += (f"<p><b>Warning:</b> no committed classifier knows all the data's classes; "
                f"{code(str(classifier))} does not know {html.escape(', '.join(unknown_classes))}, "
                "so its captions name only its own classes.</p>")
    return (f"<ul><li>Sonify: extractor {code(models['extractor'])}, codec {code(models['codec'])}, "
            f"gate {code(gate)}</li>"
            f"<li>Imagine: separator {code(models['separator'])}, captioner "
            f"{code(models['captioner'])}, composer {code(models['composer'])}, image "
            f"{code(models['image'])}</li></ul>{why}")


def _rerun_command(out: Path, results: list[dict[str, Any]], imagine_cfg: dict[str, str]) -> str:
    """The index's command that describes one of the demo's mixtures again, as the demo did."""
    for r in results:
        mixture = out / "mixtures" / f"{r.get('id')}.wav"
        if mixture.is_file():
            flags = " ".join(f"--{key} {shlex.quote(value)}" for key, value in imagine_cfg.items())
            command = (f"auralens imagine run {shlex.quote(str(mixture.resolve()))} "
                       f"--out {shlex.quote('imagine-' + mixture.stem)} {flags}")
            return (f"<p>To describe {html.escape(str(r.get('id')))} again with the same "
                    f"models (the result is written to imagine-{html.escape(mixture.stem)} in the "
                    f"current folder):</p><pre>{html.escape(command)}</pre>")
    return ""


def _write_index(out: Path, rows: list[dict[str, Any]], report: Path | None,
                 results: list[dict[str, Any]], data: Path, *, built_library: bool,
                 classifier: Path, models: dict[str, str], gate: str,
                 imagine_cfg: dict[str, str], unknown_classes: list[str] | None = None) -> Path:
    esc = html.escape
    layer_rows = "".join(
        f"<tr><td>{esc(str(r.get('layer')))}</td><td>{esc(str(r.get('status')))}</td>"
        f"<td>{_fmt(r.get('first_val_loss'))}</td><td>{_fmt(r.get('best_val_loss'))}</td></tr>"
        for r in rows)
    report_link = (f"<p><a href='{esc(_rel(report, out))}'>Open the listening report</a></p>"
                   if report else "<p>No sonify run finished; see sonify/summary.md.</p>")
    errors = read_jsonl(out / "imagine" / "errors.jsonl")
    scene_items = []
    for r in results:
        item_dir = out / "imagine" / "items" / str(r.get("id"))
        page = item_dir / "report.html"
        labels = ", ".join(str(x) for x in (r.get("true_labels") or []))
        link = f"<a href='{esc(_rel(page, out))}'>report</a>" if page.exists() else ""
        scene_items.append(
            f"<li><b>{esc(str(r.get('id')))}</b> — true sources: {esc(labels)}; "
            f"kept {esc(str(r.get('kept', '')))} of {esc(str(r.get('n_estimates', '')))} estimates — "
            f"<i>{esc(str(r.get('description', ''))[:400])}</i> {link}</li>")
    err_html = (f"<p>{len(errors)} mixtures failed; see imagine/errors.jsonl.</p>" if errors else "")
    data_note = " (the procedural sound library this demo built)" if built_library else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>auralens demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head>
<body><h1>auralens demo</h1>
<p>Data: {esc(str(Path(data).resolve()))}{data_note}.</p>
<p>Everything below ran offline, with these models:</p>
{_backends(models, gate, classifier, unknown_classes)}
<h2>Sonify: what each classifier layer keeps</h2>
<table><tr><th>layer</th><th>status</th><th>first val loss</th><th>best val loss</th></tr>
{layer_rows}</table>
{report_link}
<h2>Imagine: sound scenes described</h2>
<p>No text-to-image model is available offline, so no images were generated.</p>
<ul>{''.join(scene_items)}</ul>{err_html}
{_rerun_command(out, results, imagine_cfg)}
</body></html>
"""
    return write_text(out / "index.html", page)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else ""
