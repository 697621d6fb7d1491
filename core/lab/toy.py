"""The Loss Lab's toy: points of a few Gaussian classes mapped by a tiny MLP onto the circle (2-D) or the sphere
(3-D), trained with any of :data:`TOY_LOSSES` so a person can watch the embedding move.

:class:`ToyTrainer` has the interface :class:`core.train.Trainer` has for the app's jobs (``run(steps, callbacks,
stop)``, ``default_callbacks()``, ``step()``, ``step_count``, ``cfg.steps``, ``evaluate()``, ``evals``,
``history``), so the runner trains it in a worker like any other trainer.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import losses
from core import settings_schema as SCHEMA
from core.errors import PlaygroundError
from core.lab.anatomy import hardest_negative_share
from core.loop import EvaluateEvery, run_loop
from core.methods import METHODS, TwoViewMethod
from core.metrics import alignment, effective_rank, knn_accuracy, uniformity

# Losses the toy trains with (declared in core.settings_schema); keys are what the page's selectbox stores.
TOY_LOSSES = SCHEMA.TOY_LOSSES
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
if tuple(TOY_LOSS_NAMES) != TOY_LOSSES:  # a developer's error, found at import
    raise RuntimeError("core.lab.TOY_LOSS_NAMES must name exactly core.settings_schema.TOY_LOSSES, in its order.")
TOY_METHODS = {"nt_xent": "simclr", "info_nce": "moco", "triplet": "triplet", "margin": "margin", "supcon": "supcon",
               "vicreg": "vicreg"}
# What the page's knobs apply to, from the methods' traits: the temperature slider, the margin slider.
TOY_USES_TEMPERATURE = tuple(k for k, m in TOY_METHODS.items() if METHODS[m].uses_temperature)
TOY_USES_MARGIN = tuple(k for k, m in TOY_METHODS.items() if METHODS[m].uses_margin)


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


@SCHEMA.declared(SCHEMA.TOY)  # defaults as core.settings_schema declares them (checked at import)
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
        # Bounds and choices as core.settings_schema declares them: a link, a course step and ToyConfig(...) get
        # one sentence for one bad value.
        for name, spec in SCHEMA.TOY.items():
            object.__setattr__(self, name, SCHEMA.check(spec, getattr(self, name), PlaygroundError))

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

