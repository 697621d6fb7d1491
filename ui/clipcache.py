"""The CLIP page's caches, each keyed by what determines it and each with a bound.

- Image features of a built-in set under a model are the same for every session: ``st.cache_data`` keyed by the
  model's fingerprint and the set's recipe, at most :data:`SHARED_SETS` sets, for :data:`TTL` seconds.
- Image features of a user's own images (uploads, a .zip) stay in that session: at most :data:`USER_SETS` sets,
  keyed by the images' content (``core.clip.images_key``, ``core.data.fingerprint``), so a new upload under an
  old file name is embedded anew.
- The joint map of images and prompts (``core.clip.joint_map``, a PCA or UMAP fit) is ``st.cache_data`` keyed by
  the features, the prompts and the method: a widget that changes none of them never re-projects.
- Zero-shot class weights: ``st.cache_data`` by model fingerprint, class names and templates.

Behind the features, the disk cache (``core.clip.cache``) keeps vectors across restarts, within its own cap.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

SHARED_SETS = 8  # built-in sets' features kept for all sessions (1,000 x 512 float32 is 2 MB)
USER_SETS = 2  # a session's own sets kept (the one shown and the one before)
MAPS = 16  # joint maps kept (a few settings x a few sets)
TTL = 3600  # seconds: a model or set nobody has looked at for an hour is dropped
USER_KEY = "clip._user_features"


def _embed_with_progress(bundle: Any, images: Any) -> np.ndarray:
    from core.clip import embed_images

    bar = st.progress(0.0, text="Embedding the images…")
    out = embed_images(bundle, images, progress=lambda d, t: bar.progress(d / max(t, 1),
                                                                           text=f"Embedding the images… {d}/{t}"))
    bar.empty()
    return out


@st.cache_data(max_entries=SHARED_SETS, ttl=TTL, show_spinner=False)
def _shared_features(_bundle: Any, fingerprint: str, recipe: str, _images: Any) -> np.ndarray:
    return _embed_with_progress(_bundle, _images)


def image_features(bundle: Any, images: Any, *, builtin: bool) -> np.ndarray:
    """CLIP image features of ``images`` (an ImageSet or PIL images) under ``bundle``. Shape: (N, embed_dim).

    ``builtin``: the set is one of the app's own (its ``spec`` rebuilds it), so every session shares one copy.
    """
    if builtin:
        return _shared_features(bundle, bundle.fingerprint, repr(images.spec), images)
    if isinstance(images, list):  # uploaded PIL images (at most 64): hashed here
        from core.clip import images_key

        content = images_key(images)
    else:  # an ImageSet (a .zip): its content fingerprint, computed once per set
        from core.data import fingerprint

        content = fingerprint(images)
    key = (bundle.fingerprint, content)
    store: dict = st.session_state.setdefault(USER_KEY, {})
    if key in store:
        store[key] = store.pop(key)  # most recently used last
        return store[key]
    feats = _embed_with_progress(bundle, images)
    store[key] = feats
    while len(store) > USER_SETS:
        store.pop(next(iter(store)))  # the least recently used
    return feats


@st.cache_data(max_entries=32, ttl=TTL, show_spinner="Embedding the class prompts…")
def zero_shot_weights(_bundle: Any, fingerprint: str, names: tuple[str, ...], templates: tuple[str, ...]):
    """``core.clip.zero_shot_weights`` for these class names and templates under the model ``fingerprint``."""
    from core.clip import zero_shot_weights as weights

    return weights(_bundle, list(names), list(templates))


@st.cache_data(max_entries=MAPS, ttl=TTL, show_spinner="Projecting…")
def joint_map(image_vectors: np.ndarray, per_template: np.ndarray, method: str):
    """``core.clip.joint_map`` (seed 0), cached by the arrays' content and the method."""
    from core.clip import retrieval

    return retrieval.joint_map(image_vectors, per_template, method=method, seed=0)
