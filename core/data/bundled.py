"""The built-in sets that ship inside installed packages, so need no network: ``"digits"`` (scikit-learn's 1,797
handwritten digits, 8 x 8) and ``"photos"`` (the sample photographs inside scikit-image: astronaut, cat, coffee,
...), read from the package folder, never through scikit-image's downloader.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.data.decode import decode_image
from core.data.imageset import ImageSet
from core.data.limits import ProgressFn, int_option
from core.data.pixels import nhwc_to_tensor, resize_batch
from core.errors import DatasetError

__all__ = ["load_digits", "PHOTOS", "load_photos"]


def load_digits(*, n: int | None = None, size: int = 8, progress: ProgressFn | None = None) -> ImageSet:
    """scikit-learn's handwritten digits: 1,797 images, 8 x 8, grey levels 0-16 scaled to 0-255."""
    from sklearn.datasets import load_digits as sklearn_digits

    size = int_option("size", size, 8, 128)
    d = sklearn_digits()
    total = len(d.images)
    n = total if n is None else int_option("n", n, 1, total)
    grey = np.rint(d.images[:n] * (255.0 / 16.0)).astype(np.uint8)  # (n, 8, 8)
    images = resize_batch(nhwc_to_tensor(grey), size)
    target = d.target[:n].astype(np.int64)
    options: dict[str, Any] = {"size": size} if n == total else {"n": n, "size": size}
    if progress is not None:
        progress(n, n)
    return ImageSet(
        images=images,
        labels={"digit": target},
        classes={"digit": [str(i) for i in range(10)]},
        name="digits",
        ids=[f"digits/{i:04d}" for i in range(n)],
        spec={"name": "digits", "options": options},
    )


# file in skimage/data -> (class name, caption). All ship inside the scikit-image wheel; nothing is fetched.
PHOTOS = {
    "astronaut.png": ("astronaut", "a photo of an astronaut"),
    "chelsea.png": ("cat", "a photo of a cat"),
    "coffee.png": ("coffee", "a photo of a cup of coffee"),
    "rocket.jpg": ("rocket", "a photo of a rocket"),
    "camera.png": ("cameraman", "a photo of a cameraman"),
    "coins.png": ("coins", "a photo of coins"),
    "moon.png": ("moon", "a photo of the moon"),
    "hubble_deep_field.jpg": ("galaxies", "a photo of galaxies"),
    "motorcycle_left.png": ("motorcycle", "a photo of a motorcycle"),
    "horse.png": ("horse", "a silhouette of a horse"),
    "brick.png": ("brick wall", "a photo of a brick wall"),
    "grass.png": ("grass", "a photo of grass"),
    "gravel.png": ("gravel", "a photo of gravel"),
    "retina.jpg": ("retina", "a photo of a retina"),
}


def load_photos(*, size: int = 128, progress: ProgressFn | None = None) -> ImageSet:
    """scikit-image's sample photos, read from the package folder (never via its downloader)."""
    import skimage.data

    size = int_option("size", size, 8, 512)
    folder = Path(skimage.data.__file__).parent
    files = [f for f in PHOTOS if (folder / f).is_file()]
    pixels, names, captions, notes = [], [], [], []
    for i, f in enumerate(files):
        try:
            pixels.append(decode_image((folder / f).read_bytes(), size=size))
        except (DatasetError, OSError) as err:
            notes.append(f"{f} was left out: {err}")
            continue
        names.append(PHOTOS[f][0])
        captions.append(PHOTOS[f][1])
        if progress is not None:
            progress(i + 1, len(files))
    if len(names) < 2:
        raise DatasetError(
            "The scikit-image sample photos are missing from this installation; reinstall scikit-image."
        )
    return ImageSet(
        images=nhwc_to_tensor(np.stack(pixels)),
        labels={"photo": np.arange(len(names), dtype=np.int64)},
        classes={"photo": names},
        name="photos",
        captions=captions,
        ids=[f"photos/{n}" for n in names],
        spec={"name": "photos", "options": {"size": size}},
        skipped=len(files) - len(names),
        notes=notes,
    )
