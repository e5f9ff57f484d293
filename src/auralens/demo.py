"""The offline demo: everything runs with the offline defaults, nothing is downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

from auralens.io import Timer, write_run_json, write_text

log = logging.getLogger(__name__)


def run_demo(out: Path, *, data: Path | None = None, quick: bool = False, seed: int = 42) -> Path:
    """Build (or use) a dataset, make FUSS-style mixtures and write ``out/index.html``.

    Returns:
        the index page.
    """
    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    with timer("data"):
        if data is None:
            data = synthesize(out / "library", clips_per_class=4 if quick else 12, seed=seed)
    with timer("mix"):
        records = build_mixtures(data, out / "mixtures", n=4 if quick else 12, seed=seed)
    rows = "\n".join(
        f"<li>{r.id}: {r.n_sources} sources ({', '.join(r.labels)}) "
        f"<audio controls src='{Path(r.mixture).relative_to(out)}'></audio></li>"
        for r in records
    )
    index = write_text(out / "index.html",
                       f"<!doctype html><html><head><meta charset='utf-8'><title>auralens demo</title>"
                       f"</head><body><h1>auralens demo</h1><h2>Mixtures</h2><ul>{rows}</ul>"
                       f"</body></html>\n")
    write_run_json(out, command="demo", config={"data": str(data), "quick": quick},
                   timings=timer.timings, seed=seed)
    return index
