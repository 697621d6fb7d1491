"""Exact k-nearest-neighbour search: the one place the app finds the rows most similar to other rows.

Two engines give the same answers (up to the order of equal scores, see below):

- **faiss** (Johnson et al. 2017) on the CPU: ``faiss.knn`` on float32, inner product of unit rows for cosine,
  L2 for Euclidean. It scores blocks of queries against blocks of the base with BLAS and keeps a heap per
  query, so memory stays at (Q, k) plus one block. Its OpenMP threads follow torch's thread count, so a worker
  process limited to one torch thread does not start more.
- **torch** on a GPU (``core.device.pick_device()``): the (rows, N) score block of one chunk of queries at a
  time (:func:`core.vectors.rows_per_chunk`), then ``torch.topk``.

``backend="auto"`` picks faiss when the device is the CPU and torch otherwise; ``benchmarks/speed/
bench_neighbors.py`` measures the two side by side. Euclidean search in 1-3 dimensions (map coordinates) always
runs in torch with the direct difference formula: the BLAS form ||a||^2 + ||b||^2 - 2ab that faiss uses loses
the near-ties a 2-D map is full of, and the map's scores count neighbours exactly.

Ties: two engines (or two block sizes) may order equal scores differently, and at the k-th place may keep a
different member of a tied group. Results are sorted by score, then by row index, so equal scores inside the
top k come out in one order; which tied row makes the cut at place k is not specified.

The KD-tree in :mod:`core.bigmap` is not a k-NN over vectors: it answers "which point of a 2-D map is under
this click" and stays there.
"""
from __future__ import annotations

import numpy as np
import torch

from core.vectors import as_array, as_matrix, resolve_device, rows_per_chunk, unit_array, unit_rows

__all__ = ["METRICS", "BACKENDS", "knn", "choose_backend"]

METRICS = ("cosine", "euclidean")
BACKENDS = ("auto", "faiss", "torch")
_EXACT_DIFF_DIMS = 3  # Euclidean search in this many dimensions or fewer uses torch's direct formula
_ONE_THREAD_WORK = 1 << 26  # faiss searches below this many multiply-adds (Q x N x D) run on one thread


