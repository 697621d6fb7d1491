"""The Loss Lab's presets: small seeded experiments that reproduce, or honestly fail to reproduce, a textbook
claim. Each returns a :class:`PresetResult` whose ``reproduced`` flag and verdict are decided from the numbers of
the run it describes; its :class:`Panel` list is the chart data the page draws.

Presets 1 and 3-6 train :class:`core.train.Trainer` on the built-in shapes (:mod:`core.lab.shapes_runs`);
presets 2 and 7 train the toy (:class:`core.lab.toy.ToyTrainer`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from core import losses
from core import settings_schema as SCHEMA
from core.errors import PlaygroundError
from core.lab.shapes_runs import (PRESET_STEPS, Progress, chance_level, describe, no_progress, probe_accuracy,
                                  shapes_config, trained_run)
from core.lab.toy import TOY_LOSS_NAMES, ToyConfig, ToyTrainer


@dataclass
class Panel:
    """One chart of a preset's figure: lines against ``x`` (steps) or bars over categories."""

    title: str
    kind: str  # "line" | "bar"
    x: list  # steps, or category names for bars
    series: dict[str, list[float]]
    x_label: str = "step"
    y_label: str = ""


@dataclass
class PresetResult:
    key: str
    title: str
    claim: str  # the textbook statement, with its source
    reproduced: bool  # decided from the numbers below, not written by hand
    verdict: str  # one or two sentences with the measured numbers
    panels: list[Panel]
    numbers: dict[str, float]
    setup: str  # what was trained, so the run can be repeated (benchmarks/lessons/bench_lab_presets.py)
    seconds: float = 0.0



def preset_temperature(progress: Progress = no_progress, taus: tuple[float, ...] = (0.07, 0.2, 1.0),
                       steps: int = PRESET_STEPS) -> PresetResult:
    """Wang & Liu 2021: a lower temperature gives a more uniform embedding and focuses the gradient on the
    hardest negatives. SimCLR on shapes at each t; uniformity and the hardest negative's share against steps."""
    runs = {t: trained_run(shapes_config(temperature=t, steps=steps), progress, i / len(taus), (i + 1) / len(taus),
                        f"t = {t:g}") for i, t in enumerate(taus)}
    steps_x = next(iter(runs.values())).steps
    lo, hi = min(taus), max(taus)
    u_lo, u_hi = runs[lo].curves["uniformity"][-1], runs[hi].curves["uniformity"][-1]
    s_lo, s_hi = runs[lo].curves["hardest_share"][-1], runs[hi].curves["hardest_share"][-1]
    focus = s_lo > s_hi
    more_uniform = u_lo < u_hi
    first_flip = next((s for s, a, b in zip(steps_x, runs[lo].curves["uniformity"], runs[hi].curves["uniformity"])
                       if a < b and s > 0), None)
    final_u = {t: r.curves["uniformity"][-1] for t, r in runs.items()}
    most_uniform = min(final_u, key=final_u.get)
    verdict = (f"After {steps} steps the hardest negative takes {s_lo:.1%} of the push at t = {lo:g} against "
               f"{s_hi:.1%} at t = {hi:g} ({'as claimed' if focus else 'NOT as claimed'}). Uniformity: "
               + ", ".join(f"{u:.2f} at t = {t:g}" for t, u in final_u.items()) + ": ")
    if more_uniform and most_uniform == lo:
        verdict += f"the lowest temperature is the most uniform (ahead of t = {hi:g} from step {first_flip})."
    else:
        more_uniform = False
        verdict += (f"the lowest temperature is NOT the most uniform here (t = {most_uniform:g} is). Which temperature "
                    "is more uniform depends on the stage of training and the recipe; more steps may change the order.")
    return PresetResult(
        key="temperature", title="Temperature: uniformity and hard negatives",
        claim="Lower temperature makes the embedding more uniform and focuses the gradient on the hardest "
              "negatives (Wang & Liu 2021).",
        reproduced=bool(focus and more_uniform), verdict=verdict,
        panels=[Panel("Uniformity (lower = more spread), projection space", "line", steps_x,
                      {f"t = {t:g}": r.curves["uniformity"] for t, r in runs.items()}, y_label="uniformity"),
                Panel("Hardest negative's share of the push", "line", steps_x,
                      {f"t = {t:g}": r.curves["hardest_share"] for t, r in runs.items()}, y_label="share")],
        numbers={**{f"uniformity_t{t:g}": r.curves["uniformity"][-1] for t, r in runs.items()},
                 **{f"hardest_share_t{t:g}": r.curves["hardest_share"][-1] for t, r in runs.items()}},
        setup=describe(runs[lo].trainer.cfg, temperatures=taus),
        seconds=sum(r.seconds for r in runs.values()))


