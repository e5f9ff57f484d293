"""Helpers for tests that start processes: free local ports and a two-CPU-process launch env."""

from __future__ import annotations

import os
import socket
import sys
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


#: The ``accelerate`` launcher installed beside this interpreter.
ACCELERATE = Path(sys.executable).with_name("accelerate")


def accelerate_two_cpu(*target: str) -> list[str]:
    """``accelerate launch TARGET…`` as two processes on one machine (a script and its args)."""
    return [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(free_port()), *target]


def cli_two_cpu(*args: str) -> list[str]:
    """``auralens ARGS…`` launched as two processes (see :func:`accelerate_two_cpu`)."""
    return accelerate_two_cpu("-m", "auralens.cli", *args)
