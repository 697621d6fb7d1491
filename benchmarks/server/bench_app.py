"""App-level benchmarks of Contrastive Playground, in a real Chromium against ``streamlit run app.py``.

Prints figures and side-by-side ratios measured in the same run (issue 3, "Performance"):

(a) cold start: spawn ``streamlit run app.py`` and time until the home page is rendered and idle in
    Chromium (median of ``--runs`` cold processes; goal <= 5 s), plus the import time of ``app.py``'s
    start path beside ``import torch, umap, open_clip`` in fresh interpreters.
(b) responsiveness while training: on the Train page, with the default preset training in the
    background, switch the "colour the points by" factor several times and time, server-side, from
    the change reaching the server until the run that serves it has finished (goal <= 300 ms), plus the
    serving run alone, click -> run done, and click -> the 2-D view showing the new factor in the
    browser. The same switches after training has stopped give the side-by-side ratio.
(c) peak memory (RSS of the server process and all its children, psutil polling every 50 ms) while
    the default preset runs (goal <= 2 GB), beside the RSS with the home page loaded.

Server-side times come from this file acting as a thin launcher (``--serve-timed``) that wraps two
methods of Streamlit's ``AppSession``: ``request_rerun`` (when a rerun request arrives, and the
colour-by value it carries, so a widget change is told apart from a ``run_every`` tick) and
``_on_scriptrunner_event`` (when each script or fragment run starts and stops). The app is unchanged.
Every figure is wall-clock on a shared machine: the load average is printed at the start and the end.

Not a test: nothing is asserted, nothing is written but ``benchmarks/out/`` (screenshots, run log).

    .venv/bin/python benchmarks/server/bench_app.py            # all parts
    .venv/bin/python benchmarks/server/bench_app.py --part start --runs 5
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks._common import load_harness as _load_harness  # noqa: E402
from benchmarks._common import machine_info, report  # noqa: E402

QUESTION = "The app in Chromium: cold start to an interactive home page, colour-by while training, peak memory"
FULL: list[str] = []
QUICK = ["--part", "start", "--runs", "1"]
MINUTES = (1, 10)


OUT = ROOT / "benchmarks" / "out"

# --- the app's markup this script relies on (pages/home.py, pages/train.py) -----------------
DEFAULT_PRESET_KEY = "home.preset.simclr_shapes"  # "SimCLR on shapes in 20 seconds": opens Train, autoplay
COLOUR_BY_KEY = "train.color_by"  # selectbox -> container class "st-key-train-color_by"
LOSS_CHART_KEY = "train.chart.loss"  # one point per step
EMBEDDING_CHART_KEY = "train.chart.embedding"  # 2-D view, one trace per class of the colour-by factor
HEAVY_MODULES = ("torch", "umap", "open_clip")


# --- internal: streamlit with a run-timing hook ----------------------------------------------------

def serve_timed(log_path: str, streamlit_args: list[str]) -> None:
    """Run the Streamlit CLI in this process, logging rerun requests and run start/stop as JSON lines.

    Each line: {"t": wall-clock seconds, "event": RERUN_REQUEST | SCRIPT_STARTED | SCRIPT_STOPPED_* |
    FRAGMENT_STOPPED_WITH_SUCCESS | SHUTDOWN, "session": id, ...}. The hooks only take a timestamp;
    Streamlit then handles the call as usual.
    """
    from streamlit.runtime.app_session import AppSession

    original = AppSession._on_scriptrunner_event
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the server

    def timed(self: Any, sender: Any, event: Any, *args: Any, **kwargs: Any) -> None:
        name = getattr(event, "name", str(event))
        if name != "ENQUEUE_FORWARD_MSG":
            record = {"t": time.time(), "event": name, "session": getattr(self, "id", "?"),
                      "fragments": list(kwargs.get("fragment_ids_this_run") or [])}
            with lock:
                log.write(json.dumps(record) + "\n")
        original(self, sender, event, *args, **kwargs)

    original_request = AppSession.request_rerun

    def request(self: Any, client_state: Any) -> None:
        # A rerun request from the browser (a widget change, or a fragment's run_every tick): log when
        # it arrived and the colour-by widget's value it carries, so a change can be told from a tick.
        record: dict[str, Any] = {"t": time.time(), "event": "RERUN_REQUEST", "session": getattr(self, "id", "?"),
                                  "fragment": getattr(client_state, "fragment_id", "") if client_state else "",
                                  "colour": None}
        if client_state is not None:
            for ws in client_state.widget_states.widgets:
                if ws.id.endswith(COLOUR_BY_KEY):
                    field = ws.WhichOneof("value")
                    record["colour"] = str(getattr(ws, field)) if field else None
        with lock:
            log.write(json.dumps(record) + "\n")
        original_request(self, client_state)

    AppSession._on_scriptrunner_event = timed  # type: ignore[method-assign]
    AppSession.request_rerun = request  # type: ignore[method-assign]
    from streamlit.web import cli

    sys.argv = ["streamlit", *streamlit_args]
    cli.main()


class TimedServer:
    """A ``StreamlitServer`` whose command goes through ``serve_timed``; exposes the parsed run log."""

    def __init__(self, harness: Any, log_path: Path, app_dir: Path) -> None:
        self.runlog = log_path
        self.runlog.write_text("")
        self.server = harness.StreamlitServer("app.py", cwd=app_dir, log_path=OUT / "bench_app_server.log")
        plain = self.server.command()
        run_args = plain[plain.index("run"):]  # "run app.py --server.headless true ..."
        self.server.command = lambda: [sys.executable, str(Path(__file__).resolve()), "--serve-timed",
                                       str(self.runlog), "--", *run_args]

    def requests(self) -> list[dict[str, Any]]:
        """Rerun requests as they reached the server (see ``serve_timed``)."""
        return [rec for rec in map(json.loads, self.runlog.read_text().splitlines())
                if rec["event"] == "RERUN_REQUEST"]

    def runs(self) -> list[dict[str, Any]]:
        """Completed script runs: start, seconds, kind ("script" / "fragment"), how it ended."""
        starts: dict[str, dict[str, Any]] = {}
        out = []
        for line in self.runlog.read_text().splitlines():
            rec = json.loads(line)
            if rec["event"] == "SCRIPT_STARTED":
                starts[rec["session"]] = rec
            elif rec["event"].startswith(("SCRIPT_STOPPED", "FRAGMENT_STOPPED")) and rec["session"] in starts:
                begin = starts.pop(rec["session"])
                kind = "fragment" if (begin["fragments"] or rec["event"].startswith("FRAGMENT")) else "script"
                out.append({"start": begin["t"], "stop": rec["t"], "seconds": rec["t"] - begin["t"], "kind": kind,
                            "end": rec["event"], "session": rec["session"]})
        return out


# --- (a) cold start ------------------------------------------------------------------------------

def import_seconds(modules: list[str], repeats: int) -> tuple[float, list[str]]:
    """Median seconds to import ``modules`` in a fresh interpreter, and which heavy modules got loaded."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        f"for m in {modules!r}: __import__(m)\n"
        "dt = time.perf_counter() - t\n"
        f"print(dt, ','.join(m for m in {list(HEAVY_MODULES)!r} if m in sys.modules))\n"
    )
    times, loaded = [], ""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        times.append(float(out[0]))
        loaded = out[1] if len(out) > 1 else ""
    return statistics.median(times), [m for m in loaded.split(",") if m]


