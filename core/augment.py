"""Random image augmentations that make the two "views" of contrastive learning.

SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations") learns by
pulling together two random views of one image; which invariances the encoder learns is decided almost entirely
by the ops used here. The default follows SimCLR's recipe (random resized crop, horizontal flip, colour jitter,
grayscale); BYOL (Grill et al. 2020) adds Gaussian blur and solarize, available as options.

Everything is batched: each call draws independent parameters per image and applies every op to the whole batch
at once, on the images' own device (CPU, CUDA or MPS). No per-image Python loop.

Randomness is honest and cheap: every random number is drawn up front from one ``torch.Generator`` on the CPU
(N numbers per op, a few kilobytes), then moved to the images' device. Nothing here touches torch's global RNG
when a generator or an int seed is given, the same seed gives the same views on every device, and the draws do
not depend on which ops are switched on, so toggling blur in the preview keeps the same crops.

The pixel ops are kornia's (``kornia.enhance`` / ``kornia.filters`` / ``kornia.color``, given our per-sample
parameters) with two exceptions in plain torch, each compared with kornia by
``benchmarks/speed/bench_augment.py --ops``:

* crop + flip + rotation are one affine warp (one ``grid_sample``) instead of kornia's three resampling modules:
  one resampling costs a third as much, and only one interpolation softens the image;
* hue shift: ``kornia.enhance.adjust_hue`` (a full RGB -> HSV -> RGB round trip) cost more than all other ops
  together; :func:`_shift_hue` is torchvision's formula in closed form (value and chroma do not change under a
  hue rotation, so only the hue is computed).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_saturation_with_gray_subtraction,
    solarize,
)
from kornia.filters import gaussian_blur2d

from core.errors import PlaygroundError
from core.settings_schema import AUGMENT as AUGMENT_SPECS
from core.settings_schema import SHAPES_RECIPE, check, declared

__all__ = [
    "AugmentConfig",
    "PRESETS",
    "DEFAULT_PRESET",
    "augment",
    "preview",
]

# Aspect ratios a random resized crop may take (width / height), as in torchvision and SimCLR. Not a setting:
# the playground teaches what crop *area* does; squashing is a side effect, kept at the standard amount.
CROP_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
_CROP_TRIES = 10  # candidate crops per image before the fallback, as torchvision's RandomResizedCrop

# The four colour-jitter steps, applied in an order drawn once per call (see augment()).
_JITTER_STEPS = ("brightness", "contrast", "saturation", "hue")


@declared(AUGMENT_SPECS)  # defaults and bounds as core.settings_schema declares them
@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations make a view, each with an on/off switch and a strength.

    The defaults are SimCLR's CIFAR recipe. Build from JSON with :meth:`from_dict`; every field is checked in
    ``__post_init__`` and a bad one raises :class:`core.errors.PlaygroundError` (a ``ValueError``) naming the
    field and the allowed range.

    >>> AugmentConfig(crop_scale=(0.5, 1.0), color_jitter=False).describe()[0]
    'random crop of 50–100% of the area, resized back to full size'
    """

    crop: bool = True
    crop_scale: tuple[float, float] = (0.2, 1.0)  # area fraction of the crop; SimCLR uses 0.08 on ImageNet, 0.2 on CIFAR
    flip: bool = True  # horizontal flip, p = 0.5
    rotation: bool = False
    rotation_degrees: float = 15.0  # angle drawn uniformly in [-deg, +deg]; corners outside the image are black
    color_jitter: bool = True
    brightness: float = 0.4  # factors drawn in [max(0, 1 - s), 1 + s], torchvision's ColorJitter convention
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # shift drawn in [-hue, +hue] turns of the colour wheel (0.5 = half a turn)
    jitter_p: float = 0.8  # probability that an image is colour-jittered at all
    grayscale: bool = True
    grayscale_p: float = 0.2
    blur: bool = False
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels; kernel is ~10% of the image side (odd, >= 3), as SimCLR
    blur_p: float = 0.5
    solarize: bool = False
    solarize_threshold: float = 0.5  # pixels at or above it are inverted (x -> 1 - x)
    solarize_p: float = 0.2

    def __post_init__(self) -> None:
        # Bounds are declared once in core.settings_schema (the app's settings table reads the same ones), so a
        # link, a settings file and this config refuse a value with one sentence. check() also normalises
        # types (JSON gives lists and ints), so equality and to_dict are stable.
        for name, spec in AUGMENT_SPECS.items():
            object.__setattr__(self, name, check(spec, getattr(self, name), PlaygroundError))

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (pairs become lists); :meth:`from_dict` reads it back to an equal config."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AugmentConfig:
        """Build from a (JSON) mapping. Missing keys take their defaults; unknown keys are an error.

        Raises :class:`core.errors.PlaygroundError` (a ``ValueError``) for unknown keys or bad values.
        """
        if not isinstance(d, Mapping):
            raise PlaygroundError(f"An augmentation config must be a mapping of settings; got {type(d).__name__}.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise PlaygroundError(
                f"Unknown augmentation setting(s) {', '.join(unknown)}; allowed are {', '.join(known)}."
            )
        return cls(**dict(d))

    # ---- human summary -------------------------------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        """True when every op is off (or has no effect), so both views equal the original image."""
        jitter_active = self.color_jitter and self.jitter_p > 0 and (
            self.brightness > 0 or self.contrast > 0 or self.saturation > 0 or self.hue > 0
        )
        return not (
            (self.crop and self.crop_scale != (1.0, 1.0))
            or self.flip
            or (self.rotation and self.rotation_degrees > 0)
            or jitter_active
            or (self.grayscale and self.grayscale_p > 0)
            or (self.blur and self.blur_p > 0)
            or (self.solarize and self.solarize_p > 0)
        )

    def describe(self) -> list[str]:
        """One plain-English line per active op, in the order they are applied."""
        lines: list[str] = []
        if self.crop and self.crop_scale != (1.0, 1.0):
            lo, hi = self.crop_scale
            lines.append(f"random crop of {_pct(lo)}–{_pct(hi)}% of the area, resized back to full size")
        if self.flip:
            lines.append("horizontal flip half of the time")
        if self.rotation and self.rotation_degrees > 0:
            lines.append(f"rotation by up to ±{self.rotation_degrees:g}° (corners outside the image turn black)")
        if self.color_jitter and self.jitter_p > 0:
            parts = [
                f"{name} ±{_pct(getattr(self, name))}%"
                for name in ("brightness", "contrast", "saturation")
                if getattr(self, name) > 0
            ]
            if self.hue > 0:
                parts.append(f"hue ±{self.hue:g} turn")
            if parts:
                lines.append(f"colour jitter {_pct(self.jitter_p)}% of the time: {', '.join(parts)}")
        if self.grayscale and self.grayscale_p > 0:
            lines.append(f"greyscale {_pct(self.grayscale_p)}% of the time")
        if self.blur and self.blur_p > 0:
            lo, hi = self.blur_sigma
            lines.append(f"Gaussian blur (sigma {lo:g}–{hi:g} px) {_pct(self.blur_p)}% of the time")
        if self.solarize and self.solarize_p > 0:
            lines.append(
                f"solarize (invert pixels at or above {self.solarize_threshold:g}) "
                f"{_pct(self.solarize_p)}% of the time"
            )
        if not lines or self.is_identity:
            return ["no augmentation: every view is the original image"]
        return lines


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}"


