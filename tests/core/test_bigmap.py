"""core.bigmap against independent references: NumPy histograms, brute-force nearest points, sklearn kNN."""
from __future__ import annotations

import numpy as np
import pytest

from core import bigmap
from core.errors import PlaygroundError


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20_000, 2)).astype(np.float32), rng.integers(0, 3, 20_000)


def test_aggregate_counts_equal_numpy_histogram(points):
    coords, _ = points
    xr, yr = (-2.0, 2.5), (-1.5, 3.0)
    agg = bigmap.aggregate(coords, width=40, height=30, x_range=xr, y_range=yr).values  # (H, W), row 0 lowest y
    inside = (coords[:, 0] < xr[1]) & (coords[:, 1] < yr[1])  # datashader's upper edge is open, as histogram2d's
    ref, _, _ = np.histogram2d(coords[inside, 1], coords[inside, 0], bins=(30, 40), range=(yr, xr))
    np.testing.assert_array_equal(agg, ref)


def test_per_label_counts_add_up(points):
    coords, labels = points
    agg = bigmap.aggregate(coords, labels, width=16, height=16).values  # (H, W, 3)
    assert agg.shape == (16, 16, 3)
    assert agg.sum() == len(coords)
    np.testing.assert_array_equal(agg.sum(axis=(0, 1)), np.bincount(labels, minlength=3))


def test_raster_orientation_and_zoom():
    # one tight cluster at the top left, one at the bottom right
    rng = np.random.default_rng(1)
    coords = np.concatenate([rng.normal((-5, 5), 0.1, (500, 2)), rng.normal((5, -5), 0.1, (500, 2))])
    r = bigmap.rasterize(coords, width=64, height=64)
    alpha = r.image[..., 3] > 0
    assert r.image.shape == (64, 64, 4) and r.shown == r.total == 1000
    assert alpha[:32, :32].any() and alpha[32:, 32:].any()  # row 0 is the top (high y)
    assert not alpha[:32, 32:].any() and not alpha[32:, :32].any()
    # zoom into the top-left cluster: the window is re-drawn, only its 500 points are inside
    xr, yr = bigmap.zoom(r.x_range, r.y_range, 4, center=(-5, 5))
    z = bigmap.rasterize(coords, width=64, height=64, x_range=xr, y_range=yr)
    assert z.shown == 500
    assert (z.image[..., 3] > 0).sum() > alpha[:32, :32].sum()  # drawn at higher resolution: more pixels lit
    np.testing.assert_allclose(np.diff(xr), np.diff(r.x_range) / 4)
    px, py = bigmap.pan(xr, yr, 0.5, -1)
    np.testing.assert_allclose([px[0] - xr[0], py[0] - yr[0]], [np.diff(xr)[0] / 2, -np.diff(yr)[0]])


def test_labels_colour_the_pixels():
    coords = np.array([[0.0, 0.0], [1.0, 1.0]])
    r = bigmap.rasterize(coords, np.array([0, 1]), width=4, height=4, x_range=(-0.5, 1.5), y_range=(-0.5, 1.5))
    lit = r.image[r.image[..., 3] > 0][:, :3]
    hexes = {"#%02x%02x%02x" % tuple(int(v) for v in px) for px in lit}
    assert hexes == {bigmap.PALETTE[0], bigmap.PALETTE[1]}


