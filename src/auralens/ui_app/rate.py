"""The Rate tab's handlers: a 1–5 visual and 1–5 audio mark per sonification → CSV."""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from auralens.errors import AuralensError
from auralens.ui_app.core import (
    RunInfo,
    UIError,
    UISettings,
    md_escape,
    md_table,
    resolve_choice,
    resolve_run,
)

log = logging.getLogger(__name__)

MAX_TEXT = 500


def _ratings_module() -> Any:
    try:
        return importlib.import_module("auralens.evaluate.ratings")
    except ImportError as exc:
        raise UIError(f"ratings are not available: {exc}") from exc


def _mark(value: Any, what: str) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UIError(f"{what} rating must be a number from 1 to 5") from None
    if not v.is_integer() or not 1 <= v <= 5:
        raise UIError(f"{what} rating must be a whole number from 1 to 5, got {value}")
    return int(v)


def _clean_text(text: str | None, what: str) -> str:
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise UIError(f"{what} is longer than {MAX_TEXT} characters")
    # one CSV cell, one line
    return " ".join(text.split())


def _call(fn: Any, values: dict[str, Any]) -> Any:
    """Call ``fn`` with the subset of ``values`` its signature accepts (by name)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**values)
    return fn(**{k: v for k, v in values.items() if k in params})


def save(key: str | None, clip: str | None, post: str | None, visual: Any, audio: Any,
         rater: str | None, comment: str | None, settings: UISettings,
         runs: dict[str, RunInfo]) -> str:
    """Validate one rating form and append it to the ratings CSV.

    Returns:
        A markdown confirmation line.

    Raises:
        UIError: unknown run/clip/post, marks outside 1–5, over-long text, ratings missing.
    """
    info = resolve_run(key, runs)
    clip = resolve_choice(clip, info.clips, "clip")
    post = resolve_choice(post, info.posts, "post-processing")
    v, a = _mark(visual, "visual"), _mark(audio, "audio")
    rater = _clean_text(rater, "rater name") or "anonymous"
    comment = _clean_text(comment, "comment")
    mod = _ratings_module()
    values = {
        "path": settings.ratings_path, "csv_path": settings.ratings_path,
        "ratings_path": settings.ratings_path, "out": settings.ratings_path,
        "run": info.key, "run_id": info.key, "run_dir": info.path, "clip": clip,
        "clip_id": clip, "post": post, "visual": v, "audio": a, "rater": rater,
        "comment": comment, "encoder": info.encoder, "layer": info.layer,
        "codec": info.codec, "gate": info.gate,
    }
    try:
        _call(mod.save_rating, values)
    except AuralensError as exc:
        raise UIError(f"could not save the rating: {exc}") from exc
    return (f"saved: {md_escape(info.key)} · {md_escape(clip)} · {md_escape(post)} — "
            f"visual {v}, audio {a}")


def aggregate_md(settings: UISettings) -> str:
    """The aggregated means as a markdown table (a message when nothing is rated)."""
    path = settings.ratings_path
    assert path is not None
    if not path.is_file():
        return f"_no ratings yet (they will be saved to {md_escape(path.name)})_"
    try:
        mod = _ratings_module()
        agg = _call(mod.aggregate_ratings, {"path": path, "csv_path": path,
                                            "ratings_path": path})
    except UIError as exc:
        return md_escape(str(exc))
    except Exception as exc:  # noqa: BLE001 - a bad CSV is a message, not a crash
        return f"could not read the ratings: {md_escape(exc)}"
    return _table(agg)


def _table(agg: Any) -> str:
    """Render whatever ``aggregate_ratings`` returned (rows of dicts, a dict, a frame)."""
    if hasattr(agg, "to_dict") and hasattr(agg, "columns"):  # a pandas frame
        agg = agg.reset_index().to_dict(orient="records")
    if isinstance(agg, dict):
        if all(isinstance(v, dict) for v in agg.values()):
            agg = [{"group": k, **v} for k, v in agg.items()]
        else:
            agg = [agg]
    rows = [r if isinstance(r, dict) else getattr(r, "__dict__", {"value": r}) for r in agg or []]
    if not rows:
        return "_no ratings yet_"
    headers = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    return md_table(headers, [[fmt(r.get(h, "")) for h in headers] for r in rows])
