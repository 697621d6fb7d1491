"""The CLIP embedding disk cache (core.clip.cache) under more writes than its cap: does it stay within it?

    .venv/bin/python benchmarks/speed/bench_clip_cache.py                  # 64 MB cap, 4x that written, 512-d vectors
    .venv/bin/python benchmarks/speed/bench_clip_cache.py --cap-mb 16 --times 3 --dim 64

Writes batches of 256 random unit vectors (one batch = what embed_images stores per model batch) under fresh
keys until ``times`` x the cap of raw float32 has been written, measuring the folder on disk (database, log and
its index) after every batch. Prints: the cap, bytes written, the largest and final folder size, the vectors
that remain, how many of the last batch's and the first batch's are still there, and the time a vector takes
to store and to read back (one process; the machine's load beside them).
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

QUESTION = "The capped CLIP embedding disk cache under 4x its cap of writes: stays within it? store/read per vector"
FULL: list[str] = []
QUICK = ["--cap-mb", "4", "--times", "2", "--dim", "256"]
MINUTES = (1, 1)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap-mb", type=float, default=64)
    ap.add_argument("--times", type=float, default=4.0, help="raw bytes written, as a multiple of the cap")
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()

    import numpy as np

    from core.clip.cache import EmbeddingCache

    print(machine_info())
    print(f"load average before: {os.getloadavg()[0]:.2f} (a shared machine: times are indicative)")
    cap = int(args.cap_mb * (1 << 20))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cache"
        store = EmbeddingCache("bench-model", root=folder, cap=cap)
        written = largest = batches = 0
        t_put = 0.0
        while written < args.times * cap:
            v = rng.standard_normal((256, args.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            keys = [f"{batches}-{i}" for i in range(256)]
            t0 = time.perf_counter()
            store.put(keys, v)
            t_put += time.perf_counter() - t0
            written += v.nbytes
            largest = max(largest, folder_bytes(folder))
            batches += 1
        t0 = time.perf_counter()
        last = store.get([f"{batches - 1}-{i}" for i in range(256)])
        t_get = time.perf_counter() - t0
        first = store.get([f"0-{i}" for i in range(256)])
        from core.clip.cache import _open

        remaining = len(_open(str(folder), cap))
        final = folder_bytes(folder)
    mb = 1 << 20
    print(f"\n[cap] {args.dim}-d float32 vectors, batches of 256")
    print(f"cap {cap / mb:.1f} MB | written {written / mb:.1f} MB ({batches * 256} vectors) | largest folder "
          f"{largest / mb:.2f} MB | final {final / mb:.2f} MB | within cap: {largest <= cap}")
    print(f"remaining {remaining} vectors ({remaining * args.dim * 4 / mb:.1f} MB raw) | last batch kept "
          f"{sum(x is not None for x in last)}/256 | first batch kept {sum(x is not None for x in first)}/256")
    print(f"store {t_put / (batches * 256) * 1e6:.0f} us/vector (eviction included) | read "
          f"{t_get / 256 * 1e6:.0f} us/vector | load average after: {os.getloadavg()[0]:.2f}")
    report(f"CLIP cache, {args.cap_mb:g} MB cap, {written / mb:.0f} MB of {args.dim}-d vectors written: "
           "largest folder", f"{largest / mb:.2f} MB",
           beside=f"final {final / mb:.2f} MB; {remaining} vectors remain; last batch kept "
                  f"{sum(x is not None for x in last)}/256, first {sum(x is not None for x in first)}/256",
           goal=f"within the cap: {'met' if largest <= cap else 'not met'}")
    report(f"CLIP cache, {args.dim}-d vectors: time to store one (eviction included)",
           f"{t_put / (batches * 256) * 1e6:.0f} us", beside=f"read one back: {t_get / 256 * 1e6:.0f} us")


if __name__ == "__main__":
    main()
