"""Your own images: a ``.zip`` (or, on a laptop, a folder) turned into an :class:`~core.data.ImageSet` that every
page can use, with the defaults that make a first run on it work.

The reading itself is :func:`core.data.load_dataset` (zip-slip, bomb and corrupt-file guards, a note for every
file it skipped); this module adds what an upload needs on top: caps said before anything is read, the count
of images checked from the archive's directory before a byte is unpacked, a name that cannot be mistaken for
a built-in, and a spec that names the data by content (:func:`core.data.fingerprint`), never by a path.

>>> ds = load_zip(zip_bytes, name="icons.zip")  # doctest: +SKIP
>>> ds.name, len(ds), ds.classes["class"][:2]  # doctest: +SKIP
('icons', 359, ['arrow', 'cloud'])
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import data as D
from core.data import limits
from core.errors import DatasetError
from core.hosting import refuse_typed_path

__all__ = ["MAX_OWN_IMAGES", "OWN_SIZES", "DEFAULT_OWN_SIZE", "MIN_IMAGES_TO_LEARN", "caps", "caps_sentence",
           "load_zip", "load_folder", "class_counts", "training_defaults", "learnability", "BATCH_OPTIONS"]

MAX_OWN_IMAGES = 20_000  # image files in one upload; above this the upload is refused (said on the uploader)
OWN_SIZES = (32, 48, 64, 96)  # sides the images are decoded to; 32 steps fastest on a CPU
DEFAULT_OWN_SIZE = 32
MIN_IMAGES_TO_LEARN = 50  # below this a held-out kNN is a handful of images: said, not refused
BATCH_OPTIONS = (16, 32, 64, 128, 256)  # the Train page's batch sizes up to its default

ProgressFn = Callable[[int, int], Any]


def caps() -> dict[str, int]:
    """The limits an upload meets, read at call time (tests and deployments may lower the core's)."""
    return {"files": MAX_OWN_IMAGES, "bytes": limits.MAX_UPLOAD_BYTES, "image_bytes": limits.MAX_IMAGE_BYTES,
            "pixels": limits.MAX_IMAGE_PIXELS, "unzipped_bytes": limits.MAX_UNZIPPED_BYTES}


def caps_sentence() -> str:
    """The caps in one sentence, for the uploader's label."""
    c = caps()
    return (f"up to {c['files']:,} images and {c['bytes'] // 2**20} MB per .zip; each image up to "
            f"{c['image_bytes'] // 2**20} MB and {c['pixels'] / 1e6:g} megapixels")


def _title(filename: str) -> str:
    """The set's name from the upload's file name: its stem, cleaned; never a built-in's name."""
    stem = Path(str(filename).replace("\\", "/")).name
    stem = stem[:-4] if stem.lower().endswith(".zip") else stem
    title = D.safe_title(stem)
    if title.lower().replace("-", "_") in (*D.OFFLINE_DATASETS, *D.DOWNLOAD_DATASETS, D.OWN_DATA):
        title = f"{title} (yours)"
    return title


def _list_images(data: bytes) -> tuple[list[str], bool]:
    """(image file names, whether a table is there) from the archive's directory (nothing is unpacked);
    refuses a file that is no zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [i.filename.replace("\\", "/") for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise DatasetError("The file is not a readable .zip archive.") from None
    visible = [n for n in names if all(D.is_visible(p) for p in n.split("/") if p)]
    images = [n for n in visible if Path(n).suffix.lower() in D.IMAGE_EXTENSIONS]
    return images, any(Path(n).suffix.lower() in D.TABLE_EXTENSIONS for n in visible)


def _as_own(ds: D.ImageSet, title: str, size: int) -> D.ImageSet:
    """The loaded set renamed and re-specified: its spec names the content, not the temp file it came from."""
    ds.name = title
    ds.spec = {"name": D.OWN_DATA, "options": {"size": int(size)}, "title": title,
               "fingerprint": D.fingerprint(ds)}
    return ds


def load_zip(data: bytes, *, name: str = "your images.zip", size: int = DEFAULT_OWN_SIZE,
             progress: ProgressFn | None = None) -> D.ImageSet:
    """An uploaded ``.zip`` (its bytes) as an ImageSet of ``size`` px images. Raises ``DatasetError`` with a
    sentence when it is refused.

    Layout: one sub-folder per class (``cats/``, ``dogs/``, maybe inside one wrapper folder), or flat images with
    a ``.csv`` / ``.jsonl`` inside naming each image's label (columns ``image`` and ``label``, or a caption).
    Refused before anything is unpacked: more than ``caps()["bytes"]``, not a zip, more than ``MAX_OWN_IMAGES``
    image files, no image files. Refused while unpacking: path traversal, links, zip bombs (core.data). Files
    that are not images, damaged, too big or over the pixel cap are skipped, each named in ``skipped_files``.
    ``progress(done, total)`` hears the decoding, image by image (every 64).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DatasetError(f"An upload must be given as bytes, not {type(data).__name__}.")
    c = caps()
    if len(data) > c["bytes"]:
        raise DatasetError(f"The archive is {D.format_bytes(len(data))}; archives up to {D.format_bytes(c['bytes'])} "
                           "are accepted.")
    if size not in OWN_SIZES:
        raise DatasetError(f"size must be one of {', '.join(map(str, OWN_SIZES))} pixels, not {size!r}.")
    data = data if isinstance(data, bytes) else bytes(data)  # one copy at most: an upload is up to 200 MB
    images, has_table = _list_images(data)
    n_images = len(images)
    if n_images > c["files"]:
        raise DatasetError(f"The archive holds {n_images:,} images; at most {c['files']:,} are accepted in one "
                           "upload. Split it, or keep a sample of each class.")
    if n_images == 0:
        raise DatasetError("The archive holds no image files (PNG, JPEG, GIF, BMP, WebP, TIFF or PPM). Put each "
                           "class's images in its own folder (e.g. cats/ and dogs/) and zip those folders.")
    folders = {n.rsplit("/", 1)[0] for n in images if "/" in n}
    if not has_table and len(folders) == 1 and all("/" in n for n in images):
        raise DatasetError(f"All {n_images:,} images sit in one folder ({folders.pop()!r}), so they have one class. "
                           "Training and the held-out check need at least two: put each class in its own folder "
                           "(e.g. cats/ and dogs/) and zip those folders.")
    if progress is not None:
        progress(0, n_images)
    title = _title(name)
    with tempfile.TemporaryDirectory(prefix="cp-upload-") as tmp:
        path = Path(tmp) / f"{title}.zip"  # the loader's sentences name the upload by this
        path.write_bytes(data)
        ds = D.load_dataset(path, size=size, max_images=c["files"], progress=progress)
    return _as_own(ds, title, size)


def load_folder(folder: str, *, size: int = DEFAULT_OWN_SIZE, progress: ProgressFn | None = None) -> D.ImageSet:
    """A folder (or .zip) on this machine's disk, typed by its user: laptops only. On a shared server
    (``CP_SHARED_SERVER``) it is refused with one fixed sentence before the path is looked at."""
    refuse_typed_path()
    if size not in OWN_SIZES:
        raise DatasetError(f"size must be one of {', '.join(map(str, OWN_SIZES))} pixels, not {size!r}.")
    text = str(folder or "").strip()
    if not text:
        raise DatasetError("Type the path of a folder with one sub-folder of images per class.")
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".zip":
        return load_zip(path.read_bytes(), name=path.name, size=size, progress=progress)
    if not path.is_dir():
        raise DatasetError(f"There is no folder at {text}.")
    ds = D.load_dataset(path, size=size, max_images=MAX_OWN_IMAGES, progress=progress)
    return _as_own(ds, _title(path.name), size)


def class_counts(ds: D.ImageSet, factor: str | None = None) -> dict[str, int]:
    """Images per class of ``factor`` (default the main one), in class order."""
    import numpy as np

    factor = factor or ds.factors[0]
    counts = np.bincount(ds.labels[factor], minlength=len(ds.classes[factor]))
    return {c: int(k) for c, k in zip(ds.classes[factor], counts)}


def training_defaults(ds: D.ImageSet, heldout_fraction: float = 0.2) -> dict[str, Any]:
    """Train-page settings that work on ``ds``: the photo recipe (``core.augment.recipe_for`` of a name that is
    no built-in: SimCLR's natural-image recipe, not the shapes one), the images' own size, and a batch of at
    most a quarter of the training images (at least 16), so an epoch is several steps and no batch repeats
    images. The held-out split keeps every class (``core.data.heldout_stratify``)."""
    n_train = int(len(ds) * (1 - heldout_fraction))
    fitting = [b for b in BATCH_OPTIONS if b <= max(n_train // 4, BATCH_OPTIONS[0])]
    return {"batch_size": fitting[-1], "image_size": ds.image_size, "recipe": "simclr"}


def learnability(ds: D.ImageSet) -> list[str]:
    """Sentences about what makes ``ds`` hard to learn from or to evaluate (empty when nothing does)."""
    out = []
    counts = class_counts(ds)
    if len(ds) < MIN_IMAGES_TO_LEARN:
        out.append(f"{ds.name} has only {len(ds)} images: too few to learn from or to measure reliably (the "
                   f"held-out check uses a fifth of them). {MIN_IMAGES_TO_LEARN} or more, spread over the classes, "
                   "is a sensible start." + (" Training needs at least 20." if len(ds) < 20 else ""))
    if len(counts) < 2:
        out.append(f"{ds.name} has a single class, so the held-out kNN accuracy cannot say anything.")
    lonely = [c for c, k in counts.items() if k < 2]
    if lonely:
        shown = ", ".join(lonely[:5]) + (f" and {len(lonely) - 5} more" if len(lonely) > 5 else "")
        out.append(f"{len(lonely)} class{'es' * (len(lonely) > 1)} ({shown}) "
                   f"{'have' if len(lonely) > 1 else 'has'} one image: it stays in training and is never held out.")
    return out
