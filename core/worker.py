"""What runs inside a training worker process (``core.runner`` starts them), and how trainers travel there.

A :class:`Kind` says how one kind of trainer crosses the process boundary: as plain data (a recipe) one way, as
safetensors bytes the other. :func:`worker_main` is the process: it warms up (imports torch and the trainers),
waits for one job, then drives the one loop ``trainer.run(n, callbacks=..., stop=<a command is waiting>)`` on
command, sending step records, evaluations, snapshots and weights back (protocol: ``core.runner``).

No streamlit here, and no torch until a worker or a kind needs it.
"""
from __future__ import annotations

import inspect
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

# Job states (core.runner shows them to pages; the worker reports some of them).
IDLE, QUEUED, RUNNING, PAUSED, FINISHED, STOPPED, FAILED = (
    "idle", "queued", "running", "paused", "finished", "stopped", "failed")
CHECKPOINT_S = float(os.environ.get("CP_CHECKPOINT_S", 30.0))  # full state every so often, for a crash
RECORD_EVERY_S = 0.1  # the worker batches step records this long (evaluations and snapshots go at once)


# ============================================================================================== kinds
def known_steps(trainer: Any) -> dict[str, int]:
    """The last step of each record list the mirror holds: the worker sends only what comes after."""
    out = {}
    for name in ("history", "evals", "snapshots"):
        items = getattr(trainer, name, None) or []
        out[name] = int(items[-1].step) if items else -1
    return out


def _tensor_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, metadata=metadata)


def torch_tensor(values: list) -> Any:
    import torch

    return torch.tensor(values)


