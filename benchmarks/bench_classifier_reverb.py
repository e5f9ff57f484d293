"""Classifier accuracy on dry and reverberant clips of one held-out fold.

The Imagine captioner classifies separated sources of reverberant (FUSS-recipe) mixtures, so a
classifier that only knows dry clips is judged on the wrong condition. For every clip of
``--fold`` (or of the whole folder) this scores each ``--model`` on the dry clip and on ``--copies`` reverberant copies,
each in its own seeded random shoebox room (``train_classifier.clip_room`` with ``--seed``;
use a seed other than the training seed so the rooms are new), and prints the accuracies and
one JSON line.

Usage:
    python benchmarks/bench_classifier_reverb.py --data runs/synth-lib --fold 5 \\
        --model src/auralens/presets/classifier-synth --model runs/classifier-synth-reverb
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="ESC-50-layout folder")
    ap.add_argument("--fold", type=int, default=None,
                    help="held-out fold to score (default: every clip, for a library never trained on)")
    ap.add_argument("--model", action="append", required=True, help="classifier directory (repeat)")
    ap.add_argument("--copies", type=int, default=2, help="reverberant copies per clip")
    ap.add_argument("--seed", type=int, default=1234, help="room seed (not the training seed)")
    args = ap.parse_args()
    os.environ.setdefault("AURALENS_NO_PROGRESS", "1")

    from auralens.audio import load
    from auralens.data.esc50 import load_esc50
    from auralens.encoders.base import EXTRACTORS
    from auralens.encoders.train_classifier import clip_room, reverberate

    clips = [c for c in load_esc50(args.data) if args.fold is None or c.fold == args.fold]
    if not clips:
        raise SystemExit(f"{args.data}: no clips in fold {args.fold}")
    t0 = time.perf_counter()
    dry = [load(c.path, 16000) for c in clips]
    # clip by clip, its copies in order: reshaped to [clips, copies] after classifying
    wet = [reverberate(w, clip_room(args.seed, c.id, k + 1))
           for c, w in zip(clips, dry, strict=True) for k in range(args.copies)]
    t_rooms = time.perf_counter() - t0
    result = {"bench": "classifier_reverb", "data": str(args.data), "fold": args.fold,
              "clips": len(clips), "copies": args.copies, "room_seed": args.seed,
              "rooms_s": round(t_rooms, 1), "models": {}}
    where = "every fold" if args.fold is None else f"fold {args.fold}"
    print(f"{where}: {len(clips)} clips, {args.copies} reverberant copies each")
    print(f"{'model':60s}  dry acc  reverb acc")
    for spec in args.model:
        ext = EXTRACTORS.build(f"classifier:{spec}")
        truth = np.array([ext.labels.index(c.labels[0]) for c in clips])
        acc_dry = float(np.mean(ext.classify(dry).argmax(1) == truth))
        pred = ext.classify(wet).argmax(1).reshape(len(clips), args.copies)
        acc_wet = float(np.mean(pred == truth[:, None]))
        result["models"][spec] = {"dry_acc": round(acc_dry, 4), "reverb_acc": round(acc_wet, 4)}
        print(f"{spec:60s}  {acc_dry:7.3f}  {acc_wet:10.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
