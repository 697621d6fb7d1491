"""Background training jobs: one per session, at most ``MAX_RUNNING`` training at once across all sessions.

A :class:`TrainingJob` wraps a :class:`core.train.Trainer` and steps it in a ``threading.Thread`` while the
page stays responsive and polls it (``st.fragment(run_every=...)``). The thread never calls ``st.*``: it only
steps the trainer and records what happened; the page reads ``job.state`` / ``job.error`` and the trainer's
``history`` / ``evals`` / ``snapshots`` (append-only lists, safe to read while they grow).

Admission is first come, first served (:class:`Slots`): a job waits in a queue until a slot is free, and the
page can say "queued, N jobs ahead". A paused or finished job holds no slot and no thread.

This module does not import streamlit, so it is tested without a page.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_RUNNING = os.cpu_count() or 1


class Slots:
    """A FIFO-fair counting semaphore that can tell a waiter its place in the queue."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}.")
        self.capacity = capacity
        self._cond = threading.Condition()
        self._running: set[int] = set()
        self._waiting: list[int] = []  # job ids, oldest first

    def acquire(self, job_id: int, cancelled: Callable[[], bool], poll: float = 0.2) -> bool:
        """Block until ``job_id`` holds a slot (True) or ``cancelled()`` turns true (False)."""
        with self._cond:
            if job_id in self._running:
                return True
            if job_id not in self._waiting:
                self._waiting.append(job_id)
            while True:
                if cancelled():
                    self._waiting.remove(job_id)
                    self._cond.notify_all()
                    return False
                if self._waiting[0] == job_id and len(self._running) < self.capacity:
                    self._waiting.pop(0)
                    self._running.add(job_id)
                    self._cond.notify_all()
                    return True
                self._cond.wait(poll)

    def try_acquire(self, job_id: int) -> bool:
        """Take a slot now if one is free and nobody is queued; never blocks."""
        with self._cond:
            if job_id in self._running:
                return True
            if self._waiting or len(self._running) >= self.capacity:
                return False
            self._running.add(job_id)
            return True

    def release(self, job_id: int) -> None:
        with self._cond:
            self._running.discard(job_id)
            if job_id in self._waiting:
                self._waiting.remove(job_id)
            self._cond.notify_all()

    def ahead_of(self, job_id: int) -> int | None:
        """How many queued jobs are ahead of ``job_id`` (None if it is not queued)."""
        with self._cond:
            return self._waiting.index(job_id) if job_id in self._waiting else None

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)


SLOTS = Slots(MAX_RUNNING)
_ids = itertools.count(1)
_live: "weakref.WeakSet[TrainingJob]" = weakref.WeakSet()

# Job states, as the page shows them.
IDLE, QUEUED, RUNNING, PAUSED, FINISHED, STOPPED, FAILED = (
    "idle", "queued", "running", "paused", "finished", "stopped", "failed")


