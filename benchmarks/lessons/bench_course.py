"""Every step of every shipped course: seconds from opening the step's link until its point is on screen.

Each step is opened as a student opens it, by its link (``app.py?course=<id>&step=<n>``), in Streamlit's AppTest
(the whole app: router, course panel, page). The clock stops when the step's point is shown:

- a step with a question: a prediction is chosen and the course panel shows "The run says: ..." (for a training
  step the page's own job must finish first, as in class; the panel's fragment is rerun every 0.5 s meanwhile);
- a step without one: its page has rendered.

Steps run one after another in one process, as one class walks the course, so the first step that needs torch,
UMAP's numba compilation, the mini-CLIP or MiniLM pays that once (the figures say which step did). The goal
(issue 31): each step's live part within 20 s on two cores, and the whole course within 20 minutes of class.

    python benchmarks/lessons/bench_course.py                  # every shipped course
    python benchmarks/lessons/bench_course.py --steps 2,3      # some steps of the first course
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ROOT, machine_info, report  # noqa: E402

QUESTION = "The shipped course step by step: seconds from a step's link to its point on screen (AppTest)"
FULL: list[str] = []
QUICK = ["--steps", "1,4"]
MINUTES = (1, 3)


GOAL_S = 20.0


def _said(at) -> str:
    return " ".join(m.value for m in [*at.success, *at.warning, *at.info])


def run_step(course, index: int, timeout: float = 300.0) -> tuple[float, str]:
    from streamlit.testing.v1 import AppTest

    step = course.steps[index]
    t0 = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.query_params.update({"course": course.id, "step": str(index + 1)})
    at.run()
    if at.exception:
        return time.perf_counter() - t0, "exception: " + at.exception[0].value[:200]
    if step.question is None:
        return time.perf_counter() - t0, "page rendered"
    at.radio(key=f"course.guess.{course.id}.{index}").set_value(next(iter(step.question.choices))).run()
    deadline = t0 + timeout
    while "The run says" not in _said(at) and time.perf_counter() < deadline:
        job = at.session_state["train._job"] if "train._job" in at.session_state else None
        if job is not None and job.active:
            job.wait(0.5)
        at.run()
    said = _said(at)
    t = time.perf_counter() - t0
    if "The run says" not in said:
        return t, f"no answer within {timeout:.0f} s"
    answer = said.split("The run says: ", 1)[1].split(". ", 1)[0].replace("**", "")
    if "train._job" in at.session_state:
        at.session_state["train._job"].pause()
    return t, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="", help="comma-separated 1-based steps of the first course")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ui import course as UC

    print(machine_info())
    print(f"load average before: {os.getloadavg()[0]:.2f} (the machine is shared with other work)")
    for course in UC.shipped():
        wanted = [int(s) - 1 for s in args.steps.split(",") if s] or range(len(course.steps))
        print(f"\n{course.title} ({course.id}), {len(course.steps)} steps")
        total = 0.0
        for i in wanted:
            t, what = run_step(course, i)
            total += t
            step = course.steps[i]
            flag = "" if t <= GOAL_S else f"  > {GOAL_S:.0f} s"
            print(f"  step {i + 1:2d} {step.page:9s} {t:6.1f} s  load {os.getloadavg()[0]:5.2f}  "
                  f"{step.title}: {what}{flag}", flush=True)
            report(f"course `{course.id}` step {i + 1} ({step.page}): seconds to its point",
                   f"**{t:.1f} s**" if t > GOAL_S else f"{t:.1f} s", beside=what,
                   goal=f"<= {GOAL_S:.0f} s: {'met' if t <= GOAL_S else 'not met'}")
        print(f"  total {total:.1f} s of computing for the course")
        if not args.steps:
            report(f"course `{course.id}`, every step: seconds of computing", f"{total:.1f} s",
                   goal=f"inside 20 minutes of class: {'met' if total <= 1200 else 'not met'}")
    from ui import jobs

    jobs.stop_all(timeout=30)


if __name__ == "__main__":
    main()
