"""Cached loaders: datasets and models shared read-only by every session, arrays cached by content.

``st.cache_resource`` holds objects all sessions share (an :class:`core.data.ImageSet` is never modified by
the app: subsets and splits are new objects). ``st.cache_data`` holds arrays and returns copies.
Heavy imports happen inside the functions, so importing this module costs nothing.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st


def opts_key(opts: dict[str, Any]) -> str:
    return json.dumps(opts, sort_keys=True)


@st.cache_resource(max_entries=12, show_spinner="Loading the dataset…")
def _dataset(name: str, opts_json: str):
    from core.data import load_dataset

    return load_dataset(name, **json.loads(opts_json))


def dataset(name: str, **opts: Any):
    """A built-in dataset, shared by all sessions (read-only). Raises DatasetError / DownloadUnavailable."""
    return _dataset(name, opts_key(opts))


@st.cache_resource(max_entries=1, show_spinner=False)
def catalog() -> dict[str, str]:
    """Built-in dataset name -> one-line description, offline ones first."""
    from core.data import available_datasets

    return dict(available_datasets())


@st.cache_resource(max_entries=12, show_spinner=False)
def _subset(name: str, opts_json: str, n: int, seed: int):
    full = _dataset(name, opts_json)
    if n >= len(full):
        return full
    idx = np.sort(np.random.default_rng(seed).permutation(len(full))[:n])
    return full.subset(idx)


def training_dataset(name: str, n: int, *, seed: int = 0, image_size: int = 32):
    """``n`` images of a dataset for the Train page: generated at that count and ``image_size`` for shapes,
    else a seeded random subset (the full set when it is smaller) at the dataset's own size."""
    if name == "shapes":
        return dataset("shapes", n=int(n), size=int(image_size), seed=0)
    return _subset(name, opts_key({}), int(n), int(seed))


@st.cache_data(max_entries=64, show_spinner=False)
def views(name: str, opts_json: str, index: int, aug_json: str, n: int, seed: int) -> np.ndarray:
    """``n`` augmented views of one dataset image as uint8 (n, H, W, 3), via core.augment.preview."""
    from core.augment import AugmentConfig, preview

    ds = _dataset(name, opts_json)
    cfg = AugmentConfig.from_dict(json.loads(aug_json))
    return to_uint8_hwc(preview(ds.images[int(index)], cfg, n=int(n), seed=int(seed)))


@st.cache_data(max_entries=32, show_spinner=False)
def views_of_array(image: np.ndarray, aug_json: str, n: int, seed: int) -> np.ndarray:
    """Like :func:`views` for an uploaded image given as uint8 (H, W, 3)."""
    import torch

    from core.augment import AugmentConfig, preview

    cfg = AugmentConfig.from_dict(json.loads(aug_json))
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return to_uint8_hwc(preview(chw, cfg, n=int(n), seed=int(seed)))


@st.cache_data(max_entries=8, show_spinner="Reading the image…")
def decoded_upload(data: bytes, size: int | None) -> np.ndarray:
    """An uploaded image as uint8 (H, W, 3); core.data.decode_image caps size and guards against bombs."""
    from core.data import decode_image

    return decode_image(data, size=size)


# ------------------------------------------------------------------------------------------ text
@st.cache_resource(max_entries=4, show_spinner="Loading the text model…")
def text_model(spec: str = ""):
    """A sentence model shared by all sessions: read-only (eval mode; fine-tuning works on a deep copy).
    Raises PlaygroundError / DownloadUnavailable, which are not cached, so a later try can succeed."""
    from core.text import load_text_model

    model = load_text_model(spec or None)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@st.cache_resource(max_entries=1, show_spinner=False)
def text_corpus():
    """The built-in corpus (core.text.load_corpus), shared and never modified."""
    from core.text import load_corpus

    return load_corpus()


@st.cache_data(max_entries=16, show_spinner=False)
def text_vectors(spec: str, texts: tuple[str, ...]) -> np.ndarray:
    """Unit vectors (N, D) of ``texts`` under the shared model ``spec``, cached by content for every session
    (a classroom on the built-in corpus embeds it once)."""
    from core.text import embed_texts

    return embed_texts(text_model(spec), list(texts))


# ------------------------------------------------------------------------------------------ display helpers
def to_uint8_hwc(x) -> np.ndarray:
    """(N, C, H, W) or (C, H, W) tensor/array, float [0, 1] or uint8 -> uint8 (N, H, W, 3) / (H, W, 3)."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(arr, -3, -1))


def upscale(img: np.ndarray, target: int = 128) -> np.ndarray:
    """Nearest-neighbour upscaling of (H, W, 3) so 8 or 32 px images stay crisp on screen."""
    k = max(1, target // max(img.shape[0], 1))
    return img if k == 1 else img.repeat(k, axis=0).repeat(k, axis=1)


# ------------------------------------------------------------------------------------------ CLIP
@st.cache_resource(max_entries=4, show_spinner=False)
def clip_model(spec: str):
    """A CLIP model (core.clip.load_clip), shared read-only by every session: eval mode, no gradients.
    Raises PlaygroundError / DownloadUnavailable (fast, offline) with a sentence for the page."""
    from core.clip import load_clip

    return load_clip(spec)
