"""Shared helpers for training loops that run alone or under ``accelerate launch``.

The trainers (gates, separator, classifier) create their ``Accelerator`` here, so a process
launched as one of several never silently trains alone into a shared run directory, and they
add per-process scalars (loss sums, counts) with :func:`sum_across`.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch

from auralens.errors import AuralensError


def make_accelerator(error: type[Exception] = AuralensError, **kwargs: Any) -> Any:
    """An ``Accelerator`` for this process (one process, or those of ``accelerate launch``).

    Args:
        error: exception type raised when the launcher started more processes than
            accelerate set up (e.g. several CPU processes without ``ACCELERATE_USE_CPU=1``).
        kwargs: passed to ``Accelerator`` (e.g. ``device_placement=False``).
    """
    from accelerate import Accelerator

    acc = Accelerator(**kwargs)
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > acc.num_processes:
        # Without this every launched process would train alone into the same run directory.
        raise error(f"launched as {launched} processes but accelerate set up {acc.num_processes}; "
                    "on machines without GPUs set ACCELERATE_USE_CPU=1 (see docs/scaling.md)")
    if acc.num_processes > 1:
        # One process may train several runs (a sweep) on the same group, so it is torn down
        # at exit, not after each run: a group left to interpreter teardown can abort a rank
        # ("terminate called without an active exception") after its work is done.
        atexit.unregister(_destroy_process_group)
        atexit.register(_destroy_process_group)
    return acc


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def sum_across(acc: Any, *values: float, device: torch.device | None = None) -> list[float]:
    """Add scalars over all processes (identity in a single process or without ``acc``)."""
    if acc is None or acc.num_processes == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device or acc.device)
    return [float(v) for v in acc.reduce(t, reduction="sum").tolist()]
