"""core.runner: each training job in its own worker process.

The protocol (commands one way; records, states and safetensors weights the other) with a fake trainer whose
"weights" are the sum of the steps it took, so a test can tell the worker's weights from the mirror's own;
FIFO admission, the orphan rule, faults (SIGKILL, a step that raises, a memory cap) that fail one job while
another finishes; and the one loop: a job through the runner trains the same run as ``Trainer.run``.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from core import runner as R
from tests.runner_fakes import FakeKind, FakeTrainer

pytestmark = pytest.mark.slow  # worker processes import torch


@pytest.fixture(scope="module")
def pool():
    """One runner for the module (its spare worker is reused across tests); every job uses one thread."""
    r = R.Runner(capacity=4, quantum_s=None, threads=1, warm=())
    r.prewarm()
    yield r
    r.shutdown()


def _job(runner, steps=5, **kw) -> R.Job:
    return R.Job(FakeTrainer(steps=steps, **kw), runner=runner, kind=FakeKind)


def _until(cond, timeout=120.0):  # generous: the machine may be busy; a pass returns at once
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie (exited, not reaped yet) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


# ------------------------------------------------------------------------------------------ admission, no processes
def test_slots_admit_first_come_first_served_and_say_the_place():
    slots = R.Slots(2)
    for job_id in (1, 2, 3, 4):
        slots.request(job_id)
    assert slots.admit() == [1, 2]
    assert (slots.running, slots.waiting) == (2, 2)
    assert slots.ahead_of(3) == 0 and slots.ahead_of(4) == 1 and slots.ahead_of(1) is None
    assert not slots.try_acquire(5)  # others queue first
    slots.release(1)
    assert slots.admit() == [3]
    slots.requeue(2)  # its quantum is over: back of the line
    assert slots.admit() == [4] and slots.ahead_of(2) == 0
    with pytest.raises(ValueError):
        R.Slots(0)


def test_ordinal():
    assert [R.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]


# ------------------------------------------------------------------------------------------ the protocol
def test_play_trains_in_another_process_and_the_weights_come_back(pool):
    job = _job(pool, steps=7, eval_every=3)
    assert job.state == R.IDLE
    job.play()
    assert job.wait(120)
    tr = job.trainer
    assert job.state == R.FINISHED and job.steps_done == 7 and job.needs_registration
    assert [r.step for r in tr.history] == list(range(1, 8))
    assert [e.step for e in tr.evals] == [1, 3, 6, 7]  # after step 1, every 3, at the end: the worker's loop
    assert tr.weight == sum(range(1, 8))  # the worker's weights, as safetensors bytes
    assert tr.worker_pid != os.getpid()
    job.mark_registered()
    assert not job.needs_registration


def test_pause_holds_play_resumes_step_and_extend(pool):
    job = _job(pool, steps=100_000, delay=0.01)
    job.play()
    assert _until(lambda: job.steps_done >= 3)
    job.pause()
    assert job.wait(60)
    held = job.steps_done
    assert job.state == R.PAUSED and job.slots.running == 0
    assert job.trainer.weight == sum(range(1, held + 1))  # weights of exactly the step it paused at
    time.sleep(0.3)
    assert job.steps_done == held
    job.play()
    assert _until(lambda: job.steps_done > held)
    job.pause()
    assert job.wait(60)
    at = job.steps_done
    assert job.step_now() and job.steps_done == at + 1 and job.state == R.PAUSED
    assert job.trainer.weight == sum(range(1, at + 2))
    job.target_steps = job.steps_done  # then extend: play trains exactly 2 more
    job.extend(2)
    job.play()
    assert job.wait(60)
    assert job.state == R.FINISHED and job.steps_done == at + 3
    job.close()


def test_stop_ends_the_worker_and_keeps_its_weights(pool):
    job = _job(pool, steps=100_000, delay=0.01)
    job.play()
    assert _until(lambda: job.steps_done >= 2)
    pid = job.pid
    job.stop()
    assert job.wait(60)
    assert job.state == R.STOPPED and job.needs_registration
    assert job.trainer.weight == sum(range(1, job.steps_done + 1))
    assert _until(lambda: _gone(pid), 30)


# ------------------------------------------------------------------------------------------ faults
def test_a_killed_worker_fails_its_job_while_another_finishes_and_play_restarts_it(pool):
    victim = _job(pool, steps=100_000, delay=0.01)
    other = _job(pool, steps=40, delay=0.01)
    victim.play()
    other.play()
    assert _until(lambda: victim.steps_done >= 30 and victim._weights_step >= 0 and victim._state_bytes is not None)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(60)
    assert victim.state == R.FAILED and victim.crashed
    assert "was killed (signal 9)" in victim.error and "Press Play" in victim.error
    assert other.wait(120) and other.state == R.FINISHED and other.steps_done == 40  # untouched
    # The mirror went back to the last state the worker sent, records included: nothing past its weights.
    kept = victim.steps_done
    assert kept > 0 and victim.trainer.weight == sum(range(1, kept + 1))
    assert victim.trainer.history[-1].step == kept
    victim.play()  # a fresh worker from that state
    assert _until(lambda: victim.steps_done >= kept + 3)
    victim.pause()
    assert victim.wait(60) and victim.state == R.PAUSED
    assert victim.trainer.weight == sum(range(1, victim.steps_done + 1))
    victim.close()


def test_a_step_that_raises_fails_only_its_own_job(pool):
    bad = _job(pool, steps=10, fail_at=3)
    good = _job(pool, steps=10)
    bad.play()
    good.play()
    assert bad.wait(120) and good.wait(120)
    assert bad.state == R.FAILED and not bad.crashed and bad.steps_done == 2
    assert bad.error == "Training stopped at step 3: the loss became nan. Try a smaller learning rate."
    assert good.state == R.FINISHED and good.steps_done == 10
    bad.play()  # a training error is not restarted by play: the page offers Reset
    assert bad.state == R.FAILED


def test_a_worker_over_its_memory_cap_fails_with_a_sentence():
    capped = R.Runner(capacity=2, quantum_s=None, threads=1, spare=False, memory_mb=256, warm=())
    try:
        job = R.Job(FakeTrainer(steps=10, hog_at=3, hog_mb=2048), runner=capped, kind=FakeKind)
        job.play()
        assert job.wait(120)
        assert job.state == R.FAILED and job.steps_done == 2
        assert "more memory than one training job may use" in job.error and "256 MB" in job.error
    finally:
        capped.shutdown()


# ------------------------------------------------------------------------------------------ admission and owners
def test_jobs_beyond_the_cap_queue_in_order_and_start_when_a_slot_frees():
    small = R.Runner(capacity=1, quantum_s=None, threads=1, warm=())
    try:
        first, second, third = (R.Job(FakeTrainer(steps=100_000, delay=0.01), runner=small, kind=FakeKind)
                                for _ in range(3))
        first.play()
        assert _until(lambda: first.steps_done >= 1)
        second.play()
        third.play()
        assert second.state == third.state == R.QUEUED
        assert (second.queue_position, third.queue_position) == (0, 1)
        third.pause()  # leaving the queue
        assert third.state == R.PAUSED and third.queue_position is None
        first.pause()
        assert first.wait(60)
        assert _until(lambda: second.steps_done >= 1)  # the slot went to the next in line
        assert second.state == R.RUNNING and small.slots.running == 1
        second.pause()
        assert second.wait(60)
    finally:
        small.shutdown()


def test_with_more_jobs_than_slots_the_slot_rotates_and_every_job_progresses():
    small = R.Runner(capacity=1, quantum_s=0.5, threads=1, warm=())
    try:
        jobs = [R.Job(FakeTrainer(steps=100_000, delay=0.01), runner=small, kind=FakeKind) for _ in range(2)]
        for job in jobs:
            job.play()
        assert _until(lambda: all(j.steps_done >= 3 for j in jobs), 180)
        for job in jobs:
            job.pause()
        assert all(j.wait(60) for j in jobs)
        assert all(j.trainer.weight == sum(range(1, j.steps_done + 1)) for j in jobs)
    finally:
        small.shutdown()


def test_a_job_whose_page_went_away_pauses_frees_its_slot_and_process_and_goes_on_later(pool):
    job = _job(pool, steps=100_000, delay=0.01)
    job.play()
    assert _until(lambda: job.steps_done >= 2)
    pid = job.pid
    job.attach_owner(lambda: False, lease_s=None, grace_s=0.0)  # its browser session is gone
    assert job.wait(60)
    assert job.state == R.PAUSED and job.orphaned and not job.slots.holds(job.id)
    assert _until(lambda: _gone(pid), 30) and job.pid is None
    kept = job.steps_done
    assert job.trainer.weight == sum(range(1, kept + 1))
    job.attach_owner(lambda: True, lease_s=None)  # its user came back
    job.play()
    assert not job.orphaned
    assert _until(lambda: job.steps_done > kept + 1)
    job.pause()
    assert job.wait(60)
    assert job.trainer.weight == sum(range(1, job.steps_done + 1))  # went on from where it was
    job.close()


def test_a_job_nobody_polls_pauses_after_its_lease(pool):
    job = _job(pool, steps=100_000, delay=0.01)
    job.attach_owner(None, lease_s=0.5)
    job.play()
    assert job.wait(60)
    assert job.state == R.PAUSED and job.orphaned


# ------------------------------------------------------------------------------------------ one loop
def test_a_job_through_the_runner_trains_the_same_run_as_trainer_run():
    """The app's job (a mirror in this process, a worker training) and Trainer.run in this process: the same
    losses, evaluations and weights for the same seed."""
    import torch

    from core.data import load_dataset
    from core.train import TrainConfig, Trainer

    ds = load_dataset("shapes", n=200, seed=0)
    cfg = TrainConfig(batch_size=16, steps=6, eval_every=3, snapshot_every=2, probe_size=40, knn_reference=60)
    runner = R.Runner(capacity=1, quantum_s=None, threads=1, spare=False)
    try:
        job = R.Job(Trainer(cfg, ds, device="cpu"), runner=runner)
        job.play()
        assert job.wait(300) and job.state == R.FINISHED, job.error
    finally:
        runner.shutdown()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bare = Trainer(cfg, ds, device="cpu")
        bare.run()
    finally:
        torch.set_num_threads(threads)
    got = job.trainer
    np.testing.assert_allclose([r.loss for r in got.history], [r.loss for r in bare.history], rtol=1e-5)
    assert [e.step for e in got.evals] == [e.step for e in bare.evals]
    for a, b in zip(got.evals, bare.evals):
        assert a.knn == pytest.approx(b.knn, abs=1e-6)
    assert [s.step for s in got.snapshots] == [s.step for s in bare.snapshots]
    for name, value in bare.model.state_dict().items():
        torch.testing.assert_close(got.model.state_dict()[name], value, rtol=1e-4, atol=1e-5)


def test_the_pipe_is_closed_once_when_two_threads_end_a_worker_at_once():
    """shutdown() kills a worker while the runner's thread, seeing it exit, closes the same pipe: two unguarded
    closes closed one descriptor number twice (an EBADF at shutdown, or someone else's reused descriptor)."""
    import threading
    import time

    from core.runner.process import WorkerProcess

    class SlowConn:  # a pipe end whose close takes a moment, as a real close can while the other thread runs
        def __init__(self):
            self.closes = 0
            self.closed = False

        def close(self):
            self.closes += 1
            time.sleep(0.05)
            self.closed = True

    class DeadProcess:
        exitcode = 0

        def is_alive(self):
            return False

        def join(self, timeout=None):
            pass

    w = WorkerProcess.__new__(WorkerProcess)
    w.conn, w.process, w.expected_exit = SlowConn(), DeadProcess(), False
    w._pipe_lock = threading.Lock()
    threads = [threading.Thread(target=w.kill) for _ in range(2)]  # shutdown's kill and the runner thread's
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.conn.closes == 1
