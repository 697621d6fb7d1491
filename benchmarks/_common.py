"""Shared bits for benchmark scripts: machine info and a robust timer."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cpu_model() -> str:
    """The CPU's model name and whether it has avx512_bf16 (Linux only): the hosts this project is measured on
    have changed between sessions, and step times and the bf16 lever depend on it."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return f"{model}, {'with' if 'avx512_bf16' in flags else 'no'} avx512_bf16" if model else ""


def machine_info() -> str:
    import torch

    from core.device import describe_device

    cpu = _cpu_model() or platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, torch {torch.__version__}, device: {describe_device()}"
    )


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
