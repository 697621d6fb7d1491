"""Text sets and training pairs: the TextSet / TextPair records, the built-in corpus (about 300 sentences over 10
topics) with its query-answer pairs, and pairs made from a set's topics."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import PlaygroundError

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "text"


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


def encode_labels(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Category names -> (int64 codes (N,), the sorted distinct names they index), as TextSet.labels keeps them."""
    names = sorted(set(values))
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[v] for v in values], dtype=np.int64), names


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_corpus() -> TextSet:
    """The built-in corpus: about 300 short sentences over 10 topics, with a ``topic`` label."""
    rows = _read_jsonl(ASSETS / "corpus.jsonl")
    codes, names = encode_labels([r["topic"] for r in rows])
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
