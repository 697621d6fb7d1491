"""Trainers and kinds for tests of core.runner. They run inside worker processes, so they live in a module the
worker can import (``tests.runner_fakes``: the repo root is on the path), not in a test file.

``FakeTrainer`` follows the trainer contract the runner drives: ``step()``, ``run(steps, callbacks, stop)``,
``step_count``, ``cfg.steps``, append-only ``history`` / ``evals``. Its "weights" are one number, the sum of the
steps taken, so a test can tell whether the weights that came back are the worker's.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from types import SimpleNamespace

from core.worker import ImageKind, Kind, _bytes_tensors, _tensor_bytes


@dataclass
class Rec:
    step: int
    loss: float
    seconds: float = 0.0


class FakeTrainer:
    """Steps take ``delay`` seconds. ``fail_at``: step that raises; ``hog_at``: step that allocates ``hog_mb``;
    ``pid_file``: where the worker writes its process id (so a test can kill it)."""

    def __init__(self, steps: int = 5, delay: float = 0.01, fail_at: int | None = None, hog_at: int | None = None,
                 hog_mb: int = 0, eval_every: int = 2):
        self.cfg = SimpleNamespace(steps=steps, delay=delay, fail_at=fail_at, hog_at=hog_at, hog_mb=hog_mb,
                                   eval_every=eval_every)
        self.step_count = 0
        self.seconds = 0.0
        self.weight = 0.0  # sum of the steps taken: what "training" changes
        self.history: list[Rec] = []
        self.evals: list[Rec] = []
        self.pid = os.getpid()

    def step(self) -> Rec:
        from core.errors import TrainingDiverged

        time.sleep(self.cfg.delay)
        n = self.step_count + 1
        if self.cfg.fail_at is not None and n >= self.cfg.fail_at:
            raise TrainingDiverged(f"Training stopped at step {n}: the loss became nan. Try a smaller learning rate.")
        if self.cfg.hog_at is not None and n >= self.cfg.hog_at:
            import numpy as np

            hog = np.ones(self.cfg.hog_mb * 2**20 // 8)  # more than the worker may map
            hog.sum()
        self.step_count = n
        self.weight += n
        self.seconds += self.cfg.delay
        record = Rec(n, 1.0 / n, self.seconds)
        self.history.append(record)
        return record

    def evaluate(self) -> Rec:
        record = Rec(self.step_count, self.weight)
        self.evals.append(record)
        return record

    def run(self, steps=None, callbacks=None, stop=None) -> list[Rec]:
        """The runner's loop contract: evaluate after step 1, every ``eval_every`` steps and at a finished end."""
        target = steps if steps is not None else max(self.cfg.steps - self.step_count, 0)
        done = []
        for _ in range(target):
            if stop is not None and stop():
                break
            record = self.step()
            done.append(record)
            if self.step_count == 1 or self.step_count % self.cfg.eval_every == 0:
                self.evaluate()
            for cb in callbacks or []:
                getattr(cb, "on_step", lambda *_: None)(self, record)  # every hook is optional (core.loop)
        finished = len(done) == target
        if finished and (not self.evals or self.evals[-1].step != self.step_count):
            self.evaluate()
        for cb in callbacks or []:
            getattr(cb, "on_run_end", lambda *_: None)(self, finished)
        return done


class FakeKind(Kind):
    """FakeTrainer across the process boundary: settings one way, its weight as safetensors bytes back."""

    checkpoint_s = 0.2  # often, so a killed worker has sent a recent state

    @staticmethod
    def recipe(mirror, options):
        return {"cfg": vars(mirror.cfg), "step": mirror.step_count, "weight": mirror.weight}

    @staticmethod
    def build(recipe):
        trainer = FakeTrainer(**recipe["cfg"])
        trainer.step_count, trainer.weight = recipe["step"], recipe["weight"]
        return trainer

    @staticmethod
    def export(trainer):
        import torch

        return _tensor_bytes({"weight": torch.tensor([trainer.weight], dtype=torch.float64),
                              "step": torch.tensor([trainer.step_count]), "pid": torch.tensor([os.getpid()])})

    @staticmethod
    def apply(mirror, data, options):
        tensors = _bytes_tensors(data)
        mirror.weight = float(tensors["weight"][0])
        mirror.worker_pid = int(tensors["pid"][0])
        return mirror


DIVERGED = "Training stopped at step 1: the loss became nan. The temperature 0.001 is very low; try 0.1–0.5."


class DivergingImageKind(ImageKind):
    """A real core.train.Trainer whose every step raises TrainingDiverged(:data:`DIVERGED`) in the worker."""

    @staticmethod
    def build(recipe):
        from core.errors import TrainingDiverged

        trainer = ImageKind.build(recipe)

        def diverge(*args, **kwargs):
            raise TrainingDiverged(DIVERGED)

        trainer.step = diverge
        return trainer
