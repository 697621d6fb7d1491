"""The live map (core.projection.live_map / tsne_exact) and its trust figure (map_trust), against scikit-learn's
own t-SNE internals, scikit-learn's k-NN classifier and brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.spatial.distance import squareform
from sklearn.manifold._t_sne import _joint_probabilities_nn, _kl_divergence
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from core.errors import PlaygroundError
from core.metrics import knn_accuracy
from core.projection import (
    LIVE_METHODS,
    _tsne_affinities,
    _tsne_gradient,
    _TsneBuffers,
    live_map,
    loo_knn_accuracy,
    map_trust,
    tsne_exact,
)


def blobs_with_nuisance(n=300, d=32, clusters=6, seed=0):
    """``clusters`` Gaussian blobs in ``d``-D (the labels), plus a nuisance factor with three levels spread over two
    directions far more than the blobs are apart, as background is for a model that keeps it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 1.5
    centres[:, :2] = 0.0  # the clusters differ in the other directions only
    y = rng.integers(0, clusters, n)
    nuisance = rng.integers(0, 3, n)
    x = centres[y] + rng.normal(size=(n, d))
    x[:, :2] += 12.0 * np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.87]])[nuisance]  # a triangle's corners
    return x.astype(np.float32), y, nuisance


def brute_loo_knn(coords, labels, k):
    """Leave-one-out k-NN by a plain loop; ties between labels go to the nearest neighbour holding one."""
    coords = np.asarray(coords, dtype=np.float64)
    hits = 0
    for i in range(len(coords)):
        d = np.sqrt(((coords - coords[i]) ** 2).sum(1))
        d[i] = np.inf
        nn = np.argsort(d, kind="stable")[:k]
        votes = labels[nn]
        counts = {c: int((votes == c).sum()) for c in set(votes.tolist())}
        top = max(counts.values())
        pred = next(v for v in votes if counts[v] == top)
        hits += pred == labels[i]
    return hits / len(coords)


