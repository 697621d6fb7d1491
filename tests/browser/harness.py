"""Drive a real ``streamlit run app.py`` in Debian's Chromium through Playwright.

Shared by the browser tests (``tests/browser/conftest.py``) and the app benchmark
(``benchmarks/server/bench_app.py``); it imports neither pytest nor the app, so both can load it by path.

The waits read the state Streamlit itself exposes on the root element
(``[data-testid="stApp"]``: ``data-test-script-state`` and ``data-test-connection-state``, the same
hooks Streamlit's own end-to-end tests wait on) instead of the "Running..." status widget, which only
appears after a script has run for 500 ms and so says nothing about short reruns.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Flags for a headless, sandbox-less (root) Chromium on a machine with no network: without the
# background-networking / component-update / sync flags Chromium keeps dialling Google's hosts and
# logs refused connections; --disable-quic avoids UDP probes for the same reason.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers; Chromium then crashes on big pages
)

VIEWPORT = {"width": 1400, "height": 1000}  # wide enough that Streamlit keeps the sidebar open

# Console errors that are not the app's fault. Matched against "<message> (<source url>)"; each entry
# says why it is harmless. Everything else fails the test.
IGNORED_CONSOLE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Deep links (http://host/train): Streamlit's frontend finds the server's base path by probing
    # <url path>/_stcore/health and /_stcore/host-config first and falls back to the root on 404.
    # The probe is Streamlit's own, the page then connects normally; only 404s below a non-empty
    # path are ignored, so a failing health check at the root still fails the test.
    re.compile(r"status of 404 .*\(https?://[^/]+/[^()]+/_stcore/(health|host-config)\)$"),
)
# Offline means offline in the browser too: any request to another host is a problem (AppPage.problems).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def find_chromium() -> str | None:
    """Path of the Chromium binary: env ``CP_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH."""
    explicit = os.environ.get("CP_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StreamlitServer:
    """``streamlit run app.py`` as a child process on 127.0.0.1; always stopped by ``stop()``.

    The child gets its own session (process group) so ``stop()`` also ends anything it spawned
    (e.g. worker processes of a training job); the group id is the id of the process we started.
    """

    def __init__(
        self,
        app: str | os.PathLike[str] = "app.py",
        *,
        cwd: str | os.PathLike[str] = ROOT,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.app = str(app)
        self.cwd = Path(cwd)
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        # Ask the app not to reach the network, whatever it is about to import.
        self.env.setdefault("HF_HUB_OFFLINE", "1")
        self.env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="streamlit-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the server is not started")
        return self.proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "streamlit", "run", self.app,
            "--server.headless", "true",
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            "--server.runOnSave", "false",
        ]

    def start(self) -> StreamlitServer:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps writing to it
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        return self

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Block until ``/_stcore/health`` answers ``ok``; returns seconds since ``start()``."""
        assert self.proc is not None and self.started_at is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with code {self.proc.returncode} before it was healthy:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200 and resp.read().strip() == b"ok":
                        return time.perf_counter() - self.started_at
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"streamlit was not healthy within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the server's process group, then kill it if it lingers. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Children that outlived the leader (same process group, started by it) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def new_log(self) -> str:
        """Server output written since the previous call."""
        text = self.log_text()
        new, self._log_offset = text[self._log_offset:], len(text)
        return new

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_chromium(playwright: Any, *, executable: str | None = None) -> Any:
    """Launch Debian's Chromium headless with the flags above (never Playwright's own download)."""
    exe = executable or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not on PATH (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=exe, headless=True, args=list(CHROMIUM_ARGS))


# --- page state ---------------------------------------------------------------------------------

_STATE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  return {
    script: app ? app.getAttribute('data-test-script-state') : null,
    connection: app ? app.getAttribute('data-test-connection-state') : null,
    running_icon: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]'),
    stale: document.querySelectorAll('[data-testid="stElementContainer"][data-stale="true"]').length,
    elements: main ? main.querySelectorAll('[data-testid="stElementContainer"]').length : 0,
    skeleton: !!document.querySelector('[data-testid="stAppSkeleton"]'),
  };
}"""


def app_state(page: Any) -> dict[str, Any]:
    """Streamlit's run state as seen in the DOM (script state, connection, stale elements, ...)."""
    return page.evaluate(_STATE_JS)


def is_idle(state: dict[str, Any]) -> bool:
    return (
        state["connection"] == "CONNECTED"
        and state["script"] == "notRunning"
        and not state["running_icon"]
        and state["stale"] == 0
        and state["elements"] > 0
        and not state["skeleton"]
    )


