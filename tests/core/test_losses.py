"""core.losses against NumPy references written from each paper's formula, plus exact values,
gradients, argument validation and the MoCo feature queue.

The references loop over anchors, pairs and triplets on purpose: clarity over speed.
"""
from __future__ import annotations

import doctest
import importlib
import math
import pkgutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import losses
from core.errors import PlaygroundError
from core.losses import (
    ClipLoss,
    FeatureQueue,
    InfoNCELoss,
    MarginContrastiveLoss,
    NTXentLoss,
    SupConLoss,
    TripletLoss,
    VICRegLoss,
    clip_loss,
    info_nce,
    margin_contrastive,
    nt_xent,
    positive_negative_similarities,
    supcon,
    triplet_loss,
    vicreg,
    vicreg_terms,
)


ATOL = 1e-5
SIZES = [(1, 3), (4, 8), (9, 5), (16, 32)]  # (N, D)
TEMPERATURES = [0.01, 0.07, 0.5, 1.0]
MARGINS = [0.0, 0.2, 1.0, 2.0]


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------
# NumPy references, one per paper
# ---------------------------------------------------------------------------------------------


def ref_nt_xent(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    """SimCLR eq. 1, averaged over all 2N anchors."""
    z = unit(np.concatenate([z1, z2]))
    two_n = len(z)
    n = two_n // 2
    total = 0.0
    for i in range(two_n):
        j = (i + n) % two_n
        numerator = math.exp(z[i] @ z[j] / t)
        denominator = sum(math.exp(z[i] @ z[k] / t) for k in range(two_n) if k != i)
        total += -math.log(numerator / denominator)
    return total / two_n


def ref_info_nce(q: np.ndarray, k: np.ndarray, queue: np.ndarray, t: float) -> float:
    """MoCo eq. 1: -log exp(q.k+/t) / (exp(q.k+/t) + sum_queue exp(q.k/t))."""
    q, k = unit(q), unit(k)
    queue = unit(queue) if len(queue) else queue
    total = 0.0
    for i in range(len(q)):
        positive = math.exp(q[i] @ k[i] / t)
        negatives = sum(math.exp(q[i] @ key / t) for key in queue)
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


def ref_triplet(z: np.ndarray, y: np.ndarray, margin: float, mining: str, distance: str) -> float:
    """FaceNet triplet loss with the three mining rules documented in core.losses.triplet_loss."""
    z = unit(z)
    n = len(z)

    def dist(a: int, b: int) -> float:
        d = float(np.linalg.norm(z[a] - z[b]))
        return d if distance == "euclidean" else d * d

    def positives(a: int) -> list[int]:
        return [p for p in range(n) if p != a and y[p] == y[a]]

    def negatives(a: int) -> list[int]:
        return [m for m in range(n) if y[m] != y[a]]

    if mining == "all":  # mean over triplets with loss > 0
        active = []
        for a in range(n):
            for p in positives(a):
                for m in negatives(a):
                    loss = dist(a, p) - dist(a, m) + margin
                    if loss > 0:
                        active.append(loss)
        return float(np.mean(active)) if active else 0.0
    if mining == "hard":  # farthest positive, nearest negative, per anchor
        per_anchor = []
        for a in range(n):
            if positives(a) and negatives(a):
                hardest_pos = max(dist(a, p) for p in positives(a))
                hardest_neg = min(dist(a, m) for m in negatives(a))
                per_anchor.append(max(0.0, hardest_pos - hardest_neg + margin))
        return float(np.mean(per_anchor)) if per_anchor else 0.0
    # semihard: nearest negative farther than the positive, else the farthest negative
    per_pair = []
    for a in range(n):
        if not negatives(a):
            continue
        for p in positives(a):
            d_ap = dist(a, p)
            farther = [dist(a, m) for m in negatives(a) if dist(a, m) > d_ap]
            d_an = min(farther) if farther else max(dist(a, m) for m in negatives(a))
            per_pair.append(max(0.0, d_ap - d_an + margin))
    return float(np.mean(per_pair)) if per_pair else 0.0


def ref_margin_contrastive(z1: np.ndarray, z2: np.ndarray, same: np.ndarray, margin: float) -> float:
    """Hadsell et al. 2006 eq. 4 with Y = not same: (1-Y) 1/2 D^2 + Y 1/2 max(0, m - D)^2."""
    z1, z2 = unit(z1), unit(z2)
    total = 0.0
    for a, b, s in zip(z1, z2, same):
        d = float(np.linalg.norm(a - b))
        total += 0.5 * d * d if s else 0.5 * max(0.0, margin - d) ** 2
    return total / len(z1)


def ref_supcon(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """Khosla et al. 2020 eq. 2 (L^sup_out); views flattened, anchors without positives skipped."""
    if z.ndim == 3:
        n, v, _ = z.shape
        z = z.reshape(n * v, -1)
        y = np.repeat(y, v)
    z = unit(z)
    m = len(z)
    per_anchor = []
    for i in range(m):
        positives = [p for p in range(m) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(math.exp(z[i] @ z[a] / t) for a in range(m) if a != i)
        per_anchor.append(-np.mean([math.log(math.exp(z[i] @ z[p] / t) / denominator) for p in positives]))
    return float(np.mean(per_anchor)) if per_anchor else 0.0


def ref_clip(img: np.ndarray, txt: np.ndarray, scale: float) -> float:
    """CLIP pseudo-code (Radford et al. 2021, figure 3): symmetric cross-entropy."""
    img, txt = unit(img), unit(txt)
    logits = scale * img @ txt.T
    n = len(img)
    image_to_text = -np.mean([logits[i, i] - math.log(np.exp(logits[i]).sum()) for i in range(n)])
    text_to_image = -np.mean([logits[i, i] - math.log(np.exp(logits[:, i]).sum()) for i in range(n)])
    return float((image_to_text + text_to_image) / 2)


# ---------------------------------------------------------------------------------------------
# Against the references
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_nt_xent_matches_numpy(n, d, t):
    z1, z2 = randn(n, d, seed=1), randn(n, d, seed=2)
    assert nt_xent(z1, z2, t).item() == pytest.approx(ref_nt_xent(np_(z1), np_(z2), t), abs=ATOL)


def test_nt_xent_float32_close_to_float64():
    z1, z2 = randn(8, 16, seed=1), randn(8, 16, seed=2)
    assert nt_xent(z1.float(), z2.float(), 0.1).item() == pytest.approx(nt_xent(z1, z2, 0.1).item(), abs=ATOL)


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("k", [0, 1, 7, 40])
@pytest.mark.parametrize("t", [0.01, 0.07, 0.5])
def test_info_nce_matches_numpy(n, d, k, t):
    q, key, queue = randn(n, d, seed=1), randn(n, d, seed=2), randn(k, d, seed=3)
    assert info_nce(q, key, queue, t).item() == pytest.approx(ref_info_nce(np_(q), np_(key), np_(queue), t), abs=ATOL)


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean"])
@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("n,d,classes,seed", [(6, 3, 2, 0), (10, 4, 3, 1), (16, 8, 4, 2), (12, 2, 5, 3)])
def test_triplet_matches_numpy(mining, distance, margin, n, d, classes, seed):
    z = randn(n, d, seed=seed)
    y = np.random.default_rng(seed).integers(0, classes, size=n)
    expected = ref_triplet(np_(z), y, margin, mining, distance)
    got = triplet_loss(z, torch.from_numpy(y), margin, mining=mining, distance=distance).item()
    assert got == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
@pytest.mark.parametrize("margin", [0.0, 0.5, 1.0])
def test_triplet_ties_follow_the_documented_rules(mining, margin):
    # Exact ties: negative 2 sits on positive 1 (not strictly farther), negative 3 is opposite the anchor.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    y = np.array([0, 0, 1, 1, 2])
    expected = ref_triplet(np_(z), y, margin, mining, "euclidean")
    assert triplet_loss(z, y, margin, mining=mining).item() == pytest.approx(expected, abs=1e-12)


def test_triplet_large_batch_matches_numpy():
    z = randn(30, 6, seed=24)
    y = np.random.default_rng(24).integers(0, 4, size=30)
    for mining in ("all", "hard", "semihard"):
        expected = ref_triplet(np_(z), y, 0.3, mining, "euclidean")
        assert triplet_loss(z, y, 0.3, mining=mining).item() == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("margin", MARGINS)
def test_margin_contrastive_matches_numpy(n, d, margin):
    z1, z2 = randn(n, d, seed=1), randn(n, d, seed=2)
    same = np.random.default_rng(n).random(n) < 0.5
    expected = ref_margin_contrastive(np_(z1), np_(z2), same, margin)
    assert margin_contrastive(z1, z2, torch.from_numpy(same), margin).item() == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("shape", [(8, 5), (12, 16), (6, 2, 4), (5, 3, 8)])
@pytest.mark.parametrize("classes", [1, 3, 20])
@pytest.mark.parametrize("t", [0.01, 0.1, 0.5])
def test_supcon_matches_numpy(shape, classes, t):
    z = randn(*shape, seed=4)
    y = np.random.default_rng(classes).integers(0, classes, size=shape[0])
    assert supcon(z, torch.from_numpy(y), t).item() == pytest.approx(ref_supcon(np_(z), y, t), abs=ATOL)


def test_supcon_skips_anchors_without_positives():
    z = randn(5, 4, seed=5)
    y = np.array([0, 0, 1, 1, 2])  # sample 4 has no positive
    expected = ref_supcon(np_(z[:4]), y[:4], 0.2)  # ...but still sits in the other anchors' denominators
    assert supcon(z, y, 0.2).item() != pytest.approx(expected, abs=ATOL)
    assert supcon(z, y, 0.2).item() == pytest.approx(ref_supcon(np_(z), y, 0.2), abs=ATOL)


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("scale", [1.0, 1 / 0.07, 100.0])
def test_clip_loss_matches_numpy(n, d, scale):
    img, txt = randn(n, d, seed=6), randn(n, d, seed=7)
    assert clip_loss(img, txt, scale).item() == pytest.approx(ref_clip(np_(img), np_(txt), scale), abs=ATOL)


@pytest.mark.parametrize("n,d", [(4, 8), (16, 32), (33, 12)])
@pytest.mark.parametrize("scale", [1.0, 1 / 0.07, 100.0])
def test_clip_loss_matches_open_clip(n, d, scale):
    from open_clip.loss import ClipLoss as OpenClipLoss

    img, txt = randn(n, d, seed=8).float(), randn(n, d, seed=9).float()
    s1 = torch.tensor(scale, requires_grad=True)
    s2 = torch.tensor(scale, requires_grad=True)
    ours = clip_loss(img, txt, s1)
    # open_clip expects features its model has already normalised.
    theirs = OpenClipLoss()(img / img.norm(dim=1, keepdim=True), txt / txt.norm(dim=1, keepdim=True), s2)
    assert ours.item() == pytest.approx(theirs.item(), abs=ATOL)
    ours.backward()
    theirs.backward()
    assert s1.grad.item() == pytest.approx(s2.grad.item(), abs=ATOL)


# ---------------------------------------------------------------------------------------------
# Exact values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 64])
@pytest.mark.parametrize("t", TEMPERATURES)
def test_nt_xent_identical_embeddings_give_log_2n_minus_1(n, t):
    z = randn(1, 7, seed=n).expand(n, 7)
    assert nt_xent(z, z, t).item() == pytest.approx(math.log(2 * n - 1), abs=1e-10)


@pytest.mark.parametrize("n", [2, 5, 8])
@pytest.mark.parametrize("t", TEMPERATURES)
def test_nt_xent_orthogonal_pairs(n, t):
    # Views agree, samples orthogonal: positive logit 1/t, the 2N - 2 negatives 0.
    z = torch.eye(n, dtype=torch.float64) * 3.0
    expected = math.log1p((2 * n - 2) * math.exp(-1 / t))
    assert nt_xent(z, z, t).item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("k", [0, 3, 10])
@pytest.mark.parametrize("t", [0.07, 1.0])
def test_info_nce_closed_form(k, t):
    q = torch.zeros(2, 12, dtype=torch.float64)
    q[0, 0] = q[1, 1] = 1.0
    queue = torch.eye(12, dtype=torch.float64)[2 : 2 + k]  # orthogonal to every query
    expected = math.log1p(k * math.exp(-1 / t))  # 0 for an empty queue
    assert info_nce(q, q, queue, t).item() == pytest.approx(expected, abs=1e-12)
    assert info_nce(q, q, None, t).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_clip_loss_identical_features_give_log_n(n):
    f = randn(1, 5, seed=n).expand(n, 5)
    assert clip_loss(f, f, 1 / 0.07).item() == pytest.approx(math.log(n), abs=1e-10)


@pytest.mark.parametrize("n", [2, 4, 10])
def test_clip_loss_orthogonal_matched_features_near_zero(n):
    f = torch.eye(n, dtype=torch.float64)
    loss = clip_loss(f, 2 * f, 100.0).item()
    assert loss == pytest.approx(math.log1p((n - 1) * math.exp(-100.0)), abs=1e-12)
    assert loss < 1e-30


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
def test_triplet_separated_classes_give_zero_and_collapse_gives_margin(mining):
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert triplet_loss(separated, y, 0.5, mining=mining).item() == 0.0
    collapsed = torch.ones(4, 2)  # every distance 0, so every triplet costs exactly the margin
    assert triplet_loss(collapsed, y, 0.5, mining=mining).item() == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3]])
