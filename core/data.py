"""Datasets as one in-memory type, :class:`ImageSet`, and the loaders that build it.

Built in and offline (no network, instant or nearly so):

- ``"shapes"``: procedural coloured shapes with five known factors of variation (shape, colour, size,
  position, background) and captions, rendered in one vectorised NumPy pass. The factors are what
  the invariance report and zero-shot pages probe: which ones does an embedding keep or throw away?
- ``"digits"``: scikit-learn's 1,797 handwritten digits (8 x 8, shipped inside scikit-learn).
- ``"photos"``: the sample photographs that ship inside scikit-image (astronaut, cat, coffee, ...).

From a path: an image folder in ImageFolder layout (one sub-folder per class), a ``.zip`` of one,
or a ``.csv`` / ``.jsonl`` table of image paths and captions.

Downloaded (torchvision, cached): ``"cifar10"``, ``"mnist"``, ``"fashion_mnist"``, ``"stl10"``. With
no network they fail within seconds with :class:`~core.errors.DownloadUnavailable`.

Every file is decoded by :func:`decode_image`, which caps file size and pixel count (Pillow's
decompression-bomb guard, tightened) and turns every failure into a sentence a user can act on.
Archives go through :func:`safe_extract_zip`, which refuses path traversal, links and zip bombs
before a single byte is written.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import io
import json
import math
import os
import re
import tempfile
import urllib.parse
import urllib.request
import weakref
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from core import network
from core.device import pick_device
from core.errors import DatasetError, DownloadUnavailable
from core.files import atomic_write

__all__ = [
    "ImageSet",
    "load_dataset",
    "available_datasets",
    "decode_image",
    "safe_extract_zip",
    "default_cache_dir",
    "ImageTooLarge",
    "ImageUnreadable",
    "OFFLINE_DATASETS",
    "DOWNLOAD_DATASETS",
    "MAX_UPLOAD_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_ZIP_ENTRIES",
    "MAX_UNZIPPED_BYTES",
    "MAX_DATASET_BYTES",
    "SHAPE_FACTORS",
    "shape_masks",
    "fingerprint",
    "dataset_identity",
    "describe_identity",
    "same_data",
    "heldout_stratify",
    "OWN_DATA",
]

# ---------------------------------------------------------------------------------------------
# Limits. Read at call time (not bound as default arguments), so tests and deployments can lower them.
# ---------------------------------------------------------------------------------------------
log = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 200 * 1024**2  # an archive or table file (.zip/.csv/.jsonl)
MAX_IMAGE_BYTES = 25 * 1024**2  # one image file, uploaded alone or inside a folder/archive
MAX_IMAGE_PIXELS = 40_000_000  # width x height; Pillow's own default warns only at ~89 MP
MAX_ZIP_ENTRIES = 60_000  # files + folders in one archive
MAX_UNZIPPED_BYTES = 1024**3  # what an archive may unpack to, in total
MAX_ZIP_RATIO = 200  # uncompressed / compressed for one entry over 1 MB: above this it is a zip bomb
MAX_DATASET_BYTES = 2 * 1024**3  # N x 3 x H x W uint8 held in memory
MAX_IMAGES = 200_000  # images in one dataset
PROBE_TIMEOUT = 3.0  # seconds the network probe may take before a download is declared impossible

OFFLINE_DATASETS = ("shapes", "digits", "photos")
DOWNLOAD_DATASETS = ("cifar10", "mnist", "fashion_mnist", "stl10")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
TABLE_EXTENSIONS = (".csv", ".jsonl", ".ndjson")
# Decoders Pillow may try; everything else (PSD, EPS via Ghostscript, ...) is refused up front.
_PIL_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP", "TIFF", "PPM")
_FORMAT_NAMES = "PNG, JPEG, GIF, BMP, WebP, TIFF or PPM"  # as users know them (MPO is a JPEG variant)

_OFFLINE_HINT = "shapes, digits, photos, or your own image folder or .zip"

ProgressFn = Callable[[int, int], Any]


class ImageTooLarge(DatasetError):
    """An image file or its pixel count is over the cap."""


class ImageUnreadable(DatasetError):
    """The bytes are not an image Pillow can decode (corrupt, truncated, or another kind of file)."""


# ---------------------------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class ImageSet:
    """A labelled image dataset held in memory.

    ``images`` Shape: (N, 3, H, W), uint8, on the CPU, H == W. Grey data is repeated to RGB.
    ``labels[factor]`` Shape: (N,), int64 indices into ``classes[factor]``. The first factor is the
    main one (the one supervised methods and kNN accuracy use by default).

    >>> s = load_dataset("shapes", n=100)
    >>> s.images.shape, s.factors[:2], s.captions[0]  # doctest: +SKIP
    (torch.Size([100, 3, 32, 32]), ['shape', 'colour'], 'a small red triangle at the top left')
    """

    images: torch.Tensor  # uint8 (N, 3, H, W) on the CPU
    labels: dict[str, np.ndarray]  # factor -> int64 (N,)
    classes: dict[str, list[str]]  # factor -> class names
    name: str  # "shapes", "digits", "photos", a folder name, ...
    captions: list[str] | None = None  # one caption per image (CLIP-style training)
    caption_pool: list[list[str]] | None = None  # per image: alternative captions, one sampled per step
    ids: list[str] | None = None  # stable per-image id; defaults to str(index)
    spec: dict | None = None  # {"name": ..., "options": {...}}: load_dataset(name, **options) rebuilds it
    skipped: int = 0  # files left out while loading (unreadable, too large, not images)
    notes: list[str] = field(default_factory=list)  # sentences about what loading left out or capped
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (file, why) for every file left out

    def __post_init__(self) -> None:
        images = self.images
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, torch.Tensor):
            raise ValueError(
                f"ImageSet.images must be a uint8 torch.Tensor (N, 3, H, W), not {type(images).__name__}."
            )
        if images.dtype != torch.uint8:
            raise ValueError(f"ImageSet.images must have dtype uint8 (values 0-255), not {images.dtype}.")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"ImageSet.images must have shape (N, 3, H, W) with 3 colour channels, not {tuple(images.shape)}."
            )
        if images.shape[2] != images.shape[3] or images.shape[2] < 1:
            raise ValueError(
                f"ImageSet images must be square (H == W >= 1), not {images.shape[2]} x {images.shape[3]}."
            )
        self.images = images.cpu().contiguous()
        n = int(images.shape[0])

        if not isinstance(self.labels, dict) or not self.labels:
            raise ValueError("ImageSet.labels must be a non-empty dict of factor name -> label array.")
        if not isinstance(self.classes, dict) or set(self.classes) != set(self.labels):
            raise ValueError(
                f"ImageSet.classes must name the classes of exactly the label factors {list(self.labels)}, "
                f"not {list(self.classes) if isinstance(self.classes, dict) else self.classes!r}."
            )
        labels: dict[str, np.ndarray] = {}
        classes: dict[str, list[str]] = {}
        for factor, values in self.labels.items():
            names = [str(c) for c in self.classes[factor]]
            if not names:
                raise ValueError(f"Factor {factor!r} has no class names.")
            arr = np.asarray(values)
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"Labels for {factor!r} must have shape ({n},), one per image, not {arr.shape}.")
            if n and arr.dtype.kind not in "iu":
                raise ValueError(f"Labels for {factor!r} must be integers, not {arr.dtype}.")
            arr = arr.astype(np.int64, copy=False)
            if n and (arr.min() < 0 or arr.max() >= len(names)):
                raise ValueError(
                    f"Labels for {factor!r} must lie in 0..{len(names) - 1} (its {len(names)} classes), "
                    f"found {arr.min()}..{arr.max()}."
                )
            labels[str(factor)] = arr
            classes[str(factor)] = names
        self.labels, self.classes = labels, classes

        if self.captions is not None:
            if len(self.captions) != n:
                raise ValueError(
                    f"ImageSet needs one caption per image: {n} images but {len(self.captions)} captions."
                )
            self.captions = [str(c) for c in self.captions]
        if self.caption_pool is not None:
            if len(self.caption_pool) != n:
                raise ValueError(
                    f"ImageSet.caption_pool needs one list per image: {n} images but {len(self.caption_pool)} lists."
                )
            if any(not pool for pool in self.caption_pool):
                raise ValueError("Every caption_pool entry must hold at least one caption.")
        if self.ids is None:
            self.ids = [str(i) for i in range(n)]
        elif len(self.ids) != n:
            raise ValueError(f"ImageSet needs one id per image: {n} images but {len(self.ids)} ids.")
        else:
            self.ids = [str(i) for i in self.ids]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageSet(name={self.name!r}, n={len(self)}, size={self.image_size}, factors={self.factors}, "
            f"captions={self.captions is not None}, skipped={self.skipped})"
        )

    @property
    def factors(self) -> list[str]:
        """Label factor names in order; the first is the main factor."""
        return list(self.labels)

    @property
    def image_size(self) -> int:
        """H (== W) in pixels."""
        return int(self.images.shape[2])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageSet:
        """The images at ``indices`` (ints in 0..N-1, or a boolean mask of length N), in that order.

        ``spec`` is kept as it is: it names the dataset the subset was taken from.
        """
        idx = _as_indices(indices, len(self))
        spec = None if self.spec is None else dict(self.spec)
        return ImageSet(
            images=self.images[torch.from_numpy(idx)],
            labels={f: a[idx] for f, a in self.labels.items()},
            classes={f: list(c) for f, c in self.classes.items()},
            name=self.name,
            captions=None if self.captions is None else [self.captions[i] for i in idx],
            caption_pool=None if self.caption_pool is None else [list(self.caption_pool[i]) for i in idx],
            ids=[self.ids[i] for i in idx],  # type: ignore[index]
            spec=spec,
            skipped=self.skipped,
            notes=list(self.notes),
            skipped_files=list(self.skipped_files),
        )

    def split(
        self, test_fraction: float = 0.2, seed: int = 0, stratify: str | None = None
    ) -> tuple[ImageSet, ImageSet]:
        """A seeded (train, test) split; both keep the original order of their images.

        With ``stratify`` (a factor name) each class is split in the same proportion; a class with a
        single image stays in train.
        """
        n = len(self)
        if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, not {test_fraction!r}.")
        if n < 2:
            raise ValueError(f"Splitting needs at least 2 images; {self.name!r} has {n}.")
        rng = np.random.default_rng(seed)
        if stratify is None:
            n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
            test = rng.permutation(n)[:n_test]
        else:
            if stratify not in self.labels:
                raise ValueError(f"Cannot stratify by {stratify!r}; the factors are {', '.join(self.factors)}.")
            lab = self.labels[stratify]
            parts = []
            for c in np.unique(lab):
                members = np.flatnonzero(lab == c)
                rng.shuffle(members)
                k = min(int(round(len(members) * test_fraction)), len(members) - 1)
                parts.append(members[:k])
            test = np.concatenate(parts)
            if test.size == 0:  # every class too small to give one away: fall back to a plain split
                test = rng.permutation(n)[:1]
        is_test = np.zeros(n, dtype=bool)
        is_test[test] = True
        return self.subset(np.flatnonzero(~is_test)), self.subset(np.flatnonzero(is_test))

    def to_float(self, device: torch.device | str | None = None) -> torch.Tensor:
        """float32 in [0, 1] on ``device`` (default :func:`pick_device`). Shape: (N, 3, H, W).

        Moves the uint8 tensor first (4x less to copy), then converts on the device.
        """
        device = pick_device() if device is None else torch.device(device)
        return self.images.to(device).float().div_(255.0)


def _as_indices(indices: Any, n: int) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"A boolean mask must have length {n}, not {idx.shape}.")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ValueError(f"Indices must be a 1-D array of integers or a boolean mask, not {idx.dtype} {idx.shape}.")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"Indices must lie in 0..{n - 1}; found {idx.min()}..{idx.max()}.")
    return idx.astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------
# Identity: what a checkpoint records about its data (never a path)
# ---------------------------------------------------------------------------------------------
OWN_DATA = "own"  # dataset_identity's "name" for anything that is not a built-in dataset
_FINGERPRINTS: "weakref.WeakKeyDictionary[ImageSet, str]" = weakref.WeakKeyDictionary()


def fingerprint(ds: ImageSet) -> str:
    """sha256 (hex) of the decoded images, their labels and class names: the data's name by content.

    The same files decoded at the same size give the same fingerprint wherever they were loaded (an upload in
    the app, ``core.cli train --dataset x.zip``); a different size, one image more or one label changed give
    another. Computed once per ImageSet (its images are never modified in place).
    """
    known = _FINGERPRINTS.get(ds)
    if known is not None:
        return known
    h = hashlib.sha256()
    head = {"shape": list(ds.images.shape), "classes": ds.classes}
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(memoryview(ds.images.contiguous().numpy()).cast("B"))
    for f in ds.factors:
        h.update(np.ascontiguousarray(ds.labels[f], dtype="<i8").tobytes())
    digest = h.hexdigest()
    _FINGERPRINTS[ds] = digest
    return digest


def _safe_title(name: str) -> str:
    """A dataset name fit to show and to store: letters, digits, space, ``._-()``, at most 60 characters."""
    clean = re.sub(r"[^A-Za-z0-9 ._()-]+", "_", str(name)).strip(" ._") or "your images"
    return clean[:60]


def dataset_identity(ds: ImageSet) -> dict[str, Any]:
    """What a checkpoint records about ``ds``: a built-in's spec, or the data's fingerprint, never a path.

    Built-in offline and downloadable sets give their spec (a download's cache folder is dropped); anything
    else (a folder, a .zip, an upload) gives ``{"name": "own", "title", "fingerprint", "n", "size", "classes"}``
    so that whoever opens the checkpoint can be asked for that data and told whether what they give is it.
    """
    spec = ds.spec if isinstance(ds.spec, dict) else {}
    name = spec.get("name")
    if name in OFFLINE_DATASETS + DOWNLOAD_DATASETS and name == ds.name:
        options = {k: v for k, v in dict(spec.get("options") or {}).items() if k != "root"}
        return {"name": name, "options": options}
    return {
        "name": OWN_DATA,
        "title": _safe_title(ds.name),
        "fingerprint": fingerprint(ds),
        "n": len(ds),
        "size": ds.image_size,
        "classes": {f: [str(c)[:60] for c in names[:100]] for f, names in ds.classes.items()},
    }


def describe_identity(identity: object) -> str:
    """A checkpoint's own-data identity in words, e.g. 'your own images "icons" (359 images of 32 px, 5 classes,
    fingerprint 1a2b3c4d5e6f)'. The identity comes from a file: every field is checked before it is shown."""
    d = identity if isinstance(identity, dict) else {}
    title = _safe_title(d.get("title", "")) if isinstance(d.get("title"), str) else "your images"
    parts = []
    n, size = d.get("n"), d.get("size")
    if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_IMAGES:
        parts.append(f"{n:,} images" + (f" of {size} px" if isinstance(size, int) and 0 < size <= 4096 else ""))
    classes = d.get("classes")
    if isinstance(classes, dict) and classes and isinstance(next(iter(classes.values())), list):
        parts.append(f"{len(next(iter(classes.values())))} classes")
    fp = d.get("fingerprint")
    if isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{64}", fp):
        parts.append(f"fingerprint {fp[:12]}")
    return f'your own images "{title}"' + (f" ({', '.join(parts)})" if parts else "")


def same_data(identity: object, ds: ImageSet) -> bool:
    """True when ``ds`` is the data ``identity`` (from :func:`dataset_identity`, maybe read from a file) names."""
    if not isinstance(identity, dict):
        return False
    mine = dataset_identity(ds)
    if identity.get("name") == OWN_DATA:
        return mine.get("name") == OWN_DATA and identity.get("fingerprint") == mine["fingerprint"]
    return mine == {"name": identity.get("name"), "options": identity.get("options") or {}}


def heldout_stratify(ds: ImageSet) -> str | None:
    """The factor a training run's held-out split should keep every class of: the main one for data a user
    brings (few images, uneven classes), None (a plain seeded split, as measured so far) for built-ins."""
    return None if dataset_identity_is_builtin(ds) else ds.factors[0]


def dataset_identity_is_builtin(ds: ImageSet) -> bool:
    spec = ds.spec if isinstance(ds.spec, dict) else {}
    return spec.get("name") in OFFLINE_DATASETS + DOWNLOAD_DATASETS and spec.get("name") == ds.name


# ---------------------------------------------------------------------------------------------
# Decoding and archives (security: size caps, bomb guard, path traversal)
# ---------------------------------------------------------------------------------------------
def _mb(nbytes: float) -> str:
    return f"{nbytes / 1024**2:.1f} MB" if nbytes < 1024**3 else f"{nbytes / 1024**3:.1f} GB"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparency is laid over white; 16-bit/float grey is stretched to 0-255."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode.startswith(("I", "F")):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.rint(a).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, *, size: int | None = None) -> np.ndarray:
    """Decode one image file's bytes safely. Shape: (H, W, 3), uint8 RGB.

    ``size``: centre-crop to a square and resize to ``size`` x ``size`` (None keeps the image as it is).
    Refuses (``ImageTooLarge``) files over ``MAX_IMAGE_BYTES`` and images over ``MAX_IMAGE_PIXELS``,
    read from the header before any pixel is decoded (our cap is below Pillow's own bomb limit, and
    Pillow's ``DecompressionBombError`` is refused too). No warnings filter is touched: ``warnings.catch_warnings``
    is not thread-safe, and Streamlit decodes uploads on several threads at once. Anything Pillow cannot decode
    raises ``ImageUnreadable`` with a plain sentence (Pillow's own message is logged, not shown). Both are
    ``DatasetError``.
    The first frame of an animation is used; EXIF rotation is applied; transparency is laid over white.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageUnreadable(f"An image must be given as bytes, not {type(data).__name__}.")
    nbytes = len(data)
    if nbytes == 0:
        raise ImageUnreadable("The file is empty, so it is not an image.")
    if nbytes > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"The image file is {_mb(nbytes)}; images up to {_mb(MAX_IMAGE_BYTES)} are accepted.")
    if size is not None:
        size = _int_opt("size", size, 1, 4096)
    too_many = (
        f"The image has more than {MAX_IMAGE_PIXELS / 1e6:g} megapixels, which is refused as a possible "
        "decompression bomb; scale it down first."
    )
    try:
        # MAX_IMAGE_PIXELS (40 MP) is checked by hand from the header, below Pillow's own limit (~89 MP warns,
        # ~179 MP raises DecompressionBombError at open), so Pillow's global setting is never changed and
        # no image big enough for its warning is ever decoded.
        # Only formats this Pillow registers an opener for: recent Pillow opens MPO files through its JPEG
        # opener and has no "MPO" entry, and Image.open(formats=...) then raised KeyError('MPO') for any file
        # no earlier format recognised (the "('MPO')" error users saw).
        Image.init()
        formats = [f for f in _PIL_FORMATS if f in Image.OPEN]
        with Image.open(io.BytesIO(bytes(data)), formats=formats) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(too_many + f" ({width} x {height} pixels)")
            if width < 1 or height < 1:
                raise ImageUnreadable("The image has no pixels.")
            if size is not None:
                # JPEG only: let the decoder shrink by 1/2, 1/4 or 1/8 while staying >= size (much faster
                # for camera photos). No-op for other formats. No verify(): load() decodes everything and
                # raises on truncated or corrupt data, which is the check we need.
                img.draft("RGB", (size, size))
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
    except DatasetError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(too_many) from None
    except Image.UnidentifiedImageError:
        raise ImageUnreadable(f"The file is not an image in a format this app reads ({_FORMAT_NAMES}).") from None
    except Exception as err:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, struct.error, ...)
        log.info("Image decoding failed: %s: %s", type(err).__name__, err)
        raise ImageUnreadable("The image file is damaged or cut short, so it could not be decoded.") from None
    if size is not None:
        w, h = rgb.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    return np.array(rgb, dtype=np.uint8)


def _zip_source_size(src: Any) -> int:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return len(src)
    if isinstance(src, (str, os.PathLike)):
        return os.path.getsize(src)
    pos = src.tell()
    src.seek(0, os.SEEK_END)
    end = src.tell()
    src.seek(pos)
    return end


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why this archive entry may not be extracted, or None when it is safe."""
    name = info.filename.replace("\\", "/")
    if "\x00" in name:
        return "has a NUL character in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "points outside the archive's folder ('..')"
    mode = (info.external_attr >> 16) & 0o170000
    if mode == 0o120000:
        return "is a symbolic link"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def safe_extract_zip(src: str | os.PathLike | bytes | Any, target_dir: str | os.PathLike) -> Path:
    """Extract a zip archive into ``target_dir`` (created if needed) and return it as an absolute Path.

    ``src`` is a path, the archive's bytes, or a binary file object (e.g. a Streamlit upload).
    Every entry is checked before anything is written; the whole archive is refused (``DatasetError``)
    when it is over ``MAX_UPLOAD_BYTES``, has more than ``MAX_ZIP_ENTRIES`` entries, would unpack to
    more than ``MAX_UNZIPPED_BYTES``, compresses suspiciously well (a zip bomb), or holds an entry with
    an absolute path, a ``..`` component, a NUL byte, a symbolic link or encryption. While writing,
    the real decompressed sizes are counted too (headers can lie); on any failure the files written so
    far are removed again.
    """
    try:
        nbytes = _zip_source_size(src)
    except OSError as err:
        raise DatasetError(f"The archive could not be read ({err.strerror or err}).") from None
    if nbytes > MAX_UPLOAD_BYTES:
        raise DatasetError(f"The archive is {_mb(nbytes)}; archives up to {_mb(MAX_UPLOAD_BYTES)} are accepted.")
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise DatasetError("The file is not a readable .zip archive.") from None
    written: list[Path] = []
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise DatasetError(
                f"The archive has {len(infos):,} entries; at most {MAX_ZIP_ENTRIES:,} are accepted."
            )
        total = 0
        for info in infos:
            reason = _unsafe_member(info)
            if reason:
                raise DatasetError(f"The archive was refused: the entry {info.filename!r} {reason}.")
            total += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > 1024**2 and ratio > MAX_ZIP_RATIO:
                raise DatasetError(
                    f"The archive was refused: {info.filename!r} would expand {ratio:,.0f} times, which looks "
                    "like a zip bomb."
                )
        if total > MAX_UNZIPPED_BYTES:
            raise DatasetError(
                f"The archive would unpack to {_mb(total)}; at most {_mb(MAX_UNZIPPED_BYTES)} is accepted."
            )
        root = Path(target_dir)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        done = 0
        try:
            for info in infos:
                parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
                if not parts:
                    continue
                dest = root.joinpath(*parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                # Belt and braces: the resolved destination must still lie inside the target folder.
                if os.path.commonpath([root, dest.parent.resolve()]) != str(root):
                    raise DatasetError(f"The archive was refused: {info.filename!r} points outside its folder.")
                with zf.open(info) as fin, open(dest, "wb") as fout:
                    written.append(dest)
                    size = 0
                    while chunk := fin.read(1024**2):
                        size += len(chunk)
                        done += len(chunk)
                        if size > info.file_size or done > MAX_UNZIPPED_BYTES:
                            raise DatasetError(
                                f"The archive was refused: {info.filename!r} unpacks to more than its header says."
                            )
                        fout.write(chunk)
        except DatasetError:
            _remove(written)
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
            _remove(written)
            raise DatasetError(f"The archive could not be unpacked ({err}).") from None
    return root


def _remove(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Option checks
# ---------------------------------------------------------------------------------------------
def _int_opt(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)):
        raise DatasetError(f"{name} must be a whole number between {lo} and {hi}, not {value!r}.")
    if isinstance(value, float) and not value.is_integer():
        raise DatasetError(f"{name} must be a whole number between {lo} and {hi}, not {value!r}.")
    value = int(value)
    if not lo <= value <= hi:
        raise DatasetError(f"{name} must lie between {lo} and {hi}, not {value}.")
    return value


def _check_memory(n: int, size: int) -> None:
    need = n * 3 * size * size
    if need > MAX_DATASET_BYTES:
        raise DatasetError(
            f"{n:,} images of {size} x {size} pixels would take {_mb(need)} of memory; the limit is "
            f"{_mb(MAX_DATASET_BYTES)}. Use fewer images or a smaller size."
        )


def _check_progress(progress: Any) -> ProgressFn | None:
    if progress is not None and not callable(progress):
        raise DatasetError("progress must be a function progress(done, total) or None.")
    return progress


def _nhwc_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) or (N, H, W) uint8 -> (N, 3, H, W) uint8 tensor."""
    if arr.ndim == 3:
        arr = np.repeat(arr[:, :, :, None], 3, axis=3)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def _stack_chw(pixels: list[np.ndarray]) -> torch.Tensor:
    """A list of (H, W, 3) uint8 images -> one (N, 3, H, W) tensor, emptying the list as it goes, so the peak
    is about one copy of the images plus the output (np.stack then a transpose held three)."""
    n = len(pixels)
    h, w = pixels[0].shape[:2]
    out = np.empty((n, 3, h, w), dtype=np.uint8)
    pixels.reverse()  # pop() from the end is O(1)
    for i in range(n):
        out[i] = pixels.pop().transpose(2, 0, 1)
    return torch.from_numpy(out)


def _resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
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


# ---------------------------------------------------------------------------------------------
# "shapes": procedural, vectorised
# ---------------------------------------------------------------------------------------------
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLOURS = {  # RGB, hues about 60 degrees apart so that colour is never ambiguous
    "red": (220, 35, 35),
    "yellow": (235, 195, 0),
    "green": (30, 165, 55),
    "cyan": (0, 190, 205),
    "blue": (35, 80, 235),
    "purple": (160, 45, 220),
}
# Shapes are big and near the centre so that shape is what a small CNN can see at 32 px; position and
# size are still factors, just gentle ones.
SIZES = {"small": 0.25, "large": 0.36}  # radius as a fraction of the image side
SIZE_JITTER = 0.07  # radius x U(1 - j, 1 + j)
POSITIONS = {  # centre (x, y) as a fraction of the side; y grows downwards
    "centre": (0.5, 0.5),
    "top left": (0.4, 0.4),
    "top right": (0.6, 0.4),
    "bottom left": (0.4, 0.6),
    "bottom right": (0.6, 0.6),
}
POSITION_JITTER = {"small": 0.03, "large": 0.01}  # +- per axis; small shapes have more room
ROTATION_JITTER = math.radians(12)  # +- ; well under the 45 degrees between square and diamond
BACKGROUNDS = {"black": (15, 15, 15), "grey": (115, 115, 115), "white": (240, 240, 240)}
SHAPE_FACTORS = {
    "shape": list(SHAPES),
    "colour": list(COLOURS),
    "size": list(SIZES),
    "position": list(POSITIONS),
    "background": list(BACKGROUNDS),
}


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test for one shape in its own frame: u right, v down, unit = the shape's radius.

    Sizes are set so the shapes cover similar areas (about 2.3-3.1 square units) and reach at most
    1.25 units from the centre.
    """
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if kind == "triangle":  # equilateral, apex up, circumradius 1.25 around its centroid
        R = 1.25
        return (v <= R / 2) & (np.abs(u) * math.sqrt(3.0) <= v + R)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.2
    if kind == "cross":  # a plus sign
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.36) & (av <= 1.1)) | ((av <= 0.36) & (au <= 1.1))
    if kind == "star":  # a filled pentagram, one point up, points 1.3 units out
        # The five lines through every other point bound a pentagon (distance R cos 72deg from the centre);
        # the filled star is where at least four of the five half-planes hold. No trigonometry per pixel.
        outer = 1.3
        d = outer * math.cos(2 * math.pi / 5)
        inside = np.zeros(u.shape, dtype=np.uint8)
        for k in range(5):
            t = -math.pi / 2 + 2 * math.pi * k / 5 + math.pi  # normals point away from the points
            inside += (u * math.cos(t) + v * math.sin(t) <= d).view(np.uint8)
        return inside >= 4
    raise ValueError(f"Unknown shape {kind!r}.")


