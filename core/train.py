"""One training loop for every contrastive method the app teaches.

``Trainer`` knows nothing about the UI (minGPT style): the app's worker process, a test and a benchmark all
drive the same ``run(steps, callbacks, stop)`` (:mod:`core.loop`). ``step()`` is one optimisation step and
nothing else; evaluation and snapshots are callbacks (:meth:`Trainer.default_callbacks`). What a trainer
records (``history``, ``evals``, ``snapshots``) only ever grows by ``append``.

Methods (one class each in :mod:`core.methods`)
-------
- ``simclr``  NT-Xent over two augmented views (Chen et al. 2020).
- ``moco``    InfoNCE against a FIFO queue of keys from a momentum encoder (He et al. 2020).
- ``triplet`` triplet loss on both views, labels from ``label_factor`` (Schroff et al. 2015).
- ``margin``  margin contrastive loss on view pairs, half same-image, half random (Hadsell et al. 2006).
- ``supcon``  supervised contrastive loss over both views (Khosla et al. 2020).
- ``clip``    image-text contrastive loss with a learnable logit scale (Radford et al. 2021).
- ``vicreg``  invariance + variance + covariance terms, no negatives (Bardes et al. 2022).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from core import losses
from core import settings_schema as SCHEMA
from core.augment import PRESETS as AUGMENT_PRESETS
from core.augment import AugmentConfig, augment, recipe_for
from core.data import OWN_DATA, ImageSet, dataset_identity, describe_identity, heldout_stratify, load_dataset
from core.device import pick_device, resolve_precision, small_blas
from core.embed import EmbeddingSet, embed_imageset
from core.errors import PlaygroundError, TrainingDiverged
from core.files import atomic_write
from core.loop import EvaluateEvery, SnapshotEvery, run_loop
from core.metrics import alignment, effective_rank, knn_accuracies, uniformity
from core.methods import METHODS as METHOD_CLASSES
from core.methods import Method, method_for
from core.methods.clip import LOGIT_SCALE_MAX as _LOGIT_SCALE_MAX
from core.models import ContrastiveModel, EncoderConfig
from core.projection import LIVE_METHODS, live_map
from core.settings_schema import LR_SCHEDULES, MINING, PRECISIONS  # noqa: F401 (public names of core.train)

# The methods' keys in the app's order, and what pages ask of them: derived from the method classes
# (core.methods.METHODS), which are the one place a method's traits are written.
METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)
METHOD_NAMES: dict[str, str] = {k: m.name for k, m in METHOD_CLASSES.items()}
METHOD_HELP: dict[str, str] = {k: m.description for k, m in METHOD_CLASSES.items()}
SUPERVISED: tuple[str, ...] = tuple(k for k, m in METHOD_CLASSES.items() if m.needs_labels)
USES_TEMPERATURE: tuple[str, ...] = tuple(k for k, m in METHOD_CLASSES.items() if m.uses_temperature)
CHECKPOINT_FORMAT = "contrastive-playground/1"
# The default preset ("SimCLR on shapes", the home page's first lesson): DEFAULT_PRESET on this dataset.
DEFAULT_DATASET = SCHEMA.DEFAULT_DATASET

# Bounds and choices of every TrainConfig field are declared once, in core.settings_schema (the app's settings
# table reads the same declaration). A configuration can come from outside (a checkpoint's metadata, a settings
# file, a URL): the bounds keep memory and time bounded whatever it asks for.
_INT_LIMITS: dict[str, tuple[int, int]] = {f: (s.low, s.high) for f, s in SCHEMA.TRAIN.items() if s.kind == "int"}
_FLOAT_LIMITS: dict[str, tuple[float, float, str]] = {
    f: (s.low, s.high, f"between {s.low:g} and {s.high:g}") for f, s in SCHEMA.TRAIN.items() if s.kind == "float"}
_MAX_QUEUE_VALUES = 16 * 1024 * 1024  # queue_size x projection_dim floats (64 MB)


@SCHEMA.declared(SCHEMA.TRAIN)  # defaults, bounds and choices as core.settings_schema declares them
@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; JSON round-trips through ``to_dict``/``from_dict``."""

    method: str = "simclr"
    # fast_cnn: on the default settings it trained 1.43x faster than small_cnn on shapes and reached a higher
    # kNN (benchmarks/quality/bench_defaults.py --archs small_cnn fast_cnn); EncoderConfig's own default stays
    # small_cnn.
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(arch="fast_cnn"))
    projection_dim: int = 64  # overrides encoder.projection_dim so the page has one knob
    batch_size: int = 256
    temperature: float = 0.2  # simclr / moco / supcon; CLIP learns its own (logit scale)
    lr: float = 2e-3  # Adam
    weight_decay: float = 1e-5
    warmup_steps: int = 10  # linear lr warm-up, then constant (users may train past `steps`)
    steps: int = 200
    queue_size: int = 4096  # MoCo: negatives kept from earlier batches
    momentum: float = 0.99  # MoCo: EMA of the key encoder
    margin: float = 0.5  # triplet / margin contrastive, on unit vectors (distances lie in [0, 2])
    mining: str = "semihard"  # triplet: all | hard | semihard
    label_factor: str | None = None  # supervised methods: which factor is the label (None: the first)
    augment: AugmentConfig | None = None  # None: the dataset's recipe (core.augment.recipe_for), fixed by Trainer
    seed: int = 0
    snapshot_every: int = 10
    eval_every: int = 25
    probe_size: int = 400  # fixed held-out images shown in the live 2-D view and timeline
    heldout_fraction: float = 0.2
    knn_k: int = 10
    lr_schedule: str = "constant"  # after warm-up: "constant" | "cosine" (to 10% of lr at `steps`, then flat)
    # "fp32" | "bf16" (torch.autocast around the forward pass and the loss) | "auto" (bf16 on CPUs where it measured
    # faster: core.device.resolve_precision; the Train page's default)
    precision: str = "fp32"
    knn_reference: int = 2000  # training images embedded as the kNN reference set at each evaluation
    # clip only: an open_clip model config from core.clip.TRAINABLE_CONFIGS (e.g. "mini-rn") to train as one
    # open_clip CLIP that core.clip.export_local_dir can save as a local-dir; None: encoder + TextTransformer.
    clip_model: str | None = None
    map_method: str = "tsne"  # the live 2-D map (core.projection.live_map): "tsne" | "umap" | "pca"

    def __post_init__(self) -> None:
        if self.map_method not in LIVE_METHODS:
            raise ValueError(f"Unknown map_method {self.map_method!r}; choose one of {', '.join(LIVE_METHODS)}.")
        for name, spec in SCHEMA.TRAIN.items():  # bounds and choices: one sentence, as a link or a file gets
            object.__setattr__(self, name, SCHEMA.check(spec, getattr(self, name)))
        if not isinstance(self.encoder, EncoderConfig):
            raise ValueError("encoder must be an EncoderConfig.")
        if self.augment is not None and not isinstance(self.augment, AugmentConfig):
            raise ValueError("augment must be an AugmentConfig, or None for the dataset's recipe.")
        if self.label_factor is not None and (not isinstance(self.label_factor, str) or len(self.label_factor) > 64):
            raise ValueError("label_factor must be the name of one of the dataset's factors.")
        if self.queue_size * self.projection_dim > _MAX_QUEUE_VALUES:
            raise ValueError(f"A MoCo queue of {self.queue_size:,} keys of size {self.projection_dim} is too large "
                             f"for this server; keep queue_size x projection_dim under {_MAX_QUEUE_VALUES:,}.")
        if self.clip_model is not None:
            from core.clip import TRAINABLE_CONFIGS

            if self.clip_model not in TRAINABLE_CONFIGS:
                raise ValueError(f"clip_model = {self.clip_model!r} is not allowed; it must be one of "
                                 f"{', '.join(TRAINABLE_CONFIGS)} (or None).")

    @property
    def encoder_config(self) -> EncoderConfig:
        return replace(self.encoder, projection_dim=self.projection_dim)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["encoder"] = self.encoder.to_dict()
        d["augment"] = self.augment.to_dict() if self.augment is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError("A training configuration must be a JSON object.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown training settings: {', '.join(unknown)}.")
        d = dict(d)
        if "encoder" in d and not isinstance(d["encoder"], EncoderConfig):
            d["encoder"] = EncoderConfig.from_dict(d["encoder"])
        if d.get("augment") is not None and not isinstance(d["augment"], AugmentConfig):
            d["augment"] = AugmentConfig.from_dict(d["augment"])
        try:
            return cls(**d)
        except TypeError as err:  # e.g. a string where a number belongs
            raise ValueError(f"Invalid training configuration: {err}.") from None


