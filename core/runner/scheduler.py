"""The :class:`Runner`: the server's one background thread. It starts worker processes (keeping a warm spare),
reads their records into each job's mirror, admits queued jobs first come first served, gives a job that trained
its quantum while others wait a place at the back, shares the cores between running workers, pauses jobs whose
page went away and notices dead workers. It never trains and never calls a page.

:func:`default_runner` is the server's one runner; :func:`live_jobs` and :func:`stop_all` read it (the pages'
"3 of 10 training" is :func:`ui.jobs.server_load`).
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import threading
import time
import weakref
from multiprocessing.connection import wait as wait_for
from typing import TYPE_CHECKING, Any, Callable

from core.runner.admission import CORES, MAX_RUNNING, SLOT_QUANTUM_S, Slots, env_int
from core.runner.process import WORKER_MEMORY_MB, WorkerProcess
from core.worker import RUNNING, known_steps

if TYPE_CHECKING:
    from core.runner.job import Job

log = logging.getLogger("core.runner")

SPARE_DELAY_S = float(os.environ.get("CP_SPARE_DELAY_S", 15.0))  # a job's start -> the next spare worker
WARM = ("core.train", "core.lab")  # what a spare worker imports while it waits


class Runner:
    """The server's one background thread: starts workers, reads their records, admits queued jobs FIFO, pauses
    jobs whose page went away, notices dead workers. It never trains and never calls a page."""

    def __init__(self, capacity: int = MAX_RUNNING, *, quantum_s: float | None = SLOT_QUANTUM_S,
                 threads: int | None = None, spare: bool = True, memory_mb: int = WORKER_MEMORY_MB,
                 warm: tuple[str, ...] = WARM, ray_address: str | None = None):
        self.slots = Slots(capacity)
        self.quantum_s = quantum_s
        self.fixed_threads = threads if threads is not None else (
            env_int("CP_WORKER_THREADS", 0, minimum=0) or None)
        # CP_RAY_ADDRESS (or ray_address): each job's worker is a Ray actor speaking the same protocol (core.ray_jobs)
        address = ray_address if ray_address is not None else os.environ.get("CP_RAY_ADDRESS", "").strip()
        self._new_worker: Callable[..., Any] = WorkerProcess
        if address:
            from core import ray_jobs

            ray_jobs.connect(address)
            self._new_worker = ray_jobs.RayWorker
            self.fixed_threads = self.fixed_threads or ray_jobs.ACTOR_THREADS  # its CPU share, not this server's
        self.keep_spare = spare
        self.memory_mb = memory_mb
        self.warm = tuple(warm)
        self._ctx = mp.get_context("spawn")
        self._lock = threading.RLock()
        self._jobs: "weakref.WeakValueDictionary[int, Job]" = weakref.WeakValueDictionary()
        self._held: dict[int, Job] = {}  # jobs queued or running: kept alive while they work
        self._workers: list[WorkerProcess] = []
        self._spare: WorkerProcess | None = None
        self._thread: threading.Thread | None = None
        self._spare_due: float | None = None  # when to start the next spare worker
        self._balanced_at = 0.0
        self._closed = False
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
                self._thread.start()

    def prewarm(self) -> None:
        """Start a spare worker now (it imports torch and the trainers), so the next Play does not wait for it."""
        self.start()
        with self._lock:
            if self.keep_spare and not self._closed and (self._spare is None or not self._spare.alive):
                self._spare = self._new_worker(self._ctx, self.threads_now(1), self.warm, self.memory_mb)
                self._workers.append(self._spare)
        self._wake()

    def shutdown(self, timeout: float = 5.0) -> None:
        """End every worker (tests, server exit)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
            self._spare = None
        for w in workers:
            w.send(("quit",))
        deadline = time.monotonic() + timeout
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            w.kill()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(None)
        except OSError:
            pass

    def threads_now(self, running: int | None = None) -> int:
        """Torch threads per running worker: the cores split between the jobs training now, and one while other
        work keeps the machine busy (the 1-minute load average, less this runner's own threads, above the cores
        minus a half). Why one on a busy machine: OpenMP threads spin-wait for each other, so whenever one of a
        worker's threads loses its core the others stall, and two threads then train many times slower than one
        (figures: benchmarks/RESULTS.md). ``CP_WORKER_THREADS`` fixes the count."""
        if self.fixed_threads:
            return self.fixed_threads
        n = self.slots.running if running is None else running
        share = max(1, CORES // max(1, n))
        if share > 1:
            try:
                load = os.getloadavg()[0]
            except (OSError, AttributeError):
                load = 0.0
            with self._lock:
                ours = sum(j._threads for j in self._held.values() if j.state == RUNNING)
            if load - ours > CORES - 0.5:
                share = 1
        return share

    def live_jobs(self) -> list["Job"]:
        return list(self._jobs.values())

    # ---------------------------------------------------------------- jobs
    def register(self, job: "Job") -> None:
        self._jobs[job.id] = job
        self.start()

    def hold(self, job: "Job", held: bool) -> None:
        with self._lock:
            if held:
                self._held[job.id] = job
            else:
                self._held.pop(job.id, None)

    def worker_for(self, job: "Job") -> WorkerProcess:
        """A warm worker for ``job`` (the spare, or a new one), already sent the job."""
        with self._lock:
            if self._closed:
                raise RuntimeError("The job runner is shut down.")
            w = self._spare if self._spare is not None and self._spare.alive else None
            self._spare = None
            if w is None:
                w = self._new_worker(self._ctx, 1, self.warm, self.memory_mb)
                self._workers.append(w)
            w.job = weakref.ref(job)
        kind = job.kind
        recipe = kind.recipe(job.trainer, job.options)
        recipe["known"] = known_steps(job.trainer)
        w.send(("job", kind, recipe, self.threads_now(self.slots.running or 1)))
        # The next spare starts a little later (housekeeping): importing torch takes seconds of a core, and
        # right now it would take them from the job that just started, in the first seconds the user watches.
        self._spare_due = time.monotonic() + SPARE_DELAY_S
        self._wake()
        return w

    def rebalance(self) -> None:
        """Tell each running worker its share of the cores."""
        n = self.threads_now()
        with self._lock:
            held = list(self._held.values())
        for job in held:
            w = job._worker
            if w is not None and job.state == RUNNING and job._threads != n:
                job._threads = n
                w.send(("threads", n))

    # ---------------------------------------------------------------- the loop
    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed and not self._workers:
                    return
                workers = [w for w in self._workers if not w.conn.closed]
            waitables: list = [self._wake_r]
            for w in workers:
                waitables += [w.conn, w.process.sentinel]
            try:
                ready = wait_for(waitables, timeout=0.1)
            except OSError:
                ready = []
            if self._wake_r in ready:
                while self._wake_r.poll():
                    self._wake_r.recv()
            for w in workers:
                try:
                    if w.conn in ready or w.process.sentinel in ready:
                        self._drain(w)
                    if not w.process.is_alive():
                        self._drain(w)
                        self._ended(w)
                    elif w.kill_at is not None and time.monotonic() > w.kill_at:
                        w.kill()
                        self._ended(w)
                except Exception:  # noqa: BLE001 - one worker's trouble never stops the runner
                    log.exception("Job runner: handling worker %s failed", w.pid)
            try:
                self._housekeeping()
            except Exception:  # noqa: BLE001 - the runner must outlive any one job's trouble
                log.exception("Job runner housekeeping failed")

    def _drain(self, w: WorkerProcess) -> None:
        job = w.job() if w.job is not None else None
        while True:
            try:
                if w.conn.closed or not w.conn.poll():
                    return
                msg = w.conn.recv()
            except Exception:  # noqa: BLE001 - EOF, or half a message from a worker killed while sending
                return
            if msg[0] == "ready":
                w.ready = True
                continue
            if job is None:
                if w is not self._spare:
                    w.close()
                continue
            try:
                job._on_message(msg)
            except Exception:  # noqa: BLE001
                log.exception("Job %s: handling %s failed", job.id, msg[0])

    def _ended(self, w: WorkerProcess) -> None:
        with self._lock:
            if w in self._workers:
                self._workers.remove(w)
            if self._spare is w:
                self._spare = None
        job = w.job() if w.job is not None else None
        code = w.process.exitcode
        w.close_pipe()
        if job is not None and job._worker is w:
            job._worker_gone(code, expected=w.expected_exit, how=getattr(w, "how_it_ended", None))
        self.rebalance()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        with self._lock:
            held = list(self._held.values())
            workers = list(self._workers)
        for job in held:
            job._check_owner()
        quantum = self.quantum_s
        if quantum is not None and self.slots.waiting:
            for job in held:
                if job.state == RUNNING and not job._pending and now - job._held_since >= quantum:
                    job._yield_slot()
        admitted = self.slots.admit()
        for job_id in admitted:
            job = self._jobs.get(job_id)
            if job is None:
                self.slots.release(job_id)
                continue
            job._admitted()
        if admitted or now - self._balanced_at > 5.0:  # the load average moves: look again every few seconds
            self._balanced_at = now
            self.rebalance()
        due = self._spare_due
        if due is not None and now >= due and self.keep_spare and not self._closed:
            self._spare_due = None
            threading.Thread(target=self.prewarm, name="spare-worker", daemon=True).start()
        for w in workers:  # a worker whose job was dropped (its session ended) ends too
            if w is not self._spare and w.job is not None and w.job() is None and w.kill_at is None:
                w.close()



# ============================================================================================== module level
_default: Runner | None = None
_default_lock = threading.Lock()


def default_runner() -> Runner:
    """The server's runner (one per process), started on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Runner()
            atexit.register(_default.shutdown, 2.0)
        return _default


def live_jobs() -> list[Job]:
    """Jobs not yet garbage-collected, across all sessions (for the status line and tests)."""
    return default_runner().live_jobs() if _default is not None else []


def stop_all(timeout: float = 10.0) -> None:
    """Pause every job and wait for it (test teardown)."""
    jobs = live_jobs()
    for job in jobs:
        job.pause()
    for job in jobs:
        job.wait(timeout)
