"""What the first lesson's live map shows at the lesson's goal moment (issue 30), and what it costs.

Trains the first lesson (the Home page's preset, as the Train page builds it) with a bare Trainer until its goal
(held-out shape kNN >= 0.95 at an evaluation), then prints, on the 400 probe images the page draws:

* shape 10-NN (leave-one-out, cosine) in the encoder vectors and in the projection vectors;
* the same figure in each map: the live map the page draws (``Snapshot.coords``), and PCA / a fresh t-SNE / UMAP
  of the same vectors; for the encoder space, PCA is what the page drew before this change;
* the live map's time per snapshot (wall and CPU seconds of ``core.projection.live_map`` inside the trainer);
* the goal: the live map's shape 10-NN >= 0.8 and within 0.15 of the vectors' it is made of.

Two recipes side by side, one seed after the other: ``no_inversion_pca`` (the lesson before issue 30: brightness
0.4 and no inversion, PCA map) and ``lesson`` (the preset as shipped: brightness 0.8 and half the views inverted, so background
is no longer what tells images apart; t-SNE map). ``--demo`` also prints the Explorer demo's figures (the shipped
assets/demo model, its default UMAP map of the 1,000 shown images).

    python benchmarks/quality/bench_live_map.py --seeds 0,1,2
    python benchmarks/quality/bench_live_map.py --seeds 0 --recipes lesson --demo
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ROOT, machine_info, report  # noqa: E402
from benchmarks._lesson import lesson_config  # noqa: E402

import core.train
from core.data import load_dataset
from core.metrics import knn_accuracies
from core.projection import live_map, map_trust, project, warm_up
from core.train import Trainer

QUESTION = "Is the first lesson's live map honest at its goal moment (shape 10-NN in the map vs its vectors)?"
FULL = ["--demo"]
QUICK = ["--seeds", "0", "--recipes", "lesson", "--max-steps", "30"]
MINUTES = (1, 10)


MAP_TIMES: list[tuple[float, float]] = []  # (wall, cpu) seconds of every live map the trainer made


def _timed_live_map(*args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = live_map(*args, **kwargs)
    MAP_TIMES.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


core.train.live_map = _timed_live_map  # the trainer's snapshots go through the timer


def recipes() -> dict:
    cfg, data = lesson_config()
    old_aug = replace(cfg.augment, brightness=0.4, solarize=False, solarize_threshold=0.5, solarize_p=0.2)
    return {"no_inversion_pca": (replace(cfg, augment=old_aug, map_method="pca"), data),
            "lesson": (cfg, data)}


def shape_knn(vectors, coords, labels) -> tuple[float, float]:
    t = map_trust(vectors, coords, labels, factor="shape")
    return t.vectors_knn, t.map_knn


def run(name: str, cfg, data: dict, seed: int, max_steps: int) -> dict:
    MAP_TIMES.clear()
    trainer = Trainer(replace(cfg, seed=seed, steps=max_steps), load_dataset("shapes", **data))
    t0 = time.perf_counter()

    class Goal:  # after the page's own callbacks (snapshots, and evaluations after step 1 and every eval_every)
        reached = None

        def on_step(self, t, record) -> None:
            ev = t.evals[-1] if t.evals else None
            if ev is not None and ev.step == t.step_count and ev.knn["shape"] >= 0.95 and self.reached is None:
                self.reached = t.step_count

    g = Goal()
    trainer.run(max_steps, callbacks=[*trainer.default_callbacks(), g], stop=lambda: g.reached is not None)
    goal = g.reached
    wall = time.perf_counter() - t0
    snap = trainer.snapshots[-1]  # what the page shows at the goal moment
    probe = trainer.probe
    labels = {f: probe.labels[f] for f in probe.factors}
    x = probe.images.to(trainer.device)
    enc = trainer.model.embed(x, space="encoder").float().cpu().numpy()
    proj = np.asarray(snap.vectors)
    out = {"name": name, "seed": seed, "goal_step": goal, "seconds": trainer.seconds, "wall": wall,
           "snapshot_step": snap.step, "map_wall": statistics.median(w for w, _ in MAP_TIMES[1:]),
           "map_cpu": statistics.median(c for _, c in MAP_TIMES[1:]), "first_map_wall": MAP_TIMES[0][0]}
    live = map_trust(proj, snap.coords, labels, factor="shape")
    out["live"] = (live.vectors_knn, live.map_knn)
    out["live_factors"] = {f: round(v[1], 3) for f, v in live.per_factor.items()}
    with threadpool_limits(1):
        for space, v in (("enc", enc), ("proj", proj)):
            out[f"{space}_pca"] = shape_knn(v, live_map(v, method="pca"), labels)
            out[f"{space}_tsne"] = shape_knn(v, live_map(v, method="tsne", seed=seed), labels)
            out[f"{space}_umap"] = shape_knn(v, project(v, "umap", seed=seed), labels)
    vec, mapped = out["live"]
    met = mapped >= 0.8 and vec - mapped <= 0.15
    goal_txt = f"goal at step {goal}" if goal else f"goal NOT reached in {max_steps} steps"
    print(f"{name:<4} seed {seed}: {goal_txt}, {trainer.seconds:5.1f} s of training ({wall:5.1f} s wall); live map "
          f"{cfg.map_method} {out['map_wall'] * 1e3:4.0f} ms wall / {out['map_cpu'] * 1e3:4.0f} ms CPU per snapshot "
          f"(first {out['first_map_wall']:.2f} s)", flush=True)
    print(f"     shape 10-NN on the probe: encoder vectors {out['enc_pca'][0]:.3f} (maps: PCA {out['enc_pca'][1]:.3f}, "
          f"t-SNE {out['enc_tsne'][1]:.3f}, UMAP {out['enc_umap'][1]:.3f}); projection vectors "
          f"{out['proj_pca'][0]:.3f} (PCA {out['proj_pca'][1]:.3f}, t-SNE {out['proj_tsne'][1]:.3f}, UMAP "
          f"{out['proj_umap'][1]:.3f})", flush=True)
    print(f"     the page's map at step {snap.step}: shape {mapped:.3f} vs {vec:.3f} in its vectors -> goal "
          f"{'met' if met else 'NOT met'}; every factor in the map {out['live_factors']}", flush=True)
    return out


def demo_figures() -> None:
    """The shipped Explorer demo: held-out kNN and its default map (UMAP, 15 neighbours, cosine, seed 0)."""
    from safetensors.torch import load_file

    from core.embed import embed_imageset
    from core.models import EncoderConfig, build_model

    meta = json.loads((ROOT / "assets" / "demo" / "shapes_small_cnn.json").read_text())
    cfg = EncoderConfig.from_dict(meta["encoder"])
    size = int(meta.get("dataset", {}).get("size", 32))
    shown = load_dataset("shapes", n=1000, size=size, seed=0)
    ref = load_dataset("shapes", n=2000, size=size, seed=int(meta["dataset"]["seed"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = build_model(cfg, device="cpu").eval()
    trained = build_model(cfg, device="cpu")
    trained.load_state_dict(load_file(str(ROOT / "assets" / "demo" / "shapes_small_cnn.safetensors")))
    trained.eval()
    for name, model in (("untrained", untrained), ("trained", trained)):
        es, rs = embed_imageset(model, shown), embed_imageset(model, ref)
        held = knn_accuracies(rs.vectors, {"shape": rs.labels["shape"]}, es.vectors, {"shape": es.labels["shape"]},
                              k=10)["shape"]
        coords = project(es.vectors, "umap", n_neighbors=15, min_dist=0.1, metric="cosine", seed=0)
        t = map_trust(es.vectors, coords, {f: es.labels[f] for f in es.factors}, factor="shape")
        met = t.map_knn >= 0.8 and t.vectors_knn - t.map_knn <= 0.15
        print(f"Explorer demo, {name}: held-out shape kNN {held:.3f} (2,000 references); default map (UMAP) shape "
              f"10-NN {t.map_knn:.3f} vs {t.vectors_knn:.3f} in the vectors -> goal {'met' if met else 'NOT met'}; "
              f"every factor in the map {({f: round(v[1], 2) for f, v in t.per_factor.items()})}")
        report(f"Explorer demo, {name} model: default map (UMAP) shape 10-NN", f"{t.map_knn:.3f} vs "
               f"{t.vectors_knn:.3f} in the vectors", beside=f"held-out shape kNN {held:.3f}",
               goal=f">= 0.8 and within 0.15: {'met' if met else 'not met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--recipes", default="no_inversion_pca,lesson")
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--demo", action="store_true", help="also print the Explorer demo's figures")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info())
    print(f"load average {os.getloadavg()[0]:.1f} at the start (other sessions share this machine)")
    t = warm_up()  # UMAP's numba compile, outside every clock (the comparison maps use UMAP)
    print(f"UMAP warm-up {t:.1f} s (outside every clock)")
    table = recipes()
    names = args.recipes.split(",")
    runs = [run(n, *table[n], int(s), args.max_steps) for s in args.seeds.split(",") for n in names]
    print(f"\nMedians over seeds {args.seeds}; load average at the end {os.getloadavg()[0]:.1f}")
    for n in names:
        mine = [r for r in runs if r["name"] == n]
        med = lambda key, i=None: statistics.median(r[key] if i is None else r[key][i] for r in mine)  # noqa: E731
        steps = [r["goal_step"] for r in mine]
        print(f"  {n:<4} goal steps {steps}, {med('seconds'):.1f} s of training; the page's map: shape "
              f"{med('live', 1):.3f} vs {med('live', 0):.3f} in its vectors; {med('map_wall') * 1e3:.0f} ms wall per "
              f"snapshot; encoder PCA {med('enc_pca', 1):.3f}, projection t-SNE {med('proj_tsne', 1):.3f}, "
              f"projection UMAP {med('proj_umap', 1):.3f}")
        live_map_knn, vec_knn = med("live", 1), med("live", 0)
        met = live_map_knn >= 0.8 and vec_knn - live_map_knn <= 0.15
        report(f"live map at the first lesson's goal, recipe `{n}`: shape 10-NN in the map"
               + (f" (median of {len(mine)} seeds)" if len(mine) > 1 else ""),
               f"**{live_map_knn:.3f}** vs {vec_knn:.3f} in its vectors",
               beside=f"goal steps {steps}; {med('map_wall') * 1e3:.0f} ms per snapshot; encoder PCA "
                      f"{med('enc_pca', 1):.3f}, projection t-SNE {med('proj_tsne', 1):.3f}, UMAP "
                      f"{med('proj_umap', 1):.3f}",
               goal=f">= 0.8 and within 0.15 of the vectors: {'met' if met else 'not met'}")
    if args.demo:
        demo_figures()


if __name__ == "__main__":
    main()
