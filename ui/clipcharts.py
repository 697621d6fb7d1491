"""The CLIP page's figures (plotly): top-k probabilities, accuracy per class, the confusion matrix, and images with
class prompts on one map. Each takes arrays the page already has and returns a figure; nothing is computed here."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

_MARGIN = dict(l=10, r=10, t=40, b=10)


def topk_bars(probs: np.ndarray, names: Sequence[str], scale: float) -> go.Figure:
    """Horizontal bars of one image's top-k probabilities, most probable on top. ``probs`` (k,), best first."""
    fig = go.Figure(go.Bar(x=probs[::-1], y=list(names)[::-1], orientation="h", marker_color="#4c78a8",
                           text=[f"{p:.1%}" for p in probs[::-1]], textposition="auto"))
    fig.update_layout(title=f"Top-{len(probs)} probabilities at logit scale {scale}", height=260, margin=_MARGIN,
                      xaxis=dict(range=[0, 1], tickformat=".0%"))
    return fig


def per_class_bars(names: Sequence[str], per_class: np.ndarray) -> go.Figure:
    """Accuracy per class (NaN, a class with no images, drawn as 0)."""
    fig = go.Figure(go.Bar(x=list(names), y=np.nan_to_num(per_class), marker_color="#72b7b2"))
    fig.update_layout(title="Accuracy per class", height=320, yaxis=dict(range=[0, 1], tickformat=".0%"),
                      margin=_MARGIN)
    return fig


def confusion_heatmap(confusion: np.ndarray, names: Sequence[str]) -> go.Figure:
    """The confusion matrix, rows true and columns predicted, counts written in the cells."""
    fig = go.Figure(go.Heatmap(z=confusion, x=list(names), y=list(names), colorscale="Blues", text=confusion,
                               texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z} images<extra></extra>"))
    fig.update_layout(title="Confusion matrix (click a cell)", height=320, xaxis_title="predicted",
                      yaxis_title="true", yaxis_autorange="reversed", margin=_MARGIN)
    return fig


def joint_map_figure(jm, colour_of: np.ndarray, image_text: Sequence[str], classnames: Sequence[str],
                     method: str) -> go.Figure:
    """Images (circles, coloured by ``colour_of``) and class prompts (stars, labelled when few) of a
    :class:`core.clip.JointMap`."""
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=jm.image_xy[:, 0], y=jm.image_xy[:, 1], mode="markers", name="images",
                               marker=dict(size=6, color=colour_of, colorscale="Turbo", opacity=0.7),
                               text=list(image_text), hovertemplate="%{text}<extra>image</extra>"))
    fig.add_trace(go.Scatter(x=jm.prompt_xy[:, 0], y=jm.prompt_xy[:, 1],
                             mode="markers+text" if len(jm.prompt_xy) <= 40 else "markers",
                             name="class prompts", text=[classnames[c] for c in jm.prompt_class],
                             textposition="top center",
                             marker=dict(size=13, symbol="star", color=jm.prompt_class, colorscale="Turbo",
                                         line=dict(width=1, color="black")),
                             hovertemplate="%{text}<extra>prompt</extra>"))
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=30, b=10),
                      title=f"{method.upper()} of image and prompt embeddings")
    return fig
