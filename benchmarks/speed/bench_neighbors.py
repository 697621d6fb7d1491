"""Exact cosine k-NN: faiss (``core.neighbors`` on the CPU) vs the torch chunked top-k, side by side in one run.

    python benchmarks/speed/bench_neighbors.py                 # N = 2,000 / 20,000 / 100,000, D = 64, k = 10
    python benchmarks/speed/bench_neighbors.py --markdown      # the same, as a table for RESULTS.md
    python benchmarks/speed/bench_neighbors.py --sizes 2000 --repeats 1
    python -m benchmarks.speed --only neighbors [--quick]

For each N it times two searches the app runs: every row's k nearest other rows (UMAP's neighbour graph, the
map scores; at most ``--max-queries`` query rows, so 100,000 stays minutes, not hours) and one row's neighbours
(a click in the Explorer). Both engines go through ``core.neighbors.knn`` with ``backend="faiss"`` or
``backend="torch"`` on the CPU, with the same thread count (torch's), and their answers are compared: the share
of places holding the same row, and the largest score difference (ties may swap rows, never scores).
Prints the load average before and after: on a shared machine the ratio measured side by side is what counts.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.neighbors import knn  # noqa: E402

QUESTION = "Exact cosine k-NN on the CPU: faiss vs torch's chunked top-k at N = 2,000 / 20,000 / 100,000"
FULL: list[str] = []
QUICK = ["--sizes", "2000", "20000", "--max-queries", "5000", "--repeats", "1"]
MINUTES = (1, 2)


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian clusters around 20 centres, float32: closer to an embedding than plain noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d)).astype(np.float32)
    return centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, d)).astype(np.float32)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(sizes: list[int], dim: int, k: int, max_queries: int, repeats: int) -> list[dict]:
    rows_out = []
    for n in sizes:
        x = clustered(n, dim)
        rows = np.arange(min(n, max_queries))
        rec = {"n": n, "queries": len(rows)}
        for name in ("faiss", "torch"):
            def all_rows(name=name):
                return knn(x, k, rows=rows, exclude_self=True, backend=name, device="cpu")

            def one_row(name=name):
                return knn(x, k, rows=[n // 2], exclude_self=True, backend=name, device="cpu")

            knn(x[:100], k, backend=name, device="cpu")  # first-call costs (faiss import) out of the timing
            rec[f"{name}_all"], rec[f"{name}_out"] = timed(all_rows, repeats)
            rec[f"{name}_one"], _ = timed(one_row, max(repeats, 3))
        (fi, fs), (ti, ts) = rec.pop("faiss_out"), rec.pop("torch_out")
        rec["same_rows"] = float(np.mean(fi == ti))
        rec["max_score_diff"] = float(np.nanmax(np.abs(np.sort(fs, 1) - np.sort(ts, 1))))
        rows_out.append(rec)
        print(f"  N={n:,}: faiss {rec['faiss_all']:.3f} s / torch {rec['torch_all']:.3f} s "
              f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return rows_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 100_000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-queries", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()

    load_before = os.getloadavg()
    results = run(args.sizes, args.dim, args.k, args.max_queries, args.repeats)
    load_after = os.getloadavg()
    threads = torch.get_num_threads()
    head = (f"D={args.dim}, k={args.k}, {threads} threads for both engines, {os.cpu_count()} CPUs; load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (1-min). The machine is shared with other "
            f"work: absolute seconds vary with the load, the faiss/torch ratio is measured side by side.")
    print(machine_info())
    for r in results:
        report(f"every row's {args.k}-NN, N={r['n']:,} ({r['queries']:,} queries), D={args.dim}: torch / faiss",
               f"{r['torch_all'] / r['faiss_all']:.2f}x",
               beside=f"faiss {r['faiss_all']:.3f} s, torch {r['torch_all']:.3f} s; one row's: faiss "
                      f"{r['faiss_one'] * 1e3:.1f} ms, torch {r['torch_one'] * 1e3:.1f} ms "
                      f"({r['torch_one'] / r['faiss_one']:.2f}x); same rows {r['same_rows']:.4f}, max score diff "
                      f"{r['max_score_diff']:.1e}")
    if args.markdown:
        print(head + "\n")
        print("| N | queries | every row's k-NN: faiss | torch | torch / faiss | one row's k-NN: faiss | torch "
              "| torch / faiss | same rows | max score diff |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['n']:,} | {r['queries']:,} | {r['faiss_all']:.3f} s | {r['torch_all']:.3f} s | "
                  f"**{r['torch_all'] / r['faiss_all']:.2f}x** | {r['faiss_one'] * 1e3:.1f} ms | "
                  f"{r['torch_one'] * 1e3:.1f} ms | {r['torch_one'] / r['faiss_one']:.2f}x | "
                  f"{r['same_rows']:.4f} | {r['max_score_diff']:.1e} |")
        return
    print(head)
    for r in results:
        print(f"N={r['n']:>7,} ({r['queries']:,} queries): every row faiss {r['faiss_all']:.3f} s, torch "
              f"{r['torch_all']:.3f} s -> torch/faiss {r['torch_all'] / r['faiss_all']:.2f}x | one row faiss "
              f"{r['faiss_one'] * 1e3:.1f} ms, torch {r['torch_one'] * 1e3:.1f} ms -> "
              f"{r['torch_one'] / r['faiss_one']:.2f}x | same rows {r['same_rows']:.4f}, max score diff "
              f"{r['max_score_diff']:.1e}")


if __name__ == "__main__":
    main()
