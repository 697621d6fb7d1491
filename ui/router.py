"""Every page runs under the router (``app.py``), even as the first request to a fresh server.

Streamlit decides per *process* whether an app uses its legacy ``pages/`` folder mode: until some session has
run ``st.navigation``, a request for ``/train`` runs ``pages/train.py`` on its own, without ``app.py``. That
first visitor got Streamlit's raw page list, the narrow layout, and a link whose settings were never read
(``/train?train.steps=100`` trained 200 steps). Each page therefore starts with :func:`require`: when the page
runs without the router, it runs ``app.py`` in its place (whose ``st.navigation`` ends the legacy mode for the
whole process and runs this same page inside the router), then stops the bare run. Nothing is drawn before the
guard, so the visitor sees one ordinary page.

``app.py`` marks the page it runs with :func:`running`; the mark is per thread (each session's script runs in
its own thread), so another session's run never counts for this one.
"""
from __future__ import annotations

import runpy
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

APP = Path(__file__).resolve().parent.parent / "app.py"
_local = threading.local()


@contextmanager
def running() -> Iterator[None]:
    """``app.py`` runs the chosen page inside this: pages started from here are routed."""
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth


def active() -> bool:
    return getattr(_local, "depth", 0) > 0


def require() -> None:
    """First line of every page: run the page through ``app.py`` if Streamlit started it bare."""
    if active():
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()  # the routed run above drew the page; this bare run has nothing left to do
