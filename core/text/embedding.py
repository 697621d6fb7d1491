"""Sentence vectors: texts -> unit vectors (N, D) through the model's own ``encode``, and texts -> an EmbeddingSet
that keeps each sentence as its caption."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from core.errors import PlaygroundError
from core.text.corpus import TextSet
from core.text.loading import embedding_dim, model_label


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
