"""Seconds per training step of the first lesson's levers, side by side in one run (alternating, median).

Cheap to run on a loaded machine: it times steps, not time to insight (bench_time_to_insight.py does that).
Each lever is one change to the old lesson (SimCLR, small_cnn width 32, batch 256, 32 px, fp32).

    python benchmarks/bench_levers.py [--repeats 5] [--threads 0]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import torch
from _common import machine_info

from core.data import load_dataset
from core.device import pick_device
from core.models import EncoderConfig
from core.train import Trainer, default_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info())
    print(f"device {pick_device().type}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} "
          "(machine shared with other sessions)")
    # no snapshots / evaluations inside these steps: the step alone
    base = replace(default_preset(), steps=10_000, snapshot_every=10_000, eval_every=10_000)
    data32 = load_dataset("shapes", n=2000, size=32, seed=0)
    data24 = load_dataset("shapes", n=2000, size=24, seed=0)
    levers = {
        "old (b256, w32, 32px, fp32)": (base, data32),
        "batch 128": (replace(base, batch_size=128), data32),
        "width 16": (replace(base, encoder=EncoderConfig(width=16)), data32),
        "24 px images": (base, data24),
        "bf16 autocast": (replace(base, precision="bf16"), data32),
    }
    trainers = {k: Trainer(c, d) for k, (c, d) in levers.items()}
    for t in trainers.values():
        t.step()
        t.step()  # warm-up: the process's first optimizer step and convolutions
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(args.repeats):
        for k, t in trainers.items():
            t0 = time.perf_counter()
            t.step()
            times[k].append(time.perf_counter() - t0)
    old = statistics.median(times["old (b256, w32, 32px, fp32)"])
    t_eval = {}
    for k in ("old (b256, w32, 32px, fp32)", "width 16"):
        t0 = time.perf_counter()
        trainers[k].evaluate()
        t_eval[k] = time.perf_counter() - t0
    print(f"{'lever':<30} {'s/step':>8} {'speed-up':>9}  loss after {args.repeats + 2} steps")
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f"{k:<30} {m:8.3f} {old / m:8.2f}x  {trainers[k].history[-1].loss:.3f}")
    print("evaluation (2000 reference + held-out images): " + ", ".join(f"{k} {v:.2f} s" for k, v in t_eval.items()))


if __name__ == "__main__":
    main()
