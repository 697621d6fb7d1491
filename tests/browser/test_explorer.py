"""The Embedding Explorer in Chromium: the demo's map draws, a click on a point lists its neighbours.

Markup this relies on (pages/explorer.py): the map is the plotly chart with key ``explorer.map``; each
point's ``customdata`` is its row; after a click the page says "nearest neighbours in the original".
"""
from __future__ import annotations

import re

from typing import Any

import numpy as np

import pytest

pytestmark = pytest.mark.browser

MAP_KEY = "explorer.map"
# The demo model loads and embeds 1,000 images; the UMAP waits for the server's numba warm-up when cold.
FIRST_MAP_TIMEOUT = 240.0

_CLICK_JS = """(sel) => {
  const gd = document.querySelector(sel + ' .js-plotly-plot');
  gd.scrollIntoView({block: 'center'});  // the mouse can only click inside the viewport
  const tr = gd._fullData[0], L = gd._fullLayout, box = gd.getBoundingClientRect();
  const i = Math.floor(tr.x.length / 2);
  return {x: box.left + L._size.l + L.xaxis.l2p(tr.x[i]), y: box.top + L._size.t + L.yaxis.l2p(tr.y[i])};
}"""


def _open_demo_map(app: Any) -> None:
    app.goto("/")
    link = next(link for link in app.nav_links() if "Explorer" in link["label"])
    app.goto(link["href"], timeout=FIRST_MAP_TIMEOUT)
    points = app.wait_for_plot_points(MAP_KEY, 50, timeout=FIRST_MAP_TIMEOUT)
    assert points >= 50
    app.wait_idle(timeout=60)


def test_demo_map_draws_with_its_honesty_scores(app: Any) -> None:
    _open_demo_map(app)
    text = app.main_text()
    assert "Neighbour preservation" in text and "Trustworthiness" in text and "UMAP 2-D" in text
    app.screenshot("explorer-map")
    assert app.problems() == []


def test_demo_map_click_a_point_shows_its_neighbours(app: Any) -> None:
    _open_demo_map(app)
    spot = app.page.evaluate(_CLICK_JS, ".st-key-explorer-map")  # harness.key_selector(MAP_KEY)
    app.page.wait_for_timeout(300)
    spot = app.page.evaluate(_CLICK_JS, ".st-key-explorer-map")  # again, after the scroll settled
    app.page.mouse.move(spot["x"], spot["y"])  # plotly's WebGL scatter picks the clicked point on hover
    app.page.wait_for_timeout(500)
    app.page.mouse.click(spot["x"], spot["y"])
    app.page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMain\"]').innerText.includes('nearest neighbours in the original')",
        timeout=60_000)
    app.wait_idle(timeout=60)
    text = app.main_text()
    assert "nearest neighbours in the original" in text and "Neighbour preservation" in text
    app.screenshot("explorer-neighbours")
    assert app.problems() == []


# ------------------------------------------------------------------------------------------ issue 30
# A server of its own, with the Explorer's limits lowered so the demo's 1,000 points count as a big set: the
# datashader map appears under a 300-point sample, and the first picture is PCA (no UMAP to wait for).
SMALL_LIMITS = {"CP_EXPLORER_MAX_POINTS": "300", "CP_EXPLORER_SLOW_MAP_POINTS": "300"}


@pytest.fixture(scope="module")
def small_limits_server(chromium_executable: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.browser.conftest import harness

    server = harness.StreamlitServer("app.py", env=SMALL_LIMITS,
                                     log_path=tmp_path_factory.mktemp("explorer") / "server.log")
    server.start()
    try:
        server.wait_healthy(timeout=90)
        yield server
    finally:
        server.stop()


@pytest.fixture()
def small_app(browser: Any, small_limits_server: Any, screenshot_dirs):
    from tests.browser.conftest import harness

    context = browser.new_context(viewport=harness.VIEWPORT)
    context.set_default_timeout(30_000)
    driver = harness.AppPage(context.new_page(), small_limits_server, screenshot_dirs=screenshot_dirs)
    small_limits_server.new_log()
    try:
        yield driver
    finally:
        context.close()


def _open_explorer(app: Any) -> None:
    app.goto("/")
    link = next(link for link in app.nav_links() if "Explorer" in link["label"])
    app.goto(link["href"], timeout=FIRST_MAP_TIMEOUT)
    app.wait_for_plot_points(MAP_KEY, 20, timeout=FIRST_MAP_TIMEOUT)
    app.wait_idle(timeout=60)


_CELL_JS = """([sel, fx, fy]) => {
  const gd = document.querySelector(sel + ' .js-plotly-plot');
  gd.scrollIntoView({block: 'center'});
  const L = gd._fullLayout, b = gd.getBoundingClientRect();
  const px = L._size.w * fx, py = L._size.h * fy;
  return {x: b.left + L._size.l + px, y: b.top + L._size.t + py, mx: L.xaxis.p2l(px), my: L.yaxis.p2l(py)};
}"""


def test_click_anywhere_on_the_big_map_shows_the_nearest_points_neighbours(small_app: Any) -> None:
    app = small_app
    _open_explorer(app)
    text = app.main_text()
    assert "All 1,000 points" in text and "PCA 2-D" in text
    sel = ".st-key-explorer-bigmap-chart"
    app.page.wait_for_selector(sel + " .js-plotly-plot", timeout=60_000)
    app.page.evaluate(_CELL_JS, [sel, 0.37, 0.41])
    app.page.wait_for_timeout(400)
    spot = app.page.evaluate(_CELL_JS, [sel, 0.37, 0.41])  # again, after the scroll settled
    app.page.mouse.move(spot["x"], spot["y"])
    app.page.wait_for_timeout(400)
    app.page.mouse.click(spot["x"], spot["y"])
    app.page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMain\"]').innerText.includes('nearest neighbours in the original')",
        timeout=60_000)
    app.wait_idle(timeout=60)
    text = app.main_text()
    assert "Picked:" in text and re.search(r"nearest neighbours in the original \d+-D space", text), text[:400]
    app.screenshot("explorer-bigmap-click")
    assert app.problems() == []


