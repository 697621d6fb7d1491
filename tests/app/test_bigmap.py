"""ui.bigmap.big_map in a tiny AppTest script: draws, zooms (re-rasterises), pans, resets and picks on the server."""
from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

N = 60_000  # above core.bigmap.BIG_MAP_THRESHOLD


def _script():
    import numpy as np
    import streamlit as st

    from ui.bigmap import big_map

    rng = np.random.default_rng(0)
    coords = rng.normal(size=(60_000, 2)).astype(np.float32)
    labels = rng.integers(0, 3, 60_000)
    picked = big_map(coords, labels, classes=["circle", "square", "star"], key="t.map",
                     note="UMAP fitted on a sample of 20,000.")
    st.write(f"picked={picked}")


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, 2)).astype(np.float32), rng.integers(0, 3, N)


@pytest.fixture
def at():
    at = AppTest.from_function(_script, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def _window(at):
    return at.session_state["t.map.window"]


def _image_bytes(at) -> int:
    fig = at.get("plotly_chart")[0].proto.spec
    return len(fig)


def test_draws_the_whole_map_and_says_what_was_drawn(at):
    caption = " ".join(c.value for c in at.caption)
    assert f"All {N:,} points drawn" in caption and f"holds {N:,}" in caption
    assert "sample of 20,000" in caption
    assert len(at.get("plotly_chart")) == 1
    assert at.markdown[-1].value == "picked=None"


def test_zoom_pan_reset_redraw_the_window(at):
    from core import bigmap

    coords, _ = _data()
    full = _window(at)
    np.testing.assert_allclose(np.array(full), np.array(bigmap.extent(coords)), rtol=1e-6)
    spec_full = at.get("plotly_chart")[0].proto.spec
    at.button(key="t.map.zoom_in").click().run()
    (x0, x1), (y0, y1) = _window(at)
    assert x1 - x0 == pytest.approx((full[0][1] - full[0][0]) / 2)
    inside = ((coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)).sum()
    assert f"holds {inside:,}" in " ".join(c.value for c in at.caption)
    assert at.get("plotly_chart")[0].proto.spec != spec_full  # a new raster was drawn for the window
    at.button(key="t.map.pan→").click().run()
    assert _window(at)[0][0] == pytest.approx(x0 + (x1 - x0) / 2)
    at.button(key="t.map.reset").click().run()
    assert _window(at) == full
    assert not at.exception


def test_typed_coordinates_pick_the_nearest_point_on_the_server(at):
    coords, labels = _data()
    at.number_input(key="t.map.x").set_value(1.25)
    at.number_input(key="t.map.y").set_value(-0.5)
    at.button(key="t.map.pick").click().run()
    brute = int(np.argmin(((coords - (1.25, -0.5)) ** 2).sum(axis=1)))
    assert at.markdown[-1].value == f"picked={brute}"
    names = ["circle", "square", "star"]
    assert any(f"row {brute} · {names[labels[brute]]}" in m.value for m in at.markdown)


def test_box_and_click_selections_zoom_and_pick():
    import ui.bigmap as ub
    from core import bigmap

    coords, _ = _data()
    index = bigmap.PointIndex(coords)
    raster = bigmap.rasterize(coords, width=80, height=60)
    cells = ub._cells(index, raster)
    # every non-empty cell's nearest point is the brute-force nearest to its centre
    for j in (0, len(cells[0]) // 2, len(cells[0]) - 1):
        d = ((coords - (cells[0][j], cells[1][j])) ** 2).sum(axis=1)
        assert cells[3][j] == int(np.argmin(d))
    assert cells[2].sum() == N

    import streamlit as st

    st.session_state.clear()
    st.session_state["k.window"] = raster.x_range, raster.y_range
    ub._apply_selection("k", {"box": [{"x": [0.5, -0.5], "y": [-1, 1]}], "points": []}, cells)
    assert st.session_state["k.window"] == ((-0.5, 0.5), (-1.0, 1.0))
    ub._apply_selection("k", {"box": [], "points": [{"point_index": 5, "curve_number": 0}]}, cells)
    assert st.session_state["k.picked"] == int(cells[3][5])
    st.session_state["k.window"] = raster.x_range, raster.y_range
    ub._apply_selection("k", {"box": [], "points": [{"point_index": 5, "curve_number": 0}]}, cells)
    assert st.session_state["k.window"] == (raster.x_range, raster.y_range)  # a repeated report is not re-applied


def test_the_click_grid_tiles_the_window_and_an_empty_cell_picks_the_nearest_point():
    """A click anywhere lands on a cell (empty ones too) and picks the point nearest that cell's centre."""
    import ui.bigmap as ub
    from core import bigmap

    rng = np.random.default_rng(1)
    coords = np.concatenate([rng.normal(size=(500, 2)) * 0.1, rng.normal(size=(500, 2)) * 0.1 + 5])
    index = bigmap.PointIndex(coords)
    raster = bigmap.rasterize(coords, width=80, height=60)
    cx, cy, counts, nearest = ub._cells(index, raster)
    gx, gy = ub._GRID
    assert len(cx) == gx * gy and counts.sum() == len(coords)
    empty = np.flatnonzero(counts == 0)
    assert len(empty) > gx * gy / 2  # two small blobs: most of the window is empty
    for j in empty[:: max(1, len(empty) // 7)]:
        brute = int(np.argmin(((coords - (cx[j], cy[j])) ** 2).sum(axis=1)))
        assert nearest[j] == brute
        import streamlit as st

        st.session_state.clear()
        ub._apply_selection("k", {"box": [], "points": [{"point_index": int(j), "curve_number": 0}]},
                            (cx, cy, counts, nearest))
        assert st.session_state["k.picked"] == brute
