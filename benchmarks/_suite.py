"""One entry per suite: runs the ``bench_*.py`` questions of a folder, prints their figures with the machine and
the load average, and with ``--markdown`` writes the suite's table (benchmarks/RESULTS.md).

    python -m benchmarks.speed                          # every question of the suite, full size
    python -m benchmarks.speed --quick                  # small sizes: proves it runs, figures are not results
    python -m benchmarks.speed --only train_step,umap   # some questions (file names without bench_)
    python -m benchmarks.speed --only umap -- --browser # arguments after -- go to the one question named
    python -m benchmarks.speed --markdown               # ... and write the suite's table into RESULTS.md
    python -m benchmarks.speed --list                   # the questions, their commands and minutes

A question is a ``bench_<name>.py`` in the suite's folder (found by name: a new file joins the suite). Each runs in
its own fresh interpreter (a question never pays for another's imports or threads), with module-level literals:

    QUESTION = "..."               one line, what it answers
    FULL = ["--seeds", "0,1,2"]    its arguments for the suite's full run (default: none, the script's defaults)
    QUICK = ["--seconds", "3"]     its arguments for --quick
    MINUTES = (1, 10)              about how long quick / full take on two quiet cores

and hands its headline figures to the table through ``benchmarks._common.report``. Each script still runs alone
(``python benchmarks/speed/bench_umap.py --help``) with every option it has.
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT, ROWS_ENV, load_average, machine_info, short_machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SUITES = {
    "quality": "How good is what the app shows and trains?",
    "speed": "How fast are the pieces: a training step, augmentation, maps, embeddings, heatmaps, search?",
    "lessons": "How long until each lesson, preset and course step shows its point?",
    "server": "What does a served app cost: start, first Play, a classroom, a browser tab, uploads, map engines?",
}
COLUMNS = ["`--only`", "figure", "value", "beside it, same run", "goal", "load", "machine", "measured"]
NOT_RERUN = "not rerun"


def questions(suite: str) -> dict[str, dict]:
    """name -> {path, QUESTION, FULL, QUICK, MINUTES} for each bench_*.py of the suite, read without importing it."""
    out = {}
    for path in sorted((HERE / suite).glob("bench_*.py")):
        meta = {"path": path, "QUESTION": "", "FULL": [], "QUICK": [], "MINUTES": None}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id in meta:
                    try:
                        meta[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
        out[path.stem.removeprefix("bench_")] = meta
    return out


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _split_row(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip() for p in parts]


def _section_bounds(text: str, suite: str) -> tuple[int, int] | None:
    start, end = f"<!-- suite:{suite} -->", f"<!-- /suite:{suite} -->"
    i = text.find(start)
    j = text.find(end, i + 1) if i >= 0 else -1
    return (i, j + len(end)) if i >= 0 and j >= 0 else None


def old_rows(text: str, suite: str) -> list[list[str]]:
    """The table rows already in the suite's section (each a list of cells, as written)."""
    bounds = _section_bounds(text, suite)
    if bounds is None:
        return []
    rows = []
    for line in text[bounds[0]:bounds[1]].splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = _split_row(line)
            if len(cells) == len(COLUMNS) and cells[0] != COLUMNS[0]:
                rows.append(cells)
    return rows


def merge_rows(order: list[str], new: list[list[str]], old: list[list[str]], ran: set[str] = frozenset()
               ) -> list[list[str]]:
    """This run's rows replace the rows with the same question and figure; every other row is carried over,
    marked "(recorded <when>, not rerun)" once, except an earlier failure of a question that ran this time."""
    fresh = {(r[0], r[1]) for r in new}
    carried = []
    for r in old:
        if (r[0], r[1]) in fresh or (r[1] == "run" and r[0].strip("`") in ran):
            continue
        r = list(r)
        if NOT_RERUN not in r[-1]:
            r[-1] = f"(recorded {r[-1]}, {NOT_RERUN})"
        carried.append(r)
    out = []
    for name in order:
        key = f"`{name}`"
        out += [r for r in new if r[0] == key] + [r for r in carried if r[0] == key]
    return out + [r for r in carried if r[0].strip("`") not in order]


