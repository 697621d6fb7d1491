"""Contrastive fine-tuning of a sentence model: sentence-transformers' ``MultipleNegativesRankingLoss`` (Henderson
et al. 2017; the InfoNCE of van den Oord et al. 2018 with in-batch negatives) with its ``scale`` set to
1 / temperature, driven like :class:`core.train.Trainer` (a job's worker process builds it: core/worker.py)."""
from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from core.errors import PlaygroundError
from core.text.corpus import TextPair, relevant_indices
from core.text.embedding import embed_texts
from core.text.loading import model_label
from core.text.metrics import retrieval_metrics

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
