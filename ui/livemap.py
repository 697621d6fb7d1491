"""The Train page's live 2-D map of the probe images, with the figure that says how far to trust it.

A map flattens a few hundred vectors to two dimensions and always loses something; the sentence under it puts the
map's own k-NN accuracy for the coloured factor beside the vectors' (``core.projection.map_trust``), and names the
factor the map shows instead when another one clearly dominates (a PCA of a model that keeps background shows
background, whatever the dots are coloured by).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from core.projection import MapTrust, live_map, live_method, map_trust
from ui import charts

_METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}
# What a method's map shows when another factor dominates it, for the one-line hint.
_WHAT_IT_HOLDS = {"pca": "what the largest directions hold", "tsne": "what the map's neighbourhoods hold",
                  "umap": "what the map's neighbourhoods hold"}


def pca_timeline(vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """PCA maps of a run's snapshots, each rotated onto the previous one (``live_map(method="pca")``)."""
    out: list[np.ndarray] = []
    for v in vectors:
        out.append(live_map(v, out[-1] if out else None, method="pca"))
    return out


def method_of(trainer: Any) -> str:
    """The method of a trainer's live map: its setting (PCA for trainers from before it existed), or PCA where
    ``core.projection.live_method`` says the probe is too small or too large for it."""
    return live_method(str(getattr(trainer.cfg, "map_method", "pca")), len(trainer.probe))


def trust_sentence(trust: MapTrust, *, dims: int) -> str:
    """One sentence, e.g. "The map keeps 0.94 of what the model knows about shape: 10-NN shape accuracy 0.83
    in this map, 0.88 in the 128-D vectors (chance 0.17)." """
    return (f"**The map keeps {trust.kept:.2f} of what the model knows about {trust.factor}**: {trust.k}-NN "
            f"{trust.factor} accuracy {trust.map_knn:.2f} in this map, {trust.vectors_knn:.2f} in the {dims}-D "
            f"vectors (chance {trust.chance:.2f}).")


def dominant_hint(trust: MapTrust, method: str) -> str | None:
    """A one-line hint naming the factor the map shows far better than the coloured one, or None."""
    if trust.dominant is None:
        return None
    vectors_knn, map_knn = trust.per_factor[trust.dominant]
    return (f"Colour by **{trust.dominant}**: that is {_WHAT_IT_HOLDS.get(method, 'what the map shows')} "
            f"({trust.k}-NN {map_knn:.2f} in the map, {vectors_knn:.2f} in the vectors).")


def show(trainer: Any, snapshots: Sequence[Any], snap: Any, factor: str,
         cached: Callable[[str, tuple, Callable[[], Any]], Any]) -> None:
    """Draw ``snap``'s map of ``trainer.probe`` coloured by ``factor`` (the trainer's live map, or PCA of the same
    vectors), with its trust sentence and, when another factor dominates the map, a hint to colour by it. ``cached(name, version, build)`` is the page's per-session figure cache (the first item of
    ``version`` identifies the trainer), so a redraw between snapshots costs nothing."""
    probe = trainer.probe
    live = method_of(trainer)
    view = "live"
    if live != "pca":
        view = st.segmented_control("Map", ["live", "pca"], default="live", key="train.map_view",
                                    format_func=lambda v: _METHOD_NAMES[live] if v == "live" else "PCA",
                                    help="The live map keeps each image's neighbours; PCA shows the two directions "
                                         "along which the vectors vary most.") or "live"
    method = live if view == "live" else "pca"
    name = _METHOD_NAMES.get(method, method)
    hover = probe.captions if probe.captions else probe.ids
    i = list(snapshots).index(snap)
    if method == live:
        every = [s.coords for s in snapshots]
    else:  # PCA of every snapshot, each rotated onto the one before: cheap, made once per new snapshot
        every = cached("pca_maps", (trainer, len(snapshots)), lambda: pca_timeline([s.vectors for s in snapshots]))
    coords = every[i]
    # PCA's spread means something: one frame for the whole run. A t-SNE / UMAP map's scale does not, and it changes
    # as the map settles; framing the last few snapshots keeps the map shown large, and still moves smoothly.
    frame = every if method == "pca" else every[max(0, i - 5):i + 1]

    def build():
        return charts.embedding_scatter(coords, probe.labels[factor], probe.classes[factor],
                                        title=f"{len(probe)} held-out images at step {snap.step} ({name} of the "
                                              "projection head's outputs)", hover=hover,
                                        ranges=charts.padded_ranges(frame))

    fig = cached("embedding", (trainer, snap.step, factor, len(snapshots), method), build)
    st.plotly_chart(fig, key="train.chart.embedding")
    labels = {f: np.asarray(probe.labels[f]) for f in probe.factors}
    trust = cached("map_trust", (trainer, snap.step, factor, method),
                   lambda: map_trust(snap.vectors, coords, labels, factor=factor))
    st.markdown(trust_sentence(trust, dims=int(np.asarray(snap.vectors).shape[1])))
    hint = dominant_hint(trust, method)
    if hint:
        st.markdown(hint)
    how = {"pca": "PCA draws the two directions along which the vectors vary most, whatever they hold.",
           "tsne": "t-SNE places each dot near the dots whose vectors are nearest; distances between groups mean "
                   "little. Each snapshot starts from the previous map, so the dots move instead of jumping.",
           "umap": "UMAP places each dot near the dots whose vectors are nearest; each snapshot starts from the "
                   "previous map."}.get(method, "")
    st.caption("Each dot is one image the model never trains on, placed by the projection head's output (the "
               "vectors the loss pulls together and pushes apart). Colour them by another factor to see what the "
               "model groups together; slide the timeline to watch the same dots move as training goes on. " + how)
