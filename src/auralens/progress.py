"""Progress bars and logging setup shared by the CLI and batch jobs."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None,
             disable: bool | None = None) -> Iterator[T]:
    """Wrap an iterable in a tqdm bar on stderr (quiet when AURALENS_NO_PROGRESS is set)."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = bool(os.environ.get("AURALENS_NO_PROGRESS"))
    yield from tqdm(items, desc=desc, total=total, disable=disable, file=sys.stderr,
                    dynamic_ncols=True, leave=False)


def quiet_diffusers_if_asked() -> None:
    """Turn diffusers' own loading bars off under AURALENS_NO_PROGRESS (diffusers, unlike
    transformers, does not follow HF_HUB_DISABLE_PROGRESS_BARS). Call before loading."""
    if os.environ.get("AURALENS_NO_PROGRESS"):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()


def setup_logging(verbose: int = 0) -> None:
    """Configure the root logger once: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
