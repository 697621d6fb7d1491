"""The caps every loader and decoder of :mod:`core.data` meets, and the checks of loader options against them.

The caps are read at call time (``limits.MAX_IMAGE_BYTES`` inside each function, never bound as a default argument
or imported by value), so a test or a deployment lowers one by setting it here, in this module:
``core.data.limits.MAX_IMAGE_PIXELS = 10_000_000``. Every failed check raises ``DatasetError`` with a sentence.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from core.errors import DatasetError

__all__ = ["MAX_UPLOAD_BYTES", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MAX_ZIP_ENTRIES", "MAX_UNZIPPED_BYTES",
           "MAX_ZIP_RATIO", "MAX_DATASET_BYTES", "MAX_IMAGES", "ProgressFn", "format_bytes", "int_option",
           "check_memory", "check_progress"]

MAX_UPLOAD_BYTES = 200 * 1024**2  # an archive or table file (.zip/.csv/.jsonl)
MAX_IMAGE_BYTES = 25 * 1024**2  # one image file, uploaded alone or inside a folder/archive
MAX_IMAGE_PIXELS = 40_000_000  # width x height; Pillow's own default warns only at ~89 MP
MAX_ZIP_ENTRIES = 60_000  # files + folders in one archive
MAX_UNZIPPED_BYTES = 1024**3  # what an archive may unpack to, in total
MAX_ZIP_RATIO = 200  # uncompressed / compressed for one entry over 1 MB: above this it is a zip bomb
MAX_DATASET_BYTES = 2 * 1024**3  # N x 3 x H x W uint8 held in memory
MAX_IMAGES = 200_000  # images in one dataset

ProgressFn = Callable[[int, int], Any]


def format_bytes(nbytes: float) -> str:
    """A byte count as users read it in a sentence: '12.3 MB', or '1.5 GB' from 1 GiB up."""
    return f"{nbytes / 1024**2:.1f} MB" if nbytes < 1024**3 else f"{nbytes / 1024**3:.1f} GB"


def int_option(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``; a bool, a fraction or anything else is refused naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)):
        raise DatasetError(f"{name} must be a whole number between {lo} and {hi}, not {value!r}.")
    if isinstance(value, float) and not value.is_integer():
        raise DatasetError(f"{name} must be a whole number between {lo} and {hi}, not {value!r}.")
    value = int(value)
    if not lo <= value <= hi:
        raise DatasetError(f"{name} must lie between {lo} and {hi}, not {value}.")
    return value


def check_memory(n: int, size: int) -> None:
    """Refuse ``n`` images of ``size`` x ``size`` when their uint8 (N, 3, size, size) would pass the memory cap."""
    need = n * 3 * size * size
    if need > MAX_DATASET_BYTES:
        raise DatasetError(
            f"{n:,} images of {size} x {size} pixels would take {format_bytes(need)} of memory; the limit is "
            f"{format_bytes(MAX_DATASET_BYTES)}. Use fewer images or a smaller size."
        )


def check_progress(progress: Any) -> ProgressFn | None:
    """``progress`` itself when it is a function ``progress(done, total)`` or None; anything else is refused."""
    if progress is not None and not callable(progress):
        raise DatasetError("progress must be a function progress(done, total) or None.")
    return progress
