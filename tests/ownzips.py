"""Zips of "your own images" for the tests and the benchmark: built here from data that is not the shapes.

- :func:`digits_zip`: scikit-learn's handwritten digits written out as PNGs, one folder per digit.
- :func:`photo_crops_zip`: random crops of the built-in photos as JPEGs, one folder per photo (the class).
- :func:`zip_of`: any (name, bytes) entries, for the refusal tests.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image


def encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None, quality: int = 90) -> bytes:
    """uint8 (H, W, 3) or (H, W) -> image file bytes; ``mode`` converts first (e.g. "L", "RGBA", "P")."""
    img = Image.fromarray(arr)
    if mode is not None:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def zip_of(entries: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def digits_entries(n: int = 400, *, root: str = "digits") -> list[tuple[str, bytes]]:
    """The first ``n`` scikit-learn digits as 8 x 8 grey PNGs in ``root/<digit>/<i>.png``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    out = []
    for i in range(min(n, len(d.target))):
        pixels = np.clip(d.images[i] * 16, 0, 255).astype(np.uint8)
        out.append((f"{root}/{d.target[i]}/{i:04d}.png", encode(pixels)))
    return out


def digits_zip(n: int = 400) -> bytes:
    return zip_of(digits_entries(n))


def photo_crops(n_per_class: int, *, side: int = 256, seed: int = 0, classes: int | None = None):
    """(class name, uint8 (side, side, 3)) random crops (40-100% of the short side) of the built-in photos."""
    import skimage.data
    from pathlib import Path

    folder = Path(skimage.data.__file__).parent
    names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
             "immunohistochemistry.png", "retina.jpg"]
    names = [n for n in names if (folder / n).is_file()][:classes]
    rng = np.random.default_rng(seed)
    for name in names:
        full = np.asarray(Image.open(folder / name).convert("RGB"))
        h, w = full.shape[:2]
        for _ in range(n_per_class):
            s = int(min(h, w) * rng.uniform(0.4, 1.0))
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            crop = Image.fromarray(full[y:y + s, x:x + s]).resize((side, side), Image.Resampling.BILINEAR)
            yield name.split(".")[0], np.asarray(crop)


def photo_crops_zip(n_per_class: int = 30, *, side: int = 64, seed: int = 0, classes: int | None = None) -> bytes:
    entries = [(f"photos/{c}/{i:05d}.jpg", encode(a, "JPEG"))
               for i, (c, a) in enumerate(photo_crops(n_per_class, side=side, seed=seed, classes=classes))]
    return zip_of(entries)
