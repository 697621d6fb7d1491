"""One training loop for every contrastive method the app teaches.

``Trainer`` knows nothing about the UI (minGPT style): the Streamlit page, a test and a benchmark all
drive the same ``step()`` / ``run(on_step=...)``. A step is safe to call from a background thread;
what it records (``history``, ``evals``, ``snapshots``) only ever grows by ``append``, so a reader in
another thread sees a consistent prefix.

Methods
-------
- ``simclr``  NT-Xent over two augmented views (Chen et al. 2020).
- ``moco``    InfoNCE against a FIFO queue of keys from a momentum encoder (He et al. 2020).
- ``triplet`` triplet loss on one view, labels from ``label_factor`` (Schroff et al. 2015).
- ``margin``  margin contrastive loss on view pairs, half same-image, half random (Hadsell et al. 2006).
- ``supcon``  supervised contrastive loss over both views (Khosla et al. 2020).
- ``clip``    image-text contrastive loss with a learnable logit scale (Radford et al. 2021); the text
              tower is open_clip's ``TextTransformer`` with its own BPE tokenizer, sized for captions.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import tempfile
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core import losses
from core.augment import PRESETS as AUGMENT_PRESETS
from core.augment import AugmentConfig, augment, recipe_for
from core.data import ImageSet, load_dataset
from core.device import pick_device, resolve_precision, small_blas, torch_threads
from core.embed import EmbeddingSet, embed_imageset
from core.errors import PlaygroundError, TrainingDiverged
from core.metrics import alignment, effective_rank, knn_accuracies, uniformity
from core.models import ContrastiveModel, EncoderConfig, build_model, momentum_copy, momentum_update
from core.projection import LIVE_METHODS, live_map

METHODS = ("simclr", "moco", "triplet", "margin", "supcon", "clip")
METHOD_NAMES = {
    "simclr": "SimCLR (NT-Xent)",
    "moco": "MoCo (InfoNCE + queue)",
    "triplet": "Triplet",
    "margin": "Margin contrastive",
    "supcon": "SupCon",
    "clip": "CLIP-style (image-text)",
}
SUPERVISED = ("triplet", "margin", "supcon")
# Methods whose loss draws nothing at random after the batch and its two views, so the next step's batch can be
# drawn ahead of time (Trainer.views_ahead) without changing what any step draws.
AHEAD_METHODS = ("simclr", "supcon", "triplet")
MINING = ("all", "hard", "semihard")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16", "auto")  # auto: core.device.resolve_precision
CHECKPOINT_FORMAT = "contrastive-playground/1"
# The default preset ("SimCLR on shapes", the home page's first lesson): DEFAULT_PRESET on this dataset.
DEFAULT_DATASET = {"name": "shapes", "options": {"n": 5000, "size": 32, "seed": 0}}

# Text tower for the CLIP-style method: tiny, because captions are short and the machine is a CPU.
_TEXT_CONTEXT = 16
_TEXT_WIDTH = 128
_TEXT_LAYERS = 2
_TEXT_HEADS = 4
_LOGIT_SCALE_INIT = 1 / 0.07  # CLIP's initial temperature 0.07
_LOGIT_SCALE_MAX = 100.0  # CLIP clamps the learned multiplier here so training stays stable
# MoCo's shuffling BatchNorm on one device: the batch is run through each encoder in this many sub-batches, the
# key encoder's in a shuffled order, so a query and its key never share BatchNorm statistics (He et al. 2020,
# section 3.3; the single-device form of the split-batch substitute that Chen et al. 2020 describe for SimCLR's
# global BN).
MOCO_BN_SPLITS = 2

# Upper and lower bounds for every number in a TrainConfig. A configuration can come from outside (a checkpoint's
# metadata, a settings file, a URL): these keep memory and time bounded whatever it asks for.
_INT_LIMITS: dict[str, tuple[int, int]] = {
    "batch_size": (4, 1024),
    "projection_dim": (2, 1024),
    "warmup_steps": (0, 10_000),
    "steps": (1, 100_000),
    "queue_size": (0, 65_536),
    "snapshot_every": (1, 10**9),  # large values switch snapshots / evaluations off; they allocate nothing
    "eval_every": (1, 10**9),
    "probe_size": (10, 5_000),
    "knn_k": (1, 200),
    "knn_reference": (10, 20_000),
    "seed": (0, 2**31 - 1),
}
_FLOAT_LIMITS: dict[str, tuple[float, float, str]] = {  # inclusive, except where the text says otherwise
    "temperature": (1e-4, 10.0, "between 0.0001 and 10"),
    "lr": (1e-7, 1.0, "between 1e-07 and 1"),
    "weight_decay": (0.0, 1.0, "between 0 and 1"),
    "momentum": (0.0, 0.9999, "between 0 and 0.9999"),
    "margin": (0.0, 2.0, "between 0 and 2 (distances between unit vectors lie in [0, 2])"),
    "heldout_fraction": (0.01, 0.9, "between 0.01 and 0.9"),
}
_MAX_QUEUE_VALUES = 16 * 1024 * 1024  # queue_size x projection_dim floats (64 MB)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; JSON round-trips through ``to_dict``/``from_dict``."""

    method: str = "simclr"
    # fast_cnn: on the default settings it trained 1.43x faster than small_cnn on shapes and reached a higher
    # kNN (benchmarks/bench_defaults.py --archs small_cnn fast_cnn); EncoderConfig's own default stays small_cnn.
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
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if self.map_method not in LIVE_METHODS:
            raise ValueError(f"Unknown map_method {self.map_method!r}; choose one of {', '.join(LIVE_METHODS)}.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.mining not in MINING:
            raise ValueError(f"Unknown mining {self.mining!r}; choose one of {', '.join(MINING)}.")
        if not isinstance(self.encoder, EncoderConfig):
            raise ValueError("encoder must be an EncoderConfig.")
        if self.augment is not None and not isinstance(self.augment, AugmentConfig):
            raise ValueError("augment must be an AugmentConfig, or None for the dataset's recipe.")
        if self.label_factor is not None and (not isinstance(self.label_factor, str) or len(self.label_factor) > 64):
            raise ValueError("label_factor must be the name of one of the dataset's factors.")
        for name, (low, high) in _INT_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be a whole number; got {value!r}.")
            if not low <= value <= high:
                raise ValueError(f"{name} = {value} is not allowed; it must be between {low:,} and {high:,}.")
            object.__setattr__(self, name, int(value))
        for name, (low, high, allowed) in _FLOAT_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(value)) or not low <= float(value) <= high:
                raise ValueError(f"{name} = {value!r} is not allowed; it must be {allowed}.")
            object.__setattr__(self, name, float(value))
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

    Measured here on 1,000 shapes at step 10-40: healthy SimCLR runs have a positive-negative gap of 0.15-0.5 and
    negatives averaging 0.3-0.8; temperature 0.001 with learning rate 0.1 gave a gap of 0.001-0.03 with negatives
    at 0.95-0.998 for SimCLR, MoCo and CLIP-style training (whose loss then sat at ln N).
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
        if cfg.method == "clip" and not dataset.captions:
            raise PlaygroundError(
                f"CLIP-style training needs captions, and {dataset.name!r} has none; use 'shapes' "
                "or a CSV/JSONL of images with captions."
            )
        if len(dataset) < 20:
            raise PlaygroundError(f"{dataset.name!r} has only {len(dataset)} images; training needs at least 20.")

        self.train_set, self.heldout = dataset.split(cfg.heldout_fraction, seed=cfg.seed)
        self.batch_size = min(cfg.batch_size, len(self.train_set))
        g = np.random.default_rng(cfg.seed)
        self.probe = self.heldout.subset(np.sort(g.permutation(len(self.heldout))[: cfg.probe_size]))
        n_ref = min(cfg.knn_reference, len(self.train_set))
        self._knn_ref = self.train_set.subset(np.sort(g.permutation(len(self.train_set))[:n_ref]))

        # Model init under its own seed, leaving the caller's global RNG untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.clip = None  # clip with cfg.clip_model: the open_clip CLIP whose two towers are trained
            if cfg.method == "clip" and cfg.clip_model:
                from core.clip import build_trainable_clip

                self.clip = build_trainable_clip(cfg.clip_model, embed_dim=cfg.projection_dim, device=self.device)
                self.model = self.clip.image_tower
            else:
                self.model: ContrastiveModel = build_model(cfg.encoder_config, device=self.device)
            self.text_model: nn.Module | None = None
            self.logit_scale: nn.Parameter | None = None
            if self.clip is not None:
                self.text_model, self._tokenizer = self.clip.text_tower, self.clip.tokenizer
                self.logit_scale = self.clip.clip.logit_scale  # CLIP's own parameter, log(1 / 0.07) at init
            elif cfg.method == "clip":
                self.text_model, self._tokenizer = _build_text_tower(cfg.projection_dim, self.device)
                self.logit_scale = nn.Parameter(torch.tensor(math.log(_LOGIT_SCALE_INIT), device=self.device))
        self.key_model: ContrastiveModel | None = None
        self.queue: losses.FeatureQueue | None = None
        if cfg.method == "moco":
            self.key_model = momentum_copy(self.model)
            # queue_size 0: no queue; the other keys of the batch are the only negatives (see _loss).
            if cfg.queue_size:
                self.queue = losses.FeatureQueue(cfg.projection_dim, cfg.queue_size, device=self.device)
                # As in the MoCo paper, start from random unit keys so the first steps have negatives.
                init = torch.randn(cfg.queue_size, cfg.projection_dim, generator=torch.Generator().manual_seed(cfg.seed))
                self.queue.enqueue(F.normalize(init, dim=1).to(self.device))

        # fused: one kernel for all parameters instead of a loop of small ops per parameter (on the CPU 0.32 against
        # 0.99 ms an optimizer step for the lesson's encoder, ~3% of its training step; benchmarks/bench_step_parts.py)
        fused = {"fused": True} if self.device.type in _FUSED_ADAMW_DEVICES else {}
        if cfg.method == "clip":
            self.optimizer = torch.optim.AdamW(self._clip_param_groups(), lr=cfg.lr, **fused)
        else:
            self.optimizer = torch.optim.AdamW(list(self.model.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                               **fused)

        # Training images live on the device as uint8 (4000 x 3 x 32 x 32 is 12 MB).
        self._images = self.train_set.images.to(self.device)
        self._labels = torch.as_tensor(self.train_set.labels[self.label_factor], device=self.device)
        self._gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self._aug_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        self._probe_gen_seed = cfg.seed + 2
        self._probe_views: tuple[torch.Tensor, torch.Tensor] | None = None  # drawn once: see _fixed_probe_views
        # views_ahead: the next batch and its views are drawn on a helper thread during this step's forward and
        # backward passes (see the property). _ahead_rng: the generators' states before that draw, for save().
        self._views_ahead = False
        self._ahead: Future | None = None
        self._ahead_rng: tuple[torch.Tensor, torch.Tensor] | None = None
        self._pools: dict[str, ThreadPoolExecutor] = {}  # "views-ahead" and "evaluations", one worker each
        self._background: list[Future] = []  # evaluations and snapshots on their helper, oldest first
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
    def method(self) -> str:
        return self.cfg.method

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

    def _views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v1 = augment(x, self.cfg.augment, self._aug_gen)
        v2 = augment(x, self.cfg.augment, self._aug_gen)
        return v1, v2

    @property
    def views_ahead(self) -> bool:
        """Draw each next batch and its two augmented views on a helper thread while the current step's forward
        and backward passes run (default False). Every step trains on exactly the batch and views it would have
        drawn anyway (same generators, same order), so this changes the speed, not the run; it applies to
        :data:`AHEAD_METHODS` only (the others draw more at random inside the loss).

        Worth it on a CPU when the step runs on fewer torch threads than there are free cores: the views took a
        third of a one-thread lesson step (10.5 of 30.8 ms), and the helper does them on another core without
        the lock-step of a second OpenMP thread, which stalls whenever a browser or the page takes that core
        (``ui.jobs`` turns it on when a lone job's tuner chose one thread). The helper runs one torch thread.

        While it is on, evaluations and snapshots run on a second helper, on a copy of the model as of their step
        (:meth:`_later`): the training thread goes on meanwhile, and their records land a few steps later, in
        order, with the same numbers. :meth:`run`, :meth:`evaluate` and :meth:`save` wait for them first."""
        return self._views_ahead

    @views_ahead.setter
    def views_ahead(self, on: bool) -> None:
        # Turning it off keeps a batch already drawn: the next step trains on it, as it would have anyway.
        self._views_ahead = bool(on) and self.cfg.method in AHEAD_METHODS

    def _draw(self) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The next batch's indices, with its two augmented views for :data:`AHEAD_METHODS` (None for the others,
        which augment inside the loss). Under the step's precision, so a drawn-ahead batch is the same."""
        with self._autocast():
            idx = self._sample()
            return idx, (self._views(self._images[idx]) if self.cfg.method in AHEAD_METHODS else None)

    def _on_helper(self, fn: Callable[[], object], helper: str = "views-ahead") -> Future:
        """Run ``fn`` on one of this trainer's helper threads (one worker each: its jobs run in the order given).

        Two helpers, so that the next batch never waits behind an evaluation: on one helper, step k + 2's views
        queued behind step k's evaluation (170 ms on one thread), and the training thread stalled for it every 25
        steps. The evaluations' helper runs at a lower priority (nice 10): it takes what the training thread and
        the page leave of the cores, and :meth:`_later` bounds how far it may fall behind."""
        pool = self._pools.get(helper)
        if pool is None:
            pool = self._pools[helper] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=helper, initializer=_lower_priority if helper == "evaluations"
                else None)
        return pool.submit(_one_torch_thread, fn)

    def _next_batch(self) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        ahead, self._ahead, self._ahead_rng = self._ahead, None, None
        batch = ahead.result() if ahead is not None else self._draw()
        if self._views_ahead:
            self._ahead_rng = (self._gen.get_state(), self._aug_gen.get_state())
            self._ahead = self._on_helper(self._draw)
        return batch

    def _later(self, work: Callable[[ContrastiveModel, int, float], object]) -> None:
        """``work(model, step, seconds)`` on the evaluations' helper, on a copy of the model as it is now (weights and
        BatchNorm statistics), while training goes on: how evaluations and snapshots run when views_ahead is on.
        Their records land in ``evals`` / ``snapshots`` a few steps later, in order, with this step's number."""
        while len(self._background) >= _BACKGROUND_BEHIND:  # never more than a few records late
            self._background.pop(0).result()
        model = copy.deepcopy(self.model)
        step, seconds = self.step_count, self.seconds
        self._background.append(self._on_helper(lambda: work(model, step, seconds), "evaluations"))

    def _settle_background(self, wait: bool) -> None:
        """Collect finished background evaluations and snapshots (all of them when ``wait``), raising their
        errors here, on the training thread."""
        while self._background and (wait or self._background[0].done()):
            self._background.pop(0).result()

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self, idx: torch.Tensor, views: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        cfg = self.cfg
        x = self._images[idx]
        y = self._labels[idx]
        n = len(idx)
        if cfg.method == "clip":
            img = self.forward_model(augment(x, cfg.augment, self._aug_gen))
            texts = self._captions(idx.cpu().numpy())
            txt = self.forward_text(self._tokenizer(texts).to(self.device))
            # Rows that drew the same caption text are not each other's negatives (multi-positive batch). The id
            # is a checksum of the text, so equal captions on different ranks get equal ids once gathered.
            text_ids = torch.tensor([zlib.crc32(t.encode("utf-8")) for t in texts], device=img.device)
            return losses.clip_loss(self.gather(img), self.gather(txt),
                                    self.logit_scale.exp().clamp(max=_LOGIT_SCALE_MAX),
                                    text_ids=self.gather(text_ids))
        v1, v2 = views if views is not None else self._views(x)
        if cfg.method == "moco":
            q = _split_batch_forward(self.forward_model, v1)
            with torch.no_grad():
                momentum_update(self.key_model, self.model, cfg.momentum)
                # Shuffling BN: keys are computed on sub-batches of a shuffled order, then put back in place.
                perm = torch.randperm(n, generator=self._gen).to(self.device)
                k = torch.empty_like(q)
                k[perm] = _split_batch_forward(self.key_model, v2[perm])
            q, k = self.gather(q), self.gather(k)  # the queue takes every rank's keys
            if self.queue is None:
                return losses.info_nce(q, k, None, cfg.temperature, batch_negatives=True)
            loss = losses.info_nce(q, k, self.queue.tensor, cfg.temperature)
            self.queue.enqueue(k)
            return loss
        # One forward over both views: BatchNorm sees 2N images, as in SimCLR.
        z = self.forward_model(torch.cat([v1, v2]))
        z1, z2, y = self.gather(z[:n]), self.gather(z[n:]), self.gather(y)
        n = len(y)
        if cfg.method == "simclr":
            return losses.nt_xent(z1, z2, cfg.temperature)
        if cfg.method == "supcon":
            return losses.supcon(torch.stack([z1, z2], dim=1), y, cfg.temperature)
        if cfg.method == "triplet":
            return losses.triplet_loss(torch.cat([z1, z2]), torch.cat([y, y]), cfg.margin, mining=cfg.mining)
        # margin: view 1 of each image against view 2 of itself (first half) or of a random other image.
        perm = torch.randperm(n, generator=self._gen).to(self.device)
        partner = torch.where(torch.arange(n, device=self.device) < n // 2, torch.arange(n, device=self.device), perm)
        return losses.margin_contrastive(z1, z2[partner], y == y[partner], cfg.margin)

    def _clip_param_groups(self) -> list[dict]:
        """AdamW groups as open_clip's training script builds them: weight decay on weight matrices only;
        none on anything with fewer than two dimensions or named bn/ln/bias/logit_scale (biases, BatchNorm
        and LayerNorm gains, the logit scale)."""
        named = list(self.model.named_parameters(prefix="image"))
        if self.text_model is not None:
            named += list(self.text_model.named_parameters(prefix="text"))
        if self.logit_scale is not None:  # not inside either tower, also for an open_clip CLIP
            named.append(("logit_scale", self.logit_scale))
        decay, no_decay, seen = [], [], set()
        for name, p in named:
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            exclude = p.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
            (no_decay if exclude else decay).append(p)
        return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": self.cfg.weight_decay}]

    def _tokens(self, rows: np.ndarray) -> torch.Tensor:
        """Tokens of one caption per image (see :meth:`_captions`)."""
        return self._tokenizer(self._captions(rows)).to(self.device)

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
        """One optimisation step. Raises :class:`TrainingDiverged` if the loss or gradients blow up."""
        with self._lock:
            if self.diverged:
                raise TrainingDiverged(self.diverged)
            t0 = time.perf_counter()
            if self.step_count == 0 and not self.snapshots:
                self._snapshot()
            self.model.train()
            if self.text_model is not None:
                self.text_model.train()
            lr = self._lr_at(self.step_count)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self._autocast():
                loss = self._loss(*self._next_batch()).float()
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
            if self.logit_scale is not None:
                # As open_clip: clamp the parameter itself, so past ln(100) its gradient never goes dead.
                with torch.no_grad():
                    self.logit_scale.clamp_(0.0, math.log(_LOGIT_SCALE_MAX))
            self.step_count += 1
            background = self._views_ahead
            self._settle_background(wait=not background)
            if self.step_count % self.cfg.snapshot_every == 0:
                if background:
                    self._later(lambda model, step, _: self._snapshot(model, step))
                else:
                    self._snapshot()
            if self.step_count % self.cfg.eval_every == 0:
                if background:
                    self._later(lambda model, step, seconds: self._evaluate_locked(model, step, seconds))
                else:
                    self._evaluate_locked()
            self.seconds += time.perf_counter() - t0
            record = StepRecord(self.step_count, loss.item(), lr, self.current_logit_scale, self.seconds)
            self.history.append(record)
            self._stop_if_collapsed()
            return record

    def _hint(self) -> str:
        if self.cfg.method in ("simclr", "moco", "supcon") and self.cfg.temperature < 0.02:
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

    def run(
        self,
        steps: int | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        stop: threading.Event | Callable[[], bool] | None = None,
    ) -> list[StepRecord]:
        """Run ``steps`` steps (default: until ``cfg.steps`` in total). ``stop`` is checked before each step."""
        target = steps if steps is not None else max(self.cfg.steps - self.step_count, 0)
        should_stop = stop.is_set if isinstance(stop, threading.Event) else stop
        done: list[StepRecord] = []
        for _ in range(target):
            if should_stop is not None and should_stop():
                break
            record = self.step()
            done.append(record)
            if on_step is not None:
                on_step(record)
        with self._lock:
            self._settle_background(wait=True)
        return done

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvalRecord:
        """kNN accuracy per factor on the held-out split, alignment/uniformity and pair similarities.

        Raises :class:`TrainingDiverged` when this and the previous evaluation find the embedding collapsed."""
        with self._lock:
            self._settle_background(wait=True)  # evaluations stay in step order
            t0 = time.perf_counter()
            record = self._evaluate_locked()
            self.seconds += time.perf_counter() - t0
            self._stop_if_collapsed()
            return record

    def _evaluate_locked(self, model: ContrastiveModel | None = None, step: int | None = None,
                         seconds: float | None = None) -> EvalRecord:
        with small_blas():  # the effective rank's SVD must not leave BLAS workers spinning on torch's cores
            return self._evaluate_now(model, step, seconds)

    def _evaluate_now(self, model: ContrastiveModel | None = None, step: int | None = None,
                      seconds: float | None = None) -> EvalRecord:
        """Evaluate ``model`` (default: the one training) as of ``step`` (default: now); appended to ``evals``."""
        model = model or self.model
        ref = self._features(self._knn_ref, model=model)
        test = self._features(self.heldout, model=model)
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
            step=self.step_count if step is None else step,
            knn=knn,
            alignment=float(alignment(z1, z2)),
            uniformity=float(uniformity(z1)),
            effective_rank=float(effective_rank(z1)),
            pos_sims=np.asarray(pos, dtype=np.float32),
            neg_sims=np.asarray(neg, dtype=np.float32),
            seconds=self.seconds if seconds is None else seconds,
        )
        self.evals.append(record)
        return record

    def _fixed_probe_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The probe set's two augmented views that every evaluation measures alignment, uniformity and the pair
        similarities on: the same two at every step (their own seeded generator), so drawn once and kept. Redrawn at
        each evaluation they took ~18 ms of a ~110 ms lesson evaluation (benchmarks/bench_step_parts.py). Shape:
        two (probe_size, C, H, W) float tensors on the trainer's device; 2 x 400 x 3 x 24 x 24 floats is 5.5 MB, and
        views larger than :data:`_PROBE_VIEWS_KEPT_BYTES` are drawn again each time instead of kept."""
        views = self._probe_views
        if views is None:  # two threads (a background evaluation, a page's evaluate) may both draw: the same views
            gen = torch.Generator(device="cpu").manual_seed(self._probe_gen_seed)
            x = self.probe.images.to(self.device)
            views = (augment(x, self.cfg.augment, gen), augment(x, self.cfg.augment, gen))
            if 2 * views[0].nelement() * views[0].element_size() <= _PROBE_VIEWS_KEPT_BYTES:
                self._probe_views = views
        return views

    def _features(self, imageset: ImageSet, space: str = "encoder",
                  model: ContrastiveModel | None = None) -> np.ndarray:
        x = imageset.images.to(self.device)
        return (model or self.model).embed(x, space=space).float().cpu().numpy()

    def _snapshot(self, model: ContrastiveModel | None = None, step: int | None = None) -> Snapshot:
        # the projection space: what the loss organises, and where the probe's shape neighbourhoods are purest
        vectors = self._features(self.probe, space="projection", model=model)
        with small_blas():
            previous = self.snapshots[-1].coords if self.snapshots else None
            coords = live_map(vectors, previous, method=self.cfg.map_method, seed=self.cfg.seed)
        snap = Snapshot(self.step_count if step is None else step, vectors, np.asarray(coords, dtype=np.float32))
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
            f"{METHOD_NAMES[self.cfg.method]} · {self.cfg.clip_model or self.cfg.encoder.arch} on {self.dataset.name}, "
            f"step {self.step_count}"
        )

    # ------------------------------------------------------------------ checkpoints
    def _tensors(self) -> dict[str, torch.Tensor]:
        """Everything a resumed run needs, as named tensors (safetensors holds tensors and strings only)."""
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.text_model is not None:
            out.update({f"text.{k}": v for k, v in self.text_model.state_dict().items()})
            out["logit_scale"] = self.logit_scale.detach()
        if self.key_model is not None:
            out.update({f"key.{k}": v for k, v in self.key_model.state_dict().items()})
        if self.queue is not None:
            out["queue.buffer"] = self.queue._buffer
        # AdamW's moments and step per parameter: a resumed run continues the same optimisation.
        for pid, state in self.optimizer.state_dict()["state"].items():
            for name, value in state.items():
                if isinstance(value, torch.Tensor):
                    out[f"optim.{pid}.{name}"] = value
        # Where the batch sampler and the augmentation draws are, so step k + 1 draws what it would have drawn.
        # A batch drawn ahead (views_ahead) is not trained on yet: save the states from before it was drawn.
        ahead_rng = self._ahead_rng
        out["rng.sample"], out["rng.augment"] = ahead_rng or (self._gen.get_state(), self._aug_gen.get_state())
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
        if self.queue is not None:
            meta["queue"] = json.dumps({"next": self.queue._next, "count": self.queue._count})
        return meta

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.safetensors`` checkpoint (config, dataset spec, history, optimiser and RNG state) and a
        ``.json`` sidecar with the same config. Both are written to a temp file and renamed, so a crash
        never leaves half a file. :meth:`load` resumes the run exactly where it stopped."""
        from safetensors.torch import save_file

        with self._lock:
            self._settle_background(wait=True)  # the file records every evaluation made so far
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        with self._lock:
            tensors = self._tensors()
            meta = {
                "format": CHECKPOINT_FORMAT,
                "config": json.dumps(self.cfg.to_dict()),
                "dataset": json.dumps(self.dataset.spec or {"name": self.dataset.name}),
                "step": str(self.step_count),
                "seconds": repr(self.seconds),
                "history": json.dumps([asdict(r) for r in self.history]),
                **self._state_meta(),
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        sidecar = {k: json.loads(meta[k]) for k in ("config", "dataset", "step")}
        sidecar["format"] = CHECKPOINT_FORMAT
        _atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2)))
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
        if self.text_model is not None:
            self.text_model.load_state_dict(part("text."))
            with torch.no_grad():
                self.logit_scale.copy_(tensors["logit_scale"])
        if self.key_model is not None:
            self.key_model.load_state_dict(part("key."))
        if self.queue is not None:
            q = json.loads(meta.get("queue", "null")) or {"next": 0, "count": self.queue.size}
            nxt, count = int(q["next"]), int(q["count"])
            if not (0 <= nxt < self.queue.size and 0 <= count <= self.queue.size):
                raise ValueError("the MoCo queue's position is out of range")
            self.queue._buffer.copy_(tensors["queue.buffer"].to(self.device))
            self.queue._next, self.queue._count = nxt, count
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
_BACKGROUND_BEHIND = 3  # evaluations and snapshots a views_ahead trainer may have in flight before it waits


