"""Embedding many pasted texts without freezing the Text page.

Pasting tens of thousands of lines once meant a long wait under one spinner before the page answered. Now:

* ``cap_paste``: a paste longer than ``PASTE_SYNC`` lines is embedded up to that many at once, with a sentence
  and a button that embeds the rest; the choice is remembered for that exact paste. Embedding is nearly all of
  the page's work (the model's forward pass; benchmarks/server/bench_text_paste.py), so PASTE_SYNC alone sets
  what "at once" costs.
* ``shared_vectors``: a shared model's vectors are made in chunks, each cached by content for every session
  (``ui.loaders.text_vectors``), under a progress bar. The first chunk is the first PASTE_SYNC texts, so
  "embed them all" reuses what the page already embedded; then CHUNK at a time, so a paste that grows by a
  few lines re-embeds only its last chunk.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import streamlit as st

PASTE_SYNC = 500  # lines embedded before the page answers; the rest on request
CHUNK = 2500  # texts per cached chunk after the first (loaders.text_vectors keeps 16: 20,000 lines take 9)


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

    if len(texts) <= PASTE_SYNC:
        with st.spinner(f"Embedding {len(texts):,} {what}…"):
            return loaders.text_vectors(spec, tuple(texts))
    bar = st.progress(0.0, text=f"Embedding {len(texts):,} {what}…")
    parts = []
    for start, end in chunks(len(texts)):
        parts.append(loaders.text_vectors(spec, tuple(texts[start:end])))
        bar.progress(end / len(texts), text=f"Embedding {what}: {end:,} of {len(texts):,}")
    bar.empty()
    return np.concatenate(parts)


def chunks(n: int) -> list[tuple[int, int]]:
    """(start, end) of each cached chunk of n texts: [0, PASTE_SYNC) first (what cap_paste embedded already),
    then CHUNK at a time."""
    starts = [0, *range(PASTE_SYNC, n, CHUNK)] if n > PASTE_SYNC else [0]
    return list(zip(starts, [*starts[1:], n]))
