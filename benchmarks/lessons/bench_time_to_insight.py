"""Time to insight: seconds from pressing Play until a lesson shows its point, data, model and every evaluation
included, as the page pays them. Two parts (``--part``, default all):

``first``: the first lesson (SimCLR on shapes) until held-out shape kNN reaches ``--target`` (0.95). Several recipes
run one after the other in the same process, so their ratios are measured side by side: ``lesson`` (the Home page's
preset as the Train page builds it), ``textbook`` (``core.train.default_preset``: small_cnn width 32, batch 256,
32 px), the textbook with one lever changed, and the lesson with one lever changed (``--recipes all`` lists them;
``--recipe JSON`` adds one: ``name`` plus any of ``arch``, ``w`` (width), ``size``, ``b`` (batch), ``lr``, ``n``,
``aug`` (augmentation overrides) or another TrainConfig field, applied to the lesson). ``--two-ranks`` also trains
the lesson data-parallel in two one-thread processes (``core.distributed``, gloo on 127.0.0.1, the global batch
split in two) and prints its seconds from the spawn and from both ranks being ready. ``--blas-compare`` runs each
recipe also as ``NAME/blas-as-is`` (numpy's BLAS pools left alone in evaluations and snapshots). The untrained
encoder's score is printed too: an untrained CNN already gets ~0.8 on simple shapes.

``home``: every lesson on the Home page (assets/presets) until its point, judged by ``core.lessons.goal_progress``
as the Train page judges it (goal 30 s each): a kNN goal trains on past the preset's steps (up to 4x) as a user may
extend the run; a "finished" goal waits for the run's end; a Lab lesson draws its views. ``--old`` (width 32 at
32 px), ``--small-cnn`` and ``--blas-as-is`` run each Train lesson's variant beside it.

    python benchmarks/lessons/bench_time_to_insight.py --part first --recipes lesson --seeds 0,1,2 --max-seconds 60
    python benchmarks/lessons/bench_time_to_insight.py --part first --recipes textbook,lesson,lesson_small_cnn
    python benchmarks/lessons/bench_time_to_insight.py --part first --recipes lesson --two-ranks --seeds 0,1,2
    python benchmarks/lessons/bench_time_to_insight.py --part first --recipes lesson --threads 1 \\
        --recipe '{"name": "b64", "b": 64, "lr": 4e-3}' --recipe '{"name": "crop 0.3", "aug": {"crop_scale": [0.3, 1]}}'
    python benchmarks/lessons/bench_time_to_insight.py --part home --lessons shortcut,temperature --small-cnn
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ROOT, load_harness, machine_info, report  # noqa: E402
from benchmarks._lesson import blas_pools, lesson_config, warm_up  # noqa: E402

from core.augment import AugmentConfig  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.device import pick_device  # noqa: E402
from core.metrics import knn_accuracy  # noqa: E402
from core.models import EncoderConfig  # noqa: E402
from core.train import Trainer, TrainConfig, default_preset  # noqa: E402

QUESTION = "Seconds from Play to the point: the first lesson (recipes, seeds, two ranks) and every Home lesson"
FULL = ["--recipes", "lesson,textbook", "--seeds", "0,1,2", "--max-seconds", "60"]
QUICK = ["--recipes", "lesson", "--max-seconds", "10", "--lessons", "colour_jitter,temperature",
         "--home-max-seconds", "15"]
MINUTES = (1, 8)


PRESETS = ROOT / "assets" / "presets"
HOME_GOAL_S = 30.0
AS_IS = "/blas-as-is"
TEXTBOOK = (default_preset(), {"n": 5000, "size": 32, "seed": 0})


def recipes() -> dict[str, tuple[TrainConfig, dict]]:
    """name -> (config, dataset options): the lesson, the textbook run, and each with one lever changed."""
    old_cfg, old_data = TEXTBOOK
    new_cfg, new_data = lesson_config()
    out = {"lesson": (new_cfg, new_data), "textbook": (old_cfg, old_data)}
    # The textbook with one lever changed.
    out["batch128"] = (replace(old_cfg, batch_size=128), old_data)
    out["batch128_lr4e-3"] = (replace(old_cfg, batch_size=128, lr=4e-3), old_data)
    out["lr4e-3"] = (replace(old_cfg, lr=4e-3), old_data)
    out["cosine_lr4e-3"] = (replace(old_cfg, lr=4e-3, lr_schedule="cosine"), old_data)
    out["width16"] = (replace(old_cfg, encoder=EncoderConfig(width=16)), old_data)
    out["size24"] = (old_cfg, {**old_data, "size": 24})
    out["cheap_eval"] = (replace(old_cfg, knn_reference=1000, eval_every=10), {**old_data, "n": 2500})
    out["bf16"] = (replace(old_cfg, precision="bf16"), old_data)
    out["batch128_lr4e-3_500steps"] = (replace(old_cfg, batch_size=128, lr=4e-3, steps=500), old_data)
    small = replace(old_cfg, encoder=EncoderConfig(width=16))
    out["w16_s24"] = (small, {**old_data, "size": 24})
    out["w16_s24_b128_lr6e-3"] = (replace(small, batch_size=128, lr=6e-3), {**old_data, "size": 24})
    out["w16_s24_b64_lr4e-3"] = (replace(small, batch_size=64, lr=4e-3), {**old_data, "size": 24})
    out["combined"] = (replace(old_cfg, batch_size=128, lr=4e-3, lr_schedule="cosine", steps=300,
                               encoder=EncoderConfig(width=16), knn_reference=1000, eval_every=10),
                       {**old_data, "n": 2500})
    # The lesson with one lever changed: small_cnn (a full-resolution first layer) instead of fast_cnn, bf16 autocast
    # (worth it only where core.device says the CPU gains), fp32 whatever the CPU, crops down to 30% of the area.
    out["lesson_small_cnn"] = (replace(new_cfg, encoder=replace(new_cfg.encoder, arch="small_cnn")), new_data)
    out["lesson_bf16"] = (replace(new_cfg, precision="bf16"), new_data)
    out["lesson_fp32"] = (replace(new_cfg, precision="fp32"), new_data)
    out["lesson_crops30"] = (replace(new_cfg, augment=replace(new_cfg.augment, crop_scale=(0.3, 1.0))), new_data)
    return out


def custom_recipe(spec: dict) -> tuple[str, tuple[TrainConfig, dict]]:
    """A recipe from JSON: the lesson with the spec's changes (see the module's docstring)."""
    base, data = lesson_config()
    kw = dict(spec)
    name = kw.pop("name")
    data = {**data, "size": kw.pop("size", data["size"]), "n": kw.pop("n", data["n"])}
    aug = kw.pop("aug", None)
    enc = replace(base.encoder, arch=kw.pop("arch", base.encoder.arch), width=kw.pop("w", base.encoder.width))
    cfg = replace(base, encoder=enc, batch_size=kw.pop("b", base.batch_size), **kw)
    if aug:
        cfg = replace(cfg, augment=AugmentConfig.from_dict({**cfg.augment.to_dict(), **aug}))
    return name, (cfg, data)


class Goal:
    """A run callback: the best shape kNN so far, and the seconds since ``t_start`` when it first reached
    ``target``."""

    def __init__(self, target: float, t_start: float) -> None:
        self.target, self.t_start = target, t_start
        self.best, self.reached = 0.0, None

    def on_step(self, trainer, record) -> None:
        ev = trainer.evals[-1] if trainer.evals else None
        if ev is not None and ev.step == trainer.step_count:
            self.best = max(self.best, ev.knn["shape"])
            if ev.knn["shape"] >= self.target and self.reached is None:
                self.reached = time.perf_counter() - self.t_start


def run(name: str, cfg: TrainConfig, data_opts: dict, target: float, max_seconds: float, seed: int) -> dict:
    with blas_pools(name.endswith(AS_IS)):
        return _run(name, cfg, data_opts, target, max_seconds, seed)


def _run(name: str, cfg: TrainConfig, data_opts: dict, target: float, max_seconds: float, seed: int) -> dict:
    t_start = time.perf_counter()
    data = load_dataset("shapes", **data_opts)
    cfg = replace(cfg, seed=seed, steps=max(cfg.steps, 1))
    trainer = Trainer(cfg, data)
    setup = time.perf_counter() - t_start
    # The untrained score, outside the clock (the page does not compute it).
    t_u = time.perf_counter()
    untrained = knn_accuracy(trainer._features(trainer._knn_ref), trainer._knn_ref.labels["shape"],
                             trainer._features(trainer.heldout), trainer.heldout.labels["shape"], k=cfg.knn_k)
    t_start += time.perf_counter() - t_u
    goal = Goal(target, t_start)
    # The page's schedule (Trainer.default_callbacks: an evaluation after step 1 and every eval_every steps), until
    # the goal or the time limit.
    trainer.run(10**9, callbacks=[*trainer.default_callbacks(), goal],
                stop=lambda: goal.reached is not None or time.perf_counter() - t_start >= max_seconds)
    reached, best, last_step = goal.reached, goal.best, trainer.step_count
    steps_s = last_step / max(trainer.seconds, 1e-9)
    result = {"name": name, "seconds": reached, "step": last_step, "setup": setup, "untrained": untrained,
              "best": best, "steps_per_s": steps_s, "loss": trainer.history[-1].loss,
              "batch": cfg.batch_size, "lr": cfg.lr, "schedule": cfg.lr_schedule, "precision": trainer.precision,
              "width": cfg.encoder.width, "size": data_opts.get("size"), "n": data_opts.get("n"),
              "eval_every": cfg.eval_every, "knn_reference": cfg.knn_reference}
    shown = f"{reached:6.1f} s" if reached is not None else f"  >{max_seconds:.0f} s"
    print(f"{name:<16} {shown} at step {last_step:4d} | setup {setup:4.1f} s | {steps_s:5.2f} steps/s (evals "
          f"included, {trainer.precision}) | untrained {untrained:.3f} -> best {best:.3f} | "
          f"last loss {result['loss']:.3f}", flush=True)
    return result


# ------------------------------------------------------------------------------- the lesson on two ranks
WORLD = 2


def _rank(rank: int, port: int, seed: int, target: float, max_s: float, t_spawn: float, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from core import distributed

    ctx = distributed.init_from_env("cpu")
    try:
        dist.barrier()
        t_ready = time.time()
        cfg, data_opts = lesson_config()
        cfg = replace(cfg, seed=seed, batch_size=cfg.batch_size // WORLD)
        trainer = distributed.make_distributed(Trainer(cfg, load_dataset("shapes", **data_opts), device="cpu"), ctx)
        state = {"reached": None, "best": 0.0}
        flag = torch.zeros(1)

        class RankGoal:  # after the page's own callbacks; rank 0 decides, every rank stops at the same step
            def on_step(self, t, record) -> None:
                ev = t.evals[-1] if t.evals else None
                if rank == 0:
                    if ev is not None and ev.step == t.step_count:
                        state["best"] = max(state["best"], ev.knn["shape"])
                        if ev.knn["shape"] >= target:
                            state["reached"] = time.time()
                    flag[0] = 1.0 if state["reached"] is not None or time.time() - t_ready > max_s else 0.0
                dist.broadcast(flag, 0)

        trainer.run(10**9, callbacks=[*trainer.default_callbacks(), RankGoal()], stop=lambda: bool(flag[0] > 0))
        reached = state["reached"]
        if rank == 0:
            Path(out).write_text(json.dumps({
                "from_spawn": None if reached is None else reached - t_spawn,
                "from_ready": None if reached is None else reached - t_ready,
                "startup": t_ready - t_spawn, "step": trainer.step_count, "best": state["best"],
                "steps_per_s": trainer.step_count / max(trainer.seconds, 1e-9)}))
    finally:
        distributed.shutdown()


def run_two_ranks(seed: int, target: float, max_s: float) -> dict:
    """The lesson data-parallel in ``WORLD`` one-thread processes (the global batch split between them)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.json")
        t_spawn = time.time()
        mp.spawn(_rank, args=(load_harness().free_port(), seed, target, max_s, t_spawn, out), nprocs=WORLD, join=True)
        r = json.loads(Path(out).read_text())
    shown = f"{r['from_ready']:.1f} s" if r["from_ready"] is not None else "not reached"
    print(f"{'two ranks':<16} {shown} from ready (start-up {r['startup']:.1f} s) at step {r['step']} | "
          f"{r['steps_per_s']:.2f} steps/s (evals included) | best {r['best']:.3f}", flush=True)
    return r


