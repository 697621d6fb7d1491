"""The one training loop that the app's jobs, the tests and the benchmarks drive, and its standard callbacks.

minGPT's idea: the loop knows nothing about who watches. It calls ``trainer.step()`` and, after each step, every
callback's ``on_step(trainer, record)``; evaluation and snapshots are callbacks, not a second schedule kept by
whoever drives the loop. Any object with ``step()``, ``step_count`` and (for :class:`EvaluateEvery`)
``evaluate()`` / ``evals`` can be driven: :class:`core.train.Trainer`, :class:`core.lab.ToyTrainer`, the text
fine-tuner.

A callback is any object with some of these methods (all optional):

- ``on_run_start(trainer)``: before the first step of a :func:`run_loop` call;
- ``on_step(trainer, record)``: after each step, with the step's record;
- ``on_run_end(trainer, finished)``: after the loop; ``finished`` is True when every requested step ran (False
  when ``stop`` ended it early). Not called when a step or a callback raised: the exception propagates.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Sequence

Stop = threading.Event | Callable[[], bool] | None


def _stopper(stop: Stop) -> Callable[[], bool] | None:
    if stop is None:
        return None
    if isinstance(stop, threading.Event):
        return stop.is_set
    if not callable(stop):
        raise TypeError("stop must be a threading.Event, a callable returning bool, or None.")
    return stop


def _hooks(callbacks: Iterable[object], name: str) -> list[Callable]:
    return [hook for cb in callbacks if (hook := getattr(cb, name, None)) is not None]


def run_loop(trainer: Any, steps: int, callbacks: Sequence[object] = (), stop: Stop = None) -> list:
    """Call ``trainer.step()`` ``steps`` times, firing ``callbacks`` (see the module docstring); ``stop`` (an
    Event or a callable) is checked before each step and ends the run early. Returns the steps' records."""
    if steps < 0:
        raise ValueError(f"steps must be zero or more, got {steps}.")
    should_stop = _stopper(stop)
    callbacks = list(callbacks)
    for hook in _hooks(callbacks, "on_run_start"):
        hook(trainer)
    on_step = _hooks(callbacks, "on_step")
    done: list = []
    finished = True
    for _ in range(steps):
        if should_stop is not None and should_stop():
            finished = False
            break
        record = trainer.step()
        done.append(record)
        for hook in on_step:
            hook(trainer, record)
    for hook in _hooks(callbacks, "on_run_end"):
        hook(trainer, finished)
    return done


class EvaluateEvery:
    """Evaluate (``trainer.evaluate()``) every ``every`` steps (at steps that are multiples of it), and:

    - ``first``: right after step 1, so accuracy curves start from the (almost) untrained model instead of waiting
      ``every`` steps;
    - ``at_end``: at the end of a finished run that took at least one step, so charts end on the final model;
    - ``start``: before the first step when the trainer has no evaluation yet (the Loss Lab's toy, whose curves
      start at step 0).

    Never evaluates twice at one step. The evaluation's own checks (e.g. the Trainer's collapse stop) raise from
    here, inside the loop.
    """

    def __init__(self, every: int, *, first: bool = True, at_end: bool = True, start: bool = False) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number of steps, at least 1; got {every!r}.")
        self.every, self.first, self.at_end, self.start = every, first, at_end, start
        self._start_step = 0

    @staticmethod
    def _evaluated_now(trainer: Any) -> bool:
        evals = trainer.evals
        return bool(evals) and evals[-1].step == trainer.step_count

    def on_run_start(self, trainer: Any) -> None:
        self._start_step = trainer.step_count
        if self.start and not trainer.evals:
            trainer.evaluate()

    def on_step(self, trainer: Any, record: Any) -> None:
        step = trainer.step_count
        due = step % self.every == 0 or (self.first and step == 1)
        if due and not self._evaluated_now(trainer):
            trainer.evaluate()

    def on_run_end(self, trainer: Any, finished: bool) -> None:
        if self.at_end and finished and trainer.step_count > self._start_step and not self._evaluated_now(trainer):
            trainer.evaluate()

    def __repr__(self) -> str:
        return f"EvaluateEvery({self.every}, first={self.first}, at_end={self.at_end}, start={self.start})"


class SnapshotEvery:
    """Take a snapshot (``trainer.snapshot()``) before the first step of a fresh trainer (the untrained map the
    page starts from) and every ``every`` steps."""

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number of steps, at least 1; got {every!r}.")
        self.every = every

    def on_run_start(self, trainer: Any) -> None:
        if trainer.step_count == 0 and not trainer.snapshots:
            trainer.snapshot()

    def on_step(self, trainer: Any, record: Any) -> None:
        if trainer.step_count % self.every == 0 and not (
                trainer.snapshots and trainer.snapshots[-1].step == trainer.step_count):
            trainer.snapshot()

    def __repr__(self) -> str:
        return f"SnapshotEvery({self.every})"
