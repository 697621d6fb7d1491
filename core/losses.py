"""Contrastive losses: plain functions do the maths, ``nn.Module`` wrappers hold the settings.

Each loss exists twice, in the open_clip style: a function (``nt_xent``, ``info_nce``, ...) that takes
tensors and settings, and a module (``NTXentLoss``, ``InfoNCELoss``, ...) that stores the settings in
``__init__`` and calls the function in ``forward``. Tests and the trainer call the same code.

Conventions shared by every loss here:

- Embeddings are L2-normalised inside the loss (a zero vector stays zero), so callers may pass raw
  projector outputs. Cosine similarity is then a dot product and Euclidean distances lie in [0, 2].
  The one exception is :func:`vicreg`, whose variance term needs the raw scale (unit vectors in D
  dimensions cannot reach a standard deviation of 1 per dimension).
- Every tensor op runs on the device of the inputs; inputs on different devices are refused.
- Inputs of different floating dtypes are promoted to a common dtype.
- Illegal arguments raise :class:`core.errors.PlaygroundError` (a ``ValueError``) whose message says
  what was wrong and what is allowed.
- A loss with nothing to learn from (a triplet batch of one class, SupCon with no positive pair)
  returns a zero that is still connected to the inputs, so ``loss.backward()`` works and gives zero
  gradients instead of NaN.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.device import pick_device
from core.errors import PlaygroundError

__all__ = [
    "DISTANCES",
    "MINING_MODES",
    "ClipLoss",
    "FeatureQueue",
    "InfoNCELoss",
    "MarginContrastiveLoss",
    "NTXentLoss",
    "SupConLoss",
    "TripletLoss",
    "VICRegLoss",
    "clip_loss",
    "info_nce",
    "margin_contrastive",
    "nt_xent",
    "positive_negative_similarities",
    "supcon",
    "triplet_loss",
    "vicreg",
    "vicreg_terms",
]

MINING_MODES = ("all", "hard", "semihard")  # triplet selection rules, see triplet_loss
DISTANCES = ("euclidean", "squared_euclidean")  # triplet distances, on L2-normalised embeddings

Number = float | int
Scalar = Number | torch.Tensor
LabelsLike = torch.Tensor | np.ndarray | Sequence[int]


# ---------------------------------------------------------------------------------------------
# Validation helpers. Each raises PlaygroundError with a sentence a user can act on.
# ---------------------------------------------------------------------------------------------


def _positive_scalar(value: Scalar, name: str, hint: str) -> Scalar:
    """Check that ``value`` is a finite number > 0; return a float, or the tensor itself (keeps grad)."""
    if isinstance(value, bool):
        raise PlaygroundError(f"{name} must be a number greater than 0, not a boolean; {hint}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise PlaygroundError(
                f"{name} must be a single floating-point number, got a tensor of shape {tuple(value.shape)} "
                f"and dtype {value.dtype}; {hint}"
            )
        number = float(value.detach())
        tensor: torch.Tensor | None = value.reshape(())
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PlaygroundError(f"{name} must be a number greater than 0, got {value!r}; {hint}") from None
        tensor = None
    if not math.isfinite(number) or number <= 0:
        raise PlaygroundError(f"{name} must be a finite number greater than 0, got {number}; {hint}")
    return tensor if tensor is not None else number


def _temperature(value: Scalar) -> Scalar:
    return _positive_scalar(value, "temperature", "typical values lie between 0.05 and 1.0.")


def _margin(value: Number) -> float:
    if isinstance(value, bool) or isinstance(value, torch.Tensor):
        raise PlaygroundError(f"margin must be a plain number of at least 0, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlaygroundError(f"margin must be a number of at least 0, got {value!r}.") from None
    if not math.isfinite(number) or number < 0:
        raise PlaygroundError(
            f"margin must be a finite number of at least 0, got {number}; on L2-normalised embeddings "
            "distances lie in [0, 2], so margins between 0.1 and 2 are the useful range."
        )
    return number


def _embeddings(x: torch.Tensor, name: str, ndims: tuple[int, ...] = (2,)) -> torch.Tensor:
    """Check a floating tensor with a non-empty batch and feature axis."""
    if not isinstance(x, torch.Tensor):
        raise PlaygroundError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() not in ndims:
        shapes = " or ".join({2: "(N, D)", 3: "(N, V, D)"}[n] for n in ndims)
        raise PlaygroundError(f"{name} must have shape {shapes}, got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise PlaygroundError(f"{name} must hold floating-point embeddings, got dtype {x.dtype}.")
    if x.shape[0] == 0:
        raise PlaygroundError(f"{name} is an empty batch (N = 0); a loss needs at least one sample.")
    if x.shape[-1] == 0:
        raise PlaygroundError(f"{name} has no feature dimensions (D = 0); embeddings need D >= 1.")
    return x


def _same_device(tensors: dict[str, torch.Tensor]) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise PlaygroundError(f"All inputs must be on the same device, got {listed}; move them with .to(device).")


def _pair(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two (N, D) batches of matching shape and device; promote to a common dtype."""
    _embeddings(a, name_a)
    _embeddings(b, name_b)
    if a.shape != b.shape:
        raise PlaygroundError(
            f"{name_a} and {name_b} must have the same shape (N, D), got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    _same_device({name_a: a, name_b: b})
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def _labels(labels: LabelsLike, n: int, device: torch.device, name: str = "labels") -> torch.Tensor:
    """Integer labels of length ``n`` on ``device``. Tensors must already be there; arrays are moved."""
    if isinstance(labels, torch.Tensor):
        if labels.device != device:
            raise PlaygroundError(
                f"{name} are on {labels.device} but the embeddings are on {device}; move them with .to(device)."
            )
        t = labels
    else:
        try:
            t = torch.as_tensor(np.asarray(labels), device=device)
        except (TypeError, ValueError):
            raise PlaygroundError(f"{name} must be a 1-D sequence of integers, got {type(labels).__name__}.") from None
    if t.dim() != 1:
        raise PlaygroundError(f"{name} must be 1-D with one entry per sample, got shape {tuple(t.shape)}.")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise PlaygroundError(f"{name} must be integers (class indices), got dtype {t.dtype}.")
    if t.shape[0] != n:
        raise PlaygroundError(f"{name} must have one entry per sample: expected {n}, got {t.shape[0]}.")
    return t


# ---------------------------------------------------------------------------------------------
# SimCLR
# ---------------------------------------------------------------------------------------------


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: Scalar = 0.5) -> torch.Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

    ``z1[i]`` and ``z2[i]`` are two views of sample ``i``. The 2N embeddings are L2-normalised and
    stacked; each of the 2N is an anchor whose positive is the other view of the same sample
    (index ``i <-> i + N``) and whose denominator holds every other embedding except itself:

        l(i) = -log( exp(s(i, pos(i)) / t) / sum_{k != i} exp(s(i, k) / t) ),   loss = mean_i l(i)

    With every embedding identical all logits are equal, so the loss is log(2N - 1), exact up to rounding.

    Shape:
        z1, z2: (N, D), same shape and device. Returns a scalar.

    Args:
        temperature: t > 0; SimCLR used 0.5 for CIFAR-10 and 0.1 for ImageNet.

    >>> z = torch.ones(4, 8)
    >>> round(nt_xent(z, z).item(), 4)  # log(2 * 4 - 1)
    1.9459
    """
    z1, z2 = _pair(z1, z2, "z1", "z2")
    t = _temperature(temperature)
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D) unit vectors
    logits = z @ z.T / t  # (2N, 2N) cosine similarity / t
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is never its own negative
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])  # (2N,) the positive of row i sits at column i + N and vice versa
    return F.cross_entropy(logits, targets)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent` (SimCLR, Chen et al. 2020).

    Shape: forward(z1 (N, D), z2 (N, D)) -> scalar.

    >>> loss = NTXentLoss(temperature=0.5)
    >>> round(loss(torch.ones(2, 3), torch.ones(2, 3)).item(), 4)  # log(2 * 2 - 1)
    1.0986
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = float(_temperature(temperature))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent(z1, z2, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


# ---------------------------------------------------------------------------------------------
# MoCo
# ---------------------------------------------------------------------------------------------


class FeatureQueue:
    """First-in-first-out queue of negative keys for MoCo (He et al. 2020), a fixed-size ring buffer.

    ``enqueue`` stores detached copies; when full, the oldest keys are overwritten. A batch larger than
    the queue keeps only its last ``size`` keys. ``tensor`` returns a copy of the filled part, oldest
    key first, so the queue may be updated (as MoCo does) before ``backward`` of a loss that used it.

    Shape:
        enqueue(keys (B, dim)); tensor -> (K, dim) with K = len(queue) <= size.

    >>> q = FeatureQueue(dim=2, size=3, device="cpu")
    >>> q.enqueue(torch.tensor([[1., 1.], [2., 2.]])); q.enqueue(torch.tensor([[3., 3.], [4., 4.]]))
    >>> q.tensor[:, 0].tolist(), len(q)
    ([2.0, 3.0, 4.0], 3)
    """

    def __init__(
        self,
        dim: int,
        size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        for name, value in (("dim", dim), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise PlaygroundError(f"FeatureQueue {name} must be a whole number of at least 1, got {value!r}.")
        if not dtype.is_floating_point:
            raise PlaygroundError(f"FeatureQueue dtype must be a floating-point dtype, got {dtype}.")
        self.dim = int(dim)
        self.size = int(size)
        self.device = torch.device(device) if device is not None else pick_device()
        self._buffer = torch.zeros(self.size, self.dim, dtype=dtype, device=self.device)  # (size, dim) ring
        self._next = 0  # row the next key is written to (the oldest key once the queue is full)
        self._count = 0  # rows filled so far, <= size

    def __len__(self) -> int:
        return self._count

    @property
    def is_full(self) -> bool:
        return self._count == self.size

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Append ``keys`` (B, dim), detached, overwriting the oldest entries when the queue is full."""
        if not isinstance(keys, torch.Tensor) or keys.dim() != 2 or keys.shape[1] != self.dim:
            shape = tuple(keys.shape) if isinstance(keys, torch.Tensor) else type(keys).__name__
            raise PlaygroundError(f"keys must have shape (B, {self.dim}) to fit this queue, got {shape}.")
        if not keys.is_floating_point():
            raise PlaygroundError(f"keys must be floating-point embeddings, got dtype {keys.dtype}.")
        _same_device({"keys": keys, "queue": self._buffer})
        keys = keys.detach()[-self.size :]  # a batch larger than the queue: only its newest keys survive
        b = keys.shape[0]
        first = min(b, self.size - self._next)  # rows that fit before the end of the buffer
        self._buffer[self._next : self._next + first] = keys[:first]
        self._buffer[: b - first] = keys[first:]  # wrap-around part (empty when it fits)
        self._next = (self._next + b) % self.size
        self._count = min(self._count + b, self.size)

    @property
    def tensor(self) -> torch.Tensor:
        """A copy of the stored keys, oldest first. Shape: (K, dim), K = len(self)."""
        if self._count < self.size:
            return self._buffer[: self._count].clone()
        return torch.cat([self._buffer[self._next :], self._buffer[: self._next]])  # unroll the ring

    def reset(self) -> None:
        """Forget every key (the memory is kept and overwritten later)."""
        self._next = 0
        self._count = 0

    def __repr__(self) -> str:
        return f"FeatureQueue(dim={self.dim}, size={self.size}, filled={self._count}, device={self.device})"


