"""The Rate tab's handlers: a 1–5 visual and 1–5 audio mark per sonification → CSV."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from auralens.errors import AuralensError
from auralens.evaluate import ratings as ratings_mod
from auralens.ui_app.core import (
    RunInfo,
    UIError,
    UISettings,
    md_escape,
    resolve_choice,
    resolve_run,
    stale_renders,
)

log = logging.getLogger(__name__)

MAX_TEXT = 500
#: First characters that make a spreadsheet read a CSV cell as a formula (CSV injection).
FORMULA_PREFIXES = ratings_mod.FORMULA_PREFIXES


def rating_choices(info: RunInfo) -> list[str]:
    """What can be rated for a run: each post-processing variant, and the codec ceiling."""
    return [*info.posts, *(["ceiling"] if info.has_ceiling else [])]


def _mark(value: Any, what: str) -> int:
    if isinstance(value, bool):  # float(True) is 1.0: a checkbox value is no mark
        raise UIError(f"{what} rating must be a number from 1 to 5")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UIError(f"{what} rating must be a number from 1 to 5") from None
    if not v.is_integer() or not 1 <= v <= 5:
        raise UIError(f"{what} rating must be a whole number from 1 to 5, got {value}")
    return int(v)


def _clean_text(text: str | None, what: str) -> str:
    """Browser text made safe for one CSV cell: one line, and never read as a formula.

    A value starting with one of :data:`FORMULA_PREFIXES` gets a leading ``'`` so that
    Excel and LibreOffice show it as text instead of evaluating it
    (:func:`auralens.evaluate.ratings.safe_cell`, which every stored rating goes through).
    """
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise UIError(f"{what} is longer than {MAX_TEXT} characters")
    # one CSV cell, one line, no control characters (NUL, escape sequences), runs of
    # spaces collapsed
    return " ".join(ratings_mod.safe_cell(text).split())


def save(key: str | None, clip: str | None, post: str | None, visual: Any, audio: Any,
         rater: str | None, comment: str | None, settings: UISettings,
         runs: dict[str, RunInfo]) -> str:
    """Validate one rating form and append it to the ratings CSV.

    An unnamed rater gets an id of their own (``anonymous-<8 hex>``) per rating: aggregates
    keep each rater's latest rating of a clip, so one shared name would let different
    people replace each other's marks. A named rater's new rating replaces their earlier one.
    The rating names the render it rates (:func:`auralens.evaluate.ratings.render_id`), so
    ratings of the run's earlier renders are never averaged with it.

    Returns:
        A markdown confirmation line.

    Raises:
        UIError: unknown run/clip/post, marks outside 1–5, over-long text, ratings missing,
            a render that is missing or does not load, or renders made with an earlier
            checkpoint than the run's.
    """
    info = resolve_run(key, runs)
    clip = resolve_choice(clip, info.clips, "clip")
    post = resolve_choice(post, rating_choices(info), "post-processing")
    v, a = _mark(visual, "visual"), _mark(audio, "audio")
    rater = _clean_text(rater, "rater name") or f"anonymous-{uuid.uuid4().hex[:8]}"
    comment = _clean_text(comment, "comment")
    render = info.path / "renders" / post / f"{clip}.wav"
    if not render.is_file():  # deleted since the run list was read
        raise UIError(f"not saved: run {info.key} has no {post} render of {clip}")
    from auralens.ui_app.sonify import load_render

    try:  # a rating of a render nobody could play says nothing
        load_render(render, settings)
    except UIError as exc:
        raise UIError(f"not saved: {exc}") from exc
    stale = stale_renders(info.path)
    if stale:  # a rating is recorded against the run, not the model that made these renders
        raise UIError(f"not saved: run {info.key}: {stale}")
    try:
        ratings_mod.save_rating(settings.ratings_path, rater=rater, run=info.key,
                                version=f"{info.key}/{post}", clip=clip, visual=v, audio=a,
                                comment=comment, render=ratings_mod.render_id(info.path / "renders"))
    except AuralensError as exc:
        raise UIError(f"could not save the rating: {exc}") from exc
    return (f"saved: {md_escape(info.key)} · {md_escape(clip)} · {md_escape(post)} — "
            f"visual {v}, audio {a}")


def aggregate_md(settings: UISettings) -> str:
    """The mean marks per rated version as a markdown table (a message when none); a line
    below it names the ratings of earlier renders that are left out."""
    path = settings.ratings_path
    assert path is not None
    if not path.is_file():
        return f"_no ratings yet (they will be saved to {md_escape(path.name)})_"
    try:
        # the left-out ratings are named on the page, once, not logged at every page load
        kept, left = ratings_mod.latest_renders(ratings_mod.load_ratings(path))
        rows = ratings_mod.aggregate_ratings(kept, by=("version",))
    except AuralensError as exc:  # a damaged CSV is a message, not a crash
        return f"could not read the ratings: {md_escape(exc)}"
    except OSError as exc:  # e.g. no permission to read it
        return f"could not read the ratings: {md_escape(path.name)}: {md_escape(exc.strerror or exc)}"
    return ratings_mod.ratings_markdown(rows) + (f"\n_{md_escape(ratings_mod.left_out_note(left))}_\n" if left else "")
