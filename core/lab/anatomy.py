"""One NT-Xent batch taken apart: an anchor's similarities, softmax weights and each negative's share of the
gradient (:func:`anchor_breakdown`, Wang & Liu 2021, "hardness-aware"), and every loss of :mod:`core.losses` on
the very same batch with the pairs that carry gradient (:func:`compare_losses`). Pure functions of a batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core import losses
from core.errors import PlaygroundError
from core.methods import METHODS
from core.methods.margin import margin_partners

def nt_xent_similarity_gradient(sims: torch.Tensor, positive: int, temperature: float) -> torch.Tensor:
    """d l_i / d s_ik for one NT-Xent anchor: ``(p_k - [k = pos]) / t`` with p = softmax(s / t).

    ``sims`` holds the anchor's cosine similarity to every *other* embedding (its own entry removed).
    Shape: (M,) -> (M,). Negatives get ``p_k / t`` (a push that grows with how similar they are), the positive
    ``-(1 - p_pos) / t`` (a pull of the same total size).
    """
    p = torch.softmax(sims / temperature, dim=0)
    onehot = torch.zeros_like(p)
    onehot[positive] = 1.0
    return (p - onehot) / temperature


@dataclass
class AnchorBreakdown:
    """One NT-Xent anchor of a batch of 2N embeddings (Chen et al. 2020), everything shown on the page.

    Arrays are over the M = 2N - 1 other embeddings, sorted by similarity to the anchor (most similar first).
    """

    anchor: int  # row in the stacked (2N, D) batch
    temperature: float
    index: np.ndarray  # (M,) rows of the other embeddings
    similarity: np.ndarray  # (M,) cosine similarity s(anchor, k)
    is_positive: np.ndarray  # (M,) bool: the other view of the same sample
    same_class: np.ndarray  # (M,) bool: negatives that share the anchor's label (false negatives), if labels
    weight: np.ndarray  # (M,) softmax p_k = exp(s_k / t) / sum_j exp(s_j / t)
    grad: np.ndarray  # (M,) d loss_anchor / d s_k
    share: np.ndarray  # (M,) each negative's share of the push, p_k / sum_neg p_j (0 for the positive)
    loss: float  # -log p_pos

    @property
    def positive_similarity(self) -> float:
        return float(self.similarity[self.is_positive][0])

    @property
    def positive_weight(self) -> float:
        return float(self.weight[self.is_positive][0])

    @property
    def denominator(self) -> float:
        """sum_{k != i} exp(s_ik / t), the softmax's normaliser."""
        return float(np.exp(self.similarity / self.temperature).sum())

    @property
    def effective_negatives(self) -> float:
        """1 / sum share^2: how many negatives really push (M - 1 when all push equally, 1 when one does)."""
        s = self.share[~self.is_positive]
        return float(1.0 / np.square(s).sum()) if s.sum() > 0 else 0.0


def _stack_unit(z1, z2) -> torch.Tensor:
    a = torch.as_tensor(np.asarray(z1), dtype=torch.float64) if not isinstance(z1, torch.Tensor) else z1.double()
    b = torch.as_tensor(np.asarray(z2), dtype=torch.float64) if not isinstance(z2, torch.Tensor) else z2.double()
    if a.dim() != 2 or a.shape != b.shape or a.shape[0] < 2:
        raise PlaygroundError(f"The two views must both be shaped (N, D) with N >= 2, got {tuple(a.shape)} "
                              f"and {tuple(b.shape)}.")
    return F.normalize(torch.cat([a, b]), dim=1)  # (2N, D)


