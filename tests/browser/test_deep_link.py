"""A link to a page other than Home, as the FIRST request to a freshly started server.

Streamlit runs ``pages/<name>.py`` bare (its legacy ``pages/`` folder mode) until some session has run
``st.navigation``; ``ui/router.py`` makes such a page route itself through ``app.py``. Without it, the first
visitor of ``/train?train.steps=100`` saw the raw file list, no router sidebar line, and 200 steps.
This test starts its own server, so no earlier test can have run the router first.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import harness

pytestmark = pytest.mark.browser

ROUTER_MARK = "in this session"  # ui.session.ROUTER_MARK


@pytest.fixture()
def fresh_server(chromium_executable: str, tmp_path) -> Any:
    server = harness.StreamlitServer("app.py", log_path=tmp_path / "server.log")
    server.start()
    try:
        server.wait_healthy(timeout=90)
        yield server
    finally:
        server.stop()


def _widget_text(page: Any, key: str) -> str:
    return page.locator(harness.key_selector(key)).first.inner_text()


def test_deep_link_with_settings_as_first_request(fresh_server: Any, browser: Any,
                                                  screenshot_dirs: tuple) -> None:
    context = browser.new_context(viewport=harness.VIEWPORT)
    try:
        app = harness.AppPage(context.new_page(), fresh_server, screenshot_dirs=screenshot_dirs)
        app.goto("/train?train.steps=100&train.n=1000&train.method=moco")
        app.screenshot("deep-link-first-request")
        sidebar = app.page.inner_text('[data-testid="stSidebar"]')
        assert ROUTER_MARK in sidebar, "app.py's sidebar line is missing: the page ran without the router"
        labels = [link["label"] for link in app.nav_links()]
        assert any("Loss & Temperature Lab" in label for label in labels), labels  # the router's titles
        assert "100" in _widget_text(app.page, "train.steps"), _widget_text(app.page, "train.steps")
        assert "1,000" in _widget_text(app.page, "train.n")
        # MoCo's queue slider is drawn only when the link's method was applied
        assert app.page.locator(harness.key_selector("train.queue_size")).count() == 1
        assert app.problems() == []
    finally:
        context.close()
