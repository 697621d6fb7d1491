"""Tests for core.augment: per-op behaviour against NumPy/torchvision references, randomness, config checks."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from core.augment import PRESETS, AugmentConfig, _shift_hue, augment, preview
from core.errors import PlaygroundError

# Every op off; tests switch on the one they check.
OFF = AugmentConfig(crop=False, flip=False, color_jitter=False, grayscale=False)


def only(**changes) -> AugmentConfig:
    return dataclasses.replace(OFF, **changes)


def jitter_only(**strengths) -> AugmentConfig:
    settings = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, **strengths}
    return only(color_jitter=True, jitter_p=1.0, **settings)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """(64, 3, 16, 16) uint8 random images."""
    g = torch.Generator().manual_seed(123)
    return torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=g)


def _devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def _luma(x: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of (N, 3, H, W) -> (N, H, W), as PIL/torchvision grayscale."""
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


# ---- output contract -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_shape_dtype_range_for_every_preset(images, name, dtype):
    x = images if dtype == torch.uint8 else images.to(dtype) / 255
    out = augment(x, PRESETS[name], generator=0)
    assert out.shape == images.shape
    assert out.dtype == torch.float32
    assert out.is_contiguous()
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("device", _devices())
def test_output_follows_input_device(images, device):
    out = augment(images.to(device), PRESETS["strong"], generator=0)
    assert out.device.type == device


def test_same_seed_gives_same_views_on_every_device(images):
    ref = augment(images, PRESETS["strong"], generator=5)
    for device in _devices()[1:]:
        out = augment(images.to(device), PRESETS["strong"], generator=5).cpu()
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_input_is_not_modified(images):
    x = images.float() / 255
    before = x.clone()
    augment(x, PRESETS["strong"], generator=0)
    assert torch.equal(x, before)


def test_empty_batch_and_single_channel():
    assert augment(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), AugmentConfig(), generator=0).shape == (0, 3, 8, 8)
    grey = torch.randint(0, 256, (8, 1, 12, 12), dtype=torch.uint8)
    out = augment(grey, PRESETS["strong"], generator=0)
    assert out.shape == (8, 1, 12, 12) and out.dtype == torch.float32


