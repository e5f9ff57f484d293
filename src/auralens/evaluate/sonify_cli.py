"""Evaluation commands mounted under ``auralens sonify`` (report, rate, ratings)."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    runs: list[Path] = typer.Argument(..., help="Trained and rendered run directories (an lr grid: its best run, as in `sonify render`; a "
                                "`sonify sweep` folder: its layers' runs). Each run once."),
    out: Path = typer.Option(..., "--out", help="Report directory to write."),
    embedder: str = typer.Option("logmel", "--embedder",
                                 help="Metric embedder for FAD/KAD: logmel, mfcc, clap:laion/clap-htsat-unfused, …"),
    link_audio: bool = typer.Option(False, "--link-audio/--copy-audio",
                                    help="Symlink audio instead of copying (not portable)."),
    smoothing: str = typer.Option(
        "auto", "--smoothing",
        help="EMA weight in [0, 1) for the loss curves (0: raw curves only; auto: none for "
             "histories under 100 points, heavier for longer ones). Raw curves are always drawn."),
    topk: int = typer.Option(5, "--topk", help="Rows per group in the top-k tables (≥ 1)."),
    max_clips: int | None = typer.Option(
        None, "--max-clips", help="Clips shown per run, ≥ 1 (default: all; all are scored)."),
    sigma: float | None = typer.Option(
        None, "--sigma", help="Fixed KAD kernel bandwidth for every run (default: each run's median "
                              "distance of its original frames)."),
) -> None:
    """Score runs (FAD, KAD, spectral metrics beside the codec ceiling) and write an HTML report."""
    from auralens.evaluate.report import build_report

    index = build_report(runs, out, embedder=embedder, link_audio=link_audio,
                         smoothing=smoothing, topk=topk, max_clips=max_clips, sigma=sigma)
    typer.echo(f"report written: {index}")


def rate(
    report_dir: Path = typer.Argument(..., help="Directory written by `auralens sonify report`."),
    rater: str = typer.Option(..., "--rater", help="Your name (stored with every rating)."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: a free one)."),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="Open the page in a browser."),
) -> None:
    """Serve a local rating page: a 1–5 visual and a 1–5 audio mark per sonification.

    Each rating names the render it rates (the ``render`` column of ratings.csv).
    """
    import webbrowser

    from auralens.evaluate.report import serve_ratings

    server, thread = serve_ratings(report_dir, rater, port=port)
    url = f"http://127.0.0.1:{server.server_address[1]}/rate.html"
    typer.echo(f"rating page: {url}  (ratings go to {Path(report_dir) / 'ratings.csv'}; Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(url)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()


def ratings(
    csvs: list[Path] = typer.Argument(..., help="ratings.csv files."),
    by: str = typer.Option("version", "--by", help="Comma-separated grouping: version, run, rater, clip, render "
                           "(render: each render of a version apart; default: only its latest rated render)."),
    out: Path | None = typer.Option(None, "--out", help="Write the table (.md or .csv)."),
    all_ratings: bool = typer.Option(False, "--all", help="Keep repeated ratings (default: a rater's latest per item)."),
) -> None:
    """Aggregate ratings: mean ± std and n of the visual and audio marks per version.

    Ratings of a version's earlier renders (the run was rendered again from another
    checkpoint) are left out, with a warning, unless grouped by render.
    """
    from auralens.evaluate.ratings import (
        RatingError,
        aggregate_ratings,
        load_ratings,
        ratings_csv,
        ratings_markdown,
    )
    from auralens.io import write_text

    if out is not None and out.suffix.lower() not in (".md", ".csv"):  # before reading any ratings
        raise RatingError(f"--out {out}: the table is written as markdown (.md) or CSV (.csv); "
                          f"name the file so, not {out.suffix or 'without a suffix'}")
    rows = aggregate_ratings(load_ratings(csvs), by=[b.strip() for b in by.split(",") if b.strip()],
                             latest_only=not all_ratings)
    md = ratings_markdown(rows)
    typer.echo(md, nl=False)
    if out is not None:
        write_text(out, ratings_csv(rows) if out.suffix.lower() == ".csv" else md)


def add_commands(app: typer.Typer) -> None:
    """Attach the evaluation commands to the ``sonify`` sub-app."""
    app.command("report")(report)
    app.command("rate")(rate)
    app.command("ratings")(ratings)