def _supersampling(size: int) -> int:
    """Samples per pixel side when drawing shapes: coverage takes the values k / ss**2."""
    return 4 if size <= 16 else 2 if size <= 64 else 1


def _render_shapes(
    kind: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, angle: np.ndarray,
    fg: np.ndarray, bg: np.ndarray, size: int,
) -> np.ndarray:
    """Render N shapes at once. Returns uint8 Shape: (N, 3, size, size).

    Each pixel is supersampled ss x ss times and the coverage blends foreground over background, so
    edges are antialiased. Work is chunked to keep temporaries near 4 M elements; the only Python loop
    runs over chunks and shape kinds, never over images.
    """
    n = len(kind)
    ss = _supersampling(size)
    g = size * ss
    grid = (np.arange(g, dtype=np.float32) + 0.5) / g  # pixel-centre coordinates in [0, 1]
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    chunk = max(1, 4_000_000 // (g * g))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        cover = np.empty((e - s, size, size), dtype=np.float32)  # fraction of each pixel inside its shape
        k = kind[s:e]
        for ki, name in enumerate(SHAPES):
            sel = np.flatnonzero(k == ki)
            if not sel.size:
                continue
            j = s + sel
            cos = np.cos(angle[j])[:, None, None]
            sin = np.sin(angle[j])[:, None, None]
            inv_r = (1.0 / radius[j])[:, None, None]
            dx = grid[None, None, :] - cx[j, None, None]  # (m, 1, g)
            dy = grid[None, :, None] - cy[j, None, None]  # (m, g, 1)
            u = (dx * cos + dy * sin) * inv_r  # (m, g, g): rotate into the shape's frame, then scale
            v = (dy * cos - dx * sin) * inv_r
            m = _shape_mask(name, u, v).view(np.uint8)
            # Sum each ss x ss block with strided adds (much faster than a float mean over reshaped axes).
            acc = np.zeros((sel.size, size, size), dtype=np.uint8)
            for a in range(ss):
                for b in range(ss):
                    acc += m[:, a::ss, b::ss]
            cover[sel] = acc * np.float32(1.0 / (ss * ss))
        f, b = fg[s:e, :, None, None], bg[s:e, :, None, None]  # (c, 3, 1, 1)
        img = b + cover[:, None] * (f - b)  # (c, 3, S, S)
        out[s:e] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def _balanced(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n labels in 0..k-1, as equal in count as n allows, shuffled."""
    return rng.permutation(np.arange(n) % k).astype(np.int64)


def _load_shapes(*, n: int = 4000, size: int = 32, seed: int = 0, progress: ProgressFn | None = None) -> ImageSet:
    """Procedural shapes with five factors: shape, colour, size, position, background.

    Every factor is balanced (counts differ by at most one) and drawn independently, so each one can be
    probed on its own. Per image jitter: position within its region, radius +-7%, rotation +-12 degrees.
    Colours and backgrounds are exact on purpose: a continuous per-image shade is a unique fingerprint that
    instance discrimination (SimCLR) latches onto instead of shape; measured, shape kNN rose faster without it.
    """
    n = _int_opt("n", n, 1, MAX_IMAGES)
    size = _int_opt("size", size, 8, 128)
    seed = _int_opt("seed", seed, 0, 2**32 - 1)
    _check_memory(n, size)
    rng = np.random.default_rng(seed)
    lab = {f: _balanced(rng, n, len(c)) for f, c in SHAPE_FACTORS.items()}

    size_name = np.array(list(SIZES))[lab["size"]]
    radius = np.array(list(SIZES.values()), dtype=np.float32)[lab["size"]]
    radius *= rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER, n).astype(np.float32)
    centre = np.array(list(POSITIONS.values()), dtype=np.float32)[lab["position"]]  # (N, 2)
    jit = np.where(size_name == "small", POSITION_JITTER["small"], POSITION_JITTER["large"]).astype(np.float32)
    centre += rng.uniform(-1, 1, (n, 2)).astype(np.float32) * jit[:, None]
    angle = rng.uniform(-ROTATION_JITTER, ROTATION_JITTER, n).astype(np.float32)
    fg = np.array(list(COLOURS.values()), dtype=np.float32)[lab["colour"]]
    bg = np.array(list(BACKGROUNDS.values()), dtype=np.float32)[lab["background"]]

    pixels = _render_shapes(lab["shape"], centre[:, 0], centre[:, 1], radius, angle, fg, bg, size)

    # Captions depend only on the factor combination (1,080 of them): build each once, then index.
    dims = [len(c) for c in SHAPE_FACTORS.values()]
    combo = np.ravel_multi_index(tuple(lab[f] for f in SHAPE_FACTORS), dims)
    pools: dict[int, list[str]] = {}
    for c in np.unique(combo):
        sh, co, sz, po, bgn = (SHAPE_FACTORS[f][i] for f, i in zip(SHAPE_FACTORS, np.unravel_index(c, dims)))
        where = "in the centre" if po == "centre" else f"at the {po}"
        pools[int(c)] = [
            f"a {sz} {co} {sh} {where}",  # the full caption comes first
            f"a {co} {sh}",
            f"a {sh}",
            f"a {co} shape",
            f"a {sz} {sh}",
            f"a {sz} {co} {sh}",
            f"a {sh} {where}",
            f"a {co} {sh} {where}",
            f"a {sz} {co} {sh} on a {bgn} background",
        ]
    caption_pool = [list(pools[c]) for c in combo.tolist()]
    if progress is not None:
        progress(n, n)
    return ImageSet(
        images=torch.from_numpy(pixels),
        labels=lab,
        classes={f: list(c) for f, c in SHAPE_FACTORS.items()},
        name="shapes",
        captions=[p[0] for p in caption_pool],
        caption_pool=caption_pool,
        # n and seed name the item: another seed (or n) draws other shapes under the same index, and pages match
        # embedding sets by id (the Explorer's Compare), so equal ids must mean the same shape.
        ids=[f"shapes/n{n}-s{seed}/{i:06d}" for i in range(n)],
        spec={"name": "shapes", "options": {"n": n, "size": size, "seed": seed}},
    )


def shape_masks(shapes: ImageSet) -> np.ndarray:
    """Where each built-in shape lies: the fraction of every pixel the shape covers, in [0, 1].

    Shape: ``shapes`` of N images, S px -> float32 (N, S, S). ``>= 0.5`` is the usual inside test.

    :func:`_render_shapes` blends each pixel as ``bg + cover * (fg - bg)`` with the exact colours of the image's
    ``colour`` and ``background`` labels, so ``cover`` is read back exactly from the channel where fg and bg differ
    most (by at least 115 levels for every pair, so rounding moves it by under 0.005, far less than the gap between
    the generator's coverage levels k / ss**2, to which it is snapped): the generator's own mask, for any subset of
    a shapes set, with no second draw of its random numbers to keep in step.
    """
    if not {"colour", "background"} <= set(shapes.labels) or shapes.classes.get("colour") != list(COLOURS):
        raise ValueError("shape_masks needs a built-in shapes set (load_dataset('shapes', ...)).")
    fg = np.array(list(COLOURS.values()), dtype=np.float32)[shapes.labels["colour"]]  # (N, 3)
    bg = np.array(list(BACKGROUNDS.values()), dtype=np.float32)[shapes.labels["background"]]
    ch = np.abs(fg - bg).argmax(axis=1)  # (N,) the most telling channel per image
    rows = np.arange(len(ch))
    pix = shapes.images.numpy()[rows, ch].astype(np.float32)  # (N, S, S)
    cover = (pix - bg[rows, ch][:, None, None]) / (fg[rows, ch] - bg[rows, ch])[:, None, None]
    levels = _supersampling(shapes.image_size) ** 2  # the generator's coverage is k / levels: snap to it
    return (np.clip(np.rint(cover * levels), 0, levels) / levels).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# "digits" and "photos": shipped with scikit-learn / scikit-image
# ---------------------------------------------------------------------------------------------
def _load_digits(*, n: int | None = None, size: int = 8, progress: ProgressFn | None = None) -> ImageSet:
    """scikit-learn's handwritten digits: 1,797 images, 8 x 8, grey levels 0-16 scaled to 0-255."""
    from sklearn.datasets import load_digits

    size = _int_opt("size", size, 8, 128)
    d = load_digits()
    total = len(d.images)
    n = total if n is None else _int_opt("n", n, 1, total)
    grey = np.rint(d.images[:n] * (255.0 / 16.0)).astype(np.uint8)  # (n, 8, 8)
    images = _resize_batch(_nhwc_to_tensor(grey), size)
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
_PHOTOS = {
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


def _load_photos(*, size: int = 128, progress: ProgressFn | None = None) -> ImageSet:
    """scikit-image's sample photos, read from the package folder (never via its downloader)."""
    import skimage.data

    size = _int_opt("size", size, 8, 512)
    folder = Path(skimage.data.__file__).parent
    files = [f for f in _PHOTOS if (folder / f).is_file()]
    pixels, names, captions, notes = [], [], [], []
    for i, f in enumerate(files):
        try:
            pixels.append(decode_image((folder / f).read_bytes(), size=size))
        except (DatasetError, OSError) as err:
            notes.append(f"{f} was left out: {err}")
            continue
        names.append(_PHOTOS[f][0])
        captions.append(_PHOTOS[f][1])
        if progress is not None:
            progress(i + 1, len(files))
    if len(names) < 2:
        raise DatasetError(
            "The scikit-image sample photos are missing from this installation; reinstall scikit-image."
        )
    return ImageSet(
        images=_nhwc_to_tensor(np.stack(pixels)),
        labels={"photo": np.arange(len(names), dtype=np.int64)},
        classes={"photo": names},
        name="photos",
        captions=captions,
        ids=[f"photos/{n}" for n in names],
        spec={"name": "photos", "options": {"size": size}},
        skipped=len(files) - len(names),
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# Your own data: image folder, .zip, .csv / .jsonl
# ---------------------------------------------------------------------------------------------
class _Skips:
    """Counts files left out while loading, by reason, and turns them into notes."""

    def __init__(self) -> None:
        self.by_reason: dict[str, list[str]] = {}

    def add(self, reason: str, name: str) -> None:
        self.by_reason.setdefault(reason, []).append(name)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_reason.values())

    def files(self) -> list[tuple[str, str]]:
        """(file, why) for every skipped file, in the order they were met within each reason."""
        return [(name, reason) for reason, names in self.by_reason.items() for name in names]

    def notes(self) -> list[str]:
        out = []
        for reason, names in self.by_reason.items():
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            out.append(f"Skipped {len(names)} file{'s' * (len(names) != 1)} {reason}: {shown}.")
        return out


def _read_image_file(path: Path, size: int, display: str, skips: _Skips) -> np.ndarray | None:
    """Decode one file, or record why it was skipped and return None."""
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            skips.add(f"over the {_mb(MAX_IMAGE_BYTES)} size limit", display)
            return None
        return decode_image(path.read_bytes(), size=size)
    except ImageTooLarge:
        skips.add("that are too large", display)
    except ImageUnreadable:
        skips.add("that are not readable images", display)
    except OSError:
        skips.add("that could not be opened", display)
    return None


def _cap_indices(total: int, max_images: int) -> np.ndarray:
    """Evenly spaced indices when there are more items than allowed (keeps every class represented)."""
    if total <= max_images:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max_images).round().astype(np.int64))


def _cap_items(items: list, max_images: int, size: int, noun: str) -> tuple[list, list[str]]:
    """Keep at most ``max_images`` items, evenly spread, and check the decoded set fits in memory."""
    notes: list[str] = []
    keep = _cap_indices(len(items), max_images)
    if len(keep) < len(items):
        notes.append(f"Used {len(keep):,} of {len(items):,} {noun} (max_images={max_images:,}), evenly spread.")
        items = [items[i] for i in keep]
    _check_memory(len(items), size)
    return items, notes


def _visible(name: str) -> bool:
    return not name.startswith((".", "__MACOSX", "__pycache__"))


def _load_folder(
    root: Path, *, size: int, max_images: int, progress: ProgressFn | None, name: str, spec: dict
) -> ImageSet:
    """ImageFolder layout: root/<class>/**/<image>. Class = sub-folder name, in sorted order."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder.")
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and _visible(d.name)), key=lambda d: d.name)
    loose = [f for f in root.iterdir() if f.is_file() and _visible(f.name)]
    if not class_dirs:
        if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in loose):
            raise DatasetError(
                f"{name!r} holds images but no class sub-folders. Put each class in its own sub-folder "
                "(e.g. cats/ and dogs/), so the folder name becomes the label."
            )
        raise DatasetError(f"{name!r} is empty: it has no class sub-folders with images in them.")

    skips = _Skips()
    for f in loose:
        skips.add("outside any class sub-folder", f.name)
    files: list[tuple[int, Path, str]] = []  # (class index, path, id relative to root)
    for ci, d in enumerate(class_dirs):
        for dirpath, dirnames, filenames in os.walk(d, followlinks=False):
            dirnames[:] = sorted(x for x in dirnames if _visible(x))
            for fn in sorted(filenames):
                if not _visible(fn):
                    continue
                p = Path(dirpath) / fn
                rel = p.relative_to(root).as_posix()
                if p.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append((ci, p, rel))
                else:
                    skips.add("that are not images (by their extension)", rel)
    if not files:
        raise DatasetError(
            f"{name!r} has no image files in its class sub-folders; accepted types are "
            f"{', '.join(IMAGE_EXTENSIONS)}."
        )
    files, notes = _cap_items(files, max_images, size, "images")

    pixels, labels, ids = [], [], []
    for i, (ci, p, rel) in enumerate(files):
        arr = _read_image_file(p, size, rel, skips)
        if arr is not None:
            pixels.append(arr)
            labels.append(ci)
            ids.append(rel)
        if progress is not None and (i % 64 == 63 or i == len(files) - 1):
            progress(i + 1, len(files))
    if not pixels:
        raise DatasetError(
            f"None of the {len(files)} image files in {name!r} could be used. " + " ".join(skips.notes())
        )
    used = sorted(set(labels))
    for ci in range(len(class_dirs)):
        if ci not in used:
            notes.append(f"The class folder {class_dirs[ci].name!r} has no usable images and was left out.")
    if len(used) < 2:
        only = class_dirs[used[0]].name
        raise DatasetError(
            f"{name!r} has usable images in only one class ({only!r}). Contrastive training and the "
            "evaluation need at least two classes: add a second sub-folder of images."
        )
    remap = {ci: j for j, ci in enumerate(used)}
    class_names = [class_dirs[ci].name for ci in used]
    lab = np.array([remap[c] for c in labels], dtype=np.int64)
    return ImageSet(
        images=_stack_chw(pixels),
        labels={"class": lab},
        classes={"class": class_names},
        name=name,
        ids=ids,
        spec=spec,
        skipped=skips.count,
        notes=skips.notes() + notes,
        skipped_files=skips.files(),
    )


_IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "file_name", "filepath", "img")
_CAPTION_COLUMNS = ("caption", "text", "title", "description", "prompt")
_LABEL_COLUMNS = ("label", "class", "category")


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    by_lower = {c.strip().lower(): c for c in columns}
    if wanted is not None:
        if wanted in columns:
            return wanted
        if wanted.strip().lower() in by_lower:
            return by_lower[wanted.strip().lower()]
        raise DatasetError(f"The table has no {what} column {wanted!r}; its columns are {', '.join(columns)}.")
    for c in candidates:
        if c in by_lower:
            return by_lower[c]
    return None


def _read_table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{path.name} is not UTF-8 text; save it as UTF-8 and try again.") from None
    if path.suffix.lower() == ".csv":
        try:
            reader = csv.DictReader(io.StringIO(text))
            rows = [r for r in reader]
        except csv.Error as err:
            raise DatasetError(f"{path.name} is not a readable CSV file ({err}).") from None
        return [c for c in (reader.fieldnames or []) if c is not None], rows
    rows, columns = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"Line {lineno} of {path.name} is not valid JSON ({err.msg}).") from None
        except RecursionError:  # brackets nested thousands deep
            raise DatasetError(f"Line {lineno} of {path.name} nests brackets too deeply; each line must be one "
                               "flat JSON object.") from None
        if not isinstance(row, dict):
            raise DatasetError(
                f'Line {lineno} of {path.name} must be a JSON object like {{"image": ..., "caption": ...}}.'
            )
        rows.append(row)
        columns.update(dict.fromkeys(row))
    return list(columns), rows


def _load_table(
    path: Path, *, size: int, max_images: int, progress: ProgressFn | None, name: str, spec: dict,
    image_column: str | None = None, caption_column: str | None = None, label_column: str | None = None,
) -> ImageSet:
    """A .csv/.jsonl with an image path column (relative to the table's folder), captions and/or labels.

    Factor: the label column when there is one ("class"), else the caption itself ("caption").
    Paths that leave the table's folder, missing files and unreadable images are skipped and counted.
    """
    nbytes = path.stat().st_size
    if nbytes > MAX_UPLOAD_BYTES:
        raise DatasetError(f"{path.name} is {_mb(nbytes)}; tables up to {_mb(MAX_UPLOAD_BYTES)} are accepted.")
    columns, rows = _read_table(path)
    if not rows:
        raise DatasetError(f"{path.name} has no rows.")
    img_col = _pick_column(columns, image_column, _IMAGE_COLUMNS, "image")
    cap_col = _pick_column(columns, caption_column, _CAPTION_COLUMNS, "caption")
    lab_col = _pick_column(columns, label_column, _LABEL_COLUMNS, "label")
    if img_col is None:
        raise DatasetError(
            f"{path.name} needs a column with image paths (named one of {', '.join(_IMAGE_COLUMNS)}); "
            f"its columns are {', '.join(columns) or 'none'}."
        )
    if cap_col is None and lab_col is None:
        raise DatasetError(
            f"{path.name} needs a caption column ({', '.join(_CAPTION_COLUMNS)}) or a label column "
            f"({', '.join(_LABEL_COLUMNS)}) besides {img_col!r}."
        )
    rows, notes = _cap_items(rows, max_images, size, "rows")

    base = path.parent.resolve()
    skips = _Skips()
    pixels, caps, labs, ids = [], [], [], []
    for i, row in enumerate(rows):
        rel = str(row.get(img_col) or "").strip()
        caption = None if cap_col is None else str(row.get(cap_col) if row.get(cap_col) is not None else "").strip()
        label = None if lab_col is None else str(row.get(lab_col) if row.get(lab_col) is not None else "").strip()
        shown = rel or f"row {i + 1}"
        if not rel:
            skips.add("with no image path", shown)
        elif (caption is not None and not caption) or (label is not None and not label):
            skips.add("with an empty caption or label", shown)
        else:
            target = (base / rel).resolve()
            if os.path.commonpath([base, target]) != str(base):
                skips.add("whose path leaves the table's folder", shown)
            elif not target.is_file():
                skips.add("that do not exist", shown)
            else:
                arr = _read_image_file(target, size, shown, skips)
                if arr is not None:
                    pixels.append(arr)
                    caps.append(caption)
                    labs.append(label)
                    ids.append(Path(rel).as_posix())
        if progress is not None and (i % 64 == 63 or i == len(rows) - 1):
            progress(i + 1, len(rows))
    if not pixels:
        raise DatasetError(
            f"None of the {len(rows)} rows of {path.name} gave a usable image. " + " ".join(skips.notes())
        )

    factor, values = ("class", labs) if lab_col is not None else ("caption", caps)
    class_names = sorted(set(values))  # type: ignore[arg-type]
    index = {c: k for k, c in enumerate(class_names)}
    return ImageSet(
        images=_stack_chw(pixels),
        labels={factor: np.array([index[v] for v in values], dtype=np.int64)},
        classes={factor: class_names},
        name=name,
        captions=caps if cap_col is not None else None,  # type: ignore[arg-type]
        ids=ids,
        spec=spec,
        skipped=skips.count,
        notes=skips.notes() + notes,
        skipped_files=skips.files(),
    )


def _dataset_root(folder: Path) -> Path:
    """Descend through single wrapper folders (``data.zip`` -> ``data/``) to where the content starts."""
    for _ in range(8):
        entries = [e for e in folder.iterdir() if _visible(e.name)]
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) == 1 and len(entries) == 1:
            folder = dirs[0]
        else:
            break
    return folder


def _load_path(
    path: Path, *, size: int = 32, max_images: int = 20_000, progress: ProgressFn | None = None,
    image_column: str | None = None, caption_column: str | None = None, label_column: str | None = None,
) -> ImageSet:
    size = _int_opt("size", size, 8, 512)
    max_images = _int_opt("max_images", max_images, 1, MAX_IMAGES)
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"There is no file or folder at {path}.")
    path = path.resolve()
    options: dict[str, Any] = {"size": size, "max_images": max_images}
    table_opts = {"image_column": image_column, "caption_column": caption_column, "label_column": label_column}
    options.update({k: v for k, v in table_opts.items() if v is not None})
    spec = {"name": str(path), "options": options}
    common = dict(size=size, max_images=max_images, progress=progress, spec=spec)
    suffix = path.suffix.lower()
    if path.is_dir():
        return _load_folder(path, name=path.name, **common)
    if suffix in TABLE_EXTENSIONS:
        return _load_table(path, name=path.stem, **common, **table_opts)
    if suffix == ".zip":
        with tempfile.TemporaryDirectory(prefix="cp-zip-") as tmp:
            root = _dataset_root(safe_extract_zip(path, tmp))
            # A single table at the top is the dataset when nothing else could be (no class folders), or
            # when it names its images; otherwise the class sub-folders are.
            tables = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in TABLE_EXTENSIONS]
            has_dirs = any(d.is_dir() and _visible(d.name) for d in root.iterdir())
            if len(tables) == 1 and (not has_dirs or image_column is not None or _table_like(tables[0])):
                return _load_table(tables[0], name=path.stem, **common, **table_opts)
            return _load_folder(root, name=path.stem, **common)
    if suffix in IMAGE_EXTENSIONS:
        raise DatasetError(
            f"{path.name} is a single image; a dataset needs a folder of class sub-folders, a .zip of one, "
            "or a .csv/.jsonl of image paths and captions."
        )
    raise DatasetError(
        f"{path.name} is not a dataset this app can read; give a folder of class sub-folders, a .zip, "
        "a .csv or a .jsonl."
    )


def _table_like(path: Path) -> bool:
    """A table inside an archive counts as the dataset when it has an image-path column."""
    try:
        columns, _ = _read_table(path)
    except DatasetError:
        return False
    return _pick_column(columns, None, _IMAGE_COLUMNS, "image") is not None


# ---------------------------------------------------------------------------------------------
# torchvision downloads
# ---------------------------------------------------------------------------------------------
_DOWNLOADS: dict[str, dict[str, Any]] = {
    "cifar10": {"title": "CIFAR-10", "factor": "class", "size": 32, "mb": 163, "splits": ("train", "test")},
    "mnist": {"title": "MNIST", "factor": "digit", "size": 28, "mb": 11, "splits": ("train", "test")},
    "fashion_mnist": {"title": "Fashion-MNIST", "factor": "class", "size": 28, "mb": 29, "splits": ("train", "test")},
    "stl10": {"title": "STL-10", "factor": "class", "size": 96, "mb": 2518, "splits": ("train", "test")},
}


def default_cache_dir() -> Path:
    """Where downloads are kept: ``$CP_CACHE_DIR``, else ``~/.cache/contrastive-playground``."""
    env = os.environ.get("CP_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "contrastive-playground"


def _tv_class(name: str) -> Any:
    from torchvision import datasets

    return {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST,
            "stl10": datasets.STL10}[name]


def _tv_urls(name: str, cls: Any, root: Path) -> list[tuple[list[str], Path, str | None]]:
    """(candidate urls, destination file, md5) for each file torchvision will look for before downloading."""
    if name in ("cifar10", "stl10"):
        return [([cls.url], root / cls.filename, cls.tgz_md5)]
    raw = root / cls.__name__ / "raw"
    return [([m + fname for m in cls.mirrors], raw / fname, md5) for fname, md5 in cls.resources]


def _download(urls: list[str], dest: Path, md5: str | None, report: Callable[[int], None]) -> None:
    """Fetch the first URL that works into ``dest`` (atomically), reporting bytes as they come."""
    from torchvision.datasets.utils import check_integrity

    if check_integrity(str(dest), md5):
        return
    errors = []
    for url in urls:
        def fetch(tmp: Path, url: str = url) -> None:
            with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
                report(-int(resp.headers.get("Content-Length") or 0))  # negative: a new file's expected size
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    report(len(chunk))
            if not check_integrity(str(tmp), md5):
                raise OSError("the file arrived damaged (checksum mismatch)")

        try:
            atomic_write(dest, fetch)
            return
        except OSError as err:  # URLError and socket timeouts are OSErrors
            errors.append(f"{urllib.parse.urlsplit(url).hostname}: {getattr(err, 'reason', err)}")
    raise OSError("; ".join(errors))


def _load_torchvision(
    name: str, *, root: str | os.PathLike | None = None, split: str = "train", n: int | None = None,
    size: int | None = None, progress: ProgressFn | None = None,
) -> ImageSet:
    info = _DOWNLOADS[name]
    if split not in info["splits"]:
        raise DatasetError(f"split must be one of {', '.join(info['splits'])}, not {split!r}.")
    size = info["size"] if size is None else _int_opt("size", size, 8, 256)
    cache = (Path(root).expanduser() if root is not None else default_cache_dir()) / "torchvision"
    cls = _tv_class(name)

    def build(download: bool) -> Any:
        if name == "stl10":
            return cls(str(cache), split=split, download=download)
        return cls(str(cache), train=split == "train", download=download)

    try:
        ds = build(download=False)  # already in the cache: no network at all
    except (OSError, ValueError) as err:  # present but unreadable (RuntimeError, "not found", is handled below)
        raise DatasetError(
            f"The cached copy of {info['title']} in {cache} could not be read ({err}); delete that folder and "
            "load it again."
        ) from None
    except RuntimeError:
        files = _tv_urls(name, cls, cache)
        all_urls = [u for urls, _, _ in files for u in urls]
        if not network.reachable(all_urls, timeout=PROBE_TIMEOUT):
            targets = network.probe_targets(all_urls)
            host = targets[0][0] if targets else "the download server"
            raise DownloadUnavailable(
                f"{info['title']} has to be downloaded first (about {info['mb']} MB), but the network is "
                f"unreachable from here ({host} did not answer). Use an offline dataset instead: "
                f"{_OFFLINE_HINT}."
            ) from None
        state = {"done": 0, "total": info["mb"] * 1024**2}

        def report(nbytes: int) -> None:
            if nbytes < 0:  # a new file announced its size
                state["total"] = max(state["total"], state["done"] - nbytes)
            else:
                state["done"] += nbytes
                if progress is not None:
                    progress(state["done"], state["total"])

        try:
            for urls, dest, md5 in files:
                _download(urls, dest, md5, report)
            cache.mkdir(parents=True, exist_ok=True)
            ds = build(download=True)  # finds the verified archives and only extracts them
        except (OSError, RuntimeError) as err:
            raise DownloadUnavailable(
                f"Downloading {info['title']} failed ({err}). Try again later, or use an offline dataset: "
                f"{_OFFLINE_HINT}."
            ) from None

    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    targets_raw = ds.labels if name == "stl10" else ds.targets
    if isinstance(targets_raw, torch.Tensor):
        targets_raw = targets_raw.numpy()
    target = np.asarray(targets_raw).astype(np.int64)
    total = len(data)
    n = total if n is None else _int_opt("n", n, 1, total)
    data, target = data[:n], target[:n]
    _check_memory(n, size)
    if name == "stl10":
        images = torch.from_numpy(np.ascontiguousarray(data))  # already (N, 3, 96, 96)
    else:
        images = _nhwc_to_tensor(data)  # (N, H, W, 3) for CIFAR, (N, H, W) grey for (Fashion-)MNIST
    images = _resize_batch(images, size)
    class_names = [str(i) for i in range(10)] if name == "mnist" else [str(c) for c in ds.classes]
    options: dict[str, Any] = {"split": split, "size": size}
    if n != total:
        options["n"] = n
    if root is not None:
        options["root"] = str(root)
    if progress is not None:
        progress(1, 1)
    return ImageSet(
        images=images,
        labels={info["factor"]: target},
        classes={info["factor"]: class_names},
        name=name,
        ids=[f"{name}/{split}/{i:05d}" for i in range(n)],
        spec={"name": name, "options": options},
    )


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
_LOADERS: dict[str, tuple[Callable[..., ImageSet], tuple[str, ...]]] = {
    "shapes": (_load_shapes, ("n", "size", "seed")),
    "digits": (_load_digits, ("n", "size")),
    "photos": (_load_photos, ("size",)),
    **{
        k: (lambda _k=k, **o: _load_torchvision(_k, **o), ("root", "split", "n", "size"))  # type: ignore[misc]
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
        "photos": f"{len(_PHOTOS)} sample photos from scikit-image (astronaut, cat, coffee, rocket, ...). Offline.",
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
    progress = _check_progress(opts.pop("progress", None))
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
        return _load_path(path, progress=progress, **opts)
    except PermissionError:
        raise DatasetError(f"{path} cannot be read: permission denied.") from None