def test_triplet_without_valid_triplets_is_a_connected_zero(mining, labels):
    z = randn(4, 3, seed=10).requires_grad_()
    loss = triplet_loss(z, labels, 0.2, mining=mining)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_margin_contrastive_exact_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    assert margin_contrastive(a, a * 5, torch.ones(3, dtype=torch.bool), 1.0).item() == 0.0
    # different pairs at distance 0 cost margin^2 / 2 each; opposite pairs (d = 2) cost nothing at margin 2
    assert margin_contrastive(a, a, torch.zeros(3, dtype=torch.bool), 0.6).item() == pytest.approx(0.18)
    assert margin_contrastive(a, -a, [False, False, False], 2.0).item() == 0.0
    assert margin_contrastive(a, -a, [1, 1, 1], 2.0).item() == pytest.approx(2.0)  # 1/2 * 2^2


@pytest.mark.parametrize("n,d", [(3, 4), (10, 16)])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_supcon_without_labels_is_nt_xent(n, d, t):
    z1, z2 = randn(n, d, seed=11), randn(n, d, seed=12)
    assert supcon(torch.stack([z1, z2], dim=1), None, t).item() == pytest.approx(nt_xent(z1, z2, t).item(), abs=1e-10)


def test_supcon_with_no_positive_anywhere_is_a_connected_zero():
    z = randn(5, 3, seed=13).requires_grad_()
    loss = supcon(z, [0, 1, 2, 3, 4], 0.1)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_positive_negative_similarities_match_numpy():
    z1, z2 = randn(6, 4, seed=14), randn(6, 4, seed=15)
    pos, neg = positive_negative_similarities(z1, z2)
    sims = unit(np_(z1)) @ unit(np_(z2)).T
    assert pos.dtype == np.float32 and neg.dtype == np.float32
    assert pos.shape == (6,) and neg.shape == (30,)
    np.testing.assert_allclose(pos, np.diag(sims), atol=1e-6)
    np.testing.assert_allclose(neg, [sims[i, j] for i in range(6) for j in range(6) if i != j], atol=1e-6)


