"""2-D / 3-D maps of embeddings: PCA, UMAP, t-SNE, plus Procrustes alignment and a quality score.

* PCA is exact (eigendecomposition in float64) with a fixed sign per component, so the same data always gives
  the same picture, and :func:`align_to` rotates one snapshot onto the previous so training timelines move
  smoothly instead of flipping.
* UMAP (McInnes et al. 2018) via umap-learn, fed exact neighbours from :func:`core.neighbors.knn` (an exact
  search up front beat umap's own approximate one, about 2.5x at a few thousand points) and a PCA start. umap
  is imported lazily: the first import in a process compiles numba code; :func:`warm_up` pays that up front.
* t-SNE (van der Maaten & Hinton 2008) via scikit-learn.
* :func:`live_map`: the Train page's map of a few hundred probe images, redrawn at every snapshot. An exact
  t-SNE in NumPy (no numba, so no 12-28 s compile in a fresh training process), started from the previous
  snapshot's map so the same points move a little instead of jumping; :func:`map_trust` says how much of a
  factor's neighbourhoods survive the flattening (the map's own kNN accuracy beside the vectors').

Caching by content is the UI's job; everything here is a pure function of its inputs and seed.
"""
from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.errors import PlaygroundError
from core.neighbors import METRICS as KNN_METRICS, knn
from core.vectors import as_matrix, resolve_device, rows_per_chunk

__all__ = ["METHODS", "MAP_METRICS", "LIVE_METHODS", "project", "align_to", "warm_up", "build_metric",
           "neighbour_preservation", "neighbour_preservation_per_point", "trustworthiness", "live_map", "live_method",
           "LIVE_TSNE_MAX", "tsne_exact",
           "loo_knn_accuracy", "MapTrust", "map_trust"]

METHODS: dict[str, str] = {
    "pca": "PCA: linear, exact, fast; keeps global distances, may overlap clusters",
    "umap": "UMAP: non-linear, keeps local neighbourhoods and some global layout",
    "tsne": "t-SNE: non-linear, keeps local neighbourhoods; distances between clusters mean little",
}
_MIN_POINTS_NONLINEAR = 5
# metrics the honesty scores can measure the original space with (the map itself is always read as Euclidean)
MAP_METRICS = ("cosine", "euclidean")
_warm_lock = threading.Lock()
_warm = False


def _check_vectors(vectors) -> np.ndarray:
    try:
        x = as_matrix(vectors, "vectors", torch.device("cpu")).numpy()
    except ValueError as exc:
        raise PlaygroundError(str(exc)) from exc
    if x.shape[0] == 0:
        raise PlaygroundError("There are no vectors to project.")
    return x


def _pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Exact PCA scores with deterministic signs. Shape: (N, D) -> (N, dim)."""
    xc = x.astype(np.float64)
    xc -= xc.mean(axis=0)
    n, d = xc.shape
    if d <= n:
        # covariance route: eigenvectors of Xc^T Xc (D, D) are the principal axes
        vals, vecs = np.linalg.eigh(xc.T @ xc)
        order = np.argsort(vals)[::-1][:dim]
        axes = vecs[:, order]  # (D, dim)
    else:
        # Gram route for few points in many dimensions: Xc Xc^T (N, N) = U S^2 U^T, axes = Xc^T U / S
        vals, vecs = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(vals)[::-1][:dim]
        s = np.sqrt(np.clip(vals[order], 0.0, None))
        axes = xc.T @ vecs[:, order] / np.where(s > 0, s, 1.0)  # (D, dim)
    # sign convention: the largest-magnitude loading of every axis is positive
    biggest = axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])]
    axes = axes * np.where(biggest < 0, -1.0, 1.0)
    coords = xc @ axes  # (N, dim)
    if coords.shape[1] < dim:  # fewer axes than asked for (tiny inputs): pad with zeros
        coords = np.pad(coords, ((0, 0), (0, dim - coords.shape[1])))
    return coords


def _knn(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours including the point itself first, as umap's ``precomputed_knn`` expects.
    Shape: (N, D) -> indices (N, k) int64, distances (N, k) float32 (cosine distance is 1 - similarity)."""
    # the k - 1 nearest OTHER points, then self in front: a duplicate of a point can tie with it, and umap
    # wants the point itself in column 0
    idx, scores = knn(x, k - 1, metric=metric, exclude_self=True)  # (N, k - 1); k <= N, so nothing missing
    dists = np.maximum(1.0 - scores, 0.0) if metric == "cosine" else scores
    rows = np.arange(x.shape[0], dtype=np.int64)[:, None]
    return np.hstack([rows, idx]), np.hstack([np.zeros_like(rows, dtype=np.float32), dists]).astype(np.float32)


