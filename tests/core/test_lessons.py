"""core.lessons: a lesson's goal is validated, and a run's progress towards it is judged from its evaluations."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.lessons import LessonGoal, goal_progress, same_lesson

SHAPE = {"kind": "knn_at_least", "factor": "shape", "target": 0.95, "text": "held-out shape kNN reaches 0.95"}
SHORTCUT = {"kind": "knn_above", "factor": "colour", "other": "shape", "text": "colour beats shape"}


def _evals(*rows):
    """Evaluation records as the trainer keeps them: (step, seconds, {factor: accuracy})."""
    return [SimpleNamespace(step=s, seconds=t, knn=knn) for s, t, knn in rows]


def test_goal_round_trips_and_names_its_factors():
    goal = LessonGoal.from_dict(SHAPE)
    assert LessonGoal.from_dict(goal.to_dict()) == goal
    assert goal.factors() == ("shape",)
    assert LessonGoal.from_dict(SHORTCUT).factors() == ("colour", "shape")


@pytest.mark.parametrize("bad, says", [
    ([1, 2], "must be an object"),
    ({**SHAPE, "kind": "loss_below"}, "kind must be one of"),
    ({**SHAPE, "text": ""}, "needs a text"),
    ({**SHAPE, "text": "x" * 201}, "needs a text"),
    ({k: v for k, v in SHAPE.items() if k != "target"}, "needs 'target'"),
    ({**SHAPE, "target": 1.5}, "at most 1"),
    ({**SHAPE, "target": float("nan")}, "at most 1"),
    ({**SHAPE, "target": True}, "at most 1"),
    ({**SHAPE, "factor": "../etc"}, "factor name"),
    ({**SHAPE, "path": "/tmp/x"}, "unknown field"),
    ({**SHORTCUT, "other": "colour"}, "two different factors"),
    ({"kind": "finished", "text": "done", "target": 0.5}, "takes no 'target'"),
])
def test_bad_goals_are_refused_with_a_reason(bad, says):
    with pytest.raises(ValueError, match=says):
        LessonGoal.from_dict(bad)


def test_knn_goal_is_reached_at_the_first_evaluation_that_gets_there_and_stays_reached():
    goal = LessonGoal.from_dict(SHAPE)
    evals = _evals((1, 0.1, {"shape": 0.45}), (25, 2.0, {"shape": 0.70}), (50, 4.0, {"shape": 0.60}))
    p = goal_progress(goal, evals, step_count=60, steps=1000)
    assert not p.reached and not p.missed
    # best 0.70 from a start of 0.45 towards 0.95: half way
    assert p.fraction == pytest.approx((0.70 - 0.45) / (0.95 - 0.45))
    assert "now 0.60" in p.detail and "best 0.70" in p.detail
    evals += _evals((75, 6.0, {"shape": 0.951}), (100, 8.0, {"shape": 0.93}))
    p = goal_progress(goal, evals, step_count=100, steps=1000)
    assert p.reached and (p.step, p.seconds) == (75, 6.0) and p.fraction == 1.0


def test_knn_goal_waits_for_an_evaluation_and_never_shows_done_before_it_is():
    goal = LessonGoal.from_dict(SHAPE)
    assert goal_progress(goal, [], step_count=5, steps=1000).fraction == 0.0
    # a run that is already better than the target's start but not there: below 1 on the bar
    p = goal_progress(goal, _evals((1, 0.1, {"shape": 0.5}), (25, 1.0, {"shape": 0.9499})), 25, 1000)
    assert not p.reached and p.fraction < 1.0
    # a factor the run does not have (another dataset): never reached
    assert not goal_progress(goal, _evals((1, 0.1, {"digit": 0.99})), 1, 10).reached


def test_shortcut_goal_is_judged_at_the_end_and_can_be_missed():
    goal = LessonGoal.from_dict(SHORTCUT)
    running = goal_progress(goal, _evals((100, 5.0, {"colour": 0.99, "shape": 0.4})), step_count=100, steps=200)
    assert not running.reached and running.fraction == 0.5 and "step 100 of 200" in running.detail
    won = goal_progress(goal, _evals((200, 9.0, {"colour": 0.99, "shape": 0.4})), step_count=200, steps=200)
    assert won.reached and won.step == 200 and won.seconds == 9.0
    lost = goal_progress(goal, _evals((200, 9.0, {"colour": 0.5, "shape": 0.9})), step_count=200, steps=200)
    assert lost.missed and not lost.reached
    # the final evaluation has not come in yet: not judged on an old one
    waiting = goal_progress(goal, _evals((175, 8.0, {"colour": 0.5, "shape": 0.9})), step_count=200, steps=200)
    assert not waiting.missed and not waiting.reached


def test_finished_goal_follows_the_steps():
    goal = LessonGoal.from_dict({"kind": "finished", "text": "the run finishes"})
    assert goal_progress(goal, [], step_count=30, steps=120).fraction == 0.25
    done = goal_progress(goal, _evals((120, 7.5, {})), step_count=120, steps=120)
    assert done.reached and done.seconds == 7.5


def test_same_lesson_allows_another_seed_or_more_steps_only():
    lesson = {"lr": 0.006, "batch_size": 128, "seed": 0, "steps": 1000}
    assert same_lesson(lesson, {**lesson, "seed": 3, "steps": 5000})
    assert not same_lesson(lesson, {**lesson, "lr": 0.002})
    assert not same_lesson(lesson, {**lesson, "temperature": 0.5})
