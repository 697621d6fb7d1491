"""EmbeddingSet: the one currency every analysis page consumes, whatever produced the vectors.

An :class:`EmbeddingSet` is N vectors plus per-item ids and categorical labels. It comes from a trained model
(:func:`embed_imageset`), from CLIP, or from a user's file (:meth:`EmbeddingSet.from_file`: .npy, .npz, .csv,
.parquet; never pickle), and goes back out as .npz or .csv.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from core.errors import PlaygroundError

if TYPE_CHECKING:
    from core.data import ImageSet
    from core.models import ContrastiveModel

__all__ = ["EmbeddingSet", "embed_imageset", "join_metadata", "MAX_EMBEDDING_FILE_BYTES", "MAX_EMBEDDING_VALUES",
           "EMBEDDING_FILE_TYPES"]

# An upload larger than this is refused before parsing: 1,000,000 x 64 float32 in parquet is ~250 MB, and the
# server's own cap (.streamlit/config.toml maxUploadSize) is 300 MB.
MAX_EMBEDDING_FILE_BYTES = 300 * 1024 * 1024
MAX_EMBEDDING_VALUES = 80_000_000  # N x D cap (320 MB of float32; a million 64-d vectors), also guards .npz
# largest decoded (uncompressed) size a .npz or .parquet may declare, checked from its metadata before decoding
_MAX_DECODED_BYTES = 4 * MAX_EMBEDDING_VALUES + MAX_EMBEDDING_FILE_BYTES
_MAX_TEXT_BYTES = 64 * 1024 * 1024  # ids, labels and captions of a parquet file, expanded
EMBEDDING_FILE_TYPES = (".npy", ".npz", ".csv", ".parquet")
_NPZ_FORMAT = "contrastive-playground-embeddings"
# column / key names recognised as labels, ids and vectors in foreign files (lower case)
_ID_NAMES = ("id", "ids", "name", "names", "filename", "file", "path")
_VECTOR_KEYS = ("vectors", "embeddings", "embedding", "features", "x", "z", "arr_0")
_LABEL_NAMES = ("label", "labels", "y", "class", "target", "category")


@dataclass
class EmbeddingSet:
    """N embedding vectors with ids and categorical labels.

    ``vectors``: float32 (N, D). ``ids``: N strings (default "0".."N-1"). ``labels``: factor name -> int64
    codes (N,) indexing ``classes[factor]``; ``classes`` defaults to the codes as strings. ``source``: what made
    the vectors, e.g. "SimCLR small_cnn on shapes, step 300, encoder space". ``captions`` (optional): N strings
    shown on hover, e.g. the sentence each text embedding came from (core.text). Bad contents raise PlaygroundError.

    >>> s = EmbeddingSet(np.eye(3), labels={"kind": np.array([0, 1, 1])}, classes={"kind": ["a", "b"]})
    >>> len(s), s.ids
    (3, ['0', '1', '2'])
    """

    vectors: np.ndarray
    ids: list[str] | None = None
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    captions: list[str] | None = None

    def __post_init__(self) -> None:
        v = self.vectors
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        v = np.asarray(v)
        if v.dtype == object or not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            raise PlaygroundError(f"Embedding vectors must be numbers, got values of type {v.dtype}.")
        if v.ndim != 2 or v.shape[1] < 1:
            raise PlaygroundError(f"Embedding vectors must form a table of N rows x D numbers, got shape {v.shape}.")
        v = np.ascontiguousarray(v, dtype=np.float32)
        if not np.isfinite(v).all():
            raise PlaygroundError("The embedding vectors contain NaN or infinite values.")
        self.vectors = v
        n = v.shape[0]
        if self.ids is None:
            self.ids = [str(i) for i in range(n)]
        else:
            self.ids = [str(i) for i in self.ids]
            if len(self.ids) != n:
                raise PlaygroundError(f"There are {len(self.ids)} ids for {n} vectors.")
        if not isinstance(self.labels, dict) or not isinstance(self.classes, dict):
            raise PlaygroundError("labels and classes must be dicts keyed by factor name.")
        extra = sorted(set(self.classes) - set(self.labels))
        if extra:
            raise PlaygroundError(f"classes names factor(s) {extra} that have no labels.")
        labels, classes = {}, {}
        for factor, codes in self.labels.items():
            if isinstance(codes, torch.Tensor):
                codes = codes.detach().cpu().numpy()
            codes = np.asarray(codes)
            if codes.shape != (n,):
                raise PlaygroundError(f"Labels {factor!r} have shape {codes.shape}; expected ({n},), one per vector.")
            if codes.size and not np.issubdtype(codes.dtype, np.integer):
                raise PlaygroundError(f"Labels {factor!r} must be integer codes into classes[{factor!r}].")
            codes = codes.astype(np.int64)
            names = self.classes.get(factor)
            if names is None:
                names = [str(c) for c in range(int(codes.max()) + 1 if codes.size else 0)]
            names = [str(c) for c in names]
            if codes.size and (codes.min() < 0 or codes.max() >= len(names)):
                raise PlaygroundError(f"Labels {factor!r} hold codes outside 0..{len(names) - 1}, "
                                      f"the range of its {len(names)} class names.")
            labels[str(factor)], classes[str(factor)] = codes, names
        self.labels, self.classes = labels, classes
        self.source = str(self.source)
        if self.captions is not None:
            self.captions = [str(c) for c in self.captions]
            if len(self.captions) != n:
                raise PlaygroundError(f"There are {len(self.captions)} captions for {n} vectors.")

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        """D, the vector length."""
        return self.vectors.shape[1]

    @property
    def factors(self) -> list[str]:
        """Label factor names in order."""
        return list(self.labels)

    def label_names(self, factor: str) -> list[str]:
        """Class name of every item for one factor. Shape: N strings."""
        if factor not in self.labels:
            raise PlaygroundError(f"Unknown label factor {factor!r}; this set has {self.factors}.")
        names = self.classes[factor]
        return [names[c] for c in self.labels[factor]]

    def subset(self, indices) -> EmbeddingSet:
        """The items at ``indices`` (integer positions or a boolean mask of length N), in that order."""
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise PlaygroundError(f"A boolean mask must have {len(self)} entries, got {idx.shape}.")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise PlaygroundError("subset needs integer positions or a boolean mask.")
        idx = idx.reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise PlaygroundError(f"subset index out of range for {len(self)} items.")
        return EmbeddingSet(self.vectors[idx], [self.ids[i] for i in idx],
                            {k: v[idx] for k, v in self.labels.items()},
                            {k: list(v) for k, v in self.classes.items()}, self.source,
                            None if self.captions is None else [self.captions[i] for i in idx])

    # ----------------------------------------------------------------------------------------------- export
    def to_npz_bytes(self) -> bytes:
        """A compressed .npz: ``vectors``, ``ids`` and ``label_<i>`` arrays plus a JSON ``meta`` string
        (factor names, classes, source). No object arrays, so it loads with ``allow_pickle=False``."""
        meta = {"format": _NPZ_FORMAT, "version": 1, "factors": self.factors, "classes": self.classes,
                "source": self.source}
        arrays: dict[str, np.ndarray] = {"vectors": self.vectors, "ids": np.array(self.ids, dtype=str),
                                         "meta": np.array(json.dumps(meta))}
        for i, factor in enumerate(self.factors):
            arrays[f"label_{i}"] = self.labels[factor]
        if self.captions is not None:
            arrays["captions"] = np.array(self.captions, dtype=str)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    def to_csv_bytes(self) -> bytes:
        """UTF-8 CSV: ``id``, one column per label factor holding class names, then ``d0 .. d{D-1}``."""
        import pandas as pd

        cols: dict[str, Any] = {"id": self.ids}
        for factor in self.factors:
            name = factor if factor != "id" and not _is_dim_name(factor) else f"label_{factor}"
            cols[name] = self.label_names(factor)
        frame = pd.DataFrame(cols)
        dims = pd.DataFrame(self.vectors, columns=[f"d{j}" for j in range(self.dim)])
        return pd.concat([frame, dims], axis=1).to_csv(index=False).encode("utf-8")

    # ----------------------------------------------------------------------------------------------- import
    @classmethod
    def from_file(cls, path_or_bytes: str | os.PathLike | bytes | Any, filename: str | None = None) -> EmbeddingSet:
        """Read vectors from .npy, .npz, .csv or .parquet, never unpickling anything.

        ``path_or_bytes`` is a path, raw bytes, or an uploaded file object (anything with ``getvalue()`` or
        ``read()``); ``filename`` supplies the extension when there is no path. Layouts understood:

        * .npy: one numeric (N, D) array.
        * .npz: this app's export, or arrays named vectors/embeddings/features/X (else the only 2-D numeric
          array) plus optional 1-D label arrays (labels/y/...) and ids.
        * .csv / .parquet: columns named d0, d1, ... are the vectors (without them: every numeric column but
          label-like ones); an id/name/path column gives ids; the other columns are labels. A parquet column
          of lists/arrays is also read as the vectors.

        Anything malformed, too large (``MAX_EMBEDDING_FILE_BYTES``, ``MAX_EMBEDDING_VALUES``) or pickled
        raises PlaygroundError with a sentence saying what is wrong.
        """
        data, name = _read_input(path_or_bytes, filename)
        suffix = Path(name).suffix.lower()
        if suffix not in EMBEDDING_FILE_TYPES:
            raise PlaygroundError(f"Cannot read {name!r}: embedding files must be one of "
                                  f"{', '.join(EMBEDDING_FILE_TYPES)}.")
        try:
            if suffix == ".npy":
                result = _from_npy(data, name)
            elif suffix == ".npz":
                result = _from_npz(data, name)
            elif suffix == ".csv":
                result = _from_csv(data, name)
            else:
                result = _from_parquet(data, name)
        except PlaygroundError:
            raise
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise PlaygroundError(f"Could not read {name!r} as a {suffix} embedding file ({exc}).") from exc
        if len(result) == 0:
            raise PlaygroundError(f"{name!r} holds no vectors.")
        if not result.source:
            result.source = f"uploaded file {name}"
        return result


def _is_dim_name(col: str) -> bool:
    return len(col) > 1 and col[0] == "d" and col[1:].isdigit()


def _read_input(src: Any, filename: str | None) -> tuple[bytes, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        if not filename:
            raise PlaygroundError("A file name (for its extension) is needed to read embedding bytes.")
        data = bytes(src)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise PlaygroundError(f"No embedding file at {str(path)!r}.")
        size = path.stat().st_size
        if size > MAX_EMBEDDING_FILE_BYTES:
            raise PlaygroundError(f"{path.name!r} is {size / 2**20:.0f} MB; embedding files are limited to "
                                  f"{MAX_EMBEDDING_FILE_BYTES // 2**20} MB.")
        data = path.read_bytes()
        filename = filename or path.name
    elif hasattr(src, "getvalue") or hasattr(src, "read"):  # Streamlit UploadedFile, BytesIO, open file
        data = src.getvalue() if hasattr(src, "getvalue") else src.read(MAX_EMBEDDING_FILE_BYTES + 1)
        filename = filename or getattr(src, "name", None)
        if not filename:
            raise PlaygroundError("A file name (for its extension) is needed to read an uploaded file.")
    else:
        raise PlaygroundError(f"Cannot read embeddings from a {type(src).__name__}; pass a path or bytes.")
    if len(data) > MAX_EMBEDDING_FILE_BYTES:
        raise PlaygroundError(f"{filename!r} is {len(data) / 2**20:.0f} MB; embedding files are limited to "
                              f"{MAX_EMBEDDING_FILE_BYTES // 2**20} MB.")
    return data, str(filename)


def _check_size(n: int, d: int, name: str) -> None:
    if n * d > MAX_EMBEDDING_VALUES:
        raise PlaygroundError(f"{name!r} holds {n} x {d} values; the limit is {MAX_EMBEDDING_VALUES:,}.")


def _vector_array(arr: np.ndarray, name: str, what: str = "array") -> np.ndarray:
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise PlaygroundError(f"The {what} in {name!r} is not numeric (dtype {arr.dtype}).")
    if arr.ndim == 1:
        raise PlaygroundError(f"The {what} in {name!r} is one-dimensional; vectors must be an N x D table.")
    if arr.ndim != 2:
        raise PlaygroundError(f"The {what} in {name!r} has shape {arr.shape}; vectors must be an N x D table.")
    _check_size(arr.shape[0], arr.shape[1], name)
    return arr


def _load_npy(data: bytes, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise PlaygroundError(f"{name!r} holds Python objects (pickled data), which are never loaded for "
                                  f"safety; save a plain numeric array instead.") from exc
        raise


def _from_npy(data: bytes, name: str) -> EmbeddingSet:
    # read the header first so an object array or a huge declared shape is refused before any allocation
    buf = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(buf)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(buf)
    except ValueError as exc:
        raise PlaygroundError(f"{name!r} is not a valid .npy file ({exc}).") from exc
    if dtype.hasobject:
        raise PlaygroundError(f"{name!r} holds Python objects (pickled data), which are never loaded for safety; "
                              f"save a plain numeric array instead.")
    if len(shape) == 2:
        _check_size(int(shape[0]), int(shape[1]), name)
    return EmbeddingSet(_vector_array(_load_npy(data, name), name))


def _from_npz(data: bytes, name: str) -> EmbeddingSet:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        total = sum(info.file_size for info in zf.infolist())
    if total > _MAX_DECODED_BYTES:  # decompression-bomb guard, from the zip directory (nothing decoded yet)
        raise PlaygroundError(f"{name!r} unpacks to {total / 2**20:.0f} MB, more than embeddings may take "
                              f"({_MAX_DECODED_BYTES // 2**20} MB); nothing was loaded.")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise PlaygroundError(f"{name!r} holds Python objects (pickled data), which are never loaded for "
                                  f"safety; save plain numeric arrays instead.") from exc
        raise
    if not arrays:
        raise PlaygroundError(f"{name!r} contains no arrays.")
    if "meta" in arrays and "vectors" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise PlaygroundError(f"The metadata in {name!r} is not valid JSON.") from exc
        if isinstance(meta, dict) and meta.get("format") == _NPZ_FORMAT:
            factors = list(meta.get("factors", []))
            labels = {f: arrays[f"label_{i}"] for i, f in enumerate(factors) if f"label_{i}" in arrays}
            classes = {f: list(meta.get("classes", {}).get(f, [])) or None for f in labels}
            classes = {f: c for f, c in classes.items() if c is not None}
            ids = arrays["ids"].tolist() if "ids" in arrays else None
            captions = arrays["captions"].tolist() if "captions" in arrays else None
            return EmbeddingSet(_vector_array(arrays["vectors"], name, "'vectors' array"), ids, labels, classes,
                                str(meta.get("source", "")), captions)
    lower = {key.lower(): key for key in arrays}
    key = next((lower[k] for k in _VECTOR_KEYS if k in lower and arrays[lower[k]].ndim == 2), None)
    if key is None:
        two_d = [k for k, a in arrays.items() if a.ndim == 2 and np.issubdtype(a.dtype, np.number)]
        if len(two_d) != 1:
            raise PlaygroundError(f"Cannot tell which array in {name!r} holds the vectors; name it 'vectors' "
                                  f"(found {sorted(arrays)}).")
        key = two_d[0]
    vectors = _vector_array(arrays[key], name, f"array {key!r}")
    n = vectors.shape[0]
    ids = None
    labels: dict[str, np.ndarray] = {}
    classes: dict[str, list[str]] = {}
    for k, a in arrays.items():
        if k == key or a.ndim != 1 or a.shape[0] != n:
            continue
        if k.lower() in _ID_NAMES and ids is None:
            ids = a.tolist()
        else:
            codes, names = _encode_labels(a)
            labels[k], classes[k] = codes, names
    return EmbeddingSet(vectors, ids, labels, classes)


def _encode_labels(values) -> tuple[np.ndarray, list[str]]:
    """Category codes and class names (sorted: numerically for numbers, else as text)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        arr = arr.astype(str)  # missing values become their own class "nan"
    if arr.dtype.kind not in "biuf":
        arr = np.array(["" if v is None else str(v) for v in arr.tolist()], dtype=str)
    uniq, codes = np.unique(arr, return_inverse=True)
    names = [str(int(u)) if arr.dtype.kind == "f" and float(u).is_integer() else str(u) for u in uniq.tolist()]
    return codes.reshape(-1).astype(np.int64), names