def start_path_modules(app_file: Path = ROOT / "app.py") -> list[str]:
    """Modules ``app.py`` imports at module level (its start path), in source order."""
    tree = ast.parse(app_file.read_text())
    mods: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.append(node.module)
            # "from ui import presets" imports the submodule too
            for alias in node.names:
                if (ROOT / node.module.replace(".", "/") / f"{alias.name}.py").exists():
                    mods.append(f"{node.module}.{alias.name}")
    return [m for m in dict.fromkeys(mods) if m != "__future__"]


_FIRST_ELEMENT_JS = """() => !!document.querySelector(
    '[data-testid="stMain"] [data-testid="stElementContainer"]')"""


def bench_start(h: Any, browser: Any, runs: int, app_dir: Path) -> dict[str, Any]:
    print(f"\n(a) cold start: {runs} fresh `streamlit run app.py` processes, home page in Chromium")
    rows = []
    for i in range(runs):
        server = h.StreamlitServer("app.py", cwd=app_dir, log_path=OUT / f"bench_app_start{i}.log")
        context = browser.new_context(viewport=h.VIEWPORT)
        page = context.new_page()
        watch = h.ConsoleWatch().attach(page)
        try:
            server.start()
            t0 = server.started_at
            healthy = server.wait_healthy(timeout=120)
            page.goto(server.url + "/", wait_until="commit")
            visible = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # first element of the home page in the main block
                if page.evaluate(_FIRST_ELEMENT_JS):
                    visible = time.perf_counter() - t0
                    break
                page.wait_for_timeout(20)
            # interactive = the first full run of the home page has finished (connected, nothing stale).
            # No settle window: the home page may keep a small fragment polling (device line) while
            # torch warms up in the background, and the page is usable meanwhile.
            h.wait_for_idle(page, timeout=120, settle=0.0, poll=0.02)
            interactive = time.perf_counter() - t0
            # and prove it is interactive: a navigation link is visible and enabled
            links = page.locator('[data-testid="stSidebarNavLink"], [data-testid="stTopNavLink"]')
            clickable = links.count() > 0 and links.first.is_visible() and links.first.is_enabled()
            rows.append({"healthy": healthy, "visible": visible, "interactive": interactive,
                         "nav_clickable": clickable, "errors": watch.take()})
            print(f"  run {i + 1}: server healthy {healthy:5.2f} s | first content {visible or float('nan'):5.2f} s"
                  f" | idle {interactive:5.2f} s | nav clickable: {clickable}")
            if i == 0:
                page.screenshot(path=str(OUT / "bench_home.png"), full_page=True)
        finally:
            try:
                context.close()
            finally:
                server.stop()
    med = {k: statistics.median(r[k] for r in rows if r[k] is not None) for k in ("healthy", "visible", "interactive")}
    print(f"  median: healthy {med['healthy']:.2f} s, first content {med['visible']:.2f} s, "
          f"interactive {med['interactive']:.2f} s  (goal <= 5 s: {'met' if med['interactive'] <= 5 else 'NOT met'})")
    errors = [e for r in rows for e in r["errors"]]
    if errors:
        print(f"  browser console errors during start: {errors[:3]}")

    mods = start_path_modules(app_dir / "app.py")
    start_s, start_loaded = import_seconds(mods, repeats=3)
    heavy_s, _ = import_seconds(["streamlit", *HEAVY_MODULES], repeats=3)
    print(f"  import of app.py's start path ({', '.join(mods)}): {start_s:.2f} s; heavy modules it loads: "
          f"{', '.join(start_loaded) or 'none'}")
    print(f"  import streamlit + {', '.join(HEAVY_MODULES)}: {heavy_s:.2f} s")
    print(f"  ratio heavy / start path: {heavy_s / start_s:.1f}x")
    report(f"cold start to the home page interactive in Chromium (median of {runs})", f"**{med['interactive']:.2f} s**",
           beside=f"start-path imports {start_s:.2f} s vs streamlit + {', '.join(HEAVY_MODULES)} {heavy_s:.2f} s "
                  f"({heavy_s / start_s:.1f}x)", goal=f"<= 5 s: {'met' if med['interactive'] <= 5 else 'not met'}")
    return {"median": med, "import_start_path_s": start_s, "import_heavy_s": heavy_s, "start_path_loads": start_loaded}


