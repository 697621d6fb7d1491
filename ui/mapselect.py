"""Selections both ways between a map and a table: a box / lasso on the map makes a *group* (kept in the
session), the group fills a table (with thumbnails) and a gallery, and rows ticked in the table are
highlighted on the map with the rest greyed.

Why the group lives in session state and not in the chart: a plotly chart whose figure changes (to highlight
rows picked in the table) is a new chart to Streamlit, which drops the chart's own selection. So the map's
selection is copied into the group once per new selection (a token of its rows), and only a new non-empty
selection, a click on one point, or the Clear button change it.

State (per ``prefix``): ``<prefix>._group`` = {"space": key, "rows": [...], "token": str}; ``<prefix>._focus``
= (space key, row): the one item whose neighbours are shown, from the last click on any map or a typed row. The table's widget
key is ``<prefix>.table.<token>``, a new widget per group, so an old table's ticks never apply to a new group.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import streamlit as st

MAX_TABLE_ROWS = 2000  # a group bigger than this is listed by its first rows (the download has every id)
MAX_TABLE_IMAGES = 500  # thumbnails in the table (data URLs of ~1 kB each)


def _token(rows: Sequence[int]) -> str:
    return hashlib.blake2b(np.asarray(rows, dtype=np.int64).tobytes(), digest_size=6).hexdigest()


def group(prefix: str, space_key: str) -> list[int]:
    """The current group of rows for this space (empty when none, or when it belongs to another space)."""
    g = st.session_state.get(f"{prefix}._group")
    return list(g["rows"]) if g and g.get("space") == space_key else []


def table_key(prefix: str, space_key: str) -> str | None:
    g = st.session_state.get(f"{prefix}._group")
    return f"{prefix}.table.{g['token']}" if g and g.get("space") == space_key else None


def set_group(prefix: str, space_key: str, rows: Sequence[int]) -> None:
    rows = [int(r) for r in rows]
    st.session_state[f"{prefix}._group"] = {"space": space_key, "rows": rows, "token": _token(rows)}


def clear(prefix: str) -> None:
    st.session_state.pop(f"{prefix}._group", None)


def focus(prefix: str, space_key: str) -> int | None:
    """The one item whose neighbours are shown (the last click, on any map, or a typed row), or None."""
    f = st.session_state.get(f"{prefix}._focus")
    return int(f[1]) if f and f[0] == space_key else None


def set_focus(prefix: str, space_key: str, row: int | None) -> None:
    st.session_state[f"{prefix}._focus"] = None if row is None else (space_key, int(row))


def take_pick(prefix: str, space_key: str, source: str, row: int | None) -> bool:
    """A single pick reported by a widget that keeps reporting it (a map click): it becomes the focus once,
    when it differs from what that widget reported before. Returns True when the focus changed."""
    seen = st.session_state.setdefault(f"{prefix}._seen_pick", {})
    if row is None or seen.get(source) == (space_key, int(row)):
        return False
    seen[source] = (space_key, int(row))
    set_focus(prefix, space_key, row)
    return True


def take_map_selection(prefix: str, space_key: str, rows: Sequence[int]) -> bool:
    """Copy a map selection into the group when it is new; returns True when the group changed.

    Several rows (box, lasso) become the group; one row (a click) becomes the focus, whose neighbours are
    shown. An empty selection (a redrawn chart, a double-click) leaves both as they are."""
    rows = [int(r) for r in rows]
    if not rows:
        return False
    token = (space_key, _token(rows))
    if st.session_state.get(f"{prefix}._seen") == token:
        return False
    st.session_state[f"{prefix}._seen"] = token
    if len(rows) == 1:
        set_focus(prefix, space_key, rows[0])
    else:
        set_group(prefix, space_key, rows)
    return True


def ticked(prefix: str, space_key: str) -> list[int]:
    """Rows (of the space) ticked in the group's table, read from its widget state before it is drawn."""
    rows, key = group(prefix, space_key), table_key(prefix, space_key)
    if not rows or key is None:
        return []
    state = st.session_state.get(key)
    if not state:
        return []
    sel = state.get("selection", {}) if isinstance(state, dict) else getattr(state, "selection", {})
    picked = sel.get("rows", []) if isinstance(sel, dict) else getattr(sel, "rows", [])
    shown = rows[:MAX_TABLE_ROWS]
    return [shown[i] for i in picked if 0 <= int(i) < len(shown)]