#: Named starting points for the UI. "simclr" is the default (``AugmentConfig()``).
PRESETS: dict[str, AugmentConfig] = {
    "simclr": AugmentConfig(),
    "none": AugmentConfig(crop=False, flip=False, color_jitter=False, grayscale=False),
    "crop only": AugmentConfig(flip=False, color_jitter=False, grayscale=False),
    "colour only": AugmentConfig(crop=False, flip=False),
    "geometry only": AugmentConfig(color_jitter=False, grayscale=False, rotation=True),
    # The built-in shapes: six hues 60 degrees apart survive SimCLR's hue 0.1, so colour stays a shortcut;
    # a full hue turn removes it and crops no smaller than 30% keep the shape in view. Measured: held-out
    # shape kNN 0.97 after 250 steps, against 0.28 with the plain "simclr" recipe (benchmarks/RESULTS.md).
    "shapes": AugmentConfig(**SHAPES_RECIPE),  # (0.3, 1) crops, hue 0.5: declared in core.settings_schema
    # Grey handwritten digits: a mirrored digit is another symbol, so no flip, and crops no smaller than half the
    # area keep the stroke in view; the jitter's brightness and contrast still vary the ink. Measured with the
    # default TrainConfig (200 steps), held-out kNN on digit, seeds 0 / 1: 0.989 / 0.983 (untrained 0.944 / 0.933;
    # textbook simclr 0.978 / 0.961; an earlier no-jitter + rotation recipe 0.964 / 0.958).
    "digits": AugmentConfig(crop_scale=(0.5, 1.0), flip=False),
    # BYOL-style: wider crops, stronger jitter, plus blur and solarize.
    "strong": AugmentConfig(
        crop_scale=(0.08, 1.0),
        rotation=True,
        rotation_degrees=20.0,
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        blur=True,
        solarize=True,
    ),
}
DEFAULT_PRESET = "simclr"