def anchor_breakdown(z1, z2, anchor: int, temperature: float, labels=None) -> AnchorBreakdown:
    """Take NT-Xent apart for one anchor of the batch (z1, z2), at ``temperature``.

    ``anchor`` indexes the stacked batch [z1; z2] (0..2N-1); its positive is the other view (i <-> i + N).
    The anchor's loss is ``-log p_pos``; the gradient on each similarity is ``(p_k - [k = pos]) / t``, so a
    negative's share of the push is ``p_k / sum_neg p_j`` (Wang & Liu 2021): low t puts it on the hardest.
    Float64 inside, so very low temperatures stay exact. Shape: z1, z2 (N, D); labels (N,) or None.

    >>> b = anchor_breakdown(np.eye(3), np.eye(3), 0, 1.0)
    >>> round(b.loss, 4), round(b.share.sum(), 6)  # -log(e / (e + 4)), shares of the 4 negatives sum to 1
    (1.0064, 1.0)
    """
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise PlaygroundError(f"The temperature must be a positive number, got {temperature!r}.")
    z = _stack_unit(z1, z2)
    m2 = z.shape[0]
    n = m2 // 2
    if isinstance(anchor, bool) or not isinstance(anchor, (int, np.integer)) or not 0 <= anchor < m2:
        raise PlaygroundError(f"The anchor must be a row of the batch, 0 to {m2 - 1}, got {anchor!r}.")
    anchor = int(anchor)
    positive = (anchor + n) % m2
    others = torch.tensor([k for k in range(m2) if k != anchor])  # (M,)
    sims = (z[others] @ z[anchor]).clamp(-1, 1)  # (M,)
    pos_slot = int((others == positive).nonzero()[0, 0])
    grad = nt_xent_similarity_gradient(sims, pos_slot, t)
    p = torch.softmax(sims / t, dim=0)
    is_pos = torch.zeros(len(others), dtype=torch.bool)
    is_pos[pos_slot] = True
    neg_p = p.masked_fill(is_pos, 0.0)
    share = neg_p / neg_p.sum().clamp_min(1e-300)
    if labels is not None:
        y = np.concatenate([np.asarray(labels), np.asarray(labels)])
        if y.shape != (m2,):
            raise PlaygroundError(f"labels must have one entry per sample ({n}), got {len(np.asarray(labels))}.")
        same = (y[others.numpy()] == y[anchor]) & ~is_pos.numpy()
    else:
        same = np.zeros(len(others), dtype=bool)
    order = torch.argsort(sims, descending=True, stable=True).numpy()
    return AnchorBreakdown(
        anchor=anchor, temperature=t, index=others.numpy()[order], similarity=sims.numpy()[order],
        is_positive=is_pos.numpy()[order], same_class=same[order], weight=p.numpy()[order],
        grad=grad.numpy()[order], share=share.numpy()[order], loss=float(-torch.log(p[pos_slot])),
    )