def test_positive_negative_similarities_single_pair_has_no_negatives():
    pos, neg = positive_negative_similarities(torch.ones(1, 3), torch.ones(1, 3))
    assert pos.tolist() == pytest.approx([1.0]) and neg.shape == (0,)


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------


def _every_loss(z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor, t: float) -> dict[str, torch.Tensor]:
    return {
        "nt_xent": nt_xent(z1, z2, t),
        "info_nce": info_nce(z1, z2, torch.linspace(-1, 1, 3 * z1.shape[1]).reshape(3, -1).to(z1), t),
        "triplet_all": triplet_loss(torch.cat([z1, z2]), torch.cat([y, y]), 0.5, mining="all"),
        "triplet_hard": triplet_loss(torch.cat([z1, z2]), torch.cat([y, y]), 0.5, mining="hard"),
        "triplet_semihard": triplet_loss(torch.cat([z1, z2]), torch.cat([y, y]), 0.5, mining="semihard"),
        "margin": margin_contrastive(z1, z2, y == y.roll(1), 1.5),
        "supcon": supcon(torch.stack([z1, z2], dim=1), y, t),
        "clip": clip_loss(z1, z2, 1 / t),
    }


@pytest.mark.parametrize("t", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("duplicates", [False, True])
def test_gradients_are_finite_and_reach_the_inputs(t, duplicates):
    base = torch.randn(8, 6, generator=torch.Generator().manual_seed(16))
    if duplicates:  # zero distances, identical views, a zero vector: where sqrt and norm could give NaN
        base[1] = base[0]
        base[5] = 0.0
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    for name in _every_loss(base, base, y, t):
        z1 = base.clone().requires_grad_()
        z2 = (base.clone() if duplicates else base + 0.1 * torch.randn(8, 6)).requires_grad_()
        loss = _every_loss(z1, z2, y, t)[name]
        assert torch.isfinite(loss), name
        loss.backward()
        for z in (z1, z2):
            assert z.grad is not None and torch.isfinite(z.grad).all(), name


@pytest.mark.parametrize("name", ["nt_xent", "info_nce", "triplet_all", "triplet_hard", "triplet_semihard",
                                  "margin", "supcon", "clip"])
def test_gradients_match_finite_differences(name):
    y = torch.tensor([0, 0, 1, 1, 2])
    z1, z2 = randn(5, 3, seed=17).requires_grad_(), randn(5, 3, seed=18).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: _every_loss(a, b, y, 0.3)[name], (z1, z2))