# The recipe each dataset starts from (the Augmentation Lab and the Train page show it, and a TrainConfig with
# ``augment=None`` uses it). SimCLR's textbook recipe stays one click away in PRESETS["simclr"]: on shapes it
# is the shortcut-learning lesson (colour survives hue 0.1, so shape is never learned).
DATASET_RECIPES: dict[str, str] = {"shapes": "shapes", "digits": "digits", "photos": "simclr"}


def recipe_name_for(dataset: str | None) -> str:
    """Name of the :data:`PRESETS` recipe a dataset starts from ("simclr" for user folders and downloads).

    >>> recipe_name_for("shapes"), recipe_name_for("my_photos.zip")
    ('shapes', 'simclr')
    """
    return DATASET_RECIPES.get(str(dataset or "").lower(), DEFAULT_PRESET)


def recipe_for(dataset: str | None) -> AugmentConfig:
    """The :class:`AugmentConfig` a dataset starts from (see :func:`recipe_name_for`)."""
    return PRESETS[recipe_name_for(dataset)]


# ---- parameter sampling --------------------------------------------------------------------------------------
def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        if generator < 0:
            raise ValueError(f"A seed must be a non-negative integer; got {generator}.")
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(
        f"generator must be a torch.Generator, an int seed or None; got {type(generator).__name__}."
    )


