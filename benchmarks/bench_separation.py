"""Separation benchmark: committed TDCN++ vs NMF vs oracle masks on held-out ESC-10 mixtures.

Held-out data: ``--n`` mixtures of ``--seconds`` s built from ESC-10 fold 4, whose clips are
never trained on (training mixes folds 1–3; fold 4 only picks the best checkpoint, through
different mixtures). ``--recipe mixer`` (default) uses auralens.data.mix (FUSS recipe: one
looped background, foreground events at random onsets, shoebox-room reverb) — a harder,
shifted condition for a model trained with the dynamic mixer; ``--recipe dynamic`` uses the
training mixer's recipe (dry, full-length crops, 1–4 sources in equal shares).

Prints, for each separator, 1S / MSi (FUSS definitions, see auralens.scene.separate.metrics),
SDR, the real-time factor, then how well each activity rule recovers the true source count
from the TDCN++ estimates, the CPU real-time factor and peak memory of the ``tiny`` and
``fuss`` presets on a 10 s input, and one JSON line with everything.

Targets: TDCN++ MSi ≥ NMF MSi + 5 dB; TDCN++ MSi ≥ 60 % of the oracle IRM's MSi.

Usage: python benchmarks/bench_separation.py [--data ../shared/data/esc10] [--n 40]
       [--separator tdcnpp] [--threads 1] [--no-bss]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from procmem import reset_peak, rss_kb

ROOT = Path(__file__).resolve().parents[1]


def _rtf_worker(preset: str, seconds: float, threads: int) -> dict:
    """RTF and peak RSS of one preset; run in a fresh process (``--rtf-worker``)."""
    import torch

    from auralens.scene.separate.tdcnpp import TDCNpp, TDCNppSeparator, load_checkpoint
    from auralens.scene.separate.tdcnpp import preset as get

    torch.set_num_threads(threads)
    if preset == "committed":
        model, _ = load_checkpoint(ROOT / "src/auralens/presets/tdcnpp-tiny/model.safetensors")
    else:
        model = TDCNpp(get(preset))
    sep = TDCNppSeparator(model, chunk_seconds=max(seconds, 10.0))
    mix = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)
    sep.separate(mix[:16000])  # warm-up
    base = rss_kb("VmRSS")
    reset_peak()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        sep.separate(mix)
        times.append(time.perf_counter() - t0)
    peak = rss_kb("VmHWM")
    params = sum(p.numel() for p in model.parameters())
    return {"preset": preset, "rtf": min(times) / seconds, "params": params,
            "peak_rss_mb": peak / 1024, "peak_over_idle_mb": (peak - base) / 1024}


def measure_rtf(preset: str, seconds: float, threads: int) -> dict:
    """Run :func:`_rtf_worker` in a fresh interpreter so peak memory is the model's own."""
    proc = subprocess.run([sys.executable, __file__, "--rtf-worker", preset, "--seconds", str(seconds),
                           "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v: float) -> str:
    return "   n/a" if v is None or not math.isfinite(v) else f"{v:6.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "esc10")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--separator", default="tdcnpp", help="Model under test (spec).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-bss", action="store_true")
    ap.add_argument("--skip-rtf", action="store_true")
    ap.add_argument("--rtf-only", action="store_true", help="Only the real-time factor / memory part.")
    ap.add_argument("--recipe", choices=("mixer", "dynamic"), default="mixer",
                    help="mixer: auralens.data.mix FUSS recipe (rooms, onsets); "
                         "dynamic: the training mixer's recipe.")
    ap.add_argument("--work", type=Path, default=ROOT / "runs",
                    help="Where the held-out mixtures are built (reused by later runs).")
    ap.add_argument("--rtf-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rtf_worker:
        print(json.dumps(_rtf_worker(args.rtf_worker, args.seconds, args.threads)))
        return

    if not args.rtf_only and not (args.data / "meta" / "esc50.csv").exists():
        print(f"error: {args.data} is not an ESC-50-layout dataset", file=sys.stderr)
        sys.exit(2)
    if args.rtf_only:
        for preset in ("committed", "tiny", "fuss"):
            print(json.dumps(measure_rtf(preset, args.seconds, args.threads)), flush=True)
        return

    import torch

    from auralens.scene.separate.activity import ActivityConfig, count_accuracy, filter_estimates
    from auralens.scene.separate.base import ReferenceSeparator
    from auralens.scene.separate.metrics import summarize
    from auralens.scene.separate.run import evaluate_items, load_eval_items, load_separator

    torch.set_num_threads(args.threads)
    if args.recipe == "mixer":
        from auralens.data.mix import build_mixtures

        mix_dir = args.work / f"bench-sep-fold4-n{args.n}-{args.seconds:g}s"
        build_mixtures(args.data, mix_dir, n=args.n, seed=1234, duration=args.seconds, folds=[4],
                       split="eval")  # resumable: a second run reuses the files
        items = load_eval_items(mix_dir, split="eval")
    else:
        items = load_eval_items(args.data, folds=[4], n=args.n, seconds=args.seconds, seed=1234)
    audio_s = sum(m.size for _, m, _ in items) / 16000
    results: dict[str, dict] = {}
    model_est: list[np.ndarray] = []
    for spec in dict.fromkeys((args.separator, "nmf", "oracle-irm", "oracle-ibm")):  # once each
        sep = load_separator(spec)
        if spec == args.separator:  # keep the estimates for the activity-rule study
            method = "separate_with_refs" if isinstance(sep, ReferenceSeparator) else "separate"
            orig = getattr(sep, method)

            def keep(*inputs, _orig=orig):
                est = _orig(*inputs)
                model_est.append(est)
                return est

            setattr(sep, method, keep)
        scores, spent = evaluate_items(sep, items, bss=not args.no_bss)
        s = summarize(scores)
        s["rtf"] = spent / audio_s
        results[spec] = s

    print(f"\nheld-out: {len(items)} mixtures × {args.seconds:g} s from ESC-10 fold 4, "
          f"{args.recipe} recipe ({args.threads} thread(s))", flush=True)
    print(f"{'separator':<14} {'1S':>6} {'MSi':>6} {'SDR2-4':>7} {'RTF':>7} " +
          " ".join(f"{'SI-SNRi@' + str(k):>10}" for k in (2, 3, 4)))
    for spec, s in results.items():
        sdrs = [v for k, c in s["by_count"].items()
                if k >= 2 and (v := c["sdr"]) is not None and math.isfinite(v)]
        sdr = float(np.mean(sdrs)) if sdrs else float("nan")  # no SDR under --no-bss
        per = " ".join(f"{_fmt(s['by_count'].get(k, {}).get('si_snri', float('nan'))):>10}" for k in (2, 3, 4))
        print(f"{spec:<14} {_fmt(s['1S'])} {_fmt(s['MSi'])} {_fmt(sdr):>7} {s['rtf']:7.4f} {per}")

    rules = {
        "study (Σ|s|·max>0.1 & RMS≥10%)": ActivityConfig(),
        "study, RMS≥5%": ActivityConfig(min_rms_ratio=0.05),
        "study, RMS≥20%": ActivityConfig(min_rms_ratio=0.2),
        "relative_db ≥ -20": ActivityConfig(rule="relative_db", min_db=-20),
        "relative_db ≥ -15": ActivityConfig(rule="relative_db", min_db=-15),
        "relative_db ≥ -25": ActivityConfig(rule="relative_db", min_db=-25),
        "frames (-6 dB, 2%)": ActivityConfig(rule="frames"),
        "frames (-6 dB, 5%)": ActivityConfig(rule="frames", min_active_frac=0.05),
        "frames (-10 dB, 5%)": ActivityConfig(rule="frames", frame_db=-10, min_active_frac=0.05),
    }
    activity: dict[str, dict] = {}
    print("\nactivity filter on the model's estimates: true count recovered")
    for name, cfg in rules.items():
        pairs = []
        dropped = 0
        for (_, mix, refs), est in zip(items, model_est, strict=True):
            kept = sum(d["kept"] for d in filter_estimates(est, mix, cfg))
            dropped += est.shape[0] - kept
            pairs.append((int(np.sum(np.sqrt((refs**2).mean(-1)) > 1e-8)), kept))
        acc = count_accuracy(pairs)
        acc["dropped_per_mixture"] = dropped / len(items)
        activity[name] = acc
        print(f"  {name:<32} equal {acc['equal']:.2f}  under {acc['under']:.2f}  over {acc['over']:.2f}"
              f"  dropped/mix {acc['dropped_per_mixture']:.2f}")

    rtf = {}
    if not args.skip_rtf:
        print(f"\nCPU real-time factor on a {args.seconds:g} s input ({args.threads} thread(s)):")
        for preset in ("committed", "tiny", "fuss"):
            r = measure_rtf(preset, args.seconds, args.threads)
            rtf[preset] = r
            print(f"  {preset:<10} params {r['params']:>9,d}  RTF {r['rtf']:.4f}  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['peak_over_idle_mb']:+.0f} MB over the loaded, idle process)")

    model, nmf, irm = (results[k]["MSi"] for k in (args.separator, "nmf", "oracle-irm"))
    targets = {"beats_nmf_by_5dB": bool(model - nmf >= 5.0), "msi_minus_nmf": model - nmf,
               "fraction_of_irm": model / irm if irm else float("nan"),
               "reaches_60pct_irm": bool(irm and model / irm >= 0.6)}
    print(f"\ntargets: MSi − NMF = {model - nmf:.2f} dB (≥ 5: {targets['beats_nmf_by_5dB']}); "
          f"MSi / IRM MSi = {targets['fraction_of_irm']:.2f} (≥ 0.60: {targets['reaches_60pct_irm']})")

    def clean(obj):
        if isinstance(obj, float):
            return round(obj, 4) if math.isfinite(obj) else None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        return obj

    print(json.dumps(clean({"bench": "separation", "n": len(items), "seconds": args.seconds,
                            "recipe": args.recipe,
                            "threads": args.threads,
                            "separators": {k: {kk: v[kk] for kk in ("1S", "MSi", "rtf", "equal_rate")}
                                           | {"by_count": v["by_count"]} for k, v in results.items()},
                            "activity": activity, "rtf": rtf, "targets": targets})))


if __name__ == "__main__":
    main()
