"""What colour jitter teaches: SimCLR on shapes with colour jitter + grayscale on vs off.

After the same number of steps, a linear probe per factor on held-out encoder features shows what the
embedding kept and what it learned to ignore. Expected: with jitter on, colour accuracy falls while shape
stays >= 0.9.

    python benchmarks/quality/bench_invariance.py [--steps 300]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

from core.augment import AugmentConfig
from core.data import load_dataset
from core.metrics import invariance_report
from core.train import DEFAULT_DATASET, Trainer, default_preset

QUESTION = "What colour jitter teaches: linear probes of colour and shape with jitter+grayscale on vs off"
FULL: list[str] = []
QUICK = ["--steps", "3"]
MINUTES = (1, 4)


def train_and_report(data, augment: AugmentConfig, steps: int, seed: int) -> dict[str, dict]:
    cfg = replace(default_preset(), augment=augment, steps=steps, seed=seed, eval_every=10_000, snapshot_every=10_000)
    trainer = Trainer(cfg, data)
    t0 = time.perf_counter()
    trainer.run()
    emb = trainer.embeddings(trainer.heldout)
    rows = invariance_report(emb, trainer.heldout, seed=seed)
    print(f"  trained {steps} steps in {time.perf_counter() - t0:.1f} s, final loss {trainer.history[-1].loss:.3f}")
    return {row["factor"]: row for row in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(machine_info())
    data = load_dataset(DEFAULT_DATASET["name"], **DEFAULT_DATASET["options"])
    base = default_preset().augment
    runs = {
        "jitter+grayscale ON": base,
        "jitter+grayscale OFF": replace(base, color_jitter=False, grayscale=False),
    }
    results = {}
    for name, aug in runs.items():
        print(f"{name}:")
        results[name] = train_and_report(data, aug, args.steps, args.seed)

    factors = list(next(iter(results.values())))
    print("\nlinear-probe accuracy on held-out encoder features (chance in brackets)")
    print(f"{'factor':<12}" + "".join(f"{name:>24}" for name in results))
    for f in factors:
        cells = "".join(
            f"{r[f]['accuracy']:>15.3f} ({r[f]['chance']:.2f}) {r[f]['verdict'][:1]}" for r in results.values()
        )
        print(f"{f:<12}{cells}")
    on, off = results["jitter+grayscale ON"], results["jitter+grayscale OFF"]
    print(f"\ncolour accuracy ON/OFF ratio: {on['colour']['accuracy'] / off['colour']['accuracy']:.2f}; "
          f"shape accuracy with jitter ON: {on['shape']['accuracy']:.3f}")
    met = on["colour"]["accuracy"] < off["colour"]["accuracy"] and on["shape"]["accuracy"] >= 0.9
    report(f"{args.steps} steps with colour jitter + grayscale: linear probe on held-out features",
           f"colour **{on['colour']['accuracy']:.3f}**, shape **{on['shape']['accuracy']:.3f}**",
           beside=f"jitter off: colour {off['colour']['accuracy']:.3f}, shape {off['shape']['accuracy']:.3f}; "
                  f"chance {on['colour']['chance']:.2f} / {on['shape']['chance']:.2f}",
           goal=f"colour falls, shape >= 0.9: {'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
