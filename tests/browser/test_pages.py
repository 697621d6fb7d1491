"""Every page of the app, opened in a real Chromium: it renders, with no exception and no console error."""
from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROUTER_MARK = "in this session"  # ui.session.ROUTER_MARK (not imported: no app code in the browser process)

# Pages the app promises (issue 3); the nav may list more, and every listed page is opened.
EXPECTED_PAGES = ("Home", "Augmentation Lab", "Train", "Loss & Temperature Lab", "CLIP", "Text",
                  "Embedding Explorer")


def _labels(links: list[dict[str, str]]) -> list[str]:
    return [link["label"] for link in links]


def test_home_page_renders(app: Any) -> None:
    app.goto("/")
    assert app.main_text().strip(), "the home page's main block is empty"
    app.screenshot("00-home")
    assert app.problems() == []


def test_navigation_lists_expected_pages(app: Any) -> None:
    app.goto("/")
    labels = _labels(app.nav_links())
    missing = [name for name in EXPECTED_PAGES if not any(name.lower() in label.lower() for label in labels)]
    assert not missing, f"pages missing from the navigation: {missing}; it lists {labels}"


def test_every_page_renders_cleanly(app: Any) -> None:
    """Open each page listed in the navigation (fresh load by URL), screenshot it, check for errors."""
    app.goto("/")
    links = app.nav_links()
    assert links, "the app shows no navigation links (expected st.navigation with several pages)"
    failures: dict[str, list[str]] = {}
    for index, link in enumerate(links, start=1):
        label = link["label"] or link["href"]
        try:
            app.goto(link["href"])
        except Exception as exc:  # noqa: BLE001 - report every page, not only the first bad one
            failures[label] = [f"did not finish rendering: {exc}"]
            continue
        if not app.main_text().strip():
            failures.setdefault(label, []).append("main block is empty")
        if ROUTER_MARK not in app.page.inner_text('[data-testid="stSidebar"]'):
            # app.py writes this line on every page; without it Streamlit ran pages/ in legacy folder mode
            failures.setdefault(label, []).append(f"the router's sidebar line ('{ROUTER_MARK}') is missing")
        app.screenshot(f"{index:02d}-{label}")
        problems = app.problems()
        if problems:
            failures.setdefault(label, []).extend(problems)
    assert not failures, "\n\n".join(f"[{page}]\n" + "\n".join(p) for page, p in failures.items())

