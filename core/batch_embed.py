"""Embedding image files in batches, and the Parquet shards a batch job writes.

Pure functions (no Ray, no Streamlit): core.ray_embed runs :func:`embed_paths` inside Ray Data actors, a
test or a notebook calls it directly. A shard is a Parquet file with one row per image:

=========  ==============================  ===========================================
column     type                            meaning
=========  ==============================  ===========================================
id         string                          stable id (the path relative to the source)
path       string                          the file that was read
label      string                          class (sub-folder or CSV label column), "" if none
vector     fixed_size_list<float32>[D]     the embedding
=========  ==============================  ===========================================

:func:`read_shards` turns a folder of shards into an :class:`core.embed.EmbeddingSet` for the Explorer,
checking the row and value counts in the Parquet footers before reading any vector.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.data import (IMAGE_EXTENSIONS, MAX_IMAGE_BYTES, DatasetError, is_visible, pick_column, read_table,
                       decode_image, safe_extract_zip)
from core.embed import MAX_EMBEDDING_VALUES, EmbeddingSet
from core.errors import PlaygroundError

__all__ = ["ImageRef", "list_images", "load_checkpoint_model", "embed_paths", "BatchResult", "write_shard",
           "read_shards", "SHARD_COLUMNS"]

SHARD_COLUMNS = ("id", "path", "label", "vector")
# Image side each built-in dataset trains at by default (core.data.load_dataset); paths default to 32.
_DEFAULT_SIZE = {"digits": 8, "photos": 128}

# An embedder: a ContrastiveModel (anything with ``embed(x, space=...)`` on float (N, 3, H, W) in [0, 1]),
# or a plain callable from uint8 images (N, H, W, 3) to vectors (N, D), e.g.
# ``functools.partial(core.clip.embed_images, bundle)``.
Embedder = Any


@dataclass(frozen=True)
class ImageRef:
    id: str
    path: str
    label: str = ""


def list_images(source: str | os.PathLike, *, extract_to: str | os.PathLike | None = None) -> list[ImageRef]:
    """The images a batch job will embed, in a stable order.

    ``source``: a folder (``<class>/<image>`` gives labels; loose images get label ""), a ``.zip`` of one
    (extracted with core.data.safe_extract_zip into ``extract_to``, which must then stay for the job), or a
    ``.csv`` / ``.jsonl`` table with a path column (``image``, ``path``, ``file``...; relative paths are read
    from the table's folder) and an optional ``label`` column, or a ``.txt`` with one path per line.
    Nothing is decoded here; unreadable files are found (and counted) while embedding.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise DatasetError(f"There is no file or folder at {src}.")
    src = src.resolve()
    if src.is_dir():
        return _folder_refs(src)
    suffix = src.suffix.lower()
    if suffix == ".zip":
        if extract_to is None:
            raise DatasetError("A .zip source needs a folder to extract into (extract_to).")
        return _folder_refs(safe_extract_zip(src, extract_to))
    if suffix == ".txt":
        lines = [ln.strip() for ln in src.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        return [ImageRef(id=ln, path=str((src.parent / ln).resolve())) for ln in lines]
    if suffix in (".csv", ".jsonl"):
        columns, rows = read_table(src)
        path_col = pick_column(columns, None, ("image", "image_path", "path", "file", "filename", "filepath"),
                                "image path")
        if path_col is None:
            raise DatasetError(f"{src.name} has no image path column; name one 'image' or 'path'.")
        label_col = pick_column(columns, None, ("label", "class", "category"), "label")
        refs = []
        for row in rows:
            rel = str(row.get(path_col) or "").strip()
            if rel:
                label = "" if label_col is None else str(row.get(label_col) or "")
                refs.append(ImageRef(id=rel, path=str((src.parent / rel).resolve()), label=label))
        return refs
    raise DatasetError(f"{src.name} is not a folder, .zip, .csv, .jsonl or .txt of image paths.")


def _folder_refs(root: Path) -> list[ImageRef]:
    refs = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if is_visible(d))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if is_visible(fn) and p.suffix.lower() in IMAGE_EXTENSIONS:
                rel = p.relative_to(root)
                refs.append(ImageRef(id=rel.as_posix(), path=str(p), label=rel.parts[0] if len(rel.parts) > 1 else ""))
    return refs


def load_checkpoint_model(path: str | os.PathLike, *, device: torch.device | str | None = None):
    """The encoder of a :meth:`core.train.Trainer.save` checkpoint, in eval mode, without its dataset.

    Returns ``(model, size)``: the :class:`core.models.ContrastiveModel` and the image side it was trained at.
    :meth:`Trainer.load` would rebuild the training dataset too, which a batch actor does not need.
    """
    from safetensors import safe_open

    from core.models import build_model
    from core.train import CHECKPOINT_FORMAT, TrainConfig

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise PlaygroundError(f"{path.name} is not a Contrastive Playground checkpoint.")
            weights = {k[len("model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
        cfg = TrainConfig.from_dict(json.loads(meta["config"]))
        spec = json.loads(meta.get("dataset", "{}"))
    except PlaygroundError:
        raise
    except Exception as err:  # safetensors and json raise their own types for malformed files
        raise PlaygroundError(f"{path.name} is not a readable checkpoint ({type(err).__name__}).") from None
    model = build_model(cfg.encoder_config, device=device)
    model.load_state_dict(weights)
    model.eval()
    options = spec.get("options") or {}
    size = int(options.get("size", _DEFAULT_SIZE.get(str(spec.get("name", "")).lower(), 32)))
    return model, size


@dataclass
class BatchResult:
    """What :func:`embed_paths` made of a batch: vectors for the readable images, reasons for the rest."""

    vectors: np.ndarray  # float32 (n_ok, D)
    ok: np.ndarray  # bool (n,): which input paths have a row in ``vectors``
    errors: dict[str, str]  # path -> why it was skipped


def _read(path: str, size: int) -> np.ndarray:
    p = Path(path)
    if p.stat().st_size > MAX_IMAGE_BYTES:
        raise DatasetError(f"over the {MAX_IMAGE_BYTES // 2**20} MB image size limit")
    return decode_image(p.read_bytes(), size=size)


def embed_paths(paths: Sequence[str], embedder: Embedder, *, size: int, space: str = "encoder",
                batch_size: int = 256) -> BatchResult:
    """Decode ``paths`` (core.data.decode_image: size caps, decompression-bomb guard, centre crop to ``size``)
    and embed the readable ones. A missing, oversized or corrupt file is skipped and its reason recorded.

    ``embedder``: a ContrastiveModel (or a Trainer, whose ``model`` is used) called through ``embed`` in
    ``space``; or any callable taking uint8 images (N, H, W, 3) and returning (N, D) vectors, such as
    a CLIP bundle's image embedding function. Same vectors as core.embed.embed_imageset on the same pixels.
    Shape: N paths -> vectors (n_ok, D) float32.
    """
    pixels, ok, errors = [], np.zeros(len(paths), dtype=bool), {}
    for i, path in enumerate(paths):
        try:
            pixels.append(_read(str(path), size))
            ok[i] = True
        except (DatasetError, OSError) as err:
            errors[str(path)] = str(err)
    model = getattr(embedder, "model", embedder)
    if not pixels:
        return BatchResult(np.zeros((0, 0), dtype=np.float32), ok, errors)
    batch = np.stack(pixels)  # (n_ok, H, W, 3) uint8
    if hasattr(model, "embed"):
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)  # (n_ok, 3, H, W) in [0, 1]
        vectors = model.embed(x, space=space, batch_size=batch_size).float().cpu().numpy()
    elif callable(model):
        vectors = np.asarray(model(batch), dtype=np.float32)
    else:
        raise PlaygroundError(f"{type(embedder).__name__} cannot embed images; pass a model or a callable.")
    if vectors.ndim != 2 or len(vectors) != len(pixels):
        raise PlaygroundError(f"The embedder returned shape {vectors.shape} for {len(pixels)} images.")
    return BatchResult(np.ascontiguousarray(vectors, dtype=np.float32), ok, errors)


def shard_table(refs: Sequence[ImageRef] | dict, vectors: np.ndarray):
    """A pyarrow Table in the shard layout. ``refs``: ImageRefs, or columns id/path/label of the same length."""
    import pyarrow as pa

    if not isinstance(refs, dict):
        refs = {"id": [r.id for r in refs], "path": [r.path for r in refs], "label": [r.label for r in refs]}
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table({
        "id": pa.array([str(v) for v in refs["id"]], pa.string()),
        "path": pa.array([str(v) for v in refs["path"]], pa.string()),
        "label": pa.array([str(v) for v in refs["label"]], pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
    })


def write_shard(path: str | os.PathLike, refs: Sequence[ImageRef], vectors: np.ndarray) -> Path:
    """Write one shard (temp file, then rename: never half a file)."""
    import pyarrow.parquet as pq

    from core.files import atomic_write

    return atomic_write(path, lambda tmp: pq.write_table(shard_table(refs, vectors), tmp))


def _shard_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise PlaygroundError(f"There is no file or folder at {p}; give the folder a batch job wrote its shards to.")
        files = sorted(f for f in p.rglob("*.parquet") if is_visible(f.name)) if p.is_dir() else [p]
    else:
        files = [Path(f) for f in source]
    if not files:
        raise PlaygroundError(f"{source} holds no .parquet shards.")
    return files


def read_shards(source: str | os.PathLike | Sequence[str | os.PathLike], *,
                max_values: int = MAX_EMBEDDING_VALUES) -> EmbeddingSet:
    """Load a batch job's Parquet shards (a folder or a list of files) as one EmbeddingSet.

    Rows are ordered by id, so the result does not depend on how the job split the work. The footers'
    row counts and the vector width are checked against ``max_values`` (N x D) before any vector is read.
    Labels become the factor ``"class"`` when any row has one.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _shard_files(source)
    rows, dim = 0, None
    for f in files:
        try:
            meta = pq.read_metadata(f)
            schema = pq.read_schema(f)
        except (OSError, pa.ArrowInvalid) as err:
            raise PlaygroundError(f"{f.name} is not a readable Parquet shard ({err}).") from None
        missing = [c for c in SHARD_COLUMNS if c not in schema.names]
        vtype = schema.field("vector").type if "vector" in schema.names else None
        if missing or not pa.types.is_fixed_size_list(vtype):
            raise PlaygroundError(f"{f.name} is not an embedding shard: it needs columns {', '.join(SHARD_COLUMNS)} "
                                  "with a fixed-size float vector.")
        if dim is not None and vtype.list_size != dim:
            raise PlaygroundError(f"{f.name} holds {vtype.list_size}-d vectors, the other shards {dim}-d.")
        dim = vtype.list_size
        rows += meta.num_rows
    if rows * dim > max_values:
        raise PlaygroundError(f"The shards hold {rows:,} x {dim} values; at most {max_values:,} are loaded at once.")
    tables = [pq.read_table(f, columns=list(SHARD_COLUMNS)) for f in files]
    table = pa.concat_tables(tables).sort_by("id")
    vectors = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = vectors.reshape(table.num_rows, dim)
    ids = table.column("id").to_pylist()
    labels_raw = table.column("label").to_pylist()
    labels, classes = {}, {}
    if any(labels_raw):
        names = sorted(set(labels_raw))
        code = {n: i for i, n in enumerate(names)}
        labels["class"] = np.array([code[v] for v in labels_raw], dtype=np.int64)
        classes["class"] = names
    return EmbeddingSet(vectors, ids, labels, classes, source=f"{len(files)} Parquet shard(s)")