def _bytes_tensors(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


class Kind:
    """How one kind of trainer travels between the server and a worker (see the module docstring).

    ``recipe`` (server) describes the mirror as plain data; ``build`` (worker) makes the trainer from it;
    ``export`` (worker) writes its state as safetensors bytes; ``apply`` (server) puts such bytes into the mirror
    and returns the mirror to use from then on. ``live_s``: while running, weights go back this often (None:
    only when the job leaves running); ``checkpoint_s``: full state this often, to restart after a crash.
    """

    live_s: float | None = None
    checkpoint_s: float | None = None

    @staticmethod
    def recipe(mirror: Any, options: dict) -> dict:
        raise NotImplementedError

    @staticmethod
    def build(recipe: dict) -> Any:
        raise NotImplementedError

    @staticmethod
    def export(trainer: Any) -> bytes:
        raise NotImplementedError

    @staticmethod
    def apply(mirror: Any, data: bytes, options: dict) -> Any:
        raise NotImplementedError


def _dataset_fields(dataset: Any) -> dict:
    """An ImageSet as plain arrays and lists (what ``ImageSet(**fields)`` rebuilds)."""
    from dataclasses import fields

    out = {f.name: getattr(dataset, f.name) for f in fields(dataset)}
    out["images"] = dataset.images.numpy()
    return out


class ImageKind(Kind):
    """``core.train.Trainer``: the mirror's whole state travels as a :meth:`Trainer.save` checkpoint."""

    checkpoint_s = CHECKPOINT_S

    @staticmethod
    def _save_bytes(trainer: Any) -> bytes:
        with tempfile.TemporaryDirectory() as d:
            return Path(trainer.save(Path(d) / "state.safetensors")).read_bytes()

    @staticmethod
    def _load(data: bytes, dataset: Any, device: Any = None) -> Any:
        from core.train import Trainer

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "state.safetensors"
            path.write_bytes(data)
            return Trainer.load(path, dataset, device=device)

    @staticmethod
    def recipe(mirror: Any, options: dict) -> dict:
        return {"state": ImageKind._save_bytes(mirror), "dataset": _dataset_fields(mirror.dataset)}

    @staticmethod
    def build(recipe: dict) -> Any:
        from core.data import ImageSet

        return ImageKind._load(recipe["state"], ImageSet(**recipe["dataset"]))

    @staticmethod
    def export(trainer: Any) -> bytes:
        return ImageKind._save_bytes(trainer)

    @staticmethod
    def apply(mirror: Any, data: bytes, options: dict) -> Any:
        new = ImageKind._load(data, mirror.dataset, device=mirror.device)
        step = new.step_count
        # The mirror's records hold everything the page drew (full similarity histograms, every snapshot); keep
        # them up to the weights' step.
        new.history = [r for r in mirror.history if r.step <= step] or new.history
        new.evals = [e for e in mirror.evals if e.step <= step] or new.evals
        new.snapshots = [s for s in mirror.snapshots if s.step <= step] or new.snapshots
        return new


class ToyKind(Kind):
    """``core.lab.ToyTrainer``: its model's weights go back several times a second, so the page's points move."""

    live_s = 0.2

    @staticmethod
    def _modules(trainer: Any) -> dict:
        mods = {"model": trainer.model}
        if getattr(trainer, "key_model", None) is not None:
            mods["key"] = trainer.key_model
        return mods

    @staticmethod
    def recipe(mirror: Any, options: dict) -> dict:
        from dataclasses import asdict

        return {"cfg": asdict(mirror.cfg), "state": ToyKind.export(mirror) if mirror.step_count else None,
                "step": mirror.step_count, "seconds": mirror.seconds}

    @staticmethod
    def build(recipe: dict) -> Any:
        from core.lab import ToyConfig, ToyTrainer

        trainer = ToyTrainer(ToyConfig(**recipe["cfg"]))
        if recipe["state"] is not None:  # a restart (after its page left, or a crash): from the last weights
            ToyKind.apply(trainer, recipe["state"], {})
            trainer.step_count, trainer.seconds = recipe["step"], recipe["seconds"]
        return trainer

    @staticmethod
    def export(trainer: Any) -> bytes:
        tensors = {f"{p}.{k}": v for p, m in ToyKind._modules(trainer).items() for k, v in m.state_dict().items()}
        queue = getattr(trainer, "queue", None)
        if queue is not None:  # InfoNCE's negatives: the page's batch anatomy draws them
            tensors["queue.buffer"] = queue._buffer
            tensors["queue.position"] = torch_tensor([queue._next, queue._count])
        return _tensor_bytes(tensors)

    @staticmethod
    def apply(mirror: Any, data: bytes, options: dict) -> Any:
        tensors = _bytes_tensors(data)
        with mirror._lock:
            for prefix, module in ToyKind._modules(mirror).items():
                part = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
                if part:
                    module.load_state_dict(part)
            queue = getattr(mirror, "queue", None)
            if queue is not None and "queue.buffer" in tensors:
                queue._buffer.copy_(tensors["queue.buffer"])
                queue._next, queue._count = (int(v) for v in tensors["queue.position"])
        return mirror


class TextKind(Kind):
    """``core.text.TextFineTuner``: the worker loads the sentence model itself (``options["text_spec"]``: the
    loader's spec, "" for the bundled model; None: a session's own model, whose weights travel); only the trained
    layers come back."""

    @staticmethod
    def recipe(mirror: Any, options: dict) -> dict:
        from dataclasses import asdict

        spec = options.get("text_spec")
        base = None
        if spec is None:  # a model only this session holds (fine-tuned earlier): its weights, on the bundled base
            base = _tensor_bytes(dict(mirror.model.state_dict()))
        return {
            "spec": spec, "base": base, "cfg": asdict(mirror.cfg), "name": mirror.name,
            "train": [asdict(p) for p in mirror.train_pairs], "heldout": [asdict(p) for p in mirror.heldout],
            "passages": list(mirror.passages), "topics": list(mirror._passage_topics),
            "state": TextKind.export(mirror) if mirror.step_count else None, "step": mirror.step_count,
        }

    @staticmethod
    def build(recipe: dict) -> Any:
        from core import text as T

        model = T.load_text_model(recipe["spec"] or None)
        if recipe["base"] is not None:
            model.load_state_dict(_bytes_tensors(recipe["base"]))
        cfg = dict(recipe["cfg"])
        cfg["ks"] = tuple(cfg["ks"])
        tuner = T.TextFineTuner(T.FineTuneConfig(**cfg), [T.TextPair(**p) for p in recipe["train"]], model,
                                passages=recipe["passages"], passage_topics=recipe["topics"],
                                heldout=[T.TextPair(**p) for p in recipe["heldout"]], name=recipe["name"])
        if recipe["state"] is not None:
            TextKind.apply(tuner, recipe["state"], {})
            tuner.step_count = recipe["step"]
        return tuner

    @staticmethod
    def export(trainer: Any) -> bytes:
        return _tensor_bytes({k: p for k, p in trainer.model.named_parameters() if p.requires_grad})

    @staticmethod
    def apply(mirror: Any, data: bytes, options: dict) -> Any:
        import torch

        tensors = _bytes_tensors(data)
        named = dict(mirror.model.named_parameters())
        with torch.no_grad():
            for k, v in tensors.items():
                named[k].copy_(v)
        return mirror


def kind_of(trainer: Any) -> type[Kind]:
    """The :class:`Kind` for a trainer (by its class; a trainer may name its own with ``runner_kind``)."""
    own = getattr(trainer, "runner_kind", None)
    if own is not None:
        return own
    name = type(trainer).__name__
    return {"Trainer": ImageKind, "ToyTrainer": ToyKind, "TextFineTuner": TextKind}.get(name, ImageKind)


# ============================================================================================== the worker
def _memory_cap(extra_mb: int) -> None:
    """Let this process map at most ``extra_mb`` MB more than it does now (Linux; elsewhere nothing)."""
    if extra_mb <= 0:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + extra_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass


def _error_sentence(err: BaseException, memory_mb: int) -> str:
    from core.errors import PlaygroundError

    text = str(err)
    if isinstance(err, PlaygroundError):
        return text
    if isinstance(err, MemoryError) or "can't allocate memory" in text or "not enough memory" in text.lower():
        return (f"Training stopped: this run needed more memory than one training job may use on this server "
                f"({memory_mb:,} MB). Try a smaller batch, smaller images or fewer images, then Reset.")
    return (f"Training stopped because of an unexpected error ({type(err).__name__}: {text[:300]}). "
            "Press Reset to start again.")


class _Forward:
    """The worker's callback: sends new step records, evaluations and snapshots (and weights, per its kind)."""

    def __init__(self, conn: Any, trainer: Any, kind: type[Kind], known: dict[str, int]):
        self.conn, self.kind = conn, kind
        self.sent = {}
        for name, last in known.items():
            items = getattr(trainer, name, None) or []
            self.sent[name] = next((i for i, r in enumerate(items) if r.step > last), len(items))
        self.last_flush = self.last_live = self.last_checkpoint = time.monotonic()

    def _new(self, trainer: Any, name: str) -> list:
        items = getattr(trainer, name, None) or []
        new = list(items[self.sent[name]:])
        self.sent[name] = len(items)
        return new

    def flush(self, trainer: Any, force: bool = False) -> None:
        now = time.monotonic()
        grew = any(len(getattr(trainer, n, None) or []) > self.sent[n] for n in ("evals", "snapshots"))
        if force or grew or now - self.last_flush >= RECORD_EVERY_S:
            self.last_flush = now
            self.conn.send(("records", {
                "history": self._new(trainer, "history"), "evals": self._new(trainer, "evals"),
                "snapshots": self._new(trainer, "snapshots"), "step": int(trainer.step_count),
                "seconds": float(getattr(trainer, "seconds", 0.0) or 0.0)}))
        if self.kind.live_s is not None and (force or now - self.last_live >= self.kind.live_s):
            self.last_live = now
            self.conn.send(("weights", self.kind.export(trainer), int(trainer.step_count), False))
        elif self.kind.checkpoint_s is not None and now - self.last_checkpoint >= self.kind.checkpoint_s:
            self.last_checkpoint = now
            self.conn.send(("weights", self.kind.export(trainer), int(trainer.step_count), False))

    def on_step(self, trainer: Any, record: Any) -> None:
        self.flush(trainer)


def _drive(trainer: Any, steps: int, callbacks: list, stop: Callable[[], bool]) -> None:
    """``trainer.run(steps, callbacks=..., stop=...)``: the one loop. Trainers whose ``run`` takes no callbacks
    (before core.train grew them) are stepped here the same way."""
    run = getattr(trainer, "run", None)
    if run is not None and "callbacks" in inspect.signature(run).parameters:
        run(steps, callbacks=callbacks, stop=stop)
        return
    done = 0
    while done < steps and not stop():
        record = trainer.step()
        done += 1
        for cb in callbacks:
            getattr(cb, "on_step", lambda *_: None)(trainer, record)
    for cb in callbacks:
        getattr(cb, "on_run_end", lambda *_: None)(trainer, done == steps)


def worker_main(conn: Any, threads: int, memory_mb: int, warm: tuple[str, ...]) -> None:
    """A worker process: warm up, wait for one job, train it on command until told to quit."""
    import importlib

    import torch

    torch.set_num_threads(max(1, threads))
    for name in warm:  # pay the imports before a job arrives (a spare worker waits warm)
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the job's own import reports it
            pass
    if warm:  # the process's first torch.optim optimizer imports torch._dynamo (~2.5 s): not on Play's path
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-3)
    _memory_cap(memory_mb)
    try:
        conn.send(("ready", os.getpid()))
        msg = conn.recv()
        if msg[0] != "job":
            return
        _, kind, recipe, threads = msg
        torch.set_num_threads(max(1, threads))
        try:
            trainer = kind.build(recipe)
            known = recipe.get("known") or known_steps(trainer)
            forward = _Forward(conn, trainer, kind, known)
            # First: a step's record leaves before that step's evaluation runs (the chart's first point is not held
            # back by the evaluation after step 1); what the others add goes with the next flush.
            callbacks = [forward, *(getattr(trainer, "default_callbacks", lambda: [])())]
        except BaseException as err:  # noqa: BLE001 - one sentence on the page, then this worker ends
            conn.send(("error", _error_sentence(err, memory_mb)))
            return
        _serve(conn, trainer, kind, forward, callbacks, memory_mb)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # the server went away: so does this worker