class TrainingJob:
    """Play / pause / step / stop for one trainer, trained in a background thread.

    ``target_steps`` is where play stops by itself ("finished"); :meth:`extend` raises it to train on.
    A finished or stopped job sets ``needs_registration`` so the page can put the model in the registry.
    """

    def __init__(self, trainer: Any, *, target_steps: int | None = None, slots: Slots | None = None):
        self.id = next(_ids)
        self.trainer = trainer
        self.target_steps = int(target_steps if target_steps is not None else trainer.cfg.steps)
        self.slots = slots or SLOTS
        self.error: str | None = None
        self.needs_registration = False
        self.registered_step: int | None = None  # step of the last registry entry made from this job
        self._lock = threading.Lock()
        self._want = "pause"  # what the user asked for: "run" | "pause" | "stop"
        self._state = IDLE
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        _live.add(self)

    # ---------------------------------------------------------------- what the page reads
    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def active(self) -> bool:
        """True while the thread trains or waits for a slot: the page keeps polling."""
        return self.state in (QUEUED, RUNNING)

    @property
    def steps_done(self) -> int:
        return int(self.trainer.step_count)

    @property
    def queue_position(self) -> int | None:
        return self.slots.ahead_of(self.id)

    # ---------------------------------------------------------------- commands (from the page)
    def play(self) -> None:
        """Train in the background until ``target_steps`` (queued first if every slot is busy)."""
        with self._lock:
            if self._state == FAILED:
                return
            if self.trainer.step_count >= self.target_steps:
                return
            self._want = "run"
            if self._thread is None:
                self._state = QUEUED
                self._thread = threading.Thread(target=self._loop, name=f"train-job-{self.id}", daemon=True)
                self._thread.start()

    def pause(self) -> None:
        with self._lock:
            if self._want == "run":
                self._want = "pause"
            if self._thread is None and self._state in (QUEUED, RUNNING):
                self._state = PAUSED

    def stop(self) -> None:
        """Stop training and hand the model to the registry; play continues it later."""
        with self._lock:
            self._want = "stop"
            if self._thread is None and self._state not in (FAILED,):
                self._settle_locked(stopped=True)

    def extend(self, steps: int) -> None:
        """Raise the target so that play trains ``steps`` more."""
        with self._lock:
            self.target_steps = max(self.target_steps, self.trainer.step_count) + int(steps)
            if self._state == FINISHED:
                self._state = PAUSED

    def step_now(self) -> bool:
        """One step in the caller's thread, if no background step is under way and a slot is free.

        Returns False (and does nothing) when every slot is busy. Raises nothing: errors go to ``error``.
        """
        with self._lock:
            if self._thread is not None or self._state == FAILED:
                return False
        if not self.slots.try_acquire(self.id):
            return False
        try:
            self._safe_step()
        finally:
            self.slots.release(self.id)
        with self._lock:
            if self._state != FAILED:
                self.target_steps = max(self.target_steps, self.trainer.step_count)
                self._state = PAUSED
        return True

    def wait(self, timeout: float) -> bool:
        """Block until the thread is gone (tests and shutdown). True if it ended in time."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self._thread is None

    # ---------------------------------------------------------------- the thread
    def _loop(self) -> None:
        holding = False
        try:
            while True:
                with self._lock:
                    want = self._want
                    done = self.trainer.step_count >= self.target_steps
                    if want != "run" or done or self._state == FAILED:
                        break
                if not holding:
                    holding = self.slots.acquire(self.id, cancelled=lambda: self._want != "run")
                    if not holding:
                        continue
                    with self._lock:
                        self._state = RUNNING
                        self._started_at = self._started_at or time.time()
                if not self._safe_step():
                    break
                if self.trainer.step_count == 1 and not self.trainer.evals:
                    # A first evaluation right away, so the accuracy charts start from the (almost)
                    # untrained model instead of waiting for eval_every steps.
                    if not self._safe(self.trainer.evaluate):
                        break
            # Finishing: a last evaluation so the charts end on the final model.
            with self._lock:
                finished = self._state != FAILED and self.trainer.step_count >= self.target_steps \
                    and self._want == "run"
            if finished and holding:
                evals = self.trainer.evals
                if not evals or evals[-1].step != self.trainer.step_count:
                    self._safe(self.trainer.evaluate)
        finally:
            if holding:
                self.slots.release(self.id)
            with self._lock:
                if self._want == "run" and self._state != FAILED and self.trainer.step_count < self.target_steps:
                    # play() arrived while this thread was winding down: carry on in a fresh thread.
                    self._state = QUEUED
                    self._thread = threading.Thread(target=self._loop, name=f"train-job-{self.id}", daemon=True)
                    self._thread.start()
                    return
                self._thread = None
                if self._state != FAILED:
                    if self._want == "stop":
                        self._settle_locked(stopped=True)
                    elif self.trainer.step_count >= self.target_steps:
                        self._settle_locked(stopped=False)
                    else:
                        self._state = PAUSED
                if self._want == "run":
                    self._want = "pause"

    def _settle_locked(self, *, stopped: bool) -> None:
        self._state = STOPPED if stopped else FINISHED
        if self.trainer.step_count > 0 and self.registered_step != self.trainer.step_count:
            self.needs_registration = True

    def _safe_step(self) -> bool:
        return self._safe(self.trainer.step)

    def _safe(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn``; a PlaygroundError (TrainingDiverged included) or a bug becomes ``error``."""
        from core.errors import PlaygroundError

        try:
            fn()
            return True
        except PlaygroundError as err:
            with self._lock:
                self.error = str(err)
                self._state = FAILED
        except Exception as err:  # noqa: BLE001 - a bug must not kill the thread silently
            log.exception("Training job %s failed", self.id)
            with self._lock:
                self.error = (f"Training stopped because of an unexpected error ({type(err).__name__}: {err}). "
                              "Press Reset to start again.")
                self._state = FAILED
        return False

    def mark_registered(self) -> None:
        with self._lock:
            self.needs_registration = False
            self.registered_step = self.trainer.step_count


def live_jobs() -> list[TrainingJob]:
    """Jobs not yet garbage-collected, across all sessions (for the status line and tests)."""
    return list(_live)


def stop_all(timeout: float = 10.0) -> None:
    """Pause every job and wait for its thread (test teardown, server shutdown)."""
    for job in live_jobs():
        job.pause()
    for job in live_jobs():
        job.wait(timeout)
