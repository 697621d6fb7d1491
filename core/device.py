"""Choose the torch device every core function runs on, and keep numpy's BLAS threads out of torch's way."""
from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_ALLOWED = ("cuda", "mps", "cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best device: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the environment variable ``CP_DEVICE`` when ``prefer`` is None) names a device
    to use instead, e.g. ``"cpu"`` or ``"cuda:1"``. A preferred device that is not available
    raises ``ValueError`` rather than silently falling back.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    choice = prefer if prefer is not None else os.environ.get("CP_DEVICE") or None
    if choice:
        choice = choice.strip().lower()
        kind = choice.split(":", 1)[0]
        if kind not in _ALLOWED:
            raise ValueError(f"Unknown device {choice!r}; use one of 'cuda', 'mps' or 'cpu'.")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA GPU is available here; use 'cpu'.")
        if kind == "mps" and not _mps_available():
            raise ValueError("Apple MPS was asked for but is not available here; use 'cpu'.")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A short human description, e.g. ``"CUDA: NVIDIA H100 80GB HBM3"`` or ``"CPU (2 cores)"``."""
    device = device or pick_device()
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS (Metal GPU)"
    return f"CPU ({os.cpu_count() or 1} cores, {torch.get_num_threads()} torch threads)"


def _cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), from torch's own CPU checks."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # noqa: BLE001 - a private probe that fails counts as "no"
            continue
    return False


_CPUINFO = "/proc/cpuinfo"


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The feature flags Linux lists for this CPU (empty elsewhere, or when /proc/cpuinfo cannot be read). Read once:
    the Train page asks what "auto" means at every render."""
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_bf16_pays() -> bool:
    """Whether bf16 autocast made the first lesson faster on CPUs like this one: bf16 in hardware *and* either AMX
    tiles or AVX512-FP16 (both mark Intel's Sapphire Rapids generation and later).

    Hardware bf16 alone does not say it (figures: benchmarks/RESULTS.md, issue 10): on an Intel host with
    AVX512-BF16 and AVX512-FP16 the lesson stepped faster in bf16 and needed as many steps; on an AMD EPYC (Zen 4)
    with AVX512-BF16 but neither, bf16 was no faster and reached the lesson's point later; without AVX512-BF16 it
    was several times slower.
    """
    if not _cpu_has_fast_bf16():
        return False
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        if check is not None and check():
            return True
    except Exception:  # noqa: BLE001 - a private probe that fails counts as "no"
        pass
    return "avx512_fp16" in _cpu_flags()


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The arithmetic a training step runs in: ``"fp32"`` or ``"bf16"`` (autocast).

    ``"fp32"`` and ``"bf16"`` are kept as asked. ``"auto"`` is bf16 only on a CPU where bf16 measured faster for
    the app's small encoders (:func:`_cpu_bf16_pays`: bf16 in hardware with AMX or AVX512-FP16), fp32 on every
    other CPU. On CUDA and MPS ``"auto"`` stays fp32: the app's small encoders are bound by kernel launches there,
    which autocast's casts only add to (unmeasured).

    >>> resolve_precision("fp32", "cpu")
    'fp32'
    """
    if precision in ("fp32", "bf16"):
        return precision
    if precision != "auto":
        raise ValueError(f"Unknown precision {precision!r}; choose auto, fp32 or bf16.")
    return "bf16" if torch.device(device).type == "cpu" and _cpu_bf16_pays() else "fp32"


# numpy and scipy each bring their own OpenBLAS with its own worker threads, and an idle OpenBLAS worker spins for a
# while before it sleeps. On a small CPU a PCA or an SVD between two torch calls leaves those workers spinning on
# the cores torch's threads need: a training snapshot (400 images through the encoder, then a 64-d PCA) took 50-75 ms
# instead of 14 ms, and the first lesson reached its point 1.13-1.24x later (benchmarks/lessons/
# bench_time_to_insight.py --blas-compare). The linear algebra the trainer does itself is tiny, so it runs on one
# BLAS thread while torch owns the cores.
SMALL_BLAS_THREADS: int | None = 1  # None: leave the BLAS pools as they are (benchmarks compare both)
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None  # threadpoolctl's limit object while anyone is inside small_blas()
_blas_controller = None


@contextmanager
def small_blas() -> Iterator[None]:
    """Run the block with numpy's and scipy's BLAS on ``SMALL_BLAS_THREADS`` threads (torch is untouched).

    For small matrices next to torch work. Safe from several threads at once: the first to enter sets the limit,
    the last to leave restores the libraries' own thread counts (OpenBLAS may keep one thread when that last one is
    not the main thread; one thread is what torch's neighbours should have anyway).
    """
    global _blas_users, _blas_limiter, _blas_controller
    limit = SMALL_BLAS_THREADS
    if limit is None:
        yield
        return
    with _blas_lock:
        if _blas_users == 0:
            if _blas_controller is None:
                import scipy.linalg  # noqa: F401  (load scipy's OpenBLAS too, so the controller sees it)
                from threadpoolctl import ThreadpoolController

                _blas_controller = ThreadpoolController()
            _blas_limiter = _blas_controller.limit(limits=limit, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
