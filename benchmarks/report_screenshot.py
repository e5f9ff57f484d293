"""End-to-end listening report on ESC-10 with offline defaults, screenshotted in Chromium.

1. Runs: when the offline encoder (``--encoder``, default ``classifier``) is available, a
   short ``auralens sonify sweep`` (prepare → train → render, ``--layers``) on the first
   5 × ``--limit`` clips (enough for its train/val/test splits; 8 test clips are rendered).
   Otherwise (the encoder checkpoint is missing) a stand-in run is built from
   the same clips with the weight-free ``mel`` codec: ``original`` (5 s at the codec rate),
   ``ceiling`` (mel encode → decode), and two *codec-variant* versions that stand where gate
   outputs would be (``mel32``: 32 mel bands; ``gl8``: 8 Griffin-Lim iterations). The report
   names them as such.
2. ``build_report`` with the default ``logmel`` metric embedder.
3. Headless Chromium (``/usr/bin/chromium``, installed with apt; no browser download) opens
   ``index.html`` and saves ``screenshot_top.png`` (summary) and ``screenshot_clip.png``.

Prints timings and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def sweep_runs(data: Path, out: Path, encoder: str, layers: str, limit: int, epochs: int) -> list[Path]:
    from auralens.sonify.sweep import sweep
    from auralens.sonify.train import TrainConfig

    sweep(data, encoder, layers, "mel", "lin", out, cfg=TrainConfig(epochs=epochs), limit=limit,
          render_limit=8, post=["none", "minmax"])
    return sorted(p.parent for p in out.glob("layer=*/run/renders"))


def standin_run(data: Path, out: Path, limit: int) -> Path:
    """A run directory from ESC-10 clips and mel-codec renders (no trained gate)."""
    from auralens import audio
    from auralens.codecs.base import CODECS
    from auralens.io import write_json, write_jsonl

    codec = CODECS.build("mel")
    variants = {"mel32": CODECS.build("mel@n_mels=32"), "gl8": CODECS.build("mel@n_iter=8")}
    files = sorted((data / "audio").glob("*.ogg"))
    # One clip per class first, so the page shows different sounds.
    by_class: dict[str, Path] = {}
    for f in files:
        by_class.setdefault(f.stem.rsplit("-", 1)[-1], f)
    chosen = (list(by_class.values()) + files)[:limit]
    run = out / "mel-standin"
    sr = codec.sample_rate
    for f in chosen:
        x = audio.fix_length(audio.load(f, sr), 5 * sr)
        audio.write(run / "renders" / "original" / f"{f.stem}.wav", x, sr)
        audio.write(run / "renders" / "ceiling" / f"{f.stem}.wav", codec.roundtrip(x), sr)
        for name, cod in variants.items():
            audio.write(run / "renders" / name / f"{f.stem}.wav", cod.roundtrip(x), sr)
    write_json(run / "run.json", {"command": "report_screenshot stand-in", "config": {
        "encoder": "none (stand-in: codec variants instead of gate outputs)", "layer": None,
        "codec": codec.name, "gate": "none"}})
    write_jsonl(run / "history.jsonl", [])
    return run


def screenshot(index: Path, out: Path) -> dict[str, str]:
    from playwright.sync_api import sync_playwright

    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--headless", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1500})
        page.goto(index.resolve().as_uri())
        page.wait_for_load_state("load")
        shots["top"] = str(out / "screenshot_top.png")
        page.screenshot(path=shots["top"])
        page.locator("#clips").scroll_into_view_if_needed()
        shots["clip"] = str(out / "screenshot_clip.png")
        page.screenshot(path=shots["clip"])
        broken = page.evaluate("Array.from(document.images).filter(i => !i.naturalWidth).length")
        shots["broken_images"] = str(broken)
        shots["images"] = str(page.evaluate("document.images.length"))
        shots["audio_players"] = str(page.evaluate("document.querySelectorAll('audio').length"))
        browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "esc10")
    ap.add_argument("--out", type=Path, default=Path("/tmp/auralens-report-shot"))
    ap.add_argument("--encoder", default="classifier")
    ap.add_argument("--layers", default="2")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--standin", action="store_true", help="Skip the sweep; use codec variants.")
    args = ap.parse_args(argv)

    from auralens.errors import AuralensError
    from auralens.evaluate.report import build_report

    if not (args.data / "meta" / "esc50.csv").exists():
        print(f"error: {args.data} is not an ESC-50-layout folder", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mode = "standin"
    runs: list[Path] = []
    if not args.standin:
        try:
            runs = sweep_runs(args.data, args.out / "sweep", args.encoder, args.layers, args.limit * 5,
                              args.epochs)
            mode = "sweep"
        except AuralensError as exc:
            print(f"sonify sweep unavailable ({exc}); using the mel-codec stand-in run")
    if not runs:
        runs = [standin_run(args.data, args.out / "runs", args.limit)]
    t_runs = time.perf_counter() - t0
    t1 = time.perf_counter()
    index = build_report(runs, args.out / "report", embedder="logmel")
    t_report = time.perf_counter() - t1
    metrics = json.loads((args.out / "report" / "metrics.json").read_text())
    t2 = time.perf_counter()
    shots = screenshot(index, args.out)
    t_shot = time.perf_counter() - t2
    rows = {f"{r['run']}/{r['version']}": {k: r.get(k) for k in ("fad", "kad", "mr_stft", "env_corr")}
            for r in metrics["rows"]}
    print(f"runs ({mode}): {t_runs:.1f}s   report: {t_report:.1f}s   screenshots: {t_shot:.1f}s")
    for name, vals in rows.items():
        print(f"  {name:28s} " + "  ".join(f"{k}={v:.4g}" for k, v in vals.items() if v is not None))
    print(json.dumps({"mode": mode, "runs_s": t_runs, "report_s": t_report, "screenshot_s": t_shot,
                      "index": str(index), "embedder": metrics["embedder"], "metrics": rows,
                      **shots, "nan_free": all(np.isfinite(v) for r in rows.values()
                                               for v in r.values() if v is not None)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
