"""Sprite atlases: many small images packed into one picture, as TensorBoard's projector does for its sprites.

A map of 2,000 thumbnails sends ONE image to the browser plus each thumbnail's place in it (a data URL per
point made Chromium many times slower, FINDINGS.md). WebGL textures of 4096 px a side load on every
GPU and in software rendering, so an atlas never grows past that.

Shapes: ``images`` (N, H, W, 3) or (N, H, W) uint8; the atlas (rows * cell, cols * cell, 4) uint8 RGBA;
``offsets`` (N, 2) int (x, y) of each image's top-left corner in the atlas, in pixels.
"""
from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np

from core.errors import PlaygroundError

__all__ = ["MAX_ATLAS_SIDE", "Atlas", "sprite_atlas", "png_data_url", "max_sprites"]

MAX_ATLAS_SIDE = 4096  # pixels: the texture size every WebGL implementation accepts


@dataclass
class Atlas:
    """``image`` (H, W, 4) uint8; ``offsets`` (N, 2) int, each sprite's (x, y) corner; ``cell`` its side."""

    image: np.ndarray
    offsets: np.ndarray
    cell: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def sprite(self, i: int) -> np.ndarray:
        """The ``i``-th sprite cut back out of the atlas. Shape: (cell, cell, 4)."""
        x, y = (int(v) for v in self.offsets[i])
        return self.image[y:y + self.cell, x:x + self.cell]


def max_sprites(cell: int) -> int:
    """How many ``cell``-pixel sprites fit into one atlas of at most MAX_ATLAS_SIDE a side."""
    return (MAX_ATLAS_SIDE // int(cell)) ** 2


def _rgb(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise PlaygroundError(f"Sprites need images shaped (N, H, W, 3) or (N, H, W), got {x.shape}.")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.dtype != np.uint8:
        raise PlaygroundError(f"Sprites need uint8 images, got {x.dtype}.")
    return x[..., :3]


def sprite_atlas(images, cell: int = 32) -> Atlas:
    """Pack every image, resized to ``cell`` x ``cell`` (bilinear; kept as is when already that size), into a
    near-square grid, row-major. Opaque (alpha 255) where a sprite is, transparent in unused cells.

    >>> a = sprite_atlas(np.zeros((5, 8, 8, 3), np.uint8), cell=8)
    >>> a.image.shape, a.offsets[4].tolist()
    ((16, 24, 4), [8, 8])
    """
    x = _rgb(images)
    n = len(x)
    cell = int(cell)
    if not 4 <= cell <= 256:
        raise PlaygroundError(f"A sprite is 4-256 pixels a side, got {cell}.")
    if n == 0:
        raise PlaygroundError("A sprite atlas needs at least one image.")
    if n > max_sprites(cell):
        raise PlaygroundError(f"{n:,} sprites of {cell} px do not fit into one {MAX_ATLAS_SIDE} px atlas "
                              f"(at most {max_sprites(cell):,}); draw a sample or smaller sprites.")
    if x.shape[1:3] != (cell, cell):
        from PIL import Image

        x = np.stack([np.asarray(Image.fromarray(im).resize((cell, cell), Image.BILINEAR)) for im in x])
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    atlas = np.zeros((rows * cell, cols * cell, 4), dtype=np.uint8)
    r, c = np.divmod(np.arange(n), cols)
    # (rows, cols, cell, cell, 4) view of the atlas: one assignment places every sprite
    grid = atlas.reshape(rows, cell, cols, cell, 4).transpose(0, 2, 1, 3, 4)
    grid[r, c, :, :, :3] = x
    grid[r, c, :, :, 3] = 255
    offsets = np.column_stack([c * cell, r * cell]).astype(np.int64)
    return Atlas(atlas, offsets, cell)


def png_data_url(image: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL of an (H, W, 3|4) uint8 picture (nothing is fetched from anywhere)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
