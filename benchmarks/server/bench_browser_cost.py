"""What a Train tab costs the browser: Chromium's and the server's CPU for one headless tab showing one of the
Train page's live elements at a time, each mode in its own ``streamlit run`` on 127.0.0.1, one after the other
in the same run (``browser_cost_app.py`` draws them with the app's own charts, CSS and redraw periods).

    empty            a page with one line of text (the floor)
    status_animated  the status line (progress bar + caption) every second, with the frontend's 0.5 s transition
    status           the same with the app's CSS (``ui.widgets.PAGE_CSS``: no transition)
    charts           the status line + the five live plotly charts, new data every 3 s (one user)
    same_charts      as charts, but the same figures every time
    one_chart        as charts, only the loss chart
    static_charts    as charts, with plotly's ``staticPlot`` (no hover, zoom or toolbar)
    vega_charts      as charts, five Vega-Lite ``st.line_chart`` instead of plotly
    classroom        the redraw periods of a busy server (``ui.jobs.REFRESH_BUSY``: status 4 s, charts 30 s)
    theme_none       as charts, drawn with ``theme=None`` (plotly's own template, no Streamlit theme merge)
    subplots         as charts, the four metric charts as the panels of one figure (two chart elements)
    status_sidebar   as status, beside a sidebar of 36 settings widgets (does a fragment's redraw cost grow with
                     the rest of the page?)

On a 2-core machine the browsers share the cores with the training: what a tab costs here is taken from the
jobs in ``bench_classroom.py --part browser``; in a real classroom each pupil's laptop pays it.

    .venv/bin/python benchmarks/server/bench_browser_cost.py
    .venv/bin/python benchmarks/server/bench_browser_cost.py --modes status_animated,status --seconds 20
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ROOT, load_harness, machine_info, report  # noqa: E402

QUESTION = "What a Train tab costs: Chromium's and the server's cores for each live element of the page"
FULL: list[str] = []
QUICK = ["--modes", "empty,status", "--seconds", "3", "--settle", "2"]
MINUTES = (1, 10)


MODES = ("empty", "status_animated", "status", "charts", "same_charts", "one_chart", "static_charts", "vega_charts",
         "classroom", "theme_none", "subplots", "status_sidebar")
APP = Path(__file__).resolve().parent / "browser_cost_app.py"


def _chromium_cpu() -> float:
    """CPU seconds of the Chromium processes this benchmark started (its descendants only: on a shared machine
    other people's browsers run too)."""
    import psutil

    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name():
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(mode: str, seconds: float, settle: float) -> tuple[float, float]:
    """(Chromium cores, server cores) over ``seconds`` for one tab of ``mode``."""
    import psutil
    from playwright.sync_api import sync_playwright

    h = load_harness()
    server = h.StreamlitServer(APP, cwd=ROOT, env={"CP_COST_MODE": mode})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                     args=list(h.CHROMIUM_ARGS))
        try:
            server.start()
            server.wait_healthy(timeout=120)
            page = browser.new_page(viewport=h.VIEWPORT)
            page.goto(server.url + "/", timeout=120_000)
            page.wait_for_selector("[data-testid='stApp']", timeout=120_000)
            time.sleep(settle)
            proc = psutil.Process(server.pid)
            c0, s0, t0 = _chromium_cpu(), sum(proc.cpu_times()[:2]), time.perf_counter()
            time.sleep(seconds)
            dt = time.perf_counter() - t0
            return (_chromium_cpu() - c0) / dt, (sum(proc.cpu_times()[:2]) - s0) / dt
        finally:
            browser.close()
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=10.0, help="seconds after the page loads, before measuring")
    args = ap.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    print(machine_info())
    print(f"load average {os.getloadavg()[0]:.1f} at the start; one headless Chromium tab per mode, "
          f"{args.seconds:.0f} s each")
    rows = {}
    for mode in args.modes.split(","):
        rows[mode] = measure(mode, args.seconds, args.settle)
        print(f"  {mode:<16} Chromium {rows[mode][0]:.3f} cores   server {rows[mode][1]:.3f} cores", flush=True)
        report(f"one headless tab, mode `{mode}`: Chromium cores", f"{rows[mode][0]:.3f}",
               beside=f"server {rows[mode][1]:.3f} cores")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for a, b in (("status_animated", "status"), ("charts", "classroom"), ("charts", "same_charts"),
                 ("charts", "static_charts"), ("vega_charts", "charts")):
        if a in rows and b in rows and rows[b][0] > 0:
            print(f"  {b} vs {a}: Chromium {rows[a][0] / rows[b][0]:.2f}x cheaper")


if __name__ == "__main__":
    main()
