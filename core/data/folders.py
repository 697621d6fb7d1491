"""Data a user brings on disk: an image folder in ImageFolder layout (one sub-folder per class), a ``.zip`` of one,
or a ``.csv`` / ``.jsonl`` table of image paths with captions and/or labels.

Files that cannot be used (not images, damaged, too large, paths leaving the table's folder) are skipped and
each one named in the set's ``skipped_files`` and ``notes``; the whole set is refused with a sentence only when
nothing usable is left or it has a single class.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.data import limits
from core.data.decode import ImageTooLarge, ImageUnreadable, decode_image, safe_extract_zip
from core.data.imageset import ImageSet
from core.data.limits import ProgressFn, check_memory, format_bytes, int_option
from core.data.pixels import stack_chw
from core.errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "TABLE_EXTENSIONS", "is_visible", "pick_column", "read_table", "load_path"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
TABLE_EXTENSIONS = (".csv", ".jsonl", ".ndjson")


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
        if path.stat().st_size > limits.MAX_IMAGE_BYTES:
            skips.add(f"over the {format_bytes(limits.MAX_IMAGE_BYTES)} size limit", display)
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
    check_memory(len(items), size)
    return items, notes


def is_visible(name: str) -> bool:
    """False for a hidden file or folder name (``.DS_Store``) and packaging litter (``__MACOSX``, ``__pycache__``)."""
    return not name.startswith((".", "__MACOSX", "__pycache__"))


def _load_folder(
    root: Path, *, size: int, max_images: int, progress: ProgressFn | None, name: str, spec: dict
) -> ImageSet:
    """ImageFolder layout: root/<class>/**/<image>. Class = sub-folder name, in sorted order."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder.")
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and is_visible(d.name)), key=lambda d: d.name)
    loose = [f for f in root.iterdir() if f.is_file() and is_visible(f.name)]
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
            dirnames[:] = sorted(x for x in dirnames if is_visible(x))
            for fn in sorted(filenames):
                if not is_visible(fn):
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
        images=stack_chw(pixels),
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


def pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    """The column to read as ``what``: ``wanted`` (refused when the table has no such column, case aside), else
    the first of ``candidates`` the table has (case-insensitive), else None."""
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


def read_table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, rows as dicts) of a UTF-8 ``.csv``, or of a ``.jsonl`` with one JSON object per line.
    Anything else (not UTF-8, a broken line, brackets nested too deep) raises ``DatasetError`` naming the line."""
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
    if nbytes > limits.MAX_UPLOAD_BYTES:
        raise DatasetError(
            f"{path.name} is {format_bytes(nbytes)}; tables up to {format_bytes(limits.MAX_UPLOAD_BYTES)} are accepted."
        )
    columns, rows = read_table(path)
    if not rows:
        raise DatasetError(f"{path.name} has no rows.")
    img_col = pick_column(columns, image_column, _IMAGE_COLUMNS, "image")
    cap_col = pick_column(columns, caption_column, _CAPTION_COLUMNS, "caption")
    lab_col = pick_column(columns, label_column, _LABEL_COLUMNS, "label")
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
        images=stack_chw(pixels),
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
        entries = [e for e in folder.iterdir() if is_visible(e.name)]
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) == 1 and len(entries) == 1:
            folder = dirs[0]
        else:
            break
    return folder


def load_path(
    path: Path, *, size: int = 32, max_images: int = 20_000, progress: ProgressFn | None = None,
    image_column: str | None = None, caption_column: str | None = None, label_column: str | None = None,
) -> ImageSet:
    """A folder, ``.zip``, ``.csv`` or ``.jsonl`` at ``path`` as an ImageSet of ``size`` px images (at most
    ``max_images``, evenly spread); ``*_column`` name a table's columns when its own names are not the usual ones."""
    size = int_option("size", size, 8, 512)
    max_images = int_option("max_images", max_images, 1, limits.MAX_IMAGES)
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
            has_dirs = any(d.is_dir() and is_visible(d.name) for d in root.iterdir())
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
        columns, _ = read_table(path)
    except DatasetError:
        return False
    return pick_column(columns, None, _IMAGE_COLUMNS, "image") is not None