class _Progress:
    """A run callback reporting run ``index`` of ``count`` to a preset's ``progress`` every 20 steps."""

    def __init__(self, progress: Progress, index: int, count: int, label: str, steps: int) -> None:
        self.progress, self.index, self.count, self.label, self.steps = progress, index, count, label, steps

    def on_step(self, trainer, record) -> None:
        if record.step % 20 == 1 or record.step == self.steps:
            self.progress((self.index + record.step / self.steps) / self.count,
                          f"{self.label}: step {record.step} of {self.steps}")


def _toy_setup(run: ToyTrainer) -> str:
    """The setup of a toy run, read from its config."""
    cfg = run.cfg
    where = {2: "circle", 3: "sphere"}.get(cfg.dim, f"unit sphere in {cfg.dim}-D")
    return (f"the toy: {cfg.n_classes} classes x {cfg.per_class} points on the {where}, MLP, batch {run.batch_size}, "
            f"{cfg.steps} steps, seed {cfg.seed}")


def _rank_and_uniformity_panels(runs: dict[str, ToyTrainer]) -> list[Panel]:
    """The toy presets' two charts: effective rank and uniformity against steps, one line per loss."""
    x = [e.step for e in next(iter(runs.values())).evals]  # every run evaluates at the same steps
    return [Panel("Effective rank (3 = fills the sphere, 1 = one direction)", "line", x,
                  {TOY_LOSS_NAMES[k]: [e.effective_rank for e in r.evals] for k, r in runs.items()},
                  y_label="effective rank"),
            Panel("Uniformity (0 = all points equal)", "line", x,
                  {TOY_LOSS_NAMES[k]: [e.uniformity for e in r.evals] for k, r in runs.items()},
                  y_label="uniformity")]


def preset_collapse(progress: Progress = no_progress, steps: int = 200) -> PresetResult:
    """No negatives: the alignment term alone is minimised by mapping everything to one point (the toy, 3-D)."""
    runs = {}
    for i, loss in enumerate(("align", "nt_xent")):
        t = ToyTrainer(ToyConfig(loss=loss, dim=3, steps=steps, eval_every=10))
        t.run(callbacks=[*t.default_callbacks(), _Progress(progress, i, 2, TOY_LOSS_NAMES[loss], steps)])
        runs[loss] = t
    er = {k: r.evals[-1].effective_rank for k, r in runs.items()}
    un = {k: r.evals[-1].uniformity for k, r in runs.items()}
    collapsed = er["align"] < 1.2 and un["align"] > -0.1 and er["nt_xent"] > 2.5
    verdict = (f"Alignment only: effective rank {er['align']:.2f} and uniformity {un['align']:.3f} after {steps} "
               "steps (" + ("every point in one place" if er["align"] < 1.2 and un["align"] > -0.1 else
                            "not collapsed at this setting") + f"). With negatives (NT-Xent): rank "
               f"{er['nt_xent']:.2f}, uniformity {un['nt_xent']:.2f}.")
    return PresetResult(
        key="collapse", title="No negatives: collapse",
        claim="Without negatives, pulling positives together collapses the embedding: effective rank -> 1, "
              "uniformity -> 0 (Wang & Isola 2020).",
        reproduced=bool(collapsed), verdict=verdict,
        panels=_rank_and_uniformity_panels(runs),
        numbers={"effective_rank_align": er["align"], "uniformity_align": un["align"],
                 "effective_rank_nt_xent": er["nt_xent"], "uniformity_nt_xent": un["nt_xent"]},
        setup=f"{_toy_setup(runs['align'])}; alignment only vs NT-Xent t={runs['nt_xent'].cfg.temperature:g}")


