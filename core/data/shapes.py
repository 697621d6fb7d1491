"""The built-in ``"shapes"`` set: procedural coloured shapes with five known factors of variation (shape, colour,
size, position, background) and captions, rendered in one vectorised NumPy pass.

The factors are what the invariance report and zero-shot pages probe: which ones does an embedding keep or throw
away? :func:`shape_masks` reads back where each shape lies (for the attribution pointing game).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.data import limits
from core.data.imageset import ImageSet
from core.data.limits import ProgressFn, check_memory, int_option

__all__ = ["SHAPES", "COLOURS", "SIZES", "SIZE_JITTER", "POSITIONS", "POSITION_JITTER", "ROTATION_JITTER",
           "BACKGROUNDS", "SHAPE_FACTORS", "render_shapes", "load_shapes", "shape_masks"]

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLOURS = {  # RGB, hues about 60 degrees apart so that colour is never ambiguous
    "red": (220, 35, 35),
    "yellow": (235, 195, 0),
    "green": (30, 165, 55),
    "cyan": (0, 190, 205),
    "blue": (35, 80, 235),
    "purple": (160, 45, 220),
}
# Shapes are big and near the centre so that shape is what a small CNN can see at 32 px; position and
# size are still factors, just gentle ones.
SIZES = {"small": 0.25, "large": 0.36}  # radius as a fraction of the image side
SIZE_JITTER = 0.07  # radius x U(1 - j, 1 + j)
POSITIONS = {  # centre (x, y) as a fraction of the side; y grows downwards
    "centre": (0.5, 0.5),
    "top left": (0.4, 0.4),
    "top right": (0.6, 0.4),
    "bottom left": (0.4, 0.6),
    "bottom right": (0.6, 0.6),
}
POSITION_JITTER = {"small": 0.03, "large": 0.01}  # +- per axis; small shapes have more room
ROTATION_JITTER = math.radians(12)  # +- ; well under the 45 degrees between square and diamond
BACKGROUNDS = {"black": (15, 15, 15), "grey": (115, 115, 115), "white": (240, 240, 240)}
SHAPE_FACTORS = {
    "shape": list(SHAPES),
    "colour": list(COLOURS),
    "size": list(SIZES),
    "position": list(POSITIONS),
    "background": list(BACKGROUNDS),
}


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test for one shape in its own frame: u right, v down, unit = the shape's radius.

    Sizes are set so the shapes cover similar areas (about 2.3-3.1 square units) and reach at most
    1.25 units from the centre.
    """
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if kind == "triangle":  # equilateral, apex up, circumradius 1.25 around its centroid
        R = 1.25
        return (v <= R / 2) & (np.abs(u) * math.sqrt(3.0) <= v + R)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.2
    if kind == "cross":  # a plus sign
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.36) & (av <= 1.1)) | ((av <= 0.36) & (au <= 1.1))
    if kind == "star":  # a filled pentagram, one point up, points 1.3 units out
        # The five lines through every other point bound a pentagon (distance R cos 72deg from the centre);
        # the filled star is where at least four of the five half-planes hold. No trigonometry per pixel.
        outer = 1.3
        d = outer * math.cos(2 * math.pi / 5)
        inside = np.zeros(u.shape, dtype=np.uint8)
        for k in range(5):
            t = -math.pi / 2 + 2 * math.pi * k / 5 + math.pi  # normals point away from the points
            inside += (u * math.cos(t) + v * math.sin(t) <= d).view(np.uint8)
        return inside >= 4
    raise ValueError(f"Unknown shape {kind!r}.")


def _supersampling(size: int) -> int:
    """Samples per pixel side when drawing shapes: coverage takes the values k / ss**2."""
    return 4 if size <= 16 else 2 if size <= 64 else 1


