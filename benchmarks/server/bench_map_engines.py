"""What each map engine gives in headless Chromium here (software WebGL, offline), behind a real
``streamlit run`` (issue 30): seconds from opening the page to the drawn chart, and from a box selection
(plotly) or a click (deck.gl) to the answer being back in Python. The server-side raster (datashader) is
timed in process. The machine is shared: the load average is printed beside the figures.

    plotly Scattergl   N dots; box selection -> rows in Python   (the Explorer's dot map, every selection)
    deck.gl IconLayer  N thumbnails from one atlas; click -> row (the Explorer's "images on the map")
    datashader         N points -> an 800 x 560 PNG on the server (the Explorer's map of every point)

Usage: python benchmarks/server/bench_map_engines.py [--plotly 2000,50000,200000] [--deck 2000] [--raster 1000000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks import _common  # noqa: E402
from benchmarks._common import report  # noqa: E402

sys.path.insert(0, str(_common.ROOT / "tests" / "browser"))
import harness  # noqa: E402

QUESTION = "Map engines in headless Chromium: plotly dots, deck.gl thumbnails, datashader raster; draw and pick"
FULL: list[str] = []
QUICK = ["--plotly", "2000", "--deck", "200", "--raster", "100000"]
MINUTES = (2, 6)


_RETURNED = "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); const t = m ? m.innerText : '';" \
            " const k = t.indexOf('returned='); return k < 0 ? null : t.slice(k + 9).split(/\\s/)[0]; }"


def _wait_returned(page, not_value: str | None, timeout: float = 300.0) -> str:
    h = page.wait_for_function(f"(v) => {{ const r = ({_RETURNED})(); return r !== null && r !== v ? r : false; }}",
                               arg=not_value, timeout=timeout * 1000, polling=100)
    return str(h.json_value())


def plotly_case(app, n: int) -> dict[str, float]:
    page = app.page
    t0 = time.perf_counter()
    page.goto(f"{app.server.url}/?engine=plotly&n={n}", wait_until="domcontentloaded")
    harness.wait_for_plot_points(page, "chart", n, timeout=300)
    drawn = time.perf_counter() - t0
    app.wait_idle(timeout=300)
    box = page.evaluate("""() => { const gd = document.querySelector('.st-key-chart .js-plotly-plot');
        gd.scrollIntoView({block: 'center'}); const L = gd._fullLayout, b = gd.getBoundingClientRect();
        return {x0: b.left + L._size.l + L._size.w * 0.3, y0: b.top + L._size.t + L._size.h * 0.3,
                x1: b.left + L._size.l + L._size.w * 0.7, y1: b.top + L._size.t + L._size.h * 0.7}; }""")
    t0 = time.perf_counter()
    page.mouse.move(box["x0"], box["y0"])
    page.mouse.down()
    page.mouse.move(box["x1"], box["y1"], steps=8)
    page.mouse.up()
    got = _wait_returned(page, "0")
    return {"draw s": drawn, "box -> Python s": time.perf_counter() - t0, "rows": float(got)}


def deck_case(app, n: int) -> dict[str, float]:
    page = app.page
    t0 = time.perf_counter()
    page.goto(f"{app.server.url}/?engine=deck&n={n}", wait_until="domcontentloaded")
    page.wait_for_selector(".st-key-chart canvas", timeout=300_000)
    chart = page.locator(".st-key-chart").first
    import io

    from PIL import Image

    while True:  # drawn = the atlas texture is on screen (coloured pixels)
        px = np.asarray(Image.open(io.BytesIO(chart.screenshot())).convert("RGB")).astype(int)
        mask = px.max(axis=2) - px.min(axis=2) > 60
        if mask.mean() > 0.002 or time.perf_counter() - t0 > 300:
            break
        page.wait_for_timeout(200)
    drawn = time.perf_counter() - t0
    app.wait_idle(timeout=300)
    ys, xs = np.nonzero(mask)
    k = int(np.argmin((xs - np.median(xs)) ** 2 + (ys - np.median(ys)) ** 2))
    b = chart.bounding_box()
    t0 = time.perf_counter()
    x, y = float(b["x"] + xs[k]), float(b["y"] + ys[k])
    page.mouse.move(x, y)
    page.locator(".deck-tooltip").first.wait_for(state="visible", timeout=60_000)  # deck.gl picked it on hover
    hover = time.perf_counter() - t0
    t0 = time.perf_counter()
    page.mouse.click(x, y)
    got = _wait_returned(page, "None", timeout=120)
    return {"draw s": drawn, "hover picture s": hover, "click -> Python s": time.perf_counter() - t0,
            "row": float(got)}


def raster_case(n: int) -> dict[str, float]:
    from core import bigmap

    bigmap.warm_up()
    c = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    lab = np.random.default_rng(1).integers(0, 6, n)
    t0 = time.perf_counter()
    bigmap.rasterize(c, lab, width=800, height=560, spread=1)
    t1 = time.perf_counter()
    bigmap.PointIndex(c).nearest(0.1, 0.2)
    return {"raster s": t1 - t0, "KD-tree + pick s": time.perf_counter() - t1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plotly", default="2000,50000,200000")
    ap.add_argument("--deck", default="2000")
    ap.add_argument("--raster", default="1000000")
    args = ap.parse_args()
    print(_common.machine_info())
    print("load average before: %.2f %.2f %.2f (shared machine)" % os.getloadavg())
    from playwright.sync_api import sync_playwright

    server = harness.StreamlitServer("benchmarks/server/map_engines_app.py", cwd=_common.ROOT)
    server.start()
    try:
        server.wait_healthy(timeout=120)
        with sync_playwright() as p:
            browser = harness.launch_chromium(p)
            for engine, sizes in (("plotly", args.plotly), ("deck", args.deck)):
                for n in [int(s) for s in sizes.split(",") if s]:
                    ctx = browser.new_context(viewport=harness.VIEWPORT)
                    app = harness.AppPage(ctx.new_page(), server)
                    try:
                        r = plotly_case(app, n) if engine == "plotly" else deck_case(app, n)
                        print(f"{engine:7s} n={n:>9,}  " + "  ".join(f"{k} {v:.2f}" for k, v in r.items())
                              + f"  (load {os.getloadavg()[0]:.1f})")
                        first, *rest = r.items()
                        report(f"{engine}, {n:,} points: drawn in Chromium", f"{first[1]:.2f} s",
                               beside="; ".join(f"{k} {v:.2f}" for k, v in rest))
                    except Exception as exc:  # noqa: BLE001 - a figure that did not come is a result too
                        print(f"{engine:7s} n={n:>9,}  failed: {type(exc).__name__}: {str(exc)[:200]}")
                        report(f"{engine}, {n:,} points: drawn in Chromium", f"failed: {type(exc).__name__}")
                    finally:
                        ctx.close()
            browser.close()
    finally:
        server.stop()
    for n in [int(s) for s in args.raster.split(",") if s]:
        r = raster_case(n)
        print(f"datashader n={n:>9,}  " + "  ".join(f"{k} {v:.2f}" for k, v in r.items()))
        report(f"datashader, {n:,} points: raster on the server", f"{r['raster s']:.2f} s",
               beside=f"KD-tree + pick {r['KD-tree + pick s']:.2f} s")
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
