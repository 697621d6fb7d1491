"""The Text page in a real browser: type a query, see the best match and the results table.

Markup this relies on (pages/text.py): the query box has key ``text.query``; the best match is drawn in the
container with key ``text.best`` (the results table itself is a canvas, so its text is not in the DOM).
"""
from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def test_search_shows_results(app: Any) -> None:
    app.goto("/")
    text_page = next(link for link in app.nav_links() if link["label"] == "Text")
    app.goto(text_page["href"], timeout=180)  # a cold server loads torch and the sentence model first
    box = app.page.locator(".st-key-text-query input").first
    box.wait_for(state="visible", timeout=120_000)
    box.fill("what makes bread rise")
    box.press("Enter")
    app.wait_idle(timeout=120)
    best = app.page.locator(".st-key-text-best").first
    deadline = time.monotonic() + 60
    while "yeast" not in best.inner_text() and time.monotonic() < deadline:
        app.page.wait_for_timeout(250)
    assert "yeast" in best.inner_text(), best.inner_text()
    assert app.page.locator('[data-testid="stDataFrame"]').count() >= 1, "the results table is drawn"
    app.screenshot("text-search")
    assert app.problems() == []
