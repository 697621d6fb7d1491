"""A :class:`Job`: play / pause / step / stop for one trainer, trained in its own worker process, as a page sees
it. The job keeps the server's mirror of the trainer up to date from the worker's records and weights, ties
itself to a page session (the orphan rule) and turns a dead worker into one sentence (faults).
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any, Callable

from core.runner.process import STOP_GRACE_S, WorkerProcess
from core.runner.scheduler import Runner, default_runner
from core.worker import FAILED, FINISHED, IDLE, PAUSED, QUEUED, RUNNING, STOPPED, Kind, kind_of

log = logging.getLogger("core.runner")

RATE_WINDOW_S = 5.0  # the status line's rate: steps over about the last five seconds of training


class Job:
    """Play / pause / step / stop for one trainer, trained in its own worker process.

    ``trainer`` is the server's mirror (see :mod:`core.runner`). ``target_steps`` is where play stops by itself
    ("finished"); :meth:`extend` raises it. A finished or stopped job sets ``needs_registration`` so the page can
    put the model in the registry. ``options`` go to the trainer's :class:`Kind` (e.g. the Text page's model spec).
    """

    _ids = itertools.count(1)

    def __init__(self, trainer: Any, *, target_steps: int | None = None, runner: Runner | None = None,
                 kind: type[Kind] | None = None, options: dict | None = None):
        self.id = next(Job._ids)
        self.trainer = trainer
        self.kind = kind or kind_of(trainer)
        self.options = dict(options or {})
        self.target_steps = int(target_steps if target_steps is not None else trainer.cfg.steps)
        self.runner = runner or default_runner()
        self.slots = self.runner.slots
        self.orphaned = False  # paused by itself because its page went away (see attach_owner)
        self.crashed = False  # failed because its process died: play restarts from the last state received
        self.error: str | None = None
        self.needs_registration = False
        self.registered_step: int | None = None  # step of the last registry entry made from this job
        self._owner_alive: Callable[[], bool] | None = None
        self._lease_s: float | None = None
        self._grace_s = 10.0
        self._last_seen = time.monotonic()
        self._gone_since: float | None = None
        self._rate_marks: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._state = IDLE
        self._want = "pause"  # what the user asked for: "run" | "pause" | "stop"
        self._pending = 0  # commands sent that the worker has not answered with a state yet
        self._yielding = False
        self._confirmed = False  # the worker said it trains (after the last play)
        self._worker: WorkerProcess | None = None
        self._threads = 0
        self._held_since = 0.0
        self._state_bytes: tuple[bytes, int] | None = None  # the latest weights not yet put into the mirror
        self._weights_step = int(trainer.step_count)  # the step of the weights the mirror holds
        self.runner.register(self)

    # ---------------------------------------------------------------- what the page reads
    @property
    def state(self) -> str:
        return self._state

    @property
    def active(self) -> bool:
        """True while it trains or waits for a slot: the page keeps polling."""
        return self._state in (QUEUED, RUNNING)

    @property
    def steps_done(self) -> int:
        return int(self.trainer.step_count)

    @property
    def queue_position(self) -> int | None:
        return self.slots.ahead_of(self.id)

    @property
    def pid(self) -> int | None:
        """The worker process's id (None without one)."""
        w = self._worker
        return w.pid if w is not None and w.alive else None

    def rate(self, window: float = RATE_WINDOW_S) -> float | None:
        """Steps per second over about the last ``window`` seconds of training (None: no data yet)."""
        marks = list(self._rate_marks)
        if len(marks) < 2:
            return None
        t_end, s_end = marks[-1]
        start = next((m for m in marks if t_end - m[0] <= window), marks[0])
        if start is marks[-1]:
            start = marks[-2]
        dt = t_end - start[0]
        return (s_end - start[1]) / dt if dt > 0 else None

    # ---------------------------------------------------------------- who is watching
    def attach_owner(self, alive: Callable[[], bool] | None, *, lease_s: float | None = 120.0,
                     grace_s: float = 10.0) -> None:
        """Tie the job to a page session: it pauses itself (``orphaned``) and frees its slot and process when
        ``alive()`` has been false for ``grace_s`` seconds, or when :meth:`touch` was not called for ``lease_s``."""
        with self._lock:
            self._owner_alive = alive
            self._lease_s = lease_s
            self._grace_s = grace_s
            self._gone_since = None
            self._last_seen = time.monotonic()

    def touch(self) -> None:
        """The page saw this job (each rerun and live-panel refresh calls it)."""
        self._last_seen = time.monotonic()
        self._gone_since = None

    def owner_gone(self, grace_s: float | None = None) -> bool:
        """True when nobody is watching this job any more (see :meth:`attach_owner`)."""
        now = time.monotonic()
        if self._lease_s is not None and now - self._last_seen > self._lease_s:
            return True
        alive = self._owner_alive
        if alive is None:
            return False
        try:
            ok = bool(alive())
        except Exception:  # noqa: BLE001 - an unknown answer keeps the job running
            ok = True
        if ok:
            self._gone_since = None
            return False
        if self._gone_since is None:
            self._gone_since = now
        return now - self._gone_since >= (self._grace_s if grace_s is None else grace_s)

    def owner_disconnected(self) -> bool:
        """True when the owning browser session is known to be gone (no grace period)."""
        alive = self._owner_alive
        if alive is None:
            return self._lease_s is not None and time.monotonic() - self._last_seen > self._lease_s
        try:
            return not alive()
        except Exception:  # noqa: BLE001 - unknown: keep it with its owner
            return False

    # ---------------------------------------------------------------- commands (from the page)
    def play(self) -> None:
        """Train until ``target_steps`` (queued first if every slot is busy)."""
        with self._lock:
            if self._state == FAILED and not self.crashed:
                return
            if self.trainer.step_count >= self.target_steps:
                return
            self._want = "run"
            self.orphaned = False
            self.touch()
            if self._state in (QUEUED, RUNNING):
                return  # a pause on its way: its answer sees the wish and goes on (_on_state)
            if self._state == FAILED:  # a dead worker: restart from the last state the mirror holds
                self.crashed, self.error = False, None
            self._set_state(QUEUED)
            self._rate_marks.clear()
            self.runner.hold(self, True)
            self.slots.request(self.id)
        self.runner._wake()

    def pause(self) -> None:
        """Pause after the step under way; the worker sends its weights, so the mirror can be saved."""
        with self._lock:
            if self._want == "run":
                self._want = "pause"
            if self._state not in (QUEUED, RUNNING):
                return
            w = self._worker
            if self._state == RUNNING and not self._confirmed and w is not None:
                # The worker is still starting (imports, building the trainer) and has trained nothing: the job
                # is paused now, with the mirror's state; the worker's own answer follows and changes nothing.
                w.send(("pause", True))
                self._release()
                self._set_state(PAUSED)
                return
            if w is not None and w.alive and w.kill_at is None:
                if self._state == QUEUED:
                    self.slots.release(self.id)  # out of the line at once; the answer settles the state
                self._pending += 1
                w.send(("pause", True))
            else:
                self.slots.release(self.id)
                self._yielding = False
                self._set_state(PAUSED)
                self.runner.hold(self, False)

    def stop(self) -> None:
        """Stop training, end the worker and hand the model to the registry; play continues it later."""
        with self._lock:
            self._want = "stop"
            w = self._worker
            if w is not None and w.alive and self._state != FAILED:
                self._pending += 1
                w.send(("stop",))
                w.kill_at = time.monotonic() + STOP_GRACE_S
                w.expected_exit = True
            elif self._state != FAILED:
                self.slots.release(self.id)
                self._settle(stopped=True)
        self.runner._wake()

    def extend(self, steps: int) -> None:
        """Raise the target so that play trains ``steps`` more."""
        with self._lock:
            self.target_steps = max(self.target_steps, self.trainer.step_count) + int(steps)
            if self._worker is not None:
                self._worker.send(("target", self.target_steps))
            if self._state == FINISHED:
                self._set_state(PAUSED)

    def step_now(self, timeout: float = 120.0) -> bool:
        """One step in the worker, waited for. False (nothing done) when a step cannot run now: the job trains
        or failed, or every slot is busy."""
        with self._lock:
            if self.active or (self._state == FAILED and not self.crashed):
                return False
            if not self.slots.try_acquire(self.id):
                return False
            try:
                if self._state == FAILED:
                    self.crashed, self.error = False, None
                w = self._ensure_worker()
                self._pending += 1
                w.send(("step",))
            except Exception:
                self.slots.release(self.id)
                raise
        try:
            self.wait(timeout)
        finally:
            self.slots.release(self.id)
            self.runner._wake()
        with self._lock:
            if self._state != FAILED:
                self.target_steps = max(self.target_steps, self.trainer.step_count)
        return True

    def wait(self, timeout: float) -> bool:
        """Block until the worker answered every command and the job is not training (True), or ``timeout``
        (False): after Pause or Stop, until the job settled; while it plays, until it finished or paused."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._pending or self._state in (QUEUED, RUNNING):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._settled.wait(min(left, 0.1))
            return True

    def mark_registered(self) -> None:
        with self._lock:
            self.needs_registration = False
            self.registered_step = self.trainer.step_count

    def close(self) -> None:
        """End the worker (the job keeps what the mirror holds)."""
        with self._lock:
            w, self._worker = self._worker, None
            self.slots.release(self.id)
            self.runner.hold(self, False)
            if self._state in (QUEUED, RUNNING):
                self._set_state(PAUSED)
            self._pending = 0
            self._settled.notify_all()
        if w is not None:
            w.close()

    # ---------------------------------------------------------------- the runner's side
    def _set_state(self, state: str) -> None:
        self._state = state
        self._settled.notify_all()

    def _ensure_worker(self) -> WorkerProcess:
        w = self._worker
        if w is None or not w.alive or w.kill_at is not None:
            w = self._worker = self.runner.worker_for(self)
            self._threads = 0
        return w

    def _admitted(self) -> None:
        with self._lock:
            if self._want != "run" or self._state != QUEUED:
                self.slots.release(self.id)
                return
            try:
                w = self._ensure_worker()
            except Exception as err:  # noqa: BLE001 - e.g. the mirror could not be written for the worker
                log.exception("Job %s could not start its worker", self.id)
                self.slots.release(self.id)
                self._fail(f"Training could not start ({type(err).__name__}: {err}).", crashed=False)
                return
            self._yielding = False
            self._confirmed = False
            self._held_since = time.monotonic()
            self._set_state(RUNNING)
            self._mark_rate()
            w.send(("play", self.target_steps))

    def _yield_slot(self) -> None:
        """Quantum over while others wait: pause the worker (it keeps its state) and queue at the back."""
        with self._lock:
            if self._state != RUNNING or self._worker is None:
                return
            self._yielding = True
            self._pending += 1
            self._worker.send(("pause", False))
            self.slots.requeue(self.id)
            self._set_state(QUEUED)

    def _check_owner(self) -> None:
        if self._state not in (QUEUED, RUNNING) or self._want != "run" or not self.owner_gone():
            return
        log.info("Training job %s paused: its page went away", self.id)
        with self._lock:
            self.orphaned = True
        self.pause()

    def _mark_rate(self) -> None:
        now = time.monotonic()
        marks = self._rate_marks
        marks.append((now, int(self.trainer.step_count)))
        while len(marks) > 2 and now - marks[1][0] > 2 * RATE_WINDOW_S:
            marks.popleft()

    def _on_message(self, msg: tuple) -> None:
        what = msg[0]
        if what == "records":
            self._apply_records(msg[1])
        elif what == "weights":
            _, data, step, final = msg
            self._state_bytes = (data, int(step))
            if final or self.kind.live_s is not None:
                self._apply_state()
        elif what == "state":
            self._on_state(msg[1])
        elif what == "error":
            self._fail(msg[1], crashed=False)
            w = self._worker
            if w is not None:
                w.close()

    def _apply_records(self, rec: dict) -> None:
        tr = self.trainer
        for name in ("history", "evals", "snapshots"):
            items = getattr(tr, name, None)
            if items is not None:
                items.extend(rec[name])
        tr.step_count = rec["step"]
        if hasattr(tr, "seconds"):
            tr.seconds = rec["seconds"]
        self._mark_rate()

    def _apply_state(self) -> None:
        held = self._state_bytes
        if held is None:
            return
        self._state_bytes = None
        data, step = held
        try:
            self.trainer = self.kind.apply(self.trainer, data, self.options)
        except Exception:  # noqa: BLE001 - the mirror keeps what it had; the page still draws the records
            log.exception("Job %s: the worker's weights could not be loaded", self.id)
            return
        self._weights_step = step

    def _on_state(self, state: str) -> None:
        with self._lock:
            if state == RUNNING:
                self._confirmed = True
                return
            self._pending = max(0, self._pending - 1)
            if state == STOPPED:
                self._release()
                self._settle(stopped=True)
                self._settled.notify_all()
                return
            if state == FINISHED:
                self._want = "pause"
                self._yielding = False
                self._release()
                self._settle(stopped=False)
            elif state == PAUSED:
                if self._pending:  # another answer is on its way (a pause after a yield): that one settles it
                    self._settled.notify_all()
                    return
                if self._want == "run" and self.trainer.step_count < self.target_steps and self._worker is not None:
                    if self._yielding:  # its quantum is over: it waits in line, paused, for its next turn
                        self._settled.notify_all()
                        return
                    if self._state == RUNNING:  # play arrived while the pause was on its way: go on
                        self._worker.send(("play", self.target_steps))
                        return
                self._yielding = False
                self._release()
                self._set_state(PAUSED)
                if self._want == "run":
                    self._want = "pause"
            if self.orphaned and self._worker is not None:
                # Nobody watches: free the process too; play starts a fresh one from the mirror's state.
                w, self._worker = self._worker, None
                w.close()
        self.runner.rebalance()

    def _release(self) -> None:
        self.slots.release(self.id)
        self.runner.hold(self, False)

    def _settle(self, *, stopped: bool) -> None:
        self._set_state(STOPPED if stopped else FINISHED)
        if self.trainer.step_count > 0 and self.registered_step != self.trainer.step_count:
            self.needs_registration = True

    def _fail(self, sentence: str, *, crashed: bool) -> None:
        with self._lock:
            self.error = sentence
            self.crashed = crashed
            self._pending = 0
            self._want = "pause"
            self.slots.release(self.id)
            self.runner.hold(self, False)
            self._set_state(FAILED)

    def _worker_gone(self, exitcode: int | None, *, expected: bool, how: str | None = None) -> None:
        """The worker process ended: expected (quit, stop), or it died (killed, out of memory, a crash)."""
        with self._lock:
            self._worker = None
            if expected or self._state == FAILED:
                if self._pending and self._want == "stop" and self._state != STOPPED:
                    # killed before it answered Stop: keep the last state it sent
                    self._apply_state()
                    self._truncate_to_weights()
                    self._release()
                    self._settle(stopped=True)
                self._pending = 0
                self._settled.notify_all()
                return
        self._apply_state()  # the last full state it sent (periodic, or its last pause)
        self._truncate_to_weights()
        how = how or (f"was killed (signal {-exitcode})" if exitcode is not None and exitcode < 0
                      else f"ended unexpectedly (exit code {exitcode})")
        step = int(self.trainer.step_count)
        again = (f"Press Play to go on from step {step:,}, the last state it sent." if step
                 else "Press Play to start it again.")
        self._fail(f"The training process of this job {how}; nothing else on the server was affected. {again}",
                   crashed=True)

    def _truncate_to_weights(self) -> None:
        """After a crash: the mirror's records end where its weights are (no steps the model no longer has)."""
        tr, step = self.trainer, self._weights_step
        for name in ("history", "evals", "snapshots"):
            items = getattr(tr, name, None)
            if items:
                items[:] = [r for r in items if r.step <= step]
        tr.step_count = step