def choose_backend(backend: str, device: torch.device, metric: str, dim: int) -> str:
    """The engine ``knn`` runs for these settings: "faiss" or "torch" (see the module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown search backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if metric == "euclidean" and dim <= _EXACT_DIFF_DIMS:
        return "torch"
    if backend == "auto":
        return "faiss" if device.type == "cpu" else "torch"
    return backend


def knn(base, k: int, *, queries=None, rows=None, metric: str = "cosine", exclude_self: bool = False,
        labels=None, backend: str = "auto", device: torch.device | str | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` for each query, nearest first. Exact (every base row is scored).

    base: (N, D) NumPy array or torch tensor (any real dtype; searched in float32).
    queries: (Q, D) vectors to search for; leave it None to search for rows of ``base`` itself:
        ``rows`` (Q,) their indices (default: every row, so Q = N).
    metric: "cosine" (rows are L2-normalised inside; a zero row scores 0 against everything) or "euclidean".
    exclude_self: leave each query's own row out (only when the queries are rows of ``base``).
    labels: (N,) labels of the base rows; leave out every row sharing the query row's label, itself included
        (hard negatives; only when the queries are rows of ``base``).
    backend: "auto", "faiss" or "torch"; device: where torch runs (default ``pick_device()``); faiss is CPU.

    Returns ``(indices, scores)``, int64 and float32, both (Q, k): cosine similarity (highest first) or
    Euclidean distance (lowest first). Where fewer than ``k`` rows are left to return (k > N, or too few rows
    with another label), the missing places hold index -1 and score NaN.

    >>> idx, sims = knn(np.array([[1.0, 0], [0.9, 0.1], [0, 1]]), 1, exclude_self=True)
    >>> idx.ravel().tolist()
    [1, 0, 1]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")
    if metric not in METRICS:
        raise ValueError(f"Unknown search metric {metric!r}; use one of {', '.join(METRICS)}.")
    dev = resolve_device(device)
    probe = base if isinstance(base, torch.Tensor) else np.asarray(base)
    dim = probe.shape[-1] if probe.ndim else 0
    engine = choose_backend(backend, dev, metric, dim)
    if engine == "faiss":  # NumPy only up to faiss: no torch kernel (and its thread pool) in between
        prepare = unit_array if metric == "cosine" else as_array
    else:
        prepare = (lambda x, name: (unit_rows if metric == "cosine" else as_matrix)(x, name, dev))
    b = prepare(base, "base")  # (N, D)
    n = b.shape[0]
    if queries is not None:
        if rows is not None or exclude_self or labels is not None:
            raise ValueError("rows, exclude_self and labels need the queries to be rows of base; pass queries=None.")
        q = prepare(queries, "queries")
        if q.shape[1] != b.shape[1]:
            raise ValueError(f"queries have dimension {q.shape[1]}, base has {b.shape[1]}.")
        query_rows = None
    else:
        query_rows = _rows(rows, n)
        if rows is None:
            q = b
        else:
            q = b[query_rows] if engine == "faiss" else b[torch.as_tensor(query_rows, device=dev)]
    codes = None
    if labels is not None:
        lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if lab.shape != (n,):
            raise ValueError(f"labels must be shaped ({n},) to match the base rows, got {lab.shape}.")
        codes = np.unique(lab, return_inverse=True)[1].reshape(-1).astype(np.int64)
    width = min(int(k), n)  # no engine returns more rows than the base holds
    if q.shape[0] == 0 or n == 0:
        idx, scores = np.full((q.shape[0], width), -1, np.int64), np.full((q.shape[0], width), np.nan, np.float32)
    elif engine == "faiss":
        idx, scores = _faiss(q, b, width, metric, query_rows if exclude_self else None,
                             codes, query_rows)
    else:
        idx, scores = _torch(q, b, width, metric, query_rows if exclude_self else None, codes, query_rows)
    if metric == "euclidean":  # re-score the pairs found; places left out (-1, or -inf/NaN) stay missing
        idx = np.where(np.isfinite(scores), idx, -1)
        scores = _exact_distances(q, b, idx)
    idx, scores = _tidy(idx, scores, metric)
    if width < k:  # pad to the requested width
        idx = np.pad(idx, ((0, 0), (0, k - width)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, k - width)), constant_values=np.nan)
    return idx, scores


def _rows(rows, n: int) -> np.ndarray:
    if rows is None:
        return np.arange(n, dtype=np.int64)
    r = rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    if r.ndim > 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise ValueError("rows must be a 1-D array of row indices.")
    r = r.reshape(-1).astype(np.int64)
    if r.size and (r.min() < 0 or r.max() >= n):
        raise ValueError(f"rows must lie in 0..{n - 1}.")
    return r


def _exact_distances(q, b, idx: np.ndarray) -> np.ndarray:
    """||q_i - b_idx[i, j]|| by the difference formula for the (Q, k) pairs found. Both engines search with
    ||a||^2 + ||b||^2 - 2ab, whose rounding leaves a point ~1e-3 away from its own duplicate after the square
    root; the few pairs found are cheap to score exactly. Missing places (-1) come back NaN. Shape: (Q, k)."""
    safe = np.maximum(idx, 0)
    out = np.empty(idx.shape, dtype=np.float32)
    step = rows_per_chunk(idx.shape[1] * b.shape[1])
    for start in range(0, idx.shape[0], step):
        stop = min(start + step, idx.shape[0])
        if isinstance(b, np.ndarray):
            d = np.linalg.norm(q[start:stop, None, :] - b[safe[start:stop]], axis=2)  # (B, k)
        else:
            rows = torch.as_tensor(safe[start:stop], device=b.device)
            d = (q[start:stop, None, :] - b[rows]).norm(dim=2).cpu().numpy()
        out[start:stop] = d
    return np.where(idx >= 0, out, np.nan).astype(np.float32)


def _tidy(idx: np.ndarray, scores: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Missing places to (-1, NaN) at the end; equal scores in row order; cosine clamped to [-1, 1]."""
    missing = (idx < 0) | ~np.isfinite(scores)
    idx = np.where(missing, -1, idx).astype(np.int64)
    scores = np.where(missing, np.nan, scores).astype(np.float32)
    if metric == "cosine":
        np.clip(scores, -1.0, 1.0, out=scores)
    # best first, then lower row index; missing last (the key of a missing place is +inf)
    key = np.where(missing, np.inf, -scores if metric == "cosine" else scores)
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, idx), key), axis=-1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)


