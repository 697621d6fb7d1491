"""The on-disk cache of CLIP image embeddings, keyed by (model fingerprint, image content hash)."""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


# ------------------------------------------------------------------------------------------ image embeddings
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


class EmbeddingCache:
    """On-disk image embeddings by (model fingerprint, image content hash).

    One folder per model under ``<cache>/clip-embeddings``; each :meth:`put` writes one ``.npz`` chunk
    (``keys`` as fixed-width bytes, ``vectors`` float32) through a temp file and a rename, and reads are
    ``np.load(allow_pickle=False)``. Chunks are read once per process and kept in memory.
    """

    _lock = threading.Lock()
    _memory: dict[str, tuple[frozenset, dict[str, np.ndarray]]] = {}

    def __init__(self, fingerprint: str, root: str | os.PathLike | None = None):
        from core.data import default_cache_dir

        base = Path(root) if root is not None else default_cache_dir() / "clip-embeddings"
        self.folder = base / hashlib.sha256(fingerprint.encode()).hexdigest()[:20]

    def _index(self) -> dict[str, np.ndarray]:
        files = frozenset(p.name for p in self.folder.glob("*.npz")) if self.folder.is_dir() else frozenset()
        key = str(self.folder)
        with self._lock:
            seen, index = self._memory.get(key, (frozenset(), {}))
            for name in sorted(files - seen):
                try:
                    with np.load(self.folder / name, allow_pickle=False) as z:
                        keys, vecs = z["keys"], z["vectors"]
                except (OSError, ValueError, KeyError):  # a damaged chunk is ignored (and recomputed)
                    continue
                for k, v in zip(keys.tolist(), vecs):
                    index[k.decode()] = v
            self._memory[key] = (seen | files, index)
            return index

    def get(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        index = self._index()
        return [index.get(k) for k in keys]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        import io

        from core.files import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, keys=np.array([k.encode() for k in keys], dtype="S32"),
                 vectors=np.asarray(vectors, dtype=np.float32))
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:20] + ".npz"
        atomic_write_bytes(self.folder / name, buf.getvalue())

    def clear(self) -> None:
        with self._lock:
            self._memory.pop(str(self.folder), None)
        if self.folder.is_dir():
            for p in self.folder.glob("*.npz"):
                p.unlink(missing_ok=True)
