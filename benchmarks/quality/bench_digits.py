"""Digits (scikit-learn's 8x8 handwritten digits, real data): held-out kNN accuracy of a SimCLR encoder,
beside raw-pixel kNN and the same encoder untrained, measured in one run.

    python benchmarks/quality/bench_digits.py [--steps 400] [--size 16]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

from core.augment import PRESETS
from core.data import load_dataset
from core.metrics import knn_accuracy
from core.train import TrainConfig, Trainer

QUESTION = "Real data: held-out kNN on scikit-learn's digits, SimCLR against raw pixels and the untrained encoder"
FULL: list[str] = []
QUICK = ["--steps", "3"]
MINUTES = (1, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--size", type=int, default=16, help="digits are upsampled to this many pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    print(machine_info())
    data = load_dataset("digits", size=args.size)
    cfg = TrainConfig(
        augment=PRESETS["digits"], steps=args.steps, seed=args.seed, batch_size=256,
        eval_every=10_000, snapshot_every=10_000, knn_reference=10_000, knn_k=args.k,
    )
    trainer = Trainer(cfg, data)
    ref, test = trainer.train_set, trainer.heldout
    y_ref, y_test = ref.labels["digit"], test.labels["digit"]

    def flat(s):
        return s.images.reshape(len(s), -1).float().numpy()

    raw = knn_accuracy(flat(ref), y_ref, flat(test), y_test, k=args.k)
    untrained = knn_accuracy(trainer._features(ref), y_ref, trainer._features(test), y_test, k=args.k)
    t0 = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - t0
    trained = knn_accuracy(trainer._features(ref), y_ref, trainer._features(test), y_test, k=args.k)
    print(f"train {len(ref)} / held-out {len(test)} digits at {args.size}px, SimCLR {args.steps} steps in {seconds:.1f} s")
    print(f"{'features':<22}{'kNN accuracy (cosine, k=%d)' % args.k:>30}")
    for name, acc in [("raw pixels", raw), ("untrained encoder", untrained), ("SimCLR encoder", trained)]:
        print(f"{name:<22}{acc:>30.3f}")
    print(f"ratio SimCLR / raw pixels: {trained / raw:.3f}; SimCLR / untrained: {trained / untrained:.3f}")
    report(f"digits at {args.size} px, SimCLR {args.steps} steps: held-out kNN (cosine, k={args.k})", f"{trained:.3f}",
           beside=f"raw pixels {raw:.3f}; untrained encoder {untrained:.3f}; {seconds:.0f} s of training")


if __name__ == "__main__":
    main()
