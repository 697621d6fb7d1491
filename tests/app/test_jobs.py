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


def _until(cond, timeout=30.0):  # generous: the CI machine may be busy; a pass returns at once
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
    assert _until(lambda: second.queue_position == 0)  # its thread queued before the third's starts
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


# ---------------------------------------------------------------- turns, threads, orphans, rate (issue 10, 6.7)
class RecordingTrainer(FakeTrainer):
    """Records, for each step, which job stepped and how many torch threads that step ran with."""

    def __init__(self, name, log, steps=6, delay=0.002):
        super().__init__(steps=steps, delay=delay)
        self.name, self.log = name, log

    def step(self):
        import torch

        self.log.append((self.name, torch.get_num_threads()))
        super().step()


def test_turns_are_round_robin_across_jobs_and_no_job_starves():
    """Three sessions' jobs, one step at a time: each step goes to the job that waited longest."""
    log: list = []
    slots, gate = jobs.Slots(4), jobs.StepGate(concurrency=1, cores=2)
    hold = threading.Event()
    # A first job holds the turn (its first step waits on `hold`) while the other two queue behind it,
    # so all three are contending from the start.
    first = jobs.TrainingJob(FakeTrainer(steps=1, gate=hold), slots=slots, gate=gate)
    first.play()
    assert _until(lambda: first.state == jobs.RUNNING)
    js = [jobs.TrainingJob(RecordingTrainer(n, log), slots=slots, gate=gate) for n in "abc"]
    for j in js:
        j.play()
    assert _until(lambda: len(gate._queue) == 3)
    hold.set()
    for j in [first, *js]:
        assert j.wait(20) and j.state == jobs.FINISHED
    names = [n for n, _ in log]
    assert sorted(names) == sorted("abc" * 6)
    # round robin: among the steps while all three still train, every window of 3 holds each job once
    for i in range(0, 15, 3):
        assert sorted(names[i:i + 3]) == ["a", "b", "c"], names
    assert slots.running == 0 and not gate._members and gate._active == 0


def test_a_job_paused_while_waiting_for_its_turn_takes_no_further_step():
    """Pause means no more steps: a job queued behind another's step leaves without stepping once its turn
    comes (before, it took that step first, and the page kept showing Pause for it)."""
    slots, gate = jobs.Slots(4), jobs.StepGate(concurrency=1, cores=2)
    hold = threading.Event()
    first = jobs.TrainingJob(FakeTrainer(steps=1, gate=hold), slots=slots, gate=gate)
    first.play()
    assert _until(lambda: first.state == jobs.RUNNING and gate._active == 1)
    second = jobs.TrainingJob(FakeTrainer(steps=100), slots=slots, gate=gate)
    second.play()
    assert _until(lambda: len(gate._queue) == 1)  # waiting for the turn the first job holds
    second.pause()
    hold.set()
    assert second.wait(10) and first.wait(10)
    assert second.state == jobs.PAUSED and second.steps_done == 0
    assert gate._active == 0 and not gate._queue and slots.running == 0


