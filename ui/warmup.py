"""Load torch and the training stack in a background thread, once per server process.

The home page must be interactive within seconds of a cold start, and importing torch alone takes about two.
So the page renders first, and this thread imports pandas (see :func:`plotly_ready`), ``core.device`` (torch)
and then ``core.train`` (kornia, models, losses) while the user reads, and starts a spare training worker
(``core.runner``: a process that imports torch and the trainers, so the first Play does not wait for them). The
device line on the home page polls :func:`device_description`. By the time someone clicks a preset, the imports
are done. Module-level state here is process-wide on
purpose: it holds no user data, only "is torch loaded yet" and the device's description.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None
_pandas_ready = threading.Event()  # set once the warm-up has imported pandas (or failed to)
_device: str | None = None
_error: str | None = None


def _work() -> None:
    global _device, _error
    try:  # first, and whole, before any page builds a figure (see plotly_ready)
        import pandas  # noqa: F401
    except Exception:  # noqa: BLE001 - plotly then runs without it
        log.exception("Importing pandas failed")
    finally:
        _pandas_ready.set()
    try:
        from core.device import describe_device

        _device = describe_device()
    except Exception as err:  # noqa: BLE001 - shown on the home page as a sentence
        log.exception("Could not describe the device")
        _error = f"could not check the device ({type(err).__name__}: {err})"
        return
    try:  # a spare worker process for the first Play (core.runner); it imports torch on its own
        from core.runner import default_runner

        default_runner().prewarm()
    except Exception:  # noqa: BLE001 - Play then starts its worker itself
        log.exception("Starting a spare training worker failed")
    try:  # pre-import the training stack; failures surface later on the page that needs it
        import core.train  # noqa: F401

        _first_step_ready()
    except Exception:  # noqa: BLE001
        log.exception("Pre-importing core.train failed")
    _freeze_imports()
    if os.environ.get("CP_SKIP_UMAP_WARMUP") != "1":
        try:  # compile umap's numba code now, so a user's first map does not wait for it (~13 s cold)
            from core.projection import warm_up

            warm_up()
        except Exception:  # noqa: BLE001
            log.exception("Warming up UMAP failed")


def _first_step_ready() -> None:
    """Pay now what the first lesson's Play would otherwise pay in the server: building the job's mirror trainer
    makes the process's first ``torch.optim`` optimizer, which imports ``torch._dynamo`` (a slow import)."""
    import torch

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-3)


def _freeze_imports() -> None:
    """Move every object alive now (modules, classes and functions of torch, streamlit, plotly ...) into the
    garbage collector's permanent generation: they live as long as the server, and a full collection that
    walks them holds the GIL long enough to stall every page's rerun. Collected objects made later are unaffected."""
    import gc

    gc.collect()
    gc.freeze()


def plotly_ready(timeout: float = 60.0) -> None:
    """Return once pandas is imported whole (at most ``timeout`` s; at once after the first seconds of a process).

    plotly's validators look for ``sys.modules["pandas"]`` without importing it. While another thread was in the
    middle of importing pandas (this warm-up's UMAP, or a page's table), a page building a figure found the half
    made module and failed: "partially initialized module 'pandas' has no attribute 'Series'" (the CLIP page, in
    a CI run of the browser tests). The warm-up imports pandas before anything else, so pages that draw plotly
    charts wait for that, once.
    """
    if not _pandas_ready.is_set():
        start()
        _pandas_ready.wait(timeout)


def start() -> None:
    """Start the warm-up thread if it has not run in this process."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_work, name="warm-up", daemon=True)
            _thread.start()


def device_description() -> str | None:
    """"CPU (2 cores, ...)" once known, else None (still loading)."""
    if _error:
        return _error
    return _device


def wait(timeout: float | None = None) -> None:
    t = _thread
    if t is not None:
        t.join(timeout)
