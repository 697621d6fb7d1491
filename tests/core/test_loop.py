"""core.loop: the one loop (run_loop) and its evaluation / snapshot callbacks, on a fake trainer and on the Trainer."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from core.loop import EvaluateEvery, SnapshotEvery, run_loop


@dataclass
class _Rec:
    step: int


class FakeTrainer:
    """Counts steps; evaluate() and snapshot() record the step they ran at."""

    def __init__(self) -> None:
        self.step_count = 0
        self.evals: list[_Rec] = []
        self.snapshots: list[_Rec] = []

    def step(self) -> _Rec:
        self.step_count += 1
        return _Rec(self.step_count)

    def evaluate(self) -> _Rec:
        self.evals.append(_Rec(self.step_count))
        return self.evals[-1]

    def snapshot(self) -> _Rec:
        self.snapshots.append(_Rec(self.step_count))
        return self.snapshots[-1]


def _steps(records) -> list[int]:
    return [r.step for r in records]


@pytest.mark.parametrize("every,steps,expected", [
    (3, 7, [1, 3, 6, 7]),  # after step 1, every 3, and at the end
    (3, 6, [1, 3, 6]),  # the end is a multiple: not twice
    (1, 3, [1, 2, 3]),  # step 1 is also a multiple: once
    (10, 1, [1]),  # a one-step run: step 1 is also the end
])
def test_evaluations_after_step_one_every_n_and_at_the_end(every, steps, expected):
    t = FakeTrainer()
    assert _steps(run_loop(t, steps, [EvaluateEvery(every)])) == list(range(1, steps + 1))
    assert _steps(t.evals) == expected


def test_the_switches_drop_the_first_and_the_end_evaluations_and_start_adds_step_zero():
    t = FakeTrainer()
    run_loop(t, 7, [EvaluateEvery(3, first=False, at_end=False)])
    assert _steps(t.evals) == [3, 6]
    t = FakeTrainer()
    run_loop(t, 7, [EvaluateEvery(3, first=False, start=True)])
    assert _steps(t.evals) == [0, 3, 6, 7]
    run_loop(t, 2, [EvaluateEvery(3, first=False, start=True)])  # evaluated before: no second step-0 evaluation
    assert _steps(t.evals) == [0, 3, 6, 7, 9]


def test_a_stopped_run_has_no_end_evaluation_and_says_it_did_not_finish():
    t = FakeTrainer()
    ends = []

    class End:
        def on_run_end(self, trainer, finished):
            ends.append((trainer.step_count, finished))

    stop = threading.Event()

    class StopAtFive:
        def on_step(self, trainer, record):
            if record.step == 5:
                stop.set()

    done = run_loop(t, 100, [EvaluateEvery(3), StopAtFive(), End()], stop=stop)
    assert _steps(done) == [1, 2, 3, 4, 5] and _steps(t.evals) == [1, 3] and ends == [(5, False)]
    run_loop(t, 2, [EvaluateEvery(3), End()], stop=lambda: False)
    assert _steps(t.evals) == [1, 3, 6, 7] and ends[-1] == (7, True)
    run_loop(t, 0, [EvaluateEvery(3), End()])  # nothing asked, nothing trained: no evaluation
    assert _steps(t.evals) == [1, 3, 6, 7] and ends[-1] == (7, True)


def test_snapshots_before_a_fresh_trainer_s_first_step_and_every_n():
    t = FakeTrainer()
    run_loop(t, 5, [SnapshotEvery(2)])
    assert _steps(t.snapshots) == [0, 2, 4]
    run_loop(t, 3, [SnapshotEvery(2)])  # a second run does not take a second step-0 snapshot
    assert _steps(t.snapshots) == [0, 2, 4, 6, 8]


def test_callbacks_run_in_order_after_each_step_and_an_error_propagates_without_on_run_end():
    t = FakeTrainer()
    seen = []

    class A:
        def on_run_start(self, trainer):
            seen.append("start")

        def on_step(self, trainer, record):
            seen.append(("a", record.step))
            if record.step == 2:
                raise RuntimeError("boom")

        def on_run_end(self, trainer, finished):
            seen.append("end")

    class B:
        def on_step(self, trainer, record):
            seen.append(("b", record.step))

    with pytest.raises(RuntimeError, match="boom"):
        run_loop(t, 5, [A(), B()])
    assert seen == ["start", ("a", 1), ("b", 1), ("a", 2)]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_intervals_are_refused(bad):
    with pytest.raises(ValueError, match="every"):
        EvaluateEvery(bad)
    with pytest.raises(ValueError, match="every"):
        SnapshotEvery(bad)


def test_a_bad_stop_or_step_count_is_refused():
    with pytest.raises(TypeError, match="stop"):
        run_loop(FakeTrainer(), 1, stop=3)
    with pytest.raises(ValueError, match="steps"):
        run_loop(FakeTrainer(), -1)


def test_the_trainer_s_default_loop_keeps_the_page_s_schedule_and_step_alone_does_neither(shapes_data):
    """Trainer.run() with its default callbacks: a snapshot at step 0 and every snapshot_every; an evaluation after
    step 1, every eval_every and at the end; a second run with the same seed gives the same history and the same
    evaluations. Trainer.step() alone neither evaluates nor snapshots."""
    from core.train import Trainer, TrainConfig

    data = shapes_data(200, 16)
    cfg = TrainConfig(batch_size=16, steps=7, eval_every=3, snapshot_every=2, probe_size=20, knn_reference=50)
    a, b = Trainer(cfg, data, device="cpu"), Trainer(cfg, data, device="cpu")
    assert [type(c) for c in a.default_callbacks()] == [SnapshotEvery, EvaluateEvery]
    a.run()
    b.run()
    assert _steps(a.evals) == [1, 3, 6, 7] and _steps(a.snapshots) == [0, 2, 4, 6]
    assert [(r.step, r.loss, r.lr) for r in a.history] == [(r.step, r.loss, r.lr) for r in b.history]
    assert [e.knn for e in a.evals] == [e.knn for e in b.evals]
    bare = Trainer(cfg, data, device="cpu")
    bare.step()
    bare.step()
    assert bare.evals == [] and bare.snapshots == []
    assert [r.loss for r in bare.history] == [r.loss for r in a.history[:2]]
