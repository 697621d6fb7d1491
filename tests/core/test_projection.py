"""core.projection: PCA against scikit-learn, Procrustes alignment, neighbour preservation, UMAP / t-SNE smoke."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import PlaygroundError
from core.projection import (align_to, build_metric, neighbour_preservation, neighbour_preservation_per_point,
                             project, trustworthiness, warm_up)



@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 12)) * 4
    y = np.repeat(np.arange(4), 50)
    return (centres[y] + rng.normal(size=(200, 12))).astype(np.float32), y


@pytest.mark.parametrize("shape", [(200, 12), (10, 40)])  # covariance route and Gram route
def test_pca_matches_sklearn_up_to_sign(shape):
    from sklearn.decomposition import PCA

    x = np.random.default_rng(1).normal(size=shape) * np.linspace(3, 0.5, shape[1])
    ours = project(x, "pca", dim=3)
    ref = PCA(n_components=3).fit_transform(x)
    assert ours.dtype == np.float32 and ours.shape == (shape[0], 3)
    for j in range(3):
        sign = np.sign(ours[:, j] @ ref[:, j])
        np.testing.assert_allclose(ours[:, j], sign * ref[:, j], atol=1e-4)


def test_pca_sign_is_deterministic():
    x = np.random.default_rng(2).normal(size=(50, 6))
    a = project(x, "pca")
    b = project(x[::-1].copy(), "pca")[::-1]  # row order must not flip axes
    np.testing.assert_allclose(a, b, atol=1e-5)
    # largest-magnitude loading of each axis is positive: recover axes by least squares
    xc = x - x.mean(0)
    axes = np.linalg.lstsq(xc, a.astype(np.float64), rcond=None)[0]  # (D, 2)
    assert (axes[np.argmax(np.abs(axes), axis=0), [0, 1]] > 0).all()


def test_align_to_recovers_rotated_reflected_copy():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(80, 2))
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1, -1])
    moved = ref @ rot + np.array([5.0, -2.0])
    np.testing.assert_allclose(align_to(moved, ref), ref, atol=1e-5)
    with pytest.raises(ValueError, match="same"):
        align_to(moved[:5], ref)


def _brute_knn(x, k, metric):
    """k nearest others by brute force in NumPy (float64)."""
    if metric == "cosine":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1.0 - u @ u.T
    else:
        d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def test_neighbour_preservation_truly_2d_data_and_shuffled_map():
    rng = np.random.default_rng(10)
    n, k = 300, 10
    plane = rng.normal(size=(n, 2)) * [3.0, 1.0]
    x = plane @ rng.normal(size=(2, 12)) + 5.0  # exactly 2-D data embedded in 12-D, off the origin
    pca = project(x, "pca")
    assert build_metric("pca") == "euclidean"
    # the metric PCA keeps is Euclidean: every neighbourhood survives (the old cosine-vs-Euclidean mix scored ~0.2)
    assert neighbour_preservation(x, pca, k=k, metric=build_metric("pca")) == pytest.approx(1.0)
    per = neighbour_preservation_per_point(x, pca, k=k)
    assert per.shape == (n,) and per.min() == pytest.approx(1.0)
    hi, lo = _brute_knn(x, k, "euclidean"), _brute_knn(pca.astype(np.float64), k, "euclidean")
    np.testing.assert_array_equal(np.sort(hi, 1), np.sort(lo, 1))  # brute force agrees: the answer is 1.0
    # a shuffled map keeps about k / N of each neighbourhood
    scores = [neighbour_preservation(x, pca[rng.permutation(n)], k=k) for _ in range(5)]
    assert np.mean(scores) == pytest.approx(k / (n - 1), abs=0.015)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_trustworthiness_matches_sklearn(metric, monkeypatch):
    from sklearn.manifold import trustworthiness as sk_trust

    import core.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "CHUNK_ELEMENTS", 5000)  # several row chunks
    rng = np.random.default_rng(11)
    x = rng.normal(size=(150, 9))
    for coords in (x[:, :2] + 0.3 * rng.normal(size=(150, 2)), rng.normal(size=(150, 2)), project(x, "pca")):
        for k in (1, 5, 12):
            assert trustworthiness(x, coords, k=k, metric=metric) == pytest.approx(
                sk_trust(x, coords, n_neighbors=k, metric=metric), abs=1e-9)
    with pytest.raises(ValueError, match="N / 2"):
        trustworthiness(x, x[:, :2], k=75)


def test_neighbour_preservation_matches_numpy():
    rng = np.random.default_rng(5)
    x, c = rng.normal(size=(30, 5)), rng.normal(size=(30, 2))
    k = 4
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    d = ((c[:, None] - c[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    hi, lo = np.argsort(-s, 1)[:, :k], np.argsort(d, 1)[:, :k]
    ref = np.mean([len(set(hi[i]) & set(lo[i])) / k for i in range(30)])
    assert neighbour_preservation(x, c, k=k, metric="cosine") == pytest.approx(ref)


def test_bad_arguments():
    x = np.ones((10, 3))
    with pytest.raises(PlaygroundError, match="Unknown projection method"):
        project(x, "isomap")
    with pytest.raises(PlaygroundError, match="dim"):
        project(x, "pca", dim=0)
    with pytest.raises(PlaygroundError, match="1, 2 or 3"):
        project(x, "umap", dim=4)
    with pytest.raises(PlaygroundError, match="at least"):
        project(x[:3], "tsne")
    with pytest.raises(PlaygroundError, match="NaN"):
        project(np.array([[np.nan, 1.0]]), "pca")
    with pytest.raises(PlaygroundError, match="no extra settings"):
        project(x, "pca", n_neighbors=3)


def test_tsne_small(clusters):
    x, _ = clusters
    # 250 iterations are only t-SNE's early-exaggeration phase; 500 let the layout settle
    coords = project(x[::2], "tsne", dim=2, seed=0, max_iter=500)
    assert coords.shape == (100, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert build_metric("tsne") == "cosine"
    shuffled = coords[np.random.default_rng(0).permutation(100)]
    assert neighbour_preservation(x[::2], coords, k=10, metric="cosine") > 0.4  # a shuffled map: ~0.1
    assert neighbour_preservation(x[::2], shuffled, k=10, metric="cosine") < 0.2
    assert trustworthiness(x[::2], coords, k=10, metric="cosine") > 0.9


_WARM_CHECK = """
import umap.layouts as layouts
import umap.umap_ as umap_
import core.projection as projection
# the seeded (single-threaded) layout optimiser and the kNN-graph smoothing every map goes through
fns = [layouts._nb_optimize_layout_euclidean_single_epoch, umap_.smooth_knn_dist]
before = min(len(f.signatures) for f in fns)
projection.warm_up()
print(before, min(len(f.signatures) for f in fns), projection._warm)
"""


@pytest.mark.slow  # a fresh process imports umap: 5-20 s on 2 busy cores
def test_warm_up_compiles_the_layout_code_a_map_needs():
    """warm_up leaves umap's numba layout optimiser compiled, so a user's first map does not pay for it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _WARM_CHECK], cwd=root, capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, warm = out.stdout.split()[-3:]
    assert before == "0" and int(after) >= 1 and warm == "True"


@pytest.mark.slow  # UMAP fits: a few seconds each on 2 busy cores
def test_umap_small_is_deterministic_and_keeps_clusters(clusters):
    from sklearn.manifold import trustworthiness as sk_trust

    x, y = clusters
    warm_up()
    a = project(x, "umap", seed=0)
    b = project(x, "umap", seed=0)
    assert a.shape == (200, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # same seed, same map, bit for bit
    assert not np.allclose(a, project(x, "umap", seed=1))  # the seed is really used
    # clusters stay apart: every point's nearest map neighbour is from its own cluster (brute force in NumPy)
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.95
    # an honest local map by scikit-learn's own measure, far above a random layout's
    assert sk_trust(x, a, n_neighbors=10, metric="cosine") > 0.85
    assert sk_trust(x, np.random.default_rng(0).normal(size=a.shape), n_neighbors=10, metric="cosine") < 0.6
    three = project(x, "umap", dim=3, seed=0)
    assert three.shape == (200, 3) and np.isfinite(three).all()
    with pytest.raises(PlaygroundError, match="setting"):
        project(x, "umap", no_such_setting=1)