def _uniform(n: int, *shape: int, generator: torch.Generator | None) -> torch.Tensor:
    """(n, *shape) float32 uniforms in [0, 1) on the CPU, from the generator (global RNG when None)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand((n, *shape), generator=generator, device=device).cpu()


@dataclass
class _Params:
    """Uniform draws for one call, all on the CPU. Shapes in comments; N = batch size."""

    crop: torch.Tensor  # (N, tries, 4): area, log-ratio, x position, y position
    flip: torch.Tensor  # (N,)
    angle: torch.Tensor  # (N,)
    jitter_gate: torch.Tensor  # (N,)
    jitter: torch.Tensor  # (N, 4): brightness, contrast, saturation, hue
    jitter_order: torch.Tensor  # (4,) permutation of the steps, one per call
    gray_gate: torch.Tensor  # (N,)
    blur_gate: torch.Tensor  # (N,)
    blur_sigma: torch.Tensor  # (N,)
    solarize_gate: torch.Tensor  # (N,)


def _draw(n: int, generator: torch.Generator | None) -> _Params:
    # Always the same draws in the same order, whatever ops are on: a seed then fixes every op's randomness
    # independently of the others, and strengths only rescale the uniforms.
    return _Params(
        crop=_uniform(n, _CROP_TRIES, 4, generator=generator),
        flip=_uniform(n, generator=generator),
        angle=_uniform(n, generator=generator),
        jitter_gate=_uniform(n, generator=generator),
        jitter=_uniform(n, 4, generator=generator),
        jitter_order=torch.argsort(_uniform(4, generator=generator)),
        gray_gate=_uniform(n, generator=generator),
        blur_gate=_uniform(n, generator=generator),
        blur_sigma=_uniform(n, generator=generator),
        solarize_gate=_uniform(n, generator=generator),
    )


def _crop_boxes(u: torch.Tensor, height: int, width: int, scale: tuple[float, float]) -> torch.Tensor:
    """Random resized crop boxes (torchvision's algorithm, vectorised, continuous coordinates).

    u: (N, tries, 4) uniforms. Returns (N, 4) float64 boxes (x0, y0, w, h) in pixels.
    """
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0].double())  # (N, T)
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1].double())  # (N, T) width / height
    w = torch.sqrt(area * ratio)
    h = torch.sqrt(area / ratio)
    fits = (w <= width) & (h <= height)  # (N, T)
    # First try that fits; when none does, torchvision keeps the whole image (or its central part when the image
    # itself is outside the allowed ratio range).
    first = torch.argmax(fits.to(torch.int8), dim=1)  # (N,) index of the first True (0 when none)
    any_fit = fits.any(dim=1)
    rows = torch.arange(u.shape[0])
    w, h = w[rows, first], h[rows, first]
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        fw, fh = float(width), width / CROP_RATIO[0]
    elif in_ratio > CROP_RATIO[1]:
        fw, fh = height * CROP_RATIO[1], float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(any_fit, w, torch.full_like(w, fw))
    h = torch.where(any_fit, h, torch.full_like(h, fh))
    ux, uy = u[rows, first, 2].double(), u[rows, first, 3].double()
    x0 = torch.where(any_fit, ux * (width - w), (width - w) / 2)
    y0 = torch.where(any_fit, uy * (height - h), (height - h) / 2)
    return torch.stack([x0, y0, w, h], dim=1)


def _warp_matrices(cfg: AugmentConfig, p: _Params, n: int, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices mapping output to input, normalised coordinates (align_corners=False).

    In pixels, relative to the image centre: src = centre_of_crop + S @ Flip @ R @ out, with S the crop's scale
    (crop size / image size). That is crop -> resize -> flip -> rotate, composed into one resampling.
    """
    if cfg.crop:
        box = _crop_boxes(p.crop, height, width, cfg.crop_scale)
    else:
        box = torch.tensor([[0.0, 0.0, float(width), float(height)]], dtype=torch.float64).expand(n, 4)
    x0, y0, w, h = box.unbind(1)
    sx, sy = w / width, h / height  # (N,) crop size relative to the image
    flip = torch.ones(n, dtype=torch.float64)
    if cfg.flip:
        flip = torch.where(p.flip < 0.5, -1.0, 1.0).double()  # (N,) -1 mirrors x
    if cfg.rotation:
        angle = (2 * p.angle.double() - 1) * math.radians(cfg.rotation_degrees)
    else:
        angle = torch.zeros(n, dtype=torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # M = S @ Flip @ R in pixel units; R = [[cos, -sin], [sin, cos]].
    m00, m01 = sx * flip * cos, -sx * flip * sin
    m10, m11 = sy * sin, sy * cos
    # To normalised coordinates: n = D^-1 p with D = diag(W/2, H/2), so A = D^-1 M D.
    half_w, half_h = width / 2, height / 2
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = m00
    theta[:, 0, 1] = m01 * half_h / half_w
    theta[:, 1, 0] = m10 * half_w / half_h
    theta[:, 1, 1] = m11
    theta[:, 0, 2] = (x0 + w / 2 - half_w) / half_w  # crop centre, normalised
    theta[:, 1, 2] = (y0 + h / 2 - half_h) / half_h
    return theta


# ---- pixel ops -----------------------------------------------------------------------------------------------
def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of RGB images; torchvision's ``adjust_hue`` formula, batched.

    x: (N, 3, H, W) float in [0, 1]; shift: (N,) in turns, [-0.5, 0.5]. Returns (N, 3, H, W).
    Value (max) and chroma (max - min) do not change under a hue rotation, so only the hue is computed, and
    the closed-form HSV -> RGB map  channel = max - chroma * clamp(min(k, 4 - k), 0, 1),  k = (n + hue) mod 6
    with n = 5, 3, 1 for R, G, B  is applied directly. Pairwise maximum/minimum and floor-based "mod" are used
    because ``max(dim=1)`` with indices and ``remainder`` were each several times slower on CPU.
    """
    r, g, b = x.unbind(dim=1)  # (N, H, W) each
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    inv = 1.0 / chroma.clamp_min(1e-12)  # grey pixels (chroma 0) get hue 0, and the result is max anyway
    # Hue in sextants [0, 6) from whichever channel is the maximum; on ties both branches agree.
    hue = torch.where(r == maxc, (g - b) * inv, torch.where(g == maxc, (b - r) * inv + 2.0, (r - g) * inv + 4.0))
    hue = hue + (6.0 * shift).view(-1, 1, 1)
    offsets = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = hue.unsqueeze(1) + offsets  # (N, 3, H, W)
    k = k - 6.0 * torch.floor(k / 6.0)  # mod 6
    ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return (maxc.unsqueeze(1) - chroma.unsqueeze(1) * ramp).clamp_(0.0, 1.0)


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, H, W), align_corners=False)`` by broadcasting: (N, 2, 3) -> (N, H, W, 2).

    Same numbers; the library version runs a batched (H*W, 3) @ (3, 2) matmul, which is slower on a CPU for small
    images (``bench_augment.py --ops``).
    """
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1  # pixel centres
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    t = theta.view(-1, 1, 1, 2, 3)
    # out[..., j] = theta[j, 0] * x + theta[j, 1] * y + theta[j, 2]
    return xs.view(1, 1, width, 1) * t[..., 0] + ys.view(1, height, 1, 1) * t[..., 1] + t[..., 2]


def _apply_where(
    x: torch.Tensor, selected: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Apply ``fn(x_subset, index)`` to the selected samples only; ``selected`` is a (N,) bool CPU mask.

    The mask lives on the CPU, so picking the subset costs no device sync; unselected images are not computed.
    """
    index = torch.nonzero(selected).squeeze(1)
    if index.numel() == 0:
        return x
    if index.numel() == x.shape[0]:
        return fn(x, index)
    dev_index = index.to(x.device)
    return x.index_copy(0, dev_index, fn(x.index_select(0, dev_index), index))


def _blur_kernel_size(height: int, width: int) -> int:
    size = max(3, int(0.1 * min(height, width)))  # SimCLR: 10% of the image side
    return size if size % 2 == 1 else size + 1


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (N, C, H, W); got {type(images).__name__}.")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got shape {tuple(images.shape)}.")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (dimension 1); got {images.shape[1]}.")


def _to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """Check (N, C, H, W) uint8 / float images and return float32 in [0, 1] on the same device (a new tensor)."""
    _check_images(images)
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if not images.dtype.is_floating_point:
        raise ValueError(f"images must be uint8 (0–255) or float (0–1); got dtype {images.dtype}.")
    out = images.to(torch.float32, copy=True)
    if out.numel():
        lo, hi = torch.stack(torch.aminmax(out)).tolist()  # one device sync for both
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(
                f"float images must hold values in [0, 1]; got values from {lo:g} to {hi:g} "
                "(pass uint8 for 0–255 data)."
            )
    return out.clamp_(0.0, 1.0)


# ---- public API ----------------------------------------------------------------------------------------------
def augment(
    images: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """One random view of every image, with independent random parameters per image.

    Args:
        images: uint8 (0–255) or float (0–1) images, shape (N, C, H, W), C in {1, 3}, on any device.
        cfg: which ops to apply and how strongly.
        generator: a ``torch.Generator`` (advanced by the call), an int seed, or None for torch's global RNG
            (the usual torch convention, so ``torch.manual_seed`` reproduces it). With a generator or seed the
            global RNG is left untouched, and the same seed gives the same views on every device.

    Returns:
        float32 views in [0, 1], shape (N, C, H, W), on the images' device.

    Op order (SimCLR, then BYOL's extras): crop -> flip -> rotation (one warp) -> colour jitter -> greyscale
    -> blur -> solarize. Jitter factors are drawn per image; the order of its four steps (brightness, contrast,
    saturation, hue) is drawn once per call, as kornia's ``ColorJitter`` does: per-image orders would split the
    batch into up to 24 groups, and without clipping brightness, contrast and saturation commute anyway.

    >>> views = augment(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), AugmentConfig(), generator=0)
    >>> views.shape, views.dtype
    (torch.Size([4, 3, 32, 32]), torch.float32)
    """
    if not isinstance(cfg, AugmentConfig):
        raise ValueError(f"cfg must be an AugmentConfig; got {type(cfg).__name__}.")
    gen = _as_generator(generator)
    x = _to_unit_float(images)  # (N, C, H, W) float32, a fresh tensor we may modify
    n, channels, height, width = x.shape
    if n == 0 or cfg.is_identity:
        return x
    p = _draw(n, gen)
    device = x.device

    # Geometry: crop, flip and rotation as one affine resampling.
    if cfg.crop or (cfg.rotation and cfg.rotation_degrees > 0):
        theta = _warp_matrices(cfg, p, n, height, width).float().to(device)  # cast on CPU: MPS has no float64
        grid = _affine_grid(theta, height, width)  # (N, H, W, 2)
        # A crop touching the image edge samples up to half a pixel past the outer pixel centres: "border"
        # repeats the edge there, as resizing a crop does. A rotation's corners leave the image: black ("zeros"),
        # as torchvision's RandomRotation fills them.
        rotating = cfg.rotation and cfg.rotation_degrees > 0
        padding = "zeros" if rotating else "border"
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    elif cfg.flip:
        # Flip alone needs no resampling: an exact mirror of the chosen images.
        x = _apply_where(x, p.flip < 0.5, lambda sub, idx: sub.flip(-1))

    if cfg.color_jitter:
        x = _apply_where(x, p.jitter_gate < cfg.jitter_p, lambda sub, idx: _jitter(sub, cfg, p, idx))

    if cfg.grayscale and channels == 3:
        x = _apply_where(
            x, p.gray_gate < cfg.grayscale_p, lambda sub, idx: rgb_to_grayscale(sub).repeat(1, 3, 1, 1)
        )

    if cfg.blur:
        lo, hi = cfg.blur_sigma
        size = _blur_kernel_size(height, width)

        def blur(sub: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            sigma = (lo + (hi - lo) * p.blur_sigma[idx]).unsqueeze(1).expand(-1, 2)  # (n, 2): same in y and x
            return gaussian_blur2d(sub, (size, size), sigma.to(device), border_type="reflect")

        x = _apply_where(x, p.blur_gate < cfg.blur_p, blur)

    if cfg.solarize:
        x = _apply_where(x, p.solarize_gate < cfg.solarize_p, lambda sub, idx: solarize(sub, cfg.solarize_threshold))

    return x.clamp_(0.0, 1.0).contiguous()


def _jitter(x: torch.Tensor, cfg: AugmentConfig, p: _Params, index: torch.Tensor) -> torch.Tensor:
    """Colour jitter (torchvision ``ColorJitter`` maths) on the selected images. x: (n, C, H, W) -> same."""
    u = p.jitter[index]  # (n, 4) uniforms for the selected images
    device = x.device
    for step in p.jitter_order.tolist():
        name = _JITTER_STEPS[step]
        strength = getattr(cfg, name)
        if strength <= 0:
            continue
        if name == "hue":
            if x.shape[1] == 3:
                x = _shift_hue(x, ((2 * u[:, 3] - 1) * strength).to(device))
            continue
        lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
        factor = (lo + (hi - lo) * u[:, step]).to(device)  # (n,)
        if name == "brightness":
            x = adjust_brightness_accumulative(x, factor)
        elif name == "contrast":
            x = adjust_contrast_with_mean_subtraction(x, factor)
        elif x.shape[1] == 3:  # saturation has no meaning for one channel
            x = adjust_saturation_with_gray_subtraction(x, factor)
    return x


def preview(image: torch.Tensor, cfg: AugmentConfig, n: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` augmented views of one image for the Augmentation page (the original is shown separately).

    Shape: image (C, H, W) uint8 or float -> (n, C, H, W) float32 in [0, 1], same device. Deterministic in
    ``seed``; because the random draws do not depend on which ops are on, changing one setting keeps the rest
    of each view the same.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"preview needs one image of shape (C, H, W); got {shape}.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 256:
        raise ValueError(f"n (number of views) must be an integer from 1 to 256; got {n!r}.")
    return augment(image.unsqueeze(0).expand(int(n), -1, -1, -1), cfg, generator=seed)
