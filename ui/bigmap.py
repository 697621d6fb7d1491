"""``big_map``: a Streamlit map for more points than a plotly scatter can carry (core.bigmap does the work).

One self-contained call for a page::

    picked = big_map(coords, labels, classes=names, key="explorer.bigmap", note=projection.describe())

The server draws the current window with datashader and sends one image; zoom and pan buttons (or a box
drawn with the toolbar's box tool) draw the new window again at full resolution. A grid of nearly invisible
cells tiles the window: hover shows how many points a cell holds, and a click anywhere picks the point nearest
that cell's centre (a KD-tree on the server), as do coordinates typed under the map. Two things made clicks
reach Streamlit 1.67 in Chromium: cells drawn with opacity 0 are never selected by plotly, and in the "select"
drag mode a click clears the selection instead of selecting, so the map opens in "zoom" mode on fixed axes
(nothing zooms in the browser; the server redraws). The caption says what was drawn and what was sampled.
Returns the picked row index, or None.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core import bigmap

# Click cells across x and y, one invisible square marker each (about 12 px on an 800 x 560 map): a click
# anywhere lands on a cell and picks the point nearest its centre; ~3,000 SVG markers stay light for a browser.
_GRID = (66, 46)
_ZOOM_STEP = 2.0


def _fingerprint(coords: np.ndarray, labels: np.ndarray | None) -> str:
    h = hashlib.blake2b(np.ascontiguousarray(coords).tobytes(), digest_size=12)
    if labels is not None:
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


@st.cache_resource(max_entries=4, show_spinner=False)
def _index(fingerprint: str, _coords: np.ndarray) -> bigmap.PointIndex:
    return bigmap.PointIndex(_coords)


@st.cache_data(max_entries=32, show_spinner=False)
def _raster(fingerprint: str, _coords: np.ndarray, _labels: np.ndarray | None, x_range, y_range,
            width: int, height: int) -> bigmap.Raster:
    return bigmap.rasterize(_coords, _labels, width=width, height=height, x_range=x_range, y_range=y_range,
                            spread=1)


def _cells(index: bigmap.PointIndex, raster: bigmap.Raster):
    """Centres of EVERY cell of the click grid (empty ones too, so a click anywhere lands on one), their point
    counts and the point nearest each centre (KD-tree over all points)."""
    gx, gy = _GRID
    counts = bigmap.aggregate(index.coords, width=gx, height=gy, x_range=raster.x_range,
                              y_range=raster.y_range).values  # (gy, gx), row 0 lowest y
    rows, cols = np.divmod(np.arange(gx * gy), gx)
    (x0, x1), (y0, y1) = raster.x_range, raster.y_range
    cx = x0 + (cols + 0.5) * (x1 - x0) / gx
    cy = y0 + (rows + 0.5) * (y1 - y0) / gy
    nearest = index.tree.query(np.column_stack([cx, cy]), k=1)[1]
    return cx, cy, counts[rows, cols].astype(np.int64), np.asarray(nearest, dtype=np.int64)


def _figure(raster: bigmap.Raster, cells, hover: list[str], picked_xy, height: int,
            legend: Sequence[str] = (), cell_px: float = 14.0) -> go.Figure:
    (x0, x1), (y0, y1) = raster.x_range, raster.y_range
    fig = go.Figure()
    fig.add_layout_image(source=Image.fromarray(raster.image, mode="RGBA"), xref="x", yref="y", x=x0, y=y1,
                         sizex=x1 - x0, sizey=y1 - y0, sizing="stretch", layer="below")
    cx, cy, _, _ = cells
    # Nearly invisible, not invisible (white at 1%): plotly does not select a point drawn with opacity 0, so a click on one
    # never reached Streamlit. Squares the size of a cell tile the whole window.
    fig.add_scatter(x=cx, y=cy, mode="markers", text=hover, hoverinfo="text", showlegend=False, name="cells",
                    marker=dict(size=cell_px, opacity=0.01, color="#fff", symbol="square", line=dict(width=0)),
                    selected=dict(marker=dict(opacity=0.01)), unselected=dict(marker=dict(opacity=0.01)))
    for i, name in enumerate(legend):  # legend entries only: the points themselves are in the image
        fig.add_scatter(x=[None], y=[None], mode="markers", name=str(name), hoverinfo="skip",
                        marker=dict(size=10, color=bigmap.PALETTE[i % len(bigmap.PALETTE)]))
    if picked_xy is not None:
        fig.add_scatter(x=[picked_xy[0]], y=[picked_xy[1]], mode="markers", hoverinfo="skip", showlegend=False,
                        marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(width=2, color="#d62728")))
    fig.update_xaxes(range=[x0, x1], showticklabels=False, zeroline=False, showgrid=False, fixedrange=True)
    fig.update_yaxes(range=[y0, y1], showticklabels=False, zeroline=False, showgrid=False, fixedrange=True)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), dragmode="zoom",
                      plot_bgcolor="white", clickmode="event+select", showlegend=bool(legend),
                      legend=dict(orientation="v", y=1, x=1.02))
    return fig


def _set_window(key: str, window) -> None:
    st.session_state[f"{key}.window"] = (tuple(map(float, window[0])), tuple(map(float, window[1])))


def _zoom(key: str, factor: float) -> None:
    _set_window(key, bigmap.zoom(*st.session_state[f"{key}.window"], factor))


def _pan(key: str, dx: float, dy: float) -> None:
    _set_window(key, bigmap.pan(*st.session_state[f"{key}.window"], dx, dy))


def _reset(key: str, full) -> None:
    _set_window(key, full)


def _pick_typed(key: str, index: bigmap.PointIndex) -> None:
    st.session_state[f"{key}.picked"] = index.nearest(st.session_state[f"{key}.x"], st.session_state[f"{key}.y"])


def _apply_selection(key: str, selection, cells) -> None:
    """A box drawn on the chart zooms to it; a click on a cell picks the point nearest that cell's centre.
    Each selection is applied once (the widget keeps reporting it on later reruns)."""
    if not selection:
        return
    boxes, points = selection.get("box") or [], selection.get("points") or []
    token = repr((boxes, [p.get("point_index") for p in points]))
    if st.session_state.get(f"{key}.applied") == token:
        return
    st.session_state[f"{key}.applied"] = token
    if boxes:
        xs, ys = boxes[-1].get("x", []), boxes[-1].get("y", [])
        if len(xs) == 2 and len(ys) == 2 and xs[0] != xs[1] and ys[0] != ys[1]:
            _set_window(key, ((min(xs), max(xs)), (min(ys), max(ys))))
    elif points:
        i = points[-1].get("point_index")
        if i is not None and 0 <= i < len(cells[3]) and points[-1].get("curve_number", 0) == 0:
            st.session_state[f"{key}.picked"] = int(cells[3][i])


def big_map(coords, labels=None, *, classes: Sequence[str] | None = None, ids: Sequence[str] | None = None,
            key: str, note: str | None = None, width: int = 800, height: int = 560) -> int | None:
    """Draw ``coords`` (N, 2) as a zoomable datashader image; return the picked row index or None.

    ``labels``: int codes (N,) into ``classes`` (colours and hover); ``ids``: per-row names shown when picked;
    ``note``: a sentence about how the coordinates were made (e.g. ``SampledProjection.describe()``), shown
    under the map. Widget keys start with ``key``.
    """
    c = np.ascontiguousarray(coords, dtype=np.float32)
    lab = None if labels is None else np.asarray(labels, dtype=np.int64)
    fp = _fingerprint(c, lab)
    full = bigmap.extent(c)
    if st.session_state.get(f"{key}.fingerprint") != fp:  # new data: start from the whole map
        st.session_state[f"{key}.fingerprint"] = fp
        _set_window(key, full)
        st.session_state[f"{key}.picked"] = None
        st.session_state.pop(f"{key}.applied", None)
    index = _index(fp, c)

    buttons = st.columns([3, 3, 1, 1, 1, 1, 3])
    buttons[0].button("Zoom in", key=f"{key}.zoom_in", on_click=_zoom, args=(key, _ZOOM_STEP),
                      icon=":material/zoom_in:", help="Draw the middle half of the window again, at full detail.")
    buttons[1].button("Zoom out", key=f"{key}.zoom_out", on_click=_zoom, args=(key, 1 / _ZOOM_STEP),
                      icon=":material/zoom_out:")
    for col, (label, dx, dy) in zip(buttons[2:6], (("←", -0.5, 0), ("→", 0.5, 0), ("↑", 0, 0.5), ("↓", 0, -0.5))):
        col.button(label, key=f"{key}.pan{label}", on_click=_pan, args=(key, dx, dy), help="Move half a window.")
    buttons[6].button("Whole map", key=f"{key}.reset", on_click=_reset, args=(key, full),
                      icon=":material/fit_screen:")

    x_range, y_range = st.session_state[f"{key}.window"]
    raster = _raster(fp, c, lab, x_range, y_range, int(width), int(height))
    cells = _cells(index, raster)
    names = list(classes) if classes is not None else None

    def label_of(i: int) -> str:
        if lab is None:
            return ""
        return str(names[lab[i]]) if names is not None and lab[i] < len(names) else f"label {lab[i]}"

    hover = [(f"{n:,} point{'s' if n != 1 else ''} here" if n else "no point here")
             + f"<br>click: {ids[i] if ids is not None else f'row {i}'}" + (f" · {label_of(i)}" if lab is not None else "")
             for n, i in zip(cells[2].tolist(), cells[3].tolist())]
    picked = st.session_state.get(f"{key}.picked")
    picked_xy = tuple(c[picked]) if picked is not None else None
    legend = (names or [f"label {i}" for i in range(int(lab.max()) + 1)]) if lab is not None else []
    event = st.plotly_chart(_figure(raster, cells, hover, picked_xy, height, legend[:20],
                                    cell_px=1.3 * (height - 20) / _GRID[1]), key=f"{key}.chart",
                            on_select="rerun", selection_mode=("points", "box"), width="stretch",
                            config={"scrollZoom": False, "displaylogo": False,
                                    "modeBarButtonsToRemove": ["zoom2d", "pan2d", "lasso2d", "zoomIn2d", "zoomOut2d",
                                                               "autoScale2d", "resetScale2d", "toImage"]})
    before = (st.session_state[f"{key}.window"], st.session_state.get(f"{key}.picked"))
    _apply_selection(key, getattr(event, "selection", None) or (event or {}).get("selection"), cells)
    if (st.session_state[f"{key}.window"], st.session_state.get(f"{key}.picked")) != before:
        st.rerun()

    zoom_level = (full[0][1] - full[0][0]) / (x_range[1] - x_range[0])
    st.caption(
        f"All {raster.total:,} points drawn on the server by datashader into a {width} x {height} image (every "
        f"point counted, none dropped); this window ({zoom_level:.3g}x) holds {raster.shown:,}. Colour mixes the "
        "labels of the points under each pixel, brightness is density. Click anywhere to pick the nearest point; "
        "draw a box with the toolbar's box tool to zoom into it; hover a spot for its count." + (f" {note}" if note else "")
    )
    with st.expander("Pick a point by its coordinates"):
        cols = st.columns([2, 2, 1])
        cx, cy = (x_range[0] + x_range[1]) / 2, (y_range[0] + y_range[1]) / 2
        cols[0].number_input("x", value=float(cx), key=f"{key}.x", format="%.4f", help="Map x coordinate.")
        cols[1].number_input("y", value=float(cy), key=f"{key}.y", format="%.4f", help="Map y coordinate.")
        cols[2].button("Pick nearest", key=f"{key}.pick", on_click=_pick_typed, args=(key, index))
    picked = st.session_state.get(f"{key}.picked")
    if picked is not None:
        name = ids[picked] if ids is not None else f"row {picked}"
        st.markdown(f"**Picked:** {name}" + (f" · {label_of(picked)}" if lab is not None else "")
                    + f" at ({c[picked, 0]:.3f}, {c[picked, 1]:.3f})")
    return picked