def _umap(x: np.ndarray, dim: int, seed: int, params: dict[str, Any]) -> np.ndarray:
    import umap  # lazy: 13 s of numba compilation on the first import in a process

    n = x.shape[0]
    metric = params.pop("metric", "cosine")  # contrastive embeddings are compared by cosine
    n_neighbors = int(params.pop("n_neighbors", 15))
    if n_neighbors < 2:
        raise PlaygroundError(f"UMAP n_neighbors must be at least 2, got {n_neighbors}.")
    n_neighbors = min(n_neighbors, n - 1)
    if metric not in KNN_METRICS:
        raise PlaygroundError(f"UMAP here measures neighbours by {' or '.join(KNN_METRICS)}, got metric {metric!r}.")
    settings: dict[str, Any] = {"n_components": dim, "n_neighbors": n_neighbors, "metric": metric,
                                "min_dist": 0.1, "init": "pca", "n_epochs": 200, "random_state": seed}
    settings.update(params)
    graph = _knn(x, n_neighbors, metric)
    with warnings.catch_warnings():
        # "n_jobs overridden by setting random_state" and similar notes are not for users
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(precomputed_knn=graph, **settings)
        return reducer.fit_transform(x)


def _tsne(x: np.ndarray, dim: int, seed: int, params: dict[str, Any]) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = x.shape[0]
    settings: dict[str, Any] = {"n_components": dim, "perplexity": min(30.0, (n - 1) / 3.0), "init": "pca",
                                "metric": "cosine", "random_state": seed}
    settings.update(params)
    if settings["perplexity"] >= n:
        raise PlaygroundError(f"t-SNE perplexity must be smaller than the number of points ({n}).")
    return TSNE(**settings).fit_transform(x)


def project(vectors, method: str = "pca", dim: int = 2, seed: int = 0, **params: Any) -> np.ndarray:
    """Map vectors to ``dim`` coordinates for plotting. Shape: (N, D) -> float32 (N, dim).

    ``method``: "pca" (exact, signs fixed), "umap" or "tsne" (dim 1–3). Extra keyword arguments go to
    umap.UMAP (defaults: metric="cosine", n_neighbors=15, min_dist=0.1, init="pca", n_epochs=200) or
    sklearn.manifold.TSNE (defaults: perplexity=min(30, (N-1)/3), init="pca", metric="cosine").
    Results are deterministic for a given seed. Bad settings raise PlaygroundError.

    >>> project(np.random.default_rng(0).normal(size=(100, 8)), "pca").shape
    (100, 2)
    """
    if method not in METHODS:
        raise PlaygroundError(f"Unknown projection method {method!r}; use one of {', '.join(METHODS)}.")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise PlaygroundError(f"dim must be a positive whole number, got {dim!r}.")
    x = _check_vectors(vectors)
    n = x.shape[0]
    if method == "pca":
        if params:
            raise PlaygroundError(f"PCA takes no extra settings, got {sorted(params)}.")
        out = _pca(x, int(dim))
    else:
        if dim > 3:
            raise PlaygroundError(f"{method.upper()} maps to 1, 2 or 3 dimensions, got {dim}.")
        if n < _MIN_POINTS_NONLINEAR:
            raise PlaygroundError(f"{method.upper()} needs at least {_MIN_POINTS_NONLINEAR} points, got {n}; "
                                  f"use PCA for tiny sets.")
        params = dict(params)
        try:
            out = _umap(x, int(dim), seed, params) if method == "umap" else _tsne(x, int(dim), seed, params)
        except TypeError as exc:  # an unknown keyword for UMAP / TSNE
            raise PlaygroundError(f"Unknown {method.upper()} setting ({exc}).") from exc
    return np.ascontiguousarray(out, dtype=np.float32)


