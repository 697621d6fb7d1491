"""core.clip.cache: the capped, process-safe disk cache of CLIP image embeddings (diskcache underneath).

What is checked: vectors come back bit for bit; the folder never grows past its cap however much is written;
what was evicted is recomputed to the same vectors; nothing in the folder is ever unpickled (a foreign file, a
pickled row written by plain diskcache, a garbage value, a damaged database); the cap comes from
``$CP_CLIP_CACHE_MB``; two processes writing one cache at once leave it consistent.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core.clip as cc
from core.clip import cache as C
from core.errors import PlaygroundError

REPO = Path(__file__).resolve().parents[2]
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def _closed():
    C.close_all()
    yield
    C.close_all()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from open_clip.model import CLIP

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_clip")
    cc.export_local_dir(CLIP(**json.loads(json.dumps(TINY_CFG))), json.loads(json.dumps(TINY_CFG)), folder, half=False)
    return cc.load_clip(f"local-dir:{folder}", device="cpu")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(60)]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def expected_vector(key: str, dim: int = 32) -> np.ndarray:
    seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class _Trap:
    """Unpickling this touches a marker file: the proof that something was unpickled."""

    marker: Path

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_vectors_round_trip_bit_exactly(tmp_path):
    v = np.random.default_rng(0).standard_normal((50, 24)).astype(np.float32)
    v[0, :4] = [-0.0, np.float32(1e-45), np.inf, np.nan]  # signed zero, a denormal, an infinity, a NaN
    keys = [f"img{i}" for i in range(50)]
    cc.EmbeddingCache("m", root=tmp_path, cap=8 << 20).put(keys, v)
    C.close_all()  # read back as a new process would
    got = cc.EmbeddingCache("m", root=tmp_path, cap=8 << 20).get(keys)
    assert all(g is not None and g.dtype == np.float32 and g.shape == (24,) for g in got)
    assert np.array_equal(np.stack(got).view(np.uint32), v.view(np.uint32))


def test_the_folder_never_exceeds_its_cap_and_the_oldest_go_first(tmp_path):
    cap = 1 << 20
    store = cc.EmbeddingCache("m", root=tmp_path, cap=cap)
    rng = np.random.default_rng(0)
    written = 0
    for b in range(6):  # 3 MiB of 512-d vectors (a ViT-B's)
        vecs = rng.standard_normal((256, 512)).astype(np.float32)
        store.put([f"{b}-{i}" for i in range(256)], vecs)
        written += vecs.nbytes
        assert folder_bytes(tmp_path) <= cap, (b, folder_bytes(tmp_path))
        assert store.volume() <= cap
    assert written >= 3 * cap
    newest, oldest = store.get([f"5-{i}" for i in range(256)]), store.get([f"0-{i}" for i in range(256)])
    assert all(v is not None for v in newest) and all(v is None for v in oldest)
    assert len(C._open(str(tmp_path), cap)) < 6 * 256  # evicted, not just hidden


def test_evicted_images_are_recomputed_to_the_same_vectors(bundle, images, tmp_path, monkeypatch):
    reference = cc.embed_images(bundle, images, cache=False)
    store = cc.EmbeddingCache(bundle.fingerprint, root=tmp_path, cap=512 << 10)
    first = cc.embed_images(bundle, images, cache=store)
    np.testing.assert_allclose(first, reference, atol=1e-6)
    # Other images' vectors push the oldest of these out (least recently stored first).
    filler = np.random.default_rng(2).standard_normal((300, 512)).astype(np.float32)  # another model's, 600 kB
    for s in range(0, 300, 100):
        store.put([f"other-{i}" for i in range(s, s + 100)], filler[s:s + 100])
    keys = C._image_hashes(images)
    missing = sum(v is None for v in store.get(keys))
    assert 0 < missing <= len(images)
    calls = []
    original = bundle.model.encode_image
    monkeypatch.setattr(bundle.model, "encode_image", lambda x, **k: calls.append(len(x)) or original(x, **k))
    again = cc.embed_images(bundle, images, cache=store)
    assert sum(calls) == missing  # only the evicted ones went through the model
    np.testing.assert_allclose(again, reference, atol=1e-6)
    kept = [i for i, v in enumerate(store.get(keys)) if v is not None]
    assert np.array_equal(again[kept], first[kept])


def test_nothing_in_the_folder_is_ever_unpickled(tmp_path):
    import diskcache

    root, marker = tmp_path / "cache", tmp_path / "unpickled"
    store = cc.EmbeddingCache("m", root=root, cap=8 << 20)
    good = np.arange(16, dtype=np.float32)
    store.put(["good"], good[None])
    # A foreign pickle file beside the database, and rows written by plain diskcache (which pickles): a pickled
    # value in the database, a large one in a value file, a pickled key, and raw bytes that are not a vector.
    (root / "evil.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    plain = diskcache.Cache(str(root), disk_min_file_size=1024)  # ours keeps every value in the database
    plain.set(store.key("in-db"), _Trap(marker))
    plain.set(store.key("in-file"), [_Trap(marker), b"x" * 4096])  # > 1 kB: a .val file
    plain.set(("a", "pickled", "key"), b"x")
    plain.set(store.key("garbage"), b"cpv1 not a vector")
    plain.close()
    assert list(root.rglob("*.val")), "the large pickle went to a value file"
    got = store.get(["in-db", "in-file", "garbage", "good"])
    assert got[:3] == [None, None, None] and np.array_equal(got[3], good)
    store.put(["in-db", "in-file", "garbage"], np.ones((3, 16), np.float32))  # a miss is simply rewritten
    assert all(np.array_equal(v, np.ones(16, np.float32)) for v in store.get(["in-db", "in-file", "garbage"]))
    store.clear()
    assert not marker.exists()


def test_a_damaged_database_is_skipped_and_embedding_still_works(bundle, images, tmp_path, caplog):
    root = tmp_path / "cache"
    root.mkdir()
    (root / "cache.db").write_bytes(b"this is not an SQLite database " * 200)
    store = cc.EmbeddingCache(bundle.fingerprint, root=root, cap=8 << 20)
    out = cc.embed_images(bundle, images[:8], cache=store)
    np.testing.assert_allclose(out, cc.embed_images(bundle, images[:8], cache=False), atol=1e-6)
    assert any("CLIP embedding cache" in r.getMessage() for r in caplog.records)


def test_the_cap_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CP_CLIP_CACHE_MB", "3")
    assert C.cap_bytes() == 3 << 20 and cc.EmbeddingCache("m", root=tmp_path).cap == 3 << 20
    monkeypatch.delenv("CP_CLIP_CACHE_MB")
    assert C.cap_bytes() == 512 << 20
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv("CP_CLIP_CACHE_MB", bad)
        with pytest.raises(PlaygroundError, match="CP_CLIP_CACHE_MB must be a size in megabytes"):
            C.cap_bytes()
    monkeypatch.setenv("CP_CLIP_CACHE_MB", "0")  # off: nothing is written, every lookup misses
    off = cc.EmbeddingCache("m", root=tmp_path / "off")
    off.put(["a"], np.ones((1, 4), np.float32))
    assert off.get(["a"]) == [None] and not (tmp_path / "off").exists()


def test_one_open_cache_per_folder_even_while_empty(tmp_path):
    assert C._open(str(tmp_path), 1 << 20) is C._open(str(tmp_path), 1 << 20)  # an empty Cache is falsy


def test_clear_drops_one_models_vectors_only(tmp_path):
    a, b = cc.EmbeddingCache("model-a", root=tmp_path), cc.EmbeddingCache("model-b", root=tmp_path)
    a.put(["x"], np.ones((1, 8), np.float32))
    b.put(["x"], np.zeros((1, 8), np.float32))
    a.clear()
    assert a.get(["x"]) == [None] and np.array_equal(b.get(["x"])[0], np.zeros(8, np.float32))


_WRITER = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    sys.path.insert(0, sys.argv[4])
    from core.clip.cache import EmbeddingCache

    who, root, cap = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def expected(key):
        seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        return np.random.default_rng(seed).standard_normal(32).astype(np.float32)

    store = EmbeddingCache("shared-model", root=root, cap=cap)
    for b in range(8):
        # half the keys both processes write (two sessions embedding the same images), half their own
        keys = [f"shared-{(b * 60 + i) % 900}" for i in range(60)] + [f"p{who}-{b}-{i}" for i in range(60)]
        store.put(keys, np.stack([expected(k) for k in keys]))
        for k, v in zip(keys, store.get(keys)):
            if v is not None and not np.array_equal(v, expected(k)):
                sys.exit(f"{k} read back wrong")
""")


def test_two_processes_writing_one_cache_leave_it_consistent(tmp_path):
    root, cap = tmp_path / "cache", 1 << 20  # small enough that both evict while the other writes
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(who), str(root), str(cap), str(REPO)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    with sqlite3.connect(root / "cache.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = cc.EmbeddingCache("shared-model", root=root, cap=cap)
    keys = [f"shared-{i}" for i in range(900)] + [f"p{w}-{b}-{i}" for w in (0, 1) for b in range(8) for i in range(60)]
    found = {k: v for k, v in zip(keys, store.get(keys)) if v is not None}
    assert found and all(np.array_equal(v, expected_vector(k)) for k, v in found.items())
    assert any(k.startswith("p0-") for k in found) and any(k.startswith("p1-") for k in found)
    assert folder_bytes(root) <= cap and len(found) < len(keys)  # it evicted, and stayed under the cap
