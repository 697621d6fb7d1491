"""The Loss & Temperature Lab: a toy you can watch train, one batch taken apart, and presets that reproduce
known results. All maths here; ``pages/loss_lab.py`` only draws it.

Three parts, all built on :mod:`core.losses` (the same functions the real trainer uses):

- :class:`ToyTrainer` trains a tiny MLP that maps points of a few Gaussian classes onto the circle (2-D) or
  the sphere (3-D) with any of :data:`TOY_LOSSES`. It has the interface :class:`core.train.Trainer` has for the
  app's jobs (``run(steps, callbacks, stop)``, ``default_callbacks()``, ``step()``, ``step_count``, ``cfg.steps``,
  ``evaluate()``, ``evals``, ``history``).
- :func:`anchor_breakdown` takes one anchor of an NT-Xent batch apart: its similarities, the softmax weights
  at a temperature and each negative's share of the gradient (Wang & Liu 2021, "hardness-aware");
  :func:`compare_losses` puts every loss on the very same batch, with which pairs carry gradient.
- :data:`PRESETS` are small seeded experiments (toy or :class:`core.train.Trainer` on the built-in shapes)
  that reproduce, or honestly fail to reproduce, a textbook claim; each returns a :class:`PresetResult`.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import losses
from core.errors import PlaygroundError
from core.loop import EvaluateEvery, run_loop
from core.methods import METHODS, TwoViewMethod
from core.methods.margin import margin_partners
from core.metrics import alignment, effective_rank, knn_accuracy, linear_probe_accuracy, uniformity

__all__ = [
    "TOY_LOSSES", "TOY_LOSS_NAMES", "TOY_METHODS", "TOY_USES_TEMPERATURE", "TOY_USES_MARGIN", "ToyConfig",
    "ToyTrainer", "ToyStep", "ToyEval",
    "alignment_loss", "uniformity_loss", "nt_xent_similarity_gradient", "AnchorBreakdown", "anchor_breakdown",
    "hardest_negative_share", "LossOnBatch", "compare_losses", "PresetResult", "PRESETS", "run_preset",
]

Progress = Callable[[float, str], None]

# Losses the toy trains with; keys are what the page's selectbox stores.
TOY_LOSSES = ("nt_xent", "info_nce", "triplet", "margin", "supcon", "vicreg", "align", "invariance",
              "align_uniform")
TOY_LOSS_NAMES = {
    "nt_xent": "NT-Xent (SimCLR)",
    "info_nce": "InfoNCE + queue (MoCo)",
    "triplet": "Triplet",
    "margin": "Margin contrastive",
    "supcon": "SupCon",
    "vicreg": "VICReg (no negatives: variance + covariance)",
    "align": "Alignment only (no negatives)",
    "invariance": "VICReg's invariance term only (no negatives, no variance)",
    "align_uniform": "Alignment + uniformity (Wang & Isola)",
}
# The toy losses that are a training method's own loss on two views (core.methods), called through the method's
# class so the toy and the Trainer run the same code. info_nce is MoCo's loss with the toy's own key encoder.
TOY_METHODS = {"nt_xent": "simclr", "info_nce": "moco", "triplet": "triplet", "margin": "margin", "supcon": "supcon",
               "vicreg": "vicreg"}
# What the page's knobs apply to, from the methods' traits: the temperature slider, the margin slider.
TOY_USES_TEMPERATURE = tuple(k for k, m in TOY_METHODS.items() if METHODS[m].uses_temperature)
TOY_USES_MARGIN = tuple(k for k, m in TOY_METHODS.items() if METHODS[m].uses_margin)


def _no_progress(fraction: float, message: str) -> None:  # noqa: ARG001 - a default callback
    return None


# ---------------------------------------------------------------------------------------------------------------
# Wang & Isola's two terms as losses (core.metrics has them as no-grad numbers)
# ---------------------------------------------------------------------------------------------------------------


def alignment_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """L_align (Wang & Isola 2020, alpha = 2): mean squared distance of the L2-normalised positive pairs.

    The loss with no negatives at all: minimised by mapping everything to one point (collapse).
    Shape: z1, z2 (N, D) -> scalar; equals :func:`core.metrics.alignment` in value.
    """
    return (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).square().sum(dim=1).mean()


def uniformity_loss(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """L_uniform (Wang & Isola 2020): ``log mean_{i<j} exp(-t ||z_i - z_j||^2)`` on L2-normalised rows.

    Shape: z (N, D), N >= 2 -> scalar; equals :func:`core.metrics.uniformity` in value.
    """
    u = F.normalize(z, dim=1)
    sq = torch.pdist(u).square()  # (N (N - 1) / 2,) pairs i < j
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())


# ---------------------------------------------------------------------------------------------------------------
# The toy
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyConfig:
    """A toy run: ``n_classes`` Gaussian blobs of ``per_class`` points in ``input_dim`` dimensions, an MLP
    onto the unit circle (``dim=2``) or sphere (``dim=3``), views made by Gaussian input noise."""

    loss: str = "nt_xent"  # one of TOY_LOSSES
    dim: int = 2  # 2: circle, 3: sphere (any 2..64 works; the page draws 2 and 3)
    n_classes: int = 4
    per_class: int = 64  # points per class: 4 x 64 = 256 points, enough for an anatomy batch of 256
    input_dim: int = 8
    class_spread: float = 1.5  # std of the class centres; points sit at unit std around them
    noise: float = 0.5  # augmentation: std of the Gaussian noise added to make each view
    temperature: float = 0.2  # NT-Xent / InfoNCE / SupCon
    batch_size: int = 64  # samples per step (NT-Xent then has 2 x 64 - 2 = 126 negatives per anchor)
    queue_size: int = 256  # InfoNCE: negatives kept from earlier batches
    momentum: float = 0.9  # InfoNCE: EMA of the key encoder
    margin: float = 0.5  # triplet / margin contrastive, on unit vectors
    mining: str = "semihard"  # triplet: all | hard | semihard
    lr: float = 0.02  # Adam: big enough that points move visibly within the first second
    steps: int = 300
    eval_every: int = 5
    seed: int = 0
    pace: float = 0.0  # minimum seconds per step, so a person can watch (the page uses ~0.04; tests 0)

    def __post_init__(self) -> None:
        if self.loss not in TOY_LOSSES:
            raise PlaygroundError(f"Unknown toy loss {self.loss!r}; choose one of {', '.join(TOY_LOSSES)}.")
        if self.mining not in losses.MINING_MODES:
            raise PlaygroundError(f"Unknown mining {self.mining!r}; choose one of {', '.join(losses.MINING_MODES)}.")
        checks = [
            ("dim", 2 <= self.dim <= 64, "between 2 and 64"),
            ("n_classes", 2 <= self.n_classes <= 20, "between 2 and 20"),
            ("per_class", 2 <= self.per_class <= 1000, "between 2 and 1000"),
            ("input_dim", 2 <= self.input_dim <= 256, "between 2 and 256"),
            ("class_spread", self.class_spread >= 0, "zero or more"),
            ("noise", self.noise >= 0, "zero or more"),
            ("temperature", math.isfinite(self.temperature) and self.temperature >= 0.01, "at least 0.01"),
            ("batch_size", 4 <= self.batch_size <= 4096, "between 4 and 4096"),
            ("queue_size", 0 <= self.queue_size <= 65536, "between 0 and 65536"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("margin", 0 <= self.margin <= 4, "between 0 and 4"),
            ("lr", 0 < self.lr <= 1, "between 0 and 1"),
            ("steps", self.steps >= 1, "at least 1"),
            ("eval_every", self.eval_every >= 1, "at least 1"),
            ("pace", 0 <= self.pace <= 2, "between 0 and 2 seconds"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise PlaygroundError(f"The toy's {name} = {getattr(self, name)!r} is not allowed; it must be {allowed}.")

    @property
    def n_points(self) -> int:
        return self.n_classes * self.per_class


@dataclass
class ToyStep:
    step: int
    loss: float
    seconds: float


@dataclass
class ToyEval:
    step: int
    alignment: float  # Wang & Isola, two noisy views of every point (lower: views closer)
    uniformity: float  # Wang & Isola, t = 2, clean points (lower: more spread)
    effective_rank: float  # Roy & Vetterli, of the unit embeddings (1: collapsed to a line or point)
    hardest_share: float  # mean over anchors of the hardest negative's share of the NT-Xent gradient at cfg's tau
    knn: float  # kNN class accuracy: noisy view 2 against clean points (k = 5)
    seconds: float = 0.0


def _mlp(input_dim: int, dim: int, hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, dim))


class ToyTrainer:
    """Points of a few classes, embedded on the circle or sphere by a small MLP and trained with one loss.

    Same contract as :class:`core.train.Trainer` for the app's jobs: ``run(steps, callbacks, stop)`` with
    :meth:`default_callbacks` (evaluation at step 0, every ``cfg.eval_every`` steps and at the end), ``step()``
    (one step, under a lock), ``evaluate()``, ``step_count``, ``cfg.steps``, append-only ``history`` / ``evals``.
    Seeded: the same config gives the same run.

    >>> t = ToyTrainer(ToyConfig(steps=3))
    >>> len(t.run()), [e.step for e in t.evals], t.points().shape
    (3, [0, 3], (256, 2))
    """

    def __init__(self, cfg: ToyConfig, *, device: torch.device | str | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else torch.device("cpu")  # tiny: CPU is fastest
        self._lock = threading.RLock()
        g = torch.Generator().manual_seed(cfg.seed)
        centres = torch.randn(cfg.n_classes, cfg.input_dim, generator=g) * cfg.class_spread
        self.labels = torch.arange(cfg.n_classes).repeat_interleave(cfg.per_class)  # (N,)
        self.inputs = centres[self.labels] + torch.randn(cfg.n_points, cfg.input_dim, generator=g)  # (N, input_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = _mlp(cfg.input_dim, cfg.dim).to(self.device)
        self.key_model: nn.Module | None = None
        self.queue: losses.FeatureQueue | None = None
        if cfg.loss == "info_nce":
            self.key_model = _mlp(cfg.input_dim, cfg.dim).to(self.device)
            self.key_model.load_state_dict(self.model.state_dict())
            self.key_model.requires_grad_(False)
            if cfg.queue_size:
                self.queue = losses.FeatureQueue(cfg.dim, cfg.queue_size, device=self.device)
                init = torch.randn(cfg.queue_size, cfg.dim, generator=g)  # random unit keys, as MoCo starts
                self.queue.enqueue(F.normalize(init, dim=1))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.batch_size = min(cfg.batch_size, cfg.n_points)
        self._gen = torch.Generator().manual_seed(cfg.seed + 1)
        self._eval_noise = torch.randn(2, cfg.n_points, cfg.input_dim, generator=torch.Generator().manual_seed(
            cfg.seed + 2)) * cfg.noise  # fixed views for evaluation, so curves are not noisy
        self.step_count = 0
        self.seconds = 0.0
        self.history: list[ToyStep] = []
        self.evals: list[ToyEval] = []
        self.diverged: str | None = None
        self.last_batch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (z1, z2, labels) of the last step

    # ------------------------------------------------------------------ training
    def _views(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs[idx]
        n1 = torch.randn(x.shape, generator=self._gen) * self.cfg.noise
        n2 = torch.randn(x.shape, generator=self._gen) * self.cfg.noise
        return (x + n1).to(self.device), (x + n2).to(self.device)

    def _loss(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        v1, v2 = self._views(idx)
        y = self.labels[idx].to(self.device)
        z1, z2 = self.model(v1), self.model(v2)
        self.last_batch = (z1.detach().cpu().numpy(), z2.detach().cpu().numpy(), y.cpu().numpy())
        method = METHODS.get(TOY_METHODS.get(cfg.loss, ""))
        if method is not None and issubclass(method, TwoViewMethod):
            return method().pair_loss(z1, z2, y, cfg, self._gen)
        if cfg.loss == "info_nce":
            with torch.no_grad():
                for pk, pq in zip(self.key_model.parameters(), self.model.parameters()):
                    pk.lerp_(pq, 1.0 - cfg.momentum)
                k = F.normalize(self.key_model(v2), dim=1)
            loss = losses.info_nce(z1, k, self.queue, cfg.temperature)
            if self.queue is not None:
                self.queue.enqueue(k)
            return loss
        if cfg.loss == "align":
            return alignment_loss(z1, z2)
        if cfg.loss == "invariance":  # VICReg with its variance and covariance weights set to 0
            return losses.vicreg(z1, z2, variance=0.0, covariance=0.0)
        return alignment_loss(z1, z2) + (uniformity_loss(z1) + uniformity_loss(z2)) / 2

    def step(self) -> ToyStep:
        """One Adam step on a random batch, nothing else (evaluations are :meth:`run`'s callbacks). With
        ``cfg.pace`` it sleeps (outside the lock) so a step lasts at least that long."""
        t_start = time.perf_counter()
        with self._lock:
            if self.diverged:
                raise PlaygroundError(self.diverged)
            t0 = time.perf_counter()
            idx = torch.randperm(self.cfg.n_points, generator=self._gen)[: self.batch_size]
            self.model.train()
            loss = self._loss(idx)
            if not torch.isfinite(loss):
                self.diverged = (f"The toy stopped at step {self.step_count + 1}: the loss became {loss.item()}. "
                                 "Try a higher temperature or a smaller learning rate.")
                raise PlaygroundError(self.diverged)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step_count += 1
            self.seconds += time.perf_counter() - t0
            record = ToyStep(self.step_count, float(loss.detach()), self.seconds)
            self.history.append(record)
        rest = self.cfg.pace - (time.perf_counter() - t_start)
        if rest > 0:
            time.sleep(rest)  # outside the lock: the page can read points meanwhile
        return record

    def default_callbacks(self) -> list:
        """An evaluation before the first step (curves start from the untrained model), every ``cfg.eval_every``
        steps and at the end of a finished run."""
        return [EvaluateEvery(self.cfg.eval_every, first=False, start=True)]

    def run(self, steps: int | None = None, callbacks=None, stop=None) -> list[ToyStep]:
        """Run ``steps`` steps (default: until ``cfg.steps``) through :func:`core.loop.run_loop`, as
        :meth:`core.train.Trainer.run`: ``callbacks`` None means :meth:`default_callbacks`; ``stop`` (an Event or a
        callable) is checked before each step."""
        target = steps if steps is not None else max(self.cfg.steps - self.step_count, 0)
        return run_loop(self, target, self.default_callbacks() if callbacks is None else callbacks, stop)

    # ------------------------------------------------------------------ reading it
    @torch.no_grad()
    def points(self, x: torch.Tensor | None = None) -> np.ndarray:
        """Unit embeddings of the clean inputs (or of ``x``). Shape: (N, dim) float32."""
        with self._lock:
            self.model.eval()
            z = self.model((self.inputs if x is None else x).to(self.device))
            return F.normalize(z, dim=1).cpu().numpy().astype(np.float32)

    def evaluate(self) -> ToyEval:
        with self._lock:
            t0 = time.perf_counter()
            record = self._evaluate_locked()
            self.seconds += time.perf_counter() - t0
            return record

    @torch.no_grad()
    def _evaluate_locked(self) -> ToyEval:
        clean = self.points()
        z1 = self.points(self.inputs + self._eval_noise[0])
        z2 = self.points(self.inputs + self._eval_noise[1])
        y = self.labels.numpy()
        share = hardest_negative_share(torch.from_numpy(z1), torch.from_numpy(z2), self.cfg.temperature)
        record = ToyEval(
            step=self.step_count,
            alignment=alignment(z1, z2),
            uniformity=uniformity(clean),
            effective_rank=effective_rank(clean),
            hardest_share=share,
            knn=knn_accuracy(clean, y, z2, y, k=5),
            seconds=self.seconds,
        )
        self.evals.append(record)
        return record

    def batch(self, size: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A fixed batch for the anatomy view: two noisy views of ``size`` points through the current model.

        Returns z1 (B, dim), z2 (B, dim) unit vectors and labels (B,). The same ``seed`` gives the same points
        and noise, so only the model (and the temperature) changes what the page shows.
        """
        cfg = self.cfg
        b = min(size or self.batch_size, cfg.n_points)
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(cfg.n_points, generator=g)[:b]
        x = self.inputs[idx]
        z1 = self.points(x + torch.randn(x.shape, generator=g) * cfg.noise)
        z2 = self.points(x + torch.randn(x.shape, generator=g) * cfg.noise)
        return z1, z2, self.labels[idx].numpy()

    def queue_keys(self) -> np.ndarray | None:
        with self._lock:
            return None if self.queue is None or not len(self.queue) else self.queue.tensor.cpu().numpy()


# ---------------------------------------------------------------------------------------------------------------
# One batch, taken apart
# ---------------------------------------------------------------------------------------------------------------


def nt_xent_similarity_gradient(sims: torch.Tensor, positive: int, temperature: float) -> torch.Tensor:
    """d l_i / d s_ik for one NT-Xent anchor: ``(p_k - [k = pos]) / t`` with p = softmax(s / t).

    ``sims`` holds the anchor's cosine similarity to every *other* embedding (its own entry removed).
    Shape: (M,) -> (M,). Negatives get ``p_k / t`` (a push that grows with how similar they are), the positive
    ``-(1 - p_pos) / t`` (a pull of the same total size).
    """
    p = torch.softmax(sims / temperature, dim=0)
    onehot = torch.zeros_like(p)
    onehot[positive] = 1.0
    return (p - onehot) / temperature


@dataclass
class AnchorBreakdown:
    """One NT-Xent anchor of a batch of 2N embeddings (Chen et al. 2020), everything shown on the page.

    Arrays are over the M = 2N - 1 other embeddings, sorted by similarity to the anchor (most similar first).
    """

    anchor: int  # row in the stacked (2N, D) batch
    temperature: float
    index: np.ndarray  # (M,) rows of the other embeddings
    similarity: np.ndarray  # (M,) cosine similarity s(anchor, k)
    is_positive: np.ndarray  # (M,) bool: the other view of the same sample
    same_class: np.ndarray  # (M,) bool: negatives that share the anchor's label (false negatives), if labels
    weight: np.ndarray  # (M,) softmax p_k = exp(s_k / t) / sum_j exp(s_j / t)
    grad: np.ndarray  # (M,) d loss_anchor / d s_k
    share: np.ndarray  # (M,) each negative's share of the push, p_k / sum_neg p_j (0 for the positive)
    loss: float  # -log p_pos

    @property
    def positive_similarity(self) -> float:
        return float(self.similarity[self.is_positive][0])

    @property
    def positive_weight(self) -> float:
        return float(self.weight[self.is_positive][0])

    @property
    def denominator(self) -> float:
        """sum_{k != i} exp(s_ik / t), the softmax's normaliser."""
        return float(np.exp(self.similarity / self.temperature).sum())

    @property
    def effective_negatives(self) -> float:
        """1 / sum share^2: how many negatives really push (M - 1 when all push equally, 1 when one does)."""
        s = self.share[~self.is_positive]
        return float(1.0 / np.square(s).sum()) if s.sum() > 0 else 0.0


def _stack_unit(z1, z2) -> torch.Tensor:
    a = torch.as_tensor(np.asarray(z1), dtype=torch.float64) if not isinstance(z1, torch.Tensor) else z1.double()
    b = torch.as_tensor(np.asarray(z2), dtype=torch.float64) if not isinstance(z2, torch.Tensor) else z2.double()
    if a.dim() != 2 or a.shape != b.shape or a.shape[0] < 2:
        raise PlaygroundError(f"The two views must both be shaped (N, D) with N >= 2, got {tuple(a.shape)} "
                              f"and {tuple(b.shape)}.")
    return F.normalize(torch.cat([a, b]), dim=1)  # (2N, D)


def anchor_breakdown(z1, z2, anchor: int, temperature: float, labels=None) -> AnchorBreakdown:
    """Take NT-Xent apart for one anchor of the batch (z1, z2), at ``temperature``.

    ``anchor`` indexes the stacked batch [z1; z2] (0..2N-1); its positive is the other view (i <-> i + N).
    The anchor's loss is ``-log p_pos``; the gradient on each similarity is ``(p_k - [k = pos]) / t``, so a
    negative's share of the push is ``p_k / sum_neg p_j`` (Wang & Liu 2021): low t puts it on the hardest.
    Float64 inside, so very low temperatures stay exact. Shape: z1, z2 (N, D); labels (N,) or None.

    >>> b = anchor_breakdown(np.eye(3), np.eye(3), 0, 1.0)
    >>> round(b.loss, 4), round(b.share.sum(), 6)  # -log(e / (e + 4)), shares of the 4 negatives sum to 1
    (1.0064, 1.0)
    """
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise PlaygroundError(f"The temperature must be a positive number, got {temperature!r}.")
    z = _stack_unit(z1, z2)
    m2 = z.shape[0]
    n = m2 // 2
    if isinstance(anchor, bool) or not isinstance(anchor, (int, np.integer)) or not 0 <= anchor < m2:
        raise PlaygroundError(f"The anchor must be a row of the batch, 0 to {m2 - 1}, got {anchor!r}.")
    anchor = int(anchor)
    positive = (anchor + n) % m2
    others = torch.tensor([k for k in range(m2) if k != anchor])  # (M,)
    sims = (z[others] @ z[anchor]).clamp(-1, 1)  # (M,)
    pos_slot = int((others == positive).nonzero()[0, 0])
    grad = nt_xent_similarity_gradient(sims, pos_slot, t)
    p = torch.softmax(sims / t, dim=0)
    is_pos = torch.zeros(len(others), dtype=torch.bool)
    is_pos[pos_slot] = True
    neg_p = p.masked_fill(is_pos, 0.0)
    share = neg_p / neg_p.sum().clamp_min(1e-300)
    if labels is not None:
        y = np.concatenate([np.asarray(labels), np.asarray(labels)])
        if y.shape != (m2,):
            raise PlaygroundError(f"labels must have one entry per sample ({n}), got {len(np.asarray(labels))}.")
        same = (y[others.numpy()] == y[anchor]) & ~is_pos.numpy()
    else:
        same = np.zeros(len(others), dtype=bool)
    order = torch.argsort(sims, descending=True, stable=True).numpy()
    return AnchorBreakdown(
        anchor=anchor, temperature=t, index=others.numpy()[order], similarity=sims.numpy()[order],
        is_positive=is_pos.numpy()[order], same_class=same[order], weight=p.numpy()[order],
        grad=grad.numpy()[order], share=share.numpy()[order], loss=float(-torch.log(p[pos_slot])),
    )


def hardest_negative_share(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Mean over the 2N NT-Xent anchors of the largest single negative's share of the push (Wang & Liu 2021).

    1 / (2N - 2) when every negative pushes equally (high t), towards 1 when the hardest takes it all (low t).
    Shape: z1, z2 (N, D) -> float.
    """
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    m2 = z.shape[0]
    n = m2 // 2
    logits = (z @ z.T) / temperature
    eye = torch.eye(m2, dtype=torch.bool)
    pos = torch.roll(eye, n, dims=1)  # [i, i + N] and [i + N, i]
    logits = logits.masked_fill(eye | pos, float("-inf"))  # negatives only
    share = torch.softmax(logits, dim=1)  # p_k / sum_neg p_j: the positive cancels out of the ratio
    return float(share.max(dim=1).values.mean())


@dataclass
class LossOnBatch:
    """One loss on the shared batch: its value and which embeddings and anchor pairs get gradient."""

    key: str
    name: str
    value: float
    grad_norm: np.ndarray  # (2N,) |dL/dz_j| for each embedding of the stacked batch
    coupling: np.ndarray  # (2N,) |d^2 L / dz_anchor dz_j|: 0 when the pair (anchor, j) carries no gradient
    note: str

    @property
    def points_with_gradient(self) -> int:
        return int((self.grad_norm > 1e-9).sum())

    @property
    def pairs_with_gradient(self) -> int:
        """Pairs (anchor, j), j != anchor, that the loss couples (their gradient depends on each other)."""
        return int((self.coupling > 1e-9).sum())


COMPARED_LOSSES = ("nt_xent", "info_nce", "supcon", "triplet_all", "triplet_hard", "triplet_semihard", "margin")
_COMPARED_METHODS = {"nt_xent": "simclr", "info_nce": "moco", "supcon": "supcon", "triplet_all": "triplet",
                     "triplet_hard": "triplet", "triplet_semihard": "triplet", "margin": "margin"}
# The compared losses that depend on the temperature (the page caches the others apart): from the methods' traits.
TEMPERATURE_KEYS = tuple(k for k in COMPARED_LOSSES if METHODS[_COMPARED_METHODS[k]].uses_temperature)


def compare_losses(z1, z2, labels, *, anchor: int, temperature: float, margin: float = 0.5,
                   queue=None, seed: int = 0, keys=None) -> list[LossOnBatch]:
    """Every loss of :mod:`core.losses` on the very same batch (Chen 2020; He 2020; Schroff 2015; Hadsell 2006;
    Khosla 2020), with autograd telling which embeddings get gradient and which pairs with ``anchor`` matter.

    A pair (anchor, j) "gets gradient" when the loss couples them: the block ``d^2 L / dz_anchor dz_j`` of the
    Hessian is non-zero (computed with ``dim`` extra backward passes). For InfoNCE the keys are detached, as in
    MoCo, so only the queries (view 1) learn. The margin loss pairs view 1 with the other view for the first half
    of the samples and with a seeded random partner for the rest, as core.train does.
    ``keys`` picks a subset of :data:`COMPARED_LOSSES` (the page caches the temperature-free ones apart).
    Shape: z1, z2 (N, D); labels (N,); queue (K, D) or None (then InfoNCE uses the other samples' keys).
    """
    unknown = set(keys or ()) - set(COMPARED_LOSSES)
    if unknown:
        raise PlaygroundError(f"Unknown losses {sorted(unknown)}; choose from {', '.join(COMPARED_LOSSES)}.")
    z_all = _stack_unit(z1, z2).float()
    m2, dim = z_all.shape
    n = m2 // 2
    y = torch.as_tensor(np.asarray(labels)).long()
    if y.shape != (n,):
        raise PlaygroundError(f"labels must have one entry per sample ({n}), got shape {tuple(y.shape)}.")
    if not 0 <= anchor < m2:
        raise PlaygroundError(f"The anchor must be a row of the batch, 0 to {m2 - 1}, got {anchor!r}.")
    gen = torch.Generator().manual_seed(seed)
    margin_partner = margin_partners(n, gen, torch.device("cpu"))
    margin_same = y == y[margin_partner]
    queue_t = torch.as_tensor(np.asarray(queue), dtype=torch.float32) if queue is not None else None

    def info(z: torch.Tensor) -> torch.Tensor:
        keys = z[n:].detach()
        neg = queue_t if queue_t is not None else keys  # no queue: the batch's own keys (the positive among them)
        return losses.info_nce(z[:n], keys, neg, temperature)

    specs = [
        ("nt_xent", "NT-Xent", lambda z: losses.nt_xent(z[:n], z[n:], temperature),
         "every pair pulls or pushes, weighted by the softmax at t"),
        ("info_nce", "InfoNCE (keys detached)", info,
         "only the queries (view 1) learn; the keys and queue carry no gradient"),
        ("supcon", "SupCon", lambda z: losses.supcon(torch.stack([z[:n], z[n:]], dim=1), y, temperature),
         "all same-class points are positives"),
        ("triplet_all", "Triplet, all", lambda z: losses.triplet_loss(z, torch.cat([y, y]), margin, mining="all"),
         "every triplet still inside the margin"),
        ("triplet_hard", "Triplet, hardest", lambda z: losses.triplet_loss(z, torch.cat([y, y]), margin,
                                                                           mining="hard"),
         "one farthest positive and one nearest negative per anchor"),
        ("triplet_semihard", "Triplet, semi-hard", lambda z: losses.triplet_loss(z, torch.cat([y, y]), margin,
                                                                                 mining="semihard"),
         "negatives just beyond the positive (FaceNet)"),
        ("margin", "Margin contrastive", lambda z: losses.margin_contrastive(z[:n], z[n:][margin_partner],
                                                                           margin_same, margin),
         "one partner per sample: pulled if same class, pushed until the margin if not"),
    ]
    out = []
    for key, name, fn, note in specs:
        if keys is not None and key not in keys:
            continue
        z = z_all.clone().requires_grad_(True)
        loss = fn(z)
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        coupling = torch.zeros(m2)
        if g.requires_grad:
            rows = []
            for d in range(dim):
                (h,) = torch.autograd.grad(g[anchor, d], z, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(z) if h is None else h)
            coupling = torch.stack(rows).square().sum(dim=(0, 2)).sqrt().detach()  # (2N,)
        coupling[anchor] = 0.0
        out.append(LossOnBatch(key, name, float(loss.detach()), g.detach().norm(dim=1).numpy(),
                               coupling.numpy(), note))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Presets: small seeded experiments that reproduce (or fail to reproduce) a textbook result
# ---------------------------------------------------------------------------------------------------------------

# The real-model presets train core.train.Trainer on the built-in shapes, sized to take seconds on a 2-core CPU:
# 1,500 images at 32 px (1,200 train / 300 held out), a half-width small CNN, batch 64, 150 steps.
PRESET_DATA = {"n": 1500, "size": 32, "seed": 0}
PRESET_STEPS = 150
CHECK_EVERY = 25  # steps between the measurements drawn as curves


@dataclass
class Panel:
    """One chart of a preset's figure: lines against ``x`` (steps) or bars over categories."""

    title: str
    kind: str  # "line" | "bar"
    x: list  # steps, or category names for bars
    series: dict[str, list[float]]
    x_label: str = "step"
    y_label: str = ""


@dataclass
class PresetResult:
    key: str
    title: str
    claim: str  # the textbook statement, with its source
    reproduced: bool  # decided from the numbers below, not written by hand
    verdict: str  # one or two sentences with the measured numbers
    panels: list[Panel]
    numbers: dict[str, float]
    setup: str  # what was trained, so the run can be repeated (benchmarks/bench_lab_presets.py)
    seconds: float = 0.0


@lru_cache(maxsize=1)
def _shapes():
    from core.data import load_dataset

    return load_dataset("shapes", **PRESET_DATA)


def _shapes_config(**changes):
    from core.augment import PRESETS as AUGMENT
    from core.models import EncoderConfig
    from core.train import TrainConfig

    cfg = TrainConfig(encoder=EncoderConfig(width=16), batch_size=64, lr=3e-3, steps=PRESET_STEPS,
                      augment=AUGMENT["shapes"], eval_every=10**6, snapshot_every=10**6, probe_size=100,
                      knn_reference=800, seed=0)
    return replace(cfg, **changes)


def _probe_views(trainer, n: int = 128):
    """Two fixed augmented views of held-out images in projection space, for uniformity and gradient shares."""
    from core.augment import augment

    gen = torch.Generator().manual_seed(123)
    x = trainer.heldout.images[:n]
    z1 = trainer.model.embed(augment(x, trainer.cfg.augment, gen), space="projection", normalize=True).cpu()
    z2 = trainer.model.embed(augment(x, trainer.cfg.augment, gen), space="projection", normalize=True).cpu()
    return z1, z2


def _measure(trainer) -> dict[str, float]:
    ref, test = trainer._knn_ref, trainer.heldout
    a = trainer.model.embed(ref.images, space="encoder").cpu().numpy()
    b = trainer.model.embed(test.images, space="encoder").cpu().numpy()
    z1, z2 = _probe_views(trainer)
    out = {f"knn_{f}": knn_accuracy(a, ref.labels[f], b, test.labels[f], k=10) for f in ("shape", "colour")}
    out["uniformity"] = uniformity(z1)
    out["hardest_share"] = hardest_negative_share(z1, z2, trainer.cfg.temperature)
    return out


@dataclass
class _Run:
    trainer: object
    steps: list[int]
    curves: dict[str, list[float]]
    seconds: float


_RUNS: dict[str, _Run] = {}
_RUNS_LOCK = threading.Lock()


def _trained(cfg, progress: Progress, lo: float, hi: float, label: str) -> _Run:
    """Train ``cfg`` on the preset shapes, measuring every CHECK_EVERY steps; shared by presets 3-6.

    Runs are memoised by config (a handful of small CNNs), so presets that share a run (the "shapes" recipe at
    batch 64 is the baseline of presets 3 to 6) train it once per process.
    """
    import json

    from core.train import Trainer

    key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    with _RUNS_LOCK:
        if key in _RUNS:
            progress(hi, f"{label}: already trained")
            return _RUNS[key]
    t0 = time.perf_counter()
    trainer = Trainer(cfg, _shapes(), device="cpu")
    steps, curves = [], {}

    def check() -> None:
        steps.append(trainer.step_count)
        for k, v in _measure(trainer).items():
            curves.setdefault(k, []).append(float(v))

    class Check:  # a callback of Trainer.run: the curves every CHECK_EVERY steps and at the end
        def on_step(self, t, record) -> None:
            if record.step % CHECK_EVERY == 0 or record.step == cfg.steps:
                check()
            progress(lo + (hi - lo) * record.step / cfg.steps, f"{label}: step {record.step} of {cfg.steps}")

    check()
    trainer.run(cfg.steps, callbacks=[Check()])
    run = _Run(trainer, steps, curves, time.perf_counter() - t0)
    with _RUNS_LOCK:
        _RUNS[key] = run
        while len(_RUNS) > 8:
            _RUNS.pop(next(iter(_RUNS)))
    return run


def _probe(trainer, space: str, factor: str) -> float:
    ref, test = trainer._knn_ref, trainer.heldout
    a = trainer.model.embed(ref.images, space=space).cpu().numpy()
    b = trainer.model.embed(test.images, space=space).cpu().numpy()
    return linear_probe_accuracy(a, ref.labels[factor], b, test.labels[factor])


def _chance(factor: str) -> float:
    return 1.0 / len(_shapes().classes[factor])


def preset_temperature(progress: Progress = _no_progress, taus: tuple[float, ...] = (0.07, 0.2, 1.0),
                       steps: int = PRESET_STEPS) -> PresetResult:
    """Wang & Liu 2021: a lower temperature gives a more uniform embedding and focuses the gradient on the
    hardest negatives. SimCLR on shapes at each t; uniformity and the hardest negative's share against steps."""
    runs = {t: _trained(_shapes_config(temperature=t, steps=steps), progress, i / len(taus), (i + 1) / len(taus),
                        f"t = {t:g}") for i, t in enumerate(taus)}
    steps_x = next(iter(runs.values())).steps
    lo, hi = min(taus), max(taus)
    u_lo, u_hi = runs[lo].curves["uniformity"][-1], runs[hi].curves["uniformity"][-1]
    s_lo, s_hi = runs[lo].curves["hardest_share"][-1], runs[hi].curves["hardest_share"][-1]
    focus = s_lo > s_hi
    more_uniform = u_lo < u_hi
    first_flip = next((s for s, a, b in zip(steps_x, runs[lo].curves["uniformity"], runs[hi].curves["uniformity"])
                       if a < b and s > 0), None)
    final_u = {t: r.curves["uniformity"][-1] for t, r in runs.items()}
    most_uniform = min(final_u, key=final_u.get)
    verdict = (f"After {steps} steps the hardest negative takes {s_lo:.1%} of the push at t = {lo:g} against "
               f"{s_hi:.1%} at t = {hi:g} ({'as claimed' if focus else 'NOT as claimed'}). Uniformity: "
               + ", ".join(f"{u:.2f} at t = {t:g}" for t, u in final_u.items()) + ": ")
    if more_uniform and most_uniform == lo:
        verdict += f"the lowest temperature is the most uniform (ahead of t = {hi:g} from step {first_flip})."
    else:
        more_uniform = False
        verdict += (f"the lowest temperature is NOT the most uniform here (t = {most_uniform:g} is). Which temperature "
                    "is more uniform depends on the stage of training and the recipe; more steps may change the order.")
    return PresetResult(
        key="temperature", title="Temperature: uniformity and hard negatives",
        claim="Lower temperature makes the embedding more uniform and focuses the gradient on the hardest "
              "negatives (Wang & Liu 2021).",
        reproduced=bool(focus and more_uniform), verdict=verdict,
        panels=[Panel("Uniformity (lower = more spread), projection space", "line", steps_x,
                      {f"t = {t:g}": r.curves["uniformity"] for t, r in runs.items()}, y_label="uniformity"),
                Panel("Hardest negative's share of the push", "line", steps_x,
                      {f"t = {t:g}": r.curves["hardest_share"] for t, r in runs.items()}, y_label="share")],
        numbers={**{f"uniformity_t{t:g}": r.curves["uniformity"][-1] for t, r in runs.items()},
                 **{f"hardest_share_t{t:g}": r.curves["hardest_share"][-1] for t, r in runs.items()}},
        setup=f"SimCLR, shapes n={PRESET_DATA['n']}, small_cnn width 16, batch 64, {steps} steps, t in {taus}",
        seconds=sum(r.seconds for r in runs.values()))


class _Progress:
    """A run callback reporting run ``index`` of ``count`` to a preset's ``progress`` every 20 steps."""

    def __init__(self, progress: Progress, index: int, count: int, label: str, steps: int) -> None:
        self.progress, self.index, self.count, self.label, self.steps = progress, index, count, label, steps

    def on_step(self, trainer, record) -> None:
        if record.step % 20 == 1 or record.step == self.steps:
            self.progress((self.index + record.step / self.steps) / self.count,
                          f"{self.label}: step {record.step} of {self.steps}")


def preset_collapse(progress: Progress = _no_progress, steps: int = 200) -> PresetResult:
    """No negatives: the alignment term alone is minimised by mapping everything to one point (the toy, 3-D)."""
    runs = {}
    for i, loss in enumerate(("align", "nt_xent")):
        t = ToyTrainer(ToyConfig(loss=loss, dim=3, steps=steps, eval_every=10))
        t.run(callbacks=[*t.default_callbacks(), _Progress(progress, i, 2, TOY_LOSS_NAMES[loss], steps)])
        runs[loss] = t
    x = [e.step for e in runs["align"].evals]
    er = {k: r.evals[-1].effective_rank for k, r in runs.items()}
    un = {k: r.evals[-1].uniformity for k, r in runs.items()}
    collapsed = er["align"] < 1.2 and un["align"] > -0.1 and er["nt_xent"] > 2.5
    verdict = (f"Alignment only: effective rank {er['align']:.2f} and uniformity {un['align']:.3f} after {steps} "
               "steps (" + ("every point in one place" if er["align"] < 1.2 and un["align"] > -0.1 else
                            "not collapsed at this setting") + f"). With negatives (NT-Xent): rank "
               f"{er['nt_xent']:.2f}, uniformity {un['nt_xent']:.2f}.")
    return PresetResult(
        key="collapse", title="No negatives: collapse",
        claim="Without negatives, pulling positives together collapses the embedding: effective rank -> 1, "
              "uniformity -> 0 (Wang & Isola 2020).",
        reproduced=bool(collapsed), verdict=verdict,
        panels=[Panel("Effective rank (3 = fills the sphere, 1 = one direction)", "line", x,
                      {TOY_LOSS_NAMES[k]: [e.effective_rank for e in r.evals] for k, r in runs.items()},
                      y_label="effective rank"),
                Panel("Uniformity (0 = all points equal)", "line", x,
                      {TOY_LOSS_NAMES[k]: [e.uniformity for e in r.evals] for k, r in runs.items()},
                      y_label="uniformity")],
        numbers={"effective_rank_align": er["align"], "uniformity_align": un["align"],
                 "effective_rank_nt_xent": er["nt_xent"], "uniformity_nt_xent": un["nt_xent"]},
        setup=f"the toy: 4 classes x 64 points on the sphere, MLP, {steps} steps, alignment-only vs NT-Xent t=0.2")


def _mean_pair_cosine(points: np.ndarray) -> float:
    """Mean cosine similarity between different points (rows of unit vectors): 1 when all sit in one place."""
    sims = points @ points.T
    n = len(points)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def preset_no_negatives(progress: Progress = _no_progress, steps: int = 200, seed: int = 0) -> PresetResult:
    """Collapse without negatives, and how VICReg avoids it (Bardes et al. 2022): the toy on the sphere trained
    with VICReg's invariance term alone (pull the two views together, nothing else) against the full VICReg loss,
    whose variance and covariance terms keep every output dimension spread over the batch. No negative pushes
    points apart in either run."""
    runs = {}
    for i, loss in enumerate(("invariance", "vicreg")):
        t = ToyTrainer(ToyConfig(loss=loss, dim=3, steps=steps, eval_every=10, seed=seed))
        t.run(callbacks=[*t.default_callbacks(), _Progress(progress, i, 2, TOY_LOSS_NAMES[loss], steps)])
        runs[loss] = t
    x = [e.step for e in runs["vicreg"].evals]
    er = {k: r.evals[-1].effective_rank for k, r in runs.items()}
    un = {k: r.evals[-1].uniformity for k, r in runs.items()}
    cos = {k: _mean_pair_cosine(r.points()) for k, r in runs.items()}
    knn = {k: r.evals[-1].knn for k, r in runs.items()}
    collapsed = er["invariance"] < 1.2 or cos["invariance"] > 0.95
    spread = er["vicreg"] > 2.0 and cos["vicreg"] < 0.5
    verdict = (f"Invariance term alone, after {steps} steps: effective rank {er['invariance']:.2f} of 3, mean cosine "
               f"similarity between different points {cos['invariance']:.2f}, uniformity {un['invariance']:.2f}: "
               + ("the points collapsed onto one direction, since matching two views is easiest when every input "
                  "maps to the same output. " if collapsed else "no collapse at this setting. ")
               + f"With VICReg's variance and covariance terms: rank {er['vicreg']:.2f}, mean cosine "
               f"{cos['vicreg']:.2f}, uniformity {un['vicreg']:.2f}, class kNN {knn['vicreg']:.2f} (against "
               f"{knn['invariance']:.2f}): "
               + ("spread over the sphere, though nothing pushes any two points apart." if spread else
                  "not spread at this setting."))
    return PresetResult(
        key="no_negatives", title="No negatives, no collapse: VICReg",
        claim="A loss that only pulls positives together collapses; VICReg avoids it without negatives by keeping "
              "each dimension's standard deviation at 1 (variance) and the dimensions decorrelated (covariance) "
              "(Bardes, Ponce & LeCun 2022).",
        reproduced=bool(collapsed and spread), verdict=verdict,
        panels=[Panel("Effective rank (3 = fills the sphere, 1 = one direction)", "line", x,
                      {TOY_LOSS_NAMES[k]: [e.effective_rank for e in r.evals] for k, r in runs.items()},
                      y_label="effective rank"),
                Panel("Uniformity (0 = all points equal)", "line", x,
                      {TOY_LOSS_NAMES[k]: [e.uniformity for e in r.evals] for k, r in runs.items()},
                      y_label="uniformity")],
        numbers={**{f"effective_rank_{k}": v for k, v in er.items()}, **{f"uniformity_{k}": v for k, v in un.items()},
                 **{f"mean_cosine_{k}": v for k, v in cos.items()}, **{f"knn_{k}": v for k, v in knn.items()}},
        setup=f"the toy: 4 classes x 64 points on the sphere, MLP, {steps} steps, seed {seed}; VICReg 25/25/1 vs "
              "its invariance term alone")


def preset_color_jitter(progress: Progress = _no_progress, steps: int = PRESET_STEPS) -> PresetResult:
    """Colour jitter teaches colour invariance: linear probes for colour and shape, jitter on vs off."""
    base = _shapes_config(steps=steps)
    off = replace(base, augment=replace(base.augment, color_jitter=False, grayscale=False))
    on_run = _trained(base, progress, 0.0, 0.5, "colour jitter ON")
    off_run = _trained(off, progress, 0.5, 1.0, "colour jitter OFF")
    acc = {name: {f: _probe(r.trainer, "encoder", f) for f in ("colour", "shape")}
           for name, r in (("jitter ON", on_run), ("jitter OFF", off_run))}
    on, offa = acc["jitter ON"], acc["jitter OFF"]
    falls = on["colour"] < offa["colour"] - 0.05
    shape_high = on["shape"] >= 0.9
    verdict = (f"Colour probe {on['colour']:.2f} with jitter vs {offa['colour']:.2f} without "
               f"({'falls, as claimed' if falls else 'does NOT fall'}); shape probe {on['shape']:.2f} vs "
               f"{offa['shape']:.2f} (chance {_chance('shape'):.2f}). ")
    verdict += ("Shape stays high." if shape_high else
                f"Shape is not 'high' (0.9 or more) after {steps} small steps at batch 64; a longer run may get there.")
    return PresetResult(
        key="color_jitter", title="Colour jitter removes colour",
        claim="Colour jitter makes the embedding colour-invariant: colour probe accuracy falls, shape stays high "
              "(Chen et al. 2020, section 3).",
        reproduced=bool(falls and shape_high), verdict=verdict,
        panels=[Panel("Linear probe on held-out encoder features", "bar", ["colour", "shape"],
                      {k: [v["colour"], v["shape"]] for k, v in acc.items()}, x_label="factor",
                      y_label="accuracy")],
        numbers={"colour_on": on["colour"], "colour_off": offa["colour"], "shape_on": on["shape"],
                 "shape_off": offa["shape"]},
        setup=f"SimCLR, shapes n={PRESET_DATA['n']}, batch 64, {steps} steps; augment 'shapes' vs the same "
              "without colour jitter and grayscale", seconds=on_run.seconds + off_run.seconds)


def preset_negatives(progress: Progress = _no_progress, batches: tuple[int, ...] = (16, 64, 128),
                     steps: int = PRESET_STEPS) -> PresetResult:
    """More negatives per step (a bigger batch) give better kNN accuracy at the same number of steps."""
    runs = {b: _trained(_shapes_config(batch_size=b, steps=steps), progress, i / len(batches),
                        (i + 1) / len(batches), f"batch {b}") for i, b in enumerate(batches)}
    steps_x = next(iter(runs.values())).steps
    final = {b: r.curves["knn_shape"][-1] for b, r in runs.items()}
    ordered = all(final[a] <= final[b] for a, b in zip(batches, batches[1:]))
    gain = final[max(batches)] - final[min(batches)]
    verdict = (f"Held-out shape kNN after {steps} steps: " +
               ", ".join(f"batch {b} ({2 * b - 2} negatives) {final[b]:.2f}" for b in batches) + ". "
               + ("More negatives, better neighbours." if ordered and gain > 0.02 else
                  "Not monotone at this scale; see the curves."))
    return PresetResult(
        key="negatives", title="More negatives, better kNN",
        claim="More negatives (a bigger batch or a MoCo queue) give better representations at the same number of "
              "steps (Chen et al. 2020, fig. 9; He et al. 2020).",
        reproduced=bool(ordered and gain > 0.02), verdict=verdict,
        panels=[Panel("Held-out shape kNN accuracy", "line", steps_x,
                      {f"batch {b}": r.curves["knn_shape"] for b, r in runs.items()}, y_label="kNN accuracy")],
        numbers={f"knn_shape_batch{b}": v for b, v in final.items()},
        setup=f"SimCLR t=0.2, shapes n={PRESET_DATA['n']}, {steps} steps at batch {batches}",
        seconds=sum(r.seconds for r in runs.values()))


def preset_head(progress: Progress = _no_progress, steps: int = PRESET_STEPS) -> PresetResult:
    """SimCLR's projection head: the loss acts on z = g(h), but the encoder output h is the better feature."""
    run = _trained(_shapes_config(steps=steps), progress, 0.0, 0.9, "SimCLR")
    acc = {space: {f: _probe(run.trainer, space, f) for f in ("shape", "colour")} for space in ("encoder",
                                                                                               "projection")}
    progress(1.0, "linear probes done")
    better = all(acc["encoder"][f] > acc["projection"][f] for f in ("shape", "colour"))
    verdict = ("Linear probe, encoder h vs projection z: " +
               "; ".join(f"{f} {acc['encoder'][f]:.2f} vs {acc['projection'][f]:.2f}" for f in ("shape", "colour"))
               + (". The head throws information away, as SimCLR found." if better else
                  ". Not better on every factor at this scale."))
    return PresetResult(
        key="head", title="Encoder beats projection head",
        claim="The representation before the projection head is better than after it on a linear probe, which is "
              "why SimCLR discards the head (Chen et al. 2020, section 4.2).",
        reproduced=bool(better), verdict=verdict,
        panels=[Panel("Linear probe on held-out images", "bar", ["shape", "colour"],
                      {f"{s} output": [acc[s]["shape"], acc[s]["colour"]] for s in acc}, x_label="factor",
                      y_label="accuracy")],
        numbers={f"{s}_{f}": v for s, d in acc.items() for f, v in d.items()},
        setup=f"SimCLR t=0.2, shapes n={PRESET_DATA['n']}, batch 64, {steps} steps; probes on 800 train / 300 "
              "held-out images", seconds=run.seconds)


def preset_shortcut(progress: Progress = _no_progress, steps: int = PRESET_STEPS) -> PresetResult:
    """Shortcut learning: SimCLR's textbook hue jitter (0.1) leaves colour as a shortcut on shapes."""
    full = _shapes_config(steps=steps)
    textbook = replace(full, augment=replace(full.augment, hue=0.1))
    runs = {"hue 0.1 (textbook)": _trained(textbook, progress, 0.0, 0.5, "hue 0.1"),
            "hue 0.5 (full turn)": _trained(full, progress, 0.5, 1.0, "hue 0.5")}
    steps_x = next(iter(runs.values())).steps
    (a, ra), (b, rb) = runs.items()
    sa, sb = ra.curves["knn_shape"], rb.curves["knn_shape"]
    ca, cb = ra.curves["knn_colour"][-1], rb.curves["knn_colour"][-1]
    fixed = sb[-1] > sa[-1] + 0.05
    verdict = (f"Shape kNN {sa[0]:.2f} -> {sa[-1]:.2f} with hue 0.1 and {sb[0]:.2f} -> {sb[-1]:.2f} with a full hue "
               f"turn; colour kNN ends at {ca:.2f} vs {cb:.2f}. Six hues 60 degrees apart survive a 0.1 jitter, so "
               "matching colour is enough to find the other view: " +
               ("the full turn takes the shortcut away." if fixed else "at this scale the fix does not show yet."))
    return PresetResult(
        key="shortcut", title="Shortcut learning: hue 0.1 vs a full turn",
        claim="With SimCLR's textbook hue jitter (0.1) colour stays a shortcut on these shapes and shape kNN does not "
              "improve; a full hue turn removes it (measured in benchmarks/RESULTS.md at full size).",
        reproduced=bool(fixed), verdict=verdict,
        panels=[Panel("Held-out shape kNN accuracy", "line", steps_x,
                      {k: r.curves["knn_shape"] for k, r in runs.items()}, y_label="kNN accuracy"),
                Panel("Held-out colour kNN accuracy", "line", steps_x,
                      {k: r.curves["knn_colour"] for k, r in runs.items()}, y_label="kNN accuracy")],
        numbers={"shape_hue0.1": sa[-1], "shape_hue0.5": sb[-1], "colour_hue0.1": ca, "colour_hue0.5": cb},
        setup=f"SimCLR t=0.2, shapes n={PRESET_DATA['n']}, batch 64, {steps} steps; augment 'shapes' with hue 0.1 "
              "vs 0.5", seconds=ra.seconds + rb.seconds)


PRESETS: dict[str, tuple[str, Callable[..., PresetResult]]] = {
    "temperature": ("1. Temperature: uniformity and hard negatives", preset_temperature),
    "collapse": ("2. No negatives: collapse", preset_collapse),
    "color_jitter": ("3. Colour jitter removes colour", preset_color_jitter),
    "negatives": ("4. More negatives, better kNN", preset_negatives),
    "head": ("5. Encoder beats projection head", preset_head),
    "shortcut": ("6. Shortcut learning: hue 0.1 vs a full turn", preset_shortcut),
    "no_negatives": ("7. No negatives, no collapse: VICReg", preset_no_negatives),
}


def run_preset(key: str, progress: Progress | None = None, **params) -> PresetResult:
    """Run one of :data:`PRESETS` (``progress(fraction, message)`` is called as it goes); times the whole call."""
    if key not in PRESETS:
        raise PlaygroundError(f"Unknown preset {key!r}; choose one of {', '.join(PRESETS)}.")
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        result = PRESETS[key][1](progress or _no_progress, **params)
    result.seconds = time.perf_counter() - t0
    return result
