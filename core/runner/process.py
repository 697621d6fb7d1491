"""The process side of the runner: a worker process and its end of the pipe (:class:`WorkerProcess`), started
with ``multiprocessing``'s spawn method without the parent's ``__main__`` (:func:`start_without_main`).

The worker itself (what runs inside the process) is :func:`core.worker.worker_main`.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from core.runner.admission import env_int
from core.worker import worker_main

if TYPE_CHECKING:
    from core.runner.job import Job

# Address space a worker may add to what it maps once warm (torch imported), in MB; 0: no cap. Past it an
# allocation fails inside the worker, which reports it as one sentence (a dying worker is reported too).
WORKER_MEMORY_MB = env_int("CP_WORKER_MEMORY_MB", 6144, minimum=0)
STOP_GRACE_S = 0.7  # Stop: the worker sends its weights and exits; past this it is killed


_main_lock = threading.Lock()


def start_without_main(process: Any) -> None:
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


class WorkerProcess:
    """A worker process and its end of the pipe, as the server sees them."""

    def __init__(self, ctx: Any, threads: int, warm: tuple[str, ...], memory_mb: int = WORKER_MEMORY_MB):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, threads, memory_mb, warm),
                                   name="cp-train-worker", daemon=True)
        start_without_main(self.process)
        child.close()
        self.pid = self.process.pid
        self.job: "weakref.ref[Job] | None" = None
        self.ready = False  # it said it finished its imports
        self.kill_at: float | None = None  # asked to end: killed if still alive then
        self.expected_exit = False
        self._pipe_lock = threading.Lock()

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

    def close_pipe(self) -> None:
        """Close the server's end of the pipe once, whichever thread gets there first (the runner's thread on
        the worker's exit, ``shutdown`` from another): two unsynchronised closes could close the same descriptor
        number twice, the second time someone else's file that reused it."""
        with self._pipe_lock:
            if not self.conn.closed:
                self.conn.close()

    def kill(self) -> None:
        self.expected_exit = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(1.0)
        self.close_pipe()