def _mean_pair_cosine(points: np.ndarray) -> float:
    """Mean cosine similarity between different points (rows of unit vectors): 1 when all sit in one place."""
    sims = points @ points.T
    n = len(points)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def preset_no_negatives(progress: Progress = no_progress, steps: int = 200, seed: int = 0) -> PresetResult:
    """Collapse without negatives, and how VICReg avoids it (Bardes et al. 2022): the toy on the sphere trained
    with VICReg's invariance term alone (pull the two views together, nothing else) against the full VICReg loss,
    whose variance and covariance terms keep every output dimension spread over the batch. No negative pushes
    points apart in either run."""
    runs = {}
    for i, loss in enumerate(("invariance", "vicreg")):
        t = ToyTrainer(ToyConfig(loss=loss, dim=3, steps=steps, eval_every=10, seed=seed))
        t.run(callbacks=[*t.default_callbacks(), _Progress(progress, i, 2, TOY_LOSS_NAMES[loss], steps)])
        runs[loss] = t
    er = {k: r.evals[-1].effective_rank for k, r in runs.items()}
    un = {k: r.evals[-1].uniformity for k, r in runs.items()}
    cos = {k: _mean_pair_cosine(r.points()) for k, r in runs.items()}
    knn = {k: r.evals[-1].knn for k, r in runs.items()}
    collapsed = er["invariance"] < 1.2 or cos["invariance"] > 0.95
    spread = er["vicreg"] > 2.0 and cos["vicreg"] < 0.5
    verdict = (f"Invariance term alone, after {steps} steps: effective rank {er['invariance']:.2f} of 3, mean cosine "
               f"similarity between different points {cos['invariance']:.2f}, uniformity {un['invariance']:.2f}: "
               + ("the points collapsed onto one direction, since matching two views is easiest when every input "
                  "maps to the same output. " if collapsed else "no collapse at this setting. ")
               + f"With VICReg's variance and covariance terms: rank {er['vicreg']:.2f}, mean cosine "
               f"{cos['vicreg']:.2f}, uniformity {un['vicreg']:.2f}, class kNN {knn['vicreg']:.2f} (against "
               f"{knn['invariance']:.2f}): "
               + ("spread over the sphere, though nothing pushes any two points apart." if spread else
                  "not spread at this setting."))
    return PresetResult(
        key="no_negatives", title="No negatives, no collapse: VICReg",
        claim="A loss that only pulls positives together collapses; VICReg avoids it without negatives by keeping "
              "each dimension's standard deviation at 1 (variance) and the dimensions decorrelated (covariance) "
              "(Bardes, Ponce & LeCun 2022).",
        reproduced=bool(collapsed and spread), verdict=verdict,
        panels=_rank_and_uniformity_panels(runs),
        numbers={**{f"effective_rank_{k}": v for k, v in er.items()}, **{f"uniformity_{k}": v for k, v in un.items()},
                 **{f"mean_cosine_{k}": v for k, v in cos.items()}, **{f"knn_{k}": v for k, v in knn.items()}},
        setup=f"{_toy_setup(runs['vicreg'])}; VICReg {losses.VICREG_INVARIANCE:g}/{losses.VICREG_VARIANCE:g}/"
              f"{losses.VICREG_COVARIANCE:g} vs its invariance term alone")


