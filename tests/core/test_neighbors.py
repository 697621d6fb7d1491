"""core.neighbors.knn against brute force in NumPy (float64), on both engines.

Equal scores may come back in either order and a tied group may be cut at place k by either member, so the
checks compare the scores place by place, and a row's index only where its score is not tied with another
candidate's.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import core.vectors as vectors_mod
from core.neighbors import choose_backend, knn

ENGINES = ["faiss", "torch"]


def brute(base, k, *, queries=None, rows=None, metric="cosine", exclude_self=False, labels=None):
    """Brute force in float64: (Q, k) indices and scores (-1 / NaN where no candidate is left), every
    (Q, N) score, and the (Q, N) mask of candidates allowed."""
    b = np.asarray(base, dtype=np.float64)
    if metric == "cosine":
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    rows = np.arange(len(b)) if rows is None else np.asarray(rows)
    if queries is None:
        q = b[rows]
    else:
        q = np.asarray(queries, dtype=np.float64).reshape(-1, b.shape[1])
        if metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    full = q @ b.T if metric == "cosine" else np.linalg.norm(q[:, None] - b[None], axis=2)  # (Q, N)
    key = -full if metric == "cosine" else full  # lower is better
    allowed = np.ones_like(full, dtype=bool)
    if queries is None and exclude_self:
        allowed[np.arange(len(rows)), rows] = False
    if labels is not None:
        allowed &= np.asarray(labels)[rows][:, None] != np.asarray(labels)[None]
    idx = np.full((len(q), k), -1)
    score = np.full((len(q), k), np.nan)
    for i in range(len(q)):
        cand = np.flatnonzero(allowed[i])
        order = cand[np.argsort(key[i, cand], kind="stable")][:k]
        idx[i, :len(order)] = order
        score[i, :len(order)] = full[i, order]
    return idx, score, full, allowed


def check(got, ref, atol=1e-5):
    """Scores equal place by place; each returned row allowed, scoring what its place says, never twice; the
    same row as brute force wherever that score is not tied with another candidate's."""
    (gi, gs), (ri, rs, full, allowed) = got, ref
    assert gi.shape == ri.shape and gs.shape == rs.shape and gi.dtype == np.int64
    np.testing.assert_array_equal(gi == -1, ri == -1)
    np.testing.assert_allclose(gs, rs, atol=atol, equal_nan=True)
    for i, j in zip(*np.nonzero(ri >= 0)):
        assert allowed[i, gi[i, j]], "returned a row that should have been left out"
        assert full[i, gi[i, j]] == pytest.approx(gs[i, j], abs=atol)
        if np.sum(allowed[i] & np.isclose(full[i], rs[i, j], atol=atol, rtol=0)) == 1:
            assert gi[i, j] == ri[i, j]
    for row in gi:
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 9))
    x[10] = x[11] = x[12]  # exact duplicates: tied scores
    x[20] = 3.0 * x[21]  # the same direction: tied cosine, not tied Euclidean
    x[30] = 0.0  # a zero row scores 0 against everything (cosine)
    return x


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_every_row_against_brute_force(data, engine, metric):
    for k in (1, 5, 17):
        check(knn(data, k, metric=metric, backend=engine, device="cpu"), brute(data, k, metric=metric))
        check(knn(data, k, metric=metric, exclude_self=True, backend=engine, device="cpu"),
              brute(data, k, metric=metric, exclude_self=True))


@pytest.mark.parametrize("engine", ENGINES)
def test_separate_queries_and_a_row_subset(data, engine):
    rng = np.random.default_rng(1)
    q = rng.normal(size=(7, 9))
    check(knn(data, 6, queries=q, backend=engine, device="cpu"), brute(data, 6, queries=q))
    check(knn(data, 6, queries=q[0], backend=engine, device="cpu"), brute(data, 6, queries=q[0]))  # (D,)
    rows = [3, 11, 119, 3]
    check(knn(data, 4, rows=rows, exclude_self=True, backend=engine, device="cpu"),
          brute(data, 4, rows=rows, exclude_self=True))


@pytest.mark.parametrize("engine", ENGINES)
def test_exclude_same_label(data, engine):
    labels = np.random.default_rng(2).choice(["a", "b", "c"], size=len(data))
    check(knn(data, 8, labels=labels, backend=engine, device="cpu"), brute(data, 8, labels=labels))
    # a label held by all but two rows: those rows' queries run out of candidates -> -1 / NaN
    few = np.where(np.arange(len(data)) < 2, "rare", "common")
    got = knn(data, 5, labels=few, backend=engine, device="cpu")
    check(got, brute(data, 5, labels=few))
    assert (got[0][2:] >= 0).sum(axis=1).max() == 2  # "common" rows see only the two "rare" ones


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dim", [9, 2])
def test_k_larger_than_the_set_pads_with_minus_one_and_nan(data, engine, metric, dim):
    small = data[:4, :dim]
    idx, sims = knn(small, 6, metric=metric, exclude_self=True, backend=engine, device="cpu")
    assert idx.shape == (4, 6)
    assert (idx[:, :3] >= 0).all() and (idx[:, 3:] == -1).all() and np.isnan(sims[:, 3:]).all()
    assert not (idx == np.arange(4)[:, None]).any()  # never the row itself, even to fill a place
    check((idx, sims), brute(small, 6, metric=metric, exclude_self=True))
    labels = np.array([0, 0, 1, 1])
    check(knn(small, 3, metric=metric, labels=labels, backend=engine, device="cpu"),
          brute(small, 3, metric=metric, labels=labels))


