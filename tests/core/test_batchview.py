"""core.batchview: the Explorer's NT-Xent matrix against the paper's formula written in NumPy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.batchview import ntxent_matrix, two_view_embeddings


def _reference(z1: np.ndarray, z2: np.ndarray, t: float) -> tuple[np.ndarray, float]:
    """SimCLR (Chen et al. 2020), eq. 1, one cell at a time: p(a, b) = exp(s_ab / t) / sum_{k != a} exp(s_ak / t)
    over the 2N views [z1; z2], s = cosine similarity; the loss is the mean over a of -log p(a, positive(a))."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    n2 = len(z)
    n = n2 // 2
    p = np.zeros((n2, n2))
    for a in range(n2):
        s = [float(z[a] @ z[b] / (np.linalg.norm(z[a]) * np.linalg.norm(z[b]))) for b in range(n2)]
        denom = sum(math.exp(s[k] / t) for k in range(n2) if k != a)
        for b in range(n2):
            p[a, b] = 0.0 if b == a else math.exp(s[b] / t) / denom
    loss = np.mean([-math.log(p[a, (a + n) % n2]) for a in range(n2)])
    return p, float(loss)


@pytest.mark.parametrize("n,dim,t", [(2, 3, 0.5), (5, 8, 0.1), (8, 4, 1.0), (16, 32, 0.2)])
def test_probabilities_and_loss_match_the_formula(n, dim, t):
    rng = np.random.default_rng(n * 100 + dim)
    z1, z2 = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    m = ntxent_matrix(z1, z2, t)
    p, loss = _reference(z1, z2, t)
    assert m.probabilities.shape == (2 * n, 2 * n) and m.n == n
    np.testing.assert_allclose(m.probabilities, p, rtol=2e-4, atol=1e-6)
    assert m.loss == pytest.approx(loss, rel=1e-4)
    assert sorted(m.positives) == sorted([(i, i + n) for i in range(n)] + [(i + n, i) for i in range(n)])
    # the loss the trainer optimises is the one the picture shows: mean -log of the outlined cells
    assert m.loss == pytest.approx(float(np.mean([-np.log(m.probabilities[i, j]) for i, j in m.positives])),
                                   rel=1e-4)


def test_identical_views_give_log_2n_minus_1():
    m = ntxent_matrix(np.ones((6, 5)), np.ones((6, 5)), 0.3)
    assert m.loss == pytest.approx(math.log(11), abs=1e-5)
    np.testing.assert_allclose(m.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.diag(m.probabilities) == 0)


@pytest.mark.parametrize("t", [0.0, -0.1])
def test_a_bad_temperature_is_refused(t):
    with pytest.raises(ValueError, match="temperature"):
        ntxent_matrix(np.ones((2, 3)), np.ones((2, 3)), t)


def test_mismatched_views_are_refused():
    with pytest.raises(ValueError):
        ntxent_matrix(np.ones((2, 3)), np.ones((3, 3)), 0.5)


def test_two_view_embeddings_are_the_models_projection_of_two_seeded_views():
    from core.augment import AugmentConfig, augment
    from core.data import load_dataset
    from core.models import EncoderConfig, build_model

    torch.manual_seed(0)
    model = build_model(EncoderConfig(arch="small_cnn"), device="cpu").eval()
    images = load_dataset("shapes", n=6, size=32, seed=0).images
    cfg = AugmentConfig()
    z1, z2 = two_view_embeddings(model, images, cfg, seed=3)
    gen = torch.Generator().manual_seed(3)
    v1, v2 = augment(images, cfg, gen), augment(images, cfg, gen)
    with torch.no_grad():
        ref1 = torch.nn.functional.normalize(model.projector(model.encode(v1)), dim=1).numpy()
        ref2 = torch.nn.functional.normalize(model.projector(model.encode(v2)), dim=1).numpy()
    np.testing.assert_allclose(z1, ref1, atol=1e-5)
    np.testing.assert_allclose(z2, ref2, atol=1e-5)
    assert not np.allclose(z1, z2)  # two different views
