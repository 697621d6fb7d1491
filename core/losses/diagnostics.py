"""Read-outs of a batch, not losses: the cosine similarities of positive and negative pairs, for histograms."""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from core.losses.validation import check_pair


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def positive_negative_similarities(z1: torch.Tensor, z2: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of positive and negative pairs between two views, for histograms.

    Positives are ``cos(z1[i], z2[i])``; negatives are every cross-view pair ``cos(z1[i], z2[j])`` with
    ``i != j`` (both orders, so M = N * (N - 1)). Within-view pairs are not included.

    Shape:
        z1, z2: (N, D). Returns float32 NumPy arrays pos (N,) and neg (N * (N - 1),).

    >>> pos, neg = positive_negative_similarities(torch.eye(3), torch.eye(3))
    >>> pos.tolist(), neg.shape
    ([1.0, 1.0, 1.0], (6,))
    """
    z1, z2 = check_pair(z1, z2, "z1", "z2")
    sims = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T  # (N, N) view 1 row i against view 2 row j
    off_diagonal = ~torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
    pos = sims.diagonal()
    neg = sims[off_diagonal]  # row-major order
    return pos.float().cpu().numpy(), neg.float().cpu().numpy()
