"""Losses with negatives, one softmax over similarities each: NT-Xent (SimCLR), InfoNCE with a MoCo feature queue,
supervised contrastive (SupCon) and CLIP's symmetric image-text loss."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.device import pick_device
from core.errors import PlaygroundError
from core.losses.validation import (LabelsLike, Scalar, check_embeddings, check_labels, check_pair, check_positive,
                                    check_same_device, check_temperature)


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
    z1, z2 = check_pair(z1, z2, "z1", "z2")
    t = check_temperature(temperature)
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
        self.temperature = float(check_temperature(temperature))

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

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Append ``keys`` (B, dim), detached, overwriting the oldest entries when the queue is full."""
        if not isinstance(keys, torch.Tensor) or keys.dim() != 2 or keys.shape[1] != self.dim:
            shape = tuple(keys.shape) if isinstance(keys, torch.Tensor) else type(keys).__name__
            raise PlaygroundError(f"keys must have shape (B, {self.dim}) to fit this queue, got {shape}.")
        if not keys.is_floating_point():
            raise PlaygroundError(f"keys must be floating-point embeddings, got dtype {keys.dtype}.")
        check_same_device({"keys": keys, "queue": self._buffer})
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
    query, key = check_pair(query, key, "query", "key")
    t = check_temperature(temperature)
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
    check_same_device({"query": query, "key": key, "queue": queue})
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
        self.temperature = float(check_temperature(temperature))

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor | FeatureQueue | None = None
    ) -> torch.Tensor:
        return info_nce(query, key, queue, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


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
    check_embeddings(z, "z", ndims=(2, 3))
    n = z.shape[0]
    views = z.shape[1] if z.dim() == 3 else 1
    if labels is None:
        y = torch.arange(n, device=z.device)
    else:
        y = check_labels(labels, n, z.device)
    t = check_temperature(temperature)
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
        self.temperature = float(check_temperature(temperature))

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
    image_features, text_features = check_pair(image_features, text_features, "image_features", "text_features")
    if isinstance(logit_scale, torch.Tensor):
        check_same_device({"image_features": image_features, "logit_scale": logit_scale})
    scale = check_positive(logit_scale, "logit_scale", "it is the multiplier 1/temperature, e.g. 1/0.07.")
    img = F.normalize(image_features, dim=1)  # (N, D)
    txt = F.normalize(text_features, dim=1)  # (N, D)
    logits = scale * img @ txt.T  # (N, N) image i against text j
    targets = torch.arange(img.shape[0], device=img.device)
    if text_ids is not None:
        ids = check_labels(text_ids, img.shape[0], img.device, "text_ids")
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
        init_scale = float(check_positive(init_scale, "init_scale", hint))
        self.clamp_max = float(check_positive(clamp_max, "clamp_max", "CLIP caps the logit scale at 100."))
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


