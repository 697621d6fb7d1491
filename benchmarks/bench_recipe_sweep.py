"""Steps a lesson recipe needs: SimCLR on shapes with changes to the first lesson's recipe, trained until held-out
shape kNN >= 0.95 (checked every 20 steps, evaluation outside the clock), once per seed.

Prints the steps needed (None: not within ``max``), ms per step, and the kNN curve every 100 steps. Runs on one
torch thread, so two sweeps can share a 2-core machine; the ms per step are then one-thread figures. Each spec
is JSON: ``name``, and any of ``arch`` (encoder), ``w`` (encoder width), ``size`` (image px), ``b`` (batch),
``lr``, ``max`` (steps), ``n`` (shapes), ``aug`` (augmentation overrides), or any other TrainConfig field.

    python benchmarks/bench_recipe_sweep.py '[0,1,2]' '{"name": "lesson"}' '{"name": "b64", "b": 64, "lr": 4e-3}'
    python benchmarks/bench_recipe_sweep.py '[0,1,2,3,4,5,6,7,8,9]' '{"name": "crop 0.3", "aug": {"crop_scale": [0.3, 1]}}'
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import replace

import torch
from _common import machine_info
from bench_time_to_insight import lesson_config

from core.augment import AugmentConfig
from core.data import load_dataset
from core.metrics import knn_accuracy
from core.train import Trainer


def sweep_one(spec: dict, seed: int) -> tuple[int | None, float, list[float]]:
    base, data = lesson_config()
    kw = dict(spec)
    kw.pop("name")
    size, aug = kw.pop("size", data["size"]), kw.pop("aug", None)
    width, max_steps, n = kw.pop("w", base.encoder.width), kw.pop("max", 800), kw.pop("n", data["n"])
    arch = kw.pop("arch", base.encoder.arch)
    cfg = replace(base, encoder=replace(base.encoder, arch=arch, width=width), batch_size=kw.pop("b", base.batch_size),
                  seed=seed, snapshot_every=10**9, eval_every=10**9, **kw)
    if aug:
        cfg = replace(cfg, augment=AugmentConfig.from_dict({**cfg.augment.to_dict(), **aug}))
    trainer = Trainer(cfg, load_dataset("shapes", n=n, size=size, seed=0))
    train_s, curve = 0.0, []
    while trainer.step_count < max_steps:
        t0 = time.perf_counter()
        for _ in range(20):
            trainer.step()
        train_s += time.perf_counter() - t0
        ref, test = trainer._knn_ref, trainer.heldout
        acc = knn_accuracy(trainer._features(ref), ref.labels["shape"], trainer._features(test),
                           test.labels["shape"], k=cfg.knn_k)
        curve.append(acc)
        if acc >= 0.95:
            return trainer.step_count, 1000 * train_s / trainer.step_count, curve
    return None, 1000 * train_s / trainer.step_count, curve


def main() -> None:
    torch.set_num_threads(1)
    print(machine_info(), "| 1 torch thread")
    seeds = json.loads(sys.argv[1])
    summary = []
    for raw in sys.argv[2:]:
        spec = json.loads(raw)
        needed = []
        for seed in seeds:
            steps, ms, curve = sweep_one(spec, seed)
            needed.append(steps)
            print(f"{spec['name']:<28} seed {seed}: steps {steps} ({ms:.1f} ms/step) "
                  f"{[round(c, 2) for c in curve[4::5]]}", flush=True)
        reached = sorted(s for s in needed if s is not None)
        # a seed that never got there counts as more steps than any that did
        median = statistics.median(s if s is not None else math.inf for s in needed)
        span = f"{reached[0]}-{reached[-1]}" if reached else "none reached"
        summary.append(f"  {spec['name']:<28} median {median:.0f} steps, range {span}, "
                       f"{len(needed) - len(reached)} of {len(needed)} not reached")
    print("\nSteps to held-out shape kNN >= 0.95 (checked every 20):")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
