"""core.similarity against plain NumPy references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import core.similarity as sim
from core.similarity import cosine_matrix, hardest_negatives, near_duplicates, nearest

torch.set_num_threads(1)


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
    monkeypatch.setattr(sim, "_CHUNK_ELEMENTS", 64)  # force many chunks
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
    monkeypatch.setattr(sim, "_CHUNK_ELEMENTS", 50)
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
    monkeypatch.setattr(sim, "_CHUNK_ELEMENTS", 100)
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
