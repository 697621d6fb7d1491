"""What a model has learned to ignore: for each augmentation op alone, how close the model keeps an image's
views to the image itself.

Contrastive training pulls two views of an image together, so a model becomes invariant to the ops it was
trained with (Chen et al. 2020, section 3; Tian et al. 2020, "What makes for good views"). Per op, the image is
augmented ``n_views`` times with only that op switched on (``core.augment.preview``, seeded, so each op's draws
are the same crops, flips and factors the full recipe would use) and the score is the mean cosine similarity of
the views' embeddings to the original's. The baseline is the mean cosine of the original to other images: a
score near it means the op makes the image look like a different one.

``embed`` is any function from a float batch (N, C, H, W) in [0, 1] to vectors (N, D) (numpy or torch); rows are
normalised here, so it may or may not return unit vectors.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from core.augment import AugmentConfig, preview

__all__ = ["OPS", "Invariance", "single_op", "similarity_to", "invariance_per_op"]

# The switchable ops of AugmentConfig, in the order core.augment applies them.
OPS: tuple[str, ...] = ("crop", "flip", "rotation", "color_jitter", "grayscale", "blur", "solarize")

Embed = Callable[[torch.Tensor], Any]


@dataclass(frozen=True)
class Invariance:
    """Per op (``ops``, in :data:`OPS` order): ``means[i]`` = mean cosine of the views made by op i alone to the
    original; ``active[i]`` = whether op i is in the recipe; ``baseline`` = mean cosine of the original to other
    images (None without references)."""

    ops: tuple[str, ...]
    means: tuple[float, ...]
    active: tuple[bool, ...]
    baseline: float | None


def single_op(cfg: AugmentConfig, op: str) -> AugmentConfig:
    """``cfg`` with every op off except ``op`` (switched on with ``cfg``'s strengths).

    >>> single_op(AugmentConfig(), "flip").describe()
    ['horizontal flip half of the time']
    """
    if op not in OPS:
        raise ValueError(f"Unknown augmentation op {op!r}; use one of {', '.join(OPS)}.")
    return dataclasses.replace(cfg, **{o: o == op for o in OPS})


def _unit(embed: Embed, batch: torch.Tensor) -> np.ndarray:
    z = embed(batch)
    z = z.detach().float().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z, dtype=np.float32)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.maximum(norms, 1e-12)


def _float_batch(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.float().div(255.0)
    return images.float()


def similarity_to(embed: Embed, image: torch.Tensor, batch: torch.Tensor) -> np.ndarray:
    """Cosine similarity of each image of ``batch`` to ``image`` under ``embed``.

    Shape: image (C, H, W), batch (N, C, H, W), uint8 or float in [0, 1] -> (N,) float32.
    """
    if len(batch) == 0:
        return np.zeros(0, np.float32)
    z = _unit(embed, torch.cat([_float_batch(image[None]), _float_batch(batch)]))
    return (z[1:] @ z[0]).astype(np.float32)


def invariance_per_op(embed: Embed, image: torch.Tensor, cfg: AugmentConfig, *, n_views: int = 8,
                      seed: int = 0, references: torch.Tensor | None = None) -> Invariance:
    """For each op of :data:`OPS`: the mean cosine of ``n_views`` views made by that op alone to ``image``.

    Shape: image (C, H, W) uint8 or float in [0, 1]; references (R, C, H, W) other images, or None.
    """
    if not isinstance(cfg, AugmentConfig):
        raise ValueError(f"cfg must be an AugmentConfig; got {type(cfg).__name__}.")
    original = _float_batch(image[None])[0]
    means = []
    for op in OPS:
        views = preview(original, single_op(cfg, op), n=n_views, seed=seed)  # (n_views, C, H, W) float
        means.append(float(similarity_to(embed, original, views).mean()))
    baseline = None
    if references is not None and len(references):
        baseline = float(similarity_to(embed, original, references).mean())
    return Invariance(ops=OPS, means=tuple(means), active=tuple(bool(getattr(cfg, op)) for op in OPS),
                      baseline=baseline)
