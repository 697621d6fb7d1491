"""Shared bits for the benchmark scripts: the machine, the load average, a robust timer, the browser harness, and
``report`` (one headline figure, printed and handed to the suite's table)."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROWS_ENV = "CP_BENCH_ROWS"  # set by the suite runner (benchmarks/_suite.py): a JSON-lines file for report()


def cpu_model() -> str:
    """The CPU's model name and whether it has avx512_bf16 (Linux only): step times and the bf16 lever depend on it."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    if not model:
        return platform.processor() or platform.machine()
    return f"{model}, {'with' if 'avx512_bf16' in flags else 'no'} avx512_bf16"


def machine_info() -> str:
    """One line naming the machine: OS, CPU model, cores, python, torch, and the device ``core.device`` picks."""
    import torch

    from core.device import describe_device

    return (
        f"{platform.system()} {platform.machine()} ({cpu_model()}), {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, torch {torch.__version__}, device: {describe_device()}"
    )


def short_machine() -> str:
    """The machine in a table cell: CPU model (without the flag note), cores, device."""
    from core.device import describe_device

    return f"{cpu_model().split(',')[0]}, {os.cpu_count()} CPUs, {describe_device()}"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} CPUs"


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(figure: str, value: str, beside: str = "", goal: str = "") -> None:
    """One headline figure of a question: printed, and appended to the suite runner's rows (``ROWS_ENV``) with the
    load average of this moment. ``figure`` names what is measured and stays the same from run to run (the suite's
    table is keyed by it); ``value`` is the figure itself, ``beside`` what was measured side by side in the same
    run, ``goal`` the issue's goal and whether it is met."""
    load = os.getloadavg()[0]
    extra = "".join(f" | {s}" for s in (beside, goal) if s)
    print(f"  >> {figure}: {value}{extra} (load {load:.1f})", flush=True)
    path = os.environ.get(ROWS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"figure": figure, "value": value, "beside": beside, "goal": goal,
                                "load": round(load, 1)}) + "\n")


def load_harness() -> Any:
    """tests/browser/harness.py (Chromium, free ports, ``streamlit run`` servers), loaded by path: it imports
    neither pytest nor the app."""
    name = "cp_browser_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "browser" / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def served_navigation() -> None:
    """Make AppTest run every script as a served app does after its first run (as tests/app/conftest.py does):
    pages routed by ``st.navigation`` in app.py, not Streamlit's legacy ``pages/`` folder list."""
    from streamlit.runtime import pages_manager

    original = pages_manager.PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        pages_manager.PagesManager.uses_pages_directory = False

    pages_manager.PagesManager.__init__ = init
