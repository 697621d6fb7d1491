"""Retrieval metrics: recall@k and mean reciprocal rank of queries against passages, and why one passage ranks
where it does."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from core.errors import PlaygroundError
from core.text.index import as_matrix

@dataclass
class RetrievalReport:
    """recall@k per k (share of queries whose relevant passage is in the top k), MRR, and each query's rank."""

    recall: dict[int, float]
    mrr: float
    ranks: np.ndarray  # int64 (Q,), 1 = first


def _ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best relevant column in each row; ties count against it (#scores >= its own).

    ``relevant``: int (Q,) positions, or a boolean (Q, N) mask of every relevant column.
    """
    if relevant.ndim == 1:
        own = scores[np.arange(len(relevant)), relevant]
    else:
        own = np.where(relevant, scores, -np.inf).max(axis=1)
    return (scores >= own[:, None]).sum(axis=1).astype(np.int64)


def retrieval_metrics(query_vectors: Any, passage_vectors: Any, relevant: Any, ks: Sequence[int] = (1, 5, 10),
                      *, exclude: np.ndarray | None = None) -> RetrievalReport:
    """Recall@k (a relevant passage among the top k) and mean reciprocal rank (of the first relevant one).

    Shapes: queries (Q, D), passages (N, D) unit vectors; ``relevant`` int (Q,) positions of each query's one
    answer, or a boolean (Q, N) mask when several passages count (e.g. every sentence of the query's topic).
    ``exclude`` (Q, N) boolean: passages left out of a query's ranking (e.g. the query sentence itself).
    """
    q = as_matrix(query_vectors, "query vectors")
    p = as_matrix(passage_vectors, "passage vectors", q.shape[1])
    rel = np.asarray(relevant)
    if rel.ndim == 2:
        if rel.shape != (q.shape[0], p.shape[0]):
            raise PlaygroundError(f"The relevance mask has shape {rel.shape}; expected {(q.shape[0], p.shape[0])}.")
        rel = rel.astype(bool)
        if exclude is not None:
            rel = rel & ~exclude
        if not rel.any(axis=1).all():
            raise PlaygroundError("Some queries have no relevant passage among the passages searched.")
    else:
        rel = rel.astype(np.int64).reshape(-1)
        if rel.shape[0] != q.shape[0]:
            raise PlaygroundError(f"There are {rel.shape[0]} relevant positions for {q.shape[0]} queries.")
        if rel.size and (rel.min() < 0 or rel.max() >= p.shape[0]):
            raise PlaygroundError("Some queries' answers are not among the passages searched.")
    scores = q @ p.T
    if exclude is not None:
        scores = np.where(exclude, -np.inf, scores)
    ranks = _ranks(scores, rel) if q.shape[0] else np.zeros(0, dtype=np.int64)
    recall = {int(k): float(np.mean(ranks <= k)) if ranks.size else 0.0 for k in ks}
    mrr = float(np.mean(1.0 / ranks)) if ranks.size else 0.0
    return RetrievalReport(recall, mrr, ranks)


@dataclass
class Explanation:
    """Why a passage ranks where it does for one query."""

    similarity: float  # cosine of the query and the passage
    rank: int  # 1 = the top result
    beaten_by: list[tuple[int, float]]  # (passage position, cosine) of the passages ranked above it, best first
    n_above: int  # how many passages outrank it in all


def explain(query_vector: Any, passage_vectors: Any, target: int, *, n: int = 5) -> Explanation:
    """Similarity and rank of passage ``target`` for one query, and the (up to ``n``) passages that beat it."""
    q = as_matrix(query_vector, "query vector")
    if q.shape[0] != 1:
        raise PlaygroundError("explain takes one query vector.")
    p = as_matrix(passage_vectors, "passage vectors", q.shape[1])
    if not 0 <= int(target) < p.shape[0]:
        raise PlaygroundError(f"Passage {target} does not exist; there are {p.shape[0]}.")
    scores = (p @ q[0]).astype(np.float32)
    own = float(scores[int(target)])
    above = np.flatnonzero(scores > own)
    above = above[np.argsort(-scores[above], kind="stable")]
    return Explanation(own, int(above.size) + 1, [(int(i), float(scores[i])) for i in above[:n]], int(above.size))