def test_learnable_temperature_and_logit_scale_get_gradients():
    z1, z2 = randn(4, 3, seed=19), randn(4, 3, seed=20)
    t = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    nt_xent(z1, z2, t).backward()
    assert t.grad is not None and torch.isfinite(t.grad)
    module = ClipLoss()
    module(z1.float(), z2.float()).backward()
    assert module.log_logit_scale.grad is not None and torch.isfinite(module.log_logit_scale.grad)


# ---------------------------------------------------------------------------------------------
# FeatureQueue
# ---------------------------------------------------------------------------------------------


def rows(*values: float) -> torch.Tensor:
    return torch.tensor([[v, -v] for v in values], dtype=torch.float32)


def test_feature_queue_fifo_and_wrap_around():
    q = FeatureQueue(dim=2, size=4, device="cpu")
    assert len(q) == 0 and q.tensor.shape == (0, 2)
    q.enqueue(rows(1, 2, 3))
    assert q.tensor[:, 0].tolist() == [1, 2, 3] and len(q) == 3
    q.enqueue(rows(4, 5))  # wraps: 1 is dropped
    assert q.tensor[:, 0].tolist() == [2, 3, 4, 5] and len(q) == q.size == 4
    q.enqueue(rows(6, 7, 8))  # wraps across the end of the buffer
    assert q.tensor[:, 0].tolist() == [5, 6, 7, 8]
    q.enqueue(rows(*range(10, 20)))  # larger than the queue: only the newest four survive
    assert q.tensor[:, 0].tolist() == [16, 17, 18, 19]
    q.enqueue(rows(20))
    assert q.tensor.tolist() == rows(17, 18, 19, 20).tolist()
    q.reset()
    assert len(q) == 0 and q.tensor.shape == (0, 2)
    q.enqueue(rows(30))
    assert q.tensor[:, 0].tolist() == [30]


def test_feature_queue_matches_a_python_deque():
    from collections import deque

    q, expected = FeatureQueue(dim=2, size=7, device="cpu"), deque(maxlen=7)
    rng = np.random.default_rng(0)
    counter = 0
    for _ in range(30):
        b = int(rng.integers(0, 10))
        values = list(range(counter, counter + b))
        counter += b
        q.enqueue(rows(*values) if values else torch.zeros(0, 2))
        expected.extend(values)
        assert q.tensor[:, 0].tolist() == list(expected)


