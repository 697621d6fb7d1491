"""The one door to every dataset: :func:`load_dataset` turns a built-in name or a path into an ImageSet, with
every option checked (unknown ones refused with a sentence); :func:`available_datasets` lists the built-ins.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.data.bundled import PHOTOS, load_digits, load_photos
from core.data.downloads import load_torchvision
from core.data.folders import load_path
from core.data.imageset import DOWNLOAD_DATASETS, ImageSet
from core.data.limits import ProgressFn, check_progress
from core.data.shapes import load_shapes
from core.errors import DatasetError

__all__ = ["available_datasets", "load_dataset"]

_LOADERS: dict[str, tuple[Callable[..., ImageSet], tuple[str, ...]]] = {
    "shapes": (load_shapes, ("n", "size", "seed")),
    "digits": (load_digits, ("n", "size")),
    "photos": (load_photos, ("size",)),
    **{
        k: (lambda _k=k, **o: load_torchvision(_k, **o), ("root", "split", "n", "size"))  # type: ignore[misc]
        for k in DOWNLOAD_DATASETS
    },
}
_PATH_OPTIONS = ("size", "max_images", "image_column", "caption_column", "label_column")


def available_datasets() -> dict[str, str]:
    """Built-in dataset name -> one-line description; the offline ones come first."""
    return {
        "shapes": "Procedural coloured shapes with captions; five known factors (shape, colour, size, position, "
                  "background). Offline, instant.",
        "digits": "1,797 handwritten digits, 8 x 8 pixels (scikit-learn). Offline.",
        "photos": f"{len(PHOTOS)} sample photos from scikit-image (astronaut, cat, coffee, rocket, ...). Offline.",
        "cifar10": "CIFAR-10: 50,000 colour photos, 32 x 32, 10 classes. Download, about 163 MB.",
        "mnist": "MNIST: 60,000 handwritten digits, 28 x 28. Download, about 11 MB.",
        "fashion_mnist": "Fashion-MNIST: 60,000 clothing images, 28 x 28, 10 classes. Download, about 29 MB.",
        "stl10": "STL-10: 5,000 labelled colour photos, 96 x 96, 10 classes. Download, about 2.5 GB.",
    }


def load_dataset(name: str | os.PathLike, options: dict | None = None, **opts: Any) -> ImageSet:
    """Build an :class:`ImageSet` from a built-in name or a path.

    ``name``: one of :func:`available_datasets` (case-insensitive; "fashion-mnist" works too), or a path
    to an image folder (one sub-folder per class), a ``.zip`` of one, or a ``.csv`` / ``.jsonl`` with an
    image path column and a caption and/or label column.
    ``opts``: per dataset (unknown ones are refused):

    - shapes: ``n=4000`` (1-200,000), ``size=32`` (8-128), ``seed=0``
    - digits: ``n`` (default all 1,797), ``size=8`` (8-128)
    - photos: ``size=128`` (8-512)
    - a path: ``size=32`` (8-512), ``max_images=20000``, and for tables ``image_column``,
      ``caption_column``, ``label_column`` (found by common names when left out)
    - cifar10 / mnist / fashion_mnist / stl10: ``root`` (cache folder), ``split="train"``, ``n``, ``size``

    Every loader also takes ``progress(done, total)``. ``options`` (a dict) is merged into ``opts`` so
    that ``load_dataset(**imageset.spec)`` rebuilds a dataset. Raises ``DatasetError`` (a ``ValueError``)
    with a sentence for the user; ``DownloadUnavailable`` when a download cannot happen here.

    >>> load_dataset("shapes", n=8, size=16).images.shape
    torch.Size([8, 3, 16, 16])
    """
    if options is not None:
        if not isinstance(options, dict):
            raise DatasetError(f"options must be a dict, not {type(options).__name__}.")
        opts = {**options, **opts}
    progress = check_progress(opts.pop("progress", None))
    if isinstance(name, os.PathLike):
        return _load_path_checked(Path(name), opts, progress)
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"A dataset is named by a string or a path, not {name!r}.")
    key = name.strip().lower().replace("-", "_")
    if key in _LOADERS:
        loader, allowed = _LOADERS[key]
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise DatasetError(
                f"Unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)} for {key!r}; "
                f"it takes {', '.join(allowed) or 'no options'}."
            )
        return loader(progress=progress, **opts)
    if os.path.exists(os.path.expanduser(name)):
        return _load_path_checked(Path(name), opts, progress)
    raise DatasetError(
        f"Unknown dataset {name!r}. Choose one of {', '.join(available_datasets())}, or give the path of an "
        "image folder, .zip, .csv or .jsonl."
    )


def _load_path_checked(path: Path, opts: dict[str, Any], progress: ProgressFn | None) -> ImageSet:
    unknown = sorted(set(opts) - set(_PATH_OPTIONS))
    if unknown:
        raise DatasetError(
            f"Unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)} for a dataset on disk; "
            f"it takes {', '.join(_PATH_OPTIONS)}."
        )
    try:
        return load_path(path, progress=progress, **opts)
    except PermissionError:
        raise DatasetError(f"{path} cannot be read: permission denied.") from None
