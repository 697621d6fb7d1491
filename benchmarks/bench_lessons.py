"""Every lesson on the Home page: seconds from its click until it shows its point (issue 10, goal 2: <= 30 s).

A Train-page lesson trains with the settings its preset opens the page with (``bench_time_to_insight.
lesson_config``) and evaluates as the page's job does (right after step 1, then every ``eval_every`` steps
and at the end). Its point is shown when the run reaches the ``goal`` its preset names, judged by
``core.lessons.goal_progress`` as the Train page judges it:

- ``simclr_shapes``  held-out shape kNN >= 0.95 (the time to insight of ``bench_time_to_insight.py``);
- ``shortcut``       the run has finished and colour is still found better than shape (the shortcut);
- ``temperature``    the run has finished (its charts: a peaked softmax over the hardest negatives);
- a Lab lesson       its views are drawn (``core.augment.preview`` of the preset's settings).

Each lesson's old settings (``--old``: width 32 at 32 px; ``--small-cnn``: small_cnn instead of fast_cnn;
``--blas-as-is``: numpy's BLAS pools left alone in evaluations and snapshots, as before ``core.device.small_blas``)
run beside the lesson's own in the same process, after a warm-up that no lesson's clock includes.

    python benchmarks/bench_lessons.py
    python benchmarks/bench_lessons.py --lessons shortcut,temperature --old
    python benchmarks/bench_lessons.py --lessons temperature,shortcut,simclr_shapes --small-cnn
    python benchmarks/bench_lessons.py --lessons temperature,shortcut,simclr_shapes --blas-as-is
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from _common import ROOT, machine_info
from bench_time_to_insight import blas_pools, lesson_config, warm_up

from core.data import load_dataset
from core.lessons import LessonGoal, goal_progress
from core.models import EncoderConfig
from core.train import Trainer

PRESETS = ROOT / "assets" / "presets"
GOAL_S = 30.0


def _point(goal: LessonGoal, trainer: Trainer) -> tuple[bool, str]:
    """The lesson's goal (its preset's ``goal``, as the Train page judges it: ``core.lessons``)."""
    p = goal_progress(goal, trainer.evals, trainer.step_count, trainer.cfg.steps)
    return p.reached, f"{goal.text}: {p.detail}" + (" (missed)" if p.missed else "")


def train_lesson(goal: LessonGoal, cfg, data_opts: dict, max_seconds: float, *, blas_as_is: bool = False) -> dict:
    with blas_pools(blas_as_is):
        return _train_lesson(goal, cfg, data_opts, max_seconds)


def _train_lesson(goal: LessonGoal, cfg, data_opts: dict, max_seconds: float) -> dict:
    t0 = time.perf_counter()
    trainer = Trainer(cfg, load_dataset("shapes", **data_opts))
    state = {"shown": None, "what": ""}

    class Judge:  # after the page's own callbacks: judges each new evaluation as the Train page does
        def on_step(self, t, record) -> None:
            if t.evals and t.evals[-1].step == t.step_count:
                ok, state["what"] = _point(goal, t)
                if ok and state["shown"] is None:
                    state["shown"] = time.perf_counter() - t0

        def on_run_end(self, t, finished) -> None:
            self.on_step(t, None)  # the end-of-run evaluation lands after the last on_step

    callbacks = [*trainer.default_callbacks(), Judge()]

    def stop() -> bool:
        return state["shown"] is not None or time.perf_counter() - t0 >= max_seconds

    # The run the page starts (cfg.steps, evaluated at its end); a kNN goal not reached yet keeps training, up to
    # 4x cfg.steps in all, as a user may extend the run.
    trainer.run(max(cfg.steps, 1), callbacks=callbacks, stop=stop)
    if goal.kind == "knn_at_least":
        trainer.run(3 * max(cfg.steps, 1), callbacks=callbacks, stop=stop)
    shown, what = state["shown"], state["what"]
    return {"seconds": shown, "what": what, "step": trainer.step_count,
            "width": cfg.encoder.width, "size": data_opts["size"], "batch": cfg.batch_size}


def lab_lesson(doc: dict) -> dict:
    from core.augment import AugmentConfig, preview, recipe_for

    s = doc["settings"]
    t0 = time.perf_counter()
    data = load_dataset(s.get("lab.dataset", "shapes"))
    base = recipe_for(data.name).to_dict()  # the Lab's defaults follow the dataset's recipe
    base.update({k[4:]: tuple(v) if isinstance(v, list) else v for k, v in s.items() if k.startswith("aug.")})
    preview(data.images[int(s.get("lab.image", 0))], AugmentConfig.from_dict(base), n=8, seed=0)
    return {"seconds": time.perf_counter() - t0, "what": "8 views drawn", "step": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lessons", default="all", help="comma-separated preset ids, or 'all'")
    ap.add_argument("--old", action="store_true", help="also run each Train lesson at width 32 on 32 px images")
    ap.add_argument("--small-cnn", action="store_true",
                    help="also run each Train lesson on small_cnn (the lessons before fast_cnn)")
    ap.add_argument("--blas-as-is", action="store_true",
                    help="also run each Train lesson with numpy's BLAS pools left alone in evaluations")
    ap.add_argument("--max-seconds", type=float, default=90.0)
    args = ap.parse_args()
    print(machine_info())
    print(f"load average {os.getloadavg()[0]:.1f} at the start; goal: each lesson's point within {GOAL_S:.0f} s")
    warm_up()
    paths = sorted(PRESETS.glob("*.json"))
    if args.lessons != "all":
        paths = [PRESETS / f"{n}.json" for n in args.lessons.split(",")]
    rows = []
    for path in paths:
        doc = json.loads(path.read_text())
        name = path.stem
        if doc["page"] == "train":
            cfg, data = lesson_config(path)
            variants = [("lesson", cfg, data)]
            if args.blas_as_is:
                variants.insert(0, ("BLAS pools as is", cfg, data))
            if args.small_cnn:
                variants.append(("small_cnn", replace(cfg, encoder=replace(cfg.encoder, arch="small_cnn")), data))
            if args.old:
                old = replace(cfg, encoder=EncoderConfig(width=32))
                variants.append(("old: w32, 32 px", old, {**data, "size": 32}))
        else:
            variants = [("lesson", None, None)]
        for label, c, d in variants:
            r = train_lesson(LessonGoal.from_dict(doc["goal"]), c, d, args.max_seconds,
                             blas_as_is=label == "BLAS pools as is") if c is not None else lab_lesson(doc)
            rows.append((name, label, r))
            shown = f"{r['seconds']:.1f} s" if r["seconds"] is not None else "not shown"
            print(f"  {name:<15} {label:<16} {shown:>10} at step {r['step']:4d}: {r['what']}", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    for name, label, r in rows:
        met = "met" if r["seconds"] is not None and r["seconds"] <= GOAL_S else "NOT met"
        shown = f"{r['seconds']:.1f} s" if r["seconds"] is not None else "not shown"
        print(f"  {name:<15} {label:<16} {shown:>10}  goal {met}")


if __name__ == "__main__":
    main()
