"""Atomic file writes: a reader (another session, a crashed run's successor) never sees half a file.

Every writer of something another process may read (checkpoints, the CLIP embedding cache, exported models,
embedding shards, downloads) writes a temporary file in the destination's folder and renames it into place;
``os.replace`` is atomic within one file system.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, mode: int | None = None) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path``.

    ``mode`` sets the file's permissions before the rename (``mkstemp`` creates owner-only files; a model meant for
    every user of the machine needs 0o644). On any error the temporary file is removed and the error raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), mode=mode)
