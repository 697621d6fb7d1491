"""core.projection: PCA against scikit-learn, Procrustes alignment, neighbour preservation, UMAP / t-SNE smoke."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import PlaygroundError
from core.projection import align_to, neighbour_preservation, project, warm_up

torch.set_num_threads(1)


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


def test_neighbour_preservation(clusters):
    x, _ = clusters
    assert neighbour_preservation(x, x, k=10, metric="euclidean") == pytest.approx(1.0)
    rand = np.random.default_rng(4).normal(size=(200, 2))
    assert neighbour_preservation(x, rand, k=10) < 0.15  # about k / N for a random map
    pca = project(x, "pca")
    score = neighbour_preservation(x, pca, k=10)
    assert 0.15 < score <= 1.0


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
    assert neighbour_preservation(x, c, k=k) == pytest.approx(ref)


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
    coords = project(x[::2], "tsne", dim=2, seed=0, max_iter=250)
    assert coords.shape == (100, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert neighbour_preservation(x[::2], coords, k=10) > 0.3


@pytest.mark.slow  # the first UMAP fit in a process compiles numba code: 15-20 s on 2 busy cores
def test_umap_small_is_deterministic_and_keeps_clusters(clusters):
    x, y = clusters
    import core.projection as projection

    assert warm_up() >= 0.0  # pays the compilation once per process
    assert projection._warm
    a = project(x, "umap", seed=0)
    b = project(x, "umap", seed=0)
    assert a.shape == (200, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, b)
    # clusters stay apart: every point's nearest map neighbour is from its own cluster
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.95
    with pytest.raises(PlaygroundError, match="setting"):
        project(x, "umap", no_such_setting=1)
