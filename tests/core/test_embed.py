"""core.embed: EmbeddingSet validation, export/import round trips, refusal of unsafe files, embed_imageset."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import core.embed as embed_mod
from core.embed import EmbeddingSet, embed_imageset
from core.errors import PlaygroundError
from core.models import EncoderConfig, build_model



def _set(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return EmbeddingSet(
        rng.normal(size=(n, d)).astype(np.float32),
        ids=[f"shapes/{i:06d}" for i in range(n)],
        labels={"shape": rng.integers(0, 3, size=n), "digit": rng.integers(0, 2, size=n)},
        classes={"shape": ["circle", "square", "star"], "digit": ["7", "3"]},
        source="SimCLR small_cnn on shapes, step 3, encoder space",
    )


def _names(s: EmbeddingSet, factor: str) -> list[str]:
    return s.label_names(factor)


def test_validation():
    s = EmbeddingSet(np.ones((3, 2)), labels={"f": [0, 1, 1]})
    assert s.vectors.dtype == np.float32 and s.ids == ["0", "1", "2"] and s.classes["f"] == ["0", "1"]
    with pytest.raises(PlaygroundError, match="N rows x D"):
        EmbeddingSet(np.ones(3))
    with pytest.raises(PlaygroundError, match="NaN"):
        EmbeddingSet(np.array([[np.nan, 1.0]]))
    with pytest.raises(PlaygroundError, match="ids"):
        EmbeddingSet(np.ones((3, 2)), ids=["a"])
    with pytest.raises(PlaygroundError, match="outside"):
        EmbeddingSet(np.ones((2, 2)), labels={"f": [0, 2]}, classes={"f": ["a", "b"]})
    with pytest.raises(PlaygroundError, match="integer"):
        EmbeddingSet(np.ones((2, 2)), labels={"f": [0.5, 1.0]})
    assert isinstance(PlaygroundError("x"), ValueError)


def test_subset():
    s = _set()
    sub = s.subset([4, 1])
    assert sub.ids == [s.ids[4], s.ids[1]]
    np.testing.assert_array_equal(sub.vectors, s.vectors[[4, 1]])
    assert _names(sub, "shape") == [_names(s, "shape")[4], _names(s, "shape")[1]]
    mask = np.zeros(len(s), bool)
    mask[[0, 2]] = True
    assert s.subset(mask).ids == [s.ids[0], s.ids[2]]
    assert len(s.subset([])) == 0
    with pytest.raises(PlaygroundError, match="out of range"):
        s.subset([99])


def test_npz_round_trip():
    s = _set()
    back = EmbeddingSet.from_file(s.to_npz_bytes(), "emb.npz")
    np.testing.assert_array_equal(back.vectors, s.vectors)
    assert back.ids == s.ids and back.source == s.source and back.classes == s.classes
    for f in s.factors:
        np.testing.assert_array_equal(back.labels[f], s.labels[f])
    with np.load(io.BytesIO(s.to_npz_bytes()), allow_pickle=False) as npz:  # readable with no pickle
        assert npz["vectors"].shape == (12, 5)


def test_csv_round_trip():
    s = _set()
    data = s.to_csv_bytes()
    header = data.decode().splitlines()[0].split(",")
    assert header == ["id", "shape", "digit", "d0", "d1", "d2", "d3", "d4"]
    back = EmbeddingSet.from_file(data, "emb.csv")
    np.testing.assert_array_equal(back.vectors, s.vectors)  # float32 survives text exactly
    assert back.ids == s.ids
    for f in s.factors:  # class order may differ (sorted on read), names per item may not
        assert _names(back, f) == _names(s, f)
    assert back.source == "uploaded file emb.csv"


def test_csv_clashing_factor_names_round_trip():
    s = EmbeddingSet(np.eye(3), labels={"id": [0, 1, 1], "d7": [1, 0, 1]}, classes={"id": ["a", "b"], "d7": ["x", "y"]})
    back = EmbeddingSet.from_file(s.to_csv_bytes(), "e.csv")
    assert back.dim == 3 and _names(back, "id") == ["a", "b", "b"] and _names(back, "d7") == ["y", "x", "y"]


def test_plain_npy_and_foreign_files(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    path = tmp_path / "vecs.npy"
    np.save(path, x)
    s = EmbeddingSet.from_file(path)
    np.testing.assert_array_equal(s.vectors, x)
    assert s.source == "uploaded file vecs.npy"
    buf = io.BytesIO()
    np.savez(buf, features=x, y=np.array([3, 1, 3, 1, 3, 1]), names=np.array(list("abcdef")))
    s2 = EmbeddingSet.from_file(buf.getvalue(), "foreign.npz")
    assert s2.ids == list("abcdef") and s2.classes["y"] == ["1", "3"] and _names(s2, "y")[0] == "3"
    csv = b"name,kind,x1,x2\na,cat,0.5,1\nb,dog,1.5,2\n"
    s3 = EmbeddingSet.from_file(csv, "t.csv")
    assert s3.ids == ["a", "b"] and _names(s3, "kind") == ["cat", "dog"]
    np.testing.assert_array_equal(s3.vectors, [[0.5, 1], [1.5, 2]])


def test_parquet_round_trip_or_clear_error():
    pd = pytest.importorskip("pandas")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(PlaygroundError, match="pyarrow"):
            EmbeddingSet.from_file(b"PAR1", "x.parquet")
        return
    frame = pd.DataFrame({"id": ["a", "b", "c"], "label": ["x", "y", "x"],
                          "embedding": [np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5.0, 6.0])]})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    s = EmbeddingSet.from_file(buf.getvalue(), "e.parquet")
    np.testing.assert_array_equal(s.vectors, [[1, 2], [3, 4], [5, 6]])
    assert s.ids == ["a", "b", "c"] and _names(s, "label") == ["x", "y", "x"]


def test_refuses_pickled_and_bad_files(tmp_path, monkeypatch):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(PlaygroundError, match="pickle"):
        EmbeddingSet.from_file(buf.getvalue(), "evil.npy")
    buf = io.BytesIO()
    np.savez(buf, vectors=np.array([[1.0]]), obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PlaygroundError, match="pickle"):
        EmbeddingSet.from_file(buf.getvalue(), "evil.npz")
    with pytest.raises(PlaygroundError, match=r"\.npy"):
        EmbeddingSet.from_file(b"abc", "vectors.pkl")
    with pytest.raises(PlaygroundError):
        EmbeddingSet.from_file(b"not a zip", "x.npz")
    with pytest.raises(PlaygroundError, match="one-dimensional"):
        b = io.BytesIO()
        np.save(b, np.arange(5.0))
        EmbeddingSet.from_file(b.getvalue(), "flat.npy")
    with pytest.raises(PlaygroundError, match="numeric columns"):
        EmbeddingSet.from_file(b"a,b\nx,y\n", "t.csv")
    with pytest.raises(PlaygroundError, match="NaN|blanks"):
        EmbeddingSet.from_file(b"d0,d1\n1,\n2,3\n", "t.csv")
    with pytest.raises(PlaygroundError, match="file name"):
        EmbeddingSet.from_file(b"abc")
    with pytest.raises(PlaygroundError, match="No embedding file"):
        EmbeddingSet.from_file(tmp_path / "missing.npy")
    monkeypatch.setattr(embed_mod, "MAX_EMBEDDING_FILE_BYTES", 100)
    with pytest.raises(PlaygroundError, match="limited"):
        EmbeddingSet.from_file(b"x" * 101, "big.csv")
    monkeypatch.setattr(embed_mod, "MAX_EMBEDDING_VALUES", 10)
    b = io.BytesIO()
    np.save(b, np.zeros((4, 4)))
    with pytest.raises(PlaygroundError, match="limit"):
        EmbeddingSet.from_file(b.getvalue(), "many.npy")


class _TinyImages:
    """Stand-in with the ImageSet attributes embed_imageset reads (core.data.ImageSet when present)."""

    def __init__(self, n=10, size=16):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = {"shape": np.arange(n) % 2}
        self.classes = {"shape": ["circle", "square"]}
        self.name = "tiny"
        self.ids = [f"tiny/{i}" for i in range(n)]

    def __len__(self):
        return self.images.shape[0]


def _imageset():
    tiny = _TinyImages()
    try:
        from core.data import ImageSet
    except ImportError:
        return tiny
    return ImageSet(images=tiny.images, labels=tiny.labels, classes=tiny.classes, name=tiny.name, ids=tiny.ids)


def test_embed_imageset_batches_and_reports_progress():
    torch.manual_seed(0)
    model = build_model(EncoderConfig(width=8, projection_dim=6, projection_hidden=8), device="cpu")
    model.train()
    images = _imageset()
    calls = []
    es = embed_imageset(model, images, batch_size=4, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 10), (8, 10), (10, 10)]
    assert model.training  # mode restored
    assert es.vectors.shape == (10, model.feature_dim) and es.vectors.dtype == np.float32
    assert es.ids == [f"tiny/{i}" for i in range(10)]
    assert es.label_names("shape")[:2] == ["circle", "square"]
    assert es.source == "small_cnn on tiny, encoder space"
    direct = model.embed(images.images.float() / 255).numpy()
    np.testing.assert_allclose(es.vectors, direct, atol=1e-5, rtol=1e-5)
    proj = embed_imageset(model, images, space="projection", source="custom")
    assert proj.vectors.shape == (10, 6) and proj.source == "custom"
    with pytest.raises(ValueError, match="space"):
        embed_imageset(model, images, space="pixels")


def test_parquet_decompression_bomb_is_refused_before_decoding(monkeypatch):
    """A few kB of dictionary-encoded parquet that would expand to ~380 MB of text: refused from the
    dictionary's sizes, before pandas materialises a single string."""
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Written straight from a dictionary array (4,000 indices into one 100 kB string), so building the bomb does
    # not materialise the 380 MB it stands for.
    label = pa.DictionaryArray.from_arrays(pa.array(np.zeros(4000, dtype=np.int32)), pa.array(["x" * 100_000]))
    buf = io.BytesIO()
    pq.write_table(pa.table({"label": label, "d0": np.zeros(4000)}), buf)
    data = buf.getvalue()
    assert len(data) < 20_000

    pool = pa.default_memory_pool()
    before = pool.max_memory()  # the peak of pyarrow's allocations so far in this process
    with pytest.raises(PlaygroundError, match="unpacks to 38[0-9] MB"):
        EmbeddingSet.from_file(data, "bomb.parquet")
    # the old reader decoded all 380 MB of strings first; the dictionary-sized check stays far below that
    assert pool.max_memory() - before < 50 * 2**20