# ---- randomness ----------------------------------------------------------------------------------------------
def test_each_sample_gets_its_own_parameters(images):
    same = images[:1].expand(32, -1, -1, -1)
    out = augment(same, AugmentConfig(), generator=0).flatten(1)
    distances = torch.cdist(out, out)
    off_diagonal = distances[~torch.eye(32, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all(), "two views of one image came out identical"


def test_same_seed_same_views_different_seed_different_views(images):
    cfg = PRESETS["strong"]
    assert torch.equal(augment(images, cfg, generator=7), augment(images, cfg, generator=7))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(augment(images, cfg, generator=g1), augment(images, cfg, generator=g2))
    assert not torch.equal(augment(images, cfg, generator=7), augment(images, cfg, generator=8))
    # A generator is advanced by each call, so consecutive calls differ.
    g = torch.Generator().manual_seed(7)
    assert not torch.equal(augment(images, cfg, generator=g), augment(images, cfg, generator=g))


def test_global_rng_untouched_with_seed_or_generator(images):
    torch.manual_seed(99)
    state = torch.get_rng_state()
    augment(images, PRESETS["strong"], generator=3)
    augment(images, AugmentConfig(), generator=torch.Generator().manual_seed(3))
    preview(images[0], PRESETS["strong"], n=4, seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def test_no_generator_follows_torch_manual_seed(images):
    torch.manual_seed(11)
    a = augment(images, AugmentConfig())
    torch.manual_seed(11)
    b = augment(images, AugmentConfig())
    assert torch.equal(a, b)


def test_draws_do_not_depend_on_which_ops_are_on(images):
    # Adding greyscale (p = 1) to crop-only views must keep the same crops: grey(crop) == crop + grey.
    crop = augment(images, only(crop=True), generator=4)
    crop_grey = augment(images, only(crop=True, grayscale=True, grayscale_p=1.0), generator=4)
    expected = _luma(crop.numpy())
    np.testing.assert_allclose(crop_grey[:, 0].numpy(), expected, atol=1e-5)


# ---- each op does what it says -------------------------------------------------------------------------------
def test_none_preset_is_identity(images):
    out = augment(images, PRESETS["none"], generator=0)
    torch.testing.assert_close(out, images.float() / 255, atol=0, rtol=0)
    assert PRESETS["none"].is_identity


def test_full_area_crop_is_identity(images):
    x = images.float() / 255
    out = augment(images, only(crop=True, crop_scale=(1.0, 1.0)), generator=0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    # The same through the resampling path (flip on forces the warp): original or mirror, to float precision.
    out = augment(images, only(crop=True, crop_scale=(1.0, 1.0), flip=True), generator=0)
    error = torch.minimum((out - x).abs().amax((1, 2, 3)), (out - x.flip(-1)).abs().amax((1, 2, 3)))
    assert (error < 1e-5).all()


def test_flip_only_mirrors_about_half(images):
    x = images.float() / 255
    many = x[:1].expand(400, -1, -1, -1)
    out = augment(many, only(flip=True), generator=0)
    same = (out == many).flatten(1).all(1)
    mirrored = (out == many.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all(), "flip must give the original or its exact mirror"
    assert 0.4 < mirrored.float().mean().item() < 0.6  # 400 fair coins: sd 0.025


def test_crop_area_and_aspect_ratio_follow_the_settings():
    # A ramp image (value = x / W) turns a crop's width into the spread of values across a row.
    n, size = 64, 32
    ramp_x = (torch.arange(size) / size).view(1, 1, 1, size).expand(n, 3, size, size)
    ramp_y = (torch.arange(size) / size).view(1, 1, size, 1).expand(n, 3, size, size)
    scale = 0.25
    cfg = only(crop=True, crop_scale=(scale, scale))
    out_x = augment(ramp_x, cfg, generator=2)
    out_y = augment(ramp_y, cfg, generator=2)  # same seed -> same boxes
    # Columns step by (crop width / W) pixels, i.e. by width_fraction / W in ramp units. Measured between the
    # second and second-last columns, which lie inside the image for crops wider than a third of it.
    width = (out_x[:, 0, 0, -2] - out_x[:, 0, 0, 1]) / (size - 3) * size
    height = (out_y[:, 0, -2, 0] - out_y[:, 0, 1, 0]) / (size - 3) * size
    np.testing.assert_allclose((width * height).numpy(), scale, atol=1e-4)
    ratio = (width / height).numpy()
    assert (ratio >= 3 / 4 - 1e-4).all() and (ratio <= 4 / 3 + 1e-4).all()
    assert ratio.std() > 0.05  # the aspect ratio is drawn per sample


def test_crops_stay_inside_the_image():
    flat = torch.full((128, 3, 16, 16), 0.7)
    out = augment(flat, only(crop=True, crop_scale=(0.08, 1.0), flip=True), generator=0)
    torch.testing.assert_close(out, flat, atol=1e-5, rtol=0)  # no black border sampled


def test_rotation_turns_about_the_centre():
    white = torch.ones(64, 3, 17, 17)
    out = augment(white, only(rotation=True, rotation_degrees=45.0), generator=0)
    assert torch.allclose(out[:, :, 7:10, 7:10], torch.ones(1)), "the centre stays inside the image"
    corner = out[:, 0, 0, 0]
    assert (corner < 1).float().mean() > 0.5, "rotated corners leave the image and turn black"
    assert (corner >= 0).all()


def test_grayscale_p1_gives_luma_in_every_channel(images):
    out = augment(images, only(grayscale=True, grayscale_p=1.0), generator=0).numpy()
    np.testing.assert_allclose(out[:, 0], out[:, 1], atol=0)
    np.testing.assert_allclose(out[:, 0], out[:, 2], atol=0)
    np.testing.assert_allclose(out[:, 0], _luma(images.numpy() / 255.0), atol=1e-5)


def test_grayscale_probability_is_per_sample(images):
    out = augment(images[:1].expand(400, -1, -1, -1), only(grayscale=True, grayscale_p=0.3), generator=0)
    grey = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert 0.2 < grey.float().mean().item() < 0.4


def test_solarize_threshold_zero_inverts(images):
    out = augment(images, only(solarize=True, solarize_threshold=0.0, solarize_p=1.0), generator=0)
    torch.testing.assert_close(out, 1 - images.float() / 255, atol=1e-6, rtol=0)


def test_solarize_matches_numpy_reference(images):
    x = images.numpy() / 255.0
    out = augment(images, only(solarize=True, solarize_threshold=0.5, solarize_p=1.0), generator=0).numpy()
    np.testing.assert_allclose(out, np.where(x >= 0.5, 1 - x, x), atol=1e-6)


def test_brightness_scales_each_image_by_one_factor(images):
    x = 0.1 + 0.4 * images.float() / 255  # in [0.1, 0.5]: no clipping at factor <= 1.4
    out = augment(x, jitter_only(brightness=0.4), generator=0)
    ratio = (out / x).flatten(1)
    np.testing.assert_allclose(ratio.std(1).numpy(), 0, atol=1e-5)  # one factor per image
    factor = ratio.mean(1)
    assert (factor >= 0.6 - 1e-5).all() and (factor <= 1.4 + 1e-5).all()
    assert factor.std() > 0.05  # drawn per image


def test_contrast_keeps_mean_luma(images):
    x = 0.3 + 0.4 * images.float() / 255  # contrast <= 1.4 around the mean stays inside [0, 1]
    out = augment(x, jitter_only(contrast=0.4), generator=0)
    np.testing.assert_allclose(_luma(out.numpy()).mean((1, 2)), _luma(x.numpy()).mean((1, 2)), atol=1e-5)
    assert not torch.allclose(out, x)


def test_saturation_keeps_luma_per_pixel(images):
    x = 0.3 + 0.4 * images.float() / 255
    out = augment(x, jitter_only(saturation=0.4), generator=0)
    np.testing.assert_allclose(_luma(out.numpy()), _luma(x.numpy()), atol=1e-5)
    assert not torch.allclose(out, x)


def test_hue_shift_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(9, 3, 12, 12, generator=g)
    x[0] = x[0, :1]  # a grey image: hue has no effect
    shifts = torch.tensor([0.3, -0.5, -0.25, -0.1, 0.0, 0.05, 0.2, 0.45, 0.5])
    reference = torch.stack([TF.adjust_hue(img, float(s)) for img, s in zip(x, shifts)])
    torch.testing.assert_close(_shift_hue(x, shifts), reference, atol=1e-5, rtol=0)


def test_hue_jitter_keeps_value_and_chroma(images):
    x = images.float() / 255
    out = augment(x, jitter_only(hue=0.5), generator=0)
    torch.testing.assert_close(out.amax(1), x.amax(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.amin(1), x.amin(1), atol=1e-5, rtol=0)
    assert not torch.allclose(out, x, atol=1e-3)


def test_blur_smooths_and_keeps_flat_images_flat(images):
    cfg = only(blur=True, blur_p=1.0, blur_sigma=(1.0, 2.0))
    x = images.float() / 255
    out = augment(x, cfg, generator=0)
    assert (out.flatten(1).std(1) < x.flatten(1).std(1)).all()
    torch.testing.assert_close(out.mean(), x.mean(), atol=5e-3, rtol=0)  # reflect padding keeps the mean, roughly
    flat = torch.full((4, 3, 16, 16), 0.3)
    torch.testing.assert_close(augment(flat, cfg, generator=0), flat, atol=1e-6, rtol=0)


# ---- preview -------------------------------------------------------------------------------------------------
def test_preview_shape_and_determinism(images):
    views = preview(images[0], AugmentConfig(), n=6, seed=3)
    assert views.shape == (6, 3, 16, 16) and views.dtype == torch.float32
    assert torch.equal(views, preview(images[0], AugmentConfig(), n=6, seed=3))
    assert not torch.equal(views, preview(images[0], AugmentConfig(), n=6, seed=4))
    assert preview(images[0].float() / 255, PRESETS["none"], n=2).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=1000), dict(n=2.5), dict(image="3d")])
def test_preview_rejects_bad_arguments(images, bad):
    kwargs = {"image": images[0], "cfg": AugmentConfig(), "n": 4, **bad}
    if kwargs["image"] == "3d":
        kwargs["image"] = images[:2]
    with pytest.raises(ValueError):
        preview(**kwargs)


# ---- input checks --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(3, 8, 8, dtype=torch.uint8), "(N, C, H, W)"),
        (torch.zeros(2, 2, 8, 8, dtype=torch.uint8), "1 or 3 channels"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), "uint8"),
        (torch.full((2, 3, 8, 8), 255.0), "[0, 1]"),
        (np.zeros((2, 3, 8, 8)), "torch.Tensor"),
    ],
)
def test_augment_rejects_bad_images(x, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        augment(x, AugmentConfig(), generator=0)


@pytest.mark.parametrize("generator", ["seed", -1, 1.5, True])
def test_augment_rejects_bad_generator(images, generator):
    with pytest.raises(ValueError, match="generator|seed"):
        augment(images, AugmentConfig(), generator=generator)


def test_augment_rejects_a_non_config(images):
    with pytest.raises(ValueError, match="AugmentConfig"):
        augment(images, {"crop": True}, generator=0)


# ---- config --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.6, 0.2)),
        ("crop_scale", (0.2, 1.5)),
        ("crop_scale", (0.2,)),
        ("crop_scale", "big"),
        ("rotation_degrees", -1.0),
        ("rotation_degrees", 181.0),
        ("brightness", -0.1),
        ("contrast", 2.5),
        ("saturation", float("nan")),
        ("hue", 0.6),
        ("jitter_p", 1.5),
        ("grayscale_p", -0.1),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_sigma", (2.0, 1.0)),
        ("blur_p", 2.0),
        ("solarize_threshold", 1.2),
        ("solarize_p", -1.0),
        ("flip", "yes"),
        ("crop", 1),
        ("rotation_degrees", True),
        ("hue", "0.1"),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(PlaygroundError, match=field) as info:
        AugmentConfig(**{field: value})
    assert isinstance(info.value, ValueError)
    assert str(info.value).endswith(".")


def test_config_normalises_json_types():
    cfg = AugmentConfig(crop_scale=[0.5, 1], rotation_degrees=10)
    assert cfg.crop_scale == (0.5, 1.0) and isinstance(cfg.crop_scale, tuple)
    assert isinstance(cfg.rotation_degrees, float)
    hash(cfg)  # frozen and hashable, usable as a cache key


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_to_dict_from_dict_round_trip_through_json(name):
    cfg = PRESETS[name]
    d = cfg.to_dict()
    assert AugmentConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert AugmentConfig.from_dict(d) == cfg


def test_from_dict_defaults_and_unknown_keys():
    assert AugmentConfig.from_dict({}) == AugmentConfig()
    assert AugmentConfig.from_dict({"blur": True}).blur is True
    with pytest.raises(PlaygroundError, match="colour_jitter") as info:
        AugmentConfig.from_dict({"colour_jitter": True})
    assert "color_jitter" in str(info.value)  # the message lists the allowed names
    with pytest.raises(PlaygroundError, match="hue"):
        AugmentConfig.from_dict({"hue": 0.9})
    with pytest.raises(PlaygroundError, match="mapping"):
        AugmentConfig.from_dict([("crop", True)])


def test_presets_and_describe():
    assert PRESETS["simclr"] == AugmentConfig()
    assert {"simclr", "none", "crop only", "colour only", "strong"} <= set(PRESETS)
    lines = AugmentConfig().describe()
    assert lines[0] == "random crop of 20–100% of the area, resized back to full size"
    assert any("greyscale 20%" in line for line in lines)
    assert any("hue ±0.1" in line for line in lines)
    assert PRESETS["none"].describe() == ["no augmentation: every view is the original image"]
    strong = " ".join(PRESETS["strong"].describe())
    assert "blur" in strong and "solarize" in strong and "rotation" in strong
    for cfg in PRESETS.values():
        assert all(isinstance(line, str) and line for line in cfg.describe())
