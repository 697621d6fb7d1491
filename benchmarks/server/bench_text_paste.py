"""Pasting 20,000 lines on the Text page (issue 30, section 3): how long until the page answers, and how long
embedding the rest under the progress bar takes, on the bundled MiniLM, through Streamlit's AppTest.

    (a) paste -> usable   a fresh session's text area set to N lines, the script run until it returns with search
                          results shown: the first ``ui.textembed.PASTE_SYNC`` lines embedded, the rest waiting
    (a) beside            the same with ``--beside-sync`` lines embedded at once (2,000: the first version), on
                          other lines so that nothing is cached, side by side in this run
    (b) embed the rest    "Embed all N" clicked: the other lines embedded chunk by chunk under the progress bar
                          (the first PASTE_SYNC come from the cache), the run returns with results over all N
    (c) a new query       then another query over all N, every vector cached: what each later rerun costs
    plain encode          ``core.text.embed_texts`` on N other lines alone (--plain): the model's own time

Imports, the model and the built-in corpus are warmed first with a 3-line paste (a served app has them), so (a)
is the paste itself. Lines are the built-in corpus's sentences, numbered so that every line is distinct (repeats
would be embedded once and flatter the figure).

Usage: python benchmarks/server/bench_text_paste.py [--lines 20000] [--beside-sync 2000] [--plain] [--markdown]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ROOT, load_average, machine_info, report, served_navigation  # noqa: E402

QUESTION = "Text page: pasting 20,000 lines until the page answers, and embedding them all under the progress bar"
FULL: list[str] = ["--plain"]
QUICK = ["--lines", "3000", "--beside-sync", "0"]
MINUTES = (1, 4)  # on two quiet cores; (b) and --plain are each about a minute of MiniLM
TEXT = "pages/text.py"


def _lines(n: int) -> list[str]:
    from core.text import load_corpus

    corpus = load_corpus().texts
    return [f"{corpus[i % len(corpus)]} (note {i // len(corpus) + 1})" for i in range(n)]




def _ranked(at) -> list[str]:
    frames = [d.value for d in at.dataframe if "rank" in d.value.columns]
    return frames[0]["text"].tolist() if frames else []


def _texts(at) -> str:
    return " ".join([c.value for c in at.caption] + [i.value for i in at.info])


def _check(at, what: str) -> None:
    problems = [e.value for e in at.exception] + [e.value for e in at.error]
    if problems:
        raise SystemExit(f"{what}: the page failed: {problems}")
    if not _ranked(at):
        raise SystemExit(f"{what}: no search results on the page")


def _paste(root_app: str, paste: str, sync: int):
    """A fresh session on the Text page with "Paste a list" chosen, then the paste: (AppTest, seconds of that run)."""
    from streamlit.testing.v1 import AppTest

    import ui.textembed as TE

    TE.PASTE_SYNC = sync
    at = AppTest.from_file(root_app, default_timeout=1800)
    at.run()
    at.switch_page(TEXT).run()
    at.radio(key="text.source").set_value("Paste a list").run()
    at.text_input(key="text.query").set_value("a young dog playing fetch")
    at.text_area(key="text.paste").input(paste)
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    _check(at, f"(a) with PASTE_SYNC {sync}")
    return at, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--beside-sync", type=int, default=2000,
                    help="also time (a) with this many lines embedded at once (2,000 was the first version; 0: skip)")
    ap.add_argument("--plain", action="store_true", help="also time core.text.embed_texts on the same lines")
    ap.add_argument("--markdown", action="store_true", help="print a table row of the figures")
    args = ap.parse_args()

    import ui.textembed as TE

    served_navigation()
    sync = TE.PASTE_SYNC
    lines = _lines(args.lines)
    paste = "\n".join(lines)
    print(machine_info())
    app = str(ROOT / "app.py")
    print(f"{args.lines:,} distinct lines, {len(paste.encode()) / 2**20:.2f} MB; PASTE_SYNC {sync:,}, "
          f"CHUNK {TE.CHUNK:,}; {load_average()} (shared machine)", flush=True)

    t0 = time.perf_counter()
    _paste(app, "\n".join(lines[:3]), sync)  # imports, the model, the corpus: what a served app already has
    print(f"warm-up (imports, model, corpus, a 3-line paste): {time.perf_counter() - t0:.1f} s", flush=True)

    before = None
    if args.beside_sync and args.beside_sync != sync:
        # other lines, so nothing of this run is in the content-keyed cache for the main one
        _, before = _paste(app, "\n".join(f"{t} (again)" for t in lines), args.beside_sync)
        print(f"(a) beside: {min(args.beside_sync, args.lines):,} embedded at once -> results shown: {before:.2f} s; "
              f"{load_average()}", flush=True)
    at, usable = _paste(app, paste, sync)
    synced = min(sync, args.lines)
    assert f"{synced:,} texts" in _texts(at), _texts(at)
    print(f"(a) paste {args.lines:,} lines -> results shown: {usable:.2f} s ({synced:,} embedded now, "
          f"{synced / usable:,.0f} lines/s); {load_average()}", flush=True)

    full = again = None
    if args.lines > sync:
        t0 = time.perf_counter()
        at.button(key="text._paste_all.go").click().run()
        full = time.perf_counter() - t0
        _check(at, "(b)")
        assert f"{args.lines:,} texts" in _texts(at), _texts(at)
        print(f"(b) embed the other {args.lines - synced:,} under the progress bar -> results over all: {full:.2f} s "
              f"({(args.lines - synced) / full:,.0f} lines/s); {load_average()}", flush=True)
        t0 = time.perf_counter()
        at.text_input(key="text.query").input("interest rates and the central bank").run()
        again = time.perf_counter() - t0
        _check(at, "(c)")
        print(f"(c) then a new query over all {args.lines:,} (vectors cached) -> results: {again:.2f} s; "
              f"{load_average()}", flush=True)

    plain = None
    if args.plain:
        from core import text as T
        from ui import loaders

        model = loaders.text_model("")
        t0 = time.perf_counter()
        T.embed_texts(model, [f"{t} (plain)" for t in lines])
        plain = time.perf_counter() - t0
        print(f"plain core.text.embed_texts of {args.lines:,} lines: {plain:.2f} s "
              f"({args.lines / plain:,.0f} lines/s); {load_average()}", flush=True)

    goal = f"usable at once (~5 s): {'met' if usable <= 5.0 else 'not met'}"
    beside = ", ".join(x for x in (
        f"{args.beside_sync:,} at once: {before:.1f} s" if before is not None else "",
        f"embed the rest {full:.1f} s" if full is not None else "",
        f"next query {again:.1f} s" if again is not None else "",
        f"plain encode {plain:.1f} s" if plain is not None else "") if x)
    report(f"paste {args.lines:,} lines -> page answers", f"{usable:.1f} s", beside, goal)
    if args.markdown:
        beside_head = f"{args.beside_sync:,} at once (s)" if args.beside_sync else "beside (s)"
        print(f"| lines | at once | paste -> results (s) | {beside_head} | embed the rest (s) "
              "| next query (s) | plain embed_texts, all (s) | load (1 min) |")
        print("|---|---|---|---|---|---|---|---|")
        cells = [f"{args.lines:,}", f"{synced:,}", f"{usable:.1f}",
                 *("" if x is None else f"{x:.1f}" for x in (before, full, again, plain)), f"{os.getloadavg()[0]:.1f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
