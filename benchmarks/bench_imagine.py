"""Time the Imagine pipeline per stage on procedural FUSS-recipe mixtures.

Builds N seeded mixtures from the procedural library, runs ``imagine_batch`` with the chosen
backends (offline defaults when the committed presets exist; otherwise pass --separator /
--captioner), and prints the mean seconds of every stage per mixture, the real-time factor
(pipeline seconds per second of audio, model loading excluded), the share of time spent in
each stage, the resume speed-up (a second run over finished items) and one JSON line.

Usage:
    python benchmarks/bench_imagine.py [--n 4] [--separator nmf] [--captioner classifier:DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="mixtures")
    ap.add_argument("--seconds", type=float, default=5.0, help="mixture duration")
    ap.add_argument("--separator", default=None, help="separator spec (default: TDCN++ preset)")
    ap.add_argument("--captioner", default=None, help="captioner spec (default: classifier)")
    ap.add_argument("--composer", default="template")
    ap.add_argument("--technique", default="cot")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("AURALENS_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize
    from auralens.scene.compose.base import COMPOSERS
    from auralens.scene.pipeline import imagine_batch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        lib = synthesize(root / "lib", clips_per_class=2, seed=args.seed, duration=3.0)
        build_mixtures(lib, root / "fuss", n=args.n, seed=args.seed, duration=args.seconds)
        t_data = time.perf_counter() - t0
        cfg = {"separator": args.separator, "captioner": args.captioner,
               "composer": args.composer, "technique": args.technique, "report": True}
        t0 = time.perf_counter()
        lines = imagine_batch(root / "fuss", root / "out", cfg)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        imagine_batch(root / "fuss", root / "out", cfg)  # everything finished: resume only
        t_resume = time.perf_counter() - t0
        errors = (root / "out" / "errors.jsonl").read_text().splitlines() \
            if (root / "out" / "errors.jsonl").exists() else []

    stage_sum: dict[str, float] = defaultdict(float)
    for ln in lines:
        for k, v in ln["timings"].items():
            stage_sum[k] += v
    n = max(len(lines), 1)
    work = {k: v / n for k, v in stage_sum.items() if "load" not in k}
    per_item = sum(work.values())
    print(f"data: {t_data:.1f} s for {args.n} mixtures of {args.seconds:g} s")
    print(f"imagine batch: {len(lines)} ok, {len(errors)} failed, {t_first:.1f} s wall "
          "(model loading included)")
    print(f"{'stage':<20}{'mean s/item':>12}{'share':>8}")
    for k in sorted(work):
        print(f"{k:<20}{work[k]:>12.3f}{work[k] / max(per_item, 1e-9):>8.1%}")
    rtf = per_item / args.seconds
    print(f"per mixture {per_item:.3f} s → real-time factor {rtf:.3f} (s per s of audio)")
    print(f"resume over finished items: {t_resume:.2f} s ({t_first / max(t_resume, 1e-9):.0f}× "
          "faster than the first run)")

    comp = COMPOSERS.build("template")
    caps = ["the sound of a dog", "the sound of rain", "the sound of a siren"]
    reps = 2000
    t0 = time.perf_counter()
    for _ in range(reps):
        comp.compose(caps, "cot", labels=["dog", "rain", "siren"])
    per_compose = (time.perf_counter() - t0) / reps
    print(f"template composer: {per_compose * 1e6:.0f} µs per description")
    print(json.dumps({"n": len(lines), "failed": len(errors), "rtf": round(rtf, 4),
                      "stages_s": {k: round(v, 4) for k, v in work.items()},
                      "first_run_s": round(t_first, 2), "resume_s": round(t_resume, 3),
                      "template_compose_us": round(per_compose * 1e6, 1)}))


if __name__ == "__main__":
    main()
