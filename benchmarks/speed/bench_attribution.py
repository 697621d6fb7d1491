"""Attribution heatmaps (core.attribution): what one costs.

    .venv/bin/python benchmarks/speed/bench_attribution.py [--threads 2]

One heatmap of each method for one 32-px image on the mini-CLIP (goal <= 0.5 s on two cores), and for one 224-px
image on a randomly initialised ViT-B-32 built by open_clip (pretrained=None, no download; goal <= 3 s). Median of
5 (3 for the ViT) after a warm-up. How far to trust the heatmaps: ``benchmarks/quality/bench_attribution.py``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import load_average, machine_info, median_time, report  # noqa: E402

QUESTION = "Seconds per attribution heatmap: mini-CLIP at 32 px, a ViT-B-32 at 224 px"
FULL: list[str] = []
QUICK = ["--skip-vit"]
MINUTES = (1, 1)


TRUST_SEED = 2027


def timing(threads: int, vit: bool = True) -> None:
    import open_clip
    import torch

    from core.attribution import gradient_method, heatmaps, model_inputs
    from core.clip import ClipBundle, load_clip, zero_shot_weights
    from core.data import SHAPE_FACTORS, load_dataset

    torch.set_num_threads(threads)
    mini = load_clip("mini-clip", device="cpu")
    shape = load_dataset("shapes", n=1, size=32, seed=TRUST_SEED).images
    rows = []
    w = zero_shot_weights(mini, SHAPE_FACTORS["shape"], ["a {}"])
    x = model_inputs(mini, shape)
    for m in ("occlusion", gradient_method(mini)[0]):
        rows.append(("mini-CLIP, 32 px", m, median_time(lambda: heatmaps(mini, x, w, 0, methods=[m])), 0.5))

    if not vit:
        return _print(rows, threads)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None, device="cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    vit = ClipBundle(model=model, preprocess=preprocess, tokenizer=open_clip.get_tokenizer("ViT-B-32"),
                     name="ViT-B-32 (random init)", spec="bench", fingerprint="bench", image_size=224,
                     mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711),
                     device=torch.device("cpu"), learned_logit_scale=100.0, embed_dim=512)
    w = zero_shot_weights(vit, SHAPE_FACTORS["shape"], ["a {}"])
    big = model_inputs(vit, load_dataset("shapes", n=1, size=128, seed=TRUST_SEED).images)  # resized to 224
    for m in (gradient_method(vit)[0], "occlusion"):
        rows.append(("ViT-B-32, 224 px", m, median_time(lambda: heatmaps(vit, big, w, 0, methods=[m]),
                                                         repeats=3), 3.0))
    _print(rows, threads)


def _print(rows: list, threads: int) -> None:
    print(f"[time] median of repeats after a warm-up, torch threads {threads}; {load_average()}")
    for model_name, m, sec, goal in rows:
        print(f"  {model_name:18s} {m:10s} {sec:6.2f} s   goal <= {goal} s -> {'met' if sec <= goal else 'NOT met'}")
        report(f"one heatmap, {model_name}, {m}", f"{sec:.2f} s", goal=f"<= {goal} s: {'met' if sec <= goal else 'not met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the goal: two cores)")
    ap.add_argument("--skip-vit", action="store_true", help="only the mini-CLIP (the ViT-B-32 takes minutes loaded)")
    args = ap.parse_args()
    print(machine_info())
    timing(args.threads, vit=not args.skip_vit)


if __name__ == "__main__":
    main()