def test_feature_queue_detaches_and_returns_a_copy():
    q = FeatureQueue(dim=3, size=4, device="cpu")
    keys = torch.randn(2, 3, requires_grad=True)
    q.enqueue(keys * 2)
    stored = q.tensor
    assert not stored.requires_grad
    stored.zero_()
    assert q.tensor.abs().sum() > 0  # the caller's copy does not alias the buffer


def test_moco_pattern_enqueue_between_loss_and_backward():
    # MoCo enqueues the new keys before backward; the loss must not depend on the buffer afterwards.
    q = FeatureQueue(dim=4, size=6, device="cpu")
    q.enqueue(torch.randn(6, 4))
    query = torch.randn(3, 4, requires_grad=True)
    key = torch.randn(3, 4)
    loss = info_nce(query, key, q, 0.1)
    expected = info_nce(query, key, q.tensor, 0.1).item()
    q.enqueue(key)
    loss.backward()
    assert loss.item() == pytest.approx(expected) and torch.isfinite(query.grad).all()


# ---------------------------------------------------------------------------------------------
# Modules, registries, docstrings
# ---------------------------------------------------------------------------------------------


def test_modules_match_the_paper_references():
    """Each nn.Module wrapper, with its settings in __init__, gives the NumPy transcription of its paper."""
    z1, z2, queue = randn(6, 4, seed=21), randn(6, 4, seed=22), randn(5, 4, seed=24)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    same = (y == y.roll(1)).numpy()
    approx = lambda v: pytest.approx(v, rel=1e-9, abs=1e-12)  # noqa: E731
    assert NTXentLoss(0.3)(z1, z2).item() == approx(ref_nt_xent(np_(z1), np_(z2), 0.3))
    assert InfoNCELoss(0.3)(z1, z2, queue).item() == approx(ref_info_nce(np_(z1), np_(z2), np_(queue), 0.3))
    for mining in ("all", "hard", "semihard"):
        got = TripletLoss(0.4, mining=mining)(z1, y).item()
        assert got == approx(ref_triplet(np_(z1), y.numpy(), 0.4, mining, "euclidean")), mining
    got = MarginContrastiveLoss(0.7)(z1, z2, torch.as_tensor(same)).item()
    assert got == approx(ref_margin_contrastive(np_(z1), np_(z2), same, 0.7))
    assert SupConLoss(0.3)(z1, y).item() == approx(ref_supcon(np_(z1), y.numpy(), 0.3))
    assert ClipLoss(init_scale=5.0)(z1, z2).item() == pytest.approx(ref_clip(np_(z1), np_(z2), 5.0), rel=1e-6)


def test_collapsed_negative_pair_is_pushed_apart():
    """A different-class pair at distance exactly 0 gets a gradient that separates it (the norm's autograd
    gradient at 0 is 0, which left fully collapsed negatives stuck)."""
    base = torch.tensor([[0.6, 0.8, 0.0]], dtype=torch.float64)
    z1 = base.clone().requires_grad_(True)
    z2 = base.clone().requires_grad_(True)
    margin_contrastive(z1, z2, torch.tensor([False]), margin=0.5).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with torch.no_grad():  # one small gradient step separates them
        d = torch.linalg.vector_norm(F.normalize(z1 - 0.01 * z1.grad, dim=1) - F.normalize(z2 - 0.01 * z2.grad, dim=1))
    assert d > 1e-4
    # The loss value is unchanged by the fix: 1/2 * margin^2 for a different pair at distance 0.
    assert margin_contrastive(base, base, torch.tensor([False]), margin=0.5).item() == pytest.approx(0.125)

    # Triplet: the negative sits exactly on its anchor, the positive is elsewhere.
    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    for mining in ("all", "hard", "semihard"):
        z.grad = None
        loss = triplet_loss(z, [0, 0, 1], margin=0.2, mining=mining)
        loss.backward()
        assert z.grad[2].abs().sum() > 0, mining  # the collapsed negative is moved
        assert loss.item() == pytest.approx(ref_triplet(np_(z.detach()), np.array([0, 0, 1]), 0.2, mining,
                                                        "euclidean"), abs=1e-12), mining


def test_moco_without_queue_uses_the_other_keys_of_the_batch():
    q, k = randn(5, 3, seed=31), randn(5, 3, seed=32)
    # in-batch negatives equal a queue made of the other keys, row by row
    got = info_nce(q, k, None, 0.2, batch_negatives=True).item()
    rows = [ref_info_nce(np_(q[i:i + 1]), np_(k[i:i + 1]), np_(torch.cat([k[:i], k[i + 1:]])), 0.2)
            for i in range(5)]
    assert got == pytest.approx(float(np.mean(rows)), rel=1e-9)
    assert info_nce(q, k, None, 0.2).item() == 0.0  # no queue and no batch negatives: nothing to contrast


