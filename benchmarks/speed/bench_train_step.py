"""Seconds per training step, side by side in one run: what feeds it, the lesson's levers, the optimizer.

Three parts (``--part``, default all), each timing alternately so that the machine's drift lands on every row:

- ``feed``: one SimCLR step (two views + forward + backward + AdamW) of small_cnn on batch 256 at 32 px, fed by
  the batched ``core.augment`` against the common per-image torchvision/PIL pipeline with the same ops (the PIL
  images made once, outside the clock, as a dataset holding them would). Goal >= 1.5x.
- ``levers``: a step of the first lesson as the Train page builds it (``benchmarks._lesson.lesson_config``), beside
  the same lesson with one lever changed (small_cnn instead of fast_cnn, fp32 / bf16 autocast instead of the
  lesson's precision, batch 128) and the textbook run (``core.train.default_preset`` on 32 px shapes); no
  evaluation or snapshot inside the clock. The lesson's evaluation (kNN over its reference and held-out sets) is
  timed apart.
- ``optimizer``: the AdamW step alone on the lesson's encoder, fused kernel (what ``core.train`` uses on CPU and
  CUDA) against torch's per-parameter loop (``foreach=False``).

    python benchmarks/speed/bench_train_step.py                       # every part
    python benchmarks/speed/bench_train_step.py --part feed --batch 256 --size 32 --repeats 7
    python benchmarks/speed/bench_train_step.py --part levers --repeats 5 --threads 1
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402
from benchmarks._lesson import lesson_config, warm_up  # noqa: E402

QUESTION = "Seconds per training step: batched vs per-image augmentation, the lesson's levers, fused AdamW"
FULL: list[str] = []
QUICK = ["--repeats", "1", "--batch", "32", "--optimizer-steps", "5"]
MINUTES = (1, 4)


def _alternate(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, called in turn ``repeats`` times after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def part_feed(batch: int, size: int, repeats: int) -> None:
    from PIL import Image

    from benchmarks.speed.bench_augment import torchvision_pipeline
    from core.augment import AugmentConfig, augment
    from core.data import load_dataset
    from core.losses import nt_xent
    from core.models import EncoderConfig, build_model

    images = load_dataset("shapes", n=batch, size=size).images
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    cfg = AugmentConfig()
    per_image = torchvision_pipeline(cfg, size)
    gen = torch.Generator().manual_seed(0)
    model = build_model(EncoderConfig(), device="cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def train_on(v1: torch.Tensor, v2: torch.Tensor) -> None:
        z = model(torch.cat([v1, v2]))
        loss = nt_xent(z[: len(v1)], z[len(v1):], 0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def reference() -> None:
        train_on(torch.stack([per_image(p) for p in pil]), torch.stack([per_image(p) for p in pil]))

    med = _alternate({"per-image": reference, "batched": lambda: train_on(augment(images, cfg, gen), augment(images, cfg, gen))}, repeats)
    ratio = med["per-image"] / med["batched"]
    print(f"(feed) SimCLR step, batch {batch} x 2 views at {size} px, small_cnn, median of {repeats}: "
          f"per-image torchvision/PIL {med['per-image']:.3f} s, batched core.augment {med['batched']:.3f} s "
          f"({ratio:.2f}x; goal >= 1.5x)")
    report(f"SimCLR step, batch {batch} x 2 views at {size} px, small_cnn, fed by core.augment",
           f"{med['batched']:.3f} s", beside=f"per-image torchvision/PIL {med['per-image']:.3f} s (**{ratio:.2f}x**)",
           goal=f">= 1.5x: {'met' if ratio >= 1.5 else 'not met'}")


def part_levers(repeats: int, batch_override: int | None) -> None:
    from core.data import load_dataset
    from core.train import Trainer, default_preset

    cfg, data_opts = lesson_config()
    quiet = dict(steps=10_000, snapshot_every=10_000, eval_every=10_000)  # the step alone
    lesson = replace(cfg, **quiet, batch_size=batch_override or cfg.batch_size)
    data = load_dataset("shapes", **data_opts)
    textbook = replace(default_preset(), **quiet, batch_size=batch_override or default_preset().batch_size)
    levers = {
        "lesson": (lesson, data),
        "lesson, small_cnn": (replace(lesson, encoder=replace(lesson.encoder, arch="small_cnn")), data),
        "lesson, fp32": (replace(lesson, precision="fp32"), data),
        "lesson, bf16 autocast": (replace(lesson, precision="bf16"), data),
        "lesson, batch 128": (replace(lesson, batch_size=128), data),
        "textbook (default_preset, 32 px)": (textbook, load_dataset("shapes", n=data_opts["n"], size=32, seed=0)),
    }
    trainers = {k: Trainer(c, d) for k, (c, d) in levers.items()}
    for t in trainers.values():
        t.step()  # the process's first optimizer step and convolutions of each shape
    med = _alternate({k: t.step for k, t in trainers.items()}, repeats)
    base = med["lesson"]
    print(f"(levers) s/step, median of {repeats} (lesson: {lesson.encoder.arch} width {lesson.encoder.width}, "
          f"batch {lesson.batch_size}, {data_opts['size']} px, precision {trainers['lesson'].precision})")
    for k, m in med.items():
        print(f"  {k:<34} {m:7.3f} s  {base / m:5.2f}x the lesson's rate  ({trainers[k].precision})")
    ev = trainers["lesson"]
    t0 = time.perf_counter()
    ev.evaluate()
    t_eval = time.perf_counter() - t0
    print(f"  the lesson's evaluation ({len(ev._knn_ref)} reference + {len(ev.heldout)} held-out images): "
          f"{t_eval:.2f} s")
    report(f"the first lesson's step (batch {lesson.batch_size}, {lesson.encoder.arch}, {data_opts['size']} px)",
           f"{base:.3f} s", beside="; ".join(f"{k} {m:.3f} s" for k, m in med.items() if k != "lesson"))
    report("the first lesson's evaluation (kNN on its reference and held-out sets)", f"{t_eval:.2f} s")


def part_optimizer(steps: int) -> None:
    from core.data import load_dataset
    from core.train import Trainer

    cfg, data_opts = lesson_config()
    trainer = Trainer(replace(cfg, eval_every=10_000, snapshot_every=10_000), load_dataset("shapes", **data_opts))
    for _ in range(3):
        trainer.step()  # the gradients and AdamW's moments exist
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in trainer.optimizer.param_groups]
    params = [p for g in groups for p in g["params"]]
    loop = torch.optim.AdamW(groups, lr=cfg.lr, foreach=False)
    for _ in range(3):
        loop.step()  # its moments exist too (on the same gradients)
    times = {"fused": [], "loop": []}
    for _ in range(steps):
        for name, opt in (("fused", trainer.optimizer), ("loop", loop)):
            t0 = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t0)
    fused, per = (1000 * statistics.median(times[k]) for k in ("fused", "loop"))
    n_params = sum(p.numel() for p in params)
    fused_flag = trainer.optimizer.defaults.get("fused")
    print(f"(optimizer) AdamW step, {n_params:,} parameters in {len(params)} tensors, median of {steps}: "
          f"core.train's optimizer (fused={fused_flag}) {fused:.2f} ms, per-parameter loop {per:.2f} ms "
          f"({per / fused:.2f}x)")
    report("AdamW step on the lesson's encoder, core.train's optimizer", f"{fused:.2f} ms",
           beside=f"per-parameter loop (foreach=False) {per:.2f} ms ({per / fused:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("all", "feed", "levers", "optimizer"), default="all")
    ap.add_argument("--batch", type=int, default=256, help="(feed) batch size; (levers) 256 keeps the lessons' own")
    ap.add_argument("--size", type=int, default=32, help="(feed) image size")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--optimizer-steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info())
    print(f"{torch.get_num_threads()} torch threads; load average {os.getloadavg()[0]:.1f} at the start")
    warm_up()
    if args.part in ("all", "feed"):
        part_feed(args.batch, args.size, args.repeats)
    if args.part in ("all", "levers"):
        part_levers(args.repeats, None if args.batch == 256 else args.batch)
    if args.part in ("all", "optimizer"):
        part_optimizer(args.optimizer_steps)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
