"""The on-disk cache of CLIP image embeddings, keyed by (model fingerprint, image content hash), with a size cap.

One :class:`diskcache.Cache` (SQLite, process- and thread-safe) holds every model's vectors under
``<cache>/clip-embeddings-v2``; when its size passes the cap (``$CP_CLIP_CACHE_MB``, default 512 MB) the
least recently stored vectors are evicted and, when asked for again, recomputed. Nothing here is ever unpickled:

- keys are sha256 hex strings of (fingerprint, image hash), which SQLite stores as text;
- values are raw bytes (a 4-byte tag, the dimension as uint32, then float32 little-endian), decoded with
  ``np.frombuffer`` after their length is checked; a value of another shape or kind reads as a miss;
- :class:`_RawDisk` refuses, on the way in and on the way out, anything diskcache would pickle, so a row written
  by some other program into the same database is a miss too, never ``pickle.load``-ed;
- values always live inside the SQLite file (no value files), so a foreign file in the folder is never read.

What stays in memory is SQLite's page cache (:data:`PAGE_CACHE_PAGES` pages per connection) and at most
:data:`MAX_OPEN` open caches; no Python-side index of vectors.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import sqlite3
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import PlaygroundError

log = logging.getLogger(__name__)

DEFAULT_CAP_MB = 512  # ~0.9 M images at 64-d (a row takes ~570 B in SQLite), ~150 k at 768-d
CAP_ENV = "CP_CLIP_CACHE_MB"
PAGE_SIZE = 8192  # SQLite pages: a 512-d row (~2.2 kB) fills half a 4 KiB page; three fill 82 % of these
PAGE_CACHE_PAGES = 512  # SQLite's in-memory page cache per connection: 4 MB
MAX_OPEN = 4  # open caches kept per process (one folder in the app; tests open a few)
SHM_BYTES = 64 << 10  # set aside for the log's shared-memory index (32 kB)
_MAGIC = b"cpv1"
_HEADER = struct.Struct("<4sI")  # magic, dimension


def cap_bytes() -> int:
    """The disk cap in bytes from ``$CP_CLIP_CACHE_MB`` (default 512; 0 turns the disk cache off)."""
    raw = os.environ.get(CAP_ENV, "").strip()
    if not raw:
        return DEFAULT_CAP_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not (math.isfinite(mb) and mb >= 0):
        raise PlaygroundError(f"{CAP_ENV} must be a size in megabytes (0 turns the CLIP embedding cache off), "
                              f"got {raw!r}.")
    return int(mb * (1 << 20))


def encode_vector(v: np.ndarray) -> bytes:
    """(D,) float32 -> the stored bytes: header + raw little-endian float32 (bit-exact, no pickle)."""
    v = np.ascontiguousarray(v, dtype="<f4").reshape(-1)
    return _HEADER.pack(_MAGIC, v.shape[0]) + v.tobytes()


def decode_vector(data: Any) -> np.ndarray | None:
    """The (D,) float32 vector in ``data``, or None when it is not a value this module wrote."""
    if not isinstance(data, bytes) or len(data) < _HEADER.size:
        return None
    magic, dim = _HEADER.unpack_from(data)
    if magic != _MAGIC or len(data) != _HEADER.size + 4 * dim:
        return None
    return np.frombuffer(data, dtype="<f4", offset=_HEADER.size).astype(np.float32)


def _raw_disk_class():
    import diskcache

    class _RawDisk(diskcache.Disk):
        """diskcache's Disk for raw bytes and text keys only: what it would pickle is refused, both ways."""

        def put(self, key):
            if type(key) is not str:
                raise TypeError("CLIP cache keys are sha256 hex strings.")
            return super().put(key)

        def get(self, key, raw):
            if not raw:  # a pickled key written by someone else: never loaded
                raise OSError("a pickled key in the CLIP embedding cache was refused")
            return super().get(key, raw)

        def store(self, value, read, key=diskcache.core.UNKNOWN):
            if read or type(value) is not bytes:
                raise TypeError("CLIP cache values are raw bytes.")
            return super().store(value, read, key=key)

        def fetch(self, mode, filename, value, read):
            # Only rows stored inside the database as raw bytes are ours; Cache.get reads an OSError as a miss.
            if mode != diskcache.core.MODE_RAW or filename is not None:
                raise OSError("a CLIP embedding cache row that is not raw bytes was refused")
            return super().fetch(mode, filename, value, read)

    return _RawDisk