def _lower_priority() -> None:
    """Nice 10 for the calling thread (Linux: a thread id is a process id to setpriority); elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def _one_torch_thread(fn: Callable[[], object]) -> object:
    """``fn()`` on one torch thread (a Trainer's helper thread), so the helper never forms an OpenMP team that
    competes with the training step's threads."""
    with torch_threads(1):
        return fn()


def _split_batch_forward(model: nn.Module, x: torch.Tensor, splits: int = MOCO_BN_SPLITS) -> torch.Tensor:
    """``model`` over ``x`` in ``splits`` consecutive sub-batches, so BatchNorm sees each sub-batch alone.

    Shape: x (N, C, H, W) -> (N, D). Sub-batches smaller than 2 images are merged (BatchNorm needs two).
    """
    splits = max(1, min(splits, x.shape[0] // 2))
    return torch.cat([model(chunk) for chunk in x.chunk(splits)])


def _local_rows(x: torch.Tensor) -> torch.Tensor:
    return x


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _TextTower(nn.Module):
    """open_clip's TextTransformer with a context sized for short captions."""

    def __init__(self, embed_dim: int):
        super().__init__()
        from open_clip.transformer import TextTransformer

        self.transformer = TextTransformer(
            context_length=_TEXT_CONTEXT,
            width=_TEXT_WIDTH,
            heads=_TEXT_HEADS,
            layers=_TEXT_LAYERS,
            output_dim=embed_dim,
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.transformer(tokens)


def _build_text_tower(embed_dim: int, device: torch.device):
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer(context_length=_TEXT_CONTEXT)
    return _TextTower(embed_dim).to(device), tokenizer