def test_thumbnails_on_the_map_and_a_box_selection_with_its_table(small_app: Any) -> None:
    app = small_app
    _open_explorer(app)
    # a box drawn with plotly's box tool on the dot map: the group's table and gallery appear
    app.page.locator(".st-key-explorer-map .modebar-btn[data-val='select']").first.click()
    a = app.page.evaluate(_CELL_JS, [".st-key-explorer-map", 0.2, 0.2])
    b = app.page.evaluate(_CELL_JS, [".st-key-explorer-map", 0.8, 0.8])
    app.page.mouse.move(a["x"], a["y"])
    app.page.mouse.down()
    app.page.mouse.move((a["x"] + b["x"]) / 2, (a["y"] + b["y"]) / 2, steps=5)
    app.page.mouse.move(b["x"], b["y"], steps=5)
    app.page.mouse.up()
    app.page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMain\"]').innerText.includes('selected items')",
        timeout=60_000)
    app.wait_idle(timeout=60)
    assert app.page.locator(".stDataFrame, [data-testid='stDataFrame']").count() >= 1
    app.screenshot("explorer-box-selection")
    # images on the map: one deck.gl canvas with the thumbnails drawn into it
    app.page.locator(".st-key-explorer-thumbs label").first.click()
    app.page.wait_for_selector(".st-key-explorer-thumbmap canvas", timeout=60_000)
    app.wait_idle(timeout=60)
    app.page.wait_for_timeout(3000)  # the atlas texture loads after the first frame
    # the full-page shot first: it grows the viewport and puts it back, which scrolls the page to the top, so the
    # chart's pixels and its bounding box below must both be taken after it, at one scroll position
    app.screenshot("explorer-thumbnails")
    chart = app.page.locator(".st-key-explorer-thumbmap").first
    chart.scroll_into_view_if_needed()
    app.page.wait_for_timeout(500)
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(chart.screenshot())).convert("RGB")).astype(int)
    box = chart.bounding_box()
    coloured = pixels.max(axis=2) - pixels.min(axis=2) > 60  # the shapes are saturated colours on white
    assert coloured.mean() > 0.002, coloured.mean()
    # hover a thumbnail: deck.gl's tooltip shows the bigger picture (a CSS crop of the same atlas) and its text
    ys, xs = np.nonzero(coloured)
    order = np.argsort((xs - np.median(xs)) ** 2 + (ys - np.median(ys)) ** 2)
    x, y = box["x"] + float(xs[order[0]]), box["y"] + float(ys[order[0]])
    view = app.page.viewport_size
    assert 0 <= x < view["width"] and 0 <= y < view["height"], (x, y, view)  # the mouse only reaches the viewport
    app.page.mouse.move(x, y)
    tip = app.page.locator(".deck-tooltip").first
    tip.wait_for(state="visible", timeout=20_000)
    assert "background-image" in (tip.inner_html() or "")
    app.screenshot("explorer-thumbnail-hover")
    # the same thumbnail again (the full-page shot scrolled the page): the same offset inside the chart
    chart.scroll_into_view_if_needed()
    app.page.wait_for_timeout(500)
    moved = chart.bounding_box()
    x, y = x - box["x"] + moved["x"], y - box["y"] + moved["y"]
    assert 0 <= x < view["width"] and 0 <= y < view["height"], (x, y, view)
    app.page.mouse.click(x, y)
    app.page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMain\"]').innerText.includes('nearest neighbours in the original')",
        timeout=60_000)
    app.wait_idle(timeout=60)
    assert app.problems() == []
