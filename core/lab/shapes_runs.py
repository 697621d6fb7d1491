"""The real-model runs behind the Loss Lab's presets 1 and 3-6: :class:`core.train.Trainer` on the built-in shapes,
measured every :data:`CHECK_EVERY` steps (held-out kNN per factor, uniformity, the hardest negative's share),
memoised by config so presets that share a run train it once per process.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import torch

from core.lab.anatomy import hardest_negative_share
from core.metrics import knn_accuracy, linear_probe_accuracy, uniformity

Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:  # noqa: ARG001 - a default callback
    return None


# The real-model presets train core.train.Trainer on the built-in shapes, small enough to wait for on a CPU:
# 1,500 images at 32 px (1,200 train / 300 held out), a half-width small CNN, batch 64, 150 steps.
PRESET_DATA = {"n": 1500, "size": 32, "seed": 0}
PRESET_STEPS = 150
CHECK_EVERY = 25  # steps between the measurements drawn as curves


@lru_cache(maxsize=1)
def _shapes():
    from core.data import load_dataset

    return load_dataset("shapes", **PRESET_DATA)


def shapes_config(**changes):
    """The presets' SimCLR recipe on the shapes (a half-width small CNN, batch 64), with ``changes`` applied."""
    from core.augment import PRESETS as AUGMENT
    from core.models import EncoderConfig
    from core.train import TrainConfig

    cfg = TrainConfig(encoder=EncoderConfig(width=16), batch_size=64, lr=3e-3, steps=PRESET_STEPS,
                      augment=AUGMENT["shapes"], eval_every=10**6, snapshot_every=10**6, probe_size=100,
                      knn_reference=800, seed=0)
    return replace(cfg, **changes)


def describe(cfg, *, temperatures: tuple[float, ...] = (), batches: tuple[int, ...] = ()) -> str:
    """The setup of a shapes run, read from its config (so the text cannot drift from what was trained);
    ``temperatures`` / ``batches`` name the values a preset swept instead of the config's one."""
    t = " / ".join(f"{v:g}" for v in temperatures or (cfg.temperature,))
    b = " / ".join(str(v) for v in batches or (cfg.batch_size,))
    return (f"{cfg.method} t={t}, shapes n={PRESET_DATA['n']} at {PRESET_DATA['size']} px, {cfg.encoder.arch} "
            f"width {cfg.encoder.width}, batch {b}, {cfg.steps} steps")


def _probe_views(trainer, n: int = 128):
    """Two fixed augmented views of held-out images in projection space, for uniformity and gradient shares."""
    from core.augment import augment

    gen = torch.Generator().manual_seed(123)
    x = trainer.heldout.images[:n]
    z1 = trainer.model.embed(augment(x, trainer.cfg.augment, gen), space="projection", normalize=True).cpu()
    z2 = trainer.model.embed(augment(x, trainer.cfg.augment, gen), space="projection", normalize=True).cpu()
    return z1, z2


def _measure(trainer) -> dict[str, float]:
    ref, test = trainer._knn_ref, trainer.heldout
    a = trainer.model.embed(ref.images, space="encoder").cpu().numpy()
    b = trainer.model.embed(test.images, space="encoder").cpu().numpy()
    z1, z2 = _probe_views(trainer)
    out = {f"knn_{f}": knn_accuracy(a, ref.labels[f], b, test.labels[f], k=10) for f in ("shape", "colour")}
    out["uniformity"] = uniformity(z1)
    out["hardest_share"] = hardest_negative_share(z1, z2, trainer.cfg.temperature)
    return out


@dataclass
class _Run:
    trainer: object
    steps: list[int]
    curves: dict[str, list[float]]
    seconds: float


_RUNS: dict[str, _Run] = {}
_RUNS_LOCK = threading.Lock()


def trained_run(cfg, progress: Progress, lo: float, hi: float, label: str) -> _Run:
    """Train ``cfg`` on the preset shapes, measuring every CHECK_EVERY steps; shared by presets 3-6.

    Runs are memoised by config (a handful of small CNNs), so presets that share a run (the "shapes" recipe at
    batch 64 is the baseline of presets 3 to 6) train it once per process.
    """
    import json

    from core.train import Trainer

    key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    with _RUNS_LOCK:
        if key in _RUNS:
            progress(hi, f"{label}: already trained")
            return _RUNS[key]
    t0 = time.perf_counter()
    trainer = Trainer(cfg, _shapes(), device="cpu")
    steps, curves = [], {}

    def check() -> None:
        steps.append(trainer.step_count)
        for k, v in _measure(trainer).items():
            curves.setdefault(k, []).append(float(v))

    class Check:  # a callback of Trainer.run: the curves every CHECK_EVERY steps and at the end
        def on_step(self, t, record) -> None:
            if record.step % CHECK_EVERY == 0 or record.step == cfg.steps:
                check()
            progress(lo + (hi - lo) * record.step / cfg.steps, f"{label}: step {record.step} of {cfg.steps}")

    check()
    trainer.run(cfg.steps, callbacks=[Check()])
    run = _Run(trainer, steps, curves, time.perf_counter() - t0)
    with _RUNS_LOCK:
        _RUNS[key] = run
        while len(_RUNS) > 8:
            _RUNS.pop(next(iter(_RUNS)))
    return run


def probe_accuracy(trainer, space: str, factor: str) -> float:
    """Held-out linear-probe accuracy of ``factor`` on the trainer's ``space`` ("encoder" or "projection")."""
    ref, test = trainer._knn_ref, trainer.heldout
    a = trainer.model.embed(ref.images, space=space).cpu().numpy()
    b = trainer.model.embed(test.images, space=space).cpu().numpy()
    return linear_probe_accuracy(a, ref.labels[factor], b, test.labels[factor])


def chance_level(factor: str) -> float:
    """The accuracy of guessing ``factor`` among its classes."""
    return 1.0 / len(_shapes().classes[factor])