def wait_for_idle(page: Any, *, timeout: float = 60.0, settle: float = 0.5, poll: float = 0.05) -> float:
    """Wait until the script has finished and the main block is rendered, stable for ``settle`` s.

    "Stable" matters on pages with a ``st.fragment(run_every=...)``: between two fragment runs the app
    is idle, and a settle window shorter than the refresh period is still reached. Returns the seconds
    from the call until the app became idle (the start of the stable window, so ``settle`` is not
    counted). Raises TimeoutError with the last state seen.
    """
    start = time.monotonic()
    idle_since: float | None = None
    state: dict[str, Any] = {}
    while True:
        now = time.monotonic()
        state = app_state(page)
        if is_idle(state):
            idle_since = idle_since or now
            if now - idle_since >= settle:
                return idle_since - start
        else:
            idle_since = None
        if now - start > timeout:
            raise TimeoutError(f"Streamlit did not finish running within {timeout:.0f} s; last state {state}")
        page.wait_for_timeout(poll * 1000)


def exception_texts(page: Any) -> list[str]:
    """Text of every Streamlit exception box on the page (``st.exception`` or an uncaught error)."""
    return [el.inner_text() for el in page.query_selector_all('[data-testid="stException"]')]


_NAV_JS = """() => {
  const links = document.querySelectorAll(
    '[data-testid="stSidebarNav"] a[data-testid="stSidebarNavLink"], [data-testid="stTopNav"] a');
  return Array.from(links).map(a => {
    const labelled = a.querySelector('span[label]');  // Streamlit puts the page title in label=""
    if (labelled && labelled.getAttribute('label')) return {label: labelled.getAttribute('label'), href: a.href};
    const clone = a.cloneNode(true);
    // Material icons render as a ligature word ("home"); drop them so only the label remains.
    clone.querySelectorAll('[data-testid="stIconMaterial"], [data-testid="stIconEmoji"]').forEach(n => n.remove());
    return {label: clone.textContent.trim(), href: a.href};
  });
}"""


def nav_links(page: Any) -> list[dict[str, str]]:
    """The pages listed in the navigation (sidebar or top), as ``{"label", "href"}``, in order.

    Expands the sidebar's "View more" list first, so apps with many pages are fully listed.
    """
    more = page.query_selector('[data-testid="stSidebarNavViewButton"]')
    if more is not None and "more" in more.inner_text().lower():
        more.click()
        page.wait_for_timeout(200)
    seen: set[str] = set()
    links = []
    for link in page.evaluate(_NAV_JS):
        if link["href"] not in seen:
            seen.add(link["href"])
            links.append(link)
    return links


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "page"


def key_selector(key: str) -> str:
    """CSS selector of the element container Streamlit makes for a widget/element ``key``.

    Streamlit adds the class ``st-key-<key>`` with characters outside [A-Za-z0-9_-] replaced by "-"
    ("train.chart.loss" -> ".st-key-train-chart-loss").
    """
    return ".st-key-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)


# Trace lengths come from plotly's own parsed traces (gd._fullData): plotly.py sends numeric arrays
# base64-packed ({dtype, bdata}), so gd.data[i].x has no length; _fullData holds the decoded arrays.
_TRACE_LENGTHS_JS = """(gd) => (gd._fullData || gd.data || []).map(t => {
    const x = t.x !== undefined ? t.x : t.y;
    if (x && typeof x.length === 'number') return x.length;
    return typeof t._length === 'number' ? t._length : 0; })"""

_PLOT_JS = """(sel) => {
  const gd = document.querySelector(sel + ' .js-plotly-plot');
  if (!gd || !gd.data) return null;
  const lengths = (LENGTHS)(gd);
  return {points: lengths, names: gd.data.map(t => t.name || '')};
}""".replace("LENGTHS", _TRACE_LENGTHS_JS)


def plot_info(page: Any, key: str) -> dict[str, Any] | None:
    """Trace lengths and names of the plotly chart with element key ``key`` (None while not drawn).

    Read from the plotly graph div itself (``gd.data``), i.e. what the browser actually drew.
    """
    return page.evaluate(_PLOT_JS, key_selector(key))


def wait_for_plot_points(page: Any, key: str, n: int, *, timeout: float = 120.0) -> int:
    """Wait until a trace of the chart ``key`` has at least ``n`` points; returns the count seen."""
    handle = page.wait_for_function(
        """([sel, n]) => { const gd = document.querySelector(sel + ' .js-plotly-plot');
             if (!gd || !gd.data) return false;
             const m = Math.max(0, ...(LENGTHS)(gd));
             return m >= n ? m : false; }""".replace("LENGTHS", _TRACE_LENGTHS_JS),
        arg=[key_selector(key), n], timeout=timeout * 1000, polling=200)
    return int(handle.json_value())


