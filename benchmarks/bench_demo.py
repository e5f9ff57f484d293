"""Time the full offline demo (README's main job) and its --quick variant on this machine.

Prints the wall time of each as a whole process and the full/quick ratio, then one JSON line.
Target: the full demo finishes in under 10 minutes on 2 CPU cores.

Usage: python benchmarks/bench_demo.py [--data ../shared/data/esc10] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], cache: Path) -> float:
    env = {**os.environ, "AURALENS_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "AURALENS_NO_PROGRESS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "auralens.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--skip-full", action="store_true")
    args = ap.parse_args()
    if args.data is not None and not (args.data / "meta" / "esc50.csv").exists():
        print(f"error: {args.data} is not an ESC-50-layout dataset", file=sys.stderr)
        sys.exit(2)
    extra = ["--data", str(args.data)] if args.data else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        quick = run(["demo", "--quick", "--out", str(tmp / "q"), *extra], tmp / "cache-q")
        full = None if args.skip_full else run(["demo", "--out", str(tmp / "f"), *extra], tmp / "cache-f")
    print(f"demo --quick: {quick:.1f} s")
    if full is not None:
        print(f"demo (full):  {full:.1f} s  ({full / 60:.1f} min; target < 10 min)  full/quick = {full / quick:.2f}")
    print(json.dumps({"bench": "demo", "quick_s": round(quick, 2),
                      "full_s": None if full is None else round(full, 2),
                      "data": str(args.data) if args.data else "procedural",
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
