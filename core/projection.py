"""2-D / 3-D maps of embeddings: PCA, UMAP, t-SNE, plus Procrustes alignment and a quality score.

* PCA is exact (eigendecomposition in float64) with a fixed sign per component, so the same data always gives
  the same picture, and :func:`align_to` rotates one snapshot onto the previous so training timelines move
  smoothly instead of flipping.
* UMAP (McInnes et al. 2018) via umap-learn, fed exact neighbours from scikit-learn (about 2.5x faster than
  its own search at a few thousand points) and a PCA start. umap is imported lazily: the first import in a
  process compiles numba code for about 13 s; :func:`warm_up` pays that up front.
* t-SNE (van der Maaten & Hinton 2008) via scikit-learn.

Caching by content is the UI's job; everything here is a pure function of its inputs and seed.
"""
from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import numpy as np
import torch

from core.errors import PlaygroundError
from core.similarity import _as_matrix, _chunked_topk, _device, _rows_per_chunk, _unit_rows

__all__ = ["METHODS", "MAP_METRICS", "project", "align_to", "warm_up", "build_metric", "neighbour_preservation",
           "neighbour_preservation_per_point", "trustworthiness"]

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
        x = _as_matrix(vectors, "vectors", torch.device("cpu")).numpy()
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
    Shape: (N, D) -> indices (N, k) int64, distances (N, k) float32."""
    if metric == "cosine":
        u = _unit_rows(x, "vectors", _device(None))
        sims, idx = _chunked_topk(u, u, k)
        dists = (1.0 - sims).clamp_(min=0.0).cpu().numpy()
        idx = idx.cpu().numpy()
        # a point's own similarity can tie with a duplicate; force self to the front
        rows = np.arange(x.shape[0])
        not_first = idx[:, 0] != rows
        if not_first.any():
            for r in np.flatnonzero(not_first):
                others = idx[r][idx[r] != r][: k - 1]
                idx[r] = np.concatenate([[r], others])
                dists[r] = np.concatenate([[0.0], np.sort(dists[r])[: k - 1]])
        dists[:, 0] = 0.0
        return idx.astype(np.int64), dists.astype(np.float32)
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(x)
    dists, idx = nn.kneighbors(x)
    return idx.astype(np.int64), dists.astype(np.float32)


def _umap(x: np.ndarray, dim: int, seed: int, params: dict[str, Any]) -> np.ndarray:
    import umap  # lazy: 13 s of numba compilation on the first import in a process

    n = x.shape[0]
    metric = params.pop("metric", "cosine")  # contrastive embeddings are compared by cosine
    n_neighbors = int(params.pop("n_neighbors", 15))
    if n_neighbors < 2:
        raise PlaygroundError(f"UMAP n_neighbors must be at least 2, got {n_neighbors}.")
    n_neighbors = min(n_neighbors, n - 1)
    settings: dict[str, Any] = {"n_components": dim, "n_neighbors": n_neighbors, "metric": metric,
                                "min_dist": 0.1, "init": "pca", "n_epochs": 200, "random_state": seed}
    settings.update(params)
    try:
        knn = _knn(x, n_neighbors, metric)
    except ValueError as exc:
        raise PlaygroundError(f"UMAP cannot use metric {metric!r} ({exc}).") from exc
    with warnings.catch_warnings():
        # "n_jobs overridden by setting random_state" and similar notes are not for users
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(precomputed_knn=knn, **settings)
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
    dev = _device(None)
    x = _as_matrix(vectors, "vectors", dev)
    c = _as_matrix(coords, "coords", dev)
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
    step = _rows_per_chunk(2 * k)
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
    step = _rows_per_chunk(n)
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
    """Indices of the k nearest other rows. Shape: (N, D) -> (N, k)."""
    n = x.shape[0]

    def drop_self(start: int, stop: int, scores: torch.Tensor) -> None:
        local = torch.arange(stop - start, device=x.device)
        scores[local, local + start] = float("-inf")

    if cosine:
        u = torch.nn.functional.normalize(x, dim=1)
        return _chunked_topk(u, u, k, drop_self)[1]
    # Euclidean. Map coordinates (d <= 3) get the direct difference formula, exact even for near ties; for
    # high d the matmul form ||a||^2 + ||b||^2 - 2ab is the only affordable one
    mode = "donot_use_mm_for_euclid_dist" if x.shape[1] <= 3 else "use_mm_for_euclid_dist"
    out = []
    step = _rows_per_chunk(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        scores = -torch.cdist(x[start:stop], x, compute_mode=mode)
        drop_self(start, stop, scores)
        out.append(torch.topk(scores, k, dim=1).indices)
    return torch.cat(out)
