"""What a lesson promises to show, and how far a run is from showing it.

A Train-page lesson (a preset in ``assets/presets``) may name its **goal**: the moment its point is on the
screen. The page draws the way there as a second progress bar ("Lesson goal: held-out shape kNN reaches 0.95
· shape kNN now 0.81, best 0.84") and says when it was reached; ``benchmarks/lessons/bench_time_to_insight.py
--part home`` times every lesson to the same moment.

Three kinds of goal, all read from the trainer's evaluations (``core.train.EvalRecord``):

* ``knn_at_least``: the held-out kNN accuracy of ``factor`` reaches ``target`` (the first lesson: shape, 0.95).
  Reached at the first evaluation that gets there, and stays reached.
* ``knn_above``: when the run has taken its steps, ``factor``'s kNN accuracy is above ``other``'s (the shortcut
  lesson: colour beats shape). Judged on the last evaluation at or after the last step; it can be missed.
* ``finished``: the run has taken its steps.

>>> g = LessonGoal.from_dict({"kind": "finished", "text": "the run finishes"})
>>> goal_progress(g, [], step_count=50, steps=100).fraction
0.5
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

GOAL_KINDS = ("knn_at_least", "knn_above", "finished")
_FIELDS = ("kind", "text", "factor", "other", "target")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
MAX_TEXT = 200
# Settings a learner may change and still be running the lesson: another seed, or more steps.
SAME_LESSON_IGNORES = ("seed", "steps")


@dataclass(frozen=True)
class LessonGoal:
    kind: str
    text: str  # what the learner waits for, e.g. "held-out shape kNN reaches 0.95"
    factor: str | None = None
    other: str | None = None  # knn_above: the factor it must beat
    target: float | None = None  # knn_at_least: the accuracy to reach, in (0, 1]

    @classmethod
    def from_dict(cls, d: Any) -> LessonGoal:
        """Validate a preset's ``goal``; ``ValueError`` names the problem."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a lesson goal must be an object, not {type(d).__name__}.")
        unknown = sorted(str(k) for k in d if k not in _FIELDS)
        if unknown:
            raise ValueError(f"a lesson goal has unknown field(s) {unknown}; allowed: {list(_FIELDS)}.")
        kind, text = d.get("kind"), d.get("text")
        if kind not in GOAL_KINDS:
            raise ValueError(f"a lesson goal's kind must be one of {', '.join(GOAL_KINDS)}, not {kind!r}.")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise ValueError(f"a lesson goal needs a text of 1 to {MAX_TEXT} characters.")
        needs = {"knn_at_least": ("factor", "target"), "knn_above": ("factor", "other"), "finished": ()}[kind]
        for name in ("factor", "other", "target"):
            if name in needs and d.get(name) is None:
                raise ValueError(f"a {kind} goal needs {name!r}.")
            if name not in needs and d.get(name) is not None:
                raise ValueError(f"a {kind} goal takes no {name!r}.")
        for name in ("factor", "other"):
            value = d.get(name)
            if value is not None and (not isinstance(value, str) or not _NAME.match(value)):
                raise ValueError(f"a lesson goal's {name} must be a factor name such as 'shape', not {value!r}.")
        target = d.get("target")
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) \
                    or not 0.0 < float(target) <= 1.0:
                raise ValueError(f"a lesson goal's target must be an accuracy above 0 and at most 1, not {target!r}.")
            target = float(target)
        if kind == "knn_above" and d["factor"] == d["other"]:
            raise ValueError("a knn_above goal compares two different factors.")
        return cls(kind=kind, text=text.strip(), factor=d.get("factor"), other=d.get("other"), target=target)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _FIELDS if getattr(self, k) is not None}

    def factors(self) -> tuple[str, ...]:
        """The factors the goal reads (each must be one of the lesson's dataset's factors)."""
        return tuple(f for f in (self.factor, self.other) if f is not None)


@dataclass(frozen=True)
class GoalProgress:
    reached: bool
    fraction: float  # 0..1 of the way, for a progress bar
    detail: str  # where the run stands, e.g. "now 0.81, best 0.84"
    step: int | None = None  # when reached: the step, and the seconds of training it took
    seconds: float | None = None
    missed: bool = False  # a knn_above goal whose run ended the other way round


def _knn(record: Any, factor: str) -> float | None:
    value = getattr(record, "knn", {}).get(factor)
    return None if value is None or not math.isfinite(value) else float(value)


def goal_progress(goal: LessonGoal, evals: Sequence[Any], step_count: int, steps: int) -> GoalProgress:
    """How far a run is from ``goal``: ``evals`` are its evaluations in order (anything with ``step``,
    ``seconds`` and a ``knn`` dict), ``step_count`` its steps so far, ``steps`` the lesson's length."""
    steps = max(int(steps), 1)
    by_steps = min(step_count / steps, 1.0)
    if goal.kind == "finished":
        if step_count >= steps:
            last = evals[-1] if evals else None
            return GoalProgress(True, 1.0, f"all {steps:,} steps taken", step=steps,
                                seconds=getattr(last, "seconds", None))
        return GoalProgress(False, by_steps, f"step {step_count:,} of {steps:,}")

    if goal.kind == "knn_at_least":
        values = [(e, _knn(e, goal.factor)) for e in evals]
        values = [(e, v) for e, v in values if v is not None]
        if not values:
            return GoalProgress(False, 0.0, "waiting for the first evaluation")
        for e, v in values:
            if v >= goal.target:
                return GoalProgress(True, 1.0, f"{goal.factor} kNN {v:.2f}", step=e.step, seconds=e.seconds)
        start, now = values[0][1], values[-1][1]
        best = max(v for _, v in values)
        # From where this run started (an untrained encoder is already above chance) to the target.
        span = goal.target - start
        fraction = min(max((best - start) / span, 0.0), 0.99) if span > 0 else 0.0
        return GoalProgress(False, fraction, f"{goal.factor} kNN now {now:.2f}, best {best:.2f}")

    # knn_above: judged when the run has taken its steps.
    last = evals[-1] if evals else None
    a = _knn(last, goal.factor) if last is not None else None
    b = _knn(last, goal.other) if last is not None else None
    if a is None or b is None:
        return GoalProgress(False, by_steps, "waiting for the first evaluation")
    detail = f"{goal.factor} kNN {a:.2f}, {goal.other} {b:.2f}"
    if last.step >= steps and step_count >= steps:
        if a > b:
            return GoalProgress(True, 1.0, detail, step=last.step, seconds=last.seconds)
        return GoalProgress(False, 1.0, detail, missed=True)
    return GoalProgress(False, by_steps, f"{detail} at step {last.step:,} of {steps:,}")


def same_lesson(lesson_cfg: Mapping[str, Any], run_cfg: Mapping[str, Any],
                ignore: Sequence[str] = SAME_LESSON_IGNORES) -> bool:
    """Whether a run's config (``TrainConfig.to_dict()``) is the lesson's, but for a new seed or more steps."""
    keys = (set(lesson_cfg) | set(run_cfg)) - set(ignore)
    return all(lesson_cfg.get(k) == run_cfg.get(k) for k in keys)
