"""The Explorer page's Streamlit side: which embedding spaces exist, and cached maps and scores (figures:
ui.explorer_charts, re-exported here).

All maths lives in ``core`` (projection, similarity, metrics); this module decides what is cached and how it
is drawn, by the policy of :mod:`ui.cache`. Maps and scores are cached with ``st.cache_data`` by a content hash
of the vectors plus the method and its parameters, so a revisit (another rerun, another page, another session
with the same data) costs a dictionary lookup. The demo spaces are a ``st.cache_resource`` shared read-only by
every session; the spaces of a session's own models and uploads live in its bounded :func:`ui.cache.store`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from ui.cache import SHARED_TTL, recent, store
from ui.explorer_charts import (figure_html, heatmap, histograms, hover_text, ntxent_heatmap,  # noqa: F401
                                scatter, spectrum)

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "assets" / "demo"
# Drawn with WebGL; above this a seeded sample, and every point in a datashader image. CP_EXPLORER_MAX_POINTS
# lowers it (the browser test of the big map draws a few hundred points, not 50,000).
MAX_POINTS = int(os.environ.get("CP_EXPLORER_MAX_POINTS", "50000"))
# Honesty scores on a seeded sample above this: they are O(N^2) (a 10,000-point sample took ~18 s of a
# 200,000-point upload's first map on two quiet cores; side by side 2.8-4x a 5,000-point one), and a mean over
# 5,000 points is already steady.
MAX_SCORED = 5_000
MAX_COMPARED = 10_000  # items matched by id in the Compare view
# Above this UMAP / t-SNE of every point waits for a click; the first picture is PCA (CP_EXPLORER_SLOW_MAP_POINTS
# lowers it, for the browser tests)
SLOW_MAP_POINTS = int(os.environ.get("CP_EXPLORER_SLOW_MAP_POINTS", "20000"))


@dataclass
class Space:
    """One embedding space the page can show: vectors plus what is needed to show its items.

    ``images``: uint8 (N, H, W, 3) aligned with the vectors, or None. ``texts``: N hover strings or None.
    ``model`` / ``imageset`` / ``augment``: a trained model and its images, when the space came from one
    (needed for views: alignment, positive pairs, the NT-Xent matrix). ``space``: "encoder" / "projection".
    """

    name: str
    es: Any  # core.embed.EmbeddingSet
    images: np.ndarray | None = None
    texts: list[str] | None = None
    model: Any = None
    imageset: Any = None
    augment: Any = None
    space: str = "encoder"
    key: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.key = content_hash(self.es.vectors)

    @property
    def labels_key(self) -> str:
        """The vectors' hash plus the labels' (a metadata file changes labels, not vectors)."""
        h = hashlib.blake2b(self.key.encode(), digest_size=16)
        for f in self.es.factors:
            h.update(f.encode())
            h.update(np.ascontiguousarray(self.es.labels[f]).tobytes())
        return h.hexdigest()


def content_hash(vectors: np.ndarray) -> str:
    """A hash of an array's bytes, shape and dtype (blake2b): the cache key of everything computed from it."""
    arr = np.ascontiguousarray(vectors)
    h = hashlib.blake2b(digest_size=16)
    h.update(str((arr.shape, arr.dtype.str)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def texts_of(es: Any) -> list[str] | None:
    """Hover text carried by an EmbeddingSet (``texts`` or ``captions``, as the text and CLIP pages give)."""
    for name in ("texts", "captions"):
        value = getattr(es, name, None)
        if value is not None and len(value) == len(es):
            return [str(t) for t in value]
    return None


def images_hwc(imageset: Any) -> np.ndarray:
    from ui.loaders import to_uint8_hwc

    return to_uint8_hwc(imageset.images)


# ------------------------------------------------------------------------------------------ demo
@st.cache_resource(max_entries=1, show_spinner="Loading the demo: an untrained and a trained encoder on shapes…")
def demo_spaces() -> dict[str, Space]:
    """Untrained vs trained encoder (the first lesson's) on 1,000 built-in shapes at the size it trained on, both
    in encoder space. Shared, read-only.

    The trained weights ship in assets/demo (made by scripts/make_explorer_demo.py through core.train):
    training them live would take minutes on a shared CPU, embedding 1,000 images takes a second or two.
    """
    import torch
    from safetensors.torch import load_file

    from core.augment import AugmentConfig
    from core.data import load_dataset
    from core.embed import embed_imageset
    from core.errors import PlaygroundError
    from core.models import EncoderConfig, build_model

    meta_path = DEMO_DIR / "shapes_small_cnn.json"
    weights = DEMO_DIR / "shapes_small_cnn.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise PlaygroundError("The demo model is missing from assets/demo; run scripts/make_explorer_demo.py.")
    meta = json.loads(meta_path.read_text())
    cfg = EncoderConfig.from_dict(meta["encoder"])
    images = load_dataset("shapes", n=1000, size=int(meta.get("dataset", {}).get("size", 32)), seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = build_model(cfg, device="cpu").eval()
    trained = build_model(cfg, device="cpu")
    trained.load_state_dict(load_file(str(weights)))
    trained.eval()
    for m in (untrained, trained):
        for p in m.parameters():
            p.requires_grad_(False)
    aug = AugmentConfig.from_dict(meta["augment"])
    pixels = images_hwc(images)
    out = {}
    for label, model in ((f"Demo: untrained {cfg.arch} on shapes", untrained),
                         (f"Demo: {cfg.arch} after {meta['steps']} SimCLR steps on shapes", trained)):
        es = embed_imageset(model, images, space="encoder", source=label)
        out[label] = Space(label, es, images=pixels, texts=images.captions, model=model, imageset=images,
                           augment=aug)
    return out


def trained_space(entry: Any, space: str) -> Space:
    """A registry entry holding a trained model, embedded on its held-out images (in the session's store)."""
    def make() -> Space:
        from core.embed import embed_imageset

        tm = entry.payload
        es = embed_imageset(tm.model, tm.heldout, space=space,
                            source=f"{entry.source}, {space} space (held-out images)")
        return Space(f"{entry.name} · {space}", es, images=images_hwc(tm.heldout), texts=tm.heldout.captions,
                     model=tm.model, imageset=tm.heldout, augment=getattr(tm.cfg, "augment", None), space=space)

    return store().get_or_make(("explorer.trained", entry.name, space, entry.created), make)


def entry_space(entry: Any) -> Space:
    """Any other registry entry (uploaded file, CLIP page, text page) through its generic EmbeddingSet."""
    es = entry.embeddings()
    from core.errors import PlaygroundError

    if es is None:
        raise PlaygroundError(f"{entry.name!r} has no embeddings to show yet.")
    images = None
    imageset = getattr(entry.payload, "heldout", None) or getattr(es, "imageset", None)
    if imageset is not None and len(imageset) == len(es):
        images = images_hwc(imageset)
    return Space(entry.name, es, images=images, texts=texts_of(es) or getattr(entry, "texts", None))


def upload_space(data: bytes, name: str, meta: bytes | None, meta_name: str | None) -> Space:
    """The uploaded file as a Space, parsed once: every rerun of the page passes the same bytes again, and a
    98 MB CSV took 1.5 s to parse each time. Kept in the session's store, keyed by the bytes."""
    from core.embed import EmbeddingSet, join_metadata

    h = hashlib.blake2b(data, digest_size=16)
    h.update(name.encode())
    if meta is not None:
        h.update(hashlib.blake2b(meta, digest_size=16).digest())

    def make() -> Space:
        with st.spinner(f"Reading {name}…"):
            es = EmbeddingSet.from_file(data, name)
            texts = None
            if meta is not None:
                es, texts = join_metadata(es, meta, meta_name or "metadata.csv")
        return Space(name, es, texts=texts or texts_of(es))

    return store().get_or_make(("explorer.upload", h.hexdigest()), make)


def unmappable(es: Any) -> str | None:
    """A sentence saying why these vectors cannot be mapped (too few, all identical), or None."""
    n = len(es)
    if n < 3:
        return (f"This set holds {n} item{'s' if n != 1 else ''}; a map and its scores need at least three. "
                "Add rows to the file, or look at the Similarity view.")
    x = es.vectors
    if not (x != x[:1]).any():
        what = "zero" if not x[:1].any() else "the same vector"
        return (f"All {n:,} vectors are {what}, so there is no direction to map and no neighbour to find: "
                "check how the file was made (an embedding model that returns zeros has failed upstream).")
    return None


# ------------------------------------------------------------------------------------------ cached compute
@st.cache_data(max_entries=64, ttl=SHARED_TTL, show_spinner=False)
def projection(key: str, method: str, dim: int, params_json: str, _vectors: np.ndarray) -> np.ndarray:
    """core.projection.project, cached by (content hash, method, dim, parameters). UMAP of more than
    SLOW_MAP_POINTS is fitted on that many (core.bigmap.sampled_umap); :func:`projection_note` says so."""
    from core.projection import project

    if method == "umap" and len(_vectors) > SLOW_MAP_POINTS:
        from core.bigmap import sampled_umap

        return sampled_umap(_vectors, sample=SLOW_MAP_POINTS, dim=dim, seed=0, **json.loads(params_json)).coords
    return project(_vectors, method, dim=dim, seed=0, **json.loads(params_json))


METHOD_LABELS = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE"}


def map_params(a: dict, n: int) -> tuple[str, dict]:
    """(method, parameters of core.projection.project) of the page's applied settings ``a`` for ``n`` points."""
    if a["method"] == "umap":
        return "umap", {"n_neighbors": int(a["n_neighbors"]), "min_dist": float(a["min_dist"]),
                        "metric": a["metric"]}
    if a["method"] == "tsne":
        return "tsne", {"perplexity": float(min(a["perplexity"], max((n - 1) / 3, 1))), "metric": a["metric"]}
    return "pca", {}


def compute_map(sp: Space, a: dict, rows: np.ndarray | None = None, preview: Any = None
                ) -> tuple[np.ndarray, str, str]:
    """(coords, method actually used, metric the map keeps) of ``sp`` under the settings ``a``, cached by
    content. Vectors of 1–3 dimensions are drawn as they are. A UMAP / t-SNE not computed before in this
    session first draws the cached PCA into ``preview`` (an ``st.empty``; ``rows`` are the drawn rows)."""
    from core.projection import build_metric

    v = sp.es.vectors
    if v.shape[1] <= 3:
        coords = v if v.shape[1] >= 2 else np.pad(v, ((0, 0), (0, 1)))
        return coords.astype(np.float32), "as given", "euclidean"
    method, params = map_params(a, len(v))
    dim = int(a["dim"])
    pj = json.dumps(params, sort_keys=True)
    if method != "pca":
        done = recent("explorer._done")
        if (sp.key, method, dim, pj) not in done and preview is not None:
            pca = projection(sp.key, "pca", dim, "{}", v)
            shown = np.arange(len(v)) if rows is None else rows
            with preview.container():
                st.caption(f"PCA shown while {METHOD_LABELS[method]} computes…")
                st.plotly_chart(scatter(pca, shown, [""] * len(shown), title="PCA (preview)"), width="stretch")
        with st.spinner(f"Computing the {METHOD_LABELS[method]} map of {len(v):,} points…"):
            coords = projection(sp.key, method, dim, pj, v)
        done.add((sp.key, method, dim, pj))
        if note := projection_note(method, len(v)):  # a big set's UMAP: fitted on a sample
            st.caption(note)
    else:
        coords = projection(sp.key, "pca", dim, "{}", v)
    return coords, METHOD_LABELS[method], build_metric(method, **params)


def map_scores(sp: Space, a: dict, used: str, metric: str, coords: np.ndarray, k: int) -> dict[str, Any]:
    """:func:`honesty` of the map ``compute_map(sp, a)`` drew, keyed like it."""
    params = json.dumps(map_params(a, len(sp.es))[1], sort_keys=True)
    return honesty(sp.key, used, coords.shape[1], params, metric, int(k), sp.es.vectors, coords)


def projection_note(method: str, n: int) -> str | None:
    """The sentence under a map :func:`projection` fitted on a sample, else None."""
    from core.bigmap import sampled_note

    return sampled_note(n, SLOW_MAP_POINTS) if method == "umap" and n > SLOW_MAP_POINTS else None


def sample_rows(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """All rows, or a seeded sorted sample of ``limit`` of them."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


@st.cache_data(max_entries=64, ttl=SHARED_TTL, show_spinner=False)
def honesty(key: str, method: str, dim: int, params_json: str, metric: str, k: int,
            _vectors: np.ndarray, _coords: np.ndarray) -> dict[str, Any]:
    """Per-point neighbour preservation, its mean and trustworthiness (on a sample above MAX_SCORED)."""
    from core.projection import neighbour_preservation_per_point, trustworthiness

    rows = sample_rows(len(_vectors), MAX_SCORED)
    x, c = _vectors[rows], _coords[rows]
    per = neighbour_preservation_per_point(x, c, k, metric=metric)
    trust = trustworthiness(x, c, min(k, (len(rows) - 1) // 2), metric=metric)
    full = np.full(len(_vectors), np.nan)
    full[rows] = per
    return {"per_point": full, "mean": float(per.mean()), "trust": float(trust), "n_scored": int(len(rows)),
            "chance": k / max(len(rows) - 1, 1)}


@st.cache_data(max_entries=32, ttl=SHARED_TTL, show_spinner=False)
def clusters(key: str, method: str, n_clusters: int, _vectors: np.ndarray) -> np.ndarray:
    from core.similarity import cluster

    return cluster(_vectors, method, n_clusters=n_clusters)


@st.cache_data(max_entries=32, ttl=SHARED_TTL, show_spinner=False)
def health(key: str, _es: Any) -> dict[str, Any]:
    """Effective rank and spectrum, uniformity, and per label factor: leave-one-out kNN (never voting for
    itself) and core.metrics.invariance_report's held-out linear probe with its chance level and verdict."""
    from core.metrics import effective_rank, invariance_report, knn_accuracy, singular_spectrum, uniformity

    x = _es.vectors
    rows = sample_rows(len(x), 5000)
    out: dict[str, Any] = {"erank": effective_rank(x), "spectrum": singular_spectrum(x),
                           "uniformity": uniformity(x[rows]), "n": len(x), "dim": x.shape[1], "factors": {}}
    if _es.factors and len(x) >= 10:
        sub = _es.subset(rows)
        for r in invariance_report(sub, test_fraction=0.3, seed=0):
            f = r["factor"]
            knn = knn_accuracy(sub.vectors, sub.labels[f], sub.vectors, sub.labels[f], k=10, exclude_self=True)
            out["factors"][f] = {"knn": knn, "probe": r["accuracy"], "chance": r["chance"], "verdict": r["verdict"]}
    return out


def views(space: Space, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two augmented views of the space's first ``n`` images, embedded in projection space (where the loss
    acts) with the space's own model and augmentation (core.batchview). Shape: (n, P), (n, P)."""
    from core.batchview import two_view_embeddings

    return two_view_embeddings(space.model, space.imageset.images[:n], space.augment, seed=seed)


def pair_histograms(space: Space) -> dict[str, Any]:
    """Positive vs negative similarities: two views of one image vs views of different images when the space
    has a model; otherwise same-label vs different-label pairs of the vectors themselves (said so)."""
    from core.metrics import alignment, pair_similarities
    from core.similarity import cosine_matrix

    out: dict[str, Any] = {"alignment": None, "pos": None, "neg": None}
    if space.model is not None and space.imageset is not None and space.augment is not None:
        z1, z2 = views(space, min(256, len(space.imageset)))
        pos, neg = pair_similarities(z1, z2, max_negatives=20_000)
        out.update(alignment=alignment(z1, z2), pos=pos, neg=neg, pos_name="positives (two views of one image)",
                   neg_name="negatives (different images)",
                   title="Positive vs negative pairs (projection space, this model's augmentations)")
    elif space.es.factors:
        f = space.es.factors[0]
        rows = sample_rows(len(space.es), 400, seed=3)
        s = cosine_matrix(space.es.vectors[rows])
        y = space.es.labels[f][rows]
        same = (y[:, None] == y[None, :]) & ~np.eye(len(rows), dtype=bool)
        diff = y[:, None] != y[None, :]
        out.update(pos=s[same], neg=s[diff], pos_name=f"same {f}", neg_name=f"different {f}",
                   title=f"Similarity of pairs with the same vs a different {f} (no model: no views)")
    return out


def _some(snapshots: list, most: int = 12) -> list:
    """At most ``most`` snapshots, evenly spread, the first and the last always kept."""
    if len(snapshots) <= most:
        return list(snapshots)
    picks = np.unique(np.linspace(0, len(snapshots) - 1, most).round().astype(int))
    return [snapshots[i] for i in picks]


def snapshot_space(entry: Any, snap: Any) -> Space:
    """A training snapshot of a registry run: the projection vectors of its probe images at that step, so a
    Compare against the finished model (matched by id) shows which neighbourhoods training changed."""
    from core.embed import EmbeddingSet

    probe = entry.payload.probe
    es = EmbeddingSet(vectors=np.asarray(snap.vectors, dtype=np.float32), ids=list(probe.ids),
                      labels=dict(probe.labels), classes=dict(probe.classes),
                      source=f"{entry.source}, projection space at step {snap.step} (probe images)")
    return Space(f"{entry.name} · step {snap.step}", es, images=images_hwc(probe), texts=probe.captions)


def comparable_spaces(space: Space) -> dict[str, Any]:
    """Name -> loader of every other space this session can show (demo spaces, registry entries)."""
    out: dict[str, Any] = {}
    try:
        for name, sp in demo_spaces().items():
            if sp.key != space.key:
                out[name] = (lambda sp=sp: sp)
    except ValueError:
        pass
    from ui import registry

    for e in registry.entries(registry.EMBEDDING_KINDS):
        if e.kind == "trained":
            for which in ("encoder", "projection"):
                out[f"{e.name} · {which}"] = (lambda e=e, w=which: trained_space(e, w))
            for snap in _some(getattr(e.payload, "snapshots", []) or []):
                out[f"{e.name} · step {snap.step} (snapshot)"] = (lambda e=e, s=snap: snapshot_space(e, s))
        else:
            out[e.name] = (lambda e=e: entry_space(e))
            if e.kind == "clip" and space.imageset is not None:
                # "my model vs CLIP": the CLIP image tower on this space's own images, so every id matches
                out[f"{e.name} on these images"] = (lambda e=e: clip_space(e, space))
    from ui.yourimages import compare_options

    out.update(compare_options(space))  # other models on the same image set of the user's
    return out


def clip_space(entry: Any, space: Space) -> Space:
    """A CLIP registry entry's image embeddings of ``space``'s images (same ids, labels and pictures), in the
    session's store."""
    def make() -> Space:
        from core.clip import embed_images
        from core.embed import EmbeddingSet

        with st.spinner(f"Embedding {len(space.es):,} images with {entry.name}…"):
            vectors = embed_images(entry.payload, space.imageset)
        es = EmbeddingSet(np.asarray(vectors, dtype=np.float32), list(space.es.ids), dict(space.es.labels),
                          dict(space.es.classes), f"{entry.name} image tower on the images of {space.name}")
        return Space(f"{entry.name} on {space.name}", es, images=space.images, texts=space.texts)

    return store().get_or_make(("explorer.clip", entry.name, entry.created, space.key), make)


@st.cache_data(max_entries=16, ttl=SHARED_TTL, show_spinner="Comparing neighbourhoods…")
def _overlap(key_a: str, key_b: str, k: int, _a: np.ndarray, _b: np.ndarray) -> np.ndarray:
    from core.similarity import neighbour_overlap

    return neighbour_overlap(_a, _b, k)


def compare(a: Space, b: Space, k: int) -> dict[str, Any]:
    """Match the two spaces' items by id (order of ``a``) and measure Jaccard@k of their neighbourhoods."""
    pos_b = {i: n for n, i in enumerate(b.es.ids)}
    rows_a = np.array([n for n, i in enumerate(a.es.ids) if i in pos_b], dtype=np.int64)
    rows_b = np.array([pos_b[a.es.ids[n]] for n in rows_a], dtype=np.int64)
    rows_a, rows_b = rows_a[:MAX_COMPARED], rows_b[:MAX_COMPARED]
    out: dict[str, Any] = {"n": len(rows_a), "rows_a": rows_a, "rows_b": rows_b}
    if len(rows_a) >= 3:
        va, vb = a.es.vectors[rows_a], b.es.vectors[rows_b]
        out["jaccard"] = _overlap(content_hash(va), content_hash(vb), k, va, vb)
    return out


def export_table(space: Space, coords: np.ndarray):
    import pandas as pd

    es = space.es
    cols: dict[str, Any] = {"id": es.ids}
    for f in es.factors:
        cols[f if f not in ("id", "x", "y", "z") else f"label_{f}"] = es.label_names(f)
    if space.texts is not None:
        cols["text"] = space.texts
    for j, axis in enumerate("xyz"[: coords.shape[1]]):
        cols[axis] = coords[:, j]
    frame = pd.DataFrame(cols)
    dims = pd.DataFrame(es.vectors, columns=[f"d{j}" for j in range(es.dim)])
    return pd.concat([frame, dims], axis=1)


def selected_rows(event: Any, fig: Any = None) -> list[int]:
    """Rows of the points a plotly_chart selection event holds, in order, without repeats: each point's
    ``customdata`` (our row), else its trace's customdata at ``point_index`` when ``fig`` is given."""
    if not event:
        return []
    sel = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    points = sel.get("points", []) if isinstance(sel, dict) else getattr(sel, "points", [])
    out: list[int] = []
    for p in points or []:
        if not isinstance(p, dict):
            continue
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is None and fig is not None and p.get("curve_number") is not None:
            trace = fig.data[int(p["curve_number"])]
            index = p.get("point_index", p.get("point_number"))
            if trace.customdata is not None and index is not None:
                cd = trace.customdata[int(index)]
        if cd is not None:
            out.append(int(cd))
    return list(dict.fromkeys(out))
