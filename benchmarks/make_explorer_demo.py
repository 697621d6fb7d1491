"""Train the Explorer's one-click demo model once and ship its weights (assets/demo/, safetensors + JSON).

The demo compares an untrained small_cnn with this trained one on the built-in shapes. Training it live
takes minutes on a shared 2-core CPU, so the page loads these weights (a second) and only embeds images.
Rerun to regenerate: ``python benchmarks/make_explorer_demo.py [--steps 200]``; it prints held-out kNN of
both models (leave-one-out on the demo images) so the gain is on record.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.embed import embed_imageset  # noqa: E402
from core.metrics import knn_accuracy  # noqa: E402
from core.train import Trainer, default_preset  # noqa: E402

OUT = ROOT / "assets" / "demo"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    ds = load_dataset("shapes", n=2000, size=32, seed=1)  # training images; the page shows seed 0's
    cfg = replace(default_preset(), batch_size=args.batch, steps=args.steps, eval_every=10**6,
                  snapshot_every=10**6, probe_size=10, knn_reference=10)
    trainer = Trainer(cfg, ds, device="cpu")
    t0 = time.perf_counter()
    trainer.run()
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s (machine shared/loaded)")
    model = trainer.model.eval()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(OUT / "shapes_small_cnn.safetensors"))
    meta = {"encoder": cfg.encoder_config.to_dict(), "steps": args.steps, "batch_size": args.batch,
            "method": cfg.method, "temperature": cfg.temperature, "augment": cfg.augment.to_dict(),
            "dataset": {"name": "shapes", "n": 2000, "size": 32, "seed": 1}}
    (OUT / "shapes_small_cnn.json").write_text(json.dumps(meta, indent=1))
    show = load_dataset("shapes", n=1000, size=32, seed=0)
    torch.manual_seed(cfg.seed)
    from core.models import build_model

    untrained = build_model(cfg.encoder_config, device="cpu").eval()
    for name, m in (("untrained", untrained), ("trained", model)):
        es = embed_imageset(m, show)
        accs = {f: knn_accuracy(es.vectors, es.labels[f], es.vectors, es.labels[f], k=10, exclude_self=True)
                for f in es.factors}
        print(name, {f: round(a, 3) for f, a in accs.items()})


if __name__ == "__main__":
    main()