def test_thread_policy_gives_each_job_its_share_and_restores_it():
    import torch

    before = torch.get_num_threads()
    gate = jobs.StepGate(concurrency=2, cores=4)
    log: list = []
    hold = threading.Event()
    a = jobs.TrainingJob(FakeTrainer(steps=1, gate=hold), slots=jobs.Slots(2), gate=gate)
    a.play()
    assert _until(lambda: a.state == jobs.RUNNING)
    b = jobs.TrainingJob(RecordingTrainer("b", log, steps=3), slots=a.slots, gate=gate)
    b.play()
    assert _until(lambda: len(log) >= 1)
    assert log[0] == ("b", 2)  # two jobs share four cores: two threads each
    hold.set()
    assert a.wait(10) and b.wait(10)
    alone: list = []
    c = jobs.TrainingJob(RecordingTrainer("c", alone, steps=2), slots=jobs.Slots(1), gate=gate)
    assert c.step_now()  # a step in the caller's thread, alone: all four cores ...
    assert alone == [("c", 4)]
    assert torch.get_num_threads() == before  # ... and the caller's own setting is back afterwards
    with jobs.thread_policy(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_job_whose_session_is_gone_pauses_frees_its_slot_and_can_go_on():
    slots = jobs.Slots(1)
    alive = {"yes": True}
    job = jobs.TrainingJob(FakeTrainer(steps=100_000, delay=0.002), slots=slots)
    job.attach_owner(lambda: alive["yes"], lease_s=None, grace_s=0.05)
    job.play()
    assert _until(lambda: job.steps_done > 3)
    assert job.state == jobs.RUNNING and not job.orphaned
    alive["yes"] = False  # every tab closed
    assert job.wait(10)
    assert job.state == jobs.PAUSED and job.orphaned and slots.running == 0
    kept = job.steps_done
    other = jobs.TrainingJob(FakeTrainer(steps=2), slots=slots)  # the freed slot serves someone else
    other.play()
    assert other.wait(10) and other.state == jobs.FINISHED
    assert job.steps_done == kept  # paused, not lost, not training
    job.attach_owner(lambda: True, lease_s=None)  # the user came back
    job.extend(0)
    job.target_steps = kept + 5
    job.play()
    assert job.wait(10) and job.state == jobs.FINISHED and job.steps_done == kept + 5 and not job.orphaned


def test_a_job_nobody_polls_pauses_after_its_lease():
    job = jobs.TrainingJob(FakeTrainer(steps=100_000, delay=0.002), slots=jobs.Slots(1))
    job.attach_owner(None, lease_s=0.3)
    job.play()
    assert job.wait(10)
    assert job.state == jobs.PAUSED and job.orphaned and 0 < job.steps_done < 100_000


def test_queued_job_whose_session_is_gone_leaves_the_queue():
    slots = jobs.Slots(1)
    hold = threading.Event()
    first = jobs.TrainingJob(FakeTrainer(steps=1, gate=hold), slots=slots)
    first.play()
    assert _until(lambda: first.state == jobs.RUNNING)
    queued = jobs.TrainingJob(FakeTrainer(steps=3), slots=slots)
    queued.attach_owner(lambda: False, lease_s=None, grace_s=0.0)
    queued.play()
    assert queued.wait(10)
    assert queued.state == jobs.PAUSED and queued.orphaned and slots.waiting == 0
    hold.set()
    assert first.wait(10)


def test_rate_is_the_recent_rate_not_the_average_since_the_start():
    job = jobs.TrainingJob(FakeTrainer(steps=10), slots=jobs.Slots(1))
    assert job.rate() is None
    t0 = 1000.0
    # 10 steps/s for 20 s, then 1 step/s for 6 s: the average since the start is ~7.9, the recent rate 1.
    job._rate_marks.extend([(t0 + i * 0.1, i) for i in range(201)])
    job._rate_marks.extend([(t0 + 20 + i, 200 + i) for i in range(1, 7)])
    assert job.rate(window=5.0) == pytest.approx(1.0)
    assert jobs.ordinal(1) == "1st" and jobs.ordinal(2) == "2nd" and jobs.ordinal(3) == "3rd"
    assert jobs.ordinal(11) == "11th" and jobs.ordinal(22) == "22nd"


def test_server_load_counts_running_and_queued():
    slots = jobs.Slots(1)
    hold = threading.Event()
    a = jobs.TrainingJob(FakeTrainer(steps=1, gate=hold), slots=slots)
    b = jobs.TrainingJob(FakeTrainer(steps=1), slots=slots)
    a.play()
    assert _until(lambda: a.state == jobs.RUNNING)
    b.play()
    assert _until(lambda: b.queue_position == 0)
    assert jobs.server_load(slots) == (1, 2)
    hold.set()
    assert a.wait(10) and b.wait(10)
    assert jobs.server_load(slots) == (0, 0)


def test_pages_redraw_less_often_while_more_jobs_train_or_wait_than_there_are_cores():
    """A classroom (more jobs than cores, queued ones counted) gets the slower redraw periods; one or two
    users on two cores keep the quick ones."""
    slots = jobs.Slots(1)
    assert jobs.refresh_seconds(slots, cores=2) == jobs.REFRESH_ALONE
    assert slots.try_acquire(1)
    stop = threading.Event()
    waiters = [threading.Thread(target=slots.acquire, args=(i, stop.is_set), kwargs={"poll": 0.01})
               for i in (2, 3)]
    try:
        waiters[0].start()
        assert _until(lambda: slots.waiting == 1)
        assert jobs.refresh_seconds(slots, cores=2) == jobs.REFRESH_ALONE  # 2 jobs on 2 cores
        waiters[1].start()
        assert _until(lambda: slots.waiting == 2)
        assert jobs.refresh_seconds(slots, cores=2) == jobs.REFRESH_BUSY  # 1 training + 2 queued > 2 cores
        assert jobs.refresh_seconds(slots, cores=4) == jobs.REFRESH_ALONE
    finally:
        stop.set()
        for w in waiters:
            w.join(5)
    busy_status, busy_charts = jobs.REFRESH_BUSY
    alone_status, alone_charts = jobs.REFRESH_ALONE
    assert busy_status > alone_status and busy_charts > alone_charts


def test_with_more_jobs_than_slots_the_slot_rotates_and_every_job_progresses():
    """One slot, three long jobs: each gives the slot up after its quantum while others wait (FIFO), so all
    three train before any finishes; without a quantum the first would hold the slot to its end."""
    slots = jobs.Slots(1, quantum_s=0.05)
    js = [jobs.TrainingJob(FakeTrainer(steps=100_000, delay=0.002), slots=slots) for _ in range(3)]
    for j in js:
        j.play()
    assert _until(lambda: all(j.steps_done > 0 for j in js), timeout=20)
    assert _until(lambda: sum(j.state == jobs.RUNNING for j in js) == 1)
    assert slots.running <= 1
    for j in js:
        j.pause()
    for j in js:
        assert j.wait(10) and j.state == jobs.PAUSED
    assert slots.running == 0 and slots.waiting == 0
    with pytest.raises(ValueError):
        jobs.Slots(1, quantum_s=0)


def test_a_busy_machine_gets_one_thread_per_step_and_the_budget_follows_omp(monkeypatch):
    load = {"avg": 0.5}
    gate = jobs.StepGate(concurrency=1, cores=2, load=lambda: load["avg"])
    with gate.turn(1) as threads:
        assert threads == 2
    load["avg"] = 9.0  # other processes keep the cores busy: spinning OpenMP threads would collapse
    with gate.turn(1) as threads:
        assert threads == 1
    # The gate's own threads are part of the load average: two of ours plus a little page work is not busy.
    gate = jobs.StepGate(concurrency=1, cores=2, load=lambda: load["avg"])
    load["avg"] = 0.5
    for _ in range(30):  # one job training for a while with both threads
        with gate.turn(1) as threads:
            assert threads == 2
    load["avg"] = 3.4  # our 2 threads + 1.4 from the page and the browser
    with gate.turn(1) as threads:
        assert threads == 2
    load["avg"] = 5.0  # 3 from others: more than the cores
    with gate.turn(1) as threads:
        assert threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert jobs._thread_budget() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert jobs._thread_budget() == (__import__("os").cpu_count() or 1)


def test_a_reserved_core_is_never_given_to_one_step():
    """CP_RESERVED_CORES keeps cores for the pages: on two cores a lone job steps on one thread, on four on three;
    shares are unchanged. The server's gate reserves none by default: its ThreadTuner measures (below)."""
    gate = jobs.StepGate(concurrency=2, cores=2, reserve=1)
    with gate.turn(1) as threads:
        assert threads == 1
    gate = jobs.StepGate(concurrency=4, cores=4, reserve=1)
    with gate.turn(1) as threads:
        assert threads == 3
    gate.join(1)
    gate.join(2)
    with gate.turn(1) as threads:
        assert threads == 2  # two jobs share four cores
    with pytest.raises(ValueError):
        jobs.StepGate(cores=2, reserve=2)
    with pytest.raises(ValueError):
        jobs.StepGate(cores=1, reserve=1)
    assert jobs.GATE.reserve == 0 and jobs.GATE.make_tuner is jobs.ThreadTuner  # the server measures instead
    with jobs.StepGate(cores=1).turn(1) as threads:  # one core: nothing to reserve
        assert threads == 1


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _feed(tuner, clock, step_seconds, steps):
    """Run ``steps`` steps through ``tuner``; ``step_seconds(threads, i)`` is each step's duration."""
    used = []
    for i in range(steps):
        n = tuner.threads()
        used.append(n)
        d = step_seconds(n, i)
        clock.now += d
        tuner.record(n, d)
    return used


def test_thread_tuner_alternates_blocks_and_keeps_the_count_with_the_smaller_mean_step():
    clock = FakeClock()
    tuner = jobs.ThreadTuner(2, block_s=1.0, rounds=2, settle=1, period_s=30.0, clock=clock)

    # Two threads: 50 ms steps, but every fifth one takes 1 s (a browser beside it took a core); one: 100 ms.
    # The median would pick two threads, the mean (where the time goes) picks one.
    def browser_beside(n, i):
        return 0.1 if n == 1 else (1.0 if i % 5 == 0 else 0.05)
    used = _feed(tuner, clock, browser_beside, 60)
    blocks = [n for k, n in enumerate(used) if k == 0 or used[k - 1] != n]
    assert blocks[:4] == [2, 1, 2, 1]  # alternating blocks, first the most threads
    assert tuner.choice == 1
    assert tuner.means[2] > tuner.means[1] == pytest.approx(0.1)
    assert set(used[-10:]) == {1}  # it holds its choice ...
    # ... until period_s has passed, then measures again: the tab closed, and two threads now win.
    used = _feed(tuner, clock, lambda n, i: 0.1 if n == 1 else 0.06, 400)
    assert used[0] == 1 and 2 in used and tuner.choice == 2 and set(used[-10:]) == {2}
    # The chosen count slows down (a tab opened beside it): the next watch window sees it and measures again at
    # once, long before period_s.
    trials = tuner.trials
    used = _feed(tuner, clock, lambda n, i: 0.1 if n == 1 else 0.3, 80)
    assert tuner.trials == trials + 1 and tuner.choice == 1 and set(used[-5:]) == {1}
    with pytest.raises(ValueError):
        jobs.ThreadTuner(1)


def test_thread_tuner_measures_a_count_slower_than_its_blocks_and_stops_early_when_it_is_hopeless():
    """Beside a browser, two threads' steps took 1.4-2.5 s each against 0.1 s on one. The trial must still count
    them (a block ends only after a counted step; the old tuner skipped the block's only step and then chose
    the unmeasured count), and ends after two blocks at two threads instead of three."""
    clock = FakeClock()
    tuner = jobs.ThreadTuner(2, block_s=1.0, rounds=3, settle=1, clock=clock)
    used = _feed(tuner, clock, lambda n, i: 0.1 if n == 1 else 2.0, 40)
    assert tuner.choice == 1 and tuner.trials == 1
    assert used.count(2) == 3  # the job's first (skipped) step and two counted ones: two blocks, not three
    assert set(used[-20:]) == {1}
    # The next trials confirm it, each for two slow steps, and the wait before the next doubles: first_period_s
    # (10 s) after the first, then 20 s, then 40 s. 700 steps are ~74 s: two more trials, not three.
    used = _feed(tuner, clock, lambda n, i: 0.1 if n == 1 else 2.0, 700)
    assert tuner.trials == 3 and tuner.choice == 1 and used.count(2) == 4


def test_the_first_trial_is_checked_again_soon():
    """The lesson's first seconds, beside a Chromium tab: two threads' steps took 0.26-1.45 s while the page drew
    its charts for the first time, then 45-60 ms, against 80-90 ms on one thread throughout. The first trial
    rightly chooses one thread; the next trial, first_period_s later, finds two faster and switches (the old
    tuner waited period_s, a minute: longer than the lesson)."""
    clock = FakeClock()
    tuner = jobs.ThreadTuner(2, block_s=1.0, rounds=3, settle=1, period_s=60.0, first_period_s=10.0, clock=clock)
    used = _feed(tuner, clock, lambda n, i: 0.085 if n == 1 else (1.0 if clock.now < 6.0 else 0.05), 300)
    assert tuner.trials == 2 and tuner.choice == 2
    switched = next(k for k in range(len(used) - 1, 0, -1) if used[k - 1] != used[k])
    assert set(used[switched + 20:]) == {2}


def test_one_long_step_does_not_end_a_trial_early():
    """A block whose only counted step was long (an evaluation, a page's redraw) is no proof that its count is
    hopeless: the trial goes on through all its blocks (the early end needs two slow steps, each slow)."""
    clock = FakeClock()
    tuner = jobs.ThreadTuner(2, block_s=1.0, rounds=3, settle=1, clock=clock)
    used = _feed(tuner, clock, lambda n, i: (1.2 if i == 1 else 0.07) if n == 2 else 0.09, 120)
    blocks = [n for k, n in enumerate(used) if k == 0 or used[k - 1] != n]
    assert blocks[:6] == [2, 1, 2, 1, 2, 1] and tuner.trials == 1


def test_the_gate_gives_a_lone_job_the_thread_count_its_tuner_measured_faster():
    import torch

    def make(many):
        return jobs.ThreadTuner(many, block_s=0.05, rounds=2, settle=0, period_s=600.0)

    gate = jobs.StepGate(concurrency=2, cores=2, tuner=make)
    gate.join(1)
    seen = []
    for _ in range(200):
        with gate.turn(1) as threads:
            assert torch.get_num_threads() == threads
            seen.append(threads)
            time.sleep(0.004 if threads == 1 else 0.012)  # this job's steps are faster on one thread
        if gate.tuner(1).choice is not None and len(seen) > 5 and seen[-5:] == [1] * 5:
            break
    assert gate.tuner(1).choice == 1 and seen[0] == 2 and seen[-1] == 1
    gate.join(2)  # two jobs on two cores: one thread each, nothing to choose
    with gate.turn(2) as threads:
        assert threads == 1
    gate.leave(1)
    assert gate.tuner(1) is None  # a job that leaves and comes back is measured again


class AheadTrainer(FakeTrainer):
    """Records, at every step, whether the job asked for views ahead and the step's torch thread count."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.views_ahead = False
        self.seen: list[tuple[bool, int]] = []

    def step(self):
        import torch

        self.seen.append((self.views_ahead, torch.get_num_threads()))
        time.sleep(0.004 if torch.get_num_threads() == 1 else 0.012)  # faster on one thread: the tuner picks it
        self.step_count += 1


def test_a_lone_job_on_fewer_threads_than_offered_draws_views_ahead_on_the_spare_core():
    """The spare core goes to the trainer's helper only while the tuner chose fewer threads than the gate offered:
    never with two threads, never while another job shares the cores, never outside a turn."""
    def make(many):
        return jobs.ThreadTuner(many, block_s=0.05, rounds=2, settle=0, period_s=600.0)

    gate = jobs.StepGate(concurrency=2, cores=2, tuner=make)
    assert not gate.spare_core(1)
    trainer = AheadTrainer(steps=10_000)
    job = jobs.TrainingJob(trainer, slots=jobs.Slots(2), gate=gate)
    job.play()
    assert _until(lambda: (t := gate.tuner(job.id)) is not None and t.choice == 1 and len(trainer.seen) > 5
                  and trainer.seen[-1] == (True, 1))
    assert all(ahead == (threads == 1) for ahead, threads in trainer.seen)  # on exactly when one of two threads
    assert (False, 2) in trainer.seen  # the tuner's two-thread blocks ran without it
    other = jobs.TrainingJob(AheadTrainer(steps=10_000), slots=jobs.Slots(2), gate=gate)
    other.play()  # two jobs on two cores: one thread each and no core to spare
    assert _until(lambda: len(other.trainer.seen) > 3)
    n = len(trainer.seen)
    assert _until(lambda: len(trainer.seen) > n + 3)
    job.pause(), other.pause()
    assert job.wait(10) and other.wait(10)
    assert all(s == (False, 1) for s in other.trainer.seen[1:])
    assert all(s == (False, 1) for s in trainer.seen[n + 1:])
    assert not gate.spare_core(job.id)


class EvaluatingTrainer(FakeTrainer):
    """Plain steps faster on two threads than one; every fifth step also evaluates, slowly on two threads (as the
    served app's first evaluation beside a Chromium tab: 4.2 s against 50-60 ms for a plain step)."""

    def step(self):
        import torch

        two = torch.get_num_threads() == 2
        time.sleep(0.003 if two else 0.006)
        self.step_count += 1
        if self.step_count % 5 == 0:
            time.sleep(0.08 if two else 0.01)
            self.evaluate()


def test_the_tuner_times_plain_steps_only_not_evaluations():
    """Counted in the tuner's mean, the slow evaluations made two threads look slower (mean 19 ms a step at two
    threads against 8 ms at one) although every plain step was twice as fast there: the old loop chose one."""
    def make(many):
        return jobs.ThreadTuner(many, block_s=0.1, rounds=2, settle=0, period_s=600.0)

    gate = jobs.StepGate(concurrency=2, cores=2, tuner=make)
    job = jobs.TrainingJob(EvaluatingTrainer(steps=400), slots=jobs.Slots(1), gate=gate)
    job.play()
    assert _until(lambda: (t := gate.tuner(job.id)) is not None and t.trials >= 1)
    tuner = gate.tuner(job.id)
    job.pause()
    assert job.wait(10)
    assert tuner.choice == 2
    assert tuner.means[2] < tuner.means[1]  # the plain steps' means: about 3 ms against 6 ms
    assert tuner.means[1] < 0.009  # no evaluation in either mean


def test_the_served_app_does_not_collect_garbage_after_every_run():
    """Streamlit's default gc.collect(2) after each script run held the GIL ~0.4 s per status tick (once a
    second per session), stalling every training thread: the served app's config turns it off."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_umap_warm_up_waits_until_no_job_trains(monkeypatch):
    """numba's compiler holds the GIL for seconds: the warm-up must not compile while a lesson trains."""
    import threading

    from ui import warmup

    slots = jobs.Slots(2)
    monkeypatch.setattr(jobs, "SLOTS", slots)
    assert slots.try_acquire(1)  # a job is training
    done = threading.Event()
    t = threading.Thread(target=lambda: (warmup._wait_for_idle_training(quiet_s=0.2, poll_s=0.02), done.set()))
    t.start()
    assert not done.wait(0.6)  # still waiting while the job holds its slot
    slots.release(1)
    assert done.wait(5)
    t.join()


def test_warm_up_leaves_the_first_trainer_nothing_to_import():
    """The first optimizer of a process imported torch._dynamo (~880 modules, ~2.2 s here) inside the first
    lesson's Play; the warm-up builds one first. Checked in a fresh interpreter: this one has them loaded."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import core.train\n"
        "from ui import warmup\n"
        "warmup._first_step_ready()\n"
        "from core.data import load_dataset\n"
        "from core.train import Trainer, TrainConfig\n"
        "ds = load_dataset('shapes', n=120)\n"
        "before = set(sys.modules)\n"
        "Trainer(TrainConfig(batch_size=8, steps=1), ds).step()\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
