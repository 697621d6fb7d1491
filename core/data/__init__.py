"""Datasets as one in-memory type, :class:`ImageSet`, and the loaders that build it. One job per module:

- :mod:`~core.data.imageset`: the ``ImageSet`` type and its identity (fingerprint, what a checkpoint records,
  the held-out split's stratification).
- :mod:`~core.data.limits`: the size caps, read at call time (lower them there), and the option checks.
- :mod:`~core.data.decode`: untrusted bytes made safe: ``decode_image`` and ``safe_extract_zip``.
- :mod:`~core.data.pixels`: uint8 (N, 3, H, W) batches: stacking, channel order, resizing.
- :mod:`~core.data.shapes`: ``"shapes"``, procedural coloured shapes with five known factors of variation
  (shape, colour, size, position, background) and captions; ``shape_masks``.
- :mod:`~core.data.bundled`: ``"digits"`` (scikit-learn) and ``"photos"`` (scikit-image), shipped, offline.
- :mod:`~core.data.folders`: a path: an image folder in ImageFolder layout (one sub-folder per class), a ``.zip``
  of one, or a ``.csv`` / ``.jsonl`` table of image paths and captions.
- :mod:`~core.data.downloads`: ``"cifar10"``, ``"mnist"``, ``"fashion_mnist"``, ``"stl10"`` through torchvision,
  cached; with no network they fail within seconds with :class:`~core.errors.DownloadUnavailable`.
- :mod:`~core.data.registry`: ``load_dataset(name_or_path, **options)``, the one door to all of the above.

Everything a caller needs is re-exported here (``from core.data import load_dataset``). The caps below are the
values at import, for reading; the decoders and loaders read :mod:`core.data.limits` at call time.
"""
from __future__ import annotations

from core.data.bundled import PHOTOS
from core.data.decode import ImageTooLarge, ImageUnreadable, decode_image, safe_extract_zip
from core.data.downloads import default_cache_dir
from core.data.folders import IMAGE_EXTENSIONS, TABLE_EXTENSIONS, is_visible, pick_column, read_table
from core.data.imageset import (DOWNLOAD_DATASETS, OFFLINE_DATASETS, OWN_DATA, ImageSet, dataset_identity,
                                dataset_identity_is_builtin, describe_identity, fingerprint, heldout_stratify,
                                safe_title, same_data)
from core.data.limits import (MAX_DATASET_BYTES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_IMAGES, MAX_UNZIPPED_BYTES,
                              MAX_UPLOAD_BYTES, MAX_ZIP_ENTRIES, MAX_ZIP_RATIO, format_bytes)
from core.data.registry import available_datasets, load_dataset
from core.data.shapes import (BACKGROUNDS, COLOURS, POSITIONS, SHAPE_FACTORS, SHAPES, SIZES, render_shapes,
                              shape_masks)
from core.errors import DatasetError, DownloadUnavailable

__all__ = [
    # the type and its identity
    "ImageSet",
    "fingerprint",
    "dataset_identity",
    "dataset_identity_is_builtin",
    "describe_identity",
    "same_data",
    "heldout_stratify",
    "safe_title",
    "OWN_DATA",
    # loading
    "load_dataset",
    "available_datasets",
    "default_cache_dir",
    "OFFLINE_DATASETS",
    "DOWNLOAD_DATASETS",
    "DatasetError",
    "DownloadUnavailable",
    # safe decoding and archives, and their caps
    "decode_image",
    "safe_extract_zip",
    "ImageTooLarge",
    "ImageUnreadable",
    "MAX_UPLOAD_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_ZIP_ENTRIES",
    "MAX_ZIP_RATIO",
    "MAX_UNZIPPED_BYTES",
    "MAX_DATASET_BYTES",
    "MAX_IMAGES",
    "format_bytes",
    # files on disk
    "IMAGE_EXTENSIONS",
    "TABLE_EXTENSIONS",
    "is_visible",
    "read_table",
    "pick_column",
    # the built-in sets
    "SHAPES",
    "COLOURS",
    "SIZES",
    "POSITIONS",
    "BACKGROUNDS",
    "SHAPE_FACTORS",
    "render_shapes",
    "shape_masks",
    "PHOTOS",
]
