"""The first lesson's Play in a fresh server process: seconds to build the first ``Trainer`` and take its first
step, with and without the app's warm-up having run first (``ui.warmup``: it builds a throwaway optimizer, whose
first use in a process imports ``torch._dynamo``). Each case runs in its own fresh interpreter, one after the
other in this run; the imports of ``core.train`` and the dataset are outside the clock, as the warm-up does them
while the home page is read.

    .venv/bin/python benchmarks/server/bench_first_play.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ROOT, machine_info, report  # noqa: E402

QUESTION = "The first Play in a fresh server process: first Trainer and step, with and without the app's warm-up"
FULL: list[str] = []
QUICK: list[str] = []
MINUTES = (1, 1)


CASE = """
import json, sys, time
import core.train
from ui import warmup
if {warm}:
    warmup._first_step_ready()
from core.data import load_dataset
from core.train import Trainer, TrainConfig
ds = load_dataset("shapes", n=1000, size=24)
before = set(sys.modules)
t0 = time.perf_counter()
trainer = Trainer(TrainConfig(batch_size=128, steps=1), ds)
t1 = time.perf_counter()
trainer.run(1, callbacks=[core.train.SnapshotEvery(trainer.cfg.snapshot_every)])  # the first snapshot, then the step
t2 = time.perf_counter()
print(json.dumps({{"build": t1 - t0, "step": t2 - t1, "modules": len(set(sys.modules) - before)}}))
"""


def run(warm: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CASE.format(warm=warm)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(machine_info())
    print(f"load average {os.getloadavg()[0]:.1f}")
    cold, warm = run(False), run(True)
    for name, r in (("without the warm-up", cold), ("after the warm-up", warm)):
        print(f"  {name:<20} first Trainer built in {r['build']:.2f} s, first step {r['step']:.2f} s, "
              f"{r['modules']} modules imported meanwhile")
    print(f"  first Play (build + step): {cold['build'] + cold['step']:.2f} s -> {warm['build'] + warm['step']:.2f} s "
          f"({(cold['build'] + cold['step']) / max(warm['build'] + warm['step'], 1e-9):.1f}x)")
    report("first Play in a fresh process after the app's warm-up: first Trainer built + first step",
           f"{warm['build'] + warm['step']:.2f} s", beside=f"without the warm-up {cold['build'] + cold['step']:.2f} s")


if __name__ == "__main__":
    main()
