"""Time to insight: the first lesson (SimCLR on shapes), seconds from pressing Play until the held-out kNN
accuracy on the ``shape`` factor reaches a target (default 0.95). Data generation, model building and every
evaluation are included, as the page would pay them.

Several recipes run one after the other in the same process (the old lesson first, the new lesson, then
one lever at a time), so their ratios are measured side by side on the same, possibly loaded, machine.
The untrained encoder's score is printed too: an untrained small CNN already gets ~0.8 on simple shapes.

    python benchmarks/bench_time_to_insight.py                      # old vs new lesson
    python benchmarks/bench_time_to_insight.py --recipes all        # every lever
    python benchmarks/bench_time_to_insight.py --recipes old,new,bf16 --max-seconds 90
    python benchmarks/bench_time_to_insight.py --recipes old,lesson13,new --seeds 0,1,2   # medians over seeds
    python benchmarks/bench_time_to_insight.py --recipes lesson16,new --seeds 0,1,2,3,4   # small_cnn vs fast_cnn
    python benchmarks/bench_time_to_insight.py --recipes new --seeds 0,1,2 --blas-compare   # BLAS pools as is vs 1 thread
    python benchmarks/bench_time_to_insight.py --recipes lesson27,new --seeds 0,1,2,3,4    # crops to 30% vs to 80%

``--blas-compare`` runs every recipe twice per seed, first as ``NAME/blas-as-is`` (numpy's and scipy's OpenBLAS
keep their own thread pools during evaluations and snapshots, as before ``core.device.small_blas``), then as
committed (one BLAS thread there), and prints the ratio between the two.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from _common import ROOT, machine_info

import core.device
from core.data import load_dataset
from core.device import pick_device
from core.metrics import knn_accuracy
from core.models import EncoderConfig
from core.train import Trainer, TrainConfig, default_preset

LESSON = ROOT / "assets" / "presets" / "simclr_shapes.json"


def lesson_config(preset: Path = LESSON) -> tuple[TrainConfig, dict]:
    """The config and dataset options a Train-page preset (default: the Home page's first lesson) opens the
    Train page with: the page's defaults plus the preset's settings, as ``ui.presets.apply`` sets them, built
    into a config by the page's own ``ui.settings.train_config``."""
    from ui import settings as S

    values = S.defaults(S.PAGE_NAMESPACES["train"])
    values.update(S.validate(json.loads(Path(preset).read_text())["settings"], S.PAGE_NAMESPACES["train"])[0])
    data = {"n": values["train.n"], "size": values["train.image_size"], "seed": 0}
    return S.train_config(values), data


OLD = (replace(default_preset(), augment=default_preset().augment), {"n": 5000, "size": 32, "seed": 0})


def recipes() -> dict[str, tuple[TrainConfig, dict]]:
    old_cfg, old_data = OLD
    new_cfg, new_data = lesson_config()
    out = {"old": (old_cfg, old_data), "new": (new_cfg, new_data)}
    # One lever at a time, applied to the old recipe.
    out["batch128"] = (replace(old_cfg, batch_size=128), old_data)
    out["batch128_lr4e-3"] = (replace(old_cfg, batch_size=128, lr=4e-3), old_data)
    out["lr4e-3"] = (replace(old_cfg, lr=4e-3), old_data)
    out["cosine_lr4e-3"] = (replace(old_cfg, lr=4e-3, lr_schedule="cosine"), old_data)
    out["width16"] = (replace(old_cfg, encoder=EncoderConfig(width=16)), old_data)
    out["size24"] = (old_cfg, {**old_data, "size": 24})
    out["cheap_eval"] = (replace(old_cfg, knn_reference=1000, eval_every=10), {**old_data, "n": 2500})
    out["bf16"] = (replace(old_cfg, precision="bf16"), old_data)
    # The previous lesson (stop 13): batch 128 at lr 4e-3 on the old encoder and images.
    out["lesson13"] = (replace(old_cfg, batch_size=128, lr=4e-3, steps=500), old_data)
    # Narrower encoder on smaller images, with the batch and rate that learned fastest on them (seeds 0-2).
    small = replace(old_cfg, encoder=EncoderConfig(width=16))
    out["w16_s24"] = (small, {**old_data, "size": 24})
    out["w16_s24_b128_lr6e-3"] = (replace(small, batch_size=128, lr=6e-3), {**old_data, "size": 24})
    # The lesson as stops 14-16 left it: the same recipe on small_cnn (a full-resolution first layer) instead of
    # fast_cnn (the same network from half resolution on).
    out["lesson16"] = (replace(new_cfg, encoder=replace(new_cfg.encoder, arch="small_cnn")), new_data)
    # The lesson itself under bf16 autocast: worth trying only on a CPU with avx512_bf16 (machine_info says).
    out["new_bf16"] = (replace(new_cfg, precision="bf16"), new_data)
    # ...and in fp32 whatever the CPU (the lesson trains on "auto": bf16 only where core.device._cpu_bf16_pays).
    out["new_fp32"] = (replace(new_cfg, precision="fp32"), new_data)
    out["w16_s24_b64_lr4e-3"] = (replace(small, batch_size=64, lr=4e-3), {**old_data, "size": 24})
    # The lesson as stops 17-27 left it: crops down to 30% of the image area instead of 80% (stop 28).
    out["lesson27"] = (replace(new_cfg, augment=replace(new_cfg.augment, crop_scale=(0.3, 1.0))), new_data)
    # The cheap levers together: a narrower encoder, batch 128 at a higher rate with a cosine decay, and evaluation
    # every 10 steps against 1,000 reference images on 2,500 generated shapes.
    out["combined"] = (replace(old_cfg, batch_size=128, lr=4e-3, lr_schedule="cosine", steps=300,
                               encoder=EncoderConfig(width=16), knn_reference=1000, eval_every=10),
                       {**old_data, "n": 2500})
    return out


AS_IS = "/blas-as-is"


def warm_up() -> None:
    """The app warms up at start (ui.warmup); so do the benchmarks, so that the first recipe does not pay the
    process's first optimizer and first convolutions alone."""
    t_w = time.perf_counter()
    warm = Trainer(replace(TrainConfig(), batch_size=16, probe_size=32, knn_reference=64),
                   load_dataset("shapes", n=160, size=16, seed=0))
    warm.step()
    warm.evaluate()
    print(f"warm-up {time.perf_counter() - t_w:.1f} s (outside every recipe's clock)")


@contextmanager
def blas_pools(as_is: bool):
    """``as_is``: numpy's BLAS pools left alone in evaluations and snapshots, as before ``core.device.small_blas``."""
    committed = core.device.SMALL_BLAS_THREADS
    core.device.SMALL_BLAS_THREADS = None if as_is else committed
    try:
        yield
    finally:
        core.device.SMALL_BLAS_THREADS = committed


class Goal:
    """A run callback: the best shape kNN so far, and the seconds since ``t_start`` when it first reached
    ``target``."""

    def __init__(self, target: float, t_start: float) -> None:
        self.target, self.t_start = target, t_start
        self.best, self.reached = 0.0, None

    def on_step(self, trainer, record) -> None:
        ev = trainer.evals[-1] if trainer.evals else None
        if ev is not None and ev.step == trainer.step_count:
            self.best = max(self.best, ev.knn["shape"])
            if ev.knn["shape"] >= self.target and self.reached is None:
                self.reached = time.perf_counter() - self.t_start


def run(name: str, cfg: TrainConfig, data_opts: dict, target: float, max_seconds: float, seed: int) -> dict:
    with blas_pools(name.endswith(AS_IS)):
        return _run(name, cfg, data_opts, target, max_seconds, seed)


def _run(name: str, cfg: TrainConfig, data_opts: dict, target: float, max_seconds: float, seed: int) -> dict:
    t_start = time.perf_counter()
    data = load_dataset("shapes", **data_opts)
    cfg = replace(cfg, seed=seed, steps=max(cfg.steps, 1))
    trainer = Trainer(cfg, data)
    setup = time.perf_counter() - t_start
    # The untrained score, outside the clock (the page does not compute it).
    t_u = time.perf_counter()
    untrained = knn_accuracy(trainer._features(trainer._knn_ref), trainer._knn_ref.labels["shape"],
                             trainer._features(trainer.heldout), trainer.heldout.labels["shape"], k=cfg.knn_k)
    t_start += time.perf_counter() - t_u
    goal = Goal(target, t_start)
    # The page's schedule (Trainer.default_callbacks: an evaluation after step 1 and every eval_every steps), until
    # the goal or the time limit.
    trainer.run(10**9, callbacks=[*trainer.default_callbacks(), goal],
                stop=lambda: goal.reached is not None or time.perf_counter() - t_start >= max_seconds)
    reached, best, last_step = goal.reached, goal.best, trainer.step_count
    steps_s = last_step / max(trainer.seconds, 1e-9)
    result = {"name": name, "seconds": reached, "step": last_step, "setup": setup, "untrained": untrained,
              "best": best, "steps_per_s": steps_s, "loss": trainer.history[-1].loss,
              "batch": cfg.batch_size, "lr": cfg.lr, "schedule": cfg.lr_schedule, "precision": trainer.precision,
              "width": cfg.encoder.width, "size": data_opts.get("size"), "n": data_opts.get("n"),
              "eval_every": cfg.eval_every, "knn_reference": cfg.knn_reference}
    shown = f"{reached:6.1f} s" if reached is not None else f"  >{max_seconds:.0f} s"
    print(f"{name:<16} {shown} at step {last_step:4d} | setup {setup:4.1f} s | {steps_s:5.2f} steps/s (evals "
          f"included, {trainer.precision}) | untrained {untrained:.3f} -> best {best:.3f} | "
          f"last loss {result['loss']:.3f}", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--max-seconds", type=float, default=150.0, help="give up on a recipe after this long")
    ap.add_argument("--recipes", default="old,new", help="comma-separated names, or 'all'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default=None, help="comma-separated seeds: every recipe runs once per seed")
    ap.add_argument("--goal", type=float, default=None, help="seconds (default: 20 on CPU, 3 on a GPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--blas-compare", action="store_true",
                    help=f"run each recipe also as NAME{AS_IS}: numpy's BLAS pools left alone in evaluations")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    goal = args.goal if args.goal is not None else (20.0 if device.type == "cpu" else 3.0)
    print(machine_info())
    print(f"device {device.type}: {torch.get_num_threads()} torch threads; load average "
          f"{os.getloadavg()[0]:.1f} at the start (other sessions share this machine); goal {goal:.0f} s "
          f"({device.type.upper()} figure)")
    warm_up()
    table = recipes()
    names = list(table) if args.recipes == "all" else args.recipes.split(",")
    if args.blas_compare:
        names = [m for n in names for m in (n + AS_IS, n)]
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    runs = [dict(run(n, *table[n.removesuffix(AS_IS)], args.target, args.max_seconds, s), seed=s)
            for s in seeds for n in names]
    results = []
    for n in names:  # one line per recipe: the median over the seeds (a run that never got there counts as inf)
        mine = [r for r in runs if r["name"] == n]
        secs = sorted(r["seconds"] if r["seconds"] is not None else float("inf") for r in mine)
        median = statistics.median(secs)
        results.append({**mine[0], "seconds": median if math.isfinite(median) else None,
                        "per_seed": {r["seed"]: r["seconds"] for r in mine}, "runs": mine})
    # Ratios against the old recipe, or against the first one named when the old one did not run.
    base_name = "old" if "old" in names else names[0]
    base = next((r for r in results if r["name"] == base_name and r["seconds"]), None)
    print(f"\n[{device.type}] time to shape kNN >= {args.target} (goal {goal:.0f} s); load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    for r in results:
        ratio = f"{base['seconds'] / r['seconds']:.2f}x faster than {base_name}" if base and r["seconds"] else ""
        met = "met" if r["seconds"] and r["seconds"] <= goal else "NOT met"
        sec = f"{r['seconds']:.1f} s" if r["seconds"] else "not reached"
        seeds_txt = ""
        if len(seeds) > 1:
            seeds_txt = "  seeds " + ", ".join(f"{s}: {v:.1f} s" if v else f"{s}: -" for s, v in r["per_seed"].items())
        print(f"  {r['name']:<20} {sec:>12}  {ratio:<31} goal {met}{seeds_txt}")
    if args.blas_compare:
        print("\nOne BLAS thread in evaluations and snapshots (committed) against the BLAS pools as they are:")
        by_name = {r["name"]: r for r in results}
        for n in names[1::2]:
            a, b = by_name[n + AS_IS], by_name[n]
            for s in seeds:
                ra, rb = next(x for x in a["runs"] if x["seed"] == s), next(x for x in b["runs"] if x["seed"] == s)
                secs = (f"{ra['seconds']:.1f} s -> {rb['seconds']:.1f} s ({ra['seconds'] / rb['seconds']:.2f}x)"
                        if ra["seconds"] and rb["seconds"] else "not reached by both")
                print(f"  {n} seed {s}: {secs}; {ra['steps_per_s']:.2f} -> {rb['steps_per_s']:.2f} steps/s "
                      f"({rb['steps_per_s'] / ra['steps_per_s']:.2f}x), steps {ra['step']} / {rb['step']}")
    if args.json:
        args.json.write_text(json.dumps({"device": device.type, "results": results}, indent=2))


if __name__ == "__main__":
    main()
