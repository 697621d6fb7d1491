"""The app's caching policy, and the one bounded store for what belongs to a single session.

Every cache in the app has a bound. Where a result goes depends on who may see it:

* **Shared, read-only** (built-in datasets, the shipped and cached models, the demo spaces, and arrays computed
  from content alone: maps, honesty scores, clusterings, views of a built-in image): ``st.cache_resource``
  (objects, never modified) or ``st.cache_data`` (arrays, returned as copies), always with ``max_entries``,
  keyed by what determines the result (a content hash of the vectors plus the method and its parameters, a
  dataset's name and options). Arrays that come from one user's vectors also carry a ``ttl``
  (:data:`SHARED_TTL`), so they leave the server when that user does.
* **Per session** (embeddings of a model the user trained, their uploads, the figures of their run, CLIP on
  their image sets): :class:`SessionStore`, one per session in ``st.session_state`` (:func:`store`), an LRU
  bounded by entries *and* bytes (numpy / torch ``nbytes``, counted by :func:`nbytes`). A page asks for
  ``store().get_or_make(key, make)``; what is evicted is made again on the next request, so eviction costs time,
  never correctness. No other dict in ``st.session_state`` should memoise results.
* **On disk** (CLIP image embeddings): ``core.clip``'s disk cache, with its own size cap.

The store's bound: at most ``max_entries`` entries and ``max_bytes`` bytes, except that the newest entry is
kept even when it alone is larger than ``max_bytes`` (a 300 MB upload would otherwise be parsed again on every
rerun); everything else is evicted first. So a session holds at most ``max(max_bytes, its largest entry)``.
Models referenced by an entry (``torch.nn.Module``) are not counted: they belong to the registry or to a shared
cache, never to the store.

Defaults: :data:`MAX_ENTRIES` entries, :data:`MAX_BYTES` bytes (``CP_SESSION_CACHE_MB`` changes it), so thirty
students on one server hold at most thirty times that in per-session caches.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np

MAX_ENTRIES = 32
MAX_BYTES = int(float(os.environ.get("CP_SESSION_CACHE_MB", "128")) * 2**20)
SHARED_TTL = "2h"  # shared caches of arrays computed from one user's vectors: gone two hours after last use
STATE_KEY = "_session_store"

_SCALAR = (bool, int, float, complex, type(None), np.generic)


def nbytes(obj: Any, _seen: set[int] | None = None) -> int:
    """Bytes held by ``obj``: numpy arrays and torch tensors by their ``nbytes``, str / bytes by length, and
    containers, dataclasses and plain objects by their contents (each object counted once). Models
    (``torch.nn.Module``), modules and classes count 0: the store never owns them.

    >>> nbytes({"a": np.zeros((10, 4), np.float32), "b": [np.zeros(3, np.uint8)]})
    173
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, _SCALAR):
        return 8
    if isinstance(obj, (str, bytes, bytearray, memoryview)):
        return len(obj)
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            return int(obj.element_size() * obj.nelement())
        if isinstance(obj, torch.nn.Module):
            return 0
    if isinstance(obj, type) or type(obj).__name__ == "module" or callable(obj) and not hasattr(obj, "__dict__"):
        return 0
    if isinstance(obj, dict):
        return sum(nbytes(k, seen) + nbytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return 8 * len(obj) + sum(nbytes(v, seen) for v in obj)
    if dataclasses.is_dataclass(obj):
        return sum(nbytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    state = getattr(obj, "__dict__", None)
    if state is not None:
        return nbytes(state, seen)
    return sys.getsizeof(obj)


class SessionStore:
    """An LRU of at most ``max_entries`` entries and ``max_bytes`` bytes (see the module docstring).

    A hit moves the entry to the newest end; a put evicts from the oldest end until both bounds hold, keeping
    the newest entry even when it alone exceeds ``max_bytes``.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        if int(max_entries) < 1 or int(max_bytes) < 0:
            raise ValueError(f"A session store needs max_entries >= 1 and max_bytes >= 0; got {max_entries} "
                             f"and {max_bytes}.")
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def keys(self) -> list[Hashable]:
        """Keys from the oldest to the newest."""
        return list(self._items)

    def get(self, key: Hashable, default: Any = None) -> Any:
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key][0]

    def put(self, key: Hashable, value: Any, size: int | None = None) -> Any:
        """Store ``value`` under ``key`` (``size`` in bytes; counted by :func:`nbytes` when None); returns it."""
        self.pop(key)
        size = nbytes(value) if size is None else int(size)
        self._items[key] = (value, size)
        self.bytes += size
        while len(self._items) > 1 and (len(self._items) > self.max_entries or self.bytes > self.max_bytes):
            _, (_, old) = self._items.popitem(last=False)
            self.bytes -= old
            self.evictions += 1
        return value

    def pop(self, key: Hashable) -> Any:
        held = self._items.pop(key, None)
        if held is None:
            return None
        self.bytes -= held[1]
        return held[0]

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value under ``key``, made (and stored) when absent or evicted."""
        if key in self._items:
            return self.get(key)
        return self.put(key, make())

    def drop(self, prefix: str) -> None:
        """Remove every entry whose key is a tuple starting with ``prefix`` (one page's namespace)."""
        for key in [k for k in self._items if isinstance(k, tuple) and k and k[0] == prefix]:
            self.pop(key)


def store() -> SessionStore:
    """This session's store (made on first use)."""
    import streamlit as st

    held = st.session_state.get(STATE_KEY)
    if not isinstance(held, SessionStore):
        held = st.session_state[STATE_KEY] = SessionStore(MAX_ENTRIES, MAX_BYTES)
    return held


class RecentSet:
    """A set that remembers at most ``size`` keys (the oldest forgotten first): "has this been done in this
    session" marks that would otherwise grow with every map opened."""

    def __init__(self, size: int = 256) -> None:
        self.size = int(size)
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Hashable) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)


def recent(name: str, size: int = 256) -> RecentSet:
    """The session's :class:`RecentSet` called ``name``."""
    import streamlit as st

    held = st.session_state.get(name)
    if not isinstance(held, RecentSet):
        held = st.session_state[name] = RecentSet(size)
    return held
