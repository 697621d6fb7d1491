"""Nearest-neighbour search over unit vectors in faiss (Johnson et al. 2017): exact inner product by default,
HNSW (Malkov & Yashunin 2018) or IVF for very large sets. faiss is imported inside the functions."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import PlaygroundError
from core.settings_schema import TEXT_INDEXES

INDEX_KINDS = {
    "exact": "exact (faiss IndexFlatIP): every passage is scored",
    "hnsw": "approximate (faiss HNSW graph): fast on millions, may miss a few",
    "ivf": "approximate (faiss IVF clusters): fast on millions after a training pass, may miss a few",
}
if tuple(INDEX_KINDS) != TEXT_INDEXES:  # the Text page's choices come from the schema; a developer's error
    raise RuntimeError("core.text.INDEX_KINDS must name exactly core.settings_schema.TEXT_INDEXES, in its order.")
APPROXIMATE_ABOVE = 1_000_000  # below this many vectors exact search is fast enough (and always right)


@dataclass
class SearchIndex:
    """A faiss index over N unit vectors of length D (inner product = cosine similarity)."""

    index: Any
    kind: str
    n: int
    dim: int
    params: dict = field(default_factory=dict)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind} index over {self.n:,} x {self.dim}" + (f" ({extra})" if extra else "")


def as_matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    """``x`` (an array, a tensor or an EmbeddingSet; one row or N) as a contiguous float32 (N, D) table, D == ``dim``
    when given; anything else (NaN, wrong width) raises PlaygroundError naming ``what``."""
    if hasattr(x, "vectors"):
        x = x.vectors
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise PlaygroundError(f"The {what} must form an N x D table, got shape {arr.shape}.")
    if dim is not None and arr.shape[1] != dim:
        raise PlaygroundError(f"The {what} have {arr.shape[1]} numbers each, the index {dim}.")
    if not np.isfinite(arr).all():
        raise PlaygroundError(f"The {what} contain NaN or infinite values.")
    return np.ascontiguousarray(arr)


def build_index(vectors: Any, kind: str = "exact", *, hnsw_m: int = 32, ef_search: int = 128,
                nlist: int | None = None, nprobe: int | None = None, seed: int = 0) -> SearchIndex:
    """A faiss inner-product index over ``vectors`` (N, D), or an EmbeddingSet's vectors.

    ``kind``: "exact" (``IndexFlatIP``, the default and right answer below :data:`APPROXIMATE_ABOVE`),
    "hnsw" (``IndexHNSWFlat``, graph degree ``hnsw_m``, search breadth ``ef_search``) or "ivf"
    (``IndexIVFFlat`` with ``nlist`` k-means cells, default about 4 sqrt(N), searching ``nprobe`` of them).
    Use unit vectors (as :func:`embed_texts` returns) so scores are cosine similarities.
    """
    if kind not in INDEX_KINDS:
        raise PlaygroundError(f"Unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}.")
    x = as_matrix(vectors, "vectors")
    n, d = x.shape
    if n == 0:
        raise PlaygroundError("An index needs at least one vector.")
    import faiss

    params: dict = {}
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        if hnsw_m < 2 or ef_search < 1:
            raise PlaygroundError(f"HNSW needs hnsw_m >= 2 and ef_search >= 1, got {hnsw_m} and {ef_search}.")
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = int(ef_search)
        params = {"M": int(hnsw_m), "efSearch": int(ef_search)}
    else:
        cells = int(nlist) if nlist is not None else max(1, min(int(4 * math.sqrt(n)), n // 39))
        if not 1 <= cells <= n:
            raise PlaygroundError(f"IVF needs between 1 and {n} cells (nlist) for {n} vectors, got {cells}.")
        probe = int(nprobe) if nprobe is not None else max(1, min(cells, max(8, cells // 8)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(seed)  # k-means initialisation, so a rebuilt index is the same index
        index.train(x)
        index.nprobe = probe
        params = {"nlist": cells, "nprobe": probe}
    index.add(x)
    return SearchIndex(index, kind, n, d, params)


def search(index: SearchIndex, queries: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best passages per query: (scores float32 (Q, k), ids int64 (Q, k)), best first.

    ``k`` larger than the index is cut to its size. Scores are inner products (cosines for unit vectors).
    """
    if not isinstance(index, SearchIndex):
        raise PlaygroundError("search needs an index made by build_index.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise PlaygroundError(f"k must be a positive whole number, got {k!r}.")
    q = as_matrix(queries, "queries", index.dim)
    scores, ids = index.index.search(q, int(min(k, index.n)))
    return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)


def approximate_recall(approx: SearchIndex, vectors: Any, queries: Any, k: int = 10) -> float:
    """Recall@k of ``approx`` against exact search: the mean share of the exact top-k it also returns."""
    exact = build_index(vectors, "exact")
    _, truth = search(exact, queries, k)
    _, found = search(approx, queries, k)
    hits = [len(set(t.tolist()) & set(f.tolist())) / t.size for t, f in zip(truth, found)]
    return float(np.mean(hits)) if hits else 1.0