def default_preset() -> "TrainConfig":
    """SimCLR on the built-in shapes with the augmentations that make it learn shape (augment PRESETS["shapes"])."""
    return TrainConfig(augment=AUGMENT_PRESETS["shapes"], steps=300)


@dataclass
class StepRecord:
    step: int
    loss: float
    lr: float
    logit_scale: float | None
    seconds: float  # cumulative active training time (steps, evaluations, snapshots), pauses excluded


@dataclass
class EvalRecord:
    step: int
    knn: dict[str, float]  # held-out kNN accuracy per factor
    alignment: float  # Wang & Isola, positive pairs (lower is better)
    uniformity: float  # Wang & Isola, t=2 (lower is more uniform)
    pos_sims: np.ndarray  # cosine similarity of the two views of each probe image
    neg_sims: np.ndarray  # cosine similarity between views of different probe images (subsampled)
    seconds: float = 0.0
    effective_rank: float = float("nan")  # of the probe's projections (Roy & Vetterli 2007); ~1 means collapse


@dataclass
class Snapshot:
    step: int
    vectors: np.ndarray  # (probe, projection_dim) projection-head outputs, the vectors the map is made of
    coords: np.ndarray  # (probe, 2) what the page draws: cfg.map_method's live_map, following the previous snapshot


