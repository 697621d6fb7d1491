"""The Embedding Explorer in Chromium: the demo's map draws, a click on a point lists its neighbours.

Markup this relies on (pages/explorer.py): the map is the plotly chart with key ``explorer.map``; each
point's ``customdata`` is its row; after a click the page says "nearest neighbours in the original".
"""
from __future__ import annotations

from typing import Any

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
