"""Train the Explorer's one-click demo model once and ship its weights (assets/demo/, safetensors + JSON).

The demo compares an untrained encoder with this trained one on the built-in shapes. It is trained with the first
lesson's recipe (assets/presets/simclr_shapes.json, as the Train page builds it), so the Explorer shows what the
lesson teaches: shapes grouped, colour forgotten. Training it live takes too long on a shared 2-core CPU, so the
page loads these weights (a second) and only embeds images.

Rerun to regenerate: ``python scripts/make_explorer_demo.py [--steps 800]``. It prints, for both models, the
held-out kNN per factor (2,000 training images as references, the 1,000 images the page shows as queries), the
leave-one-out 10-NN on the shown images, and what the Explorer's default map (UMAP, 15 neighbours, cosine) keeps
of shape (``core.projection.map_trust``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks._common import ROOT, machine_info  # noqa: E402
from benchmarks._lesson import lesson_config  # noqa: E402

from core.data import load_dataset
from core.embed import embed_imageset
from core.metrics import knn_accuracies
from core.models import build_model
from core.projection import map_trust, project
from core.train import Trainer

OUT = ROOT / "assets" / "demo"
SHOWN = {"n": 1000, "seed": 0}  # the images ui.explorer.demo_spaces embeds (at the model's own image size)
TRAIN = {"n": 5000, "seed": 1}  # the lesson's dataset size, another seed: none of the shown images


def report(name: str, model, train_set, shown) -> dict:
    ref = embed_imageset(model, train_set.subset(torch.arange(2000).numpy()))
    es = embed_imageset(model, shown)
    factors = shown.factors
    heldout = knn_accuracies(ref.vectors, {f: ref.labels[f] for f in factors}, es.vectors,
                             {f: es.labels[f] for f in factors}, k=10)
    t0 = time.perf_counter()
    coords = project(es.vectors, "umap", n_neighbors=15, min_dist=0.1, metric="cosine", seed=0)
    umap_s = time.perf_counter() - t0
    trust = map_trust(es.vectors, coords, {f: es.labels[f] for f in factors}, factor="shape")
    print(f"{name:<10} held-out kNN " + ", ".join(f"{f} {a:.3f}" for f, a in heldout.items()))
    print(f"{'':<10} leave-one-out 10-NN on the shown images " +
          ", ".join(f"{f} {v:.3f}" for f, (v, _) in trust.per_factor.items()))
    print(f"{'':<10} Explorer's default map (UMAP, {umap_s:.1f} s): shape 10-NN {trust.map_knn:.3f} vs "
          f"{trust.vectors_knn:.3f} in the vectors (kept {trust.kept:.2f}); goal: >= 0.8 and within 0.15: "
          f"{'met' if trust.map_knn >= 0.8 and trust.vectors_knn - trust.map_knn <= 0.15 else 'NOT met'}")
    return {"heldout": heldout, "map_knn": trust.map_knn, "vectors_knn": trust.vectors_knn}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="train and report, but do not write assets/demo")
    args = ap.parse_args()
    print(machine_info())
    print(f"load average {os.getloadavg()[0]:.1f} at the start (other sessions share this machine)")
    cfg, data = lesson_config()
    size = int(data["size"])
    ds = load_dataset("shapes", n=TRAIN["n"], size=size, seed=TRAIN["seed"])
    cfg = replace(cfg, steps=args.steps, seed=args.seed, eval_every=10**6, snapshot_every=10**6, probe_size=10,
                  knn_reference=10, map_method="pca")
    trainer = Trainer(cfg, ds, device="cpu")
    t0 = time.perf_counter()
    trainer.run()
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s")
    model = trainer.model.eval()
    shown = load_dataset("shapes", n=SHOWN["n"], size=size, seed=SHOWN["seed"])
    with torch.random.fork_rng(devices=[]):  # the untrained model the page builds beside it
        torch.manual_seed(0)
        untrained = build_model(cfg.encoder_config, device="cpu").eval()
    report("untrained", untrained, ds, shown)
    result = report("trained", model, ds, shown)
    if args.dry_run:
        return
    if result["heldout"]["shape"] < 0.95:
        raise SystemExit("Held-out shape kNN is below 0.95: not writing assets/demo; train longer (--steps).")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "shapes_small_cnn.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(OUT / "shapes_small_cnn.safetensors")
    meta = {"encoder": cfg.encoder_config.to_dict(), "steps": args.steps, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "method": cfg.method, "temperature": cfg.temperature, "augment": cfg.augment.to_dict(),
            "recipe": "assets/presets/simclr_shapes.json", "seed": args.seed,
            "dataset": {"name": "shapes", "n": TRAIN["n"], "size": size, "seed": TRAIN["seed"]}}
    (OUT / "shapes_small_cnn.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