def test_clip_module_scale_starts_at_one_over_0_07_and_is_capped():
    module = ClipLoss()
    assert module.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert module.log_logit_scale.requires_grad
    with torch.no_grad():
        module.log_logit_scale.fill_(10.0)
    assert module.logit_scale.item() == pytest.approx(100.0)
    module.clamp_()
    assert module.log_logit_scale.item() == pytest.approx(math.log(100.0))
    fixed = ClipLoss(init_scale=10.0, learnable=False)
    assert list(fixed.parameters()) == [] and fixed.logit_scale.item() == pytest.approx(10.0)
    z = randn(4, 3, seed=23).float()
    assert fixed(z, z).item() == pytest.approx(clip_loss(z, z, 10.0).item(), abs=1e-6)


def test_every_training_method_names_a_loss_of_this_module():
    """The registry moved to the method classes (core.methods): each names its function and module here."""
    from core.methods import METHODS

    assert {k: m.loss_function for k, m in METHODS.items()} == {
        "simclr": nt_xent, "moco": info_nce, "triplet": triplet_loss, "margin": margin_contrastive,
        "supcon": supcon, "clip": clip_loss, "vicreg": vicreg}
    assert METHODS["clip"].loss_module is ClipLoss and METHODS["vicreg"].loss_module is VICRegLoss


# ---------------------------------------------------------------------------------------------
# VICReg (Bardes, Ponce & LeCun 2022), against the paper's Algorithm 1 in NumPy
# ---------------------------------------------------------------------------------------------


def vicreg_numpy(z_a: np.ndarray, z_b: np.ndarray, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    """The paper's pseudocode, line by line: mse, std with unbiased variance, relu(1 - std) means, centred
    covariance over N - 1, off-diagonal squares summed and divided by D, for each branch."""
    n, d = z_a.shape
    sim_loss = np.mean((z_a - z_b) ** 2)
    std_a = np.sqrt(z_a.var(axis=0, ddof=1) + eps)
    std_b = np.sqrt(z_b.var(axis=0, ddof=1) + eps)
    std_loss = np.mean(np.maximum(gamma - std_a, 0)) + np.mean(np.maximum(gamma - std_b, 0))
    za, zb = z_a - z_a.mean(axis=0), z_b - z_b.mean(axis=0)
    cov_a, cov_b = za.T @ za / (n - 1), zb.T @ zb / (n - 1)
    off = ~np.eye(d, dtype=bool)
    cov_loss = 0.0
    for cov in (cov_a, cov_b):
        total = 0.0
        for i in range(d):  # off_diagonal(cov).pow(2).sum(), as a loop
            for j in range(d):
                if off[i, j]:
                    total += cov[i, j] ** 2
        cov_loss += total / d
    return lam * sim_loss + mu * std_loss + nu * cov_loss, (sim_loss, std_loss, cov_loss)


@pytest.mark.parametrize("n,d", [(2, 1), (4, 8), (9, 5), (32, 16)])
@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])  # below, at and above the target standard deviation
def test_vicreg_matches_the_paper_pseudocode_in_numpy(n, d, scale):
    z1, z2 = randn(n, d, seed=n) * scale, randn(n, d, seed=n + 100) * scale
    want, (s, v, c) = vicreg_numpy(z1.numpy(), z2.numpy())
    assert vicreg(z1, z2).item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    got = [t.item() for t in vicreg_terms(z1, z2)]
    assert got == pytest.approx([s, v, c], rel=1e-9, abs=1e-12)
    weighted, _ = vicreg_numpy(z1.numpy(), z2.numpy(), lam=1.0, mu=0.5, nu=3.0, gamma=2.0)
    assert vicreg(z1, z2, 1.0, 0.5, 3.0, gamma=2.0).item() == pytest.approx(weighted, rel=1e-9)
    assert VICRegLoss(1.0, 0.5, 3.0, gamma=2.0)(z1, z2).item() == pytest.approx(weighted, rel=1e-9)


def test_vicreg_known_values():
    z = randn(16, 6, seed=3)
    s, _, _ = vicreg_terms(z, z.clone())
    assert s.item() == 0.0  # identical views: no invariance term
    s, v, c = vicreg_terms(torch.ones(5, 4), torch.ones(5, 4))  # collapse: only the variance term is left
    assert (s.item(), c.item()) == (0.0, 0.0) and v.item() == pytest.approx(2 * (1 - math.sqrt(1e-4)))
    # Decorrelated dimensions with std >= 1 (+-2 in a balanced pattern): no variance and no covariance term.
    signs = torch.tensor([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float64) * 2
    _, v, c = vicreg_terms(signs, signs)
    assert v.item() == 0.0 and c.item() == pytest.approx(0.0, abs=1e-15)
    assert vicreg(signs, signs).item() == pytest.approx(0.0, abs=1e-12)


def test_vicreg_variance_term_pushes_a_collapsed_batch_apart():
    """No negatives, yet gradient flows out of collapse: from nearly equal rows, a step on the loss spreads them."""
    z = (torch.ones(8, 3, dtype=torch.float64) + 1e-3 * randn(8, 3, seed=5)).requires_grad_(True)
    before = z.detach().std(dim=0)
    (g,) = torch.autograd.grad(vicreg(z, z), z)
    after = (z - 0.01 * g).detach().std(dim=0)
    assert torch.all(after > before)
    (g_inv,) = torch.autograd.grad(vicreg(z, z, variance=0.0, covariance=0.0), z)
    assert torch.all(g_inv == 0)  # the pull alone has nothing to do: collapse is its minimum


@pytest.mark.parametrize("module", sorted(m.name for m in pkgutil.iter_modules(losses.__path__)))
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"core.losses.{module}"), extraglobs={"torch": torch, "math": math})
    assert result.failed == 0
    assert result.attempted > 0 or module == "validation"  # every loss module shows its use


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------