def picked_in_gallery(prefix: str, space_key: str) -> list[int]:
    """Rows whose gallery image was clicked (toggled on) for the current group."""
    g = st.session_state.get(f"{prefix}._group")
    state = st.session_state.get(f"{prefix}._gallery")
    if not g or g.get("space") != space_key or not state or state.get("token") != g["token"]:
        return []
    return list(state["rows"])


def toggle_gallery(prefix: str, space_key: str, row: int) -> None:
    """A click on a gallery image: light it up on the map (or put it out again), and show its neighbours."""
    g = st.session_state.get(f"{prefix}._group") or {}
    rows = picked_in_gallery(prefix, space_key)
    row = int(row)
    rows = [r for r in rows if r != row] if row in rows else [*rows, row]
    st.session_state[f"{prefix}._gallery"] = {"token": g.get("token"), "rows": rows}
    set_focus(prefix, space_key, row)


def highlight(prefix: str, space_key: str) -> set[int] | None:
    """What the map highlights: the table's ticked rows and the gallery's clicked images, else the whole group,
    else nothing (None)."""
    rows = ticked(prefix, space_key) + picked_in_gallery(prefix, space_key) or group(prefix, space_key)
    return set(rows) or None


def _short(caption: str) -> str:
    """A gallery button's label: an id's last part without leading zeros ("shapes/n1000-s0/000067" -> "67")."""
    last = str(caption).rsplit("/", 1)[-1]
    return (last.lstrip("0") or "0")[-6:] if last.isdigit() else last.rsplit(".", 1)[0][:6]


def gallery(prefix: str, space_key: str, images: np.ndarray, rows: Sequence[int], captions: Sequence[str], *,
            per_row: int = 4, width: int = 64) -> None:
    """Images of ``rows`` in a grid; a click on the button under one lights that item up on the map (the rest
    greyed) and shows its neighbours; a second click puts it out. The button shows the end of the caption (an
    id's last part, :func:`_short`): the column is narrow."""
    from ui.loaders import upscale

    on = set(picked_in_gallery(prefix, space_key))
    for start in range(0, len(rows), per_row):
        cols = st.columns(per_row)
        for col, row, cap in zip(cols, rows[start:start + per_row], captions[start:start + per_row]):
            with col:
                st.image(upscale(images[row], 96), width=width)
                st.button(_short(cap), key=f"{prefix}.gal.{row}", icon=":material/my_location:",
                          type="primary" if row in on else "secondary",
                          on_click=toggle_gallery, args=(prefix, space_key, row), width="stretch",
                          help="Light this item up on the map (click again to put it out) and list its neighbours.")


def _thumb_urls(images: np.ndarray, rows: Sequence[int]) -> list[str | None]:
    from core.atlas import png_data_url
    from ui.loaders import upscale

    return [png_data_url(upscale(images[i], 48)) if n < MAX_TABLE_IMAGES else None for n, i in enumerate(rows)]


def group_table(prefix: str, space_key: str, es: Any, *, images: np.ndarray | None = None,
                texts: Sequence[str] | None = None, extra: dict[str, np.ndarray] | None = None) -> list[int]:
    """The group as a table (thumbnail, id, labels, text, and ``extra`` per-row columns such as the Compare view's
    neighbour overlap) whose ticked rows the map highlights; returns them."""
    import pandas as pd

    rows, key = group(prefix, space_key), table_key(prefix, space_key)
    if not rows or key is None:
        return []
    shown = rows[:MAX_TABLE_ROWS]
    cols: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if images is not None:
        cols["image"] = _thumb_urls(images, shown)
        config["image"] = st.column_config.ImageColumn("image", width="small")
    cols["id"] = [es.ids[i] for i in shown]
    for f in es.factors[:4]:
        names = es.classes[f]
        cols[f] = [names[c] for c in es.labels[f][shown]]
    if texts is not None:
        cols["text"] = [str(texts[i])[:200] for i in shown]
    for name, values in (extra or {}).items():
        cols[name] = np.asarray(values)[shown]
    st.dataframe(pd.DataFrame(cols), key=key, on_select="rerun", selection_mode="multi-row", hide_index=True,
                 column_config=config, width="stretch", height=min(420, 38 + 35 * len(shown)),
                 row_height=52 if images is not None else None)
    if len(rows) > len(shown):
        st.caption(f"The first {len(shown):,} of {len(rows):,} selected items are listed.")
    return ticked(prefix, space_key)