def wal_budget(cap: int) -> int:
    """Bytes of the cap set aside for SQLite's write-ahead log and its index (the rest is the database)."""
    return min(cap // 8, 4 << 20)


def _make(folder: str, cap: int):
    """The shared cache in ``folder`` (one per process and folder; diskcache opens one SQLite connection per
    thread), sized so that database + log stay within ``cap`` bytes.

    diskcache's ``size_limit`` counts the database's pages (its ``volume``); the log is checkpointed every
    :func:`wal_budget` / 4 bytes and truncated back to the budget. ``cull_limit=0``: a ``set`` evicts nothing
    (inside one transaction the database cannot shrink yet, so per-set culling would empty the cache); the
    eviction runs after each committed batch (:meth:`EmbeddingCache.put`).
    """
    import diskcache

    db = Path(folder) / "cache.db"
    if not db.exists():  # page size is fixed when the file is made, and diskcache turns on WAL before setting it
        db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(db) as con:
            con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            con.execute("PRAGMA auto_vacuum = 1")  # FULL, as diskcache sets it: deleted rows shrink the file
            con.execute("CREATE TABLE IF NOT EXISTS Settings (key TEXT NOT NULL UNIQUE, value)")  # diskcache's
        con.close()
    wal = wal_budget(cap)
    return diskcache.Cache(
        folder, disk=_raw_disk_class(), size_limit=cap - wal - SHM_BYTES, eviction_policy="least-recently-stored",
        cull_limit=0, disk_min_file_size=1 << 30,  # values stay inside SQLite, never as files
        sqlite_cache_size=PAGE_CACHE_PAGES, sqlite_wal_autocheckpoint=max(wal // 4 // PAGE_SIZE, 4),
        sqlite_journal_size_limit=wal, timeout=10,
    )


_OPEN: OrderedDict[tuple[str, int], Any] = OrderedDict()  # (folder, cap) -> Cache, most recently used last
_OPEN_LOCK = threading.Lock()


def _open(folder: str, cap: int):
    """The process's cache for ``folder`` (at most :data:`MAX_OPEN` kept open)."""
    with _OPEN_LOCK:
        cache = _OPEN.pop((folder, cap), None)
        if cache is None:  # not ``or``: an empty Cache is falsy (it has a length)
            cache = _make(folder, cap)
        _OPEN[(folder, cap)] = cache
        while len(_OPEN) > MAX_OPEN:
            _OPEN.popitem(last=False)[1].close()
        return cache


def close_all() -> None:
    """Close the open caches (the next use reopens them from disk, as a new process would)."""
    with _OPEN_LOCK:
        while _OPEN:
            _OPEN.popitem()[1].close()


def _evict_to_cap(cache) -> None:
    """Evict the least recently stored rows until the database is within ``size_limit``.

    diskcache's own ``cull`` deletes 10 rows per transaction, so making room for a batch of a few hundred vectors
    takes dozens of commits; here the rows over the cap are estimated from the mean row size and deleted in one
    statement (every value lives inside the database: no files to remove; diskcache's triggers keep its count
    and size), then ``cull`` removes what the estimate missed.
    """
    volume = cache.volume()
    if volume <= cache.size_limit:
        return
    count = len(cache)
    rows = min(count, -(-(volume - cache.size_limit) * count // volume) + 1)  # ceil, plus one
    with cache.transact(retry=True):
        cache._sql("DELETE FROM Cache WHERE rowid IN (SELECT rowid FROM Cache ORDER BY store_time LIMIT ?)", (rows,))
    cache.cull(retry=True)


def _image_hashes(images: Sequence[Any]) -> list[str]:
    """Content hash per image: pixels + shape (PIL images as RGB arrays, tensors/arrays as uint8 CHW)."""
    out = []
    for img in images:
        if isinstance(img, (torch.Tensor, np.ndarray)):
            arr = np.ascontiguousarray(img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else img)
            data, shape = arr.data, (arr.shape, str(arr.dtype))
        else:  # PIL: its own buffer, no array copy
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            data, shape = rgb.tobytes(), ("pil", rgb.size)
        h = hashlib.blake2b(data, digest_size=16)
        h.update(repr(shape).encode())
        out.append(h.hexdigest())
    return out


def images_key(images: Sequence[Any]) -> str:
    """One content id for a collection of images (sha256 of the per-image hashes, in order): what identifies a
    user's upload for caching, whatever the files were called."""
    h = hashlib.sha256()
    for one in _image_hashes(images):
        h.update(one.encode())
    return h.hexdigest()


class EmbeddingCache:
    """Image embeddings of one model on disk, in the shared capped cache (module docstring).

    ``fingerprint``: the model's content id (``ClipBundle.fingerprint``); ``root``: the cache folder (default
    ``<cache>/clip-embeddings-v2``); ``cap``: its size cap in bytes (default :func:`cap_bytes`). A cache that
    cannot be opened or read (a damaged database) is skipped with a log line: embedding works, uncached.
    """

    def __init__(self, fingerprint: str, root: str | os.PathLike | None = None, *, cap: int | None = None):
        from core.data import default_cache_dir

        self.folder = Path(root) if root is not None else default_cache_dir() / "clip-embeddings-v2"
        self.cap = cap_bytes() if cap is None else int(cap)
        self._prefix = fingerprint + "\x00"
        self.tag = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]  # for clear(); not indexed

    def key(self, image_hash: str) -> str:
        """The disk key of one image under this model: sha256 hex of (fingerprint, image hash)."""
        return hashlib.sha256((self._prefix + image_hash).encode()).hexdigest()

    def _cache(self):
        if self.cap <= 0:
            return None
        try:
            return _open(str(self.folder), self.cap)
        except (sqlite3.Error, OSError) as err:
            log.warning("The CLIP embedding cache in %s cannot be opened (%s); embedding without it.",
                        self.folder, err)
            return None

    def get(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The stored vector per image hash, None where there is none (or it is not one of ours)."""
        cache = self._cache()
        if cache is None:
            return [None] * len(keys)
        try:
            return [decode_vector(cache.get(self.key(k), retry=True)) for k in keys]
        except sqlite3.Error as err:
            log.warning("The CLIP embedding cache in %s cannot be read (%s); embedding without it.", self.folder, err)
            return [None] * len(keys)

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (N, D) under the N image hashes, in one transaction, then evict down to the cap."""
        cache = self._cache()
        if cache is None or not len(keys):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        # Rows per transaction: a transaction's pages all land in the write-ahead log before a checkpoint can
        # trim it; a row touches about two pages not shared with its neighbours (its table leaf and a leaf of the
        # key index, which is in random order), so a transaction writes at most half the log's budget.
        per_txn = max(1, wal_budget(self.cap) // 2 // (2 * PAGE_SIZE))
        try:
            for start in range(0, len(keys), per_txn):
                with cache.transact(retry=True):
                    for k, v in zip(keys[start:start + per_txn], vectors[start:start + per_txn]):
                        cache.set(self.key(k), encode_vector(v), tag=self.tag, retry=True)
                _evict_to_cap(cache)
        except sqlite3.Error as err:
            log.warning("The CLIP embedding cache in %s cannot be written (%s); continuing without it.",
                        self.folder, err)

    def volume(self) -> int:
        """Bytes the cache takes on disk by diskcache's count (database pages), 0 when off."""
        cache = self._cache()
        return 0 if cache is None else int(cache.volume())

    def clear(self) -> None:
        """Drop this model's vectors (other models' stay)."""
        cache = self._cache()
        if cache is not None:
            cache.evict(self.tag, retry=True)