# ------------------------------------------------------------------------------- every Home lesson
def _train_lesson(goal, cfg: TrainConfig, data_opts: dict, max_seconds: float) -> dict:
    from core.lessons import goal_progress

    t0 = time.perf_counter()
    trainer = Trainer(cfg, load_dataset("shapes", **data_opts))
    state = {"shown": None, "what": ""}

    class Judge:  # after the page's own callbacks: judges each new evaluation as the Train page does
        def on_step(self, t, record) -> None:
            if t.evals and t.evals[-1].step == t.step_count:
                p = goal_progress(goal, t.evals, t.step_count, t.cfg.steps)
                state["what"] = f"{goal.text}: {p.detail}" + (" (missed)" if p.missed else "")
                if p.reached and state["shown"] is None:
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
    return {"seconds": state["shown"], "what": state["what"], "step": trainer.step_count}


def _lab_lesson(doc: dict) -> dict:
    from core.augment import preview, recipe_for

    s = doc["settings"]
    t0 = time.perf_counter()
    data = load_dataset(s.get("lab.dataset", "shapes"))
    base = recipe_for(data.name).to_dict()  # the Lab's defaults follow the dataset's recipe
    base.update({k[4:]: tuple(v) if isinstance(v, list) else v for k, v in s.items() if k.startswith("aug.")})
    preview(data.images[int(s.get("lab.image", 0))], AugmentConfig.from_dict(base), n=8, seed=0)
    return {"seconds": time.perf_counter() - t0, "what": "8 views drawn", "step": 0}


