"""CLIP figures, each side by side with the plain open_clip way measured in the same run.

    .venv/bin/python benchmarks/speed/bench_clip.py            # both parts
    .venv/bin/python benchmarks/speed/bench_clip.py --part throughput

1. throughput: core.clip.embed_images vs a plain open_clip loop (bundle.preprocess per PIL image, stack,
   encode_image, normalise) on the same model and images: first run (cache empty) and a cached re-run.
   Inputs: N built-in shapes (32 px, the mini-CLIP's size) given as an ImageSet, and the same shapes as PIL
   images. Goal: ratio >= 1.0x; cached re-run <= 5 % of the first.
2. offline: how long load_clip takes to fail for a pretrained tag that is not cached, with no network
   (the real probe; run on a machine with no route to the hub), vs open_clip.create_model_and_transforms
   on the same tag (~45 s of hub retries here; skipped with --skip-open-clip-offline). Goal: <= 5 s.
The shipped mini-CLIP's zero-shot accuracy: ``benchmarks/quality/bench_mini_clip.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

QUESTION = "CLIP image embedding: core.clip.embed_images vs a plain open_clip loop, cached re-runs, failing offline"
FULL = ["--skip-open-clip-offline"]
QUICK = ["--n", "300", "--skip-open-clip-offline"]
MINUTES = (1, 2)


def throughput(n: int) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from core.clip import EmbeddingCache, embed_images, load_clip
    from core.clip.cache import close_all
    from core.data import load_dataset

    bundle = load_clip("mini-clip")
    shapes = load_dataset("shapes", n=n, size=32, seed=5)
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in shapes.images]

    def plain(batch_size: int = 256) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(pil), batch_size):
                x = torch.stack([bundle.preprocess(im) for im in pil[s:s + batch_size]]).to(bundle.device)
                out.append(bundle.model.encode_image(x, normalize=True).cpu().numpy())
        return np.concatenate(out)

    with tempfile.TemporaryDirectory() as tmp:
        def ours(images, fresh: bool) -> float:
            cache = EmbeddingCache(bundle.fingerprint, root=tmp)
            if fresh:
                cache.clear()
            close_all()  # as a new process: the cached run reads the disk
            t0 = time.perf_counter()
            embed_images(bundle, images, cache=cache)
            return time.perf_counter() - t0

        plain()  # warm-up (first-call allocations)
        rows = []
        for what, images in (("ImageSet", shapes), ("PIL images", pil)):
            t0 = time.perf_counter()
            ref = plain()
            t_plain = time.perf_counter() - t0
            t_first = ours(images, fresh=True)
            t_cached = ours(images, fresh=False)
            diff = float(np.abs(embed_images(bundle, images, cache=False) - ref).max())
            rows.append((what, t_plain, t_first, t_cached, diff))
    print(f"\n[throughput] {n} shapes at 32 px, mini-CLIP, {bundle.device}")
    print(f"{'input':12s} {'plain loop':>11s} {'embed_images':>13s} {'ratio':>7s} {'cached':>9s} {'cached/first':>13s}"
          f" {'max |diff|':>11s}")
    for what, tp, tf, tc, d in rows:
        print(f"{what:12s} {tp:10.3f}s {tf:12.3f}s {tp / tf:6.2f}x {tc:8.3f}s {tc / tf:12.1%} {d:11.1e}")
        report(f"embed {n} shapes at 32 px with the mini-CLIP ({what}), core.clip.embed_images",
               f"{tf:.3f} s", beside=f"plain open_clip loop {tp:.3f} s ({tp / tf:.2f}x); cached re-run {tc:.3f} s "
                                     f"({tc / tf:.1%} of the first)",
               goal=f">= 1.0x and cached <= 5%: {'met' if tp / tf >= 1.0 and tc / tf <= 0.05 else 'not met'}")


def offline(skip_open_clip: bool) -> None:
    from core.clip import load_clip
    from core.errors import DownloadUnavailable

    t0 = time.perf_counter()
    import open_clip  # noqa: F401 - imported first: on the page it already is, and it costs seconds here

    print(f"\n[offline] import open_clip: {time.perf_counter() - t0:.1f} s (not counted below)")
    tag = ("RN50", "yfcc15m")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        try:
            load_clip(f"{tag[0]}:{tag[1]}", cache_dir=cache, device="cpu")
            outcome = "loaded (the network is reachable here: this figure needs a machine without one)"
        except DownloadUnavailable as err:
            outcome = f"DownloadUnavailable: {str(err)[:90]}…"
        ours = time.perf_counter() - t0
        print(f"[offline] load_clip('{tag[0]}:{tag[1]}') with an empty cache: {ours:.2f} s -> {outcome}")
        report("load_clip of an uncached pretrained tag, offline: seconds to a clear failure", f"{ours:.2f} s",
               beside=outcome.split(":")[0], goal=f"<= 5 s: {'met' if ours <= 5 else 'not met'}")
        if skip_open_clip:
            return
        t0 = time.perf_counter()
        try:
            open_clip.create_model_and_transforms(tag[0], pretrained=tag[1], cache_dir=cache)
            theirs_outcome = "loaded"
        except Exception as err:  # noqa: BLE001 - whatever open_clip raises after its retries
            theirs_outcome = type(err).__name__
        theirs = time.perf_counter() - t0
        print(f"[offline] open_clip.create_model_and_transforms, same tag: {theirs:.1f} s -> {theirs_outcome}; "
              f"load_clip fails {theirs / max(ours, 1e-9):.0f}x sooner")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "throughput", "offline"), default="all")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--skip-open-clip-offline", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    print(machine_info())
    if args.part in ("all", "throughput"):
        throughput(args.n)
    if args.part in ("all", "offline"):
        offline(args.skip_open_clip_offline)


if __name__ == "__main__":
    main()