# ------------------------------------------------------------------------------------------ t-SNE against sklearn
@pytest.mark.parametrize("perplexity", [5.0, 12.0])
def test_affinities_match_sklearn(perplexity):
    x = np.random.default_rng(1).normal(size=(90, 7))
    rows, cols, p = _tsne_affinities(x, perplexity, "euclidean")
    n, k = len(x), int(3 * perplexity)
    ours = np.zeros((n, n))
    ours[rows, cols] = p
    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()  # no self
    graph = csr_matrix(((dist ** 2).ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    ref = _joint_probabilities_nn(graph, perplexity, 0).toarray()
    assert np.allclose(ours, ref, atol=1e-7)
    assert ours.sum() == pytest.approx(1.0)
    assert np.allclose(ours, ours.T)


def test_cosine_affinities_are_euclidean_ones_of_unit_vectors():
    x = np.random.default_rng(2).normal(size=(60, 5))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    a = _tsne_affinities(x, 8.0, "cosine")
    b = _tsne_affinities(unit, 8.0, "euclidean")
    assert all(np.allclose(u, v, atol=1e-9) for u, v in zip(a, b))


@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_gradient_matches_sklearn_kl_divergence(exaggeration):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 6))
    rows, cols, p = _tsne_affinities(x, 10.0, "euclidean")
    n = len(x)
    dense = np.zeros((n, n))
    dense[rows, cols] = p
    y = rng.normal(size=(n, 2)) * 3
    ours = _tsne_gradient(y, rows, cols, p, exaggeration, _TsneBuffers(n))
    _, ref = _kl_divergence(y.ravel(), squareform(exaggeration * dense, checks=False), 1, n, 2)
    assert np.allclose(ours.ravel(), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_tsne_lowers_the_kl_divergence_it_starts_from():
    x, _, _ = blobs_with_nuisance(n=150)
    rows, cols, p = _tsne_affinities(x, 20.0, "cosine")
    n = len(x)
    dense = np.zeros((n, n))
    dense[rows, cols] = p
    start = np.random.default_rng(0).normal(size=(n, 2))
    out = tsne_exact(x, init=start, iters=(0, 200), perplexity=20.0)

    def kl(y):
        return _kl_divergence(np.asarray(y, np.float64).ravel(), squareform(dense, checks=False), 1, n, 2)[0]

    assert kl(out) < 0.5 * kl(start)


# ------------------------------------------------------------------------------------------ the live map
def test_live_map_keeps_clusters_that_pca_hides():
    """A nuisance direction holds most of the variance: PCA shows it, the live t-SNE map shows the clusters."""
    x, y, nuisance = blobs_with_nuisance()
    assert knn_accuracy(x, y, x, y, k=10, exclude_self=True) > 0.95  # the vectors hold the clusters
    pca = live_map(x, method="pca")
    tsne = live_map(x, method="tsne")
    assert loo_knn_accuracy(pca, y, 10) < 0.6
    assert loo_knn_accuracy(tsne, y, 10) >= 0.9
    assert map_trust(x, pca, {"cluster": y, "nuisance": nuisance}, factor="cluster").dominant == "nuisance"
    assert map_trust(x, tsne, {"cluster": y, "nuisance": nuisance}, factor="cluster").dominant is None


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_consecutive_maps_are_aligned(method):
    """Vectors that barely change give a map that barely moves: no jump, spin or mirror between snapshots."""
    x, _, _ = blobs_with_nuisance(n=200)
    first = live_map(x, method=method)
    nudged = x + 0.01 * np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    second = live_map(nudged, previous=first, method=method)
    spread = np.linalg.norm(first - first.mean(0), axis=1).mean()
    moved = np.linalg.norm(second - first, axis=1).mean()
    assert moved < 0.1 * spread
    # a map made afresh from the same vectors is free to land rotated or mirrored; following keeps it in place
    mirrored = live_map(nudged, previous=first * np.array([-1.0, 1.0], dtype=np.float32), method=method)
    assert np.linalg.norm(mirrored - first * np.array([-1.0, 1.0]), axis=1).mean() < 0.1 * spread


def test_live_map_starts_afresh_from_a_map_of_other_points():
    x, y, _ = blobs_with_nuisance(n=120)
    out = live_map(x, previous=np.zeros((7, 2)), method="tsne")
    assert out.shape == (120, 2) and np.isfinite(out).all()
    assert map_trust(x, out, y).kept > 0.85


def test_live_map_rejects_unknown_methods_and_handles_tiny_sets():
    with pytest.raises(PlaygroundError, match="Unknown live map method"):
        live_map(np.ones((10, 3)), method="mds")
    assert set(LIVE_METHODS) == {"tsne", "umap", "pca"}
    assert live_map(np.random.default_rng(0).normal(size=(3, 4))).shape == (3, 2)  # too few for t-SNE: PCA


def test_large_sets_are_drawn_with_pca(monkeypatch):
    import core.projection as P

    monkeypatch.setattr(P, "LIVE_TSNE_MAX", 50)
    x, _, _ = blobs_with_nuisance(n=60)
    assert P.live_method("tsne", 60) == "pca" and P.live_method("tsne", 50) == "tsne"
    assert np.array_equal(live_map(x, method="tsne"), live_map(x, method="pca"))


def test_tsne_is_deterministic_for_a_seed():
    x, _, _ = blobs_with_nuisance(n=100)
    assert np.array_equal(live_map(x, seed=3), live_map(x, seed=3))


# ------------------------------------------------------------------------------------------ map trust
def test_loo_knn_matches_sklearn_without_vote_ties():
    """Two classes and an odd k: no vote can tie, so scikit-learn's classifier is an exact reference."""
    rng = np.random.default_rng(6)
    coords = rng.normal(size=(120, 2))
    labels = (coords[:, 0] + 0.8 * rng.normal(size=120) > 0).astype(int)
    k = 7
    hits = 0
    for i in range(len(coords)):
        keep = np.arange(len(coords)) != i
        clf = KNeighborsClassifier(n_neighbors=k).fit(coords[keep], labels[keep])
        hits += clf.predict(coords[i:i + 1])[0] == labels[i]
    assert loo_knn_accuracy(coords, labels, k) == pytest.approx(hits / len(coords))


@pytest.mark.parametrize("k", [1, 4, 10])
def test_loo_knn_matches_brute_force_with_ties(k):
    rng = np.random.default_rng(7)
    coords = rng.normal(size=(150, 2))
    labels = rng.integers(0, 6, 150)
    assert loo_knn_accuracy(coords, labels, k) == pytest.approx(brute_loo_knn(coords, labels, k))


def test_map_trust_figures():
    x, y, nuisance = blobs_with_nuisance(n=200)
    coords = live_map(x, method="pca")
    t = map_trust(x, coords, {"cluster": y, "nuisance": nuisance}, factor="cluster", k=10)
    assert t.vectors_knn == pytest.approx(knn_accuracy(x, y, x, y, k=10, exclude_self=True))
    assert t.map_knn == pytest.approx(brute_loo_knn(coords, y, 10))
    assert t.per_factor["nuisance"][1] == pytest.approx(brute_loo_knn(coords, nuisance, 10))
    assert t.kept == pytest.approx(t.map_knn / t.vectors_knn)
    assert t.chance == pytest.approx(np.bincount(y).max() / len(y))


def test_map_trust_rejects_bad_input():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="Unknown factor"):
        map_trust(x, np.zeros((10, 2)), {"a": np.zeros(10)}, factor="b")
    with pytest.raises(ValueError, match="one row per point"):
        map_trust(x, np.zeros((9, 2)), {"a": np.zeros(10)})
    with pytest.raises(ValueError, match="one label per point"):
        loo_knn_accuracy(np.zeros((10, 2)), np.zeros(9))


# ------------------------------------------------------------------------------------------ the trainer's snapshots
def test_trainer_snapshots_draw_the_live_map_of_the_projection_space():
    """Snapshot.coords is what the page draws: live_map of the probe's projection vectors, following the previous
    snapshot's map (core.train's _snapshot); TrainConfig refuses a method it does not know."""
    from core.data import load_dataset
    from core.train import TrainConfig, Trainer

    with pytest.raises(ValueError, match="map_method"):
        TrainConfig(map_method="mds")
    cfg = TrainConfig(batch_size=32, steps=4, snapshot_every=2, eval_every=1000, probe_size=40, knn_reference=100,
                      warmup_steps=0)
    trainer = Trainer(cfg, load_dataset("shapes", n=200, size=16, seed=0))
    trainer.run()
    before, last = trainer.snapshots[-2], trainer.snapshots[-1]
    assert last.vectors.shape == (40, cfg.projection_dim)
    expected = trainer.model.embed(trainer.probe.images, space="projection").numpy()
    assert np.allclose(last.vectors, expected, atol=1e-5)
    assert np.allclose(last.coords, live_map(last.vectors, before.coords, method="tsne", seed=cfg.seed), atol=1e-3)
