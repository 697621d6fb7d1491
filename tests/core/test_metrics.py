"""core.metrics against independent references: scikit-learn and NumPy written from the papers' formulas."""
from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import core.vectors as vectors_mod
from core.metrics import (INVARIANCE_RULE, alignment, effective_rank, invariance_report, knn_accuracies,
                          knn_accuracy, linear_probe_accuracy, pair_similarities, similarity_histograms,
                          uniformity)



def _blobs(n, d, n_classes, spread, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + spread * rng.normal(size=(n, d)), y


@pytest.mark.parametrize("k", [1, 5, 11])
def test_knn_matches_sklearn(k, monkeypatch):
    from sklearn.neighbors import KNeighborsClassifier

    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 1000)  # several chunks
    x, y = _blobs(300, 8, 2, 1.5, seed=k)  # two classes and odd k: no vote ties
    xtr, ytr, xte, yte = x[:200], y[:200], x[200:], y[200:]
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(xtr, ytr).score(xte, yte)
    assert knn_accuracy(xtr, ytr, xte, yte, k=k) == pytest.approx(ref)
    assert knn_accuracy(torch.as_tensor(xtr), torch.as_tensor(ytr), xte, yte, k=k) == pytest.approx(ref)


def test_knn_accuracies_for_several_labelings_match_sklearn_per_labeling():
    """One neighbour search for every factor (the Trainer's evaluation) gives each factor sklearn's accuracy."""
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _blobs(400, 8, 3, 1.2, seed=3)
    rng = np.random.default_rng(0)
    labelings = {"blob": y, "random": rng.integers(0, 4, size=400), "parity": np.arange(400) % 2}
    train = {name: lab[:300] for name, lab in labelings.items()}
    test = {name: lab[300:] for name, lab in labelings.items()}
    got = knn_accuracies(x[:300], train, x[300:], test, k=1)
    for name in labelings:
        ref = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(
            x[:300], train[name]).score(x[300:], test[name])
        assert got[name] == pytest.approx(ref), name
    assert got == {name: knn_accuracy(x[:300], train[name], x[300:], test[name], k=1) for name in labelings}
    with pytest.raises(ValueError, match="same labelings"):
        knn_accuracies(x[:300], train, x[300:], {"blob": test["blob"]})


def test_knn_ties_go_to_the_most_similar_neighbour():
    # query along e0; neighbours by similarity: a (0.99), b (0.98), b (0.97), a (0.96); votes tie 2-2 -> "a"
    angles = np.arccos([0.99, 0.98, 0.97, 0.96])
    train = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert knn_accuracy(train, np.array([5, 3, 3, 5]), [[1.0, 0.0]], [5], k=4) == 1.0
    assert knn_accuracy(train, np.array([3, 5, 5, 3]), [[1.0, 0.0]], [3], k=4) == 1.0
    # more votes still beat a closer neighbour
    assert knn_accuracy(train, np.array([5, 3, 3, 3]), [[1.0, 0.0]], [3], k=4) == 1.0


def test_knn_unseen_test_labels_are_wrong_and_k_is_clamped():
    train = np.eye(3)
    query = train + 0.1  # near each training row, but not the training rows themselves
    assert knn_accuracy(train, [0, 1, 2], query, [0, 1, 7], k=1) == pytest.approx(2 / 3)
    assert knn_accuracy(train, [0, 0, 1], query, [0, 0, 0], k=50) == 1.0
    with pytest.raises(ValueError, match="k must"):
        knn_accuracy(train, [0, 1, 2], train, [0, 1, 2], k=0)
    with pytest.raises(ValueError, match="train_labels"):
        knn_accuracy(train, [0, 1], train, [0, 1, 2])


