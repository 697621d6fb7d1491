"""Training jobs, each in its own worker process: the web server renders, the workers train.

A :class:`Job` drives one trainer (``core.train.Trainer``, the Loss Lab's ``core.lab.ToyTrainer``, the Text
page's ``core.text.TextFineTuner``) in a worker process started with ``multiprocessing``'s spawn method. The
server keeps a *mirror*: a trainer built from the same settings and data, whose ``history`` / ``evals`` /
``snapshots`` lists grow from the worker's records (append-only, so a page may read them while they grow) and
whose weights are replaced by the worker's safetensors bytes when the job pauses, stops, finishes or dies. So
``job.trainer`` works for pages, the registry and downloads as the in-process trainer did.

Why processes: inside the web server a job shared one GIL and one OpenMP runtime with every page rerun, and
trained at a fraction of the bare trainer's speed; a thread also cannot be killed. A worker can: a SIGKILL, a
step that raises or a worker over its memory cap fails its own job with one sentence, and nothing else.

Protocol (tuples over a ``multiprocessing`` pipe; never a pickle of user files: datasets travel as plain
arrays and lists, weights as safetensors bytes)::

    server -> worker   ("job", kind, recipe, threads)   build the trainer (once per worker)
                       ("play", target)  ("pause", with_weights)  ("step",)  ("target", n)
                       ("stop",)  ("weights",)  ("threads", n)  ("quit",)
    worker -> server   ("ready", pid)  ("records", {...})  ("weights", bytes, step, final)
                       ("state", "running" | "paused" | "finished" | "stopped")  ("error", sentence)

The worker drives the one loop ``trainer.run(n, callbacks=..., stop=<a command is waiting>)``; evaluation and
snapshots are the trainer's own callbacks (``default_callbacks()``), the records go back through one more.

Admission: at most :data:`MAX_RUNNING` jobs train at once (``CP_MAX_TRAINING``); the rest wait first come, first
served (:class:`Slots`), and with others waiting a job that trained :data:`SLOT_QUANTUM_S` seconds yields its
slot and queues at the back, so everyone progresses. Running workers share the cores: each gets
``cores // running`` torch threads, set again whenever a job starts or ends. A job whose page went away (the
browser session closed, or nobody polled it for its lease) pauses, frees its slot and its process; its user
comes back to it paused.

With ``CP_RAY_ADDRESS`` set, each worker is a Ray actor on that cluster instead of a local process, speaking the
same protocol (``core.ray_jobs``; Ray is imported only then).

This module does not import streamlit (nor torch, until a job needs it).
"""
from __future__ import annotations

import atexit
import collections
import itertools
import logging
import multiprocessing as mp
import os
import threading
import time
import weakref
from multiprocessing.connection import wait as wait_for
from typing import Any, Callable

