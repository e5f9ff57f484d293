"""Web UI (Gradio): Imagine, Sonify and Rate tabs on a local address.

The layout lives in :mod:`auralens.ui_app.app` and the request handlers, which never
import gradio, in :mod:`auralens.ui_app`. gradio itself is imported only when the UI
starts, so ``auralens --help`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError
from auralens.ui_app.core import DEFAULT_MAX_DURATION_S, DEFAULT_MAX_UPLOAD_MB, UIError, UISettings

log = logging.getLogger(__name__)


def check_address(host: str, port: int) -> None:
    """Refuse an address the server could not listen on (unknown host, port in use) in one
    line, before gradio starts (it would report a misleading "cannot find empty port")."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        raise UIError(f"--host {host!r}: not an address this machine can listen on ({exc})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise UIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_imagine_config(config: dict[str, Any], source: str) -> None:
    """Run the checks ``imagine run`` makes before any work (option names, every stage's
    spec), so a bad config stops the UI at startup instead of failing every request."""
    from auralens.scene.pipeline import ImagineConfig, Stages

    try:
        Stages(ImagineConfig.from_dict(config)).check()
    except AuralensError as exc:
        raise UIError(f"{source}: {exc}") from exc


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    runs: Path | None = None,
    *,
    ratings: Path | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    imagine_config: dict[str, Any] | str | Path | None = None,
    work_root: Path | None = None,
    block: bool = True,
) -> Any:
    """Start the web UI.

    Args:
        host: interface to bind (``127.0.0.1`` keeps it local).
        port: TCP port.
        runs: directory of trained sonify runs (Sonify and Rate tabs).
        ratings: ratings CSV (default ``RUNS/ratings.csv``).
        max_upload_mb: largest upload accepted, MB.
        max_duration_s: longest clip accepted, seconds.
        imagine_config: imagine pipeline config, as a dict or a YAML file (None: the
            offline defaults).
        work_root: where request outputs are written (default: a fresh temp dir).
        block: serve until interrupted (False: return once the server is up).

    Returns:
        The running gradio ``Blocks`` (useful with ``block=False``).
    """
    from auralens.ui_app.app import serve

    if isinstance(imagine_config, (str, Path)):
        from auralens.scene.pipeline import imagine_section

        source = imagine_config
        imagine_config = imagine_section(source, UIError)  # what `imagine run --config` reads
        check_imagine_config(imagine_config, str(source))
    elif imagine_config is not None:
        check_imagine_config(imagine_config, "imagine_config")
    if runs is not None and not Path(runs).expanduser().exists():
        raise UIError(f"{runs}: runs directory not found (--runs)")
    check_address(host, port)
    settings = UISettings(runs_dir=runs, ratings_path=ratings, work_root=work_root,
                          max_upload_mb=max_upload_mb, max_duration_s=max_duration_s,
                          imagine_config=imagine_config)
    log.info("auralens UI on http://%s:%d (work dir %s)", host, port, settings.work_root)
    return serve(settings, host, port, block=block)