def test_knn_never_counts_self_matches():
    """Same set as reference and query with random labels: a leaked self-match would give k=1 accuracy 1.0."""
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 16))
    y = rng.integers(0, 4, size=400)  # random labels: chance is 0.25
    loo = knn_accuracy(x, y, x, y, k=1, exclude_self=True)
    assert loo < 0.4
    # leave-one-out against scikit-learn's own cross-validation (k=5, two clustered classes: no vote ties)
    xb, yb = _blobs(120, 6, 2, 1.5, seed=3)
    ref = cross_val_score(KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute"), xb, yb,
                          cv=LeaveOneOut()).mean()
    assert knn_accuracy(xb, yb, xb, yb, k=5, exclude_self=True) == pytest.approx(ref)
    # the same vectors as train and test without exclude_self are refused, not scored 1.0
    with pytest.raises(ValueError, match="exclude_self"):
        knn_accuracy(x, y, x, y, k=1)
    with pytest.raises(ValueError, match="exclude_self"):
        knn_accuracy(x, y, 3.0 * x, y, k=1)  # a rescaled copy is the same set under cosine
    with pytest.raises(ValueError, match="same rows"):
        knn_accuracy(x, y, x[:10], y[:10], exclude_self=True)


def test_linear_probe_separable_vs_random_labels():
    x, y = _blobs(400, 16, 4, 0.3, seed=0)
    assert linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:]) >= 0.98
    y_rand = np.random.default_rng(1).integers(0, 4, size=400)
    acc = linear_probe_accuracy(x[:300], y_rand[:300], x[300:], y_rand[300:])
    assert acc < 0.45  # chance is 0.25
    assert linear_probe_accuracy(x[:10], np.zeros(10, int), x[10:20], np.zeros(10, int)) == 1.0


def _np_alignment(z1, z2, alpha):
    total = 0.0
    for a, b in zip(z1, z2):
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        total += np.linalg.norm(a - b) ** alpha
    return total / len(z1)


def _np_uniformity(z, t):
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    vals = [math.exp(-t * np.sum((z[i] - z[j]) ** 2)) for i, j in itertools.combinations(range(len(z)), 2)]
    return math.log(sum(vals) / len(vals))


@pytest.mark.parametrize("alpha", [1, 2, 3])
def test_alignment_matches_numpy_loop(alpha):
    rng = np.random.default_rng(alpha)
    z1 = rng.normal(size=(40, 5))
    z2 = z1 + 0.5 * rng.normal(size=(40, 5))
    assert alignment(z1, z2, alpha=alpha) == pytest.approx(_np_alignment(z1, z2, alpha), rel=1e-5)
    assert alignment(z1, 2 * z1) == pytest.approx(0.0, abs=1e-6)
    assert alignment(z1, -z1) == pytest.approx(4.0, rel=1e-5)


@pytest.mark.parametrize("t", [0.5, 2, 5])
def test_uniformity_matches_numpy_loop(t, monkeypatch):
    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 200)  # rows split over chunks
    z = np.random.default_rng(3).normal(size=(50, 4))
    assert uniformity(z, t=t) == pytest.approx(_np_uniformity(z, t), rel=1e-4, abs=1e-5)
    assert uniformity(np.ones((10, 3))) == pytest.approx(0.0, abs=1e-5)  # collapsed: log 1
    with pytest.raises(ValueError, match="two vectors"):
        uniformity(np.ones((1, 3)))


def test_uniformity_does_not_underflow():
    # antipodal pairs at t=200: exp(-800) underflows float64 but the log-sum-exp does not
    z = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(z, t=200) == pytest.approx(-800.0, rel=1e-5)