def _serve(conn: Any, trainer: Any, kind: type[Kind], forward: _Forward, callbacks: list, memory_mb: int) -> None:
    import torch

    target, want = int(trainer.step_count), "pause"

    def send_weights(final: bool) -> None:
        conn.send(("weights", kind.export(trainer), int(trainer.step_count), final))

    while True:
        if want == "run":
            if trainer.step_count < target:
                try:
                    _drive(trainer, target - trainer.step_count, callbacks, conn.poll)
                    forward.flush(trainer, force=True)  # what the run's end added (its last evaluation)
                except BaseException as err:  # noqa: BLE001
                    forward.flush(trainer, force=True)
                    conn.send(("error", _error_sentence(err, memory_mb)))
                    want = "failed"
                    continue
            if trainer.step_count >= target:
                send_weights(True)
                conn.send(("state", FINISHED))
                want = "pause"
                continue
        msg = conn.recv()
        what = msg[0]
        if what == "quit":
            return
        if want == "failed":
            if what == "weights":
                send_weights(False)
            continue
        if what == "play":
            target, want = int(msg[1]), "run"
            conn.send(("state", RUNNING))
        elif what == "target":
            target = int(msg[1])
        elif what == "threads":
            torch.set_num_threads(max(1, int(msg[1])))
        elif what == "weights":
            send_weights(False)
        elif what == "pause":
            want = "pause"
            if msg[1]:
                send_weights(True)
            conn.send(("state", PAUSED))
        elif what == "step":
            try:
                _drive(trainer, 1, callbacks, lambda: False)
                forward.flush(trainer, force=True)
            except BaseException as err:  # noqa: BLE001
                forward.flush(trainer, force=True)
                conn.send(("error", _error_sentence(err, memory_mb)))
                want = "failed"
                continue
            target = max(target, trainer.step_count)
            send_weights(True)
            conn.send(("state", PAUSED))
        elif what == "stop":
            send_weights(True)
            conn.send(("state", STOPPED))
            return
