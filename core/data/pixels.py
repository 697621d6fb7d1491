"""uint8 image batches in the layout :class:`~core.data.ImageSet` holds, (N, 3, H, W): stacking, channel order,
resizing. Every loader ends here, whatever layout its source had.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["nhwc_to_tensor", "stack_chw", "resize_batch"]


def nhwc_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) or (N, H, W) uint8 -> (N, 3, H, W) uint8 tensor."""
    if arr.ndim == 3:
        arr = np.repeat(arr[:, :, :, None], 3, axis=3)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def stack_chw(pixels: list[np.ndarray]) -> torch.Tensor:
    """A list of (H, W, 3) uint8 images -> one (N, 3, H, W) tensor, emptying the list as it goes, so the peak
    is about one copy of the images plus the output (np.stack then a transpose held three)."""
    n = len(pixels)
    h, w = pixels[0].shape[:2]
    out = np.empty((n, 3, h, w), dtype=np.uint8)
    pixels.reverse()  # pop() from the end is O(1)
    for i in range(n):
        out[i] = pixels.pop().transpose(2, 0, 1)
    return torch.from_numpy(out)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch (N, 3, H, W) -> (N, 3, size, size), bilinear, antialiased when shrinking."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(2048):  # bounded float32 memory
        x = torch.nn.functional.interpolate(
            chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=size < chunk.shape[-1]
        )
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, 3, size, size))