Z = torch.randn(4, 3)
Y = torch.tensor([0, 0, 1, 1])
META = torch.empty(4, 3, device="meta")  # a second device that exists on every machine

BAD_CALLS = {
    "temperature zero": lambda: nt_xent(Z, Z, 0.0),
    "temperature negative": lambda: info_nce(Z, Z, Z, -0.1),
    "temperature nan": lambda: supcon(Z, Y, float("nan")),
    "temperature inf": lambda: nt_xent(Z, Z, float("inf")),
    "temperature text": lambda: nt_xent(Z, Z, "hot"),
    "temperature bool": lambda: nt_xent(Z, Z, True),
    "temperature tensor of two": lambda: nt_xent(Z, Z, torch.tensor([0.1, 0.2])),
    "logit scale zero": lambda: clip_loss(Z, Z, 0.0),
    "logit scale negative tensor": lambda: clip_loss(Z, Z, torch.tensor(-1.0)),
    "logit scale nan": lambda: clip_loss(Z, Z, float("nan")),
    "margin negative": lambda: triplet_loss(Z, Y, -0.2),
    "margin nan": lambda: margin_contrastive(Z, Z, Y == 0, float("nan")),
    "margin negative pairs": lambda: margin_contrastive(Z, Z, Y == 0, -1.0),
    "shapes differ": lambda: nt_xent(Z, torch.randn(5, 3)),
    "dims differ": lambda: clip_loss(Z, torch.randn(4, 2), 10.0),
    "key shape": lambda: info_nce(Z, torch.randn(3, 3), Z),
    "queue dim": lambda: info_nce(Z, Z, torch.randn(5, 2)),
    "queue 1-D": lambda: info_nce(Z, Z, torch.randn(3)),
    "devices differ": lambda: nt_xent(Z, META),
    "queue device": lambda: info_nce(Z, Z, META),
    "labels device": lambda: triplet_loss(Z, torch.empty(4, dtype=torch.long, device="meta")),
    "logit scale device": lambda: clip_loss(Z, Z, torch.tensor(2.0, device="meta")),
    "empty batch nt_xent": lambda: nt_xent(torch.zeros(0, 3), torch.zeros(0, 3)),
    "empty batch info_nce": lambda: info_nce(torch.zeros(0, 3), torch.zeros(0, 3), Z),
    "empty batch triplet": lambda: triplet_loss(torch.zeros(0, 3), []),
    "empty batch margin": lambda: margin_contrastive(torch.zeros(0, 3), torch.zeros(0, 3), []),
    "empty batch supcon": lambda: supcon(torch.zeros(0, 2, 3), []),
    "empty batch clip": lambda: clip_loss(torch.zeros(0, 3), torch.zeros(0, 3), 10.0),
    "no features": lambda: nt_xent(torch.zeros(4, 0), torch.zeros(4, 0)),
    "1-D embeddings": lambda: nt_xent(torch.randn(4), torch.randn(4)),
    "3-D for a 2-D loss": lambda: clip_loss(torch.randn(4, 2, 3), torch.randn(4, 2, 3), 10.0),
    "4-D supcon": lambda: supcon(torch.randn(4, 2, 3, 1), Y),
    "integer embeddings": lambda: nt_xent(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long)),
    "not a tensor": lambda: nt_xent([[1.0, 2.0]], [[1.0, 2.0]]),
    "labels too short": lambda: triplet_loss(Z, Y[:3]),
    "labels too long supcon": lambda: supcon(torch.randn(4, 2, 3), torch.arange(8)),
    "labels float": lambda: supcon(Z, Y.float()),
    "labels 2-D": lambda: triplet_loss(Z, Y[:, None]),
    "labels text": lambda: triplet_loss(Z, ["a", "b", "c", "d"]),
    "unknown mining": lambda: triplet_loss(Z, Y, 0.2, mining="hardest"),
    "unknown distance": lambda: triplet_loss(Z, Y, 0.2, distance="cosine"),
    "same wrong length": lambda: margin_contrastive(Z, Z, torch.tensor([True, False])),
    "same not 0/1": lambda: margin_contrastive(Z, Z, torch.tensor([0, 1, 2, 1])),
    "same float": lambda: margin_contrastive(Z, Z, torch.tensor([0.0, 1.0, 1.0, 0.0])),
    "queue size zero": lambda: FeatureQueue(3, 0, device="cpu"),
    "queue dim negative": lambda: FeatureQueue(-1, 4, device="cpu"),
    "queue size float": lambda: FeatureQueue(3, 2.5, device="cpu"),
    "queue integer dtype": lambda: FeatureQueue(3, 4, device="cpu", dtype=torch.long),
    "enqueue wrong dim": lambda: FeatureQueue(3, 4, device="cpu").enqueue(torch.randn(2, 4)),
    "enqueue 1-D": lambda: FeatureQueue(3, 4, device="cpu").enqueue(torch.randn(3)),
    "enqueue other device": lambda: FeatureQueue(3, 4, device="cpu").enqueue(META),
    "module temperature": lambda: NTXentLoss(temperature=0),
    "module info temperature": lambda: InfoNCELoss(temperature=-1),
    "module supcon temperature": lambda: SupConLoss(temperature=float("nan")),
    "module margin": lambda: MarginContrastiveLoss(margin=-0.5),
    "module triplet margin": lambda: TripletLoss(margin=-0.5),
    "module mining": lambda: TripletLoss(mining="random"),
    "module distance": lambda: TripletLoss(distance="manhattan"),
    "module clip scale": lambda: ClipLoss(init_scale=0),
    "module clip cap": lambda: ClipLoss(init_scale=200.0, clamp_max=100.0),
    "vicreg batch of one": lambda: vicreg(Z[:1], Z[:1]),
    "vicreg negative weight": lambda: vicreg(Z, Z, variance=-1.0),
    "vicreg nan weight": lambda: vicreg(Z, Z, covariance=float("nan")),
    "vicreg gamma zero": lambda: vicreg(Z, Z, gamma=0.0),
    "vicreg shapes differ": lambda: vicreg(Z, Z[:, :2]),
    "module vicreg weight": lambda: VICRegLoss(invariance=-25.0),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_arguments_raise_a_readable_value_error(call):
    with pytest.raises(ValueError) as info:
        call()
    assert isinstance(info.value, PlaygroundError)
    message = str(info.value)
    assert message[0].isupper() or message.split()[0].isidentifier()
    assert message.rstrip().endswith(".")


