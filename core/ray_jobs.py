"""Training jobs as Ray actors: the runner's worker protocol, unchanged, on a Ray cluster (``CP_RAY_ADDRESS``).

When ``CP_RAY_ADDRESS`` is set (a cluster's address such as ``ray://head:10001``, or ``local`` for a Ray started
on 127.0.0.1 by the app), :class:`core.runner.Runner` starts each job's worker as a Ray actor instead of a local
process. The actor runs the very same loop, :func:`core.worker.worker_main`, on a connection-like adapter whose
``send`` / ``recv`` / ``poll`` are two in-actor queues. On the server, :class:`RayWorker` looks to the runner like
a local worker: a real pipe end (``conn``) it selects on, and a process-like object (``process``) with a
``sentinel`` that becomes readable when the actor is gone. Two pump threads carry the tuples across::

    runner --conn--> [commands thread] --actor.put(msg), in order--> inbox  --> worker_main
    runner <-conn--  [records thread]  <--actor.take(timeout): list-- outbox <-- worker_main

Why an adapter and not a new protocol: the runner's admission, orphan rule, mirror and fault handling stay one
piece of code for both back ends. A killed actor (``ray.kill``, its node lost, out of memory) ends the records
thread with ``RayActorError``: the messages already received are delivered first, then the runner sees the
worker gone and fails that one job with a sentence, as for a killed process.

Actors ask for :data:`ACTOR_CPUS` (``CP_RAY_CPUS``, default 0.5: on a 2-CPU node two whole-CPU actors leave Ray
no CPU for anything else and jobs hang) and :data:`ACTOR_GPUS` (``CP_RAY_GPUS``, default 0; a fraction lets
several jobs share a GPU). The worker's address-space cap is not applied inside an actor (Ray's worker maps its
object store; Ray's own memory monitor kills an actor that grows too large, reported like a kill). The actors
are owned by the web server's process: if it exits, Ray ends them, as worker processes end on their pipe's EOF.

Ray is imported only here, and this module only when ``CP_RAY_ADDRESS`` is set (or a test asks for it).
"""
from __future__ import annotations

import os
import queue
import threading
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

from core.worker import worker_main

ACTOR_CPUS = float(os.environ.get("CP_RAY_CPUS", 0.5))
ACTOR_GPUS = float(os.environ.get("CP_RAY_GPUS", 0.0))
ACTOR_THREADS = max(1, round(ACTOR_CPUS))  # torch threads in an actor: its CPU share (the server's cores say nothing)
TAKE_WAIT_S = 0.5  # one long poll for the worker's messages; shorter only costs more calls
_ENDED = ("__ended__",)  # the actor's worker loop returned (quit, stop, or a job that could not be built)


class _QueueConn:
    """The worker loop's end of the exchange, inside the actor: ``send`` / ``recv`` / ``poll`` on two queues."""

    def __init__(self, inbox: "queue.Queue[tuple]", outbox: "queue.Queue[tuple]"):
        self.inbox, self.outbox = inbox, outbox

    def send(self, msg: tuple) -> None:
        self.outbox.put(msg)

    def recv(self) -> tuple:
        return self.inbox.get()

    def poll(self) -> bool:
        return not self.inbox.empty()


class JobHost:
    """The actor: :func:`core.worker.worker_main` on a thread of its own, fed by :meth:`put`, read by :meth:`take`.

    Created with ``max_concurrency`` > 1, so ``put`` and a waiting ``take`` run beside the training thread."""

    def __init__(self) -> None:
        self.inbox: "queue.Queue[tuple]" = queue.Queue()
        self.outbox: "queue.Queue[tuple]" = queue.Queue()
        self.thread: threading.Thread | None = None

    def start(self, threads: int, warm: tuple[str, ...]) -> int:
        if self.thread is None:
            self.thread = threading.Thread(target=self._main, args=(threads, tuple(warm)), name="cp-train-worker",
                                           daemon=True)
            self.thread.start()
        return os.getpid()

    def _main(self, threads: int, warm: tuple[str, ...]) -> None:
        try:
            worker_main(_QueueConn(self.inbox, self.outbox), threads, 0, warm)
        finally:
            self.outbox.put(_ENDED)

    def put(self, msg: tuple) -> None:
        self.inbox.put(msg)

    def take(self, timeout: float) -> list[tuple]:
        """What the worker sent since the last call, in order; waits up to ``timeout`` for the first message."""
        try:
            out = [self.outbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self.outbox.get_nowait())
            except queue.Empty:
                return out


_remote_host: Any = None
_connect_lock = threading.Lock()


def connect(address: str) -> None:
    """``ray.init`` once per server: ``local`` starts a Ray on 127.0.0.1 (no dashboard); any other value is a
    cluster's address, whose workers get this repository's ``core`` package shipped with the job. Nothing when
    Ray is already initialised (a test, or the batch-embedding command in the same process)."""
    import ray

    with _connect_lock:
        if ray.is_initialized():
            return
        if address == "local":
            ray.init(address="local", include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1",
                     runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
        else:
            ray.init(address=address, log_to_driver=False,
                     runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]})


