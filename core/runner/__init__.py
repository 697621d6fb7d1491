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
from core.runner.admission import CORES, MAX_RUNNING, SLOT_QUANTUM_S, WORKER_BUDGET_BYTES, Slots, ordinal
from core.runner.job import RATE_WINDOW_S, Job
from core.runner.process import STOP_GRACE_S, WORKER_MEMORY_MB, WorkerProcess, start_without_main
from core.runner.scheduler import SPARE_DELAY_S, WARM, Runner, default_runner, live_jobs, stop_all
from core.worker import FAILED, FINISHED, IDLE, PAUSED, QUEUED, RUNNING, STOPPED, Kind, kind_of, known_steps

__all__ = [
    "CORES", "MAX_RUNNING", "SLOT_QUANTUM_S", "WORKER_BUDGET_BYTES", "WORKER_MEMORY_MB", "SPARE_DELAY_S",
    "STOP_GRACE_S", "RATE_WINDOW_S", "WARM", "FAILED", "FINISHED", "IDLE", "PAUSED", "QUEUED", "RUNNING", "STOPPED",
    "Kind", "kind_of", "known_steps", "Slots", "ordinal", "Job", "Runner", "WorkerProcess", "default_runner",
    "live_jobs", "stop_all",
]