def test_mining_error_names_the_allowed_modes():
    with pytest.raises(ValueError, match="'all', 'hard', 'semihard'"):
        triplet_loss(Z, Y, 0.2, mining="hardest")
    with pytest.raises(ValueError, match="greater than 0"):
        nt_xent(Z, Z, 0)


# ---------------------------------------------------------------------------------------------
# CLIP with duplicate captions in the batch (multi-positive)
# ---------------------------------------------------------------------------------------------


def ref_clip_dedup(img: np.ndarray, txt: np.ndarray, scale: float, ids: np.ndarray) -> float:
    """CLIP's symmetric cross-entropy where pairs (i, j != i) with the same caption id are left out of each
    other's softmax denominators (they are not negatives), written out per row."""
    img, txt = unit(img), unit(txt)
    logits = scale * img @ txt.T
    n = len(img)
    i2t = [-(logits[i, i] - math.log(sum(math.exp(logits[i, j]) for j in range(n) if j == i or ids[j] != ids[i])))
           for i in range(n)]
    t2i = [-(logits[j, j] - math.log(sum(math.exp(logits[i, j]) for i in range(n) if i == j or ids[i] != ids[j])))
           for j in range(n)]
    return float((np.mean(i2t) + np.mean(t2i)) / 2)


@pytest.mark.parametrize("n,d", [(6, 8), (32, 16)])
@pytest.mark.parametrize("scale", [1.0, 1 / 0.07, 100.0])
def test_clip_loss_with_duplicate_captions_matches_numpy(n, d, scale):
    img, txt = randn(n, d, seed=10), randn(n, d, seed=11)
    ids = np.random.default_rng(0).integers(0, max(2, n // 3), n)
    got = clip_loss(img, txt, scale, text_ids=ids).item()
    assert got == pytest.approx(ref_clip_dedup(np_(img), np_(txt), scale, ids), abs=ATOL)
    # all ids distinct: plain CLIP
    assert clip_loss(img, txt, scale, text_ids=np.arange(n)).item() == pytest.approx(clip_loss(img, txt, scale).item())


def test_identical_captions_are_not_pushed_apart():
    """Two images with the same caption text (so the same text features): with one-hot targets the loss has a
    floor of log 2 on those rows and its gradient pushes each image away from the other's (identical) caption;
    with text_ids the duplicate is no negative, the loss can reach 0 and that push is gone."""
    img = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    txt = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rows 0 and 1: one caption
    ids = torch.tensor([0, 0, 1])
    plain = clip_loss(img, txt, 100.0)
    assert plain.item() > 0.8 * math.log(2) * 4 / 6  # rows 0 and 1 on both sides sit at ~log 2
    fixed = clip_loss(img, txt, 100.0, text_ids=ids)
    assert fixed.item() < 1e-3
    # The gradient of image 1 no longer points away from caption 0 (the same sentence as its own).
    fixed.backward()
    assert abs(img.grad[1] @ txt[0]).item() < 1e-3


def test_clip_text_ids_are_checked():
    img = randn(4, 3)
    with pytest.raises(PlaygroundError, match="text_ids"):
        clip_loss(img, img, 10.0, text_ids=[0, 1])
