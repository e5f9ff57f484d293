"""Run every benchmark script with a time budget, collect their JSON lines, update the docs.

Each ``benchmarks/bench_*.py`` prints its own table and one or more JSON lines (a bare JSON
object, or prefixed ``JSON``). This runner starts each script (under ``nice``) with the
arguments below, kills it when its budget runs out, and appends one record per JSON line to
``benchmarks/results.jsonl`` together with the run's machine description (``nproc``, CPU model,
memory, load average, date) and the script's status/elapsed time. A script that fails, times
out or prints no JSON still gets a record (``status``), so a gap is visible; one whose dataset
is absent (``DEFAULT_DATA``) is not started and gets a ``skipped`` record saying what it needs.

Then the results table in ``docs/performance.md`` (between the ``results:begin`` and
``results:end`` markers) is regenerated from the newest record(s) of every benchmark; the prose
around it is left alone.

    .venv/bin/python benchmarks/run_all.py                       # everything, default budgets
    .venv/bin/python benchmarks/run_all.py --only metrics,trainer_vs_hf --budget 900
    .venv/bin/python benchmarks/run_all.py --args "sonify=--limit 20" --dry-run
    .venv/bin/python benchmarks/run_all.py --table-only          # just rebuild the docs table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "results.jsonl"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: Arguments that keep each script to minutes on a small shared CPU machine (full sizes are
#: the scripts' own defaults; pass ``--full`` to use those).
QUICK_ARGS: dict[str, list[str]] = {
    "sonify": ["--limit", "40"],
    "metrics": ["--n", "20000", "--n-ref-impl", "2000"],
    "separation": ["--n", "96", "--seconds", "10"],
    "imagine": ["--n", "4"],
    "demo": ["--skip-full"],
    "trainer_vs_hf": ["--gates", "lin,conv", "--clips", "160", "--epochs", "3"],
    # the committed ESC-10 classifier on its held-out fold (the measurement in its model card)
    "classifier_reverb": ["--fold", "4", "--copies", "2", "--model", "src/auralens/presets/classifier"],
    # peak RSS of separate and imagine on 10 minutes of noise (about a minute on 2 CPUs)
    "memory": ["--minutes", "10"],
}
#: ESC-10 (ESC-50 layout), where the scripts that need real data read it by default.
ESC10 = ROOT.parent / "shared" / "data" / "esc10"
#: The dataset each script reads when its arguments name no ``--data`` (scripts left out need
#: none by default). A script whose dataset is absent is skipped, not run.
DEFAULT_DATA: dict[str, Path] = {"sonify": ESC10, "separation": ESC10, "classifier_reverb": ESC10}
#: Per-script budgets in seconds (default ``--budget`` for the rest).
BUDGETS: dict[str, float] = {"trainer_vs_hf": 1200.0, "sonify": 900.0, "demo": 900.0, "separation": 1500.0,
                             "memory": 600.0}
#: Keys describing the machine/run rather than a measured result (left out of the table).
CONTEXT_KEYS = {"bench", "run_id", "run_at", "machine", "status", "elapsed_s", "rc", "script", "args",
                "host", "platform"}


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, GPU (when torch sees one), load average, versions and date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    info: dict[str, Any] = {"nproc": os.cpu_count(), "cpu": cpu, "mem_gb": mem_gb,
                            "python": platform.python_version(), "platform": platform.platform(),
                            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                            "load_avg_1min": round(os.getloadavg()[0], 2)}
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - informational only
        info["gpu"] = None
    return info


def discover() -> dict[str, Path]:
    """``{name: script}`` for every ``benchmarks/bench_<name>.py``."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def missing_data(name: str, args: list[str]) -> str | None:
    """Why ``name`` cannot run with ``args`` for want of its dataset (None: it can).

    The dataset is the ``--data`` among ``args`` (relative to the repository root, where the
    scripts run), else the script's default in :data:`DEFAULT_DATA`; it must be an ESC-50-layout
    folder (``meta/esc50.csv``).
    """
    data: Path | None = DEFAULT_DATA.get(name)
    for i, arg in enumerate(args):
        if arg == "--data" and i + 1 < len(args):
            data = ROOT / args[i + 1]
        elif arg.startswith("--data="):
            data = ROOT / arg.split("=", 1)[1]
    if data is None or (name == "separation" and "--rtf-only" in args):
        return None
    if (data / "meta" / "esc50.csv").is_file():
        return None
    return (f"needs an ESC-50-layout dataset at {data} (not found); "
            f'pass one with --args "{name}=--data DIR …"')


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line that is a JSON object (optionally prefixed with ``JSON``)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("JSON"):
            line = line[4:].lstrip(" :")
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def run_one(name: str, script: Path, args: list[str], budget: float, log_dir: Path | None) -> tuple[list[dict], dict]:
    """Run one script; returns its JSON records and a status record."""
    cmd = [sys.executable, str(script), *args]
    if shutil.which("nice"):
        cmd = ["nice", "-n", "10", *cmd]
    env = dict(os.environ, AURALENS_NO_PROGRESS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    print(f"== {name}: {' '.join(shlex.quote(c) for c in cmd[cmd.index(str(script)):])} "
          f"(budget {budget:.0f} s)", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=budget)
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        status = "ok" if rc == 0 else "failed"
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        rc, status = None, "timeout"
    elapsed = time.perf_counter() - t0
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{name}.log").write_text(stdout + "\n--- stderr ---\n" + stderr, encoding="utf-8")
    records = parse_json_lines(stdout)
    if status == "ok" and not records:
        status = "no-json"
    tail = [ln for ln in stdout.splitlines() if ln.strip() and not ln.lstrip().startswith(("{", "JSON"))]
    print("\n".join(tail[-25:]), flush=True)
    if status != "ok":
        print(f"   {name}: {status} (rc {rc}) after {elapsed:.0f} s; stderr tail:\n"
              + "\n".join(stderr.strip().splitlines()[-8:]), flush=True)
    return records, {"status": status, "rc": rc, "elapsed_s": round(elapsed, 1),
                     "script": script.name, "args": args}


def _fmt(v: Any, depth: int = 0) -> str:
    """Compact cell text; structures nested deeper than two levels are elided."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        if depth >= 2:
            return "{…}"
        return "{" + ", ".join(f"{k}: {_fmt(x, depth + 1)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x, depth + 1) for x in v[:6]) + (", …" if len(v) > 6 else "") + "]"
    return str(v)


def latest_records(path: Path) -> list[dict[str, Any]]:
    """The records of the newest run of each benchmark (a run = one ``run_id``)."""
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    # A failed or timed-out run does not replace the last measured one in the table.
    newest: dict[str, str] = {}
    for ok_only in (False, True):
        for r in records:
            if not ok_only or r.get("status", "ok") == "ok":
                newest[r.get("bench", "?")] = r.get("run_id", "")
    return [r for r in records if r.get("run_id", "") == newest.get(r.get("bench", "?"))]


def render_table(records: list[dict[str, Any]]) -> str:
    """Markdown: machine(s), then one row per record with its measured values."""
    lines = []
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        runs.setdefault(r.get("run_id", ""), []).append(r)
    for group in sorted(runs.values(), key=lambda g: g[0].get("run_at", "")):
        info = group[0].get("machine", {})
        names = ", ".join(sorted({r.get("bench", "?") for r in group}))
        if info:
            gpu = f"; GPU {info['gpu']}" if info.get("gpu") else "; no GPU"
            lines.append(f"- {names}: run {info.get('date')} on {info.get('nproc')} CPUs (`nproc`), "
                         f"{info.get('cpu')}, {info.get('mem_gb')} GB RAM{gpu}; Python "
                         f"{info.get('python')}, torch {info.get('torch')}; 1-min load average at "
                         f"start {info.get('load_avg_1min')}")
    lines += ["", "| benchmark | status | time (s) | measured (one run) |", "|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r.get("bench", ""), r.get("run_at", ""))):
        values = {k: v for k, v in r.items() if k not in CONTEXT_KEYS}
        cell = "; ".join(f"{k} = {_fmt(v)}" for k, v in values.items()).replace("|", "\\|") or "—"
        lines.append(f"| {r.get('bench')} | {r.get('status', '?')} | {_fmt(r.get('elapsed_s', ''))} | {cell} |")
    return "\n".join(lines) + "\n"


def update_doc(doc: Path, table: str) -> None:
    """Replace the text between the markers (or append a marked section)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Performance\n"
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Measured results\n\n" + block + "\n"
    tmp = doc.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="Comma list of benchmark names (bench_<name>.py).")
    ap.add_argument("--skip", default="", help="Comma list of benchmarks to leave out.")
    ap.add_argument("--budget", type=float, default=None,
                    help="Seconds per script (default 600, more for the slow ones).")
    ap.add_argument("--full", action="store_true", help="Use each script's own (full) defaults.")
    ap.add_argument("--args", action="append", default=[],
                    help='Override a script\'s arguments: "name=--flag value …" (repeatable).')
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--logs", type=Path, default=None, help="Keep each script's full output here.")
    ap.add_argument("--no-doc", action="store_true", help="Do not touch docs/performance.md.")
    ap.add_argument("--table-only", action="store_true", help="Only rebuild the docs table.")
    ap.add_argument("--dry-run", action="store_true", help="Print what would run.")
    opts = ap.parse_args()

    if not opts.table_only:
        scripts = discover()
        only = {s.strip() for s in opts.only.split(",") if s.strip()}
        skip = {s.strip() for s in opts.skip.split(",") if s.strip()}
        unknown = (only | skip) - set(scripts)
        if unknown:
            print(f"unknown benchmark(s) {sorted(unknown)}; have {sorted(scripts)}", file=sys.stderr)
            return 2
        overrides = {}
        for item in opts.args:
            name, _, rest = item.partition("=")
            overrides[name.strip()] = shlex.split(rest)
        machine = machine_info()
        run_id = uuid.uuid4().hex[:12]
        failed: list[str] = []
        skipped: list[str] = []
        print(f"machine: {machine}", flush=True)
        for name, script in scripts.items():
            if (only and name not in only) or name in skip:
                continue
            args = overrides.get(name, [] if opts.full else QUICK_ARGS.get(name, []))
            budget = opts.budget if opts.budget is not None else BUDGETS.get(name, 600.0)
            need = missing_data(name, args)
            if opts.dry_run:
                print(f"would skip {script.name}: {need}" if need else
                      f"would run {script.name} {' '.join(args)} (budget {budget:.0f} s)")
                continue
            run_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            if need:
                print(f"== {name}: skipped: {need}", flush=True)
                records, status = [{"note": f"skipped: {need}"}], {
                    "status": "skipped", "rc": None, "elapsed_s": 0.0, "script": script.name, "args": args}
                skipped.append(name)
            else:
                records, status = run_one(name, script, args, budget, opts.logs)
            if status["status"] not in ("ok", "skipped"):
                failed.append(name)
            base = {"run_id": run_id, "run_at": run_at, "machine": machine, **status}
            rows = [{"bench": r.get("bench", name), **{k: v for k, v in r.items() if k != "bench"}, **base}
                    for r in records] or [{"bench": name, **base}]
            opts.results.parent.mkdir(parents=True, exist_ok=True)
            with open(opts.results, "a", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        if opts.dry_run:
            return 0
    if not opts.no_doc:
        update_doc(opts.doc, render_table(latest_records(opts.results)))
        print(f"table updated in {opts.doc}")
    if not opts.table_only and skipped:
        print(f"skipped (dataset absent): {', '.join(skipped)}", file=sys.stderr)
    if not opts.table_only and failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