def hardest_negative_share(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Mean over the 2N NT-Xent anchors of the largest single negative's share of the push (Wang & Liu 2021).

    1 / (2N - 2) when every negative pushes equally (high t), towards 1 when the hardest takes it all (low t).
    Shape: z1, z2 (N, D) -> float.
    """
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    m2 = z.shape[0]
    n = m2 // 2
    logits = (z @ z.T) / temperature
    eye = torch.eye(m2, dtype=torch.bool)
    pos = torch.roll(eye, n, dims=1)  # [i, i + N] and [i + N, i]
    logits = logits.masked_fill(eye | pos, float("-inf"))  # negatives only
    share = torch.softmax(logits, dim=1)  # p_k / sum_neg p_j: the positive cancels out of the ratio
    return float(share.max(dim=1).values.mean())


@dataclass
class LossOnBatch:
    """One loss on the shared batch: its value and which embeddings and anchor pairs get gradient."""

    key: str
    name: str
    value: float
    grad_norm: np.ndarray  # (2N,) |dL/dz_j| for each embedding of the stacked batch
    coupling: np.ndarray  # (2N,) |d^2 L / dz_anchor dz_j|: 0 when the pair (anchor, j) carries no gradient
    note: str

    @property
    def points_with_gradient(self) -> int:
        return int((self.grad_norm > 1e-9).sum())

    @property
    def pairs_with_gradient(self) -> int:
        """Pairs (anchor, j), j != anchor, that the loss couples (their gradient depends on each other)."""
        return int((self.coupling > 1e-9).sum())


COMPARED_LOSSES = ("nt_xent", "info_nce", "supcon", "triplet_all", "triplet_hard", "triplet_semihard", "margin")
_COMPARED_METHODS = {"nt_xent": "simclr", "info_nce": "moco", "supcon": "supcon", "triplet_all": "triplet",
                     "triplet_hard": "triplet", "triplet_semihard": "triplet", "margin": "margin"}
# The compared losses that depend on the temperature (the page caches the others apart): from the methods' traits.
TEMPERATURE_KEYS = tuple(k for k in COMPARED_LOSSES if METHODS[_COMPARED_METHODS[k]].uses_temperature)


def compare_losses(z1, z2, labels, *, anchor: int, temperature: float, margin: float = 0.5,
                   queue=None, seed: int = 0, keys=None) -> list[LossOnBatch]:
    """Every loss of :mod:`core.losses` on the very same batch (Chen 2020; He 2020; Schroff 2015; Hadsell 2006;
    Khosla 2020), with autograd telling which embeddings get gradient and which pairs with ``anchor`` matter.

    A pair (anchor, j) "gets gradient" when the loss couples them: the block ``d^2 L / dz_anchor dz_j`` of the
    Hessian is non-zero (computed with ``dim`` extra backward passes). For InfoNCE the keys are detached, as in
    MoCo, so only the queries (view 1) learn. The margin loss pairs view 1 with the other view for the first half
    of the samples and with a seeded random partner for the rest, as core.train does.
    ``keys`` picks a subset of :data:`COMPARED_LOSSES` (the page caches the temperature-free ones apart).
    Shape: z1, z2 (N, D); labels (N,); queue (K, D) or None (then InfoNCE uses the other samples' keys).
    """
    unknown = set(keys or ()) - set(COMPARED_LOSSES)
    if unknown:
        raise PlaygroundError(f"Unknown losses {sorted(unknown)}; choose from {', '.join(COMPARED_LOSSES)}.")
    z_all = _stack_unit(z1, z2).float()
    m2, dim = z_all.shape
    n = m2 // 2
    y = torch.as_tensor(np.asarray(labels)).long()
    if y.shape != (n,):
        raise PlaygroundError(f"labels must have one entry per sample ({n}), got shape {tuple(y.shape)}.")
    if not 0 <= anchor < m2:
        raise PlaygroundError(f"The anchor must be a row of the batch, 0 to {m2 - 1}, got {anchor!r}.")
    gen = torch.Generator().manual_seed(seed)
    margin_partner = margin_partners(n, gen, torch.device("cpu"))
    margin_same = y == y[margin_partner]
    queue_t = torch.as_tensor(np.asarray(queue), dtype=torch.float32) if queue is not None else None

    def info(z: torch.Tensor) -> torch.Tensor:
        keys = z[n:].detach()
        neg = queue_t if queue_t is not None else keys  # no queue: the batch's own keys (the positive among them)
        return losses.info_nce(z[:n], keys, neg, temperature)

    specs = [
        ("nt_xent", "NT-Xent", lambda z: losses.nt_xent(z[:n], z[n:], temperature),
         "every pair pulls or pushes, weighted by the softmax at t"),
        ("info_nce", "InfoNCE (keys detached)", info,
         "only the queries (view 1) learn; the keys and queue carry no gradient"),
        ("supcon", "SupCon", lambda z: losses.supcon(torch.stack([z[:n], z[n:]], dim=1), y, temperature),
         "all same-class points are positives"),
        ("triplet_all", "Triplet, all", lambda z: losses.triplet_loss(z, torch.cat([y, y]), margin, mining="all"),
         "every triplet still inside the margin"),
        ("triplet_hard", "Triplet, hardest", lambda z: losses.triplet_loss(z, torch.cat([y, y]), margin,
                                                                           mining="hard"),
         "one farthest positive and one nearest negative per anchor"),
        ("triplet_semihard", "Triplet, semi-hard", lambda z: losses.triplet_loss(z, torch.cat([y, y]), margin,
                                                                                 mining="semihard"),
         "negatives just beyond the positive (FaceNet)"),
        ("margin", "Margin contrastive", lambda z: losses.margin_contrastive(z[:n], z[n:][margin_partner],
                                                                           margin_same, margin),
         "one partner per sample: pulled if same class, pushed until the margin if not"),
    ]
    out = []
    for key, name, fn, note in specs:
        if keys is not None and key not in keys:
            continue
        z = z_all.clone().requires_grad_(True)
        loss = fn(z)
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        coupling = torch.zeros(m2)
        if g.requires_grad:
            rows = []
            for d in range(dim):
                (h,) = torch.autograd.grad(g[anchor, d], z, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(z) if h is None else h)
            coupling = torch.stack(rows).square().sum(dim=(0, 2)).sqrt().detach()  # (2N,)
        coupling[anchor] = 0.0
        out.append(LossOnBatch(key, name, float(loss.detach()), g.detach().norm(dim=1).numpy(),
                               coupling.numpy(), note))
    return out
