"""``thumbnail_map``: the items themselves at their map positions (TensorBoard projector's sprites), drawn by
Streamlit's built-in deck.gl (``st.pydeck_chart``).

Why deck.gl here and plotly elsewhere (FINDINGS.md, benchmarks/server/bench_map_engines.py): plotly draws images
only as layout images, one per point, which does not scale; deck.gl's IconLayer draws every thumbnail from ONE
sprite atlas (core.atlas) on the GPU (in software WebGL too), zooms them with the map,
shows a picture on hover and returns the clicked item. It has no box or lasso, and its picking stalls above
~10k points in software WebGL, so it stays the "images" view of at most ``MAX_THUMBS`` items; plotly keeps
selections. No basemap (``map_provider=None``) and an ``OrthographicView``: nothing is fetched from anywhere.

Returns the clicked row (an index into the map's coordinates) or None.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np
import streamlit as st

MAX_THUMBS = 4000  # thumbnails drawn at once (a seeded sample above this): picking stays responsive
CELL = 32  # atlas sprite side in pixels: the built-in datasets' own size
_SPAN = 1000.0  # map coordinates are rescaled to a square of this many "common" units (1 px at zoom 0)


@st.cache_data(max_entries=8, show_spinner="Packing the thumbnails into one sprite atlas…")
def _atlas(key: str, _images: np.ndarray) -> tuple[str, np.ndarray, tuple[int, int]]:
    """(PNG data URL of the atlas, sprite offsets (N, 2), atlas (width, height)), cached by ``key``."""
    from core.atlas import png_data_url, sprite_atlas

    atlas = sprite_atlas(_images, cell=CELL)
    return png_data_url(atlas.image), atlas.offsets, atlas.size


def _unit_square(coords: np.ndarray) -> np.ndarray:
    """(N, 2) map coordinates into [0, _SPAN]^2, aspect kept, y up (deck.gl's y points down)."""
    c = np.asarray(coords, dtype=np.float64)[:, :2]
    lo, hi = c.min(axis=0), c.max(axis=0)
    scale = _SPAN / max(float((hi - lo).max()), 1e-12)
    out = (c - lo) * scale
    out[:, 1] = (hi[1] - lo[1]) * scale - out[:, 1]
    return out


def _plain(text: str) -> str:
    """Plotly hover markup as plain text: deck.gl's tooltip escapes the fields it fills in."""
    return re.sub(r"<[^>]+>", "", str(text).replace("<br>", " · "))


def deck(coords: np.ndarray, rows: np.ndarray, atlas_url: str, offsets: np.ndarray, atlas_size: tuple[int, int],
         hover: Sequence[str], *, highlight: set[int] | None = None, icon_px: float = 20.0):
    """The pydeck Deck: one IconLayer per state (the highlighted items on top, the others faded when there is
    a highlight). ``rows`` (M,) the items drawn, ``offsets`` (M, 2) their sprites, ``hover`` M strings."""
    import pandas as pd
    import pydeck as pdk

    xy = _unit_square(coords[rows])
    zoom_fit = float(np.log2(560 / (_SPAN * 1.1)))  # the whole square in a ~560 px tall chart
    w, h = atlas_size
    show = 96 / CELL  # hover picture: 96 px, scaled from the atlas with CSS
    frame = pd.DataFrame({"row": rows.astype(np.int64), "x": xy[:, 0], "y": xy[:, 1],
                          "icon": [f"s{j}" for j in range(len(rows))], "text": [_plain(t) for t in hover],
                          "bx": -offsets[:, 0] * show, "by": -offsets[:, 1] * show})
    mapping = {f"s{j}": {"x": int(x), "y": int(y), "width": CELL, "height": CELL, "mask": False}
               for j, (x, y) in enumerate(offsets.tolist())}
    # pydeck reads a plain string as a JavaScript expression: constants are quoted ("'common'")
    # (the atlas too: unquoted, its "data:" read as an expression and the layer failed to draw)
    common = dict(get_icon="icon", get_position=["x", "y"], icon_atlas=f"'{atlas_url}'", icon_mapping=mapping,
                  size_units="'common'", size_scale=1, get_size=icon_px, pickable=True, size_min_pixels=3,
                  auto_highlight=True, highlight_color=[214, 39, 40, 160])
    if highlight:
        hot = frame["row"].isin(list(highlight)).to_numpy()
        layers = [pdk.Layer("IconLayer", frame[~hot], id="faded", opacity=0.15, **common),
                  pdk.Layer("IconLayer", frame[hot], id="thumbs", **common)]
    else:
        layers = [pdk.Layer("IconLayer", frame, id="thumbs", **common)]
    tooltip = {"html": (f"<div style=\"width:96px;height:96px;background-image:url('{atlas_url}');"
                        f"background-size:{w * show:.0f}px {h * show:.0f}px;background-position:{{bx}}px {{by}}px;"
                        "image-rendering:pixelated\"></div><div style=\"max-width:260px\">{text}</div>"),
               "style": {"backgroundColor": "white", "color": "#222", "fontSize": "12px"}}
    return pdk.Deck(layers=layers, views=[pdk.View(type="OrthographicView", controller=True)],
                    initial_view_state=pdk.ViewState(target=[_SPAN / 2, _SPAN / 2, 0], zoom=zoom_fit),
                    map_provider=None, map_style=None, tooltip=tooltip)


def clicked_row(event) -> int | None:
    """The row of the item a pydeck selection event holds (its ``row`` field), or None."""
    if not event:
        return None
    sel = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    objects = sel.get("objects", {}) if isinstance(sel, dict) else getattr(sel, "objects", {})
    for layer in ("thumbs", "faded"):
        for obj in (objects or {}).get(layer, []) or []:
            if isinstance(obj, dict) and obj.get("row") is not None:
                return int(obj["row"])
    return None


def thumbnail_map(coords: np.ndarray, images: np.ndarray, hover: Sequence[str] | Callable[[np.ndarray], Sequence[str]],
                  *, cache_key: str, key: str, highlight: set[int] | None = None, height: int = 560,
                  seed: int = 0) -> int | None:
    """Draw ``images`` (N, H, W, 3) uint8 at ``coords`` (N, >=2): a seeded sample of MAX_THUMBS above that.
    ``hover``: N strings, or a function of the drawn rows giving theirs (plotly's <br> markup is turned into
    plain text); ``highlight`` rows drawn on top, the rest faded. ``cache_key`` names the images (a content
    hash) for the atlas cache. Returns the clicked row."""
    n = len(coords)
    rows = np.arange(n) if n <= MAX_THUMBS else np.sort(np.random.default_rng(seed).choice(n, MAX_THUMBS,
                                                                                         replace=False))
    url, offsets, size = _atlas(f"{cache_key}:{n}:{seed}", images[rows])
    texts = hover(rows) if callable(hover) else [hover[i] for i in rows]
    d = deck(coords, rows, url, offsets, size, texts, highlight=highlight)
    event = st.pydeck_chart(d, key=key, on_select="rerun", selection_mode="single-object", height=height)
    st.caption(f"{len(rows):,} thumbnails" + (f" (a seeded sample of {n:,} items)" if len(rows) < n else "")
               + " drawn by deck.gl from one sprite atlas. Scroll or pinch to zoom until they are readable, drag "
                 "to pan, hover for a bigger picture, click one for its neighbours. Box and lasso selections "
                 "live on the dot map: switch the images off to draw one.")
    return clicked_row(event)
