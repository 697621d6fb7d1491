"""The shipped mini-CLIP (assets/mini_clip): zero-shot accuracy on shape and colour names over 1,000 fresh shapes
(seed 12345, ``scripts/make_mini_clip.py``'s evaluation) through ``core.clip.load_clip``, and the training recorded
in its config. Goal >= 0.95 on each (chance 0.167).

    .venv/bin/python benchmarks/quality/bench_mini_clip.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchmarks._common import machine_info, report  # noqa: E402

QUESTION = "Does the shipped mini-CLIP name shapes and colours zero-shot?"
FULL: list[str] = []
QUICK: list[str] = []
MINUTES = (1, 1)


def mini_clip() -> None:
    from make_mini_clip import EVAL_SEED, zero_shot_accuracy
    from core.clip import CONFIG_NAME, MINI_CLIP_DIR

    info = json.loads((MINI_CLIP_DIR / CONFIG_NAME).read_text()).get("contrastive_playground", {})
    size = sum(p.stat().st_size for p in MINI_CLIP_DIR.iterdir()) / 1024**2
    acc = zero_shot_accuracy("mini-clip", n=1000, seed=EVAL_SEED)
    print(f"[mini-clip] assets/mini_clip ({size:.1f} MB), trained {info.get('steps')} steps in "
          f"{info.get('train_seconds')} s by {info.get('trained_by')} (seed {info.get('seed')})")
    print(f"[mini-clip] zero-shot on 1,000 fresh shapes (seed {EVAL_SEED}): shape {acc['shape']:.3f}, "
          f"colour {acc['colour']:.3f}  (chance 0.167 each; goal >= 0.95)")
    ok = min(acc["shape"], acc["colour"]) >= 0.95
    report("mini-CLIP zero-shot accuracy on 1,000 fresh shapes", f"shape {acc['shape']:.3f}, colour {acc['colour']:.3f}",
           beside="chance 0.167", goal=f">= 0.95: {'met' if ok else 'not met'}")


def main() -> None:
    print(machine_info())
    mini_clip()


if __name__ == "__main__":
    main()