@pytest.mark.parametrize("engine", ENGINES)
def test_one_row_and_float64_and_tensor_inputs(data, engine):
    idx, sims = knn(data[:1], 3, backend=engine, device="cpu")  # one row: itself, then nothing
    assert idx.tolist() == [[0, -1, -1]] and sims[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert knn(data[:1], 1, exclude_self=True, backend=engine, device="cpu")[0].tolist() == [[-1]]
    as_tensor = knn(torch.as_tensor(data, dtype=torch.float64), 5, backend=engine, device="cpu")
    check(as_tensor, brute(data, 5))


def test_the_engines_agree_on_clustered_data_with_many_ties():
    rng = np.random.default_rng(3)
    x = np.repeat(rng.normal(size=(40, 16)), 5, axis=0) + 1e-3 * rng.normal(size=(200, 16))
    x[::7] = x[1]  # plus a block of exact duplicates
    for metric in ("cosine", "euclidean"):
        fi, fs = knn(x, 10, metric=metric, exclude_self=True, backend="faiss")
        ti, ts = knn(x, 10, metric=metric, exclude_self=True, backend="torch", device="cpu")
        np.testing.assert_allclose(fs, ts, atol=1e-5)
        _, ref, _, _ = brute(x, 11, metric=metric, exclude_self=True)
        clean_cut = np.abs(ref[:, 9] - ref[:, 10]) > 1e-5  # the 10th and 11th best differ: one right set
        assert clean_cut.sum() > 50
        for i in np.flatnonzero(clean_cut):
            assert set(fi[i]) == set(ti[i])


def test_torch_chunks_give_the_unchunked_answer(data, monkeypatch):
    whole = knn(data, 7, exclude_self=True, backend="torch", device="cpu")
    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 50)  # under one row of 120 columns: one row a chunk
    check(knn(data, 7, exclude_self=True, backend="torch", device="cpu"), brute(data, 7, exclude_self=True))
    np.testing.assert_allclose(knn(data, 7, exclude_self=True, backend="torch", device="cpu")[1], whole[1],
                               atol=1e-6)  # rows 20 and 21 tie (same direction): their order may differ


def test_engine_choice_and_bad_arguments(data):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_backend("auto", cpu, "cosine", 64) == "faiss"
    assert choose_backend("auto", gpu, "cosine", 64) == "torch"
    assert choose_backend("faiss", cpu, "euclidean", 2) == "torch"  # map coordinates: the exact formula
    with pytest.raises(ValueError, match="k must"):
        knn(data, 0)
    with pytest.raises(ValueError, match="metric"):
        knn(data, 3, metric="manhattan")
    with pytest.raises(ValueError, match="backend"):
        knn(data, 3, backend="annoy")
    with pytest.raises(ValueError, match="rows of base"):
        knn(data, 3, queries=data[:2], exclude_self=True)
    with pytest.raises(ValueError, match="dimension"):
        knn(data, 3, queries=data[:2, :4])
    with pytest.raises(ValueError, match="0..119"):
        knn(data, 3, rows=[120])
    with pytest.raises(ValueError, match="labels"):
        knn(data, 3, labels=np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        knn(np.full((3, 2), np.nan), 1)


def test_faiss_threads_follow_torch_and_are_put_back(monkeypatch):
    """A process limited to one torch thread (a training worker) must not search on more; a search must not
    change anyone's thread count (faiss and torch may share one libgomp)."""
    import faiss

    seen = []
    real_knn = faiss.knn

    def spy(*args, **kwargs):
        seen.append(faiss.omp_get_max_threads())
        return real_knn(*args, **kwargs)

    monkeypatch.setattr(faiss, "knn", spy)
    before_torch, before_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    big = np.random.default_rng(4).normal(size=(3000, 32))  # 3000 x 3000 x 32: run on torch's thread count
    try:
        faiss.omp_set_num_threads(3)
        torch.set_num_threads(1)  # after faiss's: if the two share a libgomp, both read 1 now
        kept = faiss.omp_get_max_threads()
        knn(big, 5, exclude_self=True, backend="faiss")
        assert seen == [1]
        assert faiss.omp_get_max_threads() == kept and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        kept = faiss.omp_get_max_threads()
        knn(big, 5, rows=[0], exclude_self=True, backend="faiss")  # one row: a small search, one thread
        assert seen[-1] == 1
        assert torch.get_num_threads() == 2 and faiss.omp_get_max_threads() == kept  # nothing changed
    finally:
        torch.set_num_threads(before_torch)
        faiss.omp_set_num_threads(before_faiss)
