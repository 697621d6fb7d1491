"""Background training jobs: one per session, a few training at once across all sessions, fairly.

A :class:`TrainingJob` wraps a trainer (``core.train.Trainer`` or anything with ``step()``, ``step_count``,
``cfg.steps``, ``evaluate()``, ``evals``, ``history``) and steps it in a ``threading.Thread`` while the page
stays responsive and polls it (``st.fragment(run_every=...)``). The thread never calls ``st.*``: it only
steps the trainer and records what happened; the page reads ``job.state`` / ``job.error`` and the trainer's
``history`` / ``evals`` / ``snapshots`` (append-only lists, safe to read while they grow).

Two levels of sharing keep a classroom on one server fair and fast:

- Admission (:class:`Slots`): at most ``MAX_RUNNING`` jobs train at once; the rest wait first come, first
  served, and the page can say "3 of 10 training, you are 2nd in the queue". A paused or finished job holds
  no slot and no thread.
- Turns (:class:`StepGate`): the jobs that hold a slot take turns step by step, in FIFO order, at most
  ``STEP_CONCURRENCY`` steps at a time, and each step runs with its share of the CPU cores as torch
  intra-op threads (``torch.set_num_threads`` is per thread under OpenMP; it is set for the step and put
  back afterwards). Without this, two jobs on two cores each ran torch's default two threads, the threads
  busy-waited on each other and the server's total throughput fell to a fraction of one job alone. A job
  training alone could use every core, but whether its extra threads pay depends on what else runs on the
  machine (a browser on the same cores, the pages): its :class:`ThreadTuner` times both and keeps the faster.

A job whose page went away (the browser session closed, or nobody polled it for ``lease_s``) pauses itself
and frees its slot (:meth:`TrainingJob.attach_owner`); it is kept, paused, for the user who comes back.

This module does not import streamlit, so it is tested without a page.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

def _thread_budget() -> int:
    """Cores this process may use for torch: the CPU count, capped by OMP_NUM_THREADS when it is set."""
    cores = os.cpu_count() or 1
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", "") or cores)
    except ValueError:
        cap = cores
    return max(1, min(cores, cap))


CORES = _thread_budget()


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    try:
        return max(minimum, int(os.environ.get(name, default)))
    except ValueError:
        return default


# Jobs training at once (the rest queue). More than the cores, so a few users see progress together.
MAX_RUNNING = _env_int("CP_MAX_TRAINING", max(3, CORES + 1))
# Steps computing at once across all jobs; each gets CORES // min(STEP_CONCURRENCY, jobs training) threads, at
# most CORES - RESERVED_CORES (below): a job alone may use every core (its ThreadTuner decides whether that pays),
# two or more run side by side with one thread each (no OpenMP spinning between a job's threads), and the rest
# wait their turn. Set CP_STEP_CONCURRENCY=1 to serialise steps instead.
STEP_CONCURRENCY = _env_int("CP_STEP_CONCURRENCY", CORES)


class Slots:
    """A FIFO-fair counting semaphore that can tell a waiter its place in the queue."""

    def __init__(self, capacity: int, quantum_s: float | None = None):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}.")
        if quantum_s is not None and not quantum_s > 0:
            raise ValueError(f"quantum_s must be a positive number of seconds or None, got {quantum_s}.")
        self.capacity = capacity
        # A job that has trained this long while others wait gives its slot up and queues at the back,
        # so with more users than slots everyone still makes progress (None: hold it until done).
        self.quantum_s = quantum_s
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


class ThreadTuner:
    """Which of two thread counts (1 or ``many``) makes one job's steps faster now, measured on its own steps.

    More threads is not always faster. With a Chromium tab on the same two cores, a lone lesson stepped 5.3-5.8
    steps/s on two torch threads against 8.3-9.4 on one (``benchmarks/bench_classroom.py --part browser``): most
    two-thread steps were quick, but those while the tab redrew took up to seconds (one OpenMP thread lost its
    core and the other waited for it). With nothing beside it, the job stepped 1.4-1.5x faster on two threads
    than on one (``--part jobs``). Only the server sees which holds, and only by timing.

    A trial alternates ``rounds`` blocks of ``block_s`` seconds at each count (alternating, so a burst of other
    work does not land on one count only; the job's first ``settle`` steps are not counted), and the count with
    the smaller mean step time wins: the mean, not the median, because the rare long steps are where the time
    goes. A trial ends early once two steps of one count each took ``DECISIVE`` times the other's mean. The
    chosen count keeps being timed over windows of ``watch_s`` seconds: a window slower than the other count's
    trial mean starts a new trial at once (a trial at a lesson's start sees the page's first, heaviest redraws
    and can choose wrong). ``period_s`` seconds after a trial it tries again anyway, so the choice follows the
    machine (a tab opened or closed, other jobs come and go); each trial that confirms the choice doubles that
    wait, up to four periods. The first trial is followed by another after only ``first_period_s``: it ran while
    the page that pressed Play drew its charts for the first time. Measured beside a Chromium tab on 2 cores, two
    threads' plain steps took 0.26-1.45 s in the lesson's first six seconds and 45-60 ms a minute later, against
    80-90 ms on one thread throughout: the first trial chose one thread, and the old tuner kept it for a minute,
    longer than the lesson.
    """

    DECISIVE = 2.0

    def __init__(self, many: int, *, block_s: float = 1.0, rounds: int = 3, settle: int = 1,
                 watch_s: float = 3.0, period_s: float = 60.0, first_period_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        if many < 2 or rounds < 1 or settle < 0 or not min(block_s, watch_s, period_s, first_period_s) > 0:
            raise ValueError(f"need many >= 2, rounds >= 1, settle >= 0 and positive seconds, got {many}, "
                             f"{rounds}, {settle}, {block_s}, {watch_s}, {period_s} and {first_period_s}.")
        self.many, self.block_s, self.rounds, self.settle = many, block_s, rounds, settle
        self.watch_s, self.period_s, self.first_period_s, self.clock = watch_s, period_s, first_period_s, clock
        self.choice: int | None = None  # what the last trial chose (None until the first trial ends)
        self.means: dict[int, float] = {}  # the last trial's mean step time per count
        self.trials = 0  # trials finished
        self._period = period_s
        self._start_trial()

    def threads(self) -> int:
        """The thread count for the next step."""
        if self._blocks:
            if self._block_started is None:
                self._block_started = self.clock()
            return self._blocks[0]
        if self.clock() - self._decided_at >= self._period:
            self._start_trial()
            return self.threads()
        return self.choice  # type: ignore[return-value]

    def record(self, threads: int, seconds: float) -> None:
        """A step of this job took ``seconds`` on ``threads`` threads."""
        if not self._blocks:
            if threads == self.choice:
                self._watch(float(seconds))
            return
        if threads != self._blocks[0]:
            return
        if self._skip > 0:
            self._skip -= 1
            return
        self._sum[threads] += float(seconds)
        self._steps[threads] += 1
        self._fastest[threads] = min(self._fastest[threads], float(seconds))
        # A block ends after block_s seconds, and never before one of its steps has counted (a count whose steps
        # take longer than a block would otherwise never be measured at all).
        if self._block_started is not None and self.clock() - self._block_started >= self.block_s:
            self._blocks.pop(0)
            self._block_started = None
            if not self._blocks or self._decisive():
                self._decide()

    def _decisive(self) -> bool:
        """Both counts measured, and even the fastest step of one at least ``DECISIVE`` times the other's mean: no
        more blocks can change the answer, and each one at the slow count costs (beside a browser, with the
        benchmark's step timer on, two threads' steps took 1.4-2.5 s against 0.1 s on one). The fastest step, not
        the mean, so that one long step (an evaluation) in a short block does not end a trial."""
        if not (self._steps[1] and self._steps[self.many]):
            return False
        mean = {n: self._sum[n] / self._steps[n] for n in (1, self.many)}
        slow, fast = (1, self.many) if mean[1] > mean[self.many] else (self.many, 1)
        return self._steps[slow] >= 2 and self._fastest[slow] >= self.DECISIVE * mean[fast]

    def _watch(self, seconds: float) -> None:
        self._watch_sum += seconds
        self._watch_steps += 1
        if self.clock() - self._watch_started < self.watch_s:
            return
        other = 1 if self.choice == self.many else self.many
        if other in self.means and self._watch_sum / self._watch_steps > self.means[other]:
            self._start_trial()  # the choice got slower than the other count was: measure both again
        else:
            self._start_watch()

    def _start_watch(self) -> None:
        self._watch_started = self.clock()
        self._watch_sum, self._watch_steps = 0.0, 0

    def _start_trial(self) -> None:
        self._blocks = [self.many, 1] * self.rounds
        self._block_started: float | None = None
        self._skip = self.settle if self.trials == 0 else 0  # a job's first steps (its first evaluation) only
        self._sum = {self.many: 0.0, 1: 0.0}
        self._steps = {self.many: 0, 1: 0}
        self._fastest = {self.many: float("inf"), 1: float("inf")}

    def _decide(self) -> None:
        self._blocks = []
        self.means = {n: self._sum[n] / self._steps[n] for n in (self.many, 1) if self._steps[n]}
        before = self.choice
        self.choice = min(self.means, key=self.means.__getitem__) if len(self.means) == 2 else self.many
        # The first answer: try again soon (it saw the page's first draws). The same answer again: wait twice as
        # long before the next trial (up to 4 periods); a new one: period_s.
        if self.trials == 0:
            self._period = self.first_period_s
        elif self.choice == before:
            self._period = min(2 * self._period, 4 * self.period_s)
        else:
            self._period = self.period_s
        self.trials += 1
        self._decided_at = self.clock()
        self._start_watch()
        log.info("Thread trial %d: %d threads (mean step %s)", self.trials, self.choice,
                 ", ".join(f"{n} threads {1000 * m:.0f} ms" for n, m in sorted(self.means.items())))


class StepGate:
    """Round-robin turns for training steps: at most ``concurrency`` run at once, served first come, first
    served, so a job that just stepped queues behind the others (no job can starve another).

    ``members`` are the jobs currently training (they hold a slot); a turn's torch thread count is
    ``cores // min(concurrency, members)`` (at least 1), so the cores are split, never oversubscribed.

    ``reserve`` cores are never given to one step's threads (``CP_RESERVED_CORES``; the server kept one for its
    pages until 2026-12-02). Measured in the served app with a Chromium tab on this 2-core machine: a lone job
    stepping on two threads did 4.7-5.7 steps/s at 1.4 cores (its OpenMP threads spin-wait whenever the page
    takes a core), on one thread 8.1 steps/s at 1.0 core. Without the tab beside it, the same job stepped 1.4-1.5x
    faster on two threads: so the server's gate now reserves nothing and hands each lone job to a ``tuner``
    (:class:`ThreadTuner`), which measures.

    ``load`` (default none; the server's gate uses ``os.getloadavg``) returns the 1-minute load average:
    when other processes already keep more than ``cores`` busy, a turn gets one thread. Measured on this
    2-core machine at load 15: ten small MoCo steps took 69 s with two OpenMP threads (they spin-wait for
    each other when descheduled) against 4.7 s with one.
    """

    def __init__(self, concurrency: int = 1, cores: int = CORES, load: Callable[[], float] | None = None,
                 reserve: int = 0, tuner: "Callable[[int], ThreadTuner] | None" = None):
        if concurrency < 1 or cores < 1:
            raise ValueError(f"concurrency and cores must be at least 1, got {concurrency} and {cores}.")
        if not 0 <= reserve < cores:
            raise ValueError(f"reserve must be at least 0 and below the {cores} cores, got {reserve}.")
        self.concurrency = concurrency
        self.cores = cores
        self.reserve = reserve  # cores no single step's threads take (the server's pages, a browser beside it)
        self.load = load
        self._cond = threading.Condition()
        self._queue: collections.deque[int] = collections.deque()
        self._active = 0
        self._members: set[int] = set()
        self._threads_now = 0  # torch threads of the turns running now
        self._recent_threads = 0.0  # what this gate has been running lately (the load average's view of it)
        self.turns: collections.Counter[int] = collections.Counter()  # turns taken per job id
        # tuner(many) makes a job's ThreadTuner: a turn that could have ``many`` threads gets the count it measured
        # faster for that job (None: always ``many``)
        self.make_tuner = tuner
        self._tuners: dict[int, ThreadTuner] = {}
        self._spare: dict[int, bool] = {}  # per job: did its turn running now leave it a core of its own unused?

    def join(self, job_id: int) -> None:
        with self._cond:
            self._members.add(job_id)

    def leave(self, job_id: int) -> None:
        with self._cond:
            self._members.discard(job_id)
            self._tuners.pop(job_id, None)  # a job that comes back may find another machine: measure again
            self._cond.notify_all()

    def tuner(self, job_id: int) -> "ThreadTuner | None":
        """The job's thread tuner while it trains with more than one thread to choose from (else None)."""
        with self._cond:
            return self._tuners.get(job_id)

    def threads_for_turn(self) -> int:
        with self._cond:
            return self._threads_locked()

    def _threads_locked(self) -> int:
        sharing = min(self.concurrency, max(len(self._members), self._active, 1))
        threads = max(1, min(self.cores // sharing, self.cores - self.reserve))
        if threads > 1 and self.load is not None:
            try:
                busy = float(self.load())
            except (OSError, ValueError, TypeError):
                busy = 0.0
            # The load average counts this gate's own training threads too: only the rest is other work. (Not
            # discounting them, one job alone on a served app flipped itself to one thread: its two threads plus
            # the page made the load 2.5-4 on 2 cores, and every step ran at 0.8x.)
            others = busy - self._recent_threads
            if others > self.cores + 0.5:  # the machine is oversubscribed by others: never spin-wait
                threads = 1
        return threads

    @contextlib.contextmanager
    def turn(self, job_id: int, timed: Callable[[], bool] | None = None) -> Iterator[int]:
        """Wait for this job's turn, run the body with the turn's torch threads set, then hand over.

        Yields the thread count. The calling thread's previous ``torch.get_num_threads()`` is restored.
        The turn's time goes to the job's tuner unless ``timed()`` says, after the body, that the turn was not
        a plain training step (it also evaluated or took a snapshot: other work, many times a step's time).
        """
        with self._cond:
            self._queue.append(job_id)
            try:
                while not (self._queue[0] == job_id and self._active < self.concurrency):
                    self._cond.wait()
            except BaseException:  # never leave a dead waiter at the head of the line
                self._queue.remove(job_id)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._active += 1
            threads = self._threads_locked()
            tuner = None
            if self.make_tuner is not None and threads > 1:
                tuner = self._tuners.get(job_id)
                if tuner is None or tuner.many != threads:
                    tuner = self._tuners[job_id] = self.make_tuner(threads)
                threads = tuner.threads()
            # The turn could have had more threads and its tuner measured fewer faster: those cores are this
            # job's alone, free for work that does not run in lock-step with its step (Trainer.views_ahead).
            self._spare[job_id] = tuner is not None and threads < tuner.many
            self._threads_now += threads
            # The 1-minute load average follows what ran over the last minute: track our own threads slowly.
            self._recent_threads = max(self._threads_now, 0.9 * self._recent_threads + 0.1 * self._threads_now)
            self.turns[job_id] += 1
            self._cond.notify_all()
        try:
            with thread_policy(threads):
                t0 = time.perf_counter()
                yield threads
                if tuner is not None and (timed is None or timed()):
                    tuner.record(threads, time.perf_counter() - t0)
        finally:
            with self._cond:
                self._active -= 1
                self._threads_now -= threads
                self._spare.pop(job_id, None)
                self._cond.notify_all()

    def spare_core(self, job_id: int) -> bool:
        """Inside :meth:`turn`: whether this turn left the job a core of its own that its step's threads do not
        use (a lone job whose tuner chose fewer threads than the gate offered). False outside a turn."""
        with self._cond:
            return self._spare.get(job_id, False)


def thread_policy(threads: int) -> contextlib.AbstractContextManager[None]:
    """Run the body with ``torch.set_num_threads(threads)`` in this thread, then restore the old count
    (:func:`core.device.torch_threads`). Under OpenMP the count is per thread: a job's setting does not leak to
    the page's threads or other jobs."""
    from core.device import torch_threads

    return torch_threads(threads)


SLOT_QUANTUM_S = float(os.environ.get("CP_SLOT_QUANTUM", 20.0))
SLOTS = Slots(MAX_RUNNING, quantum_s=SLOT_QUANTUM_S)
# Cores a single training step never takes (CP_RESERVED_CORES, default 0: the gate's ThreadTuner measures whether
# a lone job's extra threads pay; none on a one-core machine).
RESERVED_CORES = min(_env_int("CP_RESERVED_CORES", 0, minimum=0), CORES - 1)
GATE = StepGate(STEP_CONCURRENCY, load=lambda: os.getloadavg()[0], reserve=RESERVED_CORES, tuner=ThreadTuner)
RATE_WINDOW_S = 5.0  # the status line's rate: steps over about the last five seconds of training
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

    def __init__(self, trainer: Any, *, target_steps: int | None = None, slots: Slots | None = None,
                 gate: StepGate | None = None):
        self.id = next(_ids)
        self.trainer = trainer
        self.target_steps = int(target_steps if target_steps is not None else trainer.cfg.steps)
        self.slots = slots or SLOTS
        self.gate = gate or GATE
        self.orphaned = False  # paused by itself because its page went away (see attach_owner)
        self._owner_alive: Callable[[], bool] | None = None
        self._lease_s: float | None = None
        self._grace_s = 10.0
        self._last_seen = time.monotonic()
        self._gone_since: float | None = None
        self._rate_marks: collections.deque[tuple[float, int]] = collections.deque()
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

    def rate(self, window: float = RATE_WINDOW_S) -> float | None:
        """Steps per second over about the last ``window`` seconds of this job's training (None: no data).

        Unlike the average since the start, this follows what the job gets now (e.g. when others join).
        """
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
        """Tie the job to a page session: it pauses itself (``orphaned``) and frees its slot when ``alive()``
        has been false for ``grace_s`` seconds, or when :meth:`touch` was not called for ``lease_s`` seconds.
        A new owner (the user who came back) attaches itself again and finds the job paused, not lost.
        """
        with self._lock:
            self._owner_alive = alive
            self._lease_s = lease_s
            self._grace_s = grace_s
            self._gone_since = None
            self._last_seen = time.monotonic()  # ``orphaned`` stays until play: the page says why it paused

    def touch(self) -> None:
        """The page saw this job (each rerun and live-panel refresh calls it)."""
        self._last_seen = time.monotonic()
        self._gone_since = None

    def owner_gone(self, grace_s: float | None = None) -> bool:
        """True when nobody is watching this job any more (see :meth:`attach_owner`); ``grace_s`` overrides
        the grace period (0: gone as soon as the session is)."""
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
        """True when the owning browser session is known to be gone (no grace period). Without a session
        check (``alive`` None) an expired lease counts as gone. Adoption by a reloaded page uses this: a
        job whose page is open but idle is never handed to another session."""
        alive = self._owner_alive
        if alive is None:
            return self._lease_s is not None and time.monotonic() - self._last_seen > self._lease_s
        try:
            return not alive()
        except Exception:  # noqa: BLE001 - unknown: keep it with its owner
            return False

    def _mark_rate(self) -> None:
        now = time.monotonic()
        marks = self._rate_marks
        marks.append((now, int(self.trainer.step_count)))
        while len(marks) > 2 and now - marks[1][0] > 2 * RATE_WINDOW_S:
            marks.popleft()

    # ---------------------------------------------------------------- commands (from the page)
    def play(self) -> None:
        """Train in the background until ``target_steps`` (queued first if every slot is busy)."""
        with self._lock:
            if self._state == FAILED:
                return
            if self.trainer.step_count >= self.target_steps:
                return
            self._want = "run"
            self.orphaned = False
            self._last_seen = time.monotonic()
            self._gone_since = None
            if self._thread is None:
                self._rate_marks.clear()
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
        self.gate.join(self.id)
        try:
            with self.gate.turn(self.id):
                self._safe_step()
        finally:
            self.gate.leave(self.id)
            self.slots.release(self.id)
        with self._lock:
            if self._state != FAILED:
                self.target_steps = max(self.target_steps, self.trainer.step_count)
                self._state = PAUSED
        return True

    def wait(self, timeout: float) -> bool:
        """Block until the thread is gone (a Pause the page draws at once, tests, shutdown). True if it ended
        in time."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self._thread is None

    # ---------------------------------------------------------------- the thread
    def _loop(self) -> None:
        holding = False
        held_since = 0.0
        try:
            while True:
                quantum = self.slots.quantum_s
                if holding and quantum is not None and self.slots.waiting \
                        and time.monotonic() - held_since >= quantum:
                    # Others are waiting and this job had its turn: back of the queue (it keeps its place
                    # in line fairly, FIFO, and no queued job starves behind a long run).
                    self.gate.leave(self.id)
                    self.slots.release(self.id)
                    holding = False
                    with self._lock:
                        if self._state == RUNNING:
                            self._state = QUEUED
                if self.owner_gone():
                    with self._lock:
                        if self._want == "run":
                            # Nobody watches: pause and free the slot; the job waits, paused, for its user.
                            log.info("Training job %s paused: its page went away", self.id)
                            self.orphaned = True
                            self._want = "pause"
                with self._lock:
                    want = self._want
                    done = self.trainer.step_count >= self.target_steps
                    if want != "run" or done or self._state == FAILED:
                        break
                if not holding:
                    holding = self.slots.acquire(
                        self.id, cancelled=lambda: self._want != "run" or self.owner_gone())
                    if not holding:
                        continue
                    held_since = time.monotonic()
                    self.gate.join(self.id)
                    with self._lock:
                        self._state = RUNNING
                        self._started_at = self._started_at or time.time()
                    self._mark_rate()
                work = self._work_done()
                with self.gate.turn(self.id, timed=lambda: self._work_done() == work):
                    if self._want != "run":
                        # Paused or stopped while waiting for this turn: the user asked for no more steps, and
                        # taking one would keep the page showing Pause for another step of a busy server.
                        break
                    ok = self._safe_step()
                    if ok and self.trainer.step_count == 1 and not self.trainer.evals:
                        # A first evaluation right away, so the accuracy charts start from the (almost)
                        # untrained model instead of waiting for eval_every steps.
                        ok = self._safe(self.trainer.evaluate)
                self._mark_rate()
                if not ok:
                    break
            # Finishing: a last evaluation so the charts end on the final model.
            with self._lock:
                finished = self._state != FAILED and self.trainer.step_count >= self.target_steps \
                    and self._want == "run"
            if finished and holding:
                evals = self.trainer.evals
                if not evals or evals[-1].step != self.trainer.step_count:
                    with self.gate.turn(self.id):
                        self._safe(self.trainer.evaluate)
        finally:
            if holding:
                self.gate.leave(self.id)
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

    def _work_done(self) -> tuple[int, int]:
        """(evaluations, snapshots) so far: a turn that added one was not a plain step, and its time is not one
        step's. Beside a Chromium tab the first evaluation at two threads took 4.2 s against 50-60 ms for a plain
        step; counted in the tuner's mean, it made the lone lesson train on one thread at 84 ms a step."""
        return len(getattr(self.trainer, "evals", ())), len(getattr(self.trainer, "snapshots", ()))

    def _safe_step(self) -> bool:
        # A lone job on one thread of two: its next batch's views, its evaluations and snapshots go to the spare
        # core meanwhile. Beside a Chromium tab on 2 cores one job alone went from 0.64x to 0.70-0.83x the bare
        # Trainer (RESULTS.md, stop 25).
        if hasattr(self.trainer, "views_ahead"):
            self.trainer.views_ahead = self.gate.spare_core(self.id)
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


def server_load(slots: Slots | None = None) -> tuple[int, int]:
    """(jobs training now, jobs training or queued) across all sessions, for "3 of 10 training"."""
    slots = slots or SLOTS
    running, waiting = slots.running, slots.waiting
    return running, running + waiting


# Seconds between a Train page's live redraws (status line, charts) while its job is active. Measured per
# headless Chromium tab (benchmarks/bench_browser_cost.py): the status line costs ~0.05 cores at one redraw a
# second, the five plotly charts ~0.3 cores at one redraw every 3 s (each redraw of a chart re-lays it out:
# ~0.2 s of the browser's CPU). A classroom of ten on one machine cannot pay that per tab, and there each job
# steps a few times a second at most, so its charts change little between redraws anyway. Every fragment run
# also costs the browser in proportion to the rest of the page (a status line beside 36 sidebar widgets: 1.6x
# the bare one), so a busy server's status line ticks every 4 s: ten tabs took 0.83-0.87 cores of Chromium's
# renderers instead of 1.00 at 2 s (benchmarks/bench_classroom.py --part browser --sessions 10).
REFRESH_ALONE = (1.0, 3.0)
REFRESH_BUSY = (4.0, 30.0)


def refresh_seconds(slots: Slots | None = None, cores: int | None = None) -> tuple[float, float]:
    """(status line, charts) redraw periods for a Train page now: :data:`REFRESH_BUSY` when more jobs train or
    wait than there are cores (a classroom), else :data:`REFRESH_ALONE`. Queued jobs count, so the choice does
    not flip each time a slot changes hands."""
    total = server_load(slots)[1]
    return REFRESH_BUSY if total > (CORES if cores is None else cores) else REFRESH_ALONE


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def live_jobs() -> list[TrainingJob]:
    """Jobs not yet garbage-collected, across all sessions (for the status line and tests)."""
    return list(_live)


def stop_all(timeout: float = 10.0) -> None:
    """Pause every job and wait for its thread (test teardown, server shutdown)."""
    for job in live_jobs():
        job.pause()
    for job in live_jobs():
        job.wait(timeout)
