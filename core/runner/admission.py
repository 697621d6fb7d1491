"""Admission of training jobs: how many may train at once (:data:`MAX_RUNNING`, from the cores and the memory, or
``CP_MAX_TRAINING``), and the first-come-first-served line of the rest (:class:`Slots`).

Pure Python: no torch, no processes.
"""
from __future__ import annotations

import os
import threading


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """The integer setting ``name`` from the environment, at least ``minimum``; ``default`` if unset or not a number."""
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


MAX_RUNNING = env_int("CP_MAX_TRAINING", _default_cap())
SLOT_QUANTUM_S = float(os.environ.get("CP_SLOT_QUANTUM", 20.0))


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