def write_markdown(suite: str, path: Path, order: list[str], new: list[list[str]], header: str,
                   ran: set[str] = frozenset()) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    rows = merge_rows(order, new, old_rows(text, suite), ran)
    body = [f"<!-- suite:{suite} -->", f"## {suite}: {SUITES[suite]}", "", header, "",
            "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    body += ["| " + " | ".join(r) + " |" for r in rows]
    body.append(f"<!-- /suite:{suite} -->")
    section = "\n".join(body)
    bounds = _section_bounds(text, suite)
    if bounds is None:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + section + "\n"
    else:
        text = text[:bounds[0]] + section + text[bounds[1]:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"table written: {path}")


def main(suite: str, argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    table = questions(suite)
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks.{suite}", description=f"{suite}: {SUITES[suite]}")
    ap.add_argument("--only", default="", help=f"comma-separated questions: {', '.join(table)}")
    ap.add_argument("--quick", action="store_true", help="small sizes: proves the suite runs; not the figures")
    ap.add_argument("--markdown", nargs="?", const="", default=None, metavar="PATH",
                    help="write the suite's table (default: benchmarks/RESULTS.md; with --quick "
                         "benchmarks/out/<suite>-quick.md, so that quick figures never replace measured ones)")
    ap.add_argument("--list", action="store_true", help="list the questions, their commands and minutes")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one question may take")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        ap.error(f"unknown question(s) {', '.join(unknown)}; this suite has {', '.join(table)}")
    if extra and len(names) != 1:
        ap.error("arguments after -- go to one question: name it with --only")
    if args.list:
        for n in names:
            q = table[n]
            m = q["MINUTES"]
            mins = f"~{m[0]} / {m[1]} min" if m else "? min"
            print(f"{n:<16} {mins:<14} {q['QUESTION']}\n{'':16} python {q['path'].relative_to(ROOT)} "
                  f"{' '.join(q['QUICK'])}   (quick)")
        return 0

    machine = machine_info()
    started = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    load0 = load_average()
    print(f"[{suite}] {SUITES[suite]}\n{machine}\n{load0} at the start{'; --quick' if args.quick else ''}",
          flush=True)
    new_rows: list[list[str]] = []
    failed = []
    for n in names:
        q = table[n]
        cmd = [sys.executable, str(q["path"]), *(q["QUICK"] if args.quick else q["FULL"]), *extra]
        print(f"\n== {n}: {q['QUESTION']}\n   $ {' '.join(map(str, cmd[1:]))}   ({load_average()})", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            rows_file = Path(tmp) / "rows.jsonl"
            env = {**os.environ, ROWS_ENV: str(rows_file)}
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=args.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            took = time.perf_counter() - t0
            rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
        when = dt.datetime.now().strftime("%Y-%m-%d %H:%M") + (" (--quick)" if args.quick else "")
        if rc != 0:
            failed.append(n)
            rows.append({"figure": "run", "value": f"FAILED (exit {rc})", "beside": "", "goal": "", "load": ""})
        print(f"== {n}: {len(rows)} figures in {took / 60:.1f} min, exit {rc}; {load_average()}", flush=True)
        new_rows += [[f"`{n}`", _cell(r["figure"]), _cell(r["value"]), _cell(r["beside"]), _cell(r["goal"]),
                      _cell(r["load"]), _cell(short_machine()), when] for r in rows]

    load1 = load_average()
    print(f"\n[{suite}] {len(names) - len(failed)} of {len(names)} questions ran; {load1} at the end")
    for r in new_rows:
        print(f"  {r[0]:<18} {r[1]}: {r[2]}" + (f" | {r[3]}" if r[3] else "") + (f" | goal {r[4]}" if r[4] else ""))
    if args.markdown is not None:
        path = Path(args.markdown) if args.markdown else (
            ROOT / "benchmarks" / "out" / f"{suite}-quick.md" if args.quick else RESULTS)
        header = (f"Last written by `python -m benchmarks.{suite}{' --quick' if args.quick else ''}"
                  f"{' --only ' + args.only if args.only else ''} --markdown` from {started}: {machine}; "
                  f"{load0} at the start, {load1.split(' on ')[0]} at the end.")
        write_markdown(suite, path, list(table), new_rows, header, set(names))
    return 1 if failed else 0
