"""Defaults that learn: ``Trainer(TrainConfig(), load_dataset(name))`` on each trainable built-in dataset.

Prints, per dataset, held-out kNN accuracy on its main factor for the untrained encoder and after the default
steps with the dataset's augmentation recipe (core.augment.recipe_for), beside the textbook SimCLR recipe run
with the same seed and steps, so the effect of the per-dataset recipe is measured in the same run. With
``--archs`` each encoder runs both recipes in turn (the Train page's default encoder against another, same run).
photos (14 images) is too small to train and is left out.

Run:  .venv/bin/python benchmarks/quality/bench_defaults.py [--datasets shapes digits] [--threads 2]
      .venv/bin/python benchmarks/quality/bench_defaults.py --archs small_cnn fast_cnn
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

QUESTION = "Do the defaults learn on every trainable built-in dataset (held-out kNN, untrained -> default run)?"
FULL: list[str] = []
QUICK = ["--datasets", "digits", "--steps", "3"]
MINUTES = (1, 6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["shapes", "digits"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--archs", nargs="+", help="encoders to run (EncoderConfig.arch; default: TrainConfig()'s)")
    ap.add_argument("--steps", type=int, default=0, help="steps per run (0: TrainConfig's default)")
    args = ap.parse_args()

    import torch

    from core.augment import PRESETS, recipe_name_for
    from core.data import load_dataset
    from core.models import EncoderConfig
    from core.train import TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    archs = args.archs or [TrainConfig().encoder.arch]
    print(machine_info())
    print(f"{'dataset':<8} {'encoder':<10} {'factor':<7} {'recipe':<8} {'untrained':>9} {'default run':>11} "
          f"{'gain':>6} {'textbook':>8} {'steps':>5} {'seconds':>7}")
    for name in args.datasets:
        data = load_dataset(name)
        factor = data.factors[0]
        for arch in archs:
            results = {}
            for recipe, augment in (("dataset", None), ("textbook", PRESETS["simclr"])):
                cfg = TrainConfig(encoder=EncoderConfig(arch=arch), augment=augment)
                if args.steps:
                    cfg = replace(cfg, steps=args.steps)
                t0 = time.perf_counter()
                trainer = Trainer(cfg, data)
                before = trainer.evaluate().knn[factor]
                trainer.run()
                after = trainer.evaluate().knn[factor]
                results[recipe] = (before, after, time.perf_counter() - t0, trainer.cfg.steps)
            before, after, secs, steps = results["dataset"]
            print(f"{name:<8} {arch:<10} {factor:<7} {recipe_name_for(name):<8} {before:>9.3f} {after:>11.3f} "
                  f"{after - before:>+6.3f} {results['textbook'][1]:>8.3f} {steps:>5} {secs:>7.1f}", flush=True)
            report(f"{name}, {arch}, {steps} steps: held-out {factor} kNN after the default run", f"{after:.3f}",
                   beside=f"untrained {before:.3f}; textbook recipe {results['textbook'][1]:.3f}; {secs:.0f} s",
                   goal=f"beats untrained: {'yes' if after > before else 'no'}")


if __name__ == "__main__":
    main()
