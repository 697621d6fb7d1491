"""Fixtures for the browser tests: one ``streamlit run app.py`` and one Chromium per session.

Skips (with the reason) when Chromium is not installed, unless ``CP_REQUIRE_BROWSER=1`` (set by
``.ci/run``), where a missing browser is a failure: CI must not go green by skipping these.
Screenshots land in a temp dir and are copied to ``$CP_SCREENSHOT_DIR`` or ``benchmarks/out/screenshots``.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_harness() -> Any:
    # Loaded by path so it works under any pytest import mode and from benchmarks/ too.
    name = "cp_browser_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("harness.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    exe = harness.find_chromium()
    if exe is None:
        reason = ("Chromium is not installed (not on PATH, CP_CHROMIUM unset): "
                  "run `apt-get install -y chromium` (Debian) or .ci/run, which installs it")
        if os.environ.get("CP_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -r requirements-dev.txt)")
    return exe


@pytest.fixture(scope="session")
def streamlit_server(chromium_executable: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``streamlit run app.py`` on a free 127.0.0.1 port; stopped at the end of the session, whatever happens.

    Depends on ``chromium_executable`` so that no server starts when the tests are skipped.
    """
    log_dir = tmp_path_factory.mktemp("streamlit")
    # CP_APP_DIR: run another folder's app.py (used to check this harness against a stand-in app).
    app_dir = os.environ.get("CP_APP_DIR") or harness.ROOT
    server = None

    def _interrupt(signum: int, frame: Any) -> None:
        # A SIGTERM (CI cap, `timeout`) would kill pytest without teardown and orphan the server;
        # as KeyboardInterrupt, pytest stops and runs the finalizers below.
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for attempt in range(3):  # the free port may be taken between choosing it and binding it
            server = harness.StreamlitServer("app.py", cwd=app_dir, log_path=log_dir / f"server{attempt}.log")
            server.start()
            try:
                server.wait_healthy(timeout=90)
                break
            except RuntimeError:  # exited early (e.g. port in use): try another port
                server.stop()
                if attempt == 2:
                    raise
        yield server
    finally:
        if server is not None:
            server.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def browser(chromium_executable: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = harness.launch_chromium(playwright, executable=chromium_executable)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshot_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    """Temp dir first (always), then the dir humans look at."""
    tmp = tmp_path_factory.mktemp("screenshots")
    if os.environ.get("CP_SCREENSHOT_DIR"):
        keep = Path(os.environ["CP_SCREENSHOT_DIR"])
    else:
        keep = harness.ROOT / "benchmarks" / "out" / "screenshots"  # ours (git-ignored): start it empty
        for old in keep.glob("*.png"):
            old.unlink()
    return (tmp, keep)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item, so the `app` fixture knows whether the test failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture()
def app(request: pytest.FixtureRequest, browser: Any, streamlit_server: Any,
        screenshot_dirs: tuple[Path, ...]) -> Iterator[Any]:
    """A fresh browser context (own cookies, own Streamlit session) on the running app.

    On failure, a screenshot ``FAILED-<test>.png`` and the tail of the server log help find out why.
    """
    context = browser.new_context(viewport=harness.VIEWPORT)
    context.set_default_timeout(30_000)
    page = context.new_page()
    streamlit_server.new_log()  # only this test's server output counts against it
    driver = harness.AppPage(page, streamlit_server, screenshot_dirs=screenshot_dirs)
    try:
        yield driver
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                shot = driver.screenshot(f"FAILED-{request.node.name}")
                print(f"screenshot of the failed page: {shot}")
            except Exception as exc:  # noqa: BLE001 - the original failure matters more
                print(f"no failure screenshot: {exc}")
            print("server log tail:\n" + streamlit_server.log_tail(3000))
        context.close()
