"""Defaults for every test: CPU only, one BLAS/OpenMP thread (the machines are shared 2-core boxes).

Set before anything imports torch; an explicit environment value wins (e.g. CP_DEVICE=cuda on a GPU box).
Subprocesses started by tests (the browser tests' `streamlit run`) inherit them.
"""
from __future__ import annotations

import os

os.environ.setdefault("CP_DEVICE", "cpu")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