def preset_color_jitter(progress: Progress = no_progress, steps: int = PRESET_STEPS) -> PresetResult:
    """Colour jitter teaches colour invariance: linear probes for colour and shape, jitter on vs off."""
    base = shapes_config(steps=steps)
    off = replace(base, augment=replace(base.augment, color_jitter=False, grayscale=False))
    on_run = trained_run(base, progress, 0.0, 0.5, "colour jitter ON")
    off_run = trained_run(off, progress, 0.5, 1.0, "colour jitter OFF")
    acc = {name: {f: probe_accuracy(r.trainer, "encoder", f) for f in ("colour", "shape")}
           for name, r in (("jitter ON", on_run), ("jitter OFF", off_run))}
    on, offa = acc["jitter ON"], acc["jitter OFF"]
    falls = on["colour"] < offa["colour"] - 0.05
    shape_high = on["shape"] >= 0.9
    verdict = (f"Colour probe {on['colour']:.2f} with jitter vs {offa['colour']:.2f} without "
               f"({'falls, as claimed' if falls else 'does NOT fall'}); shape probe {on['shape']:.2f} vs "
               f"{offa['shape']:.2f} (chance {chance_level('shape'):.2f}). ")
    verdict += ("Shape stays high." if shape_high else
                f"Shape is not 'high' (0.9 or more) after {steps} small steps at batch {base.batch_size}; a longer "
                "run may get there.")
    return PresetResult(
        key="color_jitter", title="Colour jitter removes colour",
        claim="Colour jitter makes the embedding colour-invariant: colour probe accuracy falls, shape stays high "
              "(Chen et al. 2020, section 3).",
        reproduced=bool(falls and shape_high), verdict=verdict,
        panels=[Panel("Linear probe on held-out encoder features", "bar", ["colour", "shape"],
                      {k: [v["colour"], v["shape"]] for k, v in acc.items()}, x_label="factor",
                      y_label="accuracy")],
        numbers={"colour_on": on["colour"], "colour_off": offa["colour"], "shape_on": on["shape"],
                 "shape_off": offa["shape"]},
        setup=f"{describe(base)}; augment 'shapes' vs the same without colour jitter and grayscale",
        seconds=on_run.seconds + off_run.seconds)


def preset_negatives(progress: Progress = no_progress, batches: tuple[int, ...] = (16, 64, 128),
                     steps: int = PRESET_STEPS) -> PresetResult:
    """More negatives per step (a bigger batch) give better kNN accuracy at the same number of steps."""
    runs = {b: trained_run(shapes_config(batch_size=b, steps=steps), progress, i / len(batches),
                        (i + 1) / len(batches), f"batch {b}") for i, b in enumerate(batches)}
    steps_x = next(iter(runs.values())).steps
    final = {b: r.curves["knn_shape"][-1] for b, r in runs.items()}
    ordered = all(final[a] <= final[b] for a, b in zip(batches, batches[1:]))
    gain = final[max(batches)] - final[min(batches)]
    verdict = (f"Held-out shape kNN after {steps} steps: " +
               ", ".join(f"batch {b} ({2 * b - 2} negatives) {final[b]:.2f}" for b in batches) + ". "
               + ("More negatives, better neighbours." if ordered and gain > 0.02 else
                  "Not monotone at this scale; see the curves."))
    return PresetResult(
        key="negatives", title="More negatives, better kNN",
        claim="More negatives (a bigger batch or a MoCo queue) give better representations at the same number of "
              "steps (Chen et al. 2020, fig. 9; He et al. 2020).",
        reproduced=bool(ordered and gain > 0.02), verdict=verdict,
        panels=[Panel("Held-out shape kNN accuracy", "line", steps_x,
                      {f"batch {b}": r.curves["knn_shape"] for b, r in runs.items()}, y_label="kNN accuracy")],
        numbers={f"knn_shape_batch{b}": v for b, v in final.items()},
        setup=describe(runs[batches[0]].trainer.cfg, batches=batches),
        seconds=sum(r.seconds for r in runs.values()))


def preset_head(progress: Progress = no_progress, steps: int = PRESET_STEPS) -> PresetResult:
    """SimCLR's projection head: the loss acts on z = g(h), but the encoder output h is the better feature."""
    run = trained_run(shapes_config(steps=steps), progress, 0.0, 0.9, "SimCLR")
    acc = {space: {f: probe_accuracy(run.trainer, space, f) for f in ("shape", "colour")} for space in ("encoder",
                                                                                               "projection")}
    progress(1.0, "linear probes done")
    better = all(acc["encoder"][f] > acc["projection"][f] for f in ("shape", "colour"))
    verdict = ("Linear probe, encoder h vs projection z: " +
               "; ".join(f"{f} {acc['encoder'][f]:.2f} vs {acc['projection'][f]:.2f}" for f in ("shape", "colour"))
               + (". The head throws information away, as SimCLR found." if better else
                  ". Not better on every factor at this scale."))
    return PresetResult(
        key="head", title="Encoder beats projection head",
        claim="The representation before the projection head is better than after it on a linear probe, which is "
              "why SimCLR discards the head (Chen et al. 2020, section 4.2).",
        reproduced=bool(better), verdict=verdict,
        panels=[Panel("Linear probe on held-out images", "bar", ["shape", "colour"],
                      {f"{s} output": [acc[s]["shape"], acc[s]["colour"]] for s in acc}, x_label="factor",
                      y_label="accuracy")],
        numbers={f"{s}_{f}": v for s, d in acc.items() for f, v in d.items()},
        setup=f"{describe(run.trainer.cfg)}; probes on {len(run.trainer._knn_ref)} train / "
              f"{len(run.trainer.heldout)} held-out images", seconds=run.seconds)


