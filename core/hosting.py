"""Where the app runs: a laptop (the default) or a shared classroom server (``CP_SHARED_SERVER=1``).

On a laptop a user may type a path on their own disk (an image folder, a CLIP folder, a text model folder).
On a shared server the disk is not theirs: typed server paths are switched off, and the refusal is one fixed
sentence given *before* the path is looked at, so no answer tells an existing path from a missing one.
"""
from __future__ import annotations

import os

from core.errors import PlaygroundError

__all__ = ["shared_server", "refuse_typed_path", "TYPED_PATHS_OFF", "TypedPathRefused"]

TYPED_PATHS_OFF = ("Typed server paths are switched off on this shared server (CP_SHARED_SERVER), so nothing is "
                   "read from its disk. Upload your files instead, or use the built-in choices.")


class TypedPathRefused(PlaygroundError):
    """A typed path on a shared server: refused without looking at the file system."""


def shared_server() -> bool:
    """True when ``CP_SHARED_SERVER`` is set to 1 / true / yes / on (read at call time)."""
    return os.environ.get("CP_SHARED_SERVER", "").strip().lower() in ("1", "true", "yes", "on")


def refuse_typed_path() -> None:
    """Raise :class:`TypedPathRefused` on a shared server; do nothing on a laptop."""
    if shared_server():
        raise TypedPathRefused(TYPED_PATHS_OFF)
