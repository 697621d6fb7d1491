"""Batched ``core.augment`` against the usual per-image torchvision/PIL pipeline with the same ops.

Task: two views of 256 images at 32 px (one SimCLR step's worth). The reference is what most SimCLR code does:
a ``torchvision.transforms`` (v1) ``Compose`` called on one PIL image at a time (RandomResizedCrop,
RandomHorizontalFlip, RandomApply(ColorJitter), RandomGrayscale, ..., ToTensor), then ``torch.stack``. The PIL
images are made once, outside the timing (as a dataset holding PIL images would), so the reference is timed at
its best. kornia's own augmentation modules are a third row. All are warmed up, then timed in turn ``--repeats``
times; medians and their ratios come from the same run. Not a test: the machine is shared and timings are noisy.

Run:  .venv/bin/python benchmarks/speed/bench_augment.py [--threads N] [--repeats R] [--preset simclr] [--ops]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

from core.augment import PRESETS, AugmentConfig, augment

QUESTION = "Two augmented views of a batch: batched core.augment vs per-image torchvision/PIL and kornia"
FULL = ["--ops"]
QUICK = ["--repeats", "2", "--n", "64"]
MINUTES = (1, 2)


def load_images(n: int, size: int) -> tuple[torch.Tensor, str]:
    """(n, 3, size, size) uint8: the built-in shapes when core.data exists, random pixels otherwise."""
    try:
        from core.data import load_dataset

        return load_dataset("shapes", n=n, size=size).images, "shapes (core.data)"
    except Exception:  # core.data not written yet, or different: random pixels are as costly to augment
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), "random uint8"


def torchvision_pipeline(cfg: AugmentConfig, size: int):
    """The per-image torchvision v1 Compose equivalent to ``cfg`` (PIL in, float tensor out)."""
    from torchvision import transforms as T

    ops: list = []
    if cfg.crop:
        ops.append(T.RandomResizedCrop(size, scale=cfg.crop_scale))
    if cfg.flip:
        ops.append(T.RandomHorizontalFlip())
    if cfg.rotation:
        ops.append(T.RandomRotation(cfg.rotation_degrees))
    if cfg.color_jitter:
        jitter = T.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
        ops.append(T.RandomApply([jitter], p=cfg.jitter_p))
    if cfg.grayscale:
        ops.append(T.RandomGrayscale(p=cfg.grayscale_p))
    if cfg.blur:
        kernel = max(3, int(0.1 * size)) | 1
        ops.append(T.RandomApply([T.GaussianBlur(kernel, sigma=cfg.blur_sigma)], p=cfg.blur_p))
    if cfg.solarize:
        ops.append(T.RandomSolarize(int(round(cfg.solarize_threshold * 255)), p=cfg.solarize_p))
    ops.append(T.ToTensor())
    return T.Compose(ops)


def kornia_pipeline(cfg: AugmentConfig, size: int):
    """kornia's own augmentation modules for ``cfg``, batched (a third point of comparison)."""
    import kornia.augmentation as K

    ops: list = []
    if cfg.crop:
        ops.append(K.RandomResizedCrop((size, size), scale=cfg.crop_scale, cropping_mode="resample"))
    if cfg.flip:
        ops.append(K.RandomHorizontalFlip())
    if cfg.rotation:
        ops.append(K.RandomRotation(cfg.rotation_degrees))
    if cfg.color_jitter:
        ops.append(K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_p))
    if cfg.grayscale:
        ops.append(K.RandomGrayscale(p=cfg.grayscale_p))
    if cfg.blur:
        kernel = max(3, int(0.1 * size)) | 1
        ops.append(K.RandomGaussianBlur((kernel, kernel), cfg.blur_sigma, p=cfg.blur_p))
    if cfg.solarize:
        t = cfg.solarize_threshold
        ops.append(K.RandomSolarize((t, t), (0.0, 0.0), p=cfg.solarize_p))
    return K.AugmentationSequential(*ops)


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare_ops(images: torch.Tensor, repeats: int) -> None:
    """The two places core.augment uses plain torch instead of kornia, timed side by side (2N images)."""
    import kornia
    import kornia.augmentation as K
    import torch.nn.functional as F

    from core.augment import _affine_grid, _draw, _shift_hue, _warp_matrices

    x = torch.cat([images, images]).float().div(255.0)
    n, _, h, w = x.shape
    g = torch.Generator().manual_seed(0)
    shift = torch.rand(n, generator=g) * 0.2 - 0.1
    cfg = AugmentConfig(rotation=True)
    theta = _warp_matrices(cfg, _draw(n, g), n, h, w).float()
    geometry = K.AugmentationSequential(
        K.RandomResizedCrop((h, w), scale=cfg.crop_scale, cropping_mode="resample"),
        K.RandomHorizontalFlip(),
        K.RandomRotation(cfg.rotation_degrees),
    )
    pairs = {
        "hue shift": (lambda: kornia.enhance.adjust_hue(x, shift * 2 * torch.pi), lambda: _shift_hue(x, shift)),
        "crop+flip+rotate": (
            lambda: geometry(x),
            lambda: F.grid_sample(x, _affine_grid(theta, h, w), padding_mode="zeros", align_corners=False),
        ),
        "affine grid": (
            lambda: F.affine_grid(theta, [n, 3, h, w], align_corners=False),
            lambda: _affine_grid(theta, h, w),
        ),
    }
    print(f"\nops where core.augment uses plain torch ({n} images, median ms of {repeats}):")
    print(f"{'op':<18} {'kornia/torch lib':>16} {'core.augment':>13} {'ratio':>6}")
    for name, (library, ours) in pairs.items():
        for _ in range(2):
            library(), ours()
        lib_t, our_t = [], []
        for _ in range(repeats):
            lib_t.append(timed(library))
            our_t.append(timed(ours))
        a, b = statistics.median(lib_t) * 1e3, statistics.median(our_t) * 1e3
        print(f"{name:<18} {a:>16.1f} {b:>13.1f} {a / b:>5.1f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--n", type=int, default=256, help="images per batch (two views each)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--preset", default="simclr", choices=sorted(PRESETS))
    parser.add_argument("--ops", action="store_true", help="also time the ops done in plain torch against kornia's")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from PIL import Image

    images, source = load_images(args.n, args.size)
    cfg = PRESETS[args.preset]
    pil_images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    pipeline = torchvision_pipeline(cfg, args.size)
    generator = torch.Generator().manual_seed(0)

    def per_image() -> None:
        views = [pipeline(img) for img in pil_images] + [pipeline(img) for img in pil_images]
        torch.stack(views)

    def batched() -> None:
        augment(images, cfg, generator), augment(images, cfg, generator)  # two views, as the trainer draws them

    kornia_aug = kornia_pipeline(cfg, args.size)

    def kornia_modules() -> None:
        x = images.float().div(255.0)
        kornia_aug(torch.cat([x, x]))

    for _ in range(3):  # warm-up: first calls pay for lazy imports, allocator growth, kernel selection
        per_image()
        batched()
        kornia_modules()
    ref_times, our_times, kornia_times = [], [], []
    for _ in range(args.repeats):  # interleaved so all three see the same background load
        ref_times.append(timed(per_image))
        our_times.append(timed(batched))
        kornia_times.append(timed(kornia_modules))
    ref, ours, korn = (statistics.median(t) for t in (ref_times, our_times, kornia_times))

    import kornia
    import torchvision

    print(machine_info())
    print(
        f"torchvision {torchvision.__version__}, kornia {kornia.__version__}, torch threads {torch.get_num_threads()}"
        f"{' (--threads)' if args.threads is not None else ' (default)'}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {_load()}"
    )
    print(f"task: two views of {args.n} images, {args.size} px, {source}, preset {args.preset!r}")
    print(f"ops: {'; '.join(cfg.describe())}")
    print(f"median of {args.repeats} runs after 3 warm-ups\n")
    width = 52
    print(f"{'pipeline':<{width}} {'median s':>9} {'min s':>8} {'img/s':>9}")
    rows = [
        ("torchvision v1 Compose per PIL image + stack", ref, min(ref_times)),
        ("kornia.augmentation modules (batched)", korn, min(kornia_times)),
        ("core.augment.augment, twice (batched)", ours, min(our_times)),
    ]
    for name, med, best in rows:
        print(f"{name:<{width}} {med:>9.4f} {best:>8.4f} {2 * args.n / med:>9.0f}")
    print(f"\nspeed-up of core.augment over per-image torchvision: {ref / ours:.2f}x median "
          f"({min(ref_times) / min(our_times):.2f}x on best runs; goal >= 3x)")
    print(f"speed-up of core.augment over kornia modules:      {korn / ours:.2f}x median")
    report(f"two views of {args.n} images at {args.size} px ({args.preset}): core.augment, median", f"{ours:.3f} s",
           beside=f"per-image torchvision/PIL {ref:.3f} s (**{ref / ours:.1f}x**); kornia modules {korn:.3f} s "
                  f"({korn / ours:.1f}x)",
           goal=f">= 3x: {'met' if ref / ours >= 3 else 'not met'}")
    if args.ops:
        compare_ops(images, args.repeats)


if __name__ == "__main__":
    main()