def preset_shortcut(progress: Progress = no_progress, steps: int = PRESET_STEPS) -> PresetResult:
    """Shortcut learning: SimCLR's textbook hue jitter (0.1) leaves colour as a shortcut on shapes."""
    full = shapes_config(steps=steps)
    textbook = replace(full, augment=replace(full.augment, hue=0.1))
    runs = {"hue 0.1 (textbook)": trained_run(textbook, progress, 0.0, 0.5, "hue 0.1"),
            "hue 0.5 (full turn)": trained_run(full, progress, 0.5, 1.0, "hue 0.5")}
    steps_x = next(iter(runs.values())).steps
    (a, ra), (b, rb) = runs.items()
    sa, sb = ra.curves["knn_shape"], rb.curves["knn_shape"]
    ca, cb = ra.curves["knn_colour"][-1], rb.curves["knn_colour"][-1]
    fixed = sb[-1] > sa[-1] + 0.05
    verdict = (f"Shape kNN {sa[0]:.2f} -> {sa[-1]:.2f} with hue 0.1 and {sb[0]:.2f} -> {sb[-1]:.2f} with a full hue "
               f"turn; colour kNN ends at {ca:.2f} vs {cb:.2f}. Six hues 60 degrees apart survive a 0.1 jitter, so "
               "matching colour is enough to find the other view: " +
               ("the full turn takes the shortcut away." if fixed else "at this scale the fix does not show yet."))
    return PresetResult(
        key="shortcut", title="Shortcut learning: hue 0.1 vs a full turn",
        claim="With SimCLR's textbook hue jitter (0.1) colour stays a shortcut on these shapes and shape kNN does not "
              "improve; a full hue turn removes it (measured in benchmarks/RESULTS.md at full size).",
        reproduced=bool(fixed), verdict=verdict,
        panels=[Panel("Held-out shape kNN accuracy", "line", steps_x,
                      {k: r.curves["knn_shape"] for k, r in runs.items()}, y_label="kNN accuracy"),
                Panel("Held-out colour kNN accuracy", "line", steps_x,
                      {k: r.curves["knn_colour"] for k, r in runs.items()}, y_label="kNN accuracy")],
        numbers={"shape_hue0.1": sa[-1], "shape_hue0.5": sb[-1], "colour_hue0.1": ca, "colour_hue0.5": cb},
        setup=f"{describe(full)}; augment 'shapes' with hue {textbook.augment.hue:g} vs {full.augment.hue:g}",
        seconds=ra.seconds + rb.seconds)


PRESETS: dict[str, tuple[str, Callable[..., PresetResult]]] = {
    "temperature": ("1. Temperature: uniformity and hard negatives", preset_temperature),
    "collapse": ("2. No negatives: collapse", preset_collapse),
    "color_jitter": ("3. Colour jitter removes colour", preset_color_jitter),
    "negatives": ("4. More negatives, better kNN", preset_negatives),
    "head": ("5. Encoder beats projection head", preset_head),
    "shortcut": ("6. Shortcut learning: hue 0.1 vs a full turn", preset_shortcut),
    "no_negatives": ("7. No negatives, no collapse: VICReg", preset_no_negatives),
}

if tuple(PRESETS) != SCHEMA.LAB_PRESETS:  # the page's choices come from the schema; a developer's error at import
    raise RuntimeError("core.lab.PRESETS must hold exactly core.settings_schema.LAB_PRESETS, in its order.")

def run_preset(key: str, progress: Progress | None = None, **params) -> PresetResult:
    """Run one of :data:`PRESETS` (``progress(fraction, message)`` is called as it goes); times the whole call."""
    if key not in PRESETS:
        raise PlaygroundError(f"Unknown preset {key!r}; choose one of {', '.join(PRESETS)}.")
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        result = PRESETS[key][1](progress or no_progress, **params)
    result.seconds = time.perf_counter() - t0
    return result
