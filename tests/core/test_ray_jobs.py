"""core.ray_jobs: with a Ray address, each training job's worker is a Ray actor speaking the runner's protocol.

In Ray's local mode on 127.0.0.1 (2 CPUs, half a CPU per actor): two jobs, a real ``core.train.Trainer`` and the
fake trainer of ``tests.runner_fakes`` (whose "weights" are the sum of its steps, so the worker's weights are
told from the mirror's own), play to their targets through actors; the real job's history, evaluations and
weights equal what the process runner gives for the same seed; killing one actor with ``ray.kill`` fails that
job with a sentence while the other finishes, and Play goes on from the last state it sent.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from core import runner as R
from tests.runner_fakes import FakeKind, FakeTrainer

ray = pytest.importorskip("ray", reason="Ray is the optional scale-out extra (pip install -r requirements-scale.txt)")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # actors import torch on a shared 2-core machine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_runner():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", object_store_memory=100 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # the actors import core and tests.runner_fakes
    runner = R.Runner(capacity=4, quantum_s=None, threads=1, spare=False, warm=(), ray_address="local")
    try:
        yield runner
    finally:
        runner.shutdown()
        ray.shutdown()


def _until(cond, timeout=180.0):  # generous: the machine may be busy; a pass returns at once
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


def _real_trainer():
    from core.data import load_dataset
    from core.train import TrainConfig, Trainer

    ds = load_dataset("shapes", n=200, seed=0)
    cfg = TrainConfig(batch_size=16, steps=6, eval_every=3, snapshot_every=2, probe_size=40, knn_reference=60)
    return Trainer(cfg, ds, device="cpu")


def test_the_runner_never_imports_ray_without_an_address():
    import subprocess
    import sys

    code = ("import os, sys; os.environ.pop('CP_RAY_ADDRESS', None); from core import runner; "
            "runner.Runner(spare=False); print('ray' in sys.modules, 'core.ray_jobs' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_two_jobs_train_as_ray_actors_like_worker_processes(ray_runner):
    import torch

    real = R.Job(_real_trainer(), runner=ray_runner)
    fake = R.Job(FakeTrainer(steps=20, eval_every=4), runner=ray_runner, kind=FakeKind)
    real.play()
    fake.play()
    assert real.wait(300) and fake.wait(300)
    assert real.state == R.FINISHED, real.error
    assert fake.state == R.FINISHED and fake.steps_done == 20 and fake.needs_registration
    from core.ray_jobs import RayWorker

    assert isinstance(real._worker, RayWorker) and isinstance(fake._worker, RayWorker)
    # The fake: its records and its weights came from the actor (another process), step for step.
    assert [r.step for r in fake.trainer.history] == list(range(1, 21))
    assert [e.step for e in fake.trainer.evals] == [1, 4, 8, 12, 16, 20]
    assert fake.trainer.weight == sum(range(1, 21))
    assert fake.trainer.worker_pid not in (None, os.getpid())

    # The real trainer: the same run as the process runner gives for the same seed.
    local = R.Runner(capacity=1, quantum_s=None, threads=1, spare=False, warm=(), ray_address="")
    try:
        assert local._new_worker is R.WorkerProcess
        ref = R.Job(_real_trainer(), runner=local)
        ref.play()
        assert ref.wait(300) and ref.state == R.FINISHED, ref.error
    finally:
        local.shutdown()
    got, want = real.trainer, ref.trainer
    assert got.step_count == want.step_count == 6
    np.testing.assert_allclose([r.loss for r in got.history], [r.loss for r in want.history], rtol=1e-5)
    assert [e.step for e in got.evals] == [e.step for e in want.evals]
    for a, b in zip(got.evals, want.evals):
        assert a.knn == pytest.approx(b.knn, abs=1e-6)
    assert [s.step for s in got.snapshots] == [s.step for s in want.snapshots]
    untrained = _real_trainer().model.state_dict()
    moved = False
    for name, value in want.model.state_dict().items():
        torch.testing.assert_close(got.model.state_dict()[name], value, rtol=1e-4, atol=1e-5)
        moved = moved or not torch.equal(value, untrained[name])
    assert moved  # the weights that came back are trained ones, not the mirror's starting point


def test_a_killed_actor_fails_its_own_job_while_the_other_finishes(ray_runner):
    victim = R.Job(FakeTrainer(steps=100_000, delay=0.01), runner=ray_runner, kind=FakeKind)
    other = R.Job(FakeTrainer(steps=60, delay=0.01), runner=ray_runner, kind=FakeKind)
    victim.play()
    other.play()
    assert _until(lambda: victim.steps_done >= 20 and victim._state_bytes is not None)
    actor = victim._worker.actor
    ray.kill(actor)
    assert victim.wait(120)
    assert victim.state == R.FAILED and victim.crashed
    assert victim.error.startswith("The training process of this job was lost on the Ray cluster")
    assert victim.error.endswith("the last state it sent.") and victim.error.count(";") == 1
    assert other.wait(180) and other.state == R.FINISHED and other.steps_done == 60
    assert other.trainer.weight == sum(range(1, 61))
    # The mirror went back to the last state the actor sent, records included; Play goes on from there.
    kept = victim.steps_done
    assert kept > 0 and victim.trainer.weight == sum(range(1, kept + 1))
    assert victim.trainer.history[-1].step == kept
    victim.play()
    assert _until(lambda: victim.steps_done >= kept + 3)
    victim.pause()
    assert victim.wait(120) and victim.state == R.PAUSED
    assert victim.trainer.weight == sum(range(1, victim.steps_done + 1))
    victim.close()


def test_a_ray_worker_has_every_method_the_runner_calls_on_a_worker_process():
    """The runner treats both alike (duck typing): a method added to WorkerProcess and called by the scheduler
    must exist on RayWorker too (close_pipe once did not, and every Ray job's end raised)."""
    from core.ray_jobs import RayWorker
    from core.runner.process import WorkerProcess

    wanted = {name for name in vars(WorkerProcess) if not name.startswith("_")}
    assert wanted <= set(dir(RayWorker)), sorted(wanted - set(dir(RayWorker)))
