"""Attribution heatmaps (core.attribution): how far to trust them, and what one costs.

    .venv/bin/python benchmarks/bench_attribution.py                 # both parts
    .venv/bin/python benchmarks/bench_attribution.py --part trust --n 500
    .venv/bin/python benchmarks/bench_attribution.py --part time

1. trust: the shipped mini-CLIP, zero-shot on the shape names ("a {}") over N fresh shapes (seed 2027: no test
   uses it); on the correctly classified ones, each method's energy pointing game (share of the positive heat
   inside the shape's mask) and plain pointing game (maximum inside), beside random heat and a centre blob.
   Goal: the better method's energy >= 0.6 and >= 2x random. Every figure is printed, whatever it is.
2. time: one heatmap of each method for one 32-px image on the mini-CLIP (goal <= 0.5 s on two cores), and for
   one 224-px image on a randomly initialised ViT-B-32 built by open_clip (pretrained=None, no download;
   goal <= 3 s). Median of 5 after a warm-up, torch on 2 threads. The load average is printed beside: on a
   shared machine these are upper bounds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, median_time  # noqa: E402

TRUST_SEED = 2027


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} CPUs"


def trust(n: int, target: str) -> None:
    import torch

    from core.attribution import METHOD_NAMES, trust_report
    from core.clip import load_clip

    torch.set_num_threads(1)  # a figure, not a timing: one thread is kind to a shared machine (and faster there)

    bundle = load_clip("mini-clip", device="cpu")
    t0 = time.perf_counter()
    rep = trust_report(bundle, n=n, seed=TRUST_SEED, target=target,
                       progress=lambda d, t: print(f"  occlusion {d}/{t}", end="\r", flush=True))
    print(f"\n[trust] mini-CLIP, {n} fresh shapes (seed {TRUST_SEED}), target {target}: {rep.n_correct} correct; "
          f"{time.perf_counter() - t0:.0f} s; {_load()}")
    names = {**METHOD_NAMES, "random": "random heat", "centre": "centre blob"}
    for m in rep.energy:
        print(f"  {names.get(m, m):12s} energy pointing game {rep.energy[m]:.3f}   pointing game {rep.hit[m]:.3f}")
    methods = [m for m in rep.energy if m not in ("random", "centre")]
    best = max(methods, key=lambda m: rep.energy[m])
    ratio = rep.energy[best] / rep.energy["random"]
    ok = rep.energy[best] >= 0.6 and ratio >= 2.0
    print(f"  better method: {names[best]} at {rep.energy[best]:.3f} = {ratio:.2f}x random "
          f"-> goal (>= 0.6 and >= 2x random) {'met' if ok else 'NOT met'}")


def timing(threads: int) -> None:
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
    print(f"[time] median of repeats after a warm-up, torch threads {threads}; {_load()}")
    for model_name, m, sec, goal in rows:
        print(f"  {model_name:18s} {m:10s} {sec:6.2f} s   goal <= {goal} s -> {'met' if sec <= goal else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["trust", "time", "all"], default="all")
    ap.add_argument("--n", type=int, default=500, help="fresh shapes for the trust figure")
    ap.add_argument("--target", choices=["probability", "similarity"], default="probability")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the timings (the goal: two cores)")
    args = ap.parse_args()
    print(machine_info())
    print("The machine is shared with other engineers' work: timings are upper bounds; ratios in one run count.")
    if args.part in ("time", "all"):
        timing(args.threads)
    if args.part in ("trust", "all"):
        trust(args.n, args.target)


if __name__ == "__main__":
    main()
