"""Maps of a million points: rasterised with datashader, picked with a KD-tree, projected on a sample.

A plotly scatter sends every point to the browser as JSON, which stops being usable somewhere above
~50,000 points (benchmarks/speed/bench_bigmap.py measures where). Here the server draws the points into an image
(datashader, Bednar et al.; every point is counted, none is dropped), a zoom draws the window again at full
resolution, and a click or hover is resolved on the server against a KD-tree of the 2-D coordinates
(scipy.spatial.cKDTree): the one place a KD-tree fits, 2-D points and one query per click; neighbours in the
original vectors come from :mod:`core.neighbors`. UMAP (McInnes et al. 2018) of a big set is fitted on a
random sample and every other point is placed among its nearest sampled points (:func:`sampled_umap`);
:class:`SampledProjection` records which rows were in the sample so the page can say so.

Shapes: ``coords`` (N, 2) float; ``labels`` (N,) int codes; images (H, W, 4) uint8 RGBA, row 0 at the top.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from core.errors import PlaygroundError

__all__ = ["BIG_MAP_THRESHOLD", "warm_up", "Raster", "extent", "zoom", "pan", "aggregate", "rasterize", "PointIndex",
           "SampledProjection", "sampled_note", "place_by_neighbours", "sampled_umap"]

BIG_MAP_THRESHOLD = 50_000  # above this many points the Explorer draws a raster instead of a plotly scatter
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")  # plotly/d3 category10, so a big map's colours match the small scatter's
Range = tuple[float, float]


def _coords(coords) -> np.ndarray:
    c = np.asarray(coords)
    if c.ndim != 2 or c.shape[1] != 2 or len(c) == 0:
        raise PlaygroundError(f"A map needs coordinates shaped (N, 2) with N >= 1, got shape {c.shape}.")
    c = np.ascontiguousarray(c, dtype=np.float32)
    if not np.isfinite(c).all():
        raise PlaygroundError("The map coordinates contain NaN or infinite values.")
    return c


def _range(r, name: str) -> Range:
    lo, hi = float(r[0]), float(r[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise PlaygroundError(f"{name} must be two finite numbers (low, high) with low < high, got {r!r}.")
    return lo, hi


def extent(coords, pad: float = 0.02) -> tuple[Range, Range]:
    """The (x_range, y_range) that shows every point, padded by ``pad`` of the span on each side."""
    c = _coords(coords)
    out = []
    for lo, hi in zip(c.min(axis=0).astype(float), c.max(axis=0).astype(float)):
        span = hi - lo or 1.0
        out.append((lo - pad * span, hi + pad * span))
    return out[0], out[1]


def zoom(x_range: Range, y_range: Range, factor: float, center: tuple[float, float] | None = None
         ) -> tuple[Range, Range]:
    """The window ``factor`` times closer (2 = zoom in 2x, 0.5 = out) around ``center`` (default: the middle)."""
    if not factor > 0:
        raise PlaygroundError(f"A zoom factor must be positive, got {factor!r}.")
    x_range, y_range = _range(x_range, "x_range"), _range(y_range, "y_range")
    cx, cy = center if center is not None else ((x_range[0] + x_range[1]) / 2, (y_range[0] + y_range[1]) / 2)
    hx, hy = (x_range[1] - x_range[0]) / (2 * factor), (y_range[1] - y_range[0]) / (2 * factor)
    return (cx - hx, cx + hx), (cy - hy, cy + hy)


def pan(x_range: Range, y_range: Range, dx: float, dy: float) -> tuple[Range, Range]:
    """Shift the window by ``dx``, ``dy`` window widths/heights (e.g. 0.5 = half a window right/up)."""
    w, h = x_range[1] - x_range[0], y_range[1] - y_range[0]
    return (x_range[0] + dx * w, x_range[1] + dx * w), (y_range[0] + dy * h, y_range[1] + dy * h)


def _frame(c: np.ndarray, labels):
    import pandas as pd

    frame = pd.DataFrame({"x": c[:, 0], "y": c[:, 1]})
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (len(c),) or not np.issubdtype(lab.dtype, np.integer):
            raise PlaygroundError(f"Map labels must be integer codes, one per point ({len(c)}), got {lab.shape}.")
        frame["label"] = pd.Categorical.from_codes(lab, categories=range(int(lab.max()) + 1))
    return frame


def aggregate(coords, labels=None, *, width: int = 800, height: int = 800, x_range: Range | None = None,
              y_range: Range | None = None):
    """Count points per pixel with datashader. Returns an ``xarray.DataArray``: (height, width) counts,
    or (height, width, n_labels) per-label counts when ``labels`` are given; row 0 is the lowest y."""
    import datashader as ds

    c = _coords(coords)
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise PlaygroundError(f"A map image must be 1-4096 pixels on each side, got {width} x {height}.")
    if x_range is None or y_range is None:
        ex, ey = extent(c)
        x_range, y_range = x_range or ex, y_range or ey
    canvas = ds.Canvas(plot_width=int(width), plot_height=int(height),
                       x_range=_range(x_range, "x_range"), y_range=_range(y_range, "y_range"))
    frame = _frame(c, labels)
    agg = ds.count_cat("label") if labels is not None else ds.count()
    return canvas.points(frame, "x", "y", agg=agg)


@dataclass
class Raster:
    """A drawn window: ``image`` (H, W, 4) uint8 RGBA with row 0 at the top (the highest y)."""

    image: np.ndarray
    x_range: Range
    y_range: Range
    shown: int  # points inside the window
    total: int

    @property
    def pixel_size(self) -> tuple[float, float]:
        h, w = self.image.shape[:2]
        return (self.x_range[1] - self.x_range[0]) / w, (self.y_range[1] - self.y_range[0]) / h


def rasterize(coords, labels=None, *, width: int = 800, height: int = 800, x_range: Range | None = None,
              y_range: Range | None = None, palette: Sequence[str] = PALETTE, how: str = "eq_hist",
              spread: int = 0) -> Raster:
    """Draw every point into an RGBA image: density shading (``how``: "eq_hist", "log", "linear"), coloured
    by label when ``labels`` are given (each pixel mixes its labels' colours by count). ``spread`` grows
    each drawn pixel by that many pixels so isolated points stay visible when zoomed in."""
    import datashader.transfer_functions as tf

    if how not in ("eq_hist", "log", "linear", "cbrt"):
        raise PlaygroundError(f"Unknown shading {how!r}; use eq_hist, log, linear or cbrt.")
    c = _coords(coords)
    if x_range is None or y_range is None:
        ex, ey = extent(c)
        x_range, y_range = x_range or ex, y_range or ey
    agg = aggregate(c, labels, width=width, height=height, x_range=x_range, y_range=y_range)
    if labels is not None:
        n = agg.shape[-1]
        img = tf.shade(agg, color_key=[palette[i % len(palette)] for i in range(n)], how=how)
    else:
        img = tf.shade(agg, cmap=["#9ecae1", "#08306b"], how=how)
    if spread:
        img = tf.spread(img, px=int(spread))
    # datashader packs RGBA into uint32 with row 0 at the lowest y; flip so row 0 is the top of the picture.
    rgba = np.asarray(img.data, dtype=np.uint32).view(np.uint8).reshape(height, width, 4)[::-1].copy()
    x_range, y_range = _range(x_range, "x_range"), _range(y_range, "y_range")
    inside = ((c[:, 0] >= x_range[0]) & (c[:, 0] <= x_range[1]) & (c[:, 1] >= y_range[0]) & (c[:, 1] <= y_range[1]))
    return Raster(rgba, x_range, y_range, int(inside.sum()), len(c))


def warm_up() -> float:
    """Compile datashader's numba kernels on ten points (the first raster in a process otherwise pays
    several seconds); returns the seconds spent. Safe to call from a background thread at start-up."""
    import time

    t0 = time.perf_counter()
    pts = np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2)
    rasterize(pts, width=8, height=8)
    rasterize(pts, np.arange(10) % 2, width=8, height=8, spread=1)  # ui.bigmap draws with spread=1
    return time.perf_counter() - t0


class PointIndex:
    """Server-side hit-testing: which point lies under a click at (x, y) in map coordinates.

    A KD-tree (scipy.spatial.cKDTree) over the 2-D coordinates answers a nearest-point query in
    microseconds for a million points; build it once per map.
    """

    def __init__(self, coords):
        from scipy.spatial import cKDTree

        self.coords = _coords(coords)
        self.tree = cKDTree(self.coords)

    def __len__(self) -> int:
        return len(self.coords)

    def nearest(self, x: float, y: float, *, max_distance: float = np.inf) -> int | None:
        """Index of the point nearest (x, y), or None when none lies within ``max_distance``."""
        dist, idx = self.tree.query([float(x), float(y)], k=1, distance_upper_bound=max_distance)
        return None if not np.isfinite(dist) else int(idx)

    def pick(self, x: float, y: float, raster: Raster, *, radius_px: float = 6.0) -> int | None:
        """The point under a click on ``raster``: nearest within ``radius_px`` screen pixels (in the coarser
        of the two axes' pixel sizes, so a click is forgiving in both directions)."""
        px, py = raster.pixel_size
        return self.nearest(x, y, max_distance=radius_px * max(px, py))

    def count_within(self, x_range: Range, y_range: Range) -> int:
        c = self.coords
        return int(((c[:, 0] >= x_range[0]) & (c[:, 0] <= x_range[1])
                    & (c[:, 1] >= y_range[0]) & (c[:, 1] <= y_range[1])).sum())


def sampled_note(total: int, fitted: int, k: int = 10) -> str:
    """The sentence a sampled map carries: how many points UMAP saw and how the others were placed."""
    if fitted >= total:
        return f"UMAP fitted on all {total:,} points."
    return (f"UMAP fitted on a random sample of {fitted:,} of {total:,} points; each of the other "
            f"{total - fitted:,} sits at the distance-weighted mean of its {k} nearest sampled points (nearest "
            "in the original vectors), not refitted.")


@dataclass
class SampledProjection:
    """UMAP of a big set: ``coords`` (N, dim) for all rows; ``sample`` the row indices the map was fitted on
    (the others were placed among their nearest sampled neighbours); ``k`` how many neighbours placed each."""

    coords: np.ndarray
    sample: np.ndarray
    total: int
    k: int = 10

    @property
    def sampled(self) -> bool:
        return len(self.sample) < self.total

    def describe(self) -> str:
        return sampled_note(self.total, len(self.sample), self.k)


def place_by_neighbours(vectors, fitted_vectors, fitted_coords, *, k: int = 10, metric: str = "cosine"
                        ) -> np.ndarray:
    """Map positions for new rows: each goes to the mean of the map positions of its ``k`` nearest fitted rows
    (exact search in :func:`core.neighbors.knn`, by ``metric`` in the original space), weighted by 1 / distance
    so a row that repeats a fitted one lands on it. umap-learn's ``transform`` also starts each new point at a
    weighted mean of its neighbours' positions (with its fuzzy-graph weights), then optimises it against the
    fitted map; that optimisation made a million rows an hours-long job (benchmarks/RESULTS.md), while this
    is one exact k-NN search.
    Shape: (M, D), (S, D), (S, dim) -> float32 (M, dim).
    """
    from core.neighbors import knn

    fc = np.asarray(fitted_coords, dtype=np.float64)
    idx, scores = knn(fitted_vectors, min(int(k), len(fc)), queries=vectors, metric=metric)  # (M, k) each
    dist = np.maximum(1.0 - scores, 0.0) if metric == "cosine" else scores.astype(np.float64)
    w = 1.0 / np.maximum(dist, 1e-12)  # (M, k)
    return (np.einsum("mk,mkd->md", w, fc[idx]) / w.sum(axis=1, keepdims=True)).astype(np.float32)


def sampled_umap(vectors, *, sample: int = 20_000, dim: int = 2, seed: int = 0, k: int = 10, chunk: int = 50_000,
                 progress: Callable[[int, int], None] | None = None, **params) -> SampledProjection:
    """UMAP of a big set in minutes instead of hours: :func:`core.projection.project` fits UMAP on ``sample``
    random rows (seeded), then :func:`place_by_neighbours` places the rest, ``chunk`` rows at a time.

    ``params`` go to ``project`` (n_neighbors, min_dist, metric: the placement searches by the same metric).
    ``progress(done, total)`` after the fit and after each chunk. With N <= sample this is a plain fit on every
    row. Shape: (N, D) -> coords (N, dim).
    """
    from core.projection import project

    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise PlaygroundError(f"UMAP needs a table of at least 3 vectors, got shape {x.shape}.")
    if sample < 3:
        raise PlaygroundError(f"sample = {sample} is not allowed; UMAP needs at least 3 points to fit.")
    n = len(x)
    fit_rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    fitted = project(x[fit_rows], "umap", dim=dim, seed=seed, **params)  # (S, dim)
    coords = np.empty((n, fitted.shape[1]), dtype=np.float32)
    coords[fit_rows] = fitted
    rest = np.setdiff1d(np.arange(n), fit_rows, assume_unique=True)
    done = len(fit_rows)
    if progress is not None:
        progress(done, n)
    metric = str(params.get("metric", "cosine"))
    for start in range(0, len(rest), chunk):
        rows = rest[start:start + chunk]
        coords[rows] = place_by_neighbours(x[rows], x[fit_rows], fitted, k=k, metric=metric)
        done += len(rows)
        if progress is not None:
            progress(done, n)
    return SampledProjection(coords, fit_rows, n, min(int(k), len(fit_rows)))
