"""core.similarity against plain NumPy references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import core.similarity as sim
import core.vectors as vectors_mod
from core.similarity import cosine_matrix, hardest_negatives, near_duplicates, nearest



def _np_cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


@pytest.fixture
def vectors():
    return np.random.default_rng(0).normal(size=(60, 7))


def test_cosine_matrix_matches_numpy(vectors):
    other = vectors[:13] * 3.0 + 0.1
    np.testing.assert_allclose(cosine_matrix(vectors, other), _np_cos(vectors, other), atol=1e-5)
    np.testing.assert_allclose(cosine_matrix(torch.as_tensor(vectors)), _np_cos(vectors, vectors), atol=1e-5)
    with pytest.raises(ValueError, match="dimension"):
        cosine_matrix(vectors, vectors[:, :3])


def test_cosine_matrix_refuses_huge(monkeypatch, vectors):
    monkeypatch.setattr(sim, "MAX_MATRIX_ELEMENTS", 100)
    with pytest.raises(ValueError, match="too large"):
        cosine_matrix(vectors)


def test_nearest_by_index_matches_numpy(vectors, monkeypatch):
    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 64)  # force many chunks
    s = _np_cos(vectors, vectors)
    np.fill_diagonal(s, -np.inf)
    idx, sims = nearest(vectors, np.arange(60), k=5)
    ref = np.argsort(-s, axis=1)[:, :5]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(sims, np.take_along_axis(s, ref, 1), atol=1e-5)
    one_idx, one_sims = nearest(vectors, 3, k=5)
    assert one_idx.shape == (5,) and 3 not in one_idx
    np.testing.assert_array_equal(one_idx, ref[3])


def test_nearest_by_vector_keeps_self(vectors):
    idx, sims = nearest(vectors, vectors[10], k=3)
    assert idx[0] == 10 and sims[0] == pytest.approx(1.0, abs=1e-5)
    idx2, _ = nearest(vectors, vectors[:4], k=2)
    assert idx2.shape == (4, 2) and list(idx2[:, 0]) == [0, 1, 2, 3]
    # k larger than the set is reduced
    assert nearest(vectors[:4], 0, k=10)[0].shape == (3,)
    with pytest.raises(ValueError, match="out of range"):
        nearest(vectors, 60)
    with pytest.raises(ValueError, match="k must"):
        nearest(vectors, 0, k=0)


def test_near_duplicates_matches_numpy(monkeypatch):
    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 50)
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 16))
    dup = base[[3, 7, 7, 20]] + rng.normal(scale=1e-3, size=(4, 16))
    vecs = np.vstack([base, dup])  # rows 40..43 copy 3, 7, 7, 20
    s = _np_cos(vecs, vecs)
    ref = {(i, j) for i in range(len(vecs)) for j in range(i + 1, len(vecs)) if s[i, j] >= 0.98}
    got = near_duplicates(vecs, threshold=0.98)
    assert {(i, j) for i, j, _ in got} == ref == {(3, 40), (7, 41), (7, 42), (41, 42), (20, 43)}
    assert all(i < j for i, j, _ in got)
    sims = [x for _, _, x in got]
    assert sims == sorted(sims, reverse=True)
    for i, j, x in got:
        assert x == pytest.approx(s[i, j], abs=1e-5)
    assert len(near_duplicates(np.ones((30, 3)), max_pairs=7)) == 7


def test_hardest_negatives_matches_numpy(vectors, monkeypatch):
    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 100)
    labels = np.arange(60) % 4
    idx, sims = hardest_negatives(vectors, labels, k=3)
    s = _np_cos(vectors, vectors)
    s[labels[:, None] == labels[None, :]] = -np.inf
    ref = np.argsort(-s, axis=1)[:, :3]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(sims, np.take_along_axis(s, ref, 1), atol=1e-5)
    assert (labels[idx] != labels[:, None]).all()


def test_hardest_negatives_pads_when_too_few():
    vecs = np.eye(3)
    idx, sims = hardest_negatives(vecs, ["a", "a", "b"], k=3)
    assert idx.shape == (3, 3)
    assert idx[0, 0] == 2 and (idx[0, 1:] == -1).all() and np.isnan(sims[0, 1:]).all()
    assert sorted(idx[2, :2].tolist()) == [0, 1] and idx[2, 2] == -1
    with pytest.raises(ValueError, match="labels"):
        hardest_negatives(vecs, [0, 1], k=1)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        cosine_matrix(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="numeric"):
        cosine_matrix(np.array([["a", "b"]]))


def test_neighbour_overlap_hand_computed_case():
    # four points on a line in space A; in space B the last two swap places
    a = np.array([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    # k=1: A's nearest = [1, 0, 3, 2]; B's nearest = [1, 0, 3, 2] too (the swap keeps pairs): all 1.0
    np.testing.assert_allclose(sim.neighbour_overlap(a, b, k=1), [1, 1, 1, 1])
    c = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])  # items 1 and 2 trade vectors
    # A: 0->1, 1->0, 2->3, 3->2.  C: 0->2, 1->3, 2->0, 3->1.  Nothing shared: Jaccard 0
    np.testing.assert_allclose(sim.neighbour_overlap(a, c, k=1), [0, 0, 0, 0])
    # k=2: A_0 = {1, 2}, C_0 = {2, 3} -> |{2}| / |{1, 2, 3}| = 1/3
    assert sim.neighbour_overlap(a, c, k=2)[0] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="same items"):
        sim.neighbour_overlap(a, c[:3])


def test_neighbour_overlap_matches_brute_force(monkeypatch):
    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 300)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(50, 6)), rng.normal(size=(50, 3))
    k = 5

    def knn(x):
        s = _np_cos(x, x)
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]

    na, nb = knn(a), knn(b)
    ref = [len(set(na[i]) & set(nb[i])) / len(set(na[i]) | set(nb[i])) for i in range(50)]
    np.testing.assert_allclose(sim.neighbour_overlap(a, b, k=k), ref)


def test_likely_false_negatives_matches_brute_force(monkeypatch):
    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 120)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, size=30)
    s = _np_cos(x, x)
    ref = sorted(((s[i, j], i, j) for i in range(30) for j in range(i + 1, 30) if y[i] == y[j]), reverse=True)[:12]
    got = sim.likely_false_negatives(x, y, k=12)
    assert [(i, j) for i, j, _ in got] == [(i, j) for _, i, j in ref]
    np.testing.assert_allclose([v for _, _, v in got], [v for v, _, _ in ref], atol=1e-5)
    assert sim.likely_false_negatives(x, np.arange(30), k=5) == []  # no two items share a label


def test_contrastive_softmax_reproduces_nt_xent():
    from core.losses import nt_xent

    rng = np.random.default_rng(6)
    z1, z2 = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    for tau in (0.1, 0.5):
        p = sim.contrastive_softmax(z1, z2, tau)
        assert p.shape == (16, 16)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
        assert np.allclose(np.diag(p), 0.0)
        pos = np.concatenate([p[np.arange(8), np.arange(8) + 8], p[np.arange(8) + 8, np.arange(8)]])
        loss = nt_xent(torch.as_tensor(z1, dtype=torch.float32), torch.as_tensor(z2, dtype=torch.float32), tau)
        assert -np.log(pos).mean() == pytest.approx(float(loss), rel=1e-4)
