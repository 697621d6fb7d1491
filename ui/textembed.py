"""Embedding many pasted texts without freezing the Text page.

Pasting tens of thousands of lines once meant a long wait under one spinner before the page answered. Now:

* ``cap_paste``: a paste longer than ``PASTE_SYNC`` lines is embedded up to that many at once (seconds),
  with a sentence and a button that embeds the rest; the choice is remembered for that exact paste.
* ``shared_vectors``: a shared model's vectors are made in chunks of ``CHUNK`` texts, each cached by content
  for every session (``ui.loaders.text_vectors``), under a progress bar: a paste that grows by a few lines
  re-embeds only its last chunk, and the bar moves while the rest is worked through.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import streamlit as st

PASTE_SYNC = 2000  # lines embedded before the page answers; the rest on request
CHUNK = 2500  # texts per cached chunk (loaders.text_vectors keeps 16 entries: a 20,000-line paste takes 8)


def _digest(texts) -> str:
    h = hashlib.blake2b(digest_size=12)
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def cap_paste(textset: Any, key: str = "text._paste_all") -> Any:
    """The first PASTE_SYNC texts of a long paste (with a note and an "embed them all" button), else it all."""
    n = len(textset)
    if n <= PASTE_SYNC:
        return textset
    digest = _digest(textset.texts)
    if st.session_state.get(key) == digest:
        return textset
    c1, c2 = st.columns([3, 2])
    c1.info(f"{n:,} lines pasted: the first {PASTE_SYNC:,} are embedded now so the page answers at once.",
            icon=":material/speed:")
    if c2.button(f"Embed all {n:,}", key=f"{key}.go", icon=":material/playlist_add:",
                 help="Embeds the rest with a progress bar."):
        st.session_state[key] = digest
        st.rerun()
    return dataclasses.replace(
        textset, texts=list(textset.texts[:PASTE_SYNC]), ids=list(textset.ids[:PASTE_SYNC]),
        labels={f: np.asarray(v)[:PASTE_SYNC] for f, v in textset.labels.items()},
        notes=[*textset.notes, f"Only the first {PASTE_SYNC:,} of {n:,} lines are embedded so far."])


def shared_vectors(spec: str, texts: list[str], what: str) -> np.ndarray:
    """Unit vectors (N, D) of ``texts`` under the shared model ``spec``, chunk by chunk under a progress bar."""
    from ui import loaders

    if len(texts) <= CHUNK:
        with st.spinner(f"Embedding {len(texts):,} {what}…"):
            return loaders.text_vectors(spec, tuple(texts))
    bar = st.progress(0.0, text=f"Embedding {len(texts):,} {what}…")
    parts = []
    for start in range(0, len(texts), CHUNK):
        parts.append(loaders.text_vectors(spec, tuple(texts[start:start + CHUNK])))
        done = min(start + CHUNK, len(texts))
        bar.progress(done / len(texts), text=f"Embedding {what}: {done:,} of {len(texts):,}")
    bar.empty()
    return np.concatenate(parts)
