"""Plotly figures for the pages. Inputs are plain lists and arrays (what the trainer records); no maths
beyond what a chart needs (a running mean of the loss, axis limits)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Imported here, not left to plotly: plotly looks pandas up in sys.modules without importing it, and while the
# warm-up thread was importing pandas (through umap) a chart drawn meanwhile found the half-initialised module
# ("partially initialized module 'pandas' has no attribute 'Series"). An import waits for the other thread.
import pandas  # noqa: F401, E402
import plotly.graph_objects as go
from plotly.colors import qualitative

PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Dark24
_MARGIN = dict(l=10, r=10, t=40, b=10)


def _layout(fig: go.Figure, title: str, height: int = 260, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)), height=height,
                      margin=_MARGIN, uirevision=title,
                      # below the plot: at the top right a legend covers plotly's toolbar
                      legend=dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0), **kw)
    return fig


def _ema(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    out = np.empty_like(values)
    acc = values[0] if len(values) else 0.0
    for i, v in enumerate(values):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def loss(steps: Sequence[int], losses: Sequence[float]) -> go.Figure:
    """Raw loss per step (faint) and its running mean (bold)."""
    x = np.asarray(steps)
    y = np.asarray(losses, dtype=float)
    fig = go.Figure()
    fig.add_scatter(x=x, y=y, mode="lines", name="each step", line=dict(width=1, color="rgba(99,110,250,0.35)"))
    if len(y) > 1:
        fig.add_scatter(x=x, y=_ema(y), mode="lines", name="running mean", line=dict(width=2.5, color=PALETTE[0]))
    fig.update_xaxes(title_text="step", rangemode="tozero")
    return _layout(fig, "Loss")


def knn(steps: Sequence[int], accuracy: dict[str, Sequence[float]], chance: dict[str, float],
        goal: tuple[str, float] | None = None) -> go.Figure:
    """Held-out kNN accuracy per factor, with each factor's chance level dotted in the same colour, and a
    lesson's ``goal`` (factor, target accuracy) as a dashed line in the factor's colour."""
    fig = go.Figure()
    for i, (factor, acc) in enumerate(accuracy.items()):
        colour = PALETTE[i % len(PALETTE)]
        fig.add_scatter(x=list(steps), y=list(acc), mode="lines+markers", name=factor, line=dict(color=colour),
                        legendgroup=factor)
        if factor in chance and len(steps):
            fig.add_scatter(x=[min(steps), max(max(steps), 1)], y=[chance[factor]] * 2, mode="lines",
                            line=dict(color=colour, dash="dot", width=1), showlegend=False, hoverinfo="skip",
                            legendgroup=factor)
        if goal is not None and goal[0] == factor and len(steps):
            # Named on hover and in the page's caption, not on the plot or in the legend: the chart is narrow, a
            # label sat on the lines and a sixth legend entry made the legend scroll.
            fig.add_scatter(x=[min(steps), max(max(steps), 1)], y=[goal[1]] * 2, mode="lines",
                            name=f"goal: {factor} {goal[1]:.0%}", line=dict(color=colour, dash="dash", width=1.5),
                            showlegend=False, hoverinfo="name", legendgroup=factor)
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy", tickformat=".0%")
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig = _layout(fig, "kNN accuracy, held-out images")
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02))
    return fig


def _side_by_side(fig: go.Figure, left: str, right: str, height: int) -> go.Figure:
    """Two panels in one figure without make_subplots (slow to build, and this redraws every second)."""
    fig.update_layout(
        xaxis=dict(domain=[0, 0.45], title_text="step"), xaxis2=dict(domain=[0.55, 1], title_text="step"),
        yaxis2=dict(anchor="x2"), height=height, margin=dict(l=10, r=10, t=46, b=10),
        annotations=[dict(text=left, x=0, y=1.02, xref="paper", yref="paper", showarrow=False, xanchor="left",
                          yanchor="bottom", align="left",
                          font=dict(size=12)),
                     dict(text=right, x=0.55, y=1.02, xref="paper", yref="paper", showarrow=False, xanchor="left",
                          yanchor="bottom", align="left",
                          font=dict(size=12))])
    return fig


def alignment_uniformity(steps: Sequence[int], align: Sequence[float], unif: Sequence[float]) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=list(steps), y=list(align), mode="lines+markers", showlegend=False, line=dict(color=PALETTE[2]))
    fig.add_scatter(x=list(steps), y=list(unif), mode="lines+markers", showlegend=False, line=dict(color=PALETTE[3]),
                    xaxis="x2", yaxis="y2")
    # Each title on two lines: in the Train page's half-width column one line ran into the other panel's title.
    fig = _side_by_side(fig, "Alignment<br>(lower: views closer)", "Uniformity<br>(lower: more spread)", 276)
    fig.update_layout(uirevision="align")
    return fig


def similarity_histogram(pos: np.ndarray, neg: np.ndarray, step: int) -> go.Figure:
    """Cosine similarity of positive pairs (two views of one image) vs negatives (different images)."""
    fig = go.Figure()
    bins = dict(start=-1.0, end=1.0, size=0.04)
    fig.add_histogram(x=np.asarray(neg), name="negatives (different images)", histnorm="probability density",
                      xbins=bins, marker_color="rgba(239,85,59,0.6)")
    fig.add_histogram(x=np.asarray(pos), name="positives (two views of one image)", histnorm="probability density",
                      xbins=bins, marker_color="rgba(0,150,110,0.7)")
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(range=[-1, 1], title_text="cosine similarity")
    fig.update_yaxes(showticklabels=False)
    fig = _layout(fig, f"Positive vs negative similarity (step {step})")
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=0.98, xanchor="left", x=0.01,
                                  bgcolor="rgba(255,255,255,0.6)"))
    return fig


def logit_scale(steps: Sequence[int], scale: Sequence[float]) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=list(steps), y=list(scale), mode="lines", line=dict(color=PALETTE[4]), showlegend=False)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="1 / temperature")
    return _layout(fig, "CLIP logit scale (learned 1 / temperature)")


def embedding_scatter(coords: np.ndarray, labels: np.ndarray | None, classes: Sequence[str] | None, *,
                      title: str, hover: Sequence[str] | None = None,
                      ranges: tuple[tuple[float, float], tuple[float, float]] | None = None,
                      height: int = 460) -> go.Figure:
    """2-D points coloured by class; fixed ``ranges`` keep the axes still while the points move."""
    fig = go.Figure()
    coords = np.asarray(coords)
    hover_arr = np.asarray(hover) if hover is not None else None
    if labels is None or classes is None:
        fig.add_scatter(x=coords[:, 0], y=coords[:, 1], mode="markers", marker=dict(size=7, color=PALETTE[0]),
                        text=hover_arr, hoverinfo="text" if hover is not None else "x+y", showlegend=False)
    else:
        labels = np.asarray(labels)
        for c, name in enumerate(classes):
            mask = labels == c
            if not mask.any():
                continue
            fig.add_scatter(x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=str(name),
                            marker=dict(size=7, color=PALETTE[c % len(PALETTE)], line=dict(width=0.5,
                                                                                           color="white")),
                            text=hover_arr[mask] if hover_arr is not None else None,
                            hoverinfo="text+name" if hover_arr is not None else "name")
    if ranges is not None:
        fig.update_xaxes(range=list(ranges[0]))
        fig.update_yaxes(range=list(ranges[1]))
    fig.update_xaxes(showticklabels=False, zeroline=False, title_text="")
    fig.update_yaxes(showticklabels=False, zeroline=False, scaleanchor="x", scaleratio=1)
    return _layout(fig, title, height=height)


def padded_ranges(all_coords: Sequence[np.ndarray], pad: float = 0.08):
    """Axis limits that hold every snapshot, so the timeline moves points, not axes."""
    stacked = np.concatenate([np.asarray(c) for c in all_coords], axis=0)
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad * span, hi + pad * span
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def invariance_bars(ops: Sequence[str], to_original: Sequence[float], to_negatives: float) -> go.Figure:
    """Mean cosine similarity of views made with one op only, against the typical similarity to negatives."""
    fig = go.Figure()
    fig.add_bar(x=list(to_original), y=list(ops), orientation="h", marker_color=PALETTE[2],
                name="view vs its original", text=[f"{v:.2f}" for v in to_original], textposition="outside")
    fig.add_vline(x=to_negatives, line_dash="dot", line_color=PALETTE[1],
                  annotation_text="other images", annotation_position="top")
    fig.update_xaxes(range=[min(-0.05, to_negatives - 0.1), 1.1], title_text="cosine similarity")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Invariance by augmentation (1.0 = the model cannot tell)",
                   height=60 + 36 * max(len(ops), 1), showlegend=False)


def compare_runs(runs: dict[str, dict[str, Sequence[float]]], factor: str) -> go.Figure:
    """kNN accuracy (on ``factor``) and uniformity against step, one line per run."""
    fig = go.Figure()
    for i, (name, r) in enumerate(runs.items()):
        colour = PALETTE[i % len(PALETTE)]
        fig.add_scatter(x=r["steps"], y=r["knn"], mode="lines+markers", name=name, line=dict(color=colour),
                        legendgroup=name)
        fig.add_scatter(x=r["steps"], y=r["uniformity"], mode="lines+markers", name=name, showlegend=False,
                        line=dict(color=colour), legendgroup=name, xaxis="x2", yaxis="y2")
    fig = _side_by_side(fig, f"kNN accuracy on {factor}", "Uniformity", 320)
    fig.update_layout(yaxis=dict(range=[0, 1.02], tickformat=".0%"), legend=dict(orientation="h", y=-0.3),
                      uirevision="compare")
    return fig