def part_home(args) -> None:
    from core.lessons import LessonGoal

    paths = sorted(PRESETS.glob("*.json"))
    if args.lessons != "all":
        paths = [PRESETS / f"{n}.json" for n in args.lessons.split(",")]
    print(f"\n(home) each Home lesson's point, goal {HOME_GOAL_S:.0f} s; load average {os.getloadavg()[0]:.1f}")
    for path in paths:
        doc = json.loads(path.read_text())
        if doc["page"] != "train":
            variants = [("lesson", None, None)]
        else:
            cfg, data = lesson_config(path)
            variants = [("lesson", cfg, data)]
            if args.blas_as_is:
                variants.insert(0, ("BLAS pools as is", cfg, data))
            if args.small_cnn:
                variants.append(("small_cnn", replace(cfg, encoder=replace(cfg.encoder, arch="small_cnn")), data))
            if args.old:
                variants.append(("w32, 32 px", replace(cfg, encoder=EncoderConfig(width=32)), {**data, "size": 32}))
        for label, c, d in variants:
            if c is None:
                r = _lab_lesson(doc)
            else:
                with blas_pools(label == "BLAS pools as is"):
                    r = _train_lesson(LessonGoal.from_dict(doc["goal"]), c, d, args.home_max_seconds)
            shown = f"{r['seconds']:.1f} s" if r["seconds"] is not None else "not shown"
            met = "met" if r["seconds"] is not None and r["seconds"] <= HOME_GOAL_S else "not met"
            print(f"  {path.stem:<15} {label:<16} {shown:>10} at step {r['step']:4d}: {r['what']}", flush=True)
            report(f"Home lesson `{path.stem}`" + ("" if label == "lesson" else f" ({label})") + ": seconds to its point",
                   shown, beside=f"step {r['step']}: {r['what']}", goal=f"<= {HOME_GOAL_S:.0f} s: {met}")