# Collapse: different images as similar as two views of one image, and all of them close together. Checked from
# this step on (an untrained encoder's first outputs are very alike), measured on the probe set's two views.
_COLLAPSE_MIN_STEP = 10
_COLLAPSE_GAP = 0.05  # mean positive minus mean negative cosine similarity below this ...
_COLLAPSE_NEG = 0.9  # ... while negatives average above this


def collapse_reason(record: EvalRecord) -> str | None:
    """A sentence saying how the embedding collapsed at this evaluation, or None when it did not.

    The thresholds sit between the two regimes seen on the built-in shapes early in training: a healthy run keeps
    a clear gap between its positive and negative similarities with negatives well below 1, while a collapsed one
    (SimCLR, MoCo or CLIP-style training at temperature 0.001 and learning rate 0.1) has almost no gap, every
    negative near 1 and its loss stuck at ln N.
    """
    if len(record.pos_sims) == 0 or len(record.neg_sims) == 0:
        return None
    pos, neg = float(np.mean(record.pos_sims)), float(np.mean(record.neg_sims))
    if pos - neg < _COLLAPSE_GAP and neg > _COLLAPSE_NEG:
        return (f"the embedding collapsed: different images are as similar as two views of one image "
                f"(mean cosine similarity {neg:.2f} against {pos:.2f}), so the loss can no longer tell them apart")
    return None


