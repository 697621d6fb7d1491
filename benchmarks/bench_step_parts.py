"""Two pieces of the first lesson's training loop and the loop itself, as committed against how they were before,
side by side in one run:

- the optimizer step: AdamW's fused kernel (``core.train`` on the CPU and CUDA) against torch's per-parameter loop;
- an evaluation: the probe set's two fixed augmented views drawn once per trainer against redrawn every time;
- the lesson itself (``bench_time_to_insight.lesson_config``: steps with their evaluations and snapshots), both
  levers on against both off, two trainers of the same seed stepping in alternating blocks so that the host's drift
  lands on both.

    python benchmarks/bench_step_parts.py
    python benchmarks/bench_step_parts.py --rounds 12 --block 50 --threads 1
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import torch
from _common import machine_info
from bench_time_to_insight import lesson_config, warm_up

from core.data import load_dataset
from core.train import EvaluateEvery, SnapshotEvery, Trainer


class Before(Trainer):
    """The trainer as it was: per-parameter AdamW, and the probe's two views redrawn at every evaluation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in self.optimizer.param_groups]
        self.optimizer = torch.optim.AdamW(groups, lr=self.cfg.lr, foreach=False)

    def _fixed_probe_views(self):
        self._probe_views = None
        return super()._fixed_probe_views()


def _ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):6.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8, help="alternating blocks per trainer in the lesson comparison")
    ap.add_argument("--block", type=int, default=50, help="steps per block")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info())
    print(f"{torch.get_num_threads()} torch threads; load average {os.getloadavg()[0]:.1f} at the start")
    warm_up()
    cfg, data_opts = lesson_config()
    cfg = replace(cfg, precision="fp32")  # the same arithmetic on every host; "auto" is fp32 on most CPUs anyway
    data = load_dataset("shapes", **data_opts)

    # 1. The optimizer step alone, after a few steps (the moments exist), alternating.
    quiet = replace(cfg, eval_every=10**6, snapshot_every=10**6)
    now, was = Trainer(quiet, data), Before(quiet, data)
    for t in (now, was):
        for _ in range(5):
            t.step()
    opt = {"fused": [], "loop": []}
    for _ in range(200):
        for name, t in (("fused", now), ("loop", was)):
            t0 = time.perf_counter()
            t.optimizer.step()
            opt[name].append(time.perf_counter() - t0)
    print(f"AdamW step, {sum(p.numel() for p in now.model.parameters()):,} parameters in "
          f"{len(list(now.model.parameters()))} tensors: fused {_ms(opt['fused'])}, per-parameter loop "
          f"{_ms(opt['loop'])} ({statistics.median(opt['loop']) / statistics.median(opt['fused']):.2f}x)")

    # 2. One evaluation each, alternating: probe views kept (now) against redrawn (before); same seed, same shapes.
    ev = {"kept": [], "redrawn": []}
    for _ in range(15):
        for name, t in (("kept", now), ("redrawn", was)):
            t0 = time.perf_counter()
            t.evaluate()
            ev[name].append(time.perf_counter() - t0)
    print(f"evaluation ({len(now._knn_ref)} reference + {len(now.heldout)} held-out images, probe {len(now.probe)}): "
          f"views kept {_ms(ev['kept'])}, redrawn {_ms(ev['redrawn'])} "
          f"({statistics.median(ev['redrawn']) / statistics.median(ev['kept']):.2f}x)")

    # 3. The lesson's steps with their evaluations and snapshots, both levers on against both off.
    lesson = {"now": Trainer(cfg, data), "before": Before(cfg, data)}
    # The lesson's schedule, without an extra evaluation at the end of every block.
    callbacks = {name: [SnapshotEvery(cfg.snapshot_every), EvaluateEvery(cfg.eval_every, at_end=False)]
                 for name in lesson}
    spent = {name: 0.0 for name in lesson}
    for _ in range(args.rounds):
        for name, t in lesson.items():
            t0 = time.perf_counter()
            t.run(args.block, callbacks=callbacks[name])
            spent[name] += time.perf_counter() - t0
    steps = args.rounds * args.block
    rate = {name: steps / spent[name] for name in lesson}
    same = [r.loss for r in lesson["now"].history[:5]], [r.loss for r in lesson["before"].history[:5]]
    print(f"the lesson, {steps} steps each (evaluations every {cfg.eval_every}, snapshots every {cfg.snapshot_every}): "
          f"now {rate['now']:.2f} steps/s, before {rate['before']:.2f} steps/s "
          f"({rate['now'] / rate['before']:.3f}x); held-out shape kNN at the end "
          f"{lesson['now'].evals[-1].knn['shape']:.3f} / {lesson['before'].evals[-1].knn['shape']:.3f}; "
          f"first losses {'equal to 1e-4' if max(abs(a - b) for a, b in zip(*same)) < 1e-4 else 'differ'}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
