"""One training batch as the loss sees it: two augmented views embedded by a model, the NT-Xent softmax matrix
over the 2N views, and the loss it gives.

The Explorer draws this matrix next to a trained model's map. The probabilities are
:func:`core.similarity.contrastive_softmax` (rows: softmax over the other 2N - 1 views) and the loss is
:func:`core.losses.nt_xent`, the reference implementation the trainer uses, so the picture and the training
objective cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["NTXentMatrix", "ntxent_matrix", "two_view_embeddings"]


@dataclass(frozen=True)
class NTXentMatrix:
    """``probabilities``: (2N, 2N) float32, row a = softmax_b(cos(a, b) / t) over b != a (diagonal 0).
    ``positives``: the 2N (row, column) cells of the positives, (i, i + N) and (i + N, i).
    ``loss``: NT-Xent of the batch, the mean over rows of -log(probability of the positive)."""

    probabilities: np.ndarray
    positives: list[tuple[int, int]]
    loss: float
    temperature: float

    @property
    def n(self) -> int:
        """N, the number of images (pairs of views)."""
        return self.probabilities.shape[0] // 2


def ntxent_matrix(z1: Any, z2: Any, temperature: float) -> NTXentMatrix:
    """The NT-Xent (SimCLR, Chen et al. 2020) probabilities and loss of one batch of view pairs.

    Shape: z1, z2 (N, D) numpy or torch, row i of both = two views of image i -> (2N, 2N) probabilities.
    Raises ValueError for a non-positive temperature or mismatched shapes.

    >>> m = ntxent_matrix(np.ones((3, 4)), np.ones((3, 4)), 0.5)
    >>> round(m.loss, 4), m.positives[:2]  # identical views: log(2N - 1)
    (1.6094, [(0, 3), (1, 4)])
    """
    from core.losses import nt_xent
    from core.similarity import contrastive_softmax

    p = contrastive_softmax(z1, z2, float(temperature))  # validates the temperature and the shapes
    n = p.shape[0] // 2
    positives = [(i, i + n) for i in range(n)] + [(i + n, i) for i in range(n)]
    a = torch.as_tensor(np.asarray(z1, dtype=np.float32))
    b = torch.as_tensor(np.asarray(z2, dtype=np.float32))
    loss = float(nt_xent(a, b, float(temperature)))
    return NTXentMatrix(probabilities=p.astype(np.float32, copy=False), positives=positives, loss=loss,
                        temperature=float(temperature))


def two_view_embeddings(model: Any, images: torch.Tensor, augment_cfg: Any, *, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Two augmented views of every image (``core.augment.augment``, seeded), embedded by ``model`` in
    projection space (where the contrastive loss acts), unit length.

    Shape: images (N, C, H, W) uint8 or float in [0, 1] -> (N, P), (N, P) float32.
    """
    from core.augment import augment

    gen = torch.Generator().manual_seed(int(seed))
    v1, v2 = augment(images, augment_cfg, gen), augment(images, augment_cfg, gen)
    z1 = model.embed(v1, space="projection", normalize=True).float().cpu().numpy()
    z2 = model.embed(v2, space="projection", normalize=True).float().cpu().numpy()
    return z1, z2