# ------------------------------------------------------------------------------- the first lesson
def part_first(args) -> None:
    device = pick_device()
    goal = args.goal if args.goal is not None else (20.0 if device.type == "cpu" else 3.0)
    print(f"\n(first) device {device.type}: {torch.get_num_threads()} torch threads; load average "
          f"{os.getloadavg()[0]:.1f}; goal {goal:.0f} s ({device.type.upper()} figure)")
    table = recipes()
    names = list(table) if args.recipes == "all" else [n for n in args.recipes.split(",") if n]
    for raw in args.recipe:
        name, value = custom_recipe(json.loads(raw))
        table[name] = value
        names.append(name)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(table)}")
    if args.blas_compare:
        names = [m for n in names for m in (n + AS_IS, n)]
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    runs = [dict(run(n, *table[n.removesuffix(AS_IS)], args.target, args.max_seconds, s), seed=s)
            for s in seeds for n in names]
    ranks = {s: run_two_ranks(s, args.target, args.max_seconds) for s in seeds} if args.two_ranks else {}
    results = []
    for n in names:  # one line per recipe: the median over the seeds (a run that never got there counts as inf)
        mine = [r for r in runs if r["name"] == n]
        median = statistics.median(r["seconds"] if r["seconds"] is not None else math.inf for r in mine)
        results.append({**mine[0], "seconds": median if math.isfinite(median) else None,
                        "per_seed": {r["seed"]: r["seconds"] for r in mine}, "runs": mine})
    # Ratios against the textbook recipe, or against the first one named when the textbook did not run.
    base_name = "textbook" if "textbook" in names else names[0]
    base = next((r for r in results if r["name"] == base_name and r["seconds"]), None)
    print(f"\n[{device.type}] time to shape kNN >= {args.target} (goal {goal:.0f} s); load average "
          f"{os.getloadavg()[0]:.1f}")
    for r in results:
        ratio = f"{base['seconds'] / r['seconds']:.2f}x faster than {base_name}" if base and r["seconds"] else ""
        met = "met" if r["seconds"] and r["seconds"] <= goal else "not met"
        sec = f"{r['seconds']:.1f} s" if r["seconds"] else "not reached"
        per_seed = ", ".join(f"{s}: {v:.1f} s" if v else f"{s}: -" for s, v in r["per_seed"].items())
        print(f"  {r['name']:<24} {sec:>12}  {ratio:<31} goal {met}" + (f"  seeds {per_seed}" if len(seeds) > 1 else ""))
        steps = "/".join(str(x["step"]) for x in r["runs"])
        report(f"first lesson, recipe `{r['name']}`: seconds to held-out shape kNN >= {args.target}"
               + (f" (median of {len(seeds)} seeds)" if len(seeds) > 1 else ""),
               f"**{sec}**" if r["name"] == "lesson" else sec,
               beside=(f"seeds {per_seed}; " if len(seeds) > 1 else "") + f"steps {steps}; untrained "
                      f"{r['untrained']:.3f} -> best {r['best']:.3f}" + (f"; {ratio}" if ratio else ""),
               goal=f"<= {goal:.0f} s: {met}")
    if ranks:
        def med(xs):
            return statistics.median(x if x is not None else math.inf for x in xs)

        ready, spawn = med(r["from_ready"] for r in ranks.values()), med(r["from_spawn"] for r in ranks.values())
        print(f"  two ranks (lesson): {ready:.1f} s from ready, {spawn:.1f} s from the spawn (median)")
        report(f"first lesson on {WORLD} one-thread ranks: seconds to shape kNN >= {args.target} from ready"
               + (f" (median of {len(seeds)} seeds)" if len(seeds) > 1 else ""),
               f"{ready:.1f} s" if math.isfinite(ready) else "not reached",
               beside=f"from the spawn {spawn:.1f} s; steps " + "/".join(str(r["step"]) for r in ranks.values()),
               goal=f"<= {goal:.0f} s: {'met' if ready <= goal else 'not met'}")
    if args.blas_compare:
        print("\nOne BLAS thread in evaluations and snapshots (committed) against the BLAS pools as they are:")
        by_name = {r["name"]: r for r in results}
        for n in names[1::2]:
            a, b = by_name[n + AS_IS], by_name[n]
            for s in seeds:
                ra, rb = next(x for x in a["runs"] if x["seed"] == s), next(x for x in b["runs"] if x["seed"] == s)
                secs = (f"{ra['seconds']:.1f} s -> {rb['seconds']:.1f} s ({ra['seconds'] / rb['seconds']:.2f}x)"
                        if ra["seconds"] and rb["seconds"] else "not reached by both")
                print(f"  {n} seed {s}: {secs}; {ra['steps_per_s']:.2f} -> {rb['steps_per_s']:.2f} steps/s "
                      f"({rb['steps_per_s'] / ra['steps_per_s']:.2f}x), steps {ra['step']} / {rb['step']}")
    if args.json:
        args.json.write_text(json.dumps({"device": device.type, "results": results, "two_ranks": ranks}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("all", "first", "home"), default="all")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    first = ap.add_argument_group("first: the first lesson")
    first.add_argument("--target", type=float, default=0.95)
    first.add_argument("--max-seconds", type=float, default=150.0, help="give up on a recipe after this long")
    first.add_argument("--recipes", default="lesson,textbook", help="comma-separated names, or 'all'")
    first.add_argument("--recipe", action="append", default=[], metavar="JSON", help="an extra recipe (repeatable)")
    first.add_argument("--seed", type=int, default=0)
    first.add_argument("--seeds", default=None, help="comma-separated seeds: every recipe runs once per seed")
    first.add_argument("--goal", type=float, default=None, help="seconds (default: 20 on CPU, 3 on a GPU)")
    first.add_argument("--two-ranks", action="store_true", help=f"also the lesson on {WORLD} one-thread processes")
    first.add_argument("--json", type=Path, default=None, help="also write the results here")
    first.add_argument("--blas-compare", action="store_true",
                       help=f"run each recipe also as NAME{AS_IS}: numpy's BLAS pools left alone in evaluations")
    home = ap.add_argument_group("home: every Home lesson")
    home.add_argument("--lessons", default="all", help="comma-separated preset ids, or 'all'")
    home.add_argument("--home-max-seconds", type=float, default=90.0)
    home.add_argument("--old", action="store_true", help="also each Train lesson at width 32 on 32 px images")
    home.add_argument("--small-cnn", action="store_true", help="also each Train lesson on small_cnn")
    home.add_argument("--blas-as-is", action="store_true",
                      help="also each Train lesson with numpy's BLAS pools left alone in evaluations")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info())
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    warm_up()
    if args.part in ("all", "first"):
        part_first(args)
    if args.part in ("all", "home"):
        part_home(args)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
