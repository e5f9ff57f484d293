"""Helpers for tests that start processes: free local ports and a two-CPU-process launch env."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accelerate_env(cache: Path) -> dict[str, str]:
    """Environment for ``accelerate launch`` of CPU processes: offline, one thread each."""
    env = dict(os.environ)
    env.update(AURALENS_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               AURALENS_NO_PROGRESS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONHASHSEED="0", ACCELERATE_DISABLE_RICH="1", ACCELERATE_USE_CPU="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env
