"""Loss & Temperature Lab: the six presets (figures and wall time) and the batch anatomy's speed.

Each preset is timed cold (no shared runs memoised, as on a fresh server) and then warm (what a second preset that
shares the baseline run pays); the page adds st.cache_data on top, so a re-click costs nothing. The anatomy part
times ``anchor_breakdown`` for a batch of 256 (512 embeddings) against the same numbers from autograd through
``core.losses.info_nce``, and ``compare_losses`` for the same batch.

    python benchmarks/lessons/bench_lab_presets.py [--only temperature,collapse] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, median_time, report  # noqa: E402

QUESTION = "Loss & Temperature Lab: seconds per preset (cold and memoised), what each measured, the anchor anatomy"
FULL: list[str] = []
QUICK = ["--only", "collapse"]
MINUTES = (1, 10)


def anatomy() -> None:
    import torch

    from core import lab, losses

    t = lab.ToyTrainer(lab.ToyConfig(steps=30))
    t.run()
    z1, z2, y = t.batch(256)
    z = torch.cat([torch.from_numpy(z1), torch.from_numpy(z2)]).double()

    def ours() -> None:
        lab.anchor_breakdown(z1, z2, 7, 0.1, y)

    def autograd() -> None:  # the same loss and d loss / d s_k, from autograd through core.losses.info_nce
        pos = 7 + 256
        negs = [k for k in range(512) if k not in (7, pos)]
        queue = z[negs].clone().requires_grad_(True)
        loss = losses.info_nce(z[7:8], z[pos:pos + 1], queue, 0.1)
        (g,) = torch.autograd.grad(loss, queue)
        s = queue.detach() @ z[7]
        _ = (g @ z[7]) / (1 - s.square())

    a, b = median_time(ours, repeats=20), median_time(autograd, repeats=20)
    c = median_time(lambda: lab.compare_losses(z1, z2, y, anchor=7, temperature=0.1), repeats=3)
    d = median_time(lambda: lab.compare_losses(z1, z2, y, anchor=7, temperature=0.1, keys=lab.TEMPERATURE_KEYS),
                    repeats=3)
    print(f"anchor_breakdown, batch 256 (512 embeddings): {a * 1e3:.2f} ms median "
          f"(autograd through info_nce {b * 1e3:.2f} ms: {b / a:.1f}x); goal <= 100 ms: {'yes' if a < 0.1 else 'no'}")
    print(f"compare_losses, batch 256: all 7 losses {c * 1e3:.0f} ms median; the 3 that use the temperature (what "
          f"a τ move recomputes on the page, the rest is cached) {d * 1e3:.0f} ms ({c / d:.1f}x less)")
    report("one NT-Xent anchor taken apart, batch 256 (lab.anchor_breakdown)", f"{a * 1e3:.2f} ms",
           beside=f"autograd through info_nce {b * 1e3:.2f} ms ({b / a:.1f}x)",
           goal=f"<= 100 ms: {'met' if a <= 0.1 else 'not met'}")
    report("every loss on one batch of 256 (lab.compare_losses)", f"{c * 1e3:.0f} ms",
           beside=f"the 3 that use the temperature {d * 1e3:.0f} ms ({c / d:.1f}x less)")


def presets(only: list[str]) -> None:
    from core import lab

    rows = []
    for key in only:
        lab._RUNS.clear()  # cold: as the first click on a fresh server
        cold = lab.run_preset(key)
        t0 = time.perf_counter()
        lab.run_preset(key)  # warm: runs memoised in this process
        warm = time.perf_counter() - t0
        rows.append((key, cold, warm))
        print(f"\n[{key}] {cold.title}: {cold.seconds:.1f} s cold, {warm:.1f} s warm "
              f"({cold.seconds / max(warm, 1e-3):.0f}x); reproduced: {cold.reproduced}")
        print(f"  claim: {cold.claim}")
        print(f"  measured: {cold.verdict}")
        print("  numbers: " + ", ".join(f"{k} {v:.3f}" for k, v in cold.numbers.items()))
        print(f"  setup: {cold.setup}")
        report(f"Lab preset `{key}`: seconds cold", f"{cold.seconds:.1f} s",
               beside=f"memoised {warm:.1f} s; reproduced: {cold.reproduced}; {cold.verdict}",
               goal=f"<= 60 s (aim 20): {'met' if cold.seconds <= 60 else 'not met'}")
    print("\n| preset | cold s | warm s | <= 60 s | <= 20 s | reproduced |")
    print("|---|---|---|---|---|---|")
    for key, cold, warm in rows:
        print(f"| {key} | {cold.seconds:.1f} | {warm:.1f} | {'yes' if cold.seconds <= 60 else 'no'} | "
              f"{'yes' if cold.seconds <= 20 else 'no'} | {cold.reproduced} |")


def main() -> None:
    import torch

    from core import lab

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(lab.PRESETS), help="comma-separated preset keys")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-presets", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info(), f"torch threads {args.threads}")
    anatomy()
    if not args.skip_presets:
        presets([k.strip() for k in args.only.split(",") if k.strip()])


if __name__ == "__main__":
    main()