def test_parquet_too_many_values_refused_from_the_footer(monkeypatch):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    frame = pd.DataFrame({"embedding": [np.zeros(100, dtype=np.float32)] * 50})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    monkeypatch.setattr(embed_mod, "MAX_EMBEDDING_VALUES", 1000)  # 5,000 values declared

    real = pq.ParquetFile

    def no_read(*args, **kwargs):
        f = real(*args, **kwargs)
        if kwargs.get("read_dictionary") is not None:
            raise AssertionError("column data was read before the footer check")
        return f

    monkeypatch.setattr(pq, "ParquetFile", no_read)
    with pytest.raises(PlaygroundError, match="declares 5,000 values"):
        EmbeddingSet.from_file(buf.getvalue(), "big.parquet")


def test_npz_bomb_refused_from_the_zip_directory(monkeypatch):
    buf = io.BytesIO()
    np.savez_compressed(buf, vectors=np.zeros((2000, 500), dtype=np.float32))  # 4 MB of zeros, ~4 kB packed
    monkeypatch.setattr(embed_mod, "_MAX_DECODED_BYTES", 1_000_000)
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    with pytest.raises(PlaygroundError, match="unpacks to 4 MB"):
        EmbeddingSet.from_file(buf.getvalue(), "bomb.npz")


