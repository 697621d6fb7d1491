"""One SimCLR training step (augment two views + forward + backward + optimiser step) fed by our batched
``core.augment`` vs by the common per-image torchvision/PIL pipeline with the same ops. Same encoder
(small_cnn), same batch, same loss; both are warmed up and timed alternately in one run. Goal >= 1.5x.

    python benchmarks/bench_train_step.py [--batch 256] [--size 32] [--repeats 7] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import machine_info
from bench_augment import torchvision_pipeline
from PIL import Image

from core.augment import AugmentConfig, augment
from core.data import load_dataset
from core.losses import nt_xent
from core.models import EncoderConfig, build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info())

    images = load_dataset("shapes", n=args.batch, size=args.size).images
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]  # made once, as a PIL dataset would
    cfg = AugmentConfig()
    per_image = torchvision_pipeline(cfg, args.size)
    gen = torch.Generator().manual_seed(0)
    model = build_model(EncoderConfig(), device="cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def train_on(v1: torch.Tensor, v2: torch.Tensor) -> None:
        z = model(torch.cat([v1, v2]))
        loss = nt_xent(z[: len(v1)], z[len(v1):], 0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def ours() -> None:
        train_on(augment(images, cfg, gen), augment(images, cfg, gen))  # the trainer's two views

    def reference() -> None:
        v1 = torch.stack([per_image(p) for p in pil])
        v2 = torch.stack([per_image(p) for p in pil])
        train_on(v1, v2)

    timings: dict[str, list[float]] = {"per-image torchvision/PIL": [], "batched core.augment": []}
    fns = dict(zip(timings, (reference, ours)))
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in timings.items()}
    print(f"SimCLR step, batch {args.batch} x 2 views at {args.size} px, small_cnn, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    for name, m in med.items():
        print(f"  {name:<28} {m:7.3f} s")
    ratio = med["per-image torchvision/PIL"] / med["batched core.augment"]
    print(f"speed-up: {ratio:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
