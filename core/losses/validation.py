"""Argument checks shared by every loss: each raises :class:`core.errors.PlaygroundError` (a ``ValueError``)
with a sentence a user can act on, and hands back tensors on one device and one floating dtype."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from core.errors import PlaygroundError

Number = float | int
Scalar = Number | torch.Tensor
LabelsLike = torch.Tensor | np.ndarray | Sequence[int]


def check_positive(value: Scalar, name: str, hint: str) -> Scalar:
    """Check that ``value`` is a finite number > 0; return a float, or the tensor itself (keeps grad)."""
    if isinstance(value, bool):
        raise PlaygroundError(f"{name} must be a number greater than 0, not a boolean; {hint}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise PlaygroundError(
                f"{name} must be a single floating-point number, got a tensor of shape {tuple(value.shape)} "
                f"and dtype {value.dtype}; {hint}"
            )
        number = float(value.detach())
        tensor: torch.Tensor | None = value.reshape(())
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PlaygroundError(f"{name} must be a number greater than 0, got {value!r}; {hint}") from None
        tensor = None
    if not math.isfinite(number) or number <= 0:
        raise PlaygroundError(f"{name} must be a finite number greater than 0, got {number}; {hint}")
    return tensor if tensor is not None else number


def check_temperature(value: Scalar) -> Scalar:
    return check_positive(value, "temperature", "typical values lie between 0.05 and 1.0.")


def check_margin(value: Number) -> float:
    if isinstance(value, bool) or isinstance(value, torch.Tensor):
        raise PlaygroundError(f"margin must be a plain number of at least 0, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlaygroundError(f"margin must be a number of at least 0, got {value!r}.") from None
    if not math.isfinite(number) or number < 0:
        raise PlaygroundError(
            f"margin must be a finite number of at least 0, got {number}; on L2-normalised embeddings "
            "distances lie in [0, 2], so margins between 0.1 and 2 are the useful range."
        )
    return number


def check_embeddings(x: torch.Tensor, name: str, ndims: tuple[int, ...] = (2,)) -> torch.Tensor:
    """Check a floating tensor with a non-empty batch and feature axis."""
    if not isinstance(x, torch.Tensor):
        raise PlaygroundError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() not in ndims:
        shapes = " or ".join({2: "(N, D)", 3: "(N, V, D)"}[n] for n in ndims)
        raise PlaygroundError(f"{name} must have shape {shapes}, got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise PlaygroundError(f"{name} must hold floating-point embeddings, got dtype {x.dtype}.")
    if x.shape[0] == 0:
        raise PlaygroundError(f"{name} is an empty batch (N = 0); a loss needs at least one sample.")
    if x.shape[-1] == 0:
        raise PlaygroundError(f"{name} has no feature dimensions (D = 0); embeddings need D >= 1.")
    return x


def check_same_device(tensors: dict[str, torch.Tensor]) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise PlaygroundError(f"All inputs must be on the same device, got {listed}; move them with .to(device).")


def check_pair(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two (N, D) batches of matching shape and device; promote to a common dtype."""
    check_embeddings(a, name_a)
    check_embeddings(b, name_b)
    if a.shape != b.shape:
        raise PlaygroundError(
            f"{name_a} and {name_b} must have the same shape (N, D), got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    check_same_device({name_a: a, name_b: b})
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def check_labels(labels: LabelsLike, n: int, device: torch.device, name: str = "labels") -> torch.Tensor:
    """Integer labels of length ``n`` on ``device``. Tensors must already be there; arrays are moved."""
    if isinstance(labels, torch.Tensor):
        if labels.device != device:
            raise PlaygroundError(
                f"{name} are on {labels.device} but the embeddings are on {device}; move them with .to(device)."
            )
        t = labels
    else:
        try:
            t = torch.as_tensor(np.asarray(labels), device=device)
        except (TypeError, ValueError):
            raise PlaygroundError(f"{name} must be a 1-D sequence of integers, got {type(labels).__name__}.") from None
    if t.dim() != 1:
        raise PlaygroundError(f"{name} must be 1-D with one entry per sample, got shape {tuple(t.shape)}.")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise PlaygroundError(f"{name} must be integers (class indices), got dtype {t.dtype}.")
    if t.shape[0] != n:
        raise PlaygroundError(f"{name} must have one entry per sample: expected {n}, got {t.shape[0]}.")
    return t

