"""Attribution heatmaps (core.attribution): how far to trust them.

    .venv/bin/python benchmarks/quality/bench_attribution.py [--n 500] [--target probability]

The shipped mini-CLIP, zero-shot on the shape names ("a {}") over N fresh shapes (seed 2027: no test uses it); on
the correctly classified ones, each method's energy pointing game (share of the positive heat inside the shape's
mask) and plain pointing game (maximum inside), beside random heat and a centre blob. Goal: the better method's
energy >= 0.6 and >= 2x random. Every figure is printed, whatever it is. Their cost:
``benchmarks/speed/bench_attribution.py``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import load_average, machine_info, report  # noqa: E402

QUESTION = "Can the heatmaps be trusted: energy pointing game on fresh shapes against random heat"
FULL: list[str] = []
QUICK = ["--n", "60"]
MINUTES = (1, 4)


TRUST_SEED = 2027


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
          f"{time.perf_counter() - t0:.0f} s; {load_average()}")
    names = {**METHOD_NAMES, "random": "random heat", "centre": "centre blob"}
    for m in rep.energy:
        print(f"  {names.get(m, m):12s} energy pointing game {rep.energy[m]:.3f}   pointing game {rep.hit[m]:.3f}")
    methods = [m for m in rep.energy if m not in ("random", "centre")]
    best = max(methods, key=lambda m: rep.energy[m])
    ratio = rep.energy[best] / rep.energy["random"]
    ok = rep.energy[best] >= 0.6 and ratio >= 2.0
    print(f"  better method: {names[best]} at {rep.energy[best]:.3f} = {ratio:.2f}x random "
          f"-> goal (>= 0.6 and >= 2x random) {'met' if ok else 'NOT met'}")
    report(f"energy pointing game of the better heatmap, mini-CLIP, {target}",
           f"{names[best]} **{rep.energy[best]:.3f}** ({rep.n_correct} of {n} shapes correct)",
           beside="; ".join(f"{names.get(m, m)} {rep.energy[m]:.3f}" for m in rep.energy if m != best)
                  + f"; {ratio:.2f}x random",
           goal=f">= 0.6 and >= 2x random: {'met' if ok else 'not met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="fresh shapes")
    ap.add_argument("--target", choices=["probability", "similarity"], default="probability")
    args = ap.parse_args()
    print(machine_info())
    trust(args.n, args.target)


if __name__ == "__main__":
    main()