def align_to(coords, reference) -> np.ndarray:
    """Rotate/reflect ``coords`` onto ``reference`` (orthogonal Procrustes, Schönemann 1966) after centring
    both; the result is centred where the reference is. Rows must correspond (same items, same order).
    No scaling, so spreads still compare between snapshots. Shape: (N, d), (N, d) -> float32 (N, d).
    """
    from scipy.linalg import orthogonal_procrustes

    a = np.asarray(coords, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"coords and reference must have the same (N, d) shape, got {a.shape} and {b.shape}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("coords and reference must not contain NaN or infinite values.")
    a_mean, b_mean = a.mean(axis=0), b.mean(axis=0)
    rotation, _ = orthogonal_procrustes(a - a_mean, b - b_mean)  # (d, d) minimising ||(A - a) R - (B - b)||
    return ((a - a_mean) @ rotation + b_mean).astype(np.float32)


def warm_up() -> float:
    """Import umap and run one tiny fit so numba compiles now rather than on the user's first map.

    Safe to call from several threads; later calls return at once. Returns the seconds spent.
    """
    global _warm
    start = time.perf_counter()
    with _warm_lock:
        if not _warm:
            x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
            project(x, "umap", n_neighbors=5, n_epochs=10)
            _warm = True
    return time.perf_counter() - start


def build_metric(method: str, **params: Any) -> str:
    """The metric of the ORIGINAL space that a map made by ``project(vectors, method, **params)`` tries to keep.

    PCA keeps Euclidean geometry; UMAP and t-SNE keep neighbourhoods under their ``metric`` setting (cosine by
    default here). The honesty scores compare those neighbourhoods with Euclidean ones in the map, because the
    map is read by eye as a Euclidean plane, which is what UMAP and t-SNE optimise in the low-dimensional space.
    """
    if method == "pca":
        return "euclidean"
    if method not in METHODS:
        raise PlaygroundError(f"Unknown projection method {method!r}; use one of {', '.join(METHODS)}.")
    return str(params.get("metric", "cosine"))


def _honesty_inputs(vectors, coords, k, metric: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")
    if metric not in MAP_METRICS:
        raise ValueError(f"metric must be one of {', '.join(MAP_METRICS)}, got {metric!r}.")
    dev = resolve_device(None)
    x = as_matrix(vectors, "vectors", dev)
    c = as_matrix(coords, "coords", dev)
    n = x.shape[0]
    if c.shape[0] != n:
        raise ValueError(f"vectors has {n} rows but coords has {c.shape[0]}; they must match.")
    if n < 3:
        raise ValueError("Scoring a map needs at least three points.")
    return x, c, min(int(k), n - 2)


def neighbour_preservation_per_point(vectors, coords, k: int = 10, *, metric: str = "euclidean") -> np.ndarray:
    """For every point, the fraction of its k nearest neighbours in the original space (under ``metric``, the
    metric the map was built with: see :func:`build_metric`) that are also among its k nearest in the map
    (Euclidean, as the eye reads it). 1 = neighbourhood kept; about k/N for a random map.
    Shape: (N, D), (N, d) -> float64 (N,).
    """
    x, c, k = _honesty_inputs(vectors, coords, k, metric)
    n = x.shape[0]
    high = _neighbours(x, k, cosine=metric == "cosine")  # (N, k)
    low = _neighbours(c, k, cosine=False)
    out = np.empty(n, dtype=np.float64)
    step = rows_per_chunk(2 * k)
    for start in range(0, n, step):
        h, lo = high[start:start + step], low[start:start + step]
        hits = (h.unsqueeze(2) == lo.unsqueeze(1)).any(dim=2).sum(dim=1)  # (B,) via a (B, k, k) membership test
        out[start:start + step] = hits.cpu().numpy() / k
    return out


def neighbour_preservation(vectors, coords, k: int = 10, *, metric: str = "euclidean") -> float:
    """Mean of :func:`neighbour_preservation_per_point`: the share of k-NN (original space under ``metric``)
    kept as k-NN in the map. Pass the metric the map was built with (``build_metric``): a PCA map is Euclidean,
    so a PCA of data that is truly 2-D scores 1.0. Shape: (N, D), (N, d) -> float in [0, 1].
    """
    return float(neighbour_preservation_per_point(vectors, coords, k, metric=metric).mean())


def trustworthiness(vectors, coords, k: int = 10, *, metric: str = "euclidean") -> float:
    """Trustworthiness of a map (Venna & Kaski 2001), as in ``sklearn.manifold.trustworthiness``:

        T(k) = 1 - 2 / (N k (2N - 3k - 1)) * sum_i sum_{j in U_k(i)} (r(i, j) - k)

    where U_k(i) are the map's k nearest neighbours of i (Euclidean) that are not among its k nearest in the
    original space (under ``metric``), and r(i, j) is j's rank among i's neighbours in the original space.
    1 = no false neighbours in the map. Computed in row chunks on the device (scikit-learn holds the full
    N x N distance matrix and its argsort). ``k`` must be below N / 2. Shape: (N, D), (N, d) -> float.
    """
    x, c, _ = _honesty_inputs(vectors, coords, k, metric)
    n = x.shape[0]
    k = int(k)
    if k >= n / 2:
        raise ValueError(f"Trustworthiness needs k < N / 2; got k = {k} for {n} points.")
    low = _neighbours(c, k, cosine=False)  # (N, k) map neighbours
    if metric == "cosine":
        u = torch.nn.functional.normalize(x, dim=1)
    penalty = 0.0
    step = rows_per_chunk(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        if metric == "cosine":
            d = 1.0 - u[start:stop] @ u.T  # (B, N) cosine distance
        else:
            mode = "donot_use_mm_for_euclid_dist" if x.shape[1] <= 3 else "use_mm_for_euclid_dist"
            d = torch.cdist(x[start:stop], x, compute_mode=mode)
        local = torch.arange(stop - start, device=x.device)
        d[local, local + start] = float("-inf")  # self ranks 0, before everyone
        dj = torch.gather(d, 1, low[start:stop])  # (B, k) original-space distance to each map neighbour
        # rank of j among i's others (1 = nearest) = how many points are strictly closer, counting self (-inf)
        rank = torch.stack([(d < dj[:, m:m + 1]).sum(dim=1) for m in range(k)], dim=1)  # (B, k)
        penalty += float(torch.clamp(rank - k, min=0).sum())
    return 1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))


def _neighbours(x: torch.Tensor, k: int, *, cosine: bool) -> torch.Tensor:
    """Indices of the k nearest other rows (:func:`core.neighbors.knn`). Shape: (N, D) -> (N, k) on x's device."""
    idx, _ = knn(x, k, metric="cosine" if cosine else "euclidean", exclude_self=True, device=x.device)
    return torch.as_tensor(idx, device=x.device)


# ---------------------------------------------------------------------------------------------- the live map
LIVE_METHODS: dict[str, str] = {
    "tsne": "t-SNE (exact, NumPy): keeps each point's neighbours; started from the previous map, so points move "
            "a little at each snapshot",
    "umap": "UMAP (umap-learn): keeps neighbourhoods; its first map in a process compiles numba code (10-30 s)",
    "pca": "PCA: the two directions of largest variance; exact and instant, but it shows whatever varies most",
}
_PERPLEXITY = 20.0  # t-SNE's effective number of neighbours; 400 probe images hold ~67 of each of 6 shapes
_EXAGGERATION = 12.0  # early exaggeration of a fresh t-SNE (van der Maaten 2014; sklearn's default)
_FRESH_ITERS = (100, 300)  # a fresh map: iterations with exaggeration, then without
_FOLLOW_ITERS = 60  # a map started from the previous snapshot's: iterations, no exaggeration
# The exact t-SNE holds (N, N) arrays: 2,000 points are 16 MB a buffer and stay live; the Train page's largest probe
# (5,000) would cost seconds a snapshot, so larger sets are drawn with PCA (see live_method).
LIVE_TSNE_MAX = 2000


def live_method(method: str, n: int) -> str:
    """The method :func:`live_map` really uses for ``n`` points: PCA for sets too small for t-SNE / UMAP, and
    for t-SNE above :data:`LIVE_TSNE_MAX` points; otherwise ``method``."""
    if method not in LIVE_METHODS:
        raise PlaygroundError(f"Unknown live map method {method!r}; use one of {', '.join(LIVE_METHODS)}.")
    if n < _MIN_POINTS_NONLINEAR or (method == "tsne" and n > LIVE_TSNE_MAX):
        return "pca"
    return method


def _tsne_affinities(x: np.ndarray, perplexity: float, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t-SNE's joint probabilities p_ij on each point's 3 x perplexity nearest neighbours (as Barnes-Hut t-SNE and
    openTSNE do; farther points would get p ~ 0 anyway), each row's Gaussian bandwidth found by bisection so that
    its entropy is log(perplexity), then symmetrised: p_ij = (p_j|i + p_i|j) / 2N.
    Shape: (N, D) -> the edges as rows (E,), cols (E,) int64 and weights (E,) float64 summing to 1."""
    n = x.shape[0]
    k = int(min(n - 1, max(3 * perplexity, 1)))
    xf = x.astype(np.float64)
    if metric == "cosine":
        xf /= np.maximum(np.linalg.norm(xf, axis=1, keepdims=True), 1e-12)
        d = 2.0 - 2.0 * (xf @ xf.T)  # squared Euclidean distance of unit vectors
    else:
        sq = (xf * xf).sum(1)
        d = sq[:, None] + sq[None, :] - 2.0 * (xf @ xf.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, np.inf)
    idx = np.argpartition(d, k - 1, axis=1)[:, :k]  # (N, k) neighbours, unordered
    dk = np.take_along_axis(d, idx, 1)
    dk -= dk.min(axis=1, keepdims=True)  # shift per row: the same p_j|i, no underflow
    scale = np.maximum(dk.mean(axis=1, keepdims=True), 1e-12)
    dk /= scale  # bisect on a log-bandwidth of order one, whatever the distances' units
    target = np.log(min(perplexity, k))
    lo, hi = np.full((n, 1), -20.0), np.full((n, 1), 20.0)  # log beta
    for _ in range(40):  # 40 halvings of a range of 40: log beta to ~4e-11
        mid = 0.5 * (lo + hi)
        beta = np.exp(mid)
        w = np.exp(-dk * beta)
        s = w.sum(axis=1, keepdims=True)
        entropy = np.log(s) + beta * (dk * w).sum(axis=1, keepdims=True) / s
        flat = entropy > target  # too many effective neighbours: narrow the Gaussian
        lo = np.where(flat, mid, lo)
        hi = np.where(flat, hi, mid)
    w = np.exp(-dk * np.exp(0.5 * (lo + hi)))
    cond = w / w.sum(axis=1, keepdims=True)  # (N, k) p_j|i
    rows = np.repeat(np.arange(n), k)
    cols = idx.ravel()
    # symmetrise: keys i * n + j of both directions, summed where an edge appears twice
    keys = np.concatenate([rows * n + cols, cols * n + rows])
    vals = np.concatenate([cond.ravel(), cond.ravel()])
    uniq, inverse = np.unique(keys, return_inverse=True)
    p = np.bincount(inverse, weights=vals) / (2.0 * n)
    return uniq // n, uniq % n, p


class _TsneBuffers:
    """float32 work arrays that every iteration reuses: a fresh (N, N) array per operation cost more than the
    maths at a few hundred points."""

    def __init__(self, n: int) -> None:
        self.w = np.empty((n, n), dtype=np.float32)
        self.left = np.empty((n, 4), dtype=np.float32)
        self.right = np.empty((4, n), dtype=np.float32)
        self.diagonal = np.arange(n)


def _tsne_gradient(y: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: np.ndarray, exaggeration: float,
                   buf: _TsneBuffers) -> np.ndarray:
    """Gradient of KL(exaggeration * P || Q) for t-SNE with one degree of freedom (van der Maaten & Hinton 2008,
    eq. 5): dC/dy_i = 4 sum_j (ex p_ij - q_ij) w_ij (y_i - y_j), w_ij = 1 / (1 + |y_i - y_j|^2), q_ij = w_ij / Z.
    P lives on the edges (rows, cols, p); Q on all pairs. Shape: (N, 2) float64 -> (N, 2) float64."""
    n = y.shape[0]
    w = buf.w
    # repulsion: -4 / Z sum_j w_ij^2 (y_i - y_j), where
    # 1 + |y_i - y_j|^2 = [-2 y_i, 1 + |y_i|^2, 1] . [y_j, 1, |y_j|^2]: one (N, 4) x (4, N) product
    sq = (y * y).sum(1)
    buf.left[:, :2], buf.left[:, 2], buf.left[:, 3] = -2.0 * y, 1.0 + sq, 1.0
    buf.right[:2], buf.right[2], buf.right[3] = y.T, 1.0, sq
    np.matmul(buf.left, buf.right, out=w)
    np.maximum(w, 1.0, out=w)  # rounding can dip below 1 for near-coincident points
    np.reciprocal(w, out=w)
    w[buf.diagonal, buf.diagonal] = 0.0
    z = float(w.sum(dtype=np.float64))
    w *= w
    grad = -(4.0 / z) * (w.sum(1, dtype=np.float64)[:, None] * y - (w @ y.astype(np.float32)).astype(np.float64))
    # attraction on the edges: 4 ex sum_j p_ij w_ij (y_i - y_j)
    y0, y1 = np.ascontiguousarray(y[:, 0]), np.ascontiguousarray(y[:, 1])
    d0, d1 = y0[rows] - y0[cols], y1[rows] - y1[cols]  # (E,) each: 1-D gathers, ~7x faster than y[rows]
    pull = (4.0 * exaggeration) * p / (1.0 + d0 * d0 + d1 * d1)
    grad[:, 0] += np.bincount(rows, weights=pull * d0, minlength=n)
    grad[:, 1] += np.bincount(rows, weights=pull * d1, minlength=n)
    return grad


def tsne_exact(vectors, *, init=None, iters: tuple[int, int] = (250, 750), perplexity: float = 30.0,
               metric: str = "cosine", exaggeration: float = _EXAGGERATION, learning_rate: float | None = None,
               seed: int = 0) -> np.ndarray:
    """t-SNE (van der Maaten & Hinton 2008) with the exact all-pairs repulsion: for the few hundred points of a
    live map it is cheaper than a tree or a grid, needs no compiled code, and is deterministic.

    ``iters = (early, late)``: gradient steps with the attraction multiplied by ``exaggeration``, then without.
    The update is the reference implementation's (and scikit-learn's): momentum 0.5 then 0.8 and per-coordinate
    gains (Jacobs 1988), learning rate max(N / exaggeration / 4, 50) unless given. ``init``: (N, 2) start
    coordinates (a previous map); None starts from the first two principal components scaled to a standard
    deviation of 1e-4, as scikit-learn's ``init="pca"``. Shape: (N, D) -> float32 (N, 2).
    """
    x = _check_vectors(vectors)
    n = x.shape[0]
    if n < _MIN_POINTS_NONLINEAR:
        raise PlaygroundError(f"t-SNE needs at least {_MIN_POINTS_NONLINEAR} points, got {n}; use PCA for tiny sets.")
    if metric not in MAP_METRICS:
        raise PlaygroundError(f"t-SNE metric must be one of {', '.join(MAP_METRICS)}, got {metric!r}.")
    if not 1.0 <= perplexity < n:
        raise PlaygroundError(f"t-SNE perplexity must be at least 1 and below the number of points ({n}).")
    early, late = (int(v) for v in iters)
    if early < 0 or late < 0:
        raise PlaygroundError("t-SNE iteration counts must not be negative.")
    rows, cols, p = _tsne_affinities(x, perplexity, metric)
    if init is None:
        y = _pca(x, 2)
        y = y / max(float(y[:, 0].std()), 1e-12) * 1e-4
        # a hair of seeded noise separates exact duplicates, which PCA would put on one spot
        y += np.random.default_rng(seed).normal(scale=1e-6, size=y.shape)
    else:
        y = np.array(init, dtype=np.float64)
        if y.shape != (n, 2) or not np.isfinite(y).all():
            raise PlaygroundError(f"init must be finite (N, 2) coordinates for the {n} points, got {y.shape}.")
    lr = float(learning_rate) if learning_rate is not None else max(n / exaggeration / 4.0, 50.0)
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    buffers = _TsneBuffers(n)
    for it in range(early + late):
        ex = exaggeration if it < early else 1.0
        momentum = 0.5 if it < early else 0.8
        grad = _tsne_gradient(y, rows, cols, p, ex, buffers)
        flip = update * grad < 0.0
        gains = np.where(flip, gains + 0.2, gains * 0.8)
        np.maximum(gains, 0.01, out=gains)
        update = momentum * update - lr * gains * grad
        y += update
    y -= y.mean(axis=0)
    return y.astype(np.float32)


def live_map(vectors, previous=None, *, method: str = "tsne", seed: int = 0, metric: str = "cosine") -> np.ndarray:
    """The Train page's 2-D map of the probe images at one snapshot, made to follow the previous snapshot's.

    ``previous``: the coordinates drawn at the previous snapshot for the same points (same rows, same order), or
    None for the first map. t-SNE and UMAP start from it and take a few steps (a fresh map takes more), so a point
    moves only as far as its neighbourhood changed; every map is then rotated onto the previous one (orthogonal
    Procrustes, :func:`align_to`) so the picture does not spin or mirror between snapshots. PCA is computed afresh
    and rotated the same way. ``metric``: how the vectors are compared (cosine for contrastive embeddings).
    Shape: (N, D), (N, 2) or None -> float32 (N, 2).

    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> a = live_map(x); b = live_map(x + 1e-3, previous=a); float(np.abs(a - b).max()) < 1.0
    True
    """
    x = _check_vectors(vectors)
    n = x.shape[0]
    method = live_method(method, n)
    prev = None
    if previous is not None:
        prev = np.asarray(previous, dtype=np.float64)
        if prev.shape != (n, 2) or not np.isfinite(prev).all():
            prev = None  # another probe, or a broken map: start afresh rather than fail a training step
    if method == "pca":
        coords = _pca(x, 2)
    elif method == "tsne":
        perplexity = min(_PERPLEXITY, (n - 1) / 3.0)
        if prev is None:
            coords = tsne_exact(x, iters=_FRESH_ITERS, perplexity=perplexity, metric=metric, seed=seed)
        else:
            coords = tsne_exact(x, init=prev, iters=(0, _FOLLOW_ITERS), perplexity=perplexity, metric=metric,
                                seed=seed)
    else:
        extra: dict[str, Any] = {"metric": metric}
        if prev is not None:  # umap rescales an array init to a 10 x 10 box itself
            extra.update(init=prev, n_epochs=50)
        coords = project(x, "umap", seed=seed, **extra)
    if prev is not None:
        coords = align_to(coords, prev)
    return np.ascontiguousarray(coords, dtype=np.float32)


def loo_knn_accuracy(coords, labels, k: int = 10) -> float:
    """Leave-one-out k-NN accuracy in a map, by Euclidean distance (how the eye reads it): each point takes the
    majority label of its k nearest other points; a tie between labels goes to the label of the nearest
    neighbour among the tied ones (as :func:`core.metrics.knn_accuracy`). Exact search (core.neighbors).
    Shape: (N, d), (N,) -> float in [0, 1]."""
    return _loo_knn(np.asarray(coords, dtype=np.float64), {"y": labels}, k)["y"]


def _loo_knn(c: np.ndarray, labels: dict[str, np.ndarray], k: int) -> dict[str, float]:
    if c.ndim != 2 or c.shape[0] < 2 or not np.isfinite(c).all():
        raise ValueError("coords must be finite (N, d) coordinates of at least two points.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")
    n = c.shape[0]
    k = min(int(k), n - 1)
    encoded = {}
    for name, y in labels.items():
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"labels {name!r} must hold one label per point ({n}), got shape {y.shape}.")
        encoded[name] = np.unique(y, return_inverse=True)
    nn = knn(c, k, metric="euclidean", exclude_self=True)[0]  # (N, k) nearest first, never yourself
    rows = np.arange(n)
    out = {}
    for name, (classes, y) in encoded.items():
        votes = y[nn]  # (N, k) neighbours' labels, nearest first
        counts = np.zeros((n, len(classes)), dtype=np.int64)
        np.add.at(counts, (np.repeat(rows, k), votes.ravel()), 1)
        tied = counts == counts.max(axis=1, keepdims=True)  # (N, C) the labels with the most votes
        first = np.argmax(tied[rows[:, None], votes], axis=1)  # the nearest neighbour holding a tied label
        out[name] = float((votes[rows, first] == y).mean())
    return out


@dataclass(frozen=True)
class MapTrust:
    """What a 2-D map can show of a factor: its own k-NN accuracy beside the vectors' (both leave-one-out)."""

    factor: str
    k: int
    vectors_knn: float  # in the high-dimensional vectors (cosine)
    map_knn: float  # in the 2-D map (Euclidean)
    chance: float  # the share of the commonest label: what a map with no information scores
    per_factor: dict[str, tuple[float, float]]  # every factor: (vectors_knn, map_knn)
    dominant: str | None  # the factor the map's neighbourhoods hold far better than ``factor``, if any

    @property
    def kept(self) -> float:
        """Share of the vectors' k-NN accuracy the map keeps (1 = all of it; can exceed 1 slightly)."""
        return self.map_knn / self.vectors_knn if self.vectors_knn > 0 else float("nan")


_DOMINANT_MARGIN = 0.15  # how much better (above chance, as a share of the way to 1) another factor must show


def _lift(acc: float, chance: float) -> float:
    return (acc - chance) / (1.0 - chance) if chance < 1.0 else 0.0


def map_trust(vectors, coords, labels, *, factor: str | None = None, k: int = 10,
              metric: str = "cosine") -> MapTrust:
    """How much of what the vectors hold about ``factor`` a map shows: leave-one-out k-NN accuracy of the factor
    in the vectors (``core.metrics.knn_accuracy``, cosine) and in the map (:func:`loo_knn_accuracy`), for every
    factor of ``labels`` (a dict name -> (N,) labels, or one (N,) array named "label"). ``dominant`` names another
    factor whose map neighbourhoods are clearly purer (above chance) than ``factor``'s, which is what the map
    mostly shows. Shape: (N, D), (N, 2) -> MapTrust.
    """
    if not isinstance(labels, dict):
        labels = {"label": labels}
    if not labels:
        raise ValueError("map_trust needs at least one labelling.")
    factor = factor if factor is not None else next(iter(labels))
    if factor not in labels:
        raise ValueError(f"Unknown factor {factor!r}; the labels hold {', '.join(labels)}.")
    if metric not in MAP_METRICS:
        raise ValueError(f"metric must be one of {', '.join(MAP_METRICS)}, got {metric!r}.")
    x = np.asarray(vectors, dtype=np.float32)
    c = np.asarray(coords, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != c.shape[0]:
        raise ValueError(f"vectors and coords must have one row per point, got {x.shape} and {c.shape}.")
    from core.metrics import knn_accuracies

    labels = {name: np.asarray(y) for name, y in labels.items()}
    if metric == "cosine":
        high = knn_accuracies(x, labels, x, labels, k=k, exclude_self=True)
    else:
        high = _loo_knn(x.astype(np.float64), labels, k)
    low = _loo_knn(c, labels, k)
    chance = {name: float(np.unique(y, return_counts=True)[1].max() / len(y)) for name, y in labels.items()}
    lifts = {name: _lift(low[name], chance[name]) for name in labels}
    best = max(lifts, key=lifts.get)
    dominant = best if best != factor and lifts[best] - lifts[factor] > _DOMINANT_MARGIN else None
    return MapTrust(factor=factor, k=min(int(k), len(c) - 1), vectors_knn=float(high[factor]),
                    map_knn=float(low[factor]), chance=chance[factor],
                    per_factor={name: (float(high[name]), float(low[name])) for name in labels}, dominant=dominant)