def test_bad_uploads_each_get_a_sentence():
    cases = {
        "empty.csv": b"",
        "header_only.csv": b"d0,d1\n",
        "inf.csv": b"d0,d1\n1,inf\n2,3\n",
        "ragged.npy": b"\x93NUMPY garbage",
        "empty.npz": (lambda: (lambda b: (np.savez(b), b.getvalue())[1])(io.BytesIO()))(),
        "bad.parquet": b"PAR1 not really",
    }
    for name, data in cases.items():
        with pytest.raises(PlaygroundError) as info:
            EmbeddingSet.from_file(data, name)
        msg = str(info.value)
        assert name in msg and "Traceback" not in msg, (name, msg)


def test_join_metadata_by_id_and_by_row_count():
    from core.embed import join_metadata

    s = EmbeddingSet(np.eye(3), ids=["a", "b", "c"])
    meta = b"id,kind,caption\nc,dog,a dog on grass\na,cat,a cat\nb,cat,another cat\nz,fox,unused row\n"
    joined, texts = join_metadata(s, meta, "meta.csv")
    assert joined.label_names("kind") == ["cat", "cat", "dog"]  # matched by id, not by position
    assert texts == ["a cat", "another cat", "a dog on grass"]
    np.testing.assert_array_equal(joined.vectors, s.vectors)
    by_row, _ = join_metadata(EmbeddingSet(np.eye(2)), b"colour\nred\nblue\n", "m.csv")
    assert by_row.label_names("colour") == ["red", "blue"]
    with pytest.raises(PlaygroundError, match="3 vectors"):
        join_metadata(s, b"colour\nred\nblue\n", "m.csv")
    with pytest.raises(PlaygroundError, match="repeats ids"):
        join_metadata(s, b"id,k\na,1\na,2\nb,1\nc,1\n", "m.csv")
    with pytest.raises(PlaygroundError, match=r"\.csv"):
        join_metadata(s, b"x", "m.json")