def test_effective_rank_known_cases():
    assert effective_rank(np.eye(7)) == pytest.approx(7.0, rel=1e-6)
    rng = np.random.default_rng(0)
    rank1 = np.outer(rng.normal(size=30), rng.normal(size=5))
    assert effective_rank(rank1) == pytest.approx(1.0, abs=1e-6)
    # known singular values (3, 1) hidden behind random rotations: p = (3/4, 1/4), worked out by hand,
    # exp(H) = exp(-(0.75 ln 0.75 + 0.25 ln 0.25)) = 4 / 3**0.75
    q1, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    q2, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    sigma = np.zeros((40, 6))
    sigma[0, 0], sigma[1, 1] = 3.0, 1.0
    assert effective_rank(q1 @ sigma @ q2) == pytest.approx(4 / 3 ** 0.75, rel=1e-6)
    # two equal directions
    assert effective_rank(np.diag([2.0, 2.0, 0.0])) == pytest.approx(2.0, rel=1e-6)


def test_pair_similarities_and_histograms_match_numpy():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    c = (z1 / np.linalg.norm(z1, axis=1, keepdims=True)) @ (z2 / np.linalg.norm(z2, axis=1, keepdims=True)).T
    pos, neg = pair_similarities(z1, z2)
    np.testing.assert_allclose(pos, np.diag(c), atol=1e-6)
    np.testing.assert_allclose(np.sort(neg), np.sort(c[~np.eye(12, dtype=bool)]), atol=1e-6)
    _, neg_small = pair_similarities(z1, z2, max_negatives=30)
    assert neg_small.shape == (30,)
    h = similarity_histograms(z1, z2, bins=10)
    assert h["edges"].shape == (11,) and h["pos_density"].shape == (10,)
    widths = np.diff(h["edges"])
    assert (h["pos_density"] * widths).sum() == pytest.approx(1.0)
    assert h["pos_mean"] == pytest.approx(np.diag(c).mean(), abs=1e-6)


def _synthetic_set(n=600, seed=0):
    """Embeddings that encode factor "shape" (4 values) and not factor "colour" (3 values, independent)."""
    rng = np.random.default_rng(seed)
    shape = rng.integers(0, 4, size=n)
    colour = rng.integers(0, 3, size=n)
    centres = rng.normal(size=(4, 16)) * 3
    vectors = centres[shape] + rng.normal(size=(n, 16))
    images = SimpleNamespace(labels={"shape": shape, "colour": colour},
                             classes={"shape": ["circle", "square", "star", "cross"],
                                      "colour": ["red", "green", "blue"]})
    return vectors, images, shape, colour


class _TinySet:
    def __init__(self, labels, classes):
        self.labels, self.classes = labels, classes

    def __len__(self):
        return len(next(iter(self.labels.values())))


def test_invariance_report_kept_and_ignored():
    vectors, ns, shape, colour = _synthetic_set()
    imageset = _TinySet(ns.labels, ns.classes)
    rows = invariance_report(vectors, imageset, test_fraction=0.3, seed=0)
    by = {r["factor"]: r for r in rows}
    assert [r["factor"] for r in rows] == ["shape", "colour"]
    assert by["shape"]["verdict"] == "kept" and by["shape"]["accuracy"] > 0.9
    assert by["colour"]["verdict"] == "ignored"
    assert by["colour"]["chance"] == pytest.approx(1 / 3, abs=0.08)
    assert by["shape"]["n_test"] == 180
    assert "kept" in INVARIANCE_RULE and "ignored" in INVARIANCE_RULE


def test_invariance_report_from_embedding_set_and_errors():
    from core.embed import EmbeddingSet

    vectors, ns, _, _ = _synthetic_set(n=300, seed=1)
    es = EmbeddingSet(vectors, labels=ns.labels, classes=ns.classes)
    rows = invariance_report(es, factors=["shape"])
    assert len(rows) == 1 and rows[0]["verdict"] == "kept"
    with pytest.raises(ValueError, match="aligned"):
        invariance_report(vectors[:10], _TinySet(ns.labels, ns.classes))
    with pytest.raises(ValueError, match="Unknown factor"):
        invariance_report(es, factors=["size"])
    with pytest.raises(ValueError, match="test_fraction"):
        invariance_report(es, test_fraction=1.0)
