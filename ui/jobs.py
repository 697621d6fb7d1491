"""Training jobs as the pages see them: thin glue over :mod:`core.runner`, which trains each job in its own worker
process (admission, the FIFO queue, the orphan rule and faults live there). What is left here is how often a
page redraws while its job trains.

This module does not import streamlit, so it is tested without a page.
"""
from __future__ import annotations

from core.runner import (  # noqa: F401 - the names pages use
    CORES, FAILED, FINISHED, IDLE, MAX_RUNNING, PAUSED, QUEUED, RUNNING, STOPPED, Job, Slots, default_runner,
    live_jobs, ordinal, stop_all,
)

TrainingJob = Job  # the pages' name for it


def server_load(slots: Slots | None = None) -> tuple[int, int]:
    """(jobs training now, jobs training or queued) across all sessions, for "3 of 10 training"."""
    slots = slots or default_runner().slots
    running, waiting = slots.running, slots.waiting
    return running, running + waiting


# Seconds between a Train page's live redraws (status line, charts) while its job is active. Measured per
# headless Chromium tab (benchmarks/server/bench_browser_cost.py): the status line costs ~0.05 cores at one redraw a
# second, the five plotly charts ~0.3 cores at one redraw every 3 s (each redraw of a chart re-lays it out:
# ~0.2 s of the browser's CPU). A classroom of ten on one machine cannot pay that per tab, and there each job
# steps a few times a second at most, so its charts change little between redraws anyway: a busy server's
# status line ticks every 4 s and its charts every 30 s (benchmarks/server/bench_classroom.py --part browser).
REFRESH_ALONE = (1.0, 3.0)
REFRESH_BUSY = (4.0, 30.0)


def refresh_seconds(slots: Slots | None = None, cores: int | None = None) -> tuple[float, float]:
    """(status line, charts) redraw periods for a Train page now: :data:`REFRESH_BUSY` when more jobs train or
    wait than there are cores (a classroom), else :data:`REFRESH_ALONE`. Queued jobs count, so the choice does
    not flip each time a slot changes hands."""
    total = server_load(slots)[1]
    return REFRESH_BUSY if total > (CORES if cores is None else cores) else REFRESH_ALONE
