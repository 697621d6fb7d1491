"""Train the shipped offline mini-CLIP with this project's own Trainer and write it as an open_clip local-dir.

    .venv/bin/python scripts/make_mini_clip.py              # rebuilds assets/mini_clip (seed 0)
    .venv/bin/python scripts/make_mini_clip.py --out /tmp/m --seed 1 --steps 300

What it does: core.train.Trainer(method="clip", clip_model="mini-rn", batch 128, AdamW 2e-3, weight decay 0.1
on matrices only) on the built-in shapes (4,000 images,
32 px, dataset seed 0) with captions drawn per step from each image's caption pool ("a red circle",
"a circle", "a red shape", ...), no augmentation (a flip or crop would contradict "at the top left");
then core.clip.export_local_dir writes open_clip_config.json + open_clip_model.safetensors (fp16), and the
folder is loaded back through core.clip.load_clip and scored zero-shot on freshly generated shapes
(dataset seed 12345, never seen in training). Every 25 steps it prints zero-shot accuracy on a separate check
set (seed 12346); with --target it stops at the first check where both reach it (the shipped model: no
--target, the full --steps). Prints the training time and the two accuracies.
Run with CP_DEVICE=cpu for the CPU figure; the training is seeded, so a rerun gives the same weights on the
same device and library versions.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from benchmarks._common import machine_info  # noqa: E402

# Zero-shot prompts: the short captions the model was trained with ("a circle", "a red shape").
SHAPE_TEMPLATE = "a {}"
COLOUR_TEMPLATE = "a {} shape"
EVAL_SEED = 12345


def train(seed: int, steps: int, n: int, batch_size: int = 128, target: float | None = None):
    from core.augment import PRESETS
    from core.data import load_dataset
    from core.train import TrainConfig, Trainer

    cfg = TrainConfig(
        method="clip", clip_model="mini-rn", projection_dim=64, batch_size=batch_size, lr=2e-3, weight_decay=0.1,
        warmup_steps=20, steps=steps, augment=PRESETS["none"], seed=seed,
        snapshot_every=steps, eval_every=steps, probe_size=100, knn_reference=500,
    )
    data = load_dataset("shapes", n=n, size=32, seed=0)
    trainer = Trainer(cfg, data)
    check = load_dataset("shapes", n=300, size=32, seed=EVAL_SEED + 1)  # a progress check, not the benchmark
    t0 = time.perf_counter()
    done = []

    class Check:  # a run callback: progress on the check set every 25 steps, and the early stop
        def on_step(self, t, record) -> None:
            _check(record)

    def _check(record) -> None:
        if record.step % 25 == 0 or record.step == steps:
            acc = _tower_accuracy(trainer, check)
            print(f"  step {record.step:4d}  loss {record.loss:.3f}  logit scale {record.logit_scale:.1f}  "
                  f"check shape {acc['shape']:.2f} colour {acc['colour']:.2f}  {time.perf_counter() - t0:6.1f} s",
                  flush=True)
            if target is not None and min(acc.values()) >= target:  # early stop on the check set (seed 12346)
                done.append(record.step)

    trainer.run(callbacks=[*trainer.default_callbacks(), Check()], stop=lambda: bool(done))
    return trainer, time.perf_counter() - t0


def _tower_accuracy(trainer, data) -> dict[str, float]:
    """Zero-shot accuracy of the model being trained (its own towers, no export) on ``data``."""
    import torch
    import torch.nn.functional as F

    out = {}
    with torch.no_grad():
        trainer.text_model.eval()
        img = trainer.model.embed(data.images, normalize=True)
        for factor, template in (("shape", SHAPE_TEMPLATE), ("colour", COLOUR_TEMPLATE)):
            tokens = trainer.clip.tokenizer([template.format(c) for c in data.classes[factor]])
            txt = F.normalize(trainer.text_model(tokens.to(trainer.device)), dim=1)
            pred = (img @ txt.T).argmax(1).cpu().numpy()
            out[factor] = float((pred == data.labels[factor]).mean())
    return out


def zero_shot_accuracy(spec: str, n: int = 1000, seed: int = EVAL_SEED) -> dict[str, float]:
    """Zero-shot accuracy per factor (shape, colour) on ``n`` fresh shapes, through load_clip's path."""
    from core.clip import accuracy_report, load_clip, zero_shot, zero_shot_weights
    from core.data import load_dataset

    bundle = load_clip(spec)
    fresh = load_dataset("shapes", n=n, size=32, seed=seed)
    out = {}
    for factor, template in (("shape", SHAPE_TEMPLATE), ("colour", COLOUR_TEMPLATE)):
        w = zero_shot_weights(bundle, fresh.classes[factor], [template])
        res = zero_shot(bundle, fresh, w)
        out[factor] = accuracy_report(res.predictions, fresh.labels[factor], len(w.classnames))["accuracy"]
    return out


def main() -> None:
    from core.clip import MINI_CLIP_DIR, export_local_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(MINI_CLIP_DIR))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=400, help="at most this many steps")
    ap.add_argument("--target", type=float, default=None,
                    help="stop at the first 25-step check where shape and colour on the check set reach this")
    ap.add_argument("--n", type=int, default=4000)
    args = ap.parse_args()
    print(machine_info())
    trainer, seconds = train(args.seed, args.steps, args.n, target=args.target)
    out = Path(args.out)
    extra = {"trained_by": "scripts/make_mini_clip.py", "seed": args.seed, "steps": trainer.step_count,
             "dataset": {"name": "shapes", "options": {"n": args.n, "size": 32, "seed": 0}},
             "train_seconds": round(seconds, 1)}
    export_local_dir(trainer.clip.clip, trainer.clip.model_cfg, out, extra=extra)
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1024**2
    acc = zero_shot_accuracy(f"local-dir:{out}")
    print(f"trained {trainer.step_count} steps in {seconds:.1f} s; wrote {out} ({size_mb:.1f} MB)")
    print(f"zero-shot on fresh shapes (seed {EVAL_SEED}): shape {acc['shape']:.3f}, colour {acc['colour']:.3f}")


if __name__ == "__main__":
    main()
