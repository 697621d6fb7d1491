"""Text as a modality: sentence models, nearest-neighbour search, retrieval metrics and contrastive fine-tuning.

One role per module (open_clip's cut):

* :mod:`core.text.loading`: a model spec -> a sentence-transformers model (the bundled MiniLM offline; hub names
  from the cache, or a fast failure that names the offline choices).
* :mod:`core.text.embedding`: texts -> unit vectors (N, D), and texts -> an EmbeddingSet with captions.
* :mod:`core.text.corpus`: TextSet / TextPair, the built-in corpus and pairs, pairs by topic.
* :mod:`core.text.uploads`: pastes and .csv / .jsonl / .txt uploads, size-capped before decoding.
* :mod:`core.text.index`: faiss search (exact, HNSW, IVF).
* :mod:`core.text.metrics`: recall@k, MRR, why a passage ranks where it does.
* :mod:`core.text.finetune`: TextFineTuner (MultipleNegativesRankingLoss), run as a job by core.runner.

Sentence models are sentence-transformers models, loaded and run through that library's own API (its
tokenizer, pooling and normalisation; nothing is re-implemented here). torch, sentence-transformers and faiss
are imported inside the functions: importing this package is cheap.

>>> model = load_text_model()                        # doctest: +SKIP
>>> vecs = embed_texts(model, ["a cat", "a dog"])    # (2, 384) float32, unit rows
>>> scores, ids = search(build_index(vecs), vecs[:1], k=2)
"""
from __future__ import annotations

from core.text.corpus import TextPair, TextSet, load_corpus, load_pairs, relevant_indices, topic_pairs
from core.text.embedding import embed_texts, embedding_set
from core.text.finetune import FineTuneConfig, FineTuneEval, FineTuneStep, TextFineTuner
from core.text.index import APPROXIMATE_ABOVE, INDEX_KINDS, SearchIndex, approximate_recall, build_index, search
from core.text.loading import BUNDLED, embedding_dim, load_text_model, model_label
from core.text.metrics import Explanation, RetrievalReport, explain, retrieval_metrics
from core.text.uploads import (MAX_TEXT_CHARS, MAX_TEXT_FILE_BYTES, MAX_TEXTS, TEXT_FILE_TYPES, pairs_from_upload,
                               texts_from_paste, texts_from_upload)

__all__ = [
    "BUNDLED", "load_text_model", "model_label", "embedding_dim", "topic_pairs", "embed_texts", "embedding_set", "SearchIndex", "build_index",
    "search", "INDEX_KINDS", "APPROXIMATE_ABOVE", "approximate_recall", "RetrievalReport", "retrieval_metrics",
    "Explanation", "explain", "TextSet", "TextPair", "load_corpus", "load_pairs", "texts_from_paste",
    "texts_from_upload", "pairs_from_upload", "relevant_indices", "FineTuneConfig", "FineTuneStep",
    "FineTuneEval", "TextFineTuner", "MAX_TEXT_FILE_BYTES", "MAX_TEXTS", "MAX_TEXT_CHARS", "TEXT_FILE_TYPES",
]