def _host_class() -> Any:
    global _remote_host
    if _remote_host is None:
        import ray

        _remote_host = ray.remote(JobHost)
    return _remote_host


class _ActorProcess:
    """What the runner reads of a worker process (``is_alive``, ``exitcode``, ``sentinel``, ``join``, ``kill``),
    for an actor. ``sentinel`` is a pipe end that turns readable (EOF) when the actor is gone."""

    def __init__(self, worker: "RayWorker"):
        self._worker = worker
        self.sentinel, self._dead_w = Pipe(duplex=False)
        self.exitcode: int | None = None
        self.ended = threading.Event()
        self.pid: int | None = None

    def is_alive(self) -> bool:
        return not self.ended.is_set()

    def join(self, timeout: float | None = None) -> None:
        self.ended.wait(timeout)

    def kill(self) -> None:
        self._worker._kill_actor()

    def mark_ended(self, exitcode: int) -> None:
        if self.ended.is_set():
            return
        self.exitcode = exitcode
        self.ended.set()
        self._dead_w.close()


class RayWorker:
    """A job's worker as a Ray actor, with the same face as ``core.runner.WorkerProcess`` (see the module docstring).

    ``ctx`` and ``memory_mb`` are accepted for that face and not used."""

    def __init__(self, ctx: Any, threads: int, warm: tuple[str, ...], memory_mb: int = 0):
        import ray

        self.conn, self._pump = Pipe()
        self._pipe_lock = threading.Lock()
        self.process = _ActorProcess(self)
        self.actor = _host_class().options(num_cpus=ACTOR_CPUS, num_gpus=ACTOR_GPUS,
                                           max_concurrency=4).remote()
        self.actor.start.remote(int(threads), tuple(warm))
        self.pid: int | None = None  # the actor's process id, once it said "ready"
        self.job = None
        self.ready = False
        self.kill_at: float | None = None
        self.expected_exit = False
        self.how_it_ended: str | None = None  # the end of the sentence a failed job shows
        self._ray = ray
        self._send_lock = threading.Lock()
        threading.Thread(target=self._commands, name="ray-job-commands", daemon=True).start()
        threading.Thread(target=self._records, name="ray-job-records", daemon=True).start()

    # ---------------------------------------------------------------- the face core.runner uses
    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def send(self, msg: tuple) -> bool:
        try:
            with self._send_lock:
                self.conn.send(msg)
            return True
        except (OSError, BrokenPipeError, EOFError):
            return False

    def close(self, grace_s: float = 0.7) -> None:
        import time

        self.expected_exit = True
        self.send(("quit",))
        self.kill_at = time.monotonic() + grace_s

    def close_pipe(self) -> None:
        """Close the server's end once, whichever thread gets there first (as ``WorkerProcess.close_pipe``)."""
        with self._pipe_lock:
            if not self.conn.closed:
                self.conn.close()

    def kill(self) -> None:
        self.expected_exit = True
        self._kill_actor()
        self.process.join(1.0)
        self.close_pipe()

    # ---------------------------------------------------------------- the pumps
    def _kill_actor(self) -> None:
        try:
            self._ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _commands(self) -> None:
        """Runner -> actor, one call at a time: a threaded actor does not keep the order of concurrent calls."""
        while self.process.is_alive():
            try:
                msg = self._pump.recv()
            except (EOFError, OSError):
                return
            try:
                self._ray.get(self.actor.put.remote(msg))
            except Exception:  # noqa: BLE001 - the actor is gone: the records thread reports it
                return

    def _records(self) -> None:
        """Actor -> runner: every message in order, then the end (the loop returned, or the actor died)."""
        code = 0
        try:
            while True:
                batch = self._ray.get(self.actor.take.remote(TAKE_WAIT_S))
                ended = [i for i, msg in enumerate(batch) if msg[0] == _ENDED[0]]
                self._deliver(batch[:ended[0]] if ended else batch)
                if ended:
                    break
        except Exception:  # noqa: BLE001 - RayActorError: killed, out of memory, its node lost
            code = 1
            self.how_it_ended = "was lost on the Ray cluster (its actor was killed, ran out of memory or lost its node)"
        if code == 0:
            self._kill_actor()  # its loop returned: free the actor's CPU share
        self.process.mark_ended(code)
        try:
            self._pump.close()
        except OSError:
            pass

    def _deliver(self, batch: list[tuple]) -> None:
        for msg in batch:
            if msg and msg[0] == "ready":
                self.pid = self.process.pid = int(msg[1])
            try:
                self._pump.send(msg)
            except (OSError, BrokenPipeError):
                return
