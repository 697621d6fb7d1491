"""Maps of a million points: datashader raster vs the plotly scatter path, measured in the same run.

    python benchmarks/speed/bench_bigmap.py                  # 1,000,000 x 64
    python benchmarks/speed/bench_bigmap.py --n 200000 --umap-transform 0

Prints: time to a first picture (PCA to 2-D, rasterise 800 x 800, PNG), time per zoom (re-rasterise a window),
hit-test (KD-tree build, one click), exact neighbours of one point, sampled UMAP (fit on a sample, transform
rate, extrapolated to all rows unless --umap-transform covers them, and beside it the rate of the neighbour
placement ``core.bigmap.sampled_umap`` uses), peak memory; and beside them the plotly path: building a
Scattergl figure and serialising it to JSON (what Streamlit sends to the browser) for growing N.
"""
from __future__ import annotations

import argparse
import io
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks import _common  # noqa: E402
from benchmarks._common import report  # noqa: E402

QUESTION = "Maps of a million points: datashader raster, zoom, hit-test, sampled UMAP against the plotly path"
FULL: list[str] = []
QUICK = ["--n", "20000", "--umap-transform", "0", "--no-browser"]
MINUTES = (1, 6)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def vectors(n: int, d: int, k: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * 3
    labels = rng.integers(0, k, n)
    x = centres[labels] + rng.normal(size=(n, d)).astype(np.float32)
    return x, labels


def plotly_payload(coords: np.ndarray, labels: np.ndarray) -> tuple[float, str]:
    import plotly.graph_objects as go

    def build():
        fig = go.Figure(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers",
                                     marker=dict(size=3, color=labels, colorscale="Turbo")))
        return fig.to_json()

    payload, seconds = timed(build)
    return seconds, payload


