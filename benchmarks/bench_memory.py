"""Peak memory of ``separate`` and ``imagine`` on a long input, each in a fresh process.

Builds a long input (default 10 minutes of 16 kHz noise) and a 3 s warm-up input, then runs
each measurement in its own interpreter, so imports, models and allocator state do not leak
from one into the next:

- ``separate``: :func:`auralens.scene.separate.run.separate_file` with the offline default
  separator (what ``auralens separate MIX.wav --out DIR`` calls);
- ``imagine``: :func:`auralens.scene.pipeline.imagine` with the offline defaults, report
  included (what ``auralens imagine MIX.wav --out DIR`` calls);
- ``imagine_min_kept4``: the same with ``min_kept=4`` (every estimate captioned), when
  ``ImagineConfig`` has that setting.

Each process loads the models, runs once on the warm-up input (so lazy imports and first-call
buffers are paid), records its RSS (the base), resets the peak (``VmHWM``, Linux
``/proc/self/clear_refs``) and runs on the long input. Printed per measurement: the peak RSS
above the base, that peak divided by the input's float32 size, the process's max RSS (model
loading and warm-up included), the peak above the base within each timed step of the run
(``Timer`` steps, e.g. ``1_separate``, ``6_report``; the rest counts as ``between steps``), wall
and CPU seconds; then one JSON line. MB here are 2**20 bytes.

Usage: python benchmarks/bench_memory.py [--minutes 10] [--threads 1] [--only separate,imagine]
       [--cold]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from procmem import reset_peak, rss_kb

SR = 16000
MB = 1024 * 1024
MEASUREMENTS = ("separate", "imagine", "imagine_min_kept4")


class _StepPeaks:
    """Peak RSS per timed step: the peak is read and reset whenever a step starts or ends.

    Segments outside any step (writing the sources, ``run.json`` …) count as
    ``between steps``, so the segments cover the whole run and their maximum is its peak.
    """

    def __init__(self) -> None:
        self.label = "between steps"
        self.peaks_kb: dict[str, int] = {}

    def close(self, next_label: str) -> None:
        hwm = rss_kb("VmHWM")
        self.peaks_kb[self.label] = max(self.peaks_kb.get(self.label, 0), hwm)
        reset_peak()
        self.label = next_label

    @contextlib.contextmanager
    def watching_timers(self) -> Iterator[None]:
        """Mark step boundaries at every ``auralens.io.Timer`` step (the runs' own timings)."""
        from auralens.io import Timer

        original = Timer.__call__
        steps = self

        @contextlib.contextmanager
        def timed(timer: Any, name: str) -> Iterator[None]:
            steps.close(name)
            try:
                with original(timer, name):
                    yield
            finally:
                steps.close("between steps")

        Timer.__call__ = timed  # type: ignore[method-assign]
        try:
            yield
        finally:
            Timer.__call__ = original  # type: ignore[method-assign]


def _runner(kind: str) -> Callable[[Path, Path], dict[str, int]]:
    """Load the models of ``kind`` and return a function running it on (input, out_dir)."""
    if kind == "separate":
        from auralens.scene.separate.run import load_separator, separate_file

        sep = load_separator("tdcnpp")  # the CLI's default --separator

        def run_separate(path: Path, out: Path) -> dict[str, int]:
            summary = separate_file(path, out, separator=sep)
            return {"n_estimates": int(summary["n_estimates"]), "n_kept": int(summary["n_kept"])}

        return run_separate

    from auralens.scene.pipeline import ImagineConfig, Stages, imagine

    cfg = ImagineConfig(min_kept=4) if kind == "imagine_min_kept4" else ImagineConfig()
    stages = Stages(cfg)
    stages.preload()

    def run_imagine(path: Path, out: Path) -> dict[str, int]:
        res = imagine(path, out, cfg, stages=stages)
        return {"n_estimates": int(res.n_estimates), "n_kept": len(res.kept)}

    return run_imagine


def _worker(kind: str, long_input: Path, warmup: Path | None, out: Path, threads: int) -> dict[str, Any]:
    """One measurement in this (fresh) process; see the module docstring."""
    import torch

    torch.set_num_threads(threads)
    import_kb = rss_kb("VmRSS")
    run = _runner(kind)
    models_kb = rss_kb("VmRSS")
    if warmup is not None:
        run(warmup, out / "warmup")
    gc.collect()
    before_kb = rss_kb("VmHWM")  # model loading and warm-up
    base_kb = rss_kb("VmRSS")
    reset_ok = reset_peak()
    steps = _StepPeaks()
    t0, c0 = time.perf_counter(), time.process_time()
    with steps.watching_timers():
        info = run(long_input, out / "run")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps.close("between steps")
    peak_kb = max(steps.peaks_kb.values())
    return {"kind": kind, "warmup": warmup is not None, "peak_reset": reset_ok,
            "import_rss_mb": import_kb / 1024, "models_rss_mb": models_kb / 1024,
            "base_rss_mb": base_kb / 1024, "peak_above_mb": (peak_kb - base_kb) / 1024,
            "max_rss_mb": max(before_kb, peak_kb) / 1024, "wall_s": wall, "cpu_s": cpu,
            "steps_above_mb": {k: (v - base_kb) / 1024 for k, v in steps.peaks_kb.items()}, **info}


def measure(kind: str, long_input: Path, warmup: Path | None, work: Path, threads: int) -> dict[str, Any]:
    """Run :func:`_worker` in a fresh interpreter; its outputs are removed afterwards."""
    out = work / f"out-{kind}-{'warm' if warmup else 'cold'}"
    cmd = [sys.executable, __file__, "--worker", kind, "--input", str(long_input), "--out", str(out),
           "--threads", str(threads)]
    if warmup is not None:
        cmd += ["--warmup-input", str(warmup)]
    n = str(threads)
    env = dict(os.environ, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n,
               AURALENS_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        print(f"{kind}: failed (rc {proc.returncode}):\n{tail}", file=sys.stderr, flush=True)
        return {"kind": kind, "warmup": warmup is not None, "error": tail.splitlines()[-1] if tail else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _write_noise(path: Path, seconds: float, seed: int) -> int:
    """``seconds`` of white noise (σ = 0.1) at 16 kHz as a float WAV; returns the samples."""
    import soundfile as sf

    n = int(round(seconds * SR))
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="FLOAT") as fh:
        block = 60 * SR
        for start in range(0, n, block):
            fh.write((0.1 * rng.standard_normal(min(block, n - start))).astype(np.float32))
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="Length of the long input.")
    ap.add_argument("--warmup-seconds", type=float, default=3.0, help="Length of the warm-up input.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help=f"Comma list of {', '.join(MEASUREMENTS)}.")
    ap.add_argument("--cold", action="store_true",
                    help="Also measure each without the warm-up run (base: RSS after loading the models).")
    ap.add_argument("--work", type=Path, default=None, help="Folder for the inputs (default: a temporary one).")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--warmup-input", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.input, args.warmup_input, args.out, args.threads)))
        return 0

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := [s for s in only if s not in MEASUREMENTS]:
        ap.error(f"unknown measurement(s) {unknown}; have {', '.join(MEASUREMENTS)}")
    kinds = [k for k in MEASUREMENTS if not only or k in only]

    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-")))
        work.mkdir(parents=True, exist_ok=True)
        long_input, warm_input = work / f"noise-{args.minutes:g}min.wav", work / "warmup.wav"
        n = _write_noise(long_input, args.minutes * 60, args.seed)
        _write_noise(warm_input, args.warmup_seconds, args.seed + 1)
        results = []
        for kind in kinds:
            for warm in (True, False) if args.cold else (True,):
                results.append(measure(kind, long_input, warm_input if warm else None, work, args.threads))

    input_mb = n * 4 / MB
    n_est = next((r["n_estimates"] for r in results if "n_estimates" in r), 0)
    sources_mb = n_est * n * 4 / MB
    print(f"\ninput: {args.minutes:g} min of 16 kHz noise ({n:,d} samples), float32 {input_mb:.1f} MB; "
          f"its {n_est} sources {sources_mb:.1f} MB ({args.threads} thread(s); MB = 2**20 bytes)")
    print(f"base: RSS after loading the models and a {args.warmup_seconds:g} s warm-up run (cold: no "
          "warm-up); peak: the run's RSS peak above the base; max RSS: the whole process's peak")
    print(f"{'measurement':<24} {'base':>7} {'peak':>7} {'÷input':>7} {'max RSS':>8} {'kept':>5} "
          f"{'wall s':>7} {'CPU s':>7}")
    for r in results:
        name = r["kind"] + ("" if r["warmup"] else " (cold)")
        if "error" in r:
            print(f"{name:<24} failed: {r['error']}")
            continue
        print(f"{name:<24} {r['base_rss_mb']:7.0f} {r['peak_above_mb']:7.0f} "
              f"{r['peak_above_mb'] / input_mb:7.2f} {r['max_rss_mb']:8.0f} "
              f"{r['n_kept']:>2}/{r['n_estimates']:<2} {r['wall_s']:7.1f} {r['cpu_s']:7.1f}")
    print("\npeak above the base per step (MB):")
    for r in results:
        if "error" not in r:
            steps = ", ".join(f"{k} {v:.0f}" for k, v in r["steps_above_mb"].items()
                              if v >= 1 and "load" not in k and not k.startswith("0_"))
            print(f"  {r['kind'] + ('' if r['warmup'] else ' (cold)')}: {steps}")
    if any(not r.get("peak_reset", True) for r in results):
        print("note: the kernel did not reset VmHWM; peaks include model loading", file=sys.stderr)

    def rounded(obj: Any) -> Any:
        if isinstance(obj, float):
            return round(obj, 2)
        if isinstance(obj, dict):
            return {k: rounded(v) for k, v in obj.items()}
        return obj

    runs: dict[str, Any] = {}
    for r in results:
        key = r["kind"] + ("" if r["warmup"] else "_cold")
        runs[key] = rounded({k: v for k, v in r.items() if k not in ("kind", "warmup")})
        if "peak_above_mb" in r:
            runs[key]["peak_over_input"] = round(r["peak_above_mb"] / input_mb, 2)
    ratios = {}
    if "peak_above_mb" in runs.get("separate", {}):
        for key in ("imagine", "imagine_min_kept4"):
            if "peak_above_mb" in runs.get(key, {}):
                ratios[f"{key}_over_separate"] = round(runs[key]["peak_above_mb"] / runs["separate"]["peak_above_mb"], 2)
    print(json.dumps({"bench": "memory", "minutes": args.minutes, "warmup_s": args.warmup_seconds,
                      "threads": args.threads, "input_mb": round(input_mb, 1),
                      "sources_mb": round(sources_mb, 1), "runs": runs, "ratios": ratios}))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