# --- (b) + (c) training: interaction latency and peak memory ----------------------------------------

class RssPeak(threading.Thread):
    """Polls RSS of a process and all its descendants; keeps the peak and a baseline."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.period = period
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def current(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.current())
            self.samples += 1
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()


_OPTION = "[data-testid='stSelectboxVirtualDropdown'] [role='option']"


def open_selectbox(h: Any, page: Any, key: str, *, tries: int = 5) -> None:
    """Open the dropdown of the selectbox with widget key ``key``.

    Retried: while the live panel redraws every second, a redraw that changes the layout around the
    widget (e.g. the timeline slider appearing) can remount it and close a dropdown just opened.
    """
    combo = page.locator(f"{h.key_selector(key)} [data-testid='stSelectbox'] input[role='combobox']").first
    for _ in range(tries):
        combo.click()
        try:
            page.locator(_OPTION).first.wait_for(state="visible", timeout=2_000)
            return
        except Exception:  # noqa: BLE001 - retry, then give up below
            page.keyboard.press("Escape")
    raise TimeoutError(f"the selectbox {key!r} did not open after {tries} clicks")


def choose_option(page: Any, option: str) -> None:
    """Click ``option`` in the open selectbox dropdown."""
    page.locator(_OPTION).filter(has_text=option).first.click()


def selectbox_options(h: Any, page: Any, key: str) -> list[str]:
    open_selectbox(h, page, key)
    options = [t.strip() for t in page.locator(_OPTION).all_inner_texts()]
    page.keyboard.press("Escape")
    return options


def measure_switches(h: Any, page: Any, timed: TimedServer, options: list[str], n: int,
                     label: str) -> dict[str, list[float]]:
    """Switch the colour-by factor ``n`` times; per switch, time (ms):

    - ``server``: from the server receiving the change until the run that serves it has stopped
      (includes waiting behind a live-panel refresh that was already running): the server-side answer;
    - ``run``: that run alone, start to stop;
    - ``answer``: the click until that run stopped (adds the browser and the websocket);
    - ``browser``: the click until the 2-D view's trace names (one per class) show the new factor.
    """
    out: dict[str, list[float]] = {"server": [], "run": [], "answer": [], "browser": []}
    current = h.plot_info(page, EMBEDDING_CHART_KEY) or {}
    combo = page.locator(f"{h.key_selector(COLOUR_BY_KEY)} input[role='combobox']").first
    shown = combo.input_value()
    start = options.index(shown) if shown in options else 0
    for i in range(n):
        option = options[(start + i + 1) % len(options)]  # always a different factor from the one shown
        before = json.dumps(current.get("names", []), separators=(",", ":"))  # as JSON.stringify
        open_selectbox(h, page, COLOUR_BY_KEY)  # opening the dropdown is client-side only: not timed
        t_click = time.time()
        t0 = time.perf_counter()
        choose_option(page, option)
        t_seen = None
        seen_names = None
        nan = float("nan")
        try:
            # new trace names, not an empty list (a chart being remounted has no traces for a moment)
            page.wait_for_function(
                "([sel, before]) => { const gd = document.querySelector(sel + ' .js-plotly-plot');"
                " if (!gd || !gd.data || !gd.data.some(t => t.name)) return false;"
                " return JSON.stringify(gd.data.map(t => t.name || '')) !== before; }",
                arg=[h.key_selector(EMBEDDING_CHART_KEY), before], timeout=10_000)
            t_seen = time.time()
            seen_names = (h.plot_info(page, EMBEDDING_CHART_KEY) or {}).get("names")
            out["browser"].append((time.perf_counter() - t0) * 1000)
        except Exception:  # noqa: BLE001 - report, keep measuring the server side
            print(f"  [{label}] switch {i + 1}: the 2-D view did not change within 10 s")

        deadline = time.monotonic() + 15
        while (found := _answering_run(timed, t_click)) is None and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        run = found[1] if found else None
        if found is not None:
            req, run = found
            out["server"].append((run["stop"] - req["t"]) * 1000)
            out["run"].append(run["seconds"] * 1000)
            out["answer"].append((run["stop"] - t_click) * 1000)
        if os.environ.get("CP_BENCH_DEBUG") and found is not None:
            print(f"    request +{found[0]['t'] - t_click:.3f} s, run {found[1]['start'] - t_click:+.3f} .. "
                  f"{found[1]['stop'] - t_click:+.3f} s, plot seen {(t_seen or nan) - t_click:+.3f} s; before {before}"
                  f" seen {seen_names}")
        server_s = out["server"][-1] if found else nan
        print(f"  [{label}] switch {i + 1} -> {option!r}: server {server_s:6.1f} ms"
              f" (run {run['seconds'] * 1000 if run else nan:6.1f} ms, {run['kind'] if run else '?'}),"
              f" click -> run done {out['answer'][-1] if found else nan:6.1f} ms,"
              f" browser {out['browser'][-1] if t_seen else nan:6.1f} ms")
        current = h.plot_info(page, EMBEDDING_CHART_KEY) or {}
    return out


def _answering_run(timed: TimedServer, t_click: float) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The rerun request that carried the new colour-by value, and the run that served it.

    The request is the first one after the click whose colour-by value differs from the last request
    before the click (later run_every ticks carry the new value too); the run is the first that
    started after it, in the same session, and has stopped.
    """
    reqs = timed.requests()
    before = [r for r in reqs if r["t"] < t_click - 0.005 and r["colour"] is not None]
    old = before[-1]["colour"] if before else None
    changed = [r for r in reqs if r["t"] >= t_click - 0.005 and r["colour"] is not None and r["colour"] != old]
    if not changed:
        return None
    req = changed[0]
    runs = [r for r in timed.runs() if r["session"] == req["session"] and r["start"] >= req["t"]]
    return (req, runs[0]) if runs else None


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):4.0f} ms, max {max(values):4.0f} ms" if values else "no data"


