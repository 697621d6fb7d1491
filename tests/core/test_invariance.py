"""core.invariance: per-op invariance against a brute-force cosine, one view at a time."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.augment import AugmentConfig, preview
from core.invariance import OPS, invariance_per_op, similarity_to, single_op

PROJ = np.random.default_rng(0).normal(size=(3 * 16 * 16, 12))  # a fixed random linear "model"


def linear_embed(x: torch.Tensor) -> np.ndarray:
    """(N, 3, 16, 16) float -> (N, 12), NOT normalised (core.invariance normalises)."""
    return x.reshape(len(x), -1).double().numpy() @ PROJ


def mean_colour(x: torch.Tensor) -> np.ndarray:
    """Per-channel means, plus a constant so grey images are not zero vectors: blind to any re-arrangement."""
    return torch.cat([x.mean(dim=(2, 3)), torch.ones(len(x), 1)], dim=1).numpy()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _image(seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, 16, 16), dtype=np.uint8))


def test_ops_are_the_configs_switches():
    switches = [f.name for f in dataclasses.fields(AugmentConfig) if f.type in ("bool", bool)]
    assert list(OPS) == switches


def test_single_op_switches_every_other_op_off_and_keeps_strengths():
    cfg = AugmentConfig(rotation=True, rotation_degrees=40.0, crop=False, blur=True)
    for op in OPS:
        one = single_op(cfg, op)
        assert [getattr(one, o) for o in OPS] == [o == op for o in OPS]
        assert one.rotation_degrees == 40.0 and one.crop_scale == cfg.crop_scale
    with pytest.raises(ValueError, match="Unknown augmentation op"):
        single_op(cfg, "mixup")


@pytest.mark.parametrize("seed,n_views", [(0, 8), (5, 3)])
def test_means_and_baseline_match_a_brute_force_cosine(seed, n_views):
    cfg = AugmentConfig(rotation=True, blur=True, solarize=True, grayscale=False)
    image = _image(seed)
    refs = torch.stack([_image(100 + i) for i in range(5)])
    got = invariance_per_op(linear_embed, image, cfg, n_views=n_views, seed=seed, references=refs)

    original = image.float() / 255.0
    z0 = linear_embed(original[None])[0]
    for i, op in enumerate(OPS):
        only = AugmentConfig(**{**cfg.to_dict(), **{o: o == op for o in OPS}})
        views = preview(original, only, n=n_views, seed=seed)
        expected = np.mean([_cos(linear_embed(v[None])[0], z0) for v in views])
        assert got.means[i] == pytest.approx(expected, abs=1e-5), op
    assert got.active == tuple(getattr(cfg, o) for o in OPS)
    baseline = np.mean([_cos(linear_embed(r[None].float() / 255.0)[0], z0) for r in refs])
    assert got.baseline == pytest.approx(baseline, abs=1e-5)


def test_a_colour_model_ignores_flips_but_not_greyscale():
    """Mean colour cannot see a mirror image, so flip scores exactly 1; greyscale (always applied) changes the
    colour of a coloured image, so it scores below 1."""
    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    image[0, :, :8] = 255  # red left half, green right half
    image[1, :, 8:] = 200
    cfg = AugmentConfig(grayscale_p=1.0)
    got = invariance_per_op(mean_colour, image, cfg, n_views=6, seed=1)
    scores = dict(zip(got.ops, got.means))
    assert scores["flip"] == pytest.approx(1.0, abs=1e-6)
    assert scores["grayscale"] < 0.95
    assert got.baseline is None


def test_similarity_to_is_the_cosine_of_each_image():
    image = _image(1)
    batch = torch.stack([_image(2), _image(3), image])
    sims = similarity_to(linear_embed, image, batch)
    z0 = linear_embed(image[None].float() / 255.0)[0]
    expected = [_cos(linear_embed(b[None].float() / 255.0)[0], z0) for b in batch]
    np.testing.assert_allclose(sims, expected, atol=1e-5)
    assert sims[2] == pytest.approx(1.0, abs=1e-6)
    assert similarity_to(linear_embed, image, batch[:0]).shape == (0,)
