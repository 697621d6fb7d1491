"""The first lesson trained data-parallel in two one-thread processes, beside the same lesson in one process on
torch's threads, in the same run: seconds until held-out shape kNN >= 0.95 (bench_time_to_insight's definition).

Why: on this 2-core CPU one process's second OpenMP thread adds little to a small CNN's step, while two jobs on
one thread each do ~1.8x one job's work (bench_classroom.py --part jobs). Two ranks of ``core.distributed``
(gloo on 127.0.0.1, the global batch of 128 split 64 + 64, NT-Xent over the gathered batch, each rank's
BatchNorm over its own 128 views) may learn the lesson sooner in wall time. Both ranks run the trainer's own
evaluations; rank 0 decides when to stop and tells the other. Printed for each run: seconds from the spawn
(interpreter start, imports and process-group set-up included) and from the moment both ranks were ready (what
workers started ahead of time, as the app's warm-up does, would pay). Localhost only, two processes, bounded by
``--max-seconds``.

    python benchmarks/bench_ddp_lesson.py --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.multiprocessing as mp

from _common import machine_info
from bench_app import _load_harness
from bench_time_to_insight import lesson_config, run as run_one_process

WORLD = 2


def _rank(rank: int, port: int, seed: int, target: float, max_s: float, t_spawn: float, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from core import distributed
    from core.data import load_dataset
    from core.train import Trainer

    ctx = distributed.init_from_env("cpu")
    try:
        dist.barrier()
        t_ready = time.time()
        cfg, data_opts = lesson_config()
        cfg = replace(cfg, seed=seed, batch_size=cfg.batch_size // WORLD)
        trainer = distributed.make_distributed(Trainer(cfg, load_dataset("shapes", **data_opts), device="cpu"), ctx)
        state = {"reached": None, "best": 0.0}
        flag = torch.zeros(1)

        class Goal:  # after the page's own callbacks; rank 0 decides, every rank stops at the same step
            def on_step(self, t, record) -> None:
                ev = t.evals[-1] if t.evals else None
                if rank == 0:
                    if ev is not None and ev.step == t.step_count:
                        state["best"] = max(state["best"], ev.knn["shape"])
                        if ev.knn["shape"] >= target:
                            state["reached"] = time.time()
                    flag[0] = 1.0 if state["reached"] is not None or time.time() - t_ready > max_s else 0.0
                dist.broadcast(flag, 0)

        trainer.run(10**9, callbacks=[*trainer.default_callbacks(), Goal()], stop=lambda: bool(flag[0] > 0))
        reached, best = state["reached"], state["best"]
        if rank == 0:
            Path(out).write_text(json.dumps({
                "from_spawn": None if reached is None else reached - t_spawn,
                "from_ready": None if reached is None else reached - t_ready,
                "startup": t_ready - t_spawn, "step": trainer.step_count, "best": best,
                "steps_per_s": trainer.step_count / max(trainer.seconds, 1e-9)}))
    finally:
        distributed.shutdown()


def run_two_ranks(seed: int, target: float, max_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.json")
        t_spawn = time.time()
        mp.spawn(_rank, args=(_load_harness().free_port(), seed, target, max_s, t_spawn, out), nprocs=WORLD, join=True)
        return json.loads(Path(out).read_text())


def _s(v: float | None) -> str:
    return f"{v:.1f} s" if v is not None else "not reached"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--max-seconds", type=float, default=100.0)
    args = ap.parse_args()
    print(machine_info())
    print(f"load average {os.getloadavg()[0]:.1f} at the start; one process on {torch.get_num_threads()} torch "
          f"threads vs {WORLD} processes on 1 thread each (gloo, 127.0.0.1); CPU figures")
    cfg, data_opts = lesson_config()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        one = run_one_process("one process", cfg, data_opts, args.target, args.max_seconds, seed)
        two = run_two_ranks(seed, args.target, args.max_seconds)
        print(f"two ranks        {_s(two['from_spawn'])} from the spawn ({_s(two['from_ready'])} from ready, "
              f"start-up {two['startup']:.1f} s) at step {two['step']} | {two['steps_per_s']:.2f} steps/s "
              f"(evals included) | best {two['best']:.3f}", flush=True)
        rows.append((seed, one, two))
    print(f"\n[cpu] time to shape kNN >= {args.target}, the first lesson (global batch {cfg.batch_size}); load average "
          f"at the end {os.getloadavg()[0]:.1f}")
    for seed, one, two in rows:
        ratio = (f"{one['seconds'] / two['from_ready']:.2f}x" if one["seconds"] and two["from_ready"] else "-")
        print(f"  seed {seed}: one process {_s(one['seconds'])} (step {one['step']}, {one['steps_per_s']:.1f} "
              f"steps/s) | two ranks {_s(two['from_ready'])} from ready, {_s(two['from_spawn'])} from the spawn "
              f"(step {two['step']}, {two['steps_per_s']:.1f} steps/s) | one / two (ready) {ratio}")

    def med(xs):
        xs = [x if x is not None else float("inf") for x in xs]
        return statistics.median(xs)

    print(f"  median: one process {med([o['seconds'] for _, o, _ in rows]):.1f} s, two ranks "
          f"{med([t['from_ready'] for _, _, t in rows]):.1f} s from ready, "
          f"{med([t['from_spawn'] for _, _, t in rows]):.1f} s from the spawn (goal 20 s)")


if __name__ == "__main__":
    main()