def bench_training(h: Any, browser: Any, switches: int, max_train_s: float, app_dir: Path) -> dict[str, Any]:
    print("\n(b)+(c) default preset on the Train page: colour-by switches while training and after; peak RSS")
    timed = TimedServer(h, OUT / "bench_app_runs.jsonl", app_dir)
    server = timed.server
    result: dict[str, Any] = {}
    context = browser.new_context(viewport=h.VIEWPORT)
    page = context.new_page()
    watch = h.ConsoleWatch().attach(page)
    rss = None
    try:
        server.start()
        server.wait_healthy(timeout=120)
        rss = RssPeak(server.pid)
        rss.start()
        app = h.AppPage(page, server)
        app.goto("/")
        baseline = rss.current()
        t_train = time.perf_counter()
        app.click(DEFAULT_PRESET_KEY)
        # The preset opens the Train page and starts training (autoplay).
        h.wait_for_plot_points(page, LOSS_CHART_KEY, 2, timeout=180)
        print(f"  preset clicked -> loss chart has 2 points: {time.perf_counter() - t_train:.1f} s")
        h.wait_for_plot_points(page, EMBEDDING_CHART_KEY, 1, timeout=120)
        print(f"  preset clicked -> 2-D view drawn: {time.perf_counter() - t_train:.1f} s")

        options = selectbox_options(h, page, COLOUR_BY_KEY)
        print(f"  colour-by options: {options}")
        runs_before = len(timed.runs())
        training = measure_switches(h, page, timed, options, switches, "training")
        refresh = [r["seconds"] * 1000 for r in timed.runs()[runs_before:] if r["kind"] == "fragment"]

        # (c) let the preset finish (the Pause button exists only while the job trains), or stop it
        # after --max-train-seconds
        pause = page.locator(f"{h.key_selector('train.pause')} button")
        while time.perf_counter() - t_train < max_train_s and pause.count():
            page.wait_for_timeout(1000)
        if pause.count():
            print(f"  still training after {max_train_s:.0f} s: stopping it")
            page.locator(f"{h.key_selector('train.stop')} button").first.click()
            page.wait_for_timeout(2000)
        h.wait_for_idle(page, timeout=60)
        last = max((h.plot_info(page, LOSS_CHART_KEY) or {}).get("points") or [0])
        progress = page.locator("[data-testid='stProgress']")
        status = progress.first.inner_text().strip() if progress.count() else "?"
        print(f"  training: {last} loss points after {time.perf_counter() - t_train:.0f} s; page says: {status}")
        rss.stop()
        page.screenshot(path=str(OUT / "bench_train.png"), full_page=True)

        # (b) side by side: the same switches with no training running
        idle = measure_switches(h, page, timed, options, switches, "idle")

        print("  colour-by switch           |   while training             |   no training")
        for key, what in (("server", "server: request -> done"), ("run", "the serving run alone"),
                          ("answer", "click -> run done"), ("browser", "click -> plot changed")):
            print(f"    {what:<24} | {_summary(training[key]):<28} | {_summary(idle[key])}")
        if training["server"] and idle["server"]:
            med_t, med_i = statistics.median(training["server"]), statistics.median(idle["server"])
            print(f"  server-side answer while training / idle: {med_t / med_i:.1f}x; goal <= 300 ms while training: "
                  f"{'met' if med_t <= 300 else 'NOT met'}")
            report("colour-by switch on the Train page while training, server-side (median)", f"{med_t:.0f} ms",
                   beside=f"max {max(training['server']):.0f} ms; {med_i:.0f} ms with no training "
                          f"({med_t / med_i:.1f}x)", goal=f"<= 300 ms: {'met' if med_t <= 300 else 'not met'}")
        if refresh:
            print(f"  live-panel refreshes (fragment runs) while training: {len(refresh)}, {_summary(refresh)}")
        result.update(training=training, idle=idle)

        result["rss_peak_mb"] = rss.peak / 2**20
        result["rss_baseline_mb"] = baseline / 2**20
        print(f"  RSS (server + children): after home page {baseline / 2**20:.0f} MB, peak during the preset "
              f"{rss.peak / 2**20:.0f} MB ({rss.samples} samples; goal <= 2048 MB: "
              f"{'met' if rss.peak <= 2 * 2**30 else 'NOT met'}); peak / baseline {rss.peak / max(baseline, 1):.1f}x")
        report("peak memory of the app (server + children) over the default preset", f"{rss.peak / 2**20:.0f} MB",
               beside=f"{baseline / 2**20:.0f} MB with only the home page loaded",
               goal=f"<= 2 GB: {'met' if rss.peak <= 2 * 2**30 else 'not met'}")
        errors = watch.take() + [f"exception box: {t[:200]}" for t in h.exception_texts(page)]
        if errors:
            print(f"  problems seen on the page: {errors[:5]}")
    finally:
        try:
            if rss is not None and rss.is_alive():
                rss.stop()
            context.close()
        finally:
            server.stop()  # whatever failed above, the server goes
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-timed"]:
        sep = argv.index("--")
        serve_timed(argv[1], argv[sep + 1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "start", "train"), default="all")
    parser.add_argument("--runs", type=int, default=3, help="cold starts to take the median of")
    parser.add_argument("--switches", type=int, default=6, help="colour-by switches while training")
    parser.add_argument("--max-train-seconds", type=float, default=480.0,
                        help="stop the preset after this long if it has not finished (RSS is polled meanwhile)")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="folder whose app.py to run (default: this repo)")
    args = parser.parse_args(argv)

    # `timeout` and CI send SIGTERM: exit through the finally blocks, so no server is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    h = _load_harness()
    exe = h.find_chromium()
    if exe is None:
        print("chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    import psutil
    import streamlit

    print(machine_info())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB;"
          f" python {platform.python_version()}, streamlit {streamlit.__version__};"
          f" OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')},"
          f" CP_DEVICE={os.environ.get('CP_DEVICE', 'unset')}; load average {os.getloadavg()[0]:.1f}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        t = time.perf_counter()
        browser = h.launch_chromium(pw, executable=exe)
        print(f"chromium {browser.version} launched in {time.perf_counter() - t:.2f} s (not counted below)")
        try:
            if args.part in ("all", "start"):
                bench_start(h, browser, args.runs, args.app_dir)
            if args.part in ("all", "train"):
                bench_training(h, browser, args.switches, args.max_train_seconds, args.app_dir)
        finally:
            browser.close()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
