"""Checked (N, D) float32 matrices on a device, and the row-chunk size that bounds every (rows, N) block.

Shared by the similarity, neighbour-search, metric and projection modules: each takes NumPy arrays or torch
tensors, turns them into float32 here (one error sentence for every malformed input) and works in row chunks
so an (N, N) matrix is never held at once.
"""
from __future__ import annotations

import numpy as np
import torch

from core.device import pick_device

__all__ = ["CHUNK_ELEMENTS", "resolve_device", "as_array", "as_matrix", "unit_array", "unit_rows", "rows_per_chunk"]

# Largest (rows x columns) block held at once: 2**24 float32 = 64 MiB.
CHUNK_ELEMENTS = 1 << 24


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a torch.device; None means :func:`core.device.pick_device` (CUDA, then MPS, then CPU)."""
    return torch.device(device) if device is not None else pick_device()


def as_array(x, name: str) -> np.ndarray:
    """(N, D) C-contiguous float32 NumPy array; a 1-D input is treated as one row. Raises ValueError if malformed.

    ``name`` is the argument's name, used in the error sentence. All the work is NumPy's (single-threaded), so
    code that hands the result to faiss runs no torch kernel in between: two OpenMP pools (torch's and faiss's)
    taking turns on busy cores each wait for their threads to be scheduled, far longer than a small search.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        arr = (t if t.dtype in (torch.float32, torch.float64, torch.int64, torch.int32, torch.bool)
               else t.float()).cpu().numpy()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name} must be a numeric array shaped (N, D).") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"{name} must be a numeric array shaped (N, D), got dtype {arr.dtype}.")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be shaped (N, D) with D >= 1, got {tuple(arr.shape)}.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def as_matrix(x, name: str, device: torch.device) -> torch.Tensor:
    """:func:`as_array` as a torch tensor on ``device``: (N, D) float32. Raises ValueError if malformed."""
    if isinstance(x, torch.Tensor) and x.device.type != "cpu":
        t = x.detach()
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if t.dim() != 2 or t.shape[1] == 0:
            raise ValueError(f"{name} must be shaped (N, D) with D >= 1, got {tuple(t.shape)}.")
        t = t.to(device=device, dtype=torch.float32)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values.")
        return t
    return torch.from_numpy(as_array(x, name)).to(device)


def unit_array(x, name: str) -> np.ndarray:
    """:func:`as_array` with every row scaled to length 1 (a zero row stays zero), in NumPy. Shape: (N, D)."""
    arr = as_array(x, name)
    return arr / np.maximum(np.sqrt(np.einsum("nd,nd->n", arr, arr))[:, None], 1e-12)


def unit_rows(x, name: str, device: torch.device) -> torch.Tensor:
    """:func:`as_matrix` with every row scaled to length 1 (cosine similarity is then a dot product).

    A zero row stays zero (similarity 0 to everything) instead of becoming NaN. Shape: (N, D) -> (N, D).
    """
    return torch.nn.functional.normalize(as_matrix(x, name, device), dim=1)


def rows_per_chunk(columns: int) -> int:
    """How many rows of a (rows, ``columns``) block fit in :data:`CHUNK_ELEMENTS` (at least one)."""
    return max(1, CHUNK_ELEMENTS // max(1, columns))
