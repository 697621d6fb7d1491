"""Metric-learning losses on distances: the triplet loss (FaceNet) with online mining, and the pairwise margin
contrastive loss (Hadsell et al. 2006)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import PlaygroundError
from core.settings_schema import MINING
from core.losses.validation import (LabelsLike, check_embeddings, check_labels, check_margin, check_pair,
                                    check_same_device)

MINING_MODES = MINING  # triplet selection rules (declared in core.settings_schema), see triplet_loss
DISTANCES = ("euclidean", "squared_euclidean")  # triplet distances, on L2-normalised embeddings


# ---------------------------------------------------------------------------------------------
# Triplet (FaceNet) with online mining
# ---------------------------------------------------------------------------------------------


# The norm ||x|| has gradient 0 at x = 0 in autograd, so two embeddings sitting exactly on each other (a fully
# collapsed negative pair) would never be pushed apart. Where a distance is exactly 0 its gradient is taken from
# ||x + eps|| instead, as torch.nn.functional.pairwise_distance (and so nn.TripletMarginLoss) shifts every
# difference; the value stays exact, so ties and zero distances keep their documented meaning.
_DISTANCE_EPS = 1e-6


def _push_at_zero(exact: torch.Tensor, shifted: torch.Tensor) -> torch.Tensor:
    """``exact`` in value; its gradient where ``exact == 0`` comes from ``shifted`` (the eps-shifted norm)."""
    return torch.where(exact > 0, exact, shifted - shifted.detach())


def _pairwise_distance(z: torch.Tensor, distance: str) -> torch.Tensor:
    """(N, N) Euclidean distances between rows of unit vectors ``z`` (squared if ``distance`` says so).

    Computed from differences rather than the Gram matrix: exact zeros on the diagonal and between duplicates.
    A pair at distance exactly 0 still gets the gradient that pushes it apart (see :func:`_push_at_zero`).
    """
    exact = torch.cdist(z, z, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    shifted = torch.cdist(z + _DISTANCE_EPS, z, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    d = _push_at_zero(exact, shifted)
    return d if distance == "euclidean" else d.square()


def triplet_loss(
    embeddings: torch.Tensor,
    labels: LabelsLike,
    margin: float = 0.2,
    mining: str = "all",
    distance: str = "euclidean",
) -> torch.Tensor:
    """Triplet loss with online mining in the batch (Schroff, Kalenichenko & Philbin 2015, FaceNet).

    Embeddings are L2-normalised inside; ``distance`` is ``"euclidean"`` (range [0, 2], as in Hermans
    et al. 2017) or ``"squared_euclidean"`` (range [0, 4], as in FaceNet). A valid triplet (a, p, n)
    has ``a != p``, ``labels[a] == labels[p]`` and ``labels[n] != labels[a]``; its loss is
    ``max(0, d(a, p) - d(a, n) + margin)``. The ``mining`` rule picks which triplets count:

    - ``"all"`` (batch-all, Hermans et al. 2017): every valid triplet; the mean is taken over the
      *active* triplets, those with a loss > 0, so easy triplets do not dilute the signal.
    - ``"hard"`` (batch-hard, Hermans et al. 2017): for each anchor with at least one positive and one
      negative, its farthest positive and its nearest negative; mean over those anchors.
    - ``"semihard"`` (FaceNet section 3.2, the rule of TensorFlow Addons' ``triplet_semihard_loss``):
      for each (anchor, positive) pair whose anchor has a negative, the nearest negative that is
      strictly farther than the positive, ``d(a, n) > d(a, p)``. If the pair has no such negative,
      it falls back to the farthest negative of the anchor (the least-hard of the hard negatives;
      FaceNet warns that the hardest negatives can collapse the model early in training). Mean over
      those pairs, zero-loss pairs included.

    Mining runs without autograd (sorting and binary searches, O(N^2 log N) time and O(N^2) memory in
    every mode); gradients flow through the chosen distances only.
    With no valid triplet (one class, or no class with two samples) the loss is a connected zero.

    Shape:
        embeddings: (N, D). labels: (N,) integers. Returns a scalar.

    >>> z = torch.tensor([[1., 0.], [1., 0.], [0., 1.], [0., 1.]])
    >>> triplet_loss(z, [0, 0, 1, 1], margin=0.2, mining="hard").item()  # classes sqrt(2) apart
    0.0
    """
    check_embeddings(embeddings, "embeddings")
    n = embeddings.shape[0]
    y = check_labels(labels, n, embeddings.device)
    m = check_margin(margin)
    if mining not in MINING_MODES:
        raise PlaygroundError(f"Unknown mining mode {mining!r}; use one of {', '.join(map(repr, MINING_MODES))}.")
    if distance not in DISTANCES:
        raise PlaygroundError(f"Unknown distance {distance!r}; use one of {', '.join(map(repr, DISTANCES))}.")

    d = _pairwise_distance(F.normalize(embeddings, dim=1), distance)  # (N, N)
    same = y[:, None] == y[None, :]  # (N, N)
    eye = torch.eye(n, dtype=torch.bool, device=d.device)
    pos = same & ~eye  # (N, N) anchor-positive pairs, a != p
    neg = ~same  # (N, N) anchor-negative pairs

    if mining == "all":
        # Over the active set A (valid triplets with loss > 0) the hinge is linear, so
        #   sum_A (d_ap - d_an + m) = sum_{a,p} d_ap * #A(a,p,.) - sum_{a,n} d_an * #A(a,.,n) + m * |A|,
        # exact in value and gradient. The counts need no gradient, and a triplet is active exactly
        # when d_an < d_ap + m, so they come from binary searches in each anchor's sorted distances
        # instead of the (N, N, N) cube of triplets.
        with torch.no_grad():
            inf = float("inf")
            sorted_neg = d.masked_fill(~neg, inf).sort(dim=1).values  # (N, N) negatives first, ascending
            sorted_pos = d.masked_fill(~pos, inf).sort(dim=1).values  # (N, N) positives first, ascending
            # [a, p]: negatives with d_an < d_ap + m
            per_pos = torch.searchsorted(sorted_neg, d + m, right=False).to(d.dtype) * pos
            # [a, n]: positives with d_ap > d_an - m, i.e. all positives minus those with d_ap <= d_an - m
            at_most = torch.searchsorted(sorted_pos, d - m, right=True)
            per_neg = (pos.sum(dim=1, keepdim=True) - at_most).to(d.dtype) * neg
            count = per_pos.sum()
        total = (d * per_pos).sum() - (d * per_neg).sum() + m * count
        return total / count.clamp_min(1)

    if mining == "hard":
        has_both = pos.any(dim=1) & neg.any(dim=1)  # (N,) anchors that can form a triplet
        with torch.no_grad():  # the choice of triplet carries no gradient; the distances do
            hardest_pos = d.masked_fill(~pos, -1.0).argmax(dim=1)  # (N,) farthest positive
            hardest_neg = d.masked_fill(~neg, float("inf")).argmin(dim=1)  # (N,) nearest negative
        rows = torch.arange(n, device=d.device)
        losses = (d[rows, hardest_pos] - d[rows, hardest_neg] + m).clamp_min(0)  # (N,)
        return (losses * has_both).sum() / has_both.sum().clamp_min(1)

    # semihard: one negative per (anchor, positive) pair.
    pair_ok = pos & neg.any(dim=1, keepdim=True)  # (N, N) [a, p] pairs whose anchor has a negative
    with torch.no_grad():
        # Sort each anchor's negatives by distance (non-negatives last, as +inf); the nearest negative
        # strictly farther than d(a, p) is then the first sorted entry > d(a, p): a binary search.
        sorted_neg, order = d.masked_fill(~neg, float("inf")).sort(dim=1)  # (N, N) per anchor
        slot = torch.searchsorted(sorted_neg, d, right=True)  # (N, N) [a, p]: first slot with d(a, n) > d(a, p)
        has_farther = slot < neg.sum(dim=1, keepdim=True)  # (N, N) the slot holds a real negative
        nearest_farther = order.gather(1, slot.clamp(max=n - 1))  # (N, N) index of that negative
        farthest_neg = d.masked_fill(~neg, -1.0).argmax(dim=1)  # (N,) fallback per anchor
        chosen = torch.where(has_farther, nearest_farther, farthest_neg[:, None])  # (N, N) index of n
    d_an = d.gather(1, chosen)  # (N, N) d(a, chosen n) for each [a, p]
    losses = (d - d_an + m).clamp_min(0)  # (N, N) indexed [a, p]
    return (losses * pair_ok).sum() / pair_ok.sum().clamp_min(1)


class TripletLoss(nn.Module):
    """Module form of :func:`triplet_loss` (FaceNet, Schroff et al. 2015; mining per Hermans et al. 2017).

    Shape: forward(embeddings (N, D), labels (N,)) -> scalar.
    """

    def __init__(self, margin: float = 0.2, mining: str = "all", distance: str = "euclidean") -> None:
        super().__init__()
        self.margin = check_margin(margin)
        if mining not in MINING_MODES:
            raise PlaygroundError(f"Unknown mining mode {mining!r}; use one of {', '.join(map(repr, MINING_MODES))}.")
        if distance not in DISTANCES:
            raise PlaygroundError(f"Unknown distance {distance!r}; use one of {', '.join(map(repr, DISTANCES))}.")
        self.mining = mining
        self.distance = distance

    def forward(self, embeddings: torch.Tensor, labels: LabelsLike) -> torch.Tensor:
        return triplet_loss(embeddings, labels, self.margin, mining=self.mining, distance=self.distance)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, distance={self.distance!r}"


# ---------------------------------------------------------------------------------------------
# Margin (pairwise) contrastive loss
# ---------------------------------------------------------------------------------------------


def margin_contrastive(
    z1: torch.Tensor, z2: torch.Tensor, same: torch.Tensor | np.ndarray | Sequence[bool], margin: float = 1.0
) -> torch.Tensor:
    """Pairwise contrastive loss (Chopra, Hadsell & LeCun 2005; Hadsell, Chopra & LeCun 2006).

    With ``d`` the Euclidean distance between the L2-normalised ``z1[i]`` and ``z2[i]`` (so d lies in
    [0, 2] and margins up to 2 are meaningful), each pair costs, with the paper's factor 1/2,

        same pair:       1/2 * d^2
        different pair:  1/2 * max(0, margin - d)^2

    and the loss is the mean over the N pairs. (Hadsell et al. write Y = 0 for similar pairs; here
    ``same`` is True for similar pairs.)

    Shape:
        z1, z2: (N, D). same: (N,) bool, or 0/1 integers. Returns a scalar.

    >>> z1 = torch.tensor([[1., 0.], [1., 0.]]); z2 = torch.tensor([[1., 0.], [-1., 0.]])
    >>> margin_contrastive(z1, z2, torch.tensor([True, False]), margin=1.0).item()  # d = 0 and d = 2
    0.0
    """
    z1, z2 = check_pair(z1, z2, "z1", "z2")
    m = check_margin(margin)
    n = z1.shape[0]
    if isinstance(same, torch.Tensor):
        check_same_device({"z1": z1, "same": same})
        s = same
    else:
        try:
            s = torch.as_tensor(np.asarray(same), device=z1.device)
        except (TypeError, ValueError):
            raise PlaygroundError(f"same must be a 1-D sequence of booleans, got {type(same).__name__}.") from None
    if s.dim() != 1 or s.shape[0] != n:
        raise PlaygroundError(f"same must have shape ({n},), one flag per pair, got {tuple(s.shape)}.")
    if s.dtype != torch.bool:
        if s.is_floating_point() or s.is_complex() or not bool(((s == 0) | (s == 1)).all()):
            raise PlaygroundError("same must be booleans (True for a similar pair) or integers 0/1.")
        s = s.bool()
    u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    # Exact distance; at d = 0 the gradient of ||u1 - u2 + eps|| still pushes a different pair apart.
    d = _push_at_zero(torch.linalg.vector_norm(u1 - u2, dim=1),
                      F.pairwise_distance(u1, u2, eps=_DISTANCE_EPS))  # (N,)
    per_pair = torch.where(s, d.square(), (m - d).clamp_min(0).square())  # (N,)
    return 0.5 * per_pair.mean()


class MarginContrastiveLoss(nn.Module):
    """Module form of :func:`margin_contrastive` (Hadsell, Chopra & LeCun 2006).

    Shape: forward(z1 (N, D), z2 (N, D), same (N,) bool) -> scalar.
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = check_margin(margin)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        return margin_contrastive(z1, z2, same, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