def test_pick_is_the_brute_force_nearest(points):
    coords, _ = points
    index = bigmap.PointIndex(coords)
    rng = np.random.default_rng(2)
    for x, y in rng.uniform(-3, 3, size=(50, 2)):
        brute = int(np.argmin(((coords - (x, y)) ** 2).sum(axis=1)))
        assert index.nearest(x, y) == brute
    r = bigmap.rasterize(coords, width=100, height=100)
    assert index.pick(50.0, 50.0, r) is None  # a click far from every point picks nothing
    i = 123
    assert index.pick(*coords[i], r) == i
    assert index.count_within(r.x_range, r.y_range) == len(coords)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_placement_is_the_inverse_distance_mean_of_the_nearest_fitted_points(metric):
    rng = np.random.default_rng(3)
    fitted = rng.normal(size=(80, 6))
    fitted_coords = rng.normal(size=(80, 2))
    new = rng.normal(size=(30, 6))
    new[0] = fitted[17] * (2.0 if metric == "cosine" else 1.0)  # repeats a fitted row: lands on its position
    got = bigmap.place_by_neighbours(new, fitted, fitted_coords, k=4, metric=metric)
    # brute force in float64
    if metric == "cosine":
        un, uf = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (new, fitted))
        d = 1.0 - un @ uf.T
    else:
        d = np.linalg.norm(new[:, None] - fitted[None], axis=2)
    for i in range(1, len(new)):
        near = np.argsort(d[i])[:4]
        w = 1.0 / d[i, near]
        np.testing.assert_allclose(got[i], (w[:, None] * fitted_coords[near]).sum(0) / w.sum(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[0], fitted_coords[17], atol=1e-4)


def test_bad_inputs_are_refused():
    with pytest.raises(PlaygroundError, match=r"\(N, 2\)"):
        bigmap.rasterize(np.zeros((5, 3)))
    with pytest.raises(PlaygroundError, match="NaN"):
        bigmap.PointIndex(np.array([[0.0, np.nan]]))
    with pytest.raises(PlaygroundError, match="low < high"):
        bigmap.rasterize(np.zeros((5, 2)), x_range=(1, 1), y_range=(0, 1))
    with pytest.raises(PlaygroundError, match="positive"):
        bigmap.zoom((0, 1), (0, 1), 0)


@pytest.mark.slow
def test_sampled_umap_fits_a_sample_and_places_the_rest_near_their_cluster():
    from sklearn.datasets import make_blobs
    from sklearn.neighbors import KNeighborsClassifier

    x, y = make_blobs(n_samples=1500, centers=4, n_features=8, cluster_std=0.5, random_state=0)
    proj = bigmap.sampled_umap(x, sample=500, seed=0, n_neighbors=10, n_epochs=100)
    assert proj.coords.shape == (1500, 2) and len(proj.sample) == 500 and proj.sampled
    assert "500 of 1,500" in proj.describe() and "10 nearest sampled points" in proj.describe()
    rest = np.setdiff1d(np.arange(1500), proj.sample)
    # transformed points land among sample points of their own blob (kNN on the 2-D map)
    knn = KNeighborsClassifier(5).fit(proj.coords[proj.sample], y[proj.sample])
    assert knn.score(proj.coords[rest], y[rest]) > 0.95
    full = bigmap.sampled_umap(x[:200], sample=500, seed=0, n_neighbors=10, n_epochs=50)
    assert not full.sampled and len(full.sample) == 200


def test_spread_grows_each_point_by_its_pixels():
    """``spread=1`` (what the Explorer draws with) makes each point a 3 x 3 block of pixels centred on it."""
    coords = np.array([[0.0, 0.0]])
    kw = dict(width=9, height=9, x_range=(-1.0, 1.0), y_range=(-1.0, 1.0))
    for px, side in ((0, 1), (1, 3)):
        lit = np.argwhere(bigmap.rasterize(coords, spread=px, **kw).image[..., 3] > 0)
        assert len(lit) == side * side, (px, len(lit))
        np.testing.assert_array_equal(lit.min(0) + lit.max(0), [8, 8])  # centred on the middle pixel


def test_warm_up_draws_both_rasters_the_explorer_draws(monkeypatch):
    """The warm-up compiles the kernels of the Explorer's draws (ui.bigmap: labelled, ``spread=1``) and of a plain
    raster, so the first real map pays neither."""
    calls = []
    real = bigmap.rasterize

    def recording(coords, labels=None, **kw):
        calls.append((labels is not None, kw.get("spread", 0)))
        return real(coords, labels, **kw)

    monkeypatch.setattr(bigmap, "rasterize", recording)
    bigmap.warm_up()
    assert set(calls) == {(False, 0), (True, 1)}, calls
