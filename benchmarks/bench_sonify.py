"""Sonify timings on ESC-10 with offline defaults, all measured in one run.

Measures:
  * ``prepare`` of the whole dataset, first (cold cache) vs second (cached) → speed-up ratio;
  * one training epoch of the ``lin`` and ``conv`` gates (prepared tensors already in memory);
  * rendering one 5 s clip (extractor → gate → codec decode → minmax), model already loaded.

Prints a small table, the ratios and one JSON line (prefixed ``JSON``).

    .venv/bin/python benchmarks/bench_sonify.py [--data ../shared/data/esc10] [--limit N]

When the committed ``classifier`` extractor is not available the benchmark says so and uses a
random-weight AST of the same architecture family built on the spot (``--encoder`` picks any
other spec).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AURALENS_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def _random_ast(out: Path) -> str:
    """A random-weight AST with the real patch grid (128 mels × 1024 frames → 12 × 101)."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(0)
    cfg = ASTConfig(hidden_size=192, num_hidden_layers=2, num_attention_heads=3, intermediate_size=384)
    ASTModel(cfg).save_pretrained(out)
    ASTFeatureExtractor().save_pretrained(out)
    return f"ast:{out}"


def _test_split_check(data: Path, limit: int | None, seed: int = 42) -> str | None:
    """Why the first ``limit`` clips leave no test clip to render (None: they leave one).

    Uses the split ``prepare`` makes (DATA's split files, else the stratified split with
    ``seed``, prepare's default) and names the smallest limit that leaves a test clip.
    """
    from auralens.data import load_dataset
    from auralens.errors import AuralensError
    from auralens.sonify.prepare import _splits

    def n_test(k: int) -> int:
        return len(_splits(data, clips[:k], seed)[0]["test"])

    try:
        clips = sorted(load_dataset(data), key=lambda c: c.id)
        k = len(clips) if limit is None else min(limit, len(clips))
        if not clips or n_test(k) > 0:
            return None  # (no clips: prepare says so)
        if k == len(clips) or n_test(len(clips)) == 0:
            return f"{data}: the split of its {len(clips)} clips has no test clip (the benchmark renders one)"
        lo, hi = k, len(clips)  # n_test(lo) == 0 < n_test(hi); it grows with k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if n_test(mid) > 0 else (mid, hi)
    except AuralensError:
        return None  # prepare reports it
    return (f"--limit {limit} leaves no clip in the test split (the benchmark renders one); "
            f"use --limit {hi} or more")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "esc10")
    ap.add_argument("--encoder", default="classifier")
    ap.add_argument("--layer", default="patch")
    ap.add_argument("--codec", default="mel")
    ap.add_argument("--limit", type=int, default=None, help="only the first N clips")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    args = ap.parse_args()
    if not (args.data / "meta" / "esc50.csv").exists():
        print(f"error: {args.data} is not an ESC-50-layout dataset", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"error: --limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    problem = _test_split_check(args.data, args.limit)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    import numpy as np
    import torch

    from auralens.audio import load_sr
    from auralens.errors import AuralensError
    from auralens.sonify.prepare import build_extractor, load_prepared, prepare
    from auralens.sonify.render import load_run, render
    from auralens.sonify.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sonify-"))
    encoder, note = args.encoder, ""
    try:
        build_extractor(encoder, args.layer)
    except AuralensError as exc:
        if args.encoder != "classifier":
            raise
        encoder = _random_ast(tmp / "ast-random")
        note = f"classifier unavailable ({str(exc)[:80]}…); used a random-weight AST (hidden 192)"
        print(f"note: {note}")

    cache = tmp / "cache"
    t0 = time.perf_counter()
    first = prepare(args.data, encoder, args.codec, args.layer, tmp / "prep", cache_dir=cache,
                    batch_size=args.batch_size, limit=args.limit)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = prepare(args.data, encoder, args.codec, args.layer, tmp / "prep2", cache_dir=cache,
                     batch_size=args.batch_size, limit=args.limit)
    t_cached = time.perf_counter() - t0
    assert second.computed_embeddings == 0 and second.computed_latents == 0

    t0 = time.perf_counter()
    data = load_prepared(tmp / "prep")
    t_load = time.perf_counter() - t0
    epoch_s: dict[str, float] = {}
    for gate in ("lin", "conv"):
        res = train(data, tmp / f"run-{gate}", TrainConfig(gate=gate, epochs=1, tensorboard=False))
        hist = json.loads((tmp / f"run-{gate}" / "history.jsonl").read_text().splitlines()[-1])
        epoch_s[gate] = hist["time_s"]
        print(f"train {gate}: 1 epoch {hist['time_s']:.2f} s (val loss {res.best_val_loss:.4g})")

    loaded = load_run(tmp / "run-lin")
    if not data.records.get("test"):
        print("error: no test clip was prepared (the test split's clips failed; see "
              f"{tmp / 'prep' / 'errors.jsonl'})", file=sys.stderr)
        return 1
    clip = Path(data.records["test"][0]["path"])
    wave, sr = load_sr(clip)
    render(loaded, wave[: sr // 2], sr)  # warm-up (first-call allocations)
    t0 = time.perf_counter()
    out = render(loaded, wave, sr, post="minmax")
    t_render = time.perf_counter() - t0
    assert np.all(np.isfinite(out))

    n = first.n_ok
    result = {
        "bench": "sonify", "data": str(args.data), "clips": n, "encoder": encoder,
        "layer": args.layer, "codec": args.codec, "note": note,
        "emb_shape": data.emb["train"].shape[1:], "lat_shape": data.lat["train"].shape[1:],
        "prepare_first_s": round(t_first, 3), "prepare_cached_s": round(t_cached, 3),
        "prepare_speedup": round(t_first / t_cached, 1),
        "load_prepared_s": round(t_load, 3),
        "epoch_lin_s": epoch_s["lin"], "epoch_conv_s": epoch_s["conv"],
        "conv_over_lin": round(epoch_s["conv"] / epoch_s["lin"], 2),
        "render_5s_clip_s": round(t_render, 3),
        "render_realtime_factor": round((wave.shape[0] / sr) / t_render, 2),
        "threads": torch.get_num_threads(),
    }
    print(f"prepare: first {t_first:.2f} s, cached {t_cached:.3f} s → {result['prepare_speedup']}× faster "
          f"({n} clips, emb {list(result['emb_shape'])}, latent {list(result['lat_shape'])})")
    print(f"one epoch: lin {epoch_s['lin']:.2f} s, conv {epoch_s['conv']:.2f} s "
          f"(conv/lin = {result['conv_over_lin']})")
    print(f"render one {wave.shape[0] / sr:.1f} s clip: {t_render:.3f} s "
          f"({result['render_realtime_factor']}× real time)")
    print("JSON " + json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in result.items()}))
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
