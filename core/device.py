"""Choose the torch device every core function runs on."""
from __future__ import annotations

import os

import torch

_ALLOWED = ("cuda", "mps", "cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best device: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the environment variable ``CP_DEVICE`` when ``prefer`` is None) names a device
    to use instead, e.g. ``"cpu"`` or ``"cuda:1"``. A preferred device that is not available
    raises ``ValueError`` rather than silently falling back.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    choice = prefer if prefer is not None else os.environ.get("CP_DEVICE") or None
    if choice:
        choice = choice.strip().lower()
        kind = choice.split(":", 1)[0]
        if kind not in _ALLOWED:
            raise ValueError(f"Unknown device {choice!r}; use one of 'cuda', 'mps' or 'cpu'.")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA GPU is available here; use 'cpu'.")
        if kind == "mps" and not _mps_available():
            raise ValueError("Apple MPS was asked for but is not available here; use 'cpu'.")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A short human description, e.g. ``"CUDA: NVIDIA H100 80GB HBM3"`` or ``"CPU (2 cores)"``."""
    device = device or pick_device()
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS (Metal GPU)"
    return f"CPU ({os.cpu_count() or 1} cores, {torch.get_num_threads()} torch threads)"
