"""Helpers for tests that start processes or local servers: free ports, two-process
accelerate launches, and stub HTTP servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


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


@contextlib.contextmanager
def local_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 in a thread; yields the OpenAI-style base URL ``…/v1``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def chat_server(answer: Callable[[dict[str, Any]], Any]) -> Iterator[str]:
    """A stub OpenAI-style chat server: each request body goes to ``answer`` and its return
    value is sent back as the message ``content``; yields the base URL ``…/v1``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = json.dumps({"choices": [{"message": {"content": answer(body)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with local_server(Handler) as url:
        yield url