def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor | FeatureQueue | None = None,
    temperature: Scalar = 0.07,
    *,
    batch_negatives: bool = False,
) -> torch.Tensor:
    """InfoNCE in the MoCo form (He et al. 2020; van den Oord et al. 2018).

    For each query ``q_i`` the positive logit is ``q_i . k_i`` and the negatives are ``q_i . n_j`` for
    every key ``n_j`` in the queue. The logits ``[pos, neg_1 .. neg_K] / t`` go through cross-entropy
    with the positive at index 0; the loss is the mean over the batch. Query, key and queue are all
    L2-normalised inside. An empty queue (K = 0) leaves only the positive, giving a loss of 0, unless
    ``batch_negatives`` is set: then the other keys of the batch, ``k_j`` for ``j != i``, are negatives too
    (the in-batch form MoCo v3 uses, Chen, Xie & He 2021), so a run with no queue still has N - 1 negatives.

    Gradients flow to whatever requires them; in MoCo the key comes from the momentum encoder under
    ``torch.no_grad()`` and the queue is detached, so only the query is trained.

    Shape:
        query, key: (N, D). queue: (K, D) with K >= 0, a :class:`FeatureQueue`, or None (K = 0).
        Returns a scalar.

    >>> q = torch.tensor([[1., 0.]]); k = torch.tensor([[1., 0.]])
    >>> round(info_nce(q, k, torch.tensor([[0., 1.]]), temperature=1.0).item(), 4)  # log(1 + e^-1)
    0.3133
    """
    query, key = _pair(query, key, "query", "key")
    t = _temperature(temperature)
    if queue is None:
        queue = query.new_zeros(0, query.shape[1])
    elif isinstance(queue, FeatureQueue):
        queue = queue.tensor
    if not isinstance(queue, torch.Tensor) or queue.dim() != 2 or queue.shape[1] != query.shape[1]:
        shape = tuple(queue.shape) if isinstance(queue, torch.Tensor) else type(queue).__name__
        raise PlaygroundError(
            f"queue must have shape (K, {query.shape[1]}) to match the query's feature size, got {shape}."
        )
    if not queue.is_floating_point():
        raise PlaygroundError(f"queue must hold floating-point keys, got dtype {queue.dtype}.")
    _same_device({"query": query, "key": key, "queue": queue})
    q = F.normalize(query, dim=1)  # (N, D)
    k = F.normalize(key, dim=1)  # (N, D)
    negatives = F.normalize(queue.to(q.dtype), dim=1)  # (K, D)
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    l_neg = q @ negatives.T  # (N, K)
    parts = [l_pos, l_neg]
    if batch_negatives:
        eye = torch.eye(q.shape[0], dtype=torch.bool, device=q.device)
        parts.append((q @ k.T).masked_fill(eye, float("-inf")))  # (N, N); its own key is the positive, not here
    logits = torch.cat(parts, dim=1) / t  # (N, 1 + K [+ N]); the positive sits at column 0
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, targets)


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce` (MoCo, He et al. 2020). The queue is passed in, not owned.

    Shape: forward(query (N, D), key (N, D), queue (K, D) | FeatureQueue | None) -> scalar.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = float(_temperature(temperature))

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor | FeatureQueue | None = None
    ) -> torch.Tensor:
        return info_nce(query, key, queue, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


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
    _embeddings(embeddings, "embeddings")
    n = embeddings.shape[0]
    y = _labels(labels, n, embeddings.device)
    m = _margin(margin)
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
        self.margin = _margin(margin)
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
    z1, z2 = _pair(z1, z2, "z1", "z2")
    m = _margin(margin)
    n = z1.shape[0]
    if isinstance(same, torch.Tensor):
        _same_device({"z1": z1, "same": same})
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
        self.margin = _margin(margin)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        return margin_contrastive(z1, z2, same, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


# ---------------------------------------------------------------------------------------------
# Supervised contrastive (SupCon)
# ---------------------------------------------------------------------------------------------


def supcon(z: torch.Tensor, labels: LabelsLike | None = None, temperature: Scalar = 0.1) -> torch.Tensor:
    """Supervised contrastive loss L^sup_out (Khosla et al. 2020, eq. 2).

    Views are flattened into M = N * V anchors (labels repeated per view) and L2-normalised. For
    anchor i, A(i) is every other anchor and P(i) the others with the same label:

        l(i) = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i . z_p / t) / sum_{a in A(i)} exp(z_i . z_a / t) )

    The loss is the mean of l(i) over anchors with at least one positive; anchors with none are left
    out, and with no positive anywhere the loss is a connected zero. Unlike the authors' code there is
    no extra ``t / base_temperature`` factor. ``labels=None`` gives every sample its own class, which
    reduces to SimCLR's NT-Xent for V = 2.

    Shape:
        z: (N, D) or (N, V, D). labels: (N,) integers, or None. Returns a scalar.

    >>> z = torch.tensor([[1., 0.], [1., 0.], [0., 1.], [0., 1.]])
    >>> round(supcon(z, [0, 0, 1, 1], temperature=1.0).item(), 4)  # -log(e / (e + 2))
    0.5514
    """
    _embeddings(z, "z", ndims=(2, 3))
    n = z.shape[0]
    views = z.shape[1] if z.dim() == 3 else 1
    if labels is None:
        y = torch.arange(n, device=z.device)
    else:
        y = _labels(labels, n, z.device)
    t = _temperature(temperature)
    feats = F.normalize(z.reshape(n * views, z.shape[-1]), dim=1)  # (M, D), sample-major: row = i * V + v
    y = y.repeat_interleave(views)  # (M,)
    m = feats.shape[0]
    logits = feats @ feats.T / t  # (M, M)
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # A(i) excludes i
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (M, M); -inf on the diagonal
    pos = (y[:, None] == y[None, :]) & ~self_mask  # (M, M) P(i)
    n_pos = pos.sum(dim=1)  # (M,)
    pos_log_prob = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1)  # (M,)
    has_pos = n_pos > 0
    per_anchor = -pos_log_prob / n_pos.clamp_min(1)  # (M,)
    return (per_anchor * has_pos).sum() / has_pos.sum().clamp_min(1)


class SupConLoss(nn.Module):
    """Module form of :func:`supcon` (Khosla et al. 2020, L^sup_out).

    Shape: forward(z (N, D) or (N, V, D), labels (N,) or None) -> scalar.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = float(_temperature(temperature))

    def forward(self, z: torch.Tensor, labels: LabelsLike | None = None) -> torch.Tensor:
        return supcon(z, labels, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


# ---------------------------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------------------------


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: Scalar,
              text_ids: LabelsLike | None = None) -> torch.Tensor:
    """Symmetric image-text cross-entropy of CLIP (Radford et al. 2021).

    Both sides are L2-normalised; ``logits = logit_scale * img @ txt.T`` and row i's match is column i.
    The loss is ``(CE(logits) + CE(logits.T)) / 2``. ``logit_scale`` is the multiplier itself (1 / t,
    CLIP starts at 1 / 0.07), a float or a one-element tensor that may require grad; capping it (CLIP
    uses 100) is the caller's job. All-identical features give log N, exact up to rounding.

    ``text_ids`` (N,) marks rows whose captions are the same text (equal ids). Those pairs are removed
    from each other's denominators (in both directions), so an image is never pushed away from a caption
    identical to its own (without ``text_ids``, duplicates are negatives and the loss cannot reach 0).
    Row i's target stays column i. Without ``text_ids`` every other row is a negative (plain CLIP).

    Shape:
        image_features, text_features: (N, D); text_ids: (N,). Returns a scalar.

    >>> f = torch.eye(3)
    >>> clip_loss(f, f, logit_scale=100.0).item() < 1e-6  # matched, orthogonal rows
    True
    """
    image_features, text_features = _pair(image_features, text_features, "image_features", "text_features")
    if isinstance(logit_scale, torch.Tensor):
        _same_device({"image_features": image_features, "logit_scale": logit_scale})
    scale = _positive_scalar(logit_scale, "logit_scale", "it is the multiplier 1/temperature, e.g. 1/0.07.")
    img = F.normalize(image_features, dim=1)  # (N, D)
    txt = F.normalize(text_features, dim=1)  # (N, D)
    logits = scale * img @ txt.T  # (N, N) image i against text j
    targets = torch.arange(img.shape[0], device=img.device)
    if text_ids is not None:
        ids = _labels(text_ids, img.shape[0], img.device, "text_ids")
        same = (ids[:, None] == ids[None, :]) & ~torch.eye(len(ids), dtype=torch.bool, device=img.device)
        logits = logits.masked_fill(same, float("-inf"))  # symmetric mask: serves logits.T as well
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class ClipLoss(nn.Module):
    """Module form of :func:`clip_loss` (Radford et al. 2021) that can own a learnable logit scale.

    The scale is stored as its log (``log_logit_scale``, initialised to log(1 / 0.07) as in CLIP) and
    used as ``min(exp(log_logit_scale), clamp_max)``. Above the cap the gradient is zero, so call
    :meth:`clamp_` after each optimiser step (as open_clip's training loop does) to keep the parameter
    itself at or below log(clamp_max). With ``learnable=False`` it is a fixed buffer. Passing
    ``logit_scale`` to ``forward`` (e.g. a model's own) overrides the stored one.

    Shape: forward(image_features (N, D), text_features (N, D), logit_scale=None) -> scalar.
    """

    def __init__(self, init_scale: float = 1 / 0.07, clamp_max: float = 100.0, learnable: bool = True) -> None:
        super().__init__()
        hint = "it is the multiplier 1/temperature, e.g. 1/0.07."
        init_scale = float(_positive_scalar(init_scale, "init_scale", hint))
        self.clamp_max = float(_positive_scalar(clamp_max, "clamp_max", "CLIP caps the logit scale at 100."))
        if init_scale > self.clamp_max:
            raise PlaygroundError(f"init_scale ({init_scale}) must not exceed clamp_max ({self.clamp_max}).")
        value = torch.tensor(math.log(init_scale))
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The multiplier in use, ``min(exp(log_logit_scale), clamp_max)``, as a 0-d tensor."""
        return self.log_logit_scale.exp().clamp(max=self.clamp_max)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the stored log scale to [0, log(clamp_max)] in place (call after ``optimizer.step()``)."""
        self.log_logit_scale.clamp_(0.0, math.log(self.clamp_max))

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: Scalar | None = None
    ) -> torch.Tensor:
        scale = self.logit_scale if logit_scale is None else logit_scale
        return clip_loss(image_features, text_features, scale)

    def extra_repr(self) -> str:
        return f"logit_scale={float(self.logit_scale):.3f}, clamp_max={self.clamp_max}"


# ---------------------------------------------------------------------------------------------
# VICReg: no negatives
# ---------------------------------------------------------------------------------------------

# Bardes, Ponce & LeCun 2022, section 4.2: lambda = mu = 25, nu = 1, gamma = 1, epsilon = 1e-4.
VICREG_INVARIANCE = 25.0
VICREG_VARIANCE = 25.0
VICREG_COVARIANCE = 1.0


def _off_diagonal_square_sum(c: torch.Tensor) -> torch.Tensor:
    return c.square().sum() - c.diagonal().square().sum()


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0,
                 eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg's three unweighted terms (Bardes et al. 2022): (invariance, variance, covariance).

    - invariance ``s``: mean squared difference of the two views, over the batch and the D dimensions;
    - variance ``v``: per view, the mean over dimensions of ``relu(gamma - sqrt(Var(z_d) + eps))`` (unbiased
      variance over the batch), summed over the two views: it is zero once every dimension varies by gamma;
    - covariance ``c``: per view, the sum of squared off-diagonal entries of the batch covariance divided by
      D, summed over the two views: zero when the dimensions are decorrelated.

    Embeddings are NOT normalised: the variance term needs their raw scale. Collapse (every row equal) gives
    ``s = 0``, ``v = 2 (gamma - sqrt(eps))`` and ``c = 0``: the variance term is what forbids it.

    Shape:
        z1, z2: (N, D) with N >= 2 (a variance needs two samples). Returns three scalars.

    >>> z = torch.ones(4, 3)
    >>> [round(t.item(), 4) for t in vicreg_terms(z, z)]  # collapsed: only the variance term is left
    [0.0, 1.98, 0.0]
    """
    z1, z2 = _pair(z1, z2, "z1", "z2")
    n, d = z1.shape
    if n < 2:
        raise PlaygroundError(f"VICReg needs a batch of at least 2 samples to measure a variance, got {n}.")
    gamma = float(_positive_scalar(gamma, "gamma", "VICReg uses gamma = 1, the target standard deviation."))
    eps = float(_positive_scalar(eps, "eps", "VICReg uses eps = 1e-4."))
    invariance = F.mse_loss(z1, z2)  # mean over N x D
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        std = torch.sqrt(z.var(dim=0) + eps)  # (D,) unbiased, as torch.var and the paper's pseudocode
        variance = variance + F.relu(gamma - std).mean()
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / (n - 1)  # (D, D)
        covariance = covariance + _off_diagonal_square_sum(cov) / d
    return invariance, variance, covariance


def vicreg(z1: torch.Tensor, z2: torch.Tensor, invariance: float = VICREG_INVARIANCE,
           variance: float = VICREG_VARIANCE, covariance: float = VICREG_COVARIANCE, gamma: float = 1.0,
           eps: float = 1e-4) -> torch.Tensor:
    """VICReg, variance-invariance-covariance regularisation (Bardes, Ponce & LeCun 2022).

    ``loss = invariance * s + variance * v + covariance * c`` with the terms of :func:`vicreg_terms` and the
    paper's weights 25 / 25 / 1 as defaults. There are no negatives: the invariance term pulls the two views
    of each sample together, and the variance and covariance terms keep the batch spread over every
    dimension, which is what stops the collapse a pull alone leads to. Setting ``variance`` and
    ``covariance`` to 0 leaves that pull alone (the Loss Lab's collapse lesson).

    Shape:
        z1, z2: (N, D) raw (not normalised) embeddings of two views, N >= 2. Returns a scalar.

    Args:
        invariance, variance, covariance: the weights lambda, mu, nu (>= 0).
        gamma: the target standard deviation per dimension; eps: keeps the square root's gradient finite.

    >>> z = torch.ones(4, 3)
    >>> round(vicreg(z, z).item(), 2)  # 25 x (1 - sqrt(1e-4)) x 2 views
    49.5
    """
    weights = {"invariance": invariance, "variance": variance, "covariance": covariance}
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise PlaygroundError(f"The VICReg weight {name} must be a finite number of at least 0, got {w!r}; "
                                  "the paper uses 25 (invariance), 25 (variance) and 1 (covariance).")
    s, v, c = vicreg_terms(z1, z2, gamma=gamma, eps=eps)
    return invariance * s + variance * v + covariance * c


class VICRegLoss(nn.Module):
    """Module form of :func:`vicreg` (Bardes et al. 2022), the weights fixed at construction.

    Shape: forward(z1 (N, D), z2 (N, D)) -> scalar.

    >>> loss = VICRegLoss()
    >>> round(loss(torch.ones(2, 3), torch.ones(2, 3)).item(), 2)
    49.5
    """

    def __init__(self, invariance: float = VICREG_INVARIANCE, variance: float = VICREG_VARIANCE,
                 covariance: float = VICREG_COVARIANCE, gamma: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__()
        self.invariance, self.variance, self.covariance = invariance, variance, covariance
        self.gamma, self.eps = gamma, eps
        vicreg(torch.ones(2, 1), torch.ones(2, 1), invariance, variance, covariance, gamma, eps)  # checks them

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return vicreg(z1, z2, self.invariance, self.variance, self.covariance, self.gamma, self.eps)

    def extra_repr(self) -> str:
        return f"invariance={self.invariance}, variance={self.variance}, covariance={self.covariance}"


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
    z1, z2 = _pair(z1, z2, "z1", "z2")
    sims = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T  # (N, N) view 1 row i against view 2 row j
    off_diagonal = ~torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
    pos = sims.diagonal()
    neg = sims[off_diagonal]  # row-major order
    return pos.float().cpu().numpy(), neg.float().cpu().numpy()