class Trainer:
    """Train a :class:`ContrastiveModel` on an :class:`ImageSet` with one of :data:`METHODS`.

    >>> from core.data import load_dataset
    >>> t = Trainer(TrainConfig(batch_size=32, steps=3), load_dataset("shapes", n=200))
    >>> len(t.run())
    3
    """

    def __init__(self, cfg: TrainConfig, dataset: ImageSet, *, device: torch.device | str | None = None):
        if cfg.augment is None:  # the dataset's own recipe, written into the config so checkpoints record it
            cfg = replace(cfg, augment=recipe_for(dataset.name))
        self.cfg = cfg
        self.dataset = dataset
        self.device = torch.device(device) if device is not None else pick_device()
        self.precision = resolve_precision(cfg.precision, self.device)  # what "auto" means on this device
        self._lock = threading.RLock()
        self.label_factor = cfg.label_factor or dataset.factors[0]
        if self.label_factor not in dataset.labels:
            raise PlaygroundError(
                f"The dataset {dataset.name!r} has no factor {self.label_factor!r}; "
                f"it has {', '.join(dataset.factors)}."
            )
        self.method: Method = method_for(cfg.method)  # the method's class: its traits, state and loss
        if self.method.needs_captions and not dataset.captions:
            raise PlaygroundError(
                f"{self.method.name} training needs captions, and {dataset.name!r} has none; use 'shapes' "
                "or a CSV/JSONL of images with captions."
            )
        if len(dataset) < 20:
            raise PlaygroundError(f"{dataset.name!r} has only {len(dataset)} images; training needs at least 20.")

        self.train_set, self.heldout = dataset.split(cfg.heldout_fraction, seed=cfg.seed,
                                                     stratify=heldout_stratify(dataset))
        self.batch_size = min(cfg.batch_size, len(self.train_set))
        g = np.random.default_rng(cfg.seed)
        self.probe = self.heldout.subset(np.sort(g.permutation(len(self.heldout))[: cfg.probe_size]))
        n_ref = min(cfg.knn_reference, len(self.train_set))
        self._knn_ref = self.train_set.subset(np.sort(g.permutation(len(self.train_set))[:n_ref]))

        # What a method may add (core.methods): MoCo's key encoder and queue, CLIP's text tower and logit scale.
        self.clip = None  # clip with cfg.clip_model: the open_clip CLIP whose two towers are trained
        self.text_model: nn.Module | None = None
        self.logit_scale: nn.Parameter | None = None
        self.key_model: ContrastiveModel | None = None
        self.queue: losses.FeatureQueue | None = None
        # Model init under its own seed, leaving the caller's global RNG untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model: ContrastiveModel = self.method.build_encoder(self)
            self.method.setup(self)

        # fused: one kernel for all parameters instead of a loop of small ops per parameter (on the CPU 0.32 against
        # 0.99 ms an optimizer step for the lesson's encoder, ~3% of its training step;
        # benchmarks/speed/bench_train_step.py --part optimizer)
        fused = {"fused": True} if self.device.type in _FUSED_ADAMW_DEVICES else {}
        self.optimizer = torch.optim.AdamW(self.method.param_groups(self), lr=cfg.lr, **fused)

        # Training images live on the device as uint8 (4000 x 3 x 32 x 32 is 12 MB).
        self._images = self.train_set.images.to(self.device)
        self._labels = torch.as_tensor(self.train_set.labels[self.label_factor], device=self.device)
        self._gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self._aug_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        self._probe_gen_seed = cfg.seed + 2
        self._probe_views: tuple[torch.Tensor, torch.Tensor] | None = None  # drawn once: see _fixed_probe_views
        # Hooks for core.distributed (no-ops in one process): the modules the loss runs through (DDP wrappers
        # under torchrun), a gather of every rank's rows with gradient, and (rank, world size) of the shard.
        self.forward_model: nn.Module = self.model
        self.forward_text: nn.Module | None = self.text_model
        self.gather: Callable[[torch.Tensor], torch.Tensor] = _local_rows
        self.shard: tuple[int, int] = (0, 1)

        self.step_count = 0
        self.seconds = 0.0
        self.history: list[StepRecord] = []
        self.evals: list[EvalRecord] = []
        self.snapshots: list[Snapshot] = []
        self.diverged: str | None = None

    # ------------------------------------------------------------------ training
    @property
    def current_logit_scale(self) -> float | None:
        if self.logit_scale is None:
            return None
        return float(self.logit_scale.detach().exp().clamp(max=_LOGIT_SCALE_MAX))

    def _lr_at(self, step: int) -> float:
        if self.cfg.warmup_steps and step < self.cfg.warmup_steps:
            return self.cfg.lr * (step + 1) / self.cfg.warmup_steps
        if self.cfg.lr_schedule == "cosine":
            # Cosine decay (Loshchilov & Hutter 2017) from lr to 10% of it at cfg.steps; flat afterwards.
            span = max(self.cfg.steps - self.cfg.warmup_steps, 1)
            t = min(max(step - self.cfg.warmup_steps, 0) / span, 1.0)
            return self.cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))
        return self.cfg.lr

    def _sample(self) -> torch.Tensor:
        # One global draw on every rank (same generator), each rank training on its own slice of it.
        rank, world = self.shard
        idx = torch.randperm(len(self.train_set), generator=self._gen)[: self.batch_size * world]
        return idx[rank * self.batch_size:(rank + 1) * self.batch_size].to(self.device)

    def _views(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The method's ``views`` augmented views of the batch ``x``, drawn one after the other."""
        return tuple(augment(x, self.cfg.augment, self._aug_gen) for _ in range(self.method.views))

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self, idx: torch.Tensor) -> torch.Tensor:
        return self.method.loss(self, idx, self._views(self._images[idx]))

    def _captions(self, rows: np.ndarray) -> list[str]:
        """One caption per image, drawn from its caption pool when it has one (prompt variety)."""
        ds = self.train_set
        texts = []
        for i in rows:
            pool = ds.caption_pool[i] if ds.caption_pool else None
            if pool:
                j = int(torch.randint(len(pool), (1,), generator=self._gen))
                texts.append(pool[j])
            else:
                texts.append(ds.captions[i])
        return texts

    def step(self) -> StepRecord:
        """One optimisation step, nothing else: evaluations and snapshots are :meth:`run`'s callbacks
        (:meth:`default_callbacks`). Raises :class:`TrainingDiverged` if the loss or gradients blow up."""
        with self._lock:
            if self.diverged:
                raise TrainingDiverged(self.diverged)
            t0 = time.perf_counter()
            self.model.train()
            if self.text_model is not None:
                self.text_model.train()
            lr = self._lr_at(self.step_count)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self._autocast():
                loss = self._loss(self._sample()).float()
            if not torch.isfinite(loss):
                self._diverge(f"the loss became {loss.item()}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], max_norm=float("inf")
            )
            if not torch.isfinite(grad_norm):
                self._diverge("the gradients became infinite")
            self.optimizer.step()
            self.method.after_step(self)
            self.step_count += 1
            self.seconds += time.perf_counter() - t0
            record = StepRecord(self.step_count, loss.item(), lr, self.current_logit_scale, self.seconds)
            self.history.append(record)
            return record

    def _hint(self) -> str:
        if self.method.uses_temperature and self.cfg.temperature < 0.02:
            return f"The temperature {self.cfg.temperature:g} is very low; try 0.1–0.5."
        if self.cfg.lr >= 0.02:
            return f"The learning rate {self.cfg.lr:g} is high; try 0.002."
        return f"Try a smaller learning rate than {self.cfg.lr:g}, or stronger augmentations."

    def _diverge(self, what: str, *, at_step: int | None = None) -> None:
        step = self.step_count + 1 if at_step is None else at_step
        self.diverged = f"Training stopped at step {step}: {what}. {self._hint()}"
        raise TrainingDiverged(self.diverged)

    def _stop_if_collapsed(self) -> None:
        """Stop when two evaluations in a row find the embedding collapsed (see :func:`collapse_reason`).

        Collapse does not show as NaN: the loss sits flat (near ln(2N - 1) for NT-Xent) while every image maps
        to nearly the same point, so it is checked from the evaluations' pair similarities instead.
        """
        recent = [e for e in self.evals if e.step >= _COLLAPSE_MIN_STEP][-2:]
        if len(recent) == 2 and all(collapse_reason(e) for e in recent):
            self._diverge(collapse_reason(recent[-1]), at_step=recent[-1].step)

    def default_callbacks(self) -> list:
        """What the app, the CLI and the benchmarks run with: a snapshot before the first step and every
        ``cfg.snapshot_every`` steps; an evaluation after step 1, every ``cfg.eval_every`` steps and at the end
        of a finished run."""
        return [SnapshotEvery(self.cfg.snapshot_every), EvaluateEvery(self.cfg.eval_every)]

    def run(
        self,
        steps: int | None = None,
        callbacks: Sequence[object] | None = None,
        stop: threading.Event | Callable[[], bool] | None = None,
    ) -> list[StepRecord]:
        """Run ``steps`` steps (default: until ``cfg.steps`` in total) through :func:`core.loop.run_loop`.

        ``callbacks``: objects with optional ``on_run_start(trainer)``, ``on_step(trainer, record)`` and
        ``on_run_end(trainer, finished)``; None means :meth:`default_callbacks` (pass ``[]`` for bare steps).
        ``stop`` (an Event or a callable) is checked before each step."""
        target = steps if steps is not None else max(self.cfg.steps - self.step_count, 0)
        return run_loop(self, target, self.default_callbacks() if callbacks is None else callbacks, stop)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvalRecord:
        """kNN accuracy per factor on the held-out split, alignment/uniformity and pair similarities; appended to
        ``evals``. Raises :class:`TrainingDiverged` when this and the previous evaluation find the embedding
        collapsed."""
        with self._lock:
            t0 = time.perf_counter()
            with small_blas():  # the effective rank's SVD must not leave BLAS workers spinning on torch's cores
                record = self._evaluate_now()
            self.seconds += time.perf_counter() - t0
            self._stop_if_collapsed()
            return record

    def _evaluate_now(self) -> EvalRecord:
        model = self.model
        ref = self._features(self._knn_ref)
        test = self._features(self.heldout)
        factors = self.dataset.factors  # one neighbour search, one vote per factor
        knn = knn_accuracies(ref, {f: self._knn_ref.labels[f] for f in factors}, test,
                             {f: self.heldout.labels[f] for f in factors}, k=self.cfg.knn_k)
        # Two fixed augmented views of the probe set, in projection space (where the loss acts).
        v1, v2 = self._fixed_probe_views()
        z1 = model.embed(v1, space="projection", normalize=True)
        z2 = model.embed(v2, space="projection", normalize=True)
        pos, neg = losses.positive_negative_similarities(z1, z2)
        if len(neg) > 5000:
            neg = np.random.default_rng(0).choice(neg, 5000, replace=False)
        record = EvalRecord(
            step=self.step_count,
            knn=knn,
            alignment=float(alignment(z1, z2)),
            uniformity=float(uniformity(z1)),
            effective_rank=float(effective_rank(z1)),
            pos_sims=np.asarray(pos, dtype=np.float32),
            neg_sims=np.asarray(neg, dtype=np.float32),
            seconds=self.seconds,
        )
        self.evals.append(record)
        return record

    def _fixed_probe_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The probe set's two augmented views that every evaluation measures alignment, uniformity and the pair
        similarities on: the same two at every step (their own seeded generator), so drawn once and kept rather than
        augmented again at each evaluation. Shape: two (probe_size, C, H, W) float tensors on the trainer's device;
        2 x 400 x 3 x 24 x 24 floats is 5.5 MB, and views larger than :data:`_PROBE_VIEWS_KEPT_BYTES` are drawn again each time instead of kept."""
        views = self._probe_views
        if views is None:
            gen = torch.Generator(device="cpu").manual_seed(self._probe_gen_seed)
            x = self.probe.images.to(self.device)
            views = (augment(x, self.cfg.augment, gen), augment(x, self.cfg.augment, gen))
            if 2 * views[0].nelement() * views[0].element_size() <= _PROBE_VIEWS_KEPT_BYTES:
                self._probe_views = views
        return views

    def _features(self, imageset: ImageSet, space: str = "encoder") -> np.ndarray:
        x = imageset.images.to(self.device)
        return self.model.embed(x, space=space).float().cpu().numpy()

    def snapshot(self) -> Snapshot:
        """The probe set's projection vectors and their live 2-D map (:func:`core.projection.live_map`, following
        the previous snapshot); appended to ``snapshots``."""
        with self._lock:
            t0 = time.perf_counter()
            snap = self._snapshot()
            self.seconds += time.perf_counter() - t0
            return snap

    def _snapshot(self) -> Snapshot:
        # the projection space: what the loss organises, and where the probe's shape neighbourhoods are purest
        vectors = self._features(self.probe, space="projection")
        with small_blas():
            previous = self.snapshots[-1].coords if self.snapshots else None
            coords = live_map(vectors, previous, method=self.cfg.map_method, seed=self.cfg.seed)
        snap = Snapshot(self.step_count, vectors, np.asarray(coords, dtype=np.float32))
        self.snapshots.append(snap)
        return snap

    def embeddings(self, imageset: ImageSet | None = None, *, space: str = "encoder") -> EmbeddingSet:
        """Embed ``imageset`` (default: the held-out split) with the current model."""
        with self._lock:
            emb = embed_imageset(self.model, imageset or self.heldout, space=space, device=self.device)
        emb.source = f"{self.describe()}, {space} space"
        return emb

    def describe(self) -> str:
        return (
            f"{self.method.name} · {self.cfg.clip_model or self.cfg.encoder.arch} on {self.dataset.name}, "
            f"step {self.step_count}"
        )

    # ------------------------------------------------------------------ checkpoints
    def _tensors(self) -> dict[str, torch.Tensor]:
        """Everything a resumed run needs, as named tensors (safetensors holds tensors and strings only)."""
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update(self.method.checkpoint_tensors(self))  # e.g. MoCo's key.* and queue.buffer, CLIP's text.*
        # AdamW's moments and step per parameter: a resumed run continues the same optimisation.
        for pid, state in self.optimizer.state_dict()["state"].items():
            for name, value in state.items():
                if isinstance(value, torch.Tensor):
                    out[f"optim.{pid}.{name}"] = value
        # Where the batch sampler and the augmentation draws are, so step k + 1 draws what it would have drawn.
        out["rng.sample"], out["rng.augment"] = self._gen.get_state(), self._aug_gen.get_state()
        if self.evals:  # the last evaluation's similarity histograms, so the resumed page shows them
            out["eval.pos_sims"] = torch.from_numpy(np.ascontiguousarray(self.evals[-1].pos_sims))
            out["eval.neg_sims"] = torch.from_numpy(np.ascontiguousarray(self.evals[-1].neg_sims))
        # Copies: safetensors refuses tensors that share storage.
        return {k: v.detach().to("cpu").clone().contiguous() for k, v in out.items()}

    def _state_meta(self) -> dict[str, str]:
        opt = self.optimizer.state_dict()
        meta = {
            # Which moments each parameter has; the hyper-parameters come from the config, never from the file.
            "optimizer": json.dumps({"state": {str(pid): sorted(st) for pid, st in opt["state"].items()}}),
            "evals": json.dumps([{"step": e.step, "knn": e.knn, "alignment": e.alignment,
                                  "uniformity": e.uniformity, "seconds": e.seconds} for e in self.evals]),
        }
        meta.update(self.method.checkpoint_meta(self))
        return meta

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.safetensors`` checkpoint (config, dataset spec, history, optimiser and RNG state) and a
        ``.json`` sidecar with the same config. Both are written to a temp file and renamed, so a crash
        never leaves half a file. :meth:`load` resumes the run exactly where it stopped."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        with self._lock:
            tensors = self._tensors()
            meta = {
                "format": CHECKPOINT_FORMAT,
                "config": json.dumps(self.cfg.to_dict()),
                "dataset": json.dumps(dataset_identity(self.dataset)),  # a built-in's spec or a fingerprint
                "step": str(self.step_count),
                "seconds": repr(self.seconds),
                "history": json.dumps([asdict(r) for r in self.history]),
                **self._state_meta(),
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        sidecar = {k: json.loads(meta[k]) for k in ("config", "dataset", "step")}
        sidecar["format"] = CHECKPOINT_FORMAT
        atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2)))
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, dataset: ImageSet | None = None, *, device: torch.device | str | None = None
    ) -> "Trainer":
        """Rebuild a trainer from :meth:`save`'s file, ready to continue training. Only safetensors is read.

        The file is untrusted input: its settings are bounds-checked (:class:`TrainConfig`) and its dataset may
        only name a built-in offline dataset within :data:`CHECKPOINT_DATASET_LIMITS` — never a path or a
        download. When it names anything else and ``dataset`` is None, :class:`CheckpointNeedsDataset` asks
        the caller to choose the data. Every tensor's name and shape is checked against the model the settings
        describe before any tensor is read.
        """
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != CHECKPOINT_FORMAT:
                    raise PlaygroundError(
                        f"{path.name} is a safetensors file but not a Contrastive Playground checkpoint.")
                try:
                    cfg = TrainConfig.from_dict(json.loads(meta["config"]))
                    spec = json.loads(meta.get("dataset", "null"))
                    history = [StepRecord(**r) for r in json.loads(meta.get("history", "[]"))]
                    step = int(meta.get("step", 0))
                    seconds = float(meta.get("seconds", 0.0))
                except (KeyError, TypeError, json.JSONDecodeError, ValueError) as err:
                    raise PlaygroundError(f"The checkpoint's settings could not be read: {err}") from None
                if not 0 <= step <= _INT_LIMITS["steps"][1] * 10 or not math.isfinite(seconds):
                    raise PlaygroundError("The checkpoint's step count or time is out of range.")
                if dataset is None:
                    dataset = load_dataset(*checkpoint_dataset(spec, path.name))
                trainer = cls(cfg, dataset, device=device)
                expected = {k: tuple(v.shape) for k, v in trainer._tensors().items()
                            if not k.startswith(("optim.", "eval."))}
                for k in ("rng.sample", "rng.augment"):  # optional: checkpoints written before resume existed
                    if k not in f.keys():
                        expected.pop(k)
                found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
                trainer._check_shapes(expected, found, meta)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except PlaygroundError:
            raise
        except Exception as err:  # safetensors raises its own error types for any malformed header
            raise PlaygroundError(
                f"{path.name} is not a readable safetensors checkpoint ({type(err).__name__}).") from None
        try:
            trainer._load_tensors(tensors, meta)
        except (RuntimeError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
            raise PlaygroundError(f"The checkpoint's weights do not fit its own settings: {err}") from None
        trainer.step_count = step
        trainer.seconds = seconds
        trainer.history = history
        trainer.snapshots = []
        trainer._snapshot()
        return trainer

    def _check_shapes(self, expected: dict[str, tuple], found: dict[str, tuple], meta: dict[str, str]) -> None:
        missing = sorted(set(expected) - set(found))
        if missing:
            raise PlaygroundError(f"The checkpoint lacks {len(missing)} tensors its settings need "
                                  f"(e.g. {missing[0]}).")
        wrong = [k for k in expected if found[k] != expected[k]]
        if wrong:
            k = wrong[0]
            raise PlaygroundError(f"The checkpoint's tensor {k} has shape {list(found[k])}, but its settings "
                                  f"describe {list(expected[k])}.")
        params = {str(i) for i, _ in enumerate(p for g in self.optimizer.param_groups for p in g["params"])}
        extra = [k for k in found if k not in expected and not (
            k.split(".")[0] == "optim" and k.count(".") == 2 and k.split(".")[1] in params
            and k.split(".")[2] in ("step", "exp_avg", "exp_avg_sq")
            and found[k] in ((), tuple(self._param_shape(int(k.split(".")[1]))))
        ) and k not in ("eval.pos_sims", "eval.neg_sims")]
        if extra:
            raise PlaygroundError(f"The checkpoint holds {len(extra)} tensors this app does not expect "
                                  f"(e.g. {extra[0]}).")
        for k in ("eval.pos_sims", "eval.neg_sims"):
            if k in found and (len(found[k]) != 1 or found[k][0] > 100_000):
                raise PlaygroundError(f"The checkpoint's {k} has an unexpected shape {list(found[k])}.")

    def _param_shape(self, index: int) -> torch.Size:
        return [p for g in self.optimizer.param_groups for p in g["params"]][index].shape

    def _load_tensors(self, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
        meta = meta or {}

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.model.load_state_dict(part("model."))
        self.method.load_checkpoint(self, tensors, meta)
        if "optimizer" in meta:
            saved = json.loads(meta["optimizer"])
            state = {int(pid): {name: tensors[f"optim.{pid}.{name}"] for name in names}
                     for pid, names in saved["state"].items()}
            groups = self.optimizer.state_dict()["param_groups"]  # ours: lr, betas, decay from the config
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        for key, gen in (("rng.sample", self._gen), ("rng.augment", self._aug_gen)):
            if key in tensors:
                gen.set_state(tensors[key])
        for e in json.loads(meta.get("evals", "[]")):
            self.evals.append(EvalRecord(step=int(e["step"]), knn={str(k): float(v) for k, v in e["knn"].items()},
                                         alignment=float(e["alignment"]), uniformity=float(e["uniformity"]),
                                         pos_sims=np.zeros(0, np.float32), neg_sims=np.zeros(0, np.float32),
                                         seconds=float(e.get("seconds", 0.0))))
        if self.evals and "eval.pos_sims" in tensors:
            self.evals[-1].pos_sims = tensors["eval.pos_sims"].float().numpy()
            self.evals[-1].neg_sims = tensors["eval.neg_sims"].float().numpy()


class CheckpointNeedsDataset(PlaygroundError):
    """The checkpoint names data this server will not rebuild from a file (a path, a download): pick the data."""


# What a checkpoint from outside may ask the server to build: built-in offline datasets within the app's own
# ranges. Never a path on this server's disk, never a download (root folder or URL).
CHECKPOINT_DATASET_LIMITS: dict[str, dict[str, tuple[int, int]]] = {
    "shapes": {"n": (20, 50_000), "size": (8, 64), "seed": (0, 2**31 - 1)},
    "digits": {"n": (20, 1797), "size": (8, 64)},
    "photos": {"size": (8, 256)},
}


def checkpoint_dataset(spec: object, filename: str = "the checkpoint") -> tuple[str, dict[str, int]]:
    """(name, options) of the built-in dataset a checkpoint's metadata asks for, checked against
    :data:`CHECKPOINT_DATASET_LIMITS`. Raises :class:`CheckpointNeedsDataset` for anything else."""
    name = spec.get("name") if isinstance(spec, dict) else None
    opts = spec.get("options", {}) if isinstance(spec, dict) else None
    if name == OWN_DATA:  # the user's own images, named by content: only the user can give them back
        raise CheckpointNeedsDataset(f"{filename} was trained on {describe_identity(spec)}. Provide that data "
                                     "to continue it (or choose other data, knowing it is different).")
    limits = CHECKPOINT_DATASET_LIMITS.get(name) if isinstance(name, str) else None
    shown = name if isinstance(name, str) and len(name) < 40 and name.isidentifier() else "data it does not name"
    if limits is None or not isinstance(opts, dict):
        raise CheckpointNeedsDataset(
            f"{filename} was trained on {shown!s}, which a checkpoint cannot ask this server to load (only the "
            f"built-in {', '.join(CHECKPOINT_DATASET_LIMITS)} can be). Choose the data to continue on, then load "
            "it again.")
    clean: dict[str, int] = {}
    for key, value in opts.items():
        if key not in limits or isinstance(value, bool) or not isinstance(value, int) \
                or not limits[key][0] <= value <= limits[key][1]:
            allowed = ", ".join(f"{k} {lo:,}–{hi:,}" for k, (lo, hi) in limits.items())
            raise CheckpointNeedsDataset(
                f"{filename} asks for {name} with {key}={value!r}; a checkpoint may only ask for {allowed}. "
                "Choose the data to continue on, then load it again.")
        clean[key] = value
    return name, clean


# Devices whose AdamW has a fused kernel in every torch this project supports (MPS got its own later).
_FUSED_ADAMW_DEVICES = ("cpu", "cuda")
# A trainer keeps its probe's two evaluation views up to this size (the lesson's: 5.5 MB; ten sessions of the largest
# settings, 5,000 probe images of 64 px, would otherwise hold ~490 MB each for their whole life).
_PROBE_VIEWS_KEPT_BYTES = 32 << 20


def _local_rows(x: torch.Tensor) -> torch.Tensor:
    return x
