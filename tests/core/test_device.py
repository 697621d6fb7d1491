"""core.device.small_blas: numpy's and scipy's BLAS on one thread inside, the libraries' own counts outside."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (scipy's OpenBLAS is one of the pools under test)
from threadpoolctl import threadpool_info, threadpool_limits

import core.device
import core.train
from core.device import small_blas
from core.train import Trainer, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def blas_threads() -> set[int]:
    """Thread counts of numpy's and scipy's BLAS (faiss, loaded later by other tests, brings its own: not ours)."""
    return {lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas" and ("numpy" in lib["filepath"] or "scipy" in lib["filepath"])}


@pytest.fixture
def two_blas_threads():
    """The tests run with OPENBLAS_NUM_THREADS=1; raise the pools to 2 so that a limit to 1 can be seen."""
    with threadpool_limits(2, user_api="blas"):
        if blas_threads() != {2}:
            pytest.skip(f"this BLAS cannot be given two threads ({blas_threads()})")
        yield


def test_small_blas_runs_blas_on_one_thread_and_restores_the_pools(two_blas_threads):
    with small_blas():
        assert blas_threads() == {1}
        np.linalg.eigh(np.eye(8))  # still works inside
    assert blas_threads() == {2}


def test_small_blas_can_be_switched_off(two_blas_threads, monkeypatch):
    monkeypatch.setattr(core.device, "SMALL_BLAS_THREADS", None)
    with small_blas():
        assert blas_threads() == {2}


# Run in a fresh interpreter whose pools start with two threads, as they do outside the tests (the suite starts them
# with one, and this OpenBLAS ignores a limit set from another thread once its pool was raised after start-up).
# Whether the last thread out gets the pools back to two is up to OpenBLAS (raising its count from a thread other
# than the main one sometimes keeps one), so only the limit is checked here; restoring is checked on the main thread.
_OVERLAP = """
import threading
import numpy, scipy.linalg
from threadpoolctl import threadpool_info
from core.device import small_blas

def blas():
    return sorted({lib["num_threads"] for lib in threadpool_info()
                   if lib["user_api"] == "blas" and ("numpy" in lib["filepath"] or "scipy" in lib["filepath"])})

assert blas() == [2], blas()
a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
seen = {}

def a():
    with small_blas():
        seen["a inside"] = blas()
        a_in.set()
        b_in.wait(10)
    a_out.set()

def b():
    a_in.wait(10)
    with small_blas():
        b_in.set()
        a_out.wait(10)
        seen["b after a left"] = blas()

threads = [threading.Thread(target=a), threading.Thread(target=b)]
for t in threads:
    t.start()
for t in threads:
    t.join(20)
print(seen)
"""


def test_overlapping_threads_keep_the_limit_until_the_last_one_leaves():
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _OVERLAP], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    seen = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert seen == {"a inside": [1], "b after a left": [1]}


def test_the_trainers_snapshots_and_evaluations_do_their_linear_algebra_on_one_blas_thread(two_blas_threads,
                                                                                          monkeypatch, shapes_data):
    seen: list[tuple[str, set[int]]] = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            seen.append((name, blas_threads()))
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(core.train, "live_map", spy("map", core.train.live_map))  # PCA / t-SNE + Procrustes
    monkeypatch.setattr(core.train, "effective_rank", spy("svd", core.train.effective_rank))
    cfg = TrainConfig(batch_size=16, steps=2, snapshot_every=1, eval_every=2, probe_size=32, knn_reference=64)
    trainer = Trainer(cfg, shapes_data(200, 16))
    trainer.run(2)  # its default callbacks take the snapshots and evaluations
    assert {name for name, _ in seen} == {"map", "svd"}
    assert all(threads == {1} for _, threads in seen), seen
    assert blas_threads() == {2}  # the pools get their threads back between the trainer's steps