def render_shapes(
    kind: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, angle: np.ndarray,
    fg: np.ndarray, bg: np.ndarray, size: int,
) -> np.ndarray:
    """Render N shapes at once. Returns uint8 Shape: (N, 3, size, size).

    Each pixel is supersampled ss x ss times and the coverage blends foreground over background, so
    edges are antialiased. Work is chunked to keep temporaries near 4 M elements; the only Python loop
    runs over chunks and shape kinds, never over images.
    """
    n = len(kind)
    ss = _supersampling(size)
    g = size * ss
    grid = (np.arange(g, dtype=np.float32) + 0.5) / g  # pixel-centre coordinates in [0, 1]
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    chunk = max(1, 4_000_000 // (g * g))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        cover = np.empty((e - s, size, size), dtype=np.float32)  # fraction of each pixel inside its shape
        k = kind[s:e]
        for ki, name in enumerate(SHAPES):
            sel = np.flatnonzero(k == ki)
            if not sel.size:
                continue
            j = s + sel
            cos = np.cos(angle[j])[:, None, None]
            sin = np.sin(angle[j])[:, None, None]
            inv_r = (1.0 / radius[j])[:, None, None]
            dx = grid[None, None, :] - cx[j, None, None]  # (m, 1, g)
            dy = grid[None, :, None] - cy[j, None, None]  # (m, g, 1)
            u = (dx * cos + dy * sin) * inv_r  # (m, g, g): rotate into the shape's frame, then scale
            v = (dy * cos - dx * sin) * inv_r
            m = _shape_mask(name, u, v).view(np.uint8)
            # Sum each ss x ss block with strided adds (much faster than a float mean over reshaped axes).
            acc = np.zeros((sel.size, size, size), dtype=np.uint8)
            for a in range(ss):
                for b in range(ss):
                    acc += m[:, a::ss, b::ss]
            cover[sel] = acc * np.float32(1.0 / (ss * ss))
        f, b = fg[s:e, :, None, None], bg[s:e, :, None, None]  # (c, 3, 1, 1)
        img = b + cover[:, None] * (f - b)  # (c, 3, S, S)
        out[s:e] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def _balanced(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n labels in 0..k-1, as equal in count as n allows, shuffled."""
    return rng.permutation(np.arange(n) % k).astype(np.int64)


def load_shapes(*, n: int = 4000, size: int = 32, seed: int = 0, progress: ProgressFn | None = None) -> ImageSet:
    """Procedural shapes with five factors: shape, colour, size, position, background.

    Every factor is balanced (counts differ by at most one) and drawn independently, so each one can be
    probed on its own. Per image jitter: position within its region, radius +-7%, rotation +-12 degrees.
    Colours and backgrounds are exact on purpose: a continuous per-image shade is a unique fingerprint that
    instance discrimination (SimCLR) latches onto instead of shape; measured, shape kNN rose faster without it.
    """
    n = int_option("n", n, 1, limits.MAX_IMAGES)
    size = int_option("size", size, 8, 128)
    seed = int_option("seed", seed, 0, 2**32 - 1)
    check_memory(n, size)
    rng = np.random.default_rng(seed)
    lab = {f: _balanced(rng, n, len(c)) for f, c in SHAPE_FACTORS.items()}

    size_name = np.array(list(SIZES))[lab["size"]]
    radius = np.array(list(SIZES.values()), dtype=np.float32)[lab["size"]]
    radius *= rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER, n).astype(np.float32)
    centre = np.array(list(POSITIONS.values()), dtype=np.float32)[lab["position"]]  # (N, 2)
    jit = np.where(size_name == "small", POSITION_JITTER["small"], POSITION_JITTER["large"]).astype(np.float32)
    centre += rng.uniform(-1, 1, (n, 2)).astype(np.float32) * jit[:, None]
    angle = rng.uniform(-ROTATION_JITTER, ROTATION_JITTER, n).astype(np.float32)
    fg = np.array(list(COLOURS.values()), dtype=np.float32)[lab["colour"]]
    bg = np.array(list(BACKGROUNDS.values()), dtype=np.float32)[lab["background"]]

    pixels = render_shapes(lab["shape"], centre[:, 0], centre[:, 1], radius, angle, fg, bg, size)

    # Captions depend only on the factor combination (1,080 of them): build each once, then index.
    dims = [len(c) for c in SHAPE_FACTORS.values()]
    combo = np.ravel_multi_index(tuple(lab[f] for f in SHAPE_FACTORS), dims)
    pools: dict[int, list[str]] = {}
    for c in np.unique(combo):
        sh, co, sz, po, bgn = (SHAPE_FACTORS[f][i] for f, i in zip(SHAPE_FACTORS, np.unravel_index(c, dims)))
        where = "in the centre" if po == "centre" else f"at the {po}"
        pools[int(c)] = [
            f"a {sz} {co} {sh} {where}",  # the full caption comes first
            f"a {co} {sh}",
            f"a {sh}",
            f"a {co} shape",
            f"a {sz} {sh}",
            f"a {sz} {co} {sh}",
            f"a {sh} {where}",
            f"a {co} {sh} {where}",
            f"a {sz} {co} {sh} on a {bgn} background",
        ]
    caption_pool = [list(pools[c]) for c in combo.tolist()]
    if progress is not None:
        progress(n, n)
    return ImageSet(
        images=torch.from_numpy(pixels),
        labels=lab,
        classes={f: list(c) for f, c in SHAPE_FACTORS.items()},
        name="shapes",
        captions=[p[0] for p in caption_pool],
        caption_pool=caption_pool,
        # n and seed name the item: another seed (or n) draws other shapes under the same index, and pages match
        # embedding sets by id (the Explorer's Compare), so equal ids must mean the same shape.
        ids=[f"shapes/n{n}-s{seed}/{i:06d}" for i in range(n)],
        spec={"name": "shapes", "options": {"n": n, "size": size, "seed": seed}},
    )


def shape_masks(shapes: ImageSet) -> np.ndarray:
    """Where each built-in shape lies: the fraction of every pixel the shape covers, in [0, 1].

    Shape: ``shapes`` of N images, S px -> float32 (N, S, S). ``>= 0.5`` is the usual inside test.

    :func:`render_shapes` blends each pixel as ``bg + cover * (fg - bg)`` with the exact colours of the image's
    ``colour`` and ``background`` labels, so ``cover`` is read back exactly from the channel where fg and bg differ
    most (by at least 115 levels for every pair, so rounding moves it by under 0.005, far less than the gap between
    the generator's coverage levels k / ss**2, to which it is snapped): the generator's own mask, for any subset of
    a shapes set, with no second draw of its random numbers to keep in step.
    """
    if not {"colour", "background"} <= set(shapes.labels) or shapes.classes.get("colour") != list(COLOURS):
        raise ValueError("shape_masks needs a built-in shapes set (load_dataset('shapes', ...)).")
    fg = np.array(list(COLOURS.values()), dtype=np.float32)[shapes.labels["colour"]]  # (N, 3)
    bg = np.array(list(BACKGROUNDS.values()), dtype=np.float32)[shapes.labels["background"]]
    ch = np.abs(fg - bg).argmax(axis=1)  # (N,) the most telling channel per image
    rows = np.arange(len(ch))
    pix = shapes.images.numpy()[rows, ch].astype(np.float32)  # (N, S, S)
    cover = (pix - bg[rows, ch][:, None, None]) / (fg[rows, ch] - bg[rows, ch])[:, None, None]
    levels = _supersampling(shapes.image_size) ** 2  # the generator's coverage is k / levels: snap to it
    return (np.clip(np.rint(cover * levels), 0, levels) / levels).astype(np.float32)
