"""Batch embedding on Ray Data (local mode) vs the same function in-process, measured in the same run.

    python benchmarks/speed/bench_ray.py                 # 2,000 PNG shapes at 32 px, 2 actors
    python benchmarks/speed/bench_ray.py --n 10000 --actors 2 --address auto   # on a running cluster

Prints Ray's start time, the job's wall time to Parquet shards, and core.batch_embed.embed_paths over the same
files in this process. On one small machine Ray adds its start-up and scheduling; the figure that matters on a
cluster is that the actor pool scales with nodes, which one machine cannot show.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks import _common  # noqa: E402
from benchmarks._common import report  # noqa: E402

QUESTION = "Batch embedding of an image folder on Ray Data (local mode) against the same function in-process"
FULL: list[str] = []
QUICK = ["--n", "200"]
MINUTES = (1, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--address", default=None)
    args = ap.parse_args()

    import ray
    import torch
    from PIL import Image

    from core.batch_embed import embed_paths, list_images, load_checkpoint_model, read_shards
    from core.data import load_dataset
    from core.ray_embed import run_embed_job
    from core.train import TrainConfig, Trainer

    print(_common.machine_info())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shapes = load_dataset("shapes", n=args.n, size=args.size)
        for i, (img, lab) in enumerate(zip(shapes.images, shapes.labels["shape"])):
            d = tmp / "images" / shapes.classes["shape"][lab]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:05d}.png")
        ckpt = Trainer(TrainConfig(steps=1), load_dataset("shapes", n=200, size=args.size), device="cpu").save(
            tmp / "run.safetensors")

        torch.set_num_threads(1)
        model, size = load_checkpoint_model(ckpt, device="cpu")
        refs = list_images(tmp / "images")
        t0 = time.perf_counter()
        local = embed_paths([r.path for r in refs], model, size=size)
        t_local = time.perf_counter() - t0

        t0 = time.perf_counter()
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
        t_start = time.perf_counter() - t0
        try:
            result = run_embed_job(tmp / "images", ckpt, tmp / "shards", actors=args.actors)
        finally:
            ray.shutdown()
        emb = read_shards(tmp / "shards")
        order = {r.id: i for i, r in enumerate(refs)}
        diff = float(np.abs(emb.vectors - local.vectors[[order[i] for i in emb.ids]]).max())
    print(f"{args.n:,} images of {args.size} px, {args.actors} actors")
    print(f"Ray local start {t_start:.1f} s; job to {len(result.shards)} Parquet shards {result.seconds:.1f} s "
          f"({args.n / result.seconds:,.0f} images/s)")
    print(f"in-process embed_paths, one thread: {t_local:.1f} s ({args.n / t_local:,.0f} images/s)")
    print(f"side by side: Ray job / in-process = {result.seconds / t_local:.2f}x; max |vector difference| {diff:.1e}")
    report(f"embed {args.n:,} images of {args.size} px on Ray, {args.actors} actors", f"{result.seconds:.1f} s",
           beside=f"in-process, one thread {t_local:.1f} s ({result.seconds / t_local:.2f}x); Ray start "
                  f"{t_start:.1f} s; max diff {diff:.1e}")


if __name__ == "__main__":
    main()