def _from_frame(frame, name: str) -> EmbeddingSet:
    import pandas as pd

    if frame.shape[0] == 0:
        raise PlaygroundError(f"{name!r} has no rows.")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if len(set(columns)) != len(columns):
        raise PlaygroundError(f"{name!r} has duplicate column names.")
    _check_size(frame.shape[0], frame.shape[1], name)
    dim_cols = [c for c in columns if _is_dim_name(c)]
    list_cols = [c for c in columns if frame[c].dtype == object and frame[c].size
                 and isinstance(frame[c].iloc[0], (list, tuple, np.ndarray))]
    id_col = next((c for c in columns if c.lower() in _ID_NAMES), None)
    if dim_cols:
        dim_cols.sort(key=lambda c: int(c[1:]))
        vec_cols = dim_cols
    elif list_cols:
        vec_cols = list_cols[:1]
    else:
        vec_cols = [c for c in columns if c != id_col and c.lower() not in _LABEL_NAMES
                    and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    if not vec_cols:
        raise PlaygroundError(f"{name!r} has no numeric columns to use as vectors; name them d0, d1, ...")
    if vec_cols == list_cols[:1] and not dim_cols:
        try:
            vectors = np.stack([np.asarray(v, dtype=np.float32) for v in frame[vec_cols[0]]])
        except (ValueError, TypeError) as exc:
            raise PlaygroundError(f"Column {vec_cols[0]!r} in {name!r} holds vectors of different lengths "
                                  f"or non-numbers.") from exc
    else:
        bad = [c for c in vec_cols if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise PlaygroundError(f"Vector column(s) {bad[:5]} in {name!r} contain non-numbers or blanks.")
        vectors = frame[vec_cols].to_numpy(dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise PlaygroundError(f"The vectors in {name!r} contain blanks, NaN or infinite values.")
    ids = frame[id_col].astype(str).tolist() if id_col is not None else None
    labels: dict[str, np.ndarray] = {}
    classes: dict[str, list[str]] = {}
    for c in columns:
        if c in vec_cols or c == id_col:
            continue
        col = frame[c]
        values = col.astype(str).to_numpy() if col.dtype == object else col.to_numpy()
        # to_csv_bytes prefixes factors that would clash with "id" or "d<j>"; undo that
        bare = c[len("label_"):] if c.startswith("label_") else ""
        factor = bare if bare == "id" or _is_dim_name(bare) else c
        labels[factor], classes[factor] = _encode_labels(values)
    return EmbeddingSet(vectors, ids, labels, classes)


def _from_csv(data: bytes, name: str) -> EmbeddingSet:
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data), low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PlaygroundError(f"{name!r} is not a readable CSV table ({exc}).") from exc
    return _from_frame(frame, name)


_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}


def _parquet_table(data: bytes, name: str):
    """Read a parquet file as a pyarrow Table, refusing it BEFORE anything large is decoded.

    1. The footer records every column chunk's value count and type: fixed-width columns (the vectors) are
       sized from it without reading a page, and more than ``MAX_EMBEDDING_VALUES`` values is refused.
    2. Text columns cannot be sized from the footer (a few kB of dictionary-encoded pages can repeat a 100 kB
       string a million times), so they are read still dictionary-encoded (dictionary + indices, small), their
       expanded size is summed from the dictionary's lengths, and only then are they expanded.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        values, fixed_bytes, text_cols = 0, 0, set()
        for r in range(meta.num_row_groups):
            group = meta.row_group(r)
            for c in range(group.num_columns):
                col = group.column(c)
                values += max(int(col.num_values), 0)
                width = _FIXED_WIDTH.get(col.physical_type)
                if width is None:
                    text_cols.add(col.path_in_schema.split(".")[0])
                else:
                    fixed_bytes += width * max(int(col.num_values), 0)
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise PlaygroundError(f"{name!r} is not a readable parquet file ({exc}).") from exc
    if values > MAX_EMBEDDING_VALUES + 16 * max(int(meta.num_rows), 0) or fixed_bytes > _MAX_DECODED_BYTES:
        raise PlaygroundError(f"{name!r} declares {values:,} values ({fixed_bytes / 2**20:.0f} MB decoded), more "
                              f"than embeddings may take ({MAX_EMBEDDING_VALUES:,} values); nothing was loaded.")
    try:
        table = pq.ParquetFile(io.BytesIO(data), read_dictionary=sorted(text_cols)).read()
    except Exception as exc:
        raise PlaygroundError(f"{name!r} is not a readable parquet file ({exc}).") from exc
    text_bytes = 0
    for i, field_ in enumerate(table.schema):
        if pa.types.is_dictionary(field_.type):
            for chunk in table.column(i).chunks:
                lengths = pc.binary_length(chunk.dictionary)
                text_bytes += int(pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0)
    if text_bytes > _MAX_TEXT_BYTES or fixed_bytes + text_bytes > _MAX_DECODED_BYTES:
        raise PlaygroundError(f"{name!r} unpacks to {(fixed_bytes + text_bytes) / 2**20:.0f} MB "
                              f"({text_bytes / 2**20:.0f} MB of text), more than embeddings may take "
                              f"({_MAX_TEXT_BYTES // 2**20} MB of ids, labels and captions); nothing was loaded.")
    return table


def _from_parquet(data: bytes, name: str) -> EmbeddingSet:
    try:
        import pyarrow  # noqa: F401  (pandas needs it to read parquet)
    except ImportError as exc:
        raise PlaygroundError("Reading .parquet files needs the pyarrow package, which is not installed here; "
                              "upload .npy, .npz or .csv instead.") from exc
    table = _parquet_table(data, name)
    try:
        frame = table.to_pandas()
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise PlaygroundError(f"{name!r} is not a readable parquet file ({exc}).") from exc
    for c in frame.columns:  # dictionary columns arrive as pandas categoricals: plain values for _from_frame
        if isinstance(frame[c].dtype, __import__("pandas").CategoricalDtype):
            frame[c] = frame[c].astype(object)
    return _from_frame(frame, name)


# columns of a metadata table that hold free text to show on hover rather than categories to colour by
_TEXT_NAMES = ("caption", "captions", "text", "texts", "sentence", "description", "title")
MAX_METADATA_CATEGORIES = 200  # a column with more distinct values is shown on hover, not offered as a colour


def join_metadata(embeddings: EmbeddingSet, data: bytes, filename: str = "metadata.csv"
                  ) -> tuple[EmbeddingSet, list[str] | None]:
    """Add the columns of a metadata CSV (labels, captions, ids) to ``embeddings``.

    Rows are matched by id when the table has an id-like column (id / name / filename / path) holding every id
    of the set, else by position when the row counts are equal; anything else is refused with a sentence.
    Columns with at most ``MAX_METADATA_CATEGORIES`` distinct values become label factors; a caption / text
    column (or any column with more distinct values) becomes the hover text. Paths are only shown, never read.
    Returns ``(new EmbeddingSet, texts or None)``.
    """
    import pandas as pd

    raw, name = _read_input(data, filename)
    if Path(name).suffix.lower() != ".csv":
        raise PlaygroundError(f"The metadata file {name!r} must be a .csv table.")
    try:
        frame = pd.read_csv(io.BytesIO(raw), low_memory=False, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PlaygroundError(f"{name!r} is not a readable CSV table ({exc}).") from exc
    n = len(embeddings)
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise PlaygroundError(f"The metadata file {name!r} has no rows.")
    frame.columns = [str(c) for c in frame.columns]
    id_col = next((c for c in frame.columns if c.lower() in _ID_NAMES), None)
    if id_col is not None and set(embeddings.ids) <= set(frame[id_col]):
        if frame[id_col].duplicated().any():
            raise PlaygroundError(f"The id column {id_col!r} of {name!r} repeats ids; each row needs its own id.")
        frame = frame.set_index(id_col).loc[embeddings.ids].reset_index()
    elif frame.shape[0] != n:
        raise PlaygroundError(f"The metadata file {name!r} has {frame.shape[0]} rows but there are {n} vectors, "
                              f"and it has no id column matching the vectors' ids; give it one row per vector "
                              f"(same order) or an 'id' column.")
    labels = {k: v.copy() for k, v in embeddings.labels.items()}
    classes = {k: list(v) for k, v in embeddings.classes.items()}
    texts: list[str] | None = None
    for c in frame.columns:
        if c == id_col:
            continue
        col = frame[c].astype(str)
        if c.lower() in _TEXT_NAMES or col.nunique() > MAX_METADATA_CATEGORIES:
            texts = col.tolist() if texts is None else [f"{a} · {b}" for a, b in zip(texts, col.tolist())]
            continue
        labels[c], classes[c] = _encode_labels(col.to_numpy())
    ids = frame[id_col].astype(str).tolist() if id_col is not None else list(embeddings.ids)
    return EmbeddingSet(embeddings.vectors, ids, labels, classes, embeddings.source), texts


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same place when 0 is the current device."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return True


def embed_imageset(model: ContrastiveModel, imageset: ImageSet, *, space: str = "encoder", batch_size: int = 512,
                   device: torch.device | str | None = None, progress: Callable[[int, int], None] | None = None,
                   source: str | None = None) -> EmbeddingSet:
    """Embed every image of an ImageSet with ``model.embed`` (eval mode, no gradients) in batches.

    Runs on ``device`` (default: where the model is). A model elsewhere is not moved (cached models are
    shared and read-only): a copy is used on ``device`` instead. ``progress(done, total)`` is called after
    every batch. ``source`` defaults to "<arch> on <dataset>, <space> space".
    Shape: images (N, C, H, W) uint8 -> EmbeddingSet with vectors (N, feature_dim or projection_dim).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}.")
    if space not in ("encoder", "projection"):
        raise ValueError(f"Unknown embedding space {space!r}; use 'encoder' or 'projection'.")
    target = torch.device(device) if device is not None else _model_device(model)
    if not _same_device(_model_device(model), target):
        import copy

        model = copy.deepcopy(model).to(target)
    images = imageset.images
    total = images.shape[0]
    chunks = []
    for start in range(0, total, batch_size):
        batch = images[start:start + batch_size].to(target, non_blocking=True)
        x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float()
        chunks.append(model.embed(x, space=space, batch_size=batch_size).float().cpu())
        if progress is not None:
            progress(min(start + batch_size, total), total)
    if chunks:
        vectors = torch.cat(chunks).numpy()
    else:
        out_dim = model.feature_dim if space == "encoder" else model.cfg.projection_dim
        vectors = np.zeros((0, out_dim), dtype=np.float32)
    if source is None:
        arch = getattr(getattr(model, "cfg", None), "arch", type(model).__name__)
        source = f"{arch} on {getattr(imageset, 'name', 'images')}, {space} space"
    ids = list(imageset.ids) if getattr(imageset, "ids", None) is not None else None
    labels = {k: np.asarray(v) for k, v in imageset.labels.items()}
    classes = {k: list(v) for k, v in imageset.classes.items()}
    return EmbeddingSet(vectors, ids, labels, classes, source)
