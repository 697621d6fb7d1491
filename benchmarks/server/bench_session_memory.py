"""Per-session memory of the Explorer: one session opens 50 different maps and 20 CLIP image sets; does what it
holds stay under a fixed budget?

One ``AppTest`` session of app.py drives the Explorer page as a user would (the registry picker, the space
radio, the map settings, the Compare view):

* 50 maps: 10 models (untrained seeded encoders, so no training time, on built-in sets: shapes at 24, 32, 48
  and 64 px, digits) x 5 projection settings (PCA 2-D and 3-D, two UMAPs, t-SNE), alternating encoder and
  projection space, so every map is of different vectors or settings;
* 20 CLIP image sets: 20 more models on other sets (shapes at other sizes and seeds, digit subsets), each opened
  and compared with "mini-CLIP on these images" (the shipped assets/mini_clip embeds that set: the Explorer's
  CLIP path, ``ui.explorer.clip_space``).

After every 10 it prints the process's RSS (after ``gc.collect()`` and glibc's ``malloc_trim``, so freed memory
is not counted), its growth since the first map, the session store's bytes and entries (``ui.cache``), what the
whole session state holds outside the registry (the user's own models, which the user removes), and the
registry. The budget is the store's ``max_bytes`` (``--budget-mb``) plus ``SLACK_MB`` for the page's one-slot
state (the current figure, the selection); PASS when the session state outside the registry stays under it at
every checkpoint. Shared caches (``st.cache_data`` maps, ``st.cache_resource`` datasets and models) have
``max_entries`` and are process-wide: they show in the RSS, not in a session.

``--root DIR`` runs another checkout's app (e.g. ``git archive <commit> | tar -x -C DIR``) with this script, for
a before / after. The machine may be shared: the load average is printed beside the figures.

    python benchmarks/server/bench_session_memory.py [--budget-mb 64] [--points 300] [--markdown]
    python -m benchmarks.server --only session_memory [--quick]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report, served_navigation  # noqa: E402

QUESTION = "One Explorer session opens 50 maps and 20 CLIP image sets: does its state stay under the memory budget?"
FULL: list[str] = []
QUICK = ["--maps", "10", "--clip", "10", "--points", "80", "--budget-mb", "4"]  # a small store: eviction runs
MINUTES = (2, 10)

HERE = Path(__file__).resolve().parents[2]
SLACK_MB = 8
STATE_KEY = "_session_store"
SETTINGS = [  # (label, applied settings)
    ("PCA 2-D", {"method": "pca", "dim": 2}),
    ("PCA 3-D", {"method": "pca", "dim": 3}),
    ("UMAP k=10", {"method": "umap", "dim": 2, "n_neighbors": 10, "min_dist": 0.1}),
    ("UMAP k=30", {"method": "umap", "dim": 2, "n_neighbors": 30, "min_dist": 0.5}),
    ("t-SNE p=20", {"method": "tsne", "dim": 2, "perplexity": 20}),
]
BASE = {"method": "pca", "dim": 2, "n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "perplexity": 30,
        "k": 10}
MAP_SETS = [("shapes", 24, 0), ("shapes", 32, 1), ("shapes", 48, 2), ("shapes", 64, 3), ("digits", 8, 4),
            ("shapes", 24, 5), ("shapes", 32, 6), ("shapes", 48, 7), ("shapes", 64, 8), ("digits", 8, 9)]
CLIP_SETS = [("digits" if i % 5 == 4 else "shapes", (24, 32, 40, 48, 8)[i % 5], 100 + i) for i in range(20)]


def _nbytes():
    """ui.cache.nbytes of this checkout (loaded by path, so --root can point at a checkout without it)."""
    spec = importlib.util.spec_from_file_location("_bench_cache", HERE / "ui" / "cache.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.nbytes


def rss_mb() -> float:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_entry(name: str, dataset: str, size: int, seed: int, points: int, arch: str):
    import torch

    from core.data import load_dataset
    from core.models import EncoderConfig, build_model
    from ui.registry import Entry, TrainedModel

    if dataset == "shapes":
        images = load_dataset("shapes", n=points, size=size, seed=seed)
    else:
        import numpy as np

        full = load_dataset("digits")
        images = full.subset(np.sort(np.random.default_rng(seed).choice(len(full), points, replace=False)))
    torch.manual_seed(seed)
    model = build_model(EncoderConfig(arch=arch), device="cpu").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tm = TrainedModel(model=model, cfg=None, dataset=images, heldout=images, step=0, history=[], evals=[])
    return Entry(name=name, kind="trained", source=f"untrained {arch} (seed {seed}) on {dataset} {size} px",
                 payload=tm, image_size=size, dataset_name=dataset, created=float(seed))




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-mb", type=float, default=None, help="the session store's budget (default: the "
                    "app's, ui.cache.MAX_BYTES)")
    ap.add_argument("--points", type=int, default=300, help="images per set")
    ap.add_argument("--maps", type=int, default=50)
    ap.add_argument("--clip", type=int, default=20)
    ap.add_argument("--root", type=Path, default=HERE, help="the checkout whose app is driven")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    if args.budget_mb is not None:
        os.environ["CP_SESSION_CACHE_MB"] = str(args.budget_mb)
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    os.chdir(root)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    import torch
    from streamlit.testing.v1 import AppTest

    # models built outside a script run warn of a missing ScriptRunContext, once per call
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").disabled = True

    torch.set_num_threads(1)
    served_navigation()
    nbytes = _nbytes()
    from core.clip import load_clip
    from ui.registry import Entry

    bundle = load_clip("mini-clip")
    registry = {"mini-CLIP": Entry(name="mini-CLIP", kind="clip", source="the shipped mini-CLIP", payload=bundle,
                                   image_size=int(bundle.image_size))}
    for i, (ds, size, seed) in enumerate(MAP_SETS):
        registry[f"map set {i}"] = make_entry(f"map set {i}", ds, size, seed, args.points,
                                              "small_cnn" if i % 2 == 0 or ds == "digits" else "fast_cnn")
    for i, (ds, size, seed) in enumerate(CLIP_SETS):
        registry[f"clip set {i}"] = make_entry(f"clip set {i}", ds, size, seed, args.points, "small_cnn")

    at = AppTest.from_file(str(root / "app.py"), default_timeout=600)
    at.run()
    at.session_state["registry"] = registry
    at.session_state["explorer.applied"] = dict(BASE)
    at.session_state["explorer.source"] = "Your models"
    at.session_state["explorer.entry"] = "map set 0"
    at.switch_page("pages/explorer.py").run()
    check(at, "the first map")
    rss0 = rss_mb()
    t0 = time.perf_counter()
    budget = None
    rows = []

    def checkpoint(maps: int, clips: int) -> None:
        nonlocal budget
        state = at.session_state.to_dict()
        store = state.get(STATE_KEY)
        if store is not None:
            budget = store.max_bytes
        outside = {k: v for k, v in state.items() if k != "registry"}
        rows.append({"maps": maps, "clip": clips, "rss": rss_mb(), "store": None if store is None else store.bytes,
                     "entries": None if store is None else len(store),
                     "evicted": None if store is None else store.evictions,
                     "session": nbytes(outside), "registry": nbytes(state.get("registry", {})),
                     "s": time.perf_counter() - t0})

    opened = 0
    for i, (ds, size, seed) in enumerate(MAP_SETS):
        for j, (label, settings) in enumerate(SETTINGS):
            if opened >= args.maps:
                break
            at.session_state["explorer.applied"] = dict(BASE, **settings)
            at.session_state["explorer.view"] = "Map"
            at.session_state["explorer.entry"] = f"map set {i}"
            at.session_state["explorer.space"] = "encoder" if j % 2 == 0 else "projection"
            at.run()
            check(at, f"map set {i}, {label}")
            opened += 1
            if opened % 10 == 0:
                checkpoint(opened, 0)
    at.session_state["explorer.applied"] = dict(BASE)
    for i in range(min(args.clip, len(CLIP_SETS))):
        at.session_state["explorer.view"] = "Compare"
        at.session_state["explorer.entry"] = f"clip set {i}"
        at.session_state["explorer.space"] = "encoder"
        at.session_state["explorer.other"] = "mini-CLIP on these images"
        at.run()
        check(at, f"clip set {i}")
        assert any("items are in both spaces" in c.value for c in at.caption), f"clip set {i}: no comparison"
        if (i + 1) % 10 == 0:
            checkpoint(opened, i + 1)

    summarize(rows, rss0, budget, args, root)


def check(at, what: str) -> None:
    if at.exception or at.error:
        raise SystemExit(f"{what}: {[e.value for e in at.exception] or [e.value for e in at.error]}")


def summarize(rows: list[dict], rss0: float, budget: int | None, args, root: Path) -> None:
    """Prints the checkpoints' table and hands the headline figures (largest session state against the budget,
    RSS growth) to the suite's table."""
    mb = 2**20
    limit = None if budget is None else budget + SLACK_MB * mb
    load = os.getloadavg()
    head = ["maps", "CLIP sets", "RSS MB", "RSS growth MB", "store MB", "store entries", "evicted",
            "session MB (outside the registry)", "registry MB", "s"]
    lines = []
    for r in rows:
        lines.append([str(r["maps"]), str(r["clip"]), f"{r['rss']:.0f}", f"{r['rss'] - rss0:+.0f}",
                      "n/a" if r["store"] is None else f"{r['store'] / mb:.1f}",
                      "n/a" if r["entries"] is None else str(r["entries"]),
                      "n/a" if r["evicted"] is None else str(r["evicted"]),
                      f"{r['session'] / mb:.1f}", f"{r['registry'] / mb:.1f}", f"{r['s']:.0f}"])
    if not rows:
        raise SystemExit("no checkpoint: --maps or --clip must reach 10 (one checkpoint every 10)")
    ok = limit is not None and all(r["session"] <= limit for r in rows)
    print(f"checkout: {root}  points per set: {args.points}  load average: {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    print(f"RSS after the first map: {rss0:.0f} MB")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(x[k]) for x in lines)) for k, h in enumerate(head)]
        print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for line in lines:
            print("  ".join(x.rjust(w) for x, w in zip(line, widths)))
    if limit is None:
        print("budget: none (this checkout has no session store); FAIL: nothing bounds the session state")
    else:
        print(f"budget: store {budget / mb:.0f} MB + {SLACK_MB} MB one-slot page state = {limit / mb:.0f} MB; "
              f"largest session state {max(r['session'] for r in rows) / mb:.1f} MB: {'PASS' if ok else 'FAIL'}")
    print(machine_info())
    last = rows[-1]
    store = "n/a" if last["store"] is None else f"{last['store'] / mb:.1f} MB"
    evicted = "n/a" if last["evicted"] is None else last["evicted"]
    what = f"{last['maps']} maps + {last['clip']} CLIP image sets of {args.points} images, one session"
    report(f"{what}: largest session state (outside the registry)", f"{max(r['session'] for r in rows) / mb:.1f} MB",
           beside="no budget: this checkout has no session store" if limit is None else
           f"budget {limit / mb:.0f} MB (store {budget / mb:.0f} MB + {SLACK_MB} MB page state); "
           f"store {store}, {evicted} evicted",
           goal=f"under the budget at every checkpoint: {'PASS' if ok else 'FAIL'}")
    report(f"{what}: process RSS growth since the first map", f"{last['rss'] - rss0:+.0f} MB",
           beside=f"RSS {rss0:.0f} MB after the first map, {last['rss']:.0f} MB at the end (shared caches included)")


if __name__ == "__main__":
    main()
