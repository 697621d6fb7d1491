"""Untrusted bytes in, safe pixels or files out: :func:`decode_image` for one image file, :func:`safe_extract_zip`
for an archive.

Every file is decoded by :func:`decode_image`, which caps file size and pixel count (Pillow's decompression-bomb
guard, tightened) and turns every failure into a sentence a user can act on. Archives go through
:func:`safe_extract_zip`, which refuses path traversal, links and zip bombs before a single byte is written. The
caps are :mod:`core.data.limits`'s, read at call time.
"""
from __future__ import annotations

import io
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from core.data import limits
from core.data.limits import format_bytes, int_option
from core.errors import DatasetError

__all__ = ["ImageTooLarge", "ImageUnreadable", "decode_image", "safe_extract_zip"]

log = logging.getLogger(__name__)

# Decoders Pillow may try; everything else (PSD, EPS via Ghostscript, ...) is refused up front.
_PIL_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP", "TIFF", "PPM")
_FORMAT_NAMES = "PNG, JPEG, GIF, BMP, WebP, TIFF or PPM"  # as users know them (MPO is a JPEG variant)


class ImageTooLarge(DatasetError):
    """An image file or its pixel count is over the cap."""


class ImageUnreadable(DatasetError):
    """The bytes are not an image Pillow can decode (corrupt, truncated, or another kind of file)."""


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
    if nbytes > limits.MAX_IMAGE_BYTES:
        raise ImageTooLarge(
            f"The image file is {format_bytes(nbytes)}; images up to {format_bytes(limits.MAX_IMAGE_BYTES)} "
            "are accepted."
        )
    if size is not None:
        size = int_option("size", size, 1, 4096)
    too_many = (
        f"The image has more than {limits.MAX_IMAGE_PIXELS / 1e6:g} megapixels, which is refused as a possible "
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
            if width * height > limits.MAX_IMAGE_PIXELS:
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
    if nbytes > limits.MAX_UPLOAD_BYTES:
        raise DatasetError(
            f"The archive is {format_bytes(nbytes)}; archives up to {format_bytes(limits.MAX_UPLOAD_BYTES)} "
            "are accepted."
        )
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise DatasetError("The file is not a readable .zip archive.") from None
    written: list[Path] = []
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.MAX_ZIP_ENTRIES:
            raise DatasetError(
                f"The archive has {len(infos):,} entries; at most {limits.MAX_ZIP_ENTRIES:,} are accepted."
            )
        total = 0
        for info in infos:
            reason = _unsafe_member(info)
            if reason:
                raise DatasetError(f"The archive was refused: the entry {info.filename!r} {reason}.")
            total += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > 1024**2 and ratio > limits.MAX_ZIP_RATIO:
                raise DatasetError(
                    f"The archive was refused: {info.filename!r} would expand {ratio:,.0f} times, which looks "
                    "like a zip bomb."
                )
        if total > limits.MAX_UNZIPPED_BYTES:
            raise DatasetError(
                f"The archive would unpack to {format_bytes(total)}; at most {format_bytes(limits.MAX_UNZIPPED_BYTES)} "
                "is accepted."
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
                        if size > info.file_size or done > limits.MAX_UNZIPPED_BYTES:
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
