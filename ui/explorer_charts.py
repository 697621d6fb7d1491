"""The Explorer's figures (plotly): the map scatter, similarity and NT-Xent heatmaps, the spectrum and pair
histograms, and the standalone HTML export. Pure drawing: arrays in, ``go.Figure`` out."""
from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from ui.charts import PALETTE

GREY = "rgba(160,160,160,0.35)"
SVG_POINTS = 3000


def figure_html(fig: go.Figure) -> bytes:
    """A standalone page with plotly.js inlined, so it opens offline."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")


def hover_text(space: Space, rows: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> list[str]:
    es = space.es
    names = {f: es.label_names(f) for f in es.factors[:6]}
    out = []
    for i in rows:
        parts = [f"<b>{es.ids[i]}</b>"] + [f"{f}: {names[f][i]}" for f in names]
        if space.texts is not None:
            parts.append(str(space.texts[i])[:120])
        for k, v in (extra or {}).items():
            if np.isfinite(v[i]):
                parts.append(f"{k}: {v[i]:.2f}")
        out.append("<br>".join(parts))
    return out


def scatter(coords: np.ndarray, rows: np.ndarray, hover: list[str], *, categories: list[str] | None = None,
            values: np.ndarray | None = None, value_name: str = "", title: str = "",
            selected: set[int] | None = None, height: int = 560) -> go.Figure:
    """WebGL scatter of map coordinates (2-D: Scattergl, 3-D: Scatter3d), one trace per category (legend)
    or one trace coloured by ``values``. ``customdata`` holds each point's row, which selections return."""
    dim = coords.shape[1]
    fig = go.Figure()
    c = coords[rows]

    def add(mask: np.ndarray, name: str, marker: dict, show: bool = True) -> None:
        r = rows[mask]
        kw = dict(customdata=r, hovertext=[hover[j] for j in np.flatnonzero(mask)], hoverinfo="text",
                  mode="markers", name=name, marker=marker, showlegend=show)
        if dim >= 3:
            fig.add_trace(go.Scatter3d(x=c[mask, 0], y=c[mask, 1], z=c[mask, 2], **kw))
        else:
            # SVG up to a few thousand points (a click on a WebGL point reaches Streamlit as an empty selection
            # in Streamlit 1.67), WebGL above that, where only box / lasso selections come back
            kind = go.Scatter if len(rows) <= SVG_POINTS else go.Scattergl
            tr = kind(x=c[mask, 0], y=c[mask, 1] if dim > 1 else np.zeros(mask.sum()), **kw)
            if selected:  # a figure drawn for a selection made elsewhere (e.g. the other map in Compare)
                tr.selectedpoints = [j for j, row in enumerate(r) if int(row) in selected]
            # plotly greys what a click / box / lasso leaves out by itself: the figure must not change with the
            # chart's own selection, or Streamlit takes it for a new chart and drops the selection (no rerun)
            tr.unselected = dict(marker=dict(opacity=0.15, color=GREY))
            fig.add_trace(tr)

    size = 6 if len(rows) <= 2000 else 4 if len(rows) <= 10000 else 2.5
    if values is not None:
        v = values[rows]
        add(np.ones(len(rows), bool), value_name,
            dict(size=size, color=np.nan_to_num(v, nan=-1), colorscale="RdYlGn", cmin=0, cmax=1,
                 colorbar=dict(title=dict(text=value_name, side="right"), thickness=12)), show=False)
    elif categories is not None:
        cats = np.asarray(categories)
        if len(cats) == len(coords) != len(rows):  # one per item: keep the drawn sample's (above MAX_POINTS)
            cats = cats[rows]
        for n, name in enumerate(dict.fromkeys(cats.tolist())):
            add(cats == name, str(name), dict(size=size, color=PALETTE[n % len(PALETTE)]))
    else:
        add(np.ones(len(rows), bool), "items", dict(size=size, color=PALETTE[0]), show=False)
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=40, b=10), dragmode="zoom" if dim < 3 else "orbit",
                      legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.01,
                                  itemsizing="constant"),
                      uirevision=title, clickmode="event+select")
    if dim < 3:
        fig.update_xaxes(showticklabels=False, title=None)
        fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x" if dim == 2 else None)
    return fig


def heatmap(matrix: np.ndarray, labels: list[str], title: str, *, zmin: float = -1.0, zmax: float = 1.0,
            colorscale: str = "RdBu_r", outline: list[tuple[int, int]] | None = None, height: int = 520
            ) -> go.Figure:
    n = matrix.shape[0]
    fig = go.Figure(go.Heatmap(z=matrix, zmin=zmin, zmax=zmax, colorscale=colorscale,
                               text=[[f"{labels[i]} × {labels[j]}" for j in range(n)] for i in range(n)]
                               if n <= 300 else None,
                               hovertemplate="%{text}<br>%{z:.3f}<extra></extra>" if n <= 300 else
                               "row %{y}, column %{x}<br>%{z:.3f}<extra></extra>"))
    for i, j in outline or []:
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                      line=dict(color="black", width=1.5))
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def ntxent_heatmap(m: Any) -> go.Figure:
    """A core.batchview.NTXentMatrix as a heatmap: rows and columns are the 2N views, positives outlined."""
    n = m.n
    return heatmap(m.probabilities, [f"view {1 + i // n} of image {i % n}" for i in range(2 * n)],
                   f"Softmax over 2×{n} views (positives outlined) · NT-Xent loss {m.loss:.3f}",
                   zmin=0.0, zmax=float(m.probabilities.max()), colorscale="Viridis", outline=m.positives,
                   height=460)


def spectrum(values: np.ndarray) -> go.Figure:
    fig = go.Figure(go.Bar(x=np.arange(1, len(values) + 1), y=values, marker_color=PALETTE[0]))
    fig.update_yaxes(type="log", title_text="share of the singular-value sum")
    fig.update_xaxes(title_text="component")
    fig.update_layout(title=dict(text="Singular-value spectrum (a collapsed space has few large bars)", x=0,
                                 font=dict(size=14)), height=280, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def histograms(pos: np.ndarray, neg: np.ndarray, pos_name: str, neg_name: str, title: str) -> go.Figure:
    fig = go.Figure()
    bins = dict(start=-1.0, end=1.0, size=0.04)
    fig.add_histogram(x=neg, name=neg_name, histnorm="probability density", xbins=bins,
                      marker_color="rgba(239,85,59,0.6)")
    fig.add_histogram(x=pos, name=pos_name, histnorm="probability density", xbins=bins,
                      marker_color="rgba(0,150,110,0.7)")
    fig.update_layout(barmode="overlay", height=280, margin=dict(l=10, r=10, t=40, b=10),
                      title=dict(text=title, x=0, font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    fig.update_xaxes(range=[-1, 1], title_text="cosine similarity")
    fig.update_yaxes(showticklabels=False)
    return fig
