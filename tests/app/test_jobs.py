"""ui.jobs without a page: play / pause / step / stop, the global cap with its FIFO queue, failures."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from ui import jobs


class FakeTrainer:
    """Steps take ``delay`` seconds; optionally diverge at step ``fail_at``."""

    def __init__(self, steps: int = 5, delay: float = 0.01, fail_at: int | None = None, gate=None):
        self.cfg = SimpleNamespace(steps=steps)
        self.step_count = 0
        self.evals: list = []
        self.delay = delay
        self.fail_at = fail_at
        self.gate = gate  # a threading.Event the step waits on (to hold a slot in a test)

    def step(self):
        from core.errors import TrainingDiverged

        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)
        if self.fail_at is not None and self.step_count + 1 >= self.fail_at:
            raise TrainingDiverged("Training stopped at step 3: the loss became nan. Try a smaller learning rate.")
        self.step_count += 1

    def evaluate(self):
        self.evals.append(SimpleNamespace(step=self.step_count))


def _until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def test_play_runs_to_target_then_evaluates_and_flags_registration():
    job = jobs.TrainingJob(FakeTrainer(steps=5), slots=jobs.Slots(1))
    assert job.state == jobs.IDLE
    job.play()
    assert job.wait(10)
    assert job.state == jobs.FINISHED and job.steps_done == 5
    assert job.trainer.evals[-1].step == 5
    assert job.needs_registration
    job.mark_registered()
    assert not job.needs_registration


def test_pause_holds_and_play_resumes():
    job = jobs.TrainingJob(FakeTrainer(steps=1000, delay=0.005), slots=jobs.Slots(1))
    job.play()
    assert _until(lambda: job.steps_done > 3)
    job.pause()
    assert job.wait(10)
    assert job.state == jobs.PAUSED
    held = job.steps_done
    time.sleep(0.1)
    assert job.steps_done == held
    job.play()
    assert _until(lambda: job.steps_done > held + 3)
    job.stop()
    assert job.wait(10)
    assert job.state == jobs.STOPPED and job.needs_registration


def test_step_now_and_extend():
    job = jobs.TrainingJob(FakeTrainer(steps=2), slots=jobs.Slots(1))
    assert job.step_now() and job.step_now() and job.step_now()
    assert job.steps_done == 3 and job.state == jobs.PAUSED and job.target_steps == 3
    job.extend(2)
    job.play()
    assert job.wait(10) and job.steps_done == 5 and job.state == jobs.FINISHED


def test_global_cap_queues_in_order():
    slots = jobs.Slots(1)
    gate = threading.Event()
    first = jobs.TrainingJob(FakeTrainer(steps=3, gate=gate), slots=slots)
    second = jobs.TrainingJob(FakeTrainer(steps=3), slots=slots)
    third = jobs.TrainingJob(FakeTrainer(steps=3), slots=slots)
    first.play()
    assert _until(lambda: first.state == jobs.RUNNING)
    second.play()
    third.play()
    assert _until(lambda: third.queue_position == 1)
    assert second.state == jobs.QUEUED and second.queue_position == 0
    assert not second.step_now()  # no slot free: a single step is refused, not queued
    gate.set()
    for job in (first, second, third):
        assert job.wait(10)
        assert job.state == jobs.FINISHED
    assert slots.running == 0 and slots.waiting == 0


def test_pausing_a_queued_job_leaves_the_queue():
    slots = jobs.Slots(1)
    gate = threading.Event()
    first = jobs.TrainingJob(FakeTrainer(steps=2, gate=gate), slots=slots)
    second = jobs.TrainingJob(FakeTrainer(steps=2), slots=slots)
    first.play()
    second.play()
    assert _until(lambda: second.queue_position == 0)
    second.pause()
    assert second.wait(10)
    assert second.state == jobs.PAUSED and slots.waiting == 0
    gate.set()
    assert first.wait(10)


def test_divergence_fails_the_job_with_its_message():
    job = jobs.TrainingJob(FakeTrainer(steps=10, fail_at=3), slots=jobs.Slots(1))
    job.play()
    assert job.wait(10)
    assert job.state == jobs.FAILED
    assert "loss became nan" in job.error
    assert job.steps_done == 2
    job.play()  # a failed job does not restart
    assert job.state == jobs.FAILED


def test_a_bug_in_a_step_is_reported_not_raised():
    trainer = FakeTrainer(steps=3)
    trainer.step = lambda: 1 / 0
    job = jobs.TrainingJob(trainer, slots=jobs.Slots(1))
    job.play()
    assert job.wait(10)
    assert job.state == jobs.FAILED and "ZeroDivisionError" in job.error


def test_slots_need_capacity():
    with pytest.raises(ValueError):
        jobs.Slots(0)
    assert jobs.MAX_RUNNING >= 1
