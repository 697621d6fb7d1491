"""``big_map``: a Streamlit map for more points than a plotly scatter can carry (core.bigmap does the work).

One self-contained call for a page::

    picked = big_map(coords, labels, classes=names, key="explorer.bigmap", note=projection.describe())

The server draws the current window with datashader and sends one image; zoom and pan buttons (or a box
drawn on the chart) draw the new window again at full resolution. Hover shows, per grid cell, how many points
it holds and the label of the point nearest its centre; the coordinates typed under the map pick the nearest
point on the server (KD-tree). A click on a cell is handled too (``_apply_selection``), but in Chromium with
Streamlit 1.67 a click on the invisible cell markers did not reach the selection state (box selections do).
The caption says what was drawn and what was sampled.
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

_GRID = (48, 32)  # hover/click cells across x and y: ~1,500 invisible markers, light for the browser
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
    """Centres of the non-empty hover cells, their point counts and the point nearest each centre."""
    gx, gy = _GRID
    counts = bigmap.aggregate(index.coords, width=gx, height=gy, x_range=raster.x_range,
                              y_range=raster.y_range).values  # (gy, gx), row 0 lowest y
    rows, cols = np.nonzero(counts)
    (x0, x1), (y0, y1) = raster.x_range, raster.y_range
    cx = x0 + (cols + 0.5) * (x1 - x0) / gx
    cy = y0 + (rows + 0.5) * (y1 - y0) / gy
    nearest = index.tree.query(np.column_stack([cx, cy]), k=1)[1] if len(cx) else np.zeros(0, dtype=np.int64)
    return cx, cy, counts[rows, cols].astype(np.int64), np.asarray(nearest, dtype=np.int64)


def _figure(raster: bigmap.Raster, cells, hover: list[str], picked_xy, height: int,
            legend: Sequence[str] = ()) -> go.Figure:
    (x0, x1), (y0, y1) = raster.x_range, raster.y_range
    fig = go.Figure()
    fig.add_layout_image(source=Image.fromarray(raster.image, mode="RGBA"), xref="x", yref="y", x=x0, y=y1,
                         sizex=x1 - x0, sizey=y1 - y0, sizing="stretch", layer="below")
    cx, cy, _, _ = cells
    fig.add_scatter(x=cx, y=cy, mode="markers", marker=dict(size=14, opacity=0, color="#000"),
                    text=hover, hoverinfo="text", showlegend=False, name="cells")
    for i, name in enumerate(legend):  # legend entries only: the points themselves are in the image
        fig.add_scatter(x=[None], y=[None], mode="markers", name=str(name), hoverinfo="skip",
                        marker=dict(size=10, color=bigmap.PALETTE[i % len(bigmap.PALETTE)]))
    if picked_xy is not None:
        fig.add_scatter(x=[picked_xy[0]], y=[picked_xy[1]], mode="markers", hoverinfo="skip", showlegend=False,
                        marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(width=2, color="#d62728")))
    fig.update_xaxes(range=[x0, x1], showticklabels=False, zeroline=False, showgrid=False)
    fig.update_yaxes(range=[y0, y1], showticklabels=False, zeroline=False, showgrid=False)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), dragmode="select",
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

    hover = [f"{n:,} point{'s' if n != 1 else ''} here" + (f"<br>nearest: {label_of(i)}" if lab is not None else "")
             for n, i in zip(cells[2].tolist(), cells[3].tolist())]
    picked = st.session_state.get(f"{key}.picked")
    picked_xy = tuple(c[picked]) if picked is not None else None
    legend = (names or [f"label {i}" for i in range(int(lab.max()) + 1)]) if lab is not None else []
    event = st.plotly_chart(_figure(raster, cells, hover, picked_xy, height, legend[:20]), key=f"{key}.chart",
                            on_select="rerun", selection_mode=("points", "box"), width="stretch",
                            config={"displayModeBar": False, "scrollZoom": False})
    before = (st.session_state[f"{key}.window"], st.session_state.get(f"{key}.picked"))
    _apply_selection(key, getattr(event, "selection", None) or (event or {}).get("selection"), cells)
    if (st.session_state[f"{key}.window"], st.session_state.get(f"{key}.picked")) != before:
        st.rerun()

    zoom_level = (full[0][1] - full[0][0]) / (x_range[1] - x_range[0])
    st.caption(
        f"All {raster.total:,} points drawn on the server by datashader into a {width} x {height} image (every "
        f"point counted, none dropped); this window ({zoom_level:.3g}x) holds {raster.shown:,}. Colour mixes the "
        "labels of the points under each pixel, brightness is density. Draw a box to zoom into it; hover a spot "
        "for its count; pick a point by its coordinates below." + (f" {note}" if note else "")
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