@dataclass
class ConsoleWatch:
    """Collects browser console errors and uncaught page errors of one Playwright page."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> ConsoleWatch:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        return self

    def _on_console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        full = f"{msg.text} ({where})" if where else msg.text
        if any(p.search(full) for p in IGNORED_CONSOLE_PATTERNS):
            return
        self.errors.append(f"console error: {full}")

    def take(self) -> list[str]:
        """Errors collected since the previous call."""
        out, self.errors = self.errors, []
        return out


def server_problems(log: str) -> list[str]:
    """Tracebacks in server output (e.g. a crashed background training thread the page never shows)."""
    problems = []
    for m in re.finditer(r"Traceback \(most recent call last\):.*?(?=\n\S|\Z)(\n\S[^\n]*)?", log, re.S):
        tb = m.group(0)
        problems.append(tb if len(tb) <= 2000 else tb[:300] + "\n  ...\n" + tb[-1500:])
    return problems


class AppPage:
    """One browser tab on the app, with the checks every browser test makes.

    ``problems()`` gathers what must not happen: Streamlit exception boxes, browser console errors,
    uncaught page errors and tracebacks in the server log since the previous check.
    """

    def __init__(self, page: Any, server: StreamlitServer, *, screenshot_dirs: tuple[Path, ...] = ()) -> None:
        self.page = page
        self.server = server
        self.console = ConsoleWatch().attach(page)
        self.outside: list[str] = []  # requests to hosts other than this machine
        page.on("request", self._on_request)
        self.screenshot_dirs = screenshot_dirs
        self.screenshots: list[Path] = []

    def goto(self, path_or_url: str = "/", *, timeout: float = 90.0) -> float:
        """Open a URL (absolute, or a path on the server) and wait until the app is idle; returns seconds."""
        url = path_or_url if path_or_url.startswith("http") else self.server.url + path_or_url
        start = time.monotonic()
        self.page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        wait_for_idle(self.page, timeout=max(1.0, timeout - (time.monotonic() - start)))
        return time.monotonic() - start

    def wait_idle(self, *, timeout: float = 60.0, settle: float = 0.5) -> float:
        return wait_for_idle(self.page, timeout=timeout, settle=settle)

    def main_text(self) -> str:
        return self.page.inner_text('[data-testid="stMain"]')

    def screenshot(self, name: str) -> Path | None:
        """Full-page PNG into every screenshot dir; returns the first copy (None when no dir is set)."""
        if not self.screenshot_dirs:
            return None
        first = self.screenshot_dirs[0] / f"{slug(name)}.png"
        # Streamlit scrolls inside its own container, so a "full page" shot is only the viewport:
        # grow the viewport to the content's height for the shot, then put it back.
        size = self.page.viewport_size or VIEWPORT
        height = self.page.evaluate(
            "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
            " return m ? m.scrollHeight : document.body.scrollHeight; }")
        tall = min(max(int(height), size["height"]), 8000)
        if tall > size["height"]:
            self.page.set_viewport_size({"width": size["width"], "height": tall})
            self.page.wait_for_timeout(300)  # let charts re-layout
        try:
            self.page.screenshot(path=str(first), full_page=True)
        finally:
            if tall > size["height"]:
                self.page.set_viewport_size(size)
        for extra in self.screenshot_dirs[1:]:
            extra.mkdir(parents=True, exist_ok=True)
            shutil.copy2(first, extra / first.name)
        self.screenshots.append(first)
        return first

    def _on_request(self, request: Any) -> None:
        parts = urllib.parse.urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            self.outside.append(request.url)

    def problems(self) -> list[str]:
        found = [f"Streamlit exception box: {text[:1500]}" for text in exception_texts(self.page)]
        found += [f"request to a host other than this machine (offline means offline): {url}"
                  for url in self.outside]
        self.outside = []
        found += self.console.take()
        found += [f"server traceback: {tb}" for tb in server_problems(self.server.new_log())]
        return found

    def nav_links(self) -> list[dict[str, str]]:
        return nav_links(self.page)

    def plot_info(self, key: str) -> dict[str, Any] | None:
        return plot_info(self.page, key)

    def wait_for_plot_points(self, key: str, n: int, *, timeout: float = 120.0) -> int:
        return wait_for_plot_points(self.page, key, n, timeout=timeout)

    def wait_for_plot_steady(self, key: str, *, quiet: float = 3.0, timeout: float = 30.0) -> list[int]:
        """Wait until the chart ``key`` has not changed its trace lengths for ``quiet`` s; returns them.

        Used after Pause/Stop: a step already under way may still land, then nothing more may.
        """
        start = last_change = time.monotonic()
        last = (plot_info(self.page, key) or {}).get("points")
        while time.monotonic() - last_change < quiet:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"chart {key!r} kept changing for {timeout:.0f} s (now {last})")
            self.page.wait_for_timeout(200)
            now = (plot_info(self.page, key) or {}).get("points")
            if now != last:
                last, last_change = now, time.monotonic()
        return list(last or [])

    def button(self, key: str) -> Any:
        """The ``<button>`` of the Streamlit button with widget key ``key`` (a Playwright locator)."""
        return self.page.locator(f"{key_selector(key)} button").first

    def click(self, key: str, *, timeout: float = 30.0) -> None:
        """Click the button with widget key ``key`` once it is enabled, then wait for the rerun."""
        button = self.button(key)
        button.wait_for(state="visible", timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while not button.is_enabled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"button {key!r} stayed disabled for {timeout:.0f} s")
            self.page.wait_for_timeout(100)
        button.click()
