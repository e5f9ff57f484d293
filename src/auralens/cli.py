"""The ``auralens`` command line: thin typer commands over the public API.

Each package owns its sub-app (``auralens/<package>/cli.py``); this module mounts them and
turns expected failures (:class:`~auralens.errors.AuralensError`) into one-line messages
with a non-zero exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from auralens import __version__
from auralens.cli_utils import PlainHelpGroup
from auralens.progress import setup_logging

app = typer.Typer(
    name="auralens",
    help="auralens: listen to what audio models perceive, and turn sound scenes into images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=PlainHelpGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"auralens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False,
                                 help="Repeat for more log output: -v info, -vv debug."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    setup_logging(verbose)


def _mount() -> None:
    from auralens.data.cli import app as data_app
    from auralens.encoders.cli import app as encoders_app
    from auralens.evaluate.cli import app as evaluate_app
    from auralens.experiments.cli import app as experiment_app
    from auralens.scene.cli import app as imagine_app
    from auralens.scene.separate.cli import app as separate_app
    from auralens.sonify.cli import app as sonify_app

    app.add_typer(data_app, name="data")
    app.add_typer(sonify_app, name="sonify")
    app.add_typer(separate_app, name="separate")
    app.add_typer(imagine_app, name="imagine")
    app.add_typer(evaluate_app, name="evaluate")
    app.add_typer(experiment_app, name="experiment")
    # Top-level commands contributed by packages (e.g. train-classifier).
    for command in encoders_app.registered_commands:
        app.registered_commands.append(command)


@app.command()
def demo(
    out: Path = typer.Option(Path("auralens-demo"), "--out", help="Output directory."),
    data: Path | None = typer.Option(None, "--data", help="ESC-50-layout folder to use instead of the procedural library."),
    quick: bool = typer.Option(False, "--quick", help="A reduced run (for tests)."),
    seed: int = typer.Option(42, "--seed", min=0, help="Seed of the sound library, the data "
                             "splits, the mixtures and the training."),
) -> None:
    """Run the offline demo end to end and write index.html into the --out folder."""
    from auralens.demo import run_demo

    index = run_demo(out, data=data, quick=quick, seed=seed)
    typer.echo(f"demo written: {index}")


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(7860, "--port", min=1, max=65535),
    runs: Path | None = typer.Option(None, "--runs", help="Directory of trained sonify runs."),
    ratings: Path | None = typer.Option(None, "--ratings", help="CSV file the Rate tab appends to."),
    config: Path | None = typer.Option(None, "--config", help="Imagine YAML config (stage backends)."),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", help="Largest accepted upload."),
    max_duration_s: float = typer.Option(600.0, "--max-duration-s", help="Longest accepted clip."),
) -> None:
    """Start the web UI (Gradio) on a local address."""
    from auralens.ui import launch

    launch(host=host, port=port, runs=runs, ratings=ratings, imagine_config=config,
           max_upload_mb=max_upload_mb, max_duration_s=max_duration_s)


_mount()


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a KeyboardInterrupt (anywhere in its cause/context chain)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, mapping expected errors to one line."""
    from auralens.errors import AuralensError

    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        if exc.code == 130 and _interrupted(exc):  # typer turns Ctrl-C into a silent Exit(130)
            typer.echo("interrupted", err=True)
            return 130
        return int(exc.code or 0) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except AuralensError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except OSError as exc:  # an output path that cannot be written, a file where a folder must be …
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 1
    except UnicodeDecodeError as exc:
        # Readers of the text files a user names (auralens.io.read_user_text and friends) raise
        # a NotTextError, an AuralensError naming the file; this is for a decode error from
        # elsewhere (a library reading a file of its own), which names none.
        typer.echo(f"error: an input file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                   err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
