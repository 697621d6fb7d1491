"""Retrieval on unit CLIP vectors (query arithmetic, top-k search) and the modality gap between image and text."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import PlaygroundError


# ------------------------------------------------------------------------------------------ retrieval, map
def combine_queries(terms: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
    """Query arithmetic on unit vectors: ``sum(sign * v)``, renormalised (e.g. image + "red" - "blue").
    Shape: terms of (D,) -> (D,)."""
    if not terms:
        raise PlaygroundError("A query needs at least one image or text.")
    total = np.zeros_like(np.asarray(terms[0][1], dtype=np.float32))
    for sign, v in terms:
        total = total + float(sign) * np.asarray(v, dtype=np.float32)
    norm = float(np.linalg.norm(total))
    if norm < 1e-8:
        raise PlaygroundError("The query terms cancel out exactly; change a sign or add a term.")
    return total / norm


def search(gallery: np.ndarray, query: np.ndarray, k: int = 12, *, exclude: int | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The k gallery rows most cosine-similar to ``query`` (D,), best first, via core.similarity.nearest.
    ``exclude``: a gallery row to leave out (the query image itself). Returns (indices, similarities)."""
    from core.similarity import nearest

    k_eff = min(int(k) + (exclude is not None), len(gallery))
    idx, sims = nearest(gallery, np.asarray(query, dtype=np.float32)[None, :], k=k_eff, exclude_self=False)
    idx, sims = idx[0], sims[0]
    if exclude is not None:
        keep = idx != exclude
        idx, sims = idx[keep], sims[keep]
    return idx[:k], sims[:k]


def modality_gap(image_vectors: np.ndarray, text_vectors: np.ndarray) -> float:
    """Distance between the centroids of unit image and unit text embeddings (Liang et al. 2022,
    "Mind the Gap"). Shape: (N, D), (M, D) -> float."""
    a = np.asarray(image_vectors, dtype=np.float64)
    b = np.asarray(text_vectors, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))