def browser_draw_seconds(figures: dict[str, str], png: bytes) -> dict[str, float]:
    """Seconds Chromium (headless, software WebGL) takes to draw each plotly figure JSON with plotly.js, and
    to show the datashader PNG, in one page each. What a user waits for after the bytes arrive."""
    import base64
    import sys

    from playwright.sync_api import sync_playwright
    from plotly.offline import get_plotlyjs

    sys.path.insert(0, str(_common.ROOT / "tests" / "browser"))
    from harness import launch_chromium

    out = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.set_content(f"<html><body><div id='g' style='width:800px;height:800px'></div>"
                         f"<script>{get_plotlyjs()}</script></body></html>")
        for name, fig_json in figures.items():
            out[name] = page.evaluate("""async (j) => { const f = JSON.parse(j); const t0 = performance.now();
                await Plotly.newPlot('g', f.data, f.layout); await new Promise(r => requestAnimationFrame(r));
                const t = performance.now() - t0; Plotly.purge('g'); return t / 1000; }""", fig_json)
        src = "data:image/png;base64," + base64.b64encode(png).decode()
        out["png"] = page.evaluate("""async (src) => { const im = new Image(); const t0 = performance.now();
            im.src = src; await im.decode(); document.body.appendChild(im);
            await new Promise(r => requestAnimationFrame(r)); return (performance.now() - t0) / 1000; }""", src)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--umap-sample", type=int, default=20_000)
    ap.add_argument("--no-browser", action="store_true", help="skip drawing the plotly figures in Chromium")
    ap.add_argument("--umap-transform", type=int, default=20_000,
                    help="rows placed with transform and timed (the rest is extrapolated); 0 skips UMAP")
    args = ap.parse_args()

    from core import bigmap
    from core.projection import project

    print(_common.machine_info())
    x, labels = vectors(args.n, args.dim)
    print(f"{args.n:,} x {args.dim} float32 vectors ({x.nbytes / 2**20:.0f} MB), {labels.max() + 1} clusters; "
          f"peak RSS {rss_mb():.0f} MB")

    coords, t_pca = timed(lambda: project(x, method="pca", dim=2).astype(np.float32))
    raster, t_first = timed(lambda: bigmap.rasterize(coords, labels, width=800, height=800))
    _, t_warm = timed(lambda: bigmap.rasterize(coords, labels, width=800, height=800))

    def png() -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(raster.image, mode="RGBA").save(buf, format="PNG")
        return buf.getvalue()

    png_bytes, t_png = timed(png)
    print(f"first picture: PCA {t_pca:.2f} s + rasterise {t_first:.2f} s (cold: numba compiles; warm {t_warm:.2f} s) + PNG {t_png:.2f} s "
          f"= {t_pca + t_first + t_png:.2f} s; image {len(png_bytes) / 1024:.0f} KB; peak RSS {rss_mb():.0f} MB")

    zooms, window = [], (raster.x_range, raster.y_range)
    centre = tuple(np.median(coords, axis=0))
    for _ in range(6):
        window = bigmap.zoom(*window, 2, center=centre)
        z, t = timed(lambda: bigmap.rasterize(coords, labels, width=800, height=800, x_range=window[0],
                                              y_range=window[1]))
        zooms.append((t, z.shown))
    print("zoom (2x each, re-rasterise 800 x 800): " + ", ".join(f"{t:.2f} s ({s:,} pts)" for t, s in zooms)
          + f"; median {np.median([t for t, _ in zooms]):.2f} s")

    index, t_tree = timed(lambda: bigmap.PointIndex(coords))
    clicks = np.random.default_rng(1).uniform(coords.min(0), coords.max(0), size=(1000, 2))
    _, t_clicks = timed(lambda: [index.pick(cx, cy, raster) for cx, cy in clicks])
    print(f"hit-test: KD-tree build {t_tree:.2f} s, one click {t_clicks / len(clicks) * 1e6:.0f} us")

    from core.neighbors import knn

    _, t_nn = timed(lambda: knn(x, 10, rows=[0], exclude_self=True))
    print(f"neighbours (core.neighbors.knn, exact): 10 neighbours of one point {t_nn * 1e3:.0f} ms; "
          f"peak RSS {rss_mb():.0f} MB")

    if args.umap_transform:
        import umap

        sample = min(args.umap_sample, args.n)
        rng = np.random.default_rng(0)
        rows = rng.choice(args.n, size=sample, replace=False)
        warm = umap.UMAP(n_epochs=10, random_state=0).fit(x[:500])  # numba compiles outside the timings
        warm.transform(x[500:700])
        reducer = umap.UMAP(random_state=0)
        _, t_fit = timed(lambda: reducer.fit(x[rows]))
        others = np.setdiff1d(np.arange(args.n), rows)[: args.umap_transform]
        _, t_tr = timed(lambda: reducer.transform(x[others]))
        rate = len(others) / t_tr
        rest = args.n - sample
        kind = "measured" if len(others) == rest else f"extrapolated from {len(others):,} rows"
        print(f"sampled UMAP: fit on {sample:,} in {t_fit:.1f} s; transform {rate:,.0f} rows/s -> "
              f"{rest:,} rows in {rest / rate:.0f} s ({kind}); peak RSS {rss_mb():.0f} MB")
        _, t_place = timed(lambda: bigmap.place_by_neighbours(x[others], x[rows], reducer.embedding_,
                                                              metric="euclidean"))  # umap's default metric
        print(f"  beside it, bigmap.place_by_neighbours (what sampled_umap uses): "
              f"{len(others) / t_place:,.0f} rows/s, {len(others) / t_place / rate:.0f}x transform's rate")

    print("plotly path (Scattergl figure -> JSON, what st.plotly_chart ships to the browser):")
    rows, payloads = [], {}
    for n in sorted({n for n in (10_000, 50_000, 200_000, args.n) if n <= args.n}):
        seconds, payload = plotly_payload(coords[:n], labels[:n])
        rows.append((n, seconds, len(payload)))
        payloads[f"{n:,}"] = payload
        print(f"  {n:>9,} points: {seconds:.2f} s, {len(payload) / 2**20:.1f} MB of JSON")
    n, plotly_s, plotly_b = rows[-1]
    drawn = {} if args.no_browser else browser_draw_seconds(payloads, png_bytes)
    if drawn:
        print("Chromium (headless, software WebGL) drawing them with plotly.js: "
              + ", ".join(f"{k} points {v:.2f} s" for k, v in drawn.items() if k != "png")
              + f"; the datashader PNG {drawn['png']:.3f} s")
    ours = t_warm + t_png + drawn.get("png", 0.0)
    theirs = plotly_s + drawn.get(f"{n:,}", 0.0)
    where = "server + browser" if drawn else "server only"
    report(f"{args.n:,} x {args.dim}: first picture (PCA + datashader raster + PNG)",
           f"{t_pca + t_first + t_png:.2f} s", beside=f"raster cold {t_first:.2f} s / warm {t_warm:.2f} s; zoom median "
           f"{np.median([t for t, _ in zooms]):.2f} s; one click {t_clicks / len(clicks) * 1e6:.0f} us")
    report(f"{n:,} points drawn ({where}): datashader warm raster + PNG", f"{ours:.2f} s",
           beside=f"plotly Scattergl {theirs:.2f} s ({theirs / ours:.1f}x), {plotly_b / 2**20:.1f} MB of JSON vs "
                  f"{len(png_bytes) / 1024:.0f} KB")
    print(f"side by side at {n:,} points ({where}): datashader (warm raster + PNG) {ours:.2f} s / "
          f"{len(png_bytes) / 1024:.0f} KB vs plotly {theirs:.2f} s / {plotly_b / 2**20:.1f} MB: "
          f"plotly takes {theirs / ours:.1f}x the time and {plotly_b / len(png_bytes):.0f}x the bytes; "
          f"a zoom costs datashader {np.median([t for t, _ in zooms]):.2f} s; the first raster in a process "
          f"also compiles datashader's numba code ({t_first:.2f} s cold); peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
