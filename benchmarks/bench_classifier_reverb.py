"""Classifier accuracy on dry and reverberant clips of one held-out fold.

The Imagine captioner classifies separated sources of reverberant (FUSS-recipe) mixtures, so a
classifier that only knows dry clips is judged on the wrong condition. For every clip of
``--fold`` (or of the whole folder) this scores each ``--model`` on the dry clip and on ``--copies`` reverberant copies,
each in its own seeded random shoebox room (``train_classifier.clip_room`` with ``--seed``;
use a seed other than the training seed so the rooms are new), and prints the accuracies and
one JSON line. Every model's classes must include every label of the scored clips.

Without arguments it scores the committed ESC-10 classifier (``src/auralens/presets/classifier``,
trained on folds 1–3) on fold 4 of ``../shared/data/esc10`` (relative to the repository root),
the measurement quoted in that preset's model card.

Usage:
    python benchmarks/bench_classifier_reverb.py [--data ../shared/data/esc10 --fold 4] \\
        [--model src/auralens/presets/classifier --model OTHER_CLASSIFIER_DIR]
    python benchmarks/bench_classifier_reverb.py --data runs/synth-lib --fold 5 \\
        --model src/auralens/presets/classifier-synth --model runs/classifier-synth-reverb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "esc10"
DEFAULT_MODEL = ROOT / "src" / "auralens" / "presets" / "classifier"
#: The committed classifier's held-out fold of the default data (folds 1–3 trained it).
DEFAULT_FOLD = 4


def _name(spec: str) -> str:
    """The model as given, or relative to the repository root when it lies inside it."""
    try:
        return str(Path(spec).resolve().relative_to(ROOT))
    except ValueError:
        return spec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="ESC-50-layout folder (default: ../shared/data/esc10 next to the repository)")
    ap.add_argument("--fold", type=int, default=None,
                    help=f"held-out fold to score (default: {DEFAULT_FOLD} for the default data; "
                         "every clip for --data, e.g. a library never trained on)")
    ap.add_argument("--model", action="append", default=None,
                    help="classifier directory (repeat; default: src/auralens/presets/classifier)")
    ap.add_argument("--copies", type=int, default=2, help="reverberant copies per clip")
    ap.add_argument("--seed", type=int, default=1234, help="room seed (not the training seed)")
    args = ap.parse_args()
    os.environ.setdefault("AURALENS_NO_PROGRESS", "1")
    if args.data is None:
        args.data = DEFAULT_DATA
        if args.fold is None:
            args.fold = DEFAULT_FOLD
    models = args.model or [str(DEFAULT_MODEL)]
    if not (args.data / "meta" / "esc50.csv").exists():
        print(f"error: {args.data} is not an ESC-50-layout dataset", file=sys.stderr)
        return 2
    if args.copies < 1:
        print(f"error: --copies must be at least 1, got {args.copies}", file=sys.stderr)
        return 2

    from auralens.audio import load
    from auralens.data.esc50 import load_esc50
    from auralens.encoders.base import EXTRACTORS
    from auralens.encoders.train_classifier import clip_room, reverberate

    clips = [c for c in load_esc50(args.data) if args.fold is None or c.fold == args.fold]
    if not clips:
        print(f"error: {args.data}: no clips in fold {args.fold}", file=sys.stderr)
        return 2
    # Every model must know every label before any room is built (a model that lacks one
    # cannot be scored on those clips).
    labels = sorted({c.labels[0] for c in clips})
    extractors = {}
    for spec in models:
        ext = EXTRACTORS.build(f"classifier:{spec}")
        missing = [lab for lab in labels if lab not in ext.labels]
        if missing:
            print(f"error: the classes of model {_name(spec)} do not cover the labels of {args.data}: "
                  f"missing {', '.join(missing)} ({len(missing)} of {len(labels)})", file=sys.stderr)
            return 1
        extractors[_name(spec)] = ext

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
    for name, ext in extractors.items():
        truth = np.array([ext.labels.index(c.labels[0]) for c in clips])
        acc_dry = float(np.mean(ext.classify(dry).argmax(1) == truth))
        pred = ext.classify(wet).argmax(1).reshape(len(clips), args.copies)
        acc_wet = float(np.mean(pred == truth[:, None]))
        result["models"][name] = {"dry_acc": round(acc_dry, 4), "reverb_acc": round(acc_wet, 4)}
        print(f"{name:60s}  {acc_dry:7.3f}  {acc_wet:10.3f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
