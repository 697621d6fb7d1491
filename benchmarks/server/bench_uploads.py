"""Big embedding uploads through the Explorer's path, timed stage by stage (issue 30, section 3).

Generates the files in a temp dir (200,000 x 64 CSV, ~98 MB; 1,000,000 x 64 parquet), then times what the
page does from the uploaded bytes to its first picture, in one process, with the peak memory growth:

    parse   core.embed.EmbeddingSet.from_file on the bytes
    hash    the content hash every cache is keyed by
    pca     core.projection.project(..., "pca"): the first picture of a set above SLOW_MAP_POINTS
    scores  ui.explorer.honesty's work on its MAX_SCORED sample (neighbour preservation, trustworthiness)
    figure  hover text + plotly figure of the MAX_POINTS sample, serialised to JSON (what the browser gets)
    raster  datashader image of every point + the KD-tree that resolves clicks (ui.bigmap)

Goals from the issue: 200k x 64 CSV upload -> first map <= 20 s, growth <= 3x the vectors' size;
1M x 64 parquet -> first picture <= 15 s. The "first picture" of the 1M set is the raster (parse + hash +
pca + raster); the scores and the sampled plotly figure follow it.

Usage: python benchmarks/server/bench_uploads.py [--quick]   (--quick: 20k-row CSV, 100k-row parquet)
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

QUESTION = "Big embedding uploads in the Explorer: a 200k-row CSV and a 1M-row parquet to the first map, stage by stage"
FULL: list[str] = []
QUICK = ["--quick"]
MINUTES = (1, 3)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_files(folder: Path, n_csv: int, n_parquet: int, d: int = 64) -> dict[str, Path]:
    import pandas as pd

    rng = np.random.default_rng(0)
    out = {}
    centres = rng.normal(size=(8, d)) * 3
    v = (rng.normal(size=(n_csv, d)) + centres[rng.integers(0, 8, n_csv)]).astype(np.float32)
    frame = pd.DataFrame(v, columns=[f"d{j}" for j in range(d)])
    frame.insert(0, "label", rng.integers(0, 8, n_csv))
    out["csv"] = folder / f"vectors_{n_csv}x{d}.csv"
    frame.to_csv(out["csv"], index=False)
    del frame, v
    v = (rng.normal(size=(n_parquet, d)) + centres[rng.integers(0, 8, n_parquet)]).astype(np.float32)
    frame = pd.DataFrame(v, columns=[f"d{j}" for j in range(d)])
    frame.insert(0, "label", rng.integers(0, 8, n_parquet).astype(np.int32))
    out["parquet"] = folder / f"vectors_{n_parquet}x{d}.parquet"
    frame.to_parquet(out["parquet"], index=False)
    return out


def time_path(path: Path) -> dict[str, float]:
    import ui.explorer as X
    from core import bigmap
    from core.embed import EmbeddingSet
    from core.projection import build_metric, neighbour_preservation_per_point, project, trustworthiness

    data = path.read_bytes()
    gc.collect()
    base = _rss_mb()
    t: dict[str, float] = {}
    s = time.perf_counter()
    es = EmbeddingSet.from_file(data, path.name)
    t["parse"] = time.perf_counter() - s
    s = time.perf_counter()
    key = X.content_hash(es.vectors)
    t["hash"] = time.perf_counter() - s
    s = time.perf_counter()
    coords = project(es.vectors, "pca", dim=2, seed=0)
    t["pca"] = time.perf_counter() - s
    s = time.perf_counter()
    lab = es.labels[es.factors[0]] if es.factors else None
    bigmap.rasterize(coords, lab, width=800, height=560, spread=1)
    bigmap.PointIndex(coords)
    t["raster"] = time.perf_counter() - s
    t["first picture"] = t["parse"] + t["hash"] + t["pca"] + t["raster"]
    s = time.perf_counter()
    rows = X.sample_rows(len(es), X.MAX_SCORED)
    metric = build_metric("pca")
    per = neighbour_preservation_per_point(es.vectors[rows], coords[rows], 10, metric=metric)
    trustworthiness(es.vectors[rows], coords[rows], 10, metric=metric)
    t["scores"] = time.perf_counter() - s
    s = time.perf_counter()
    space = X.Space(path.name, es)
    drawn = X.sample_rows(len(es), X.MAX_POINTS)
    full = np.full(len(es), np.nan)
    full[rows] = per
    hover = X.hover_text(space, drawn, {"kept neighbours": full})
    fig = X.scatter(coords, drawn, hover, categories=es.label_names(es.factors[0]) if es.factors else None)
    payload = fig.to_json()
    t["figure"] = time.perf_counter() - s
    t["figure MB"] = len(payload) / 2**20
    t["upload to first map"] = t["first picture"] + t["scores"] + t["figure"]
    t["vectors MB"] = es.vectors.nbytes / 2**20
    t["file MB"] = len(data) / 2**20
    del data
    gc.collect()
    t["held MB (rss - base, after)"] = _rss_mb() - base
    t["key"] = key
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20k-row CSV and 100k-row parquet")
    args = ap.parse_args()
    n_csv, n_pq = (20_000, 100_000) if args.quick else (200_000, 1_000_000)
    print(machine_info())
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"(a shared machine: compare stages within one run)")
    import ui.explorer  # noqa: F401  (imports streamlit, plotly, torch before anything is timed)
    from core import bigmap
    from core.projection import warm_up as projection_warm_up  # noqa: F401

    bigmap.warm_up()  # the server warms datashader's numba kernels at start-up (ui.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        s = time.perf_counter()
        files = make_files(Path(tmp), n_csv, n_pq)
        print(f"files written in {time.perf_counter() - s:.1f} s: "
              + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MB" for p in files.values()))
        for kind, path in files.items():
            peak0 = _peak_mb()
            t = time_path(path)
            print(f"\n{path.name} ({t['file MB']:.0f} MB file, {t['vectors MB']:.0f} MB of float32 vectors)")
            for k in ("parse", "hash", "pca", "raster", "first picture", "scores", "figure",
                      "upload to first map"):
                print(f"  {k:22s} {t[k]:7.2f} s")
            print(f"  plotly JSON            {t['figure MB']:7.1f} MB")
            print(f"  memory held after      {t['held MB (rss - base, after)']:7.0f} MB "
                  f"({t['held MB (rss - base, after)'] / t['vectors MB']:.1f}x the vectors; the file's bytes freed)")
            print(f"  peak process RSS       {_peak_mb():7.0f} MB (was {peak0:.0f} MB before this file)")
            held = t["held MB (rss - base, after)"] / t["vectors MB"]
            goal = 20.0 if kind == "csv" else 15.0
            key = "upload to first map" if kind == "csv" else "first picture"
            report(f"{path.name}: {key}", f"**{t[key]:.2f} s**",
                   beside=f"parse {t['parse']:.2f} s, PCA {t['pca']:.2f} s, raster {t['raster']:.2f} s, scores "
                          f"{t['scores']:.2f} s, figure {t['figure']:.2f} s; to the first map "
                          f"{t['upload to first map']:.2f} s; memory held {held:.1f}x the vectors",
                   goal=f"<= {goal:.0f} s and <= 3x memory: "
                        f"{'met' if t[key] <= goal and held <= 3 else 'not met'}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
