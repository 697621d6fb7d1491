"""The first lesson as the Train page builds it, and the warm-up every training benchmark pays outside its clock.
Shared by the suites (speed, quality, lessons, server) and scripts/make_explorer_demo.py."""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from benchmarks._common import ROOT

LESSON = ROOT / "assets" / "presets" / "simclr_shapes.json"


def lesson_config(preset: Path = LESSON):
    """(TrainConfig, dataset options) a Train-page preset (default: the Home page's first lesson) opens the Train
    page with: the page's defaults plus the preset's settings, as ``ui.presets.apply`` sets them, built into a
    config by the page's own ``ui.settings.train_config``."""
    from ui import settings as S

    values = S.defaults(S.PAGE_NAMESPACES["train"])
    values.update(S.validate(json.loads(Path(preset).read_text())["settings"], S.PAGE_NAMESPACES["train"])[0])
    data = {"n": values["train.n"], "size": values["train.image_size"], "seed": 0}
    return S.train_config(values), data


def warm_up() -> None:
    """The app warms up at start (ui.warmup); so do the benchmarks, so that the first recipe does not pay the
    process's first optimizer and first convolutions alone."""
    from core.data import load_dataset
    from core.train import Trainer, TrainConfig

    t_w = time.perf_counter()
    warm = Trainer(replace(TrainConfig(), batch_size=16, probe_size=32, knn_reference=64),
                   load_dataset("shapes", n=160, size=16, seed=0))
    warm.step()
    warm.evaluate()
    print(f"warm-up {time.perf_counter() - t_w:.1f} s (outside every clock)")


@contextmanager
def blas_pools(as_is: bool):
    """``as_is``: numpy's BLAS pools left alone in evaluations and snapshots (``core.device.SMALL_BLAS_THREADS``
    None) instead of the committed single BLAS thread there."""
    import core.device

    committed = core.device.SMALL_BLAS_THREADS
    core.device.SMALL_BLAS_THREADS = None if as_is else committed
    try:
        yield
    finally:
        core.device.SMALL_BLAS_THREADS = committed