# ------------------------------------------------------------------------------------------------ torch
def _torch(q: torch.Tensor, b: torch.Tensor, width: int, metric: str, self_rows: np.ndarray | None,
           codes: np.ndarray | None, query_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Chunked top-k on ``q.device``. Scores are similarities (cosine) or negated distances while searching."""
    dev = b.device
    n = b.shape[0]
    self_t = None if self_rows is None else torch.as_tensor(self_rows, device=dev)
    codes_t = None if codes is None else torch.as_tensor(codes, device=dev)
    qcodes_t = None if codes is None else codes_t[torch.as_tensor(query_rows, device=dev)]
    mode = "donot_use_mm_for_euclid_dist" if b.shape[1] <= _EXACT_DIFF_DIMS else "use_mm_for_euclid_dist"
    idx_out, score_out = [], []
    step = rows_per_chunk(n)
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        if metric == "cosine":
            s = q[start:stop] @ b.T  # (B, N) cosine similarity
        else:
            s = -torch.cdist(q[start:stop], b, compute_mode=mode)  # (B, N) negated distance: larger is nearer
        if self_t is not None:
            s[torch.arange(stop - start, device=dev), self_t[start:stop]] = float("-inf")
        if codes_t is not None:
            s.masked_fill_(qcodes_t[start:stop].unsqueeze(1) == codes_t.unsqueeze(0), float("-inf"))
        top = torch.topk(s, width, dim=1)  # sorted, best first
        score_out.append(top.values)
        idx_out.append(top.indices)
    scores = torch.cat(score_out).cpu().numpy()
    if metric == "euclidean":
        scores = -scores
    return torch.cat(idx_out).cpu().numpy(), scores  # -inf (masked) reads as missing in _tidy


# ------------------------------------------------------------------------------------------------ faiss
def _faiss(q: np.ndarray, b: np.ndarray, width: int, metric: str, self_rows: np.ndarray | None,
           codes: np.ndarray | None, query_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    # faiss's OpenMP pool (and the OpenBLAS it ships, which uses the same pool) follows torch's setting. A small
    # search (one click's row against the set) runs on one thread: a parallel region waits for every thread to
    # be scheduled, and on busy cores that wait is far longer than a small search itself.
    # The setting is put back afterwards: in some processes faiss and torch resolve to one libgomp, and torch's
    # own thread count would silently change with it.
    small = len(q) * len(b) * b.shape[1] < _ONE_THREAD_WORK
    saved = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1 if small else max(1, torch.get_num_threads()))
    try:
        return _faiss_search(faiss, q, b, width, metric, self_rows, codes, query_rows)
    finally:
        faiss.omp_set_num_threads(saved)


def _faiss_search(faiss, q: np.ndarray, b: np.ndarray, width: int, metric: str, self_rows: np.ndarray | None,
                  codes: np.ndarray | None, query_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    q, b = np.ascontiguousarray(q, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)

    def search(qq: np.ndarray, bb: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        d, i = faiss.knn(qq, bb, kk, metric=kind)
        if metric == "euclidean":
            d = np.sqrt(np.maximum(d, 0.0))  # faiss returns squared L2
        return i.astype(np.int64), d.astype(np.float32)

    if codes is not None:
        # each label's queries against the base rows of every other label (the self row is among the left-out)
        idx = np.full((len(q), width), -1, np.int64)
        scores = np.full((len(q), width), np.nan, np.float32)
        qcodes = codes[query_rows]
        for c in np.unique(qcodes):
            qsel = np.flatnonzero(qcodes == c)
            bsel = np.flatnonzero(codes != c)
            if not len(bsel):
                continue
            kk = min(width, len(bsel))
            i, d = search(q[qsel], np.ascontiguousarray(b[bsel]), kk)
            idx[qsel, :kk] = np.where(i >= 0, bsel[np.maximum(i, 0)], -1)
            scores[qsel, :kk] = d
        return idx, scores
    if self_rows is None:
        return search(q, b, width)
    # one more than asked, then drop the query's own row. If self is not among them, the k + 1 returned all
    # score at least as well as self, so the first k are a correct answer.
    i, d = search(q, b, min(width + 1, len(b)))
    keep = (i != self_rows[:, None]) & (i >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :width]  # kept places first, in faiss's order
    i, d, keep = (np.take_along_axis(a, order, 1) for a in (i, d, keep))
    return np.where(keep, i, -1), np.where(keep, d, np.nan).astype(np.float32)
