"""Retrieval on unit CLIP vectors (query arithmetic, top-k search), the modality gap between image and text, and
the joint 2-D map of images and class prompts."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


MAP_MAX_POINTS = 1000  # images (and prompts) drawn on the joint map: a seeded sample beyond this


@dataclass
class JointMap:
    """Images and class prompts projected together into 2-D.

    ``keep`` (n,): the image rows drawn (sorted; all of them up to :data:`MAP_MAX_POINTS`); ``image_xy`` (n, 2)
    and ``prompt_xy`` (m, 2) their coordinates; ``prompt_class`` (m,): the class of each prompt (templates
    repeat the classes, template-major); ``gap``: :func:`modality_gap` of all images against the prompts.
    """

    keep: np.ndarray
    image_xy: np.ndarray
    prompt_xy: np.ndarray
    prompt_class: np.ndarray
    gap: float


def joint_map(image_vectors: np.ndarray, per_template: np.ndarray, *, method: str = "pca", seed: int = 0,
              max_points: int = MAP_MAX_POINTS) -> JointMap:
    """Project unit image embeddings and every prompt's text embedding together (core.projection.project), so
    that the modality gap shows as two clouds. Shape: (N, D) images, (T, C, D) prompts (a
    :class:`~core.clip.zeroshot.ZeroShotWeights`' ``per_template``) -> :class:`JointMap`."""
    from core.projection import project

    feats = np.asarray(image_vectors, dtype=np.float32)
    per_template = np.asarray(per_template, dtype=np.float32)
    keep = np.sort(np.random.default_rng(seed).permutation(len(feats))[:max_points])
    prompts = per_template.reshape(-1, per_template.shape[-1])[:max_points]  # (T*C, D) one per prompt
    prompt_class = np.tile(np.arange(per_template.shape[1]), per_template.shape[0])[:max_points]
    coords = project(np.vstack([feats[keep], prompts]), method=method, dim=2, seed=seed)
    return JointMap(keep, coords[:len(keep)], coords[len(keep):], prompt_class, modality_gap(feats, prompts))