log = logging.getLogger(__name__)


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    try:
        return max(minimum, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _thread_budget() -> int:
    """Cores the workers may use: the CPU count, capped by OMP_NUM_THREADS when it is set."""
    cores = os.cpu_count() or 1
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", "") or cores)
    except ValueError:
        cap = cores
    return max(1, min(cores, cap))


CORES = _thread_budget()
# A warm worker holds torch, the model and its data: ~0.4-0.6 GB resident for the built-in lessons. The default
# cap lets two jobs share each core and keeps the workers within about half the machine's memory.
WORKER_BUDGET_BYTES = 700 * 2**20


def _default_cap() -> int:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 8 * 2**30
    return max(2, min(2 * CORES, int(memory // 2 // WORKER_BUDGET_BYTES)))


MAX_RUNNING = _env_int("CP_MAX_TRAINING", _default_cap())
SLOT_QUANTUM_S = float(os.environ.get("CP_SLOT_QUANTUM", 20.0))
# Address space a worker may add to what it maps once warm (torch imported), in MB; 0: no cap. Past it an
# allocation fails inside the worker, which reports it as one sentence (a dying worker is reported too).
WORKER_MEMORY_MB = _env_int("CP_WORKER_MEMORY_MB", 6144, minimum=0)
SPARE_DELAY_S = float(os.environ.get("CP_SPARE_DELAY_S", 15.0))  # a job's start -> the next spare worker
STOP_GRACE_S = 0.7  # Stop: the worker sends its weights and exits; past this it is killed
RATE_WINDOW_S = 5.0  # the status line's rate: steps over about the last five seconds of training

from core.worker import (FAILED, FINISHED, IDLE, PAUSED, QUEUED, RUNNING, STOPPED, Kind, known_steps, kind_of,
                         worker_main)


# ============================================================================================== admission
class Slots:
    """FIFO admission: at most ``capacity`` holders; the rest wait in arrival order and can be told their place.

    Non-blocking: :meth:`request` queues, :meth:`admit` (the runner's loop) hands free slots to the oldest waiters.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}.")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._waiting: list[int] = []  # job ids, oldest first

    def request(self, job_id: int) -> None:
        """Queue ``job_id`` (nothing if it holds a slot or already waits)."""
        with self._lock:
            if job_id not in self._running and job_id not in self._waiting:
                self._waiting.append(job_id)

    def admit(self) -> list[int]:
        """Give free slots to the oldest waiters; returns the ids admitted now."""
        with self._lock:
            admitted = []
            while self._waiting and len(self._running) < self.capacity:
                job_id = self._waiting.pop(0)
                self._running.add(job_id)
                admitted.append(job_id)
            return admitted

    def try_acquire(self, job_id: int) -> bool:
        """Take a slot now if one is free and nobody is queued; never blocks."""
        with self._lock:
            if job_id in self._running:
                return True
            if self._waiting or len(self._running) >= self.capacity:
                return False
            self._running.add(job_id)
            return True

    def requeue(self, job_id: int) -> None:
        """Give the slot up and wait again at the back of the line."""
        with self._lock:
            self._running.discard(job_id)
            if job_id not in self._waiting:
                self._waiting.append(job_id)

    def release(self, job_id: int) -> None:
        with self._lock:
            self._running.discard(job_id)
            if job_id in self._waiting:
                self._waiting.remove(job_id)

    def holds(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._running

    def ahead_of(self, job_id: int) -> int | None:
        """How many queued jobs are ahead of ``job_id`` (None if it is not queued)."""
        with self._lock:
            return self._waiting.index(job_id) if job_id in self._waiting else None

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ============================================================================================== server side
_main_lock = threading.Lock()


def _start_plain(process: Any) -> None:
    """``process.start()`` without the parent's ``__main__``: spawn re-runs the main module in the child, and in
    a Streamlit server ``sys.modules["__main__"]`` is the last page script run (Streamlit names it so), which would
    run the whole app inside the worker. A blank main module, swapped in for the moment of the start, runs
    nothing; it is put back unless a script run replaced it meanwhile."""
    import sys
    import types

    blank = types.ModuleType("__main__")
    with _main_lock:
        real = sys.modules.get("__main__")
        sys.modules["__main__"] = blank
        try:
            process.start()
        finally:
            if sys.modules.get("__main__") is blank and real is not None:
                sys.modules["__main__"] = real


class _Worker:
    """A worker process and its end of the pipe, as the server sees them."""

    def __init__(self, ctx: Any, threads: int, warm: tuple[str, ...], memory_mb: int = WORKER_MEMORY_MB):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, threads, memory_mb, warm),
                                   name="cp-train-worker", daemon=True)
        _start_plain(self.process)
        child.close()
        self.pid = self.process.pid
        self.job: "weakref.ref[Job] | None" = None
        self.ready = False  # it said it finished its imports
        self.kill_at: float | None = None  # asked to end: killed if still alive then
        self.expected_exit = False

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def send(self, msg: tuple) -> bool:
        try:
            self.conn.send(msg)
            return True
        except (OSError, BrokenPipeError, EOFError):
            return False

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask it to quit; the runner kills it if it is still there after ``grace_s``."""
        self.expected_exit = True
        self.send(("quit",))
        self.kill_at = time.monotonic() + grace_s

    def kill(self) -> None:
        self.expected_exit = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(1.0)
        self.conn.close()


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
            _env_int("CP_WORKER_THREADS", 0, minimum=0) or None)
        # CP_RAY_ADDRESS (or ray_address): each job's worker is a Ray actor speaking the same protocol (core.ray_jobs)
        address = ray_address if ray_address is not None else os.environ.get("CP_RAY_ADDRESS", "").strip()
        self._new_worker: Callable[..., Any] = _Worker
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
        self._workers: list[_Worker] = []
        self._spare: _Worker | None = None
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
        minus a half). Measured on a shared 2-core machine at load 8-22: a lone worker on two OpenMP threads
        trained 0.9-2.1 steps/s at batch 64, on one thread 16-17 (two threads spin-wait for each other whenever
        one loses its core). ``CP_WORKER_THREADS`` fixes the count."""
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

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers if w.alive]

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

    def worker_for(self, job: "Job") -> _Worker:
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

    def _drain(self, w: _Worker) -> None:
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

    def _ended(self, w: _Worker) -> None:
        with self._lock:
            if w in self._workers:
                self._workers.remove(w)
            if self._spare is w:
                self._spare = None
        job = w.job() if w.job is not None else None
        code = w.process.exitcode
        if not w.conn.closed:
            w.conn.close()
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


class Job:
    """Play / pause / step / stop for one trainer, trained in its own worker process.

    ``trainer`` is the server's mirror (see the module docstring). ``target_steps`` is where play stops by itself
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
        self._worker: _Worker | None = None
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

    def _ensure_worker(self) -> _Worker:
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


def server_load(runner: Runner | None = None) -> tuple[int, int]:
    """(jobs training now, jobs training or queued) across all sessions, for "3 of 10 training"."""
    slots = (runner or default_runner()).slots
    running, waiting = slots.running, slots.waiting
    return running, running + waiting


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
