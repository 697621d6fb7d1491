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

import json
import math
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core import losses
from core.augment import PRESETS as AUGMENT_PRESETS
from core.augment import AugmentConfig, augment
from core.data import ImageSet, load_dataset
from core.device import pick_device
from core.embed import EmbeddingSet, embed_imageset
from core.errors import PlaygroundError, TrainingDiverged
from core.metrics import alignment, knn_accuracy, uniformity
from core.models import ContrastiveModel, EncoderConfig, build_model, momentum_copy, momentum_update
from core.projection import align_to, project

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
MINING = ("all", "hard", "semihard")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")
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


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; JSON round-trips through ``to_dict``/``from_dict``."""

    method: str = "simclr"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
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
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    snapshot_every: int = 10
    eval_every: int = 25
    probe_size: int = 400  # fixed held-out images shown in the live 2-D view and timeline
    heldout_fraction: float = 0.2
    knn_k: int = 10
    lr_schedule: str = "constant"  # after warm-up: "constant" | "cosine" (to 10% of lr at `steps`, then flat)
    precision: str = "fp32"  # "fp32" | "bf16" (torch.autocast around the forward pass and the loss)
    knn_reference: int = 2000  # training images embedded as the kNN reference set at each evaluation

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.mining not in MINING:
            raise ValueError(f"Unknown mining {self.mining!r}; choose one of {', '.join(MINING)}.")
        checks = [
            ("batch_size", self.batch_size >= 4, "at least 4"),
            ("projection_dim", 2 <= self.projection_dim <= 4096, "between 2 and 4096"),
            ("temperature", math.isfinite(self.temperature) and self.temperature > 0, "a positive number"),
            ("lr", math.isfinite(self.lr) and 0 < self.lr <= 1, "between 0 and 1"),
            ("weight_decay", self.weight_decay >= 0, "zero or more"),
            ("warmup_steps", self.warmup_steps >= 0, "zero or more"),
            ("steps", self.steps >= 1, "at least 1"),
            ("queue_size", self.queue_size >= 0, "zero or more"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("margin", self.margin >= 0, "zero or more"),
            ("snapshot_every", self.snapshot_every >= 1, "at least 1"),
            ("eval_every", self.eval_every >= 1, "at least 1"),
            ("probe_size", self.probe_size >= 10, "at least 10"),
            ("heldout_fraction", 0 < self.heldout_fraction < 1, "between 0 and 1"),
            ("knn_k", self.knn_k >= 1, "at least 1"),
            ("knn_reference", self.knn_reference >= 10, "at least 10"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r} is not allowed; it must be {allowed}.")

    @property
    def encoder_config(self) -> EncoderConfig:
        return replace(self.encoder, projection_dim=self.projection_dim)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["encoder"] = self.encoder.to_dict()
        d["augment"] = self.augment.to_dict()
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
        if "augment" in d and not isinstance(d["augment"], AugmentConfig):
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


@dataclass
class Snapshot:
    step: int
    vectors: np.ndarray  # (probe, feature_dim) encoder features
    coords: np.ndarray  # (probe, 2) PCA, rotated onto the previous snapshot so points move smoothly


class Trainer:
    """Train a :class:`ContrastiveModel` on an :class:`ImageSet` with one of :data:`METHODS`.

    >>> from core.data import load_dataset
    >>> t = Trainer(TrainConfig(batch_size=32, steps=3), load_dataset("shapes", n=200))
    >>> len(t.run())
    3
    """

    def __init__(self, cfg: TrainConfig, dataset: ImageSet, *, device: torch.device | str | None = None):
        self.cfg = cfg
        self.dataset = dataset
        self.device = torch.device(device) if device is not None else pick_device()
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
            self.model: ContrastiveModel = build_model(cfg.encoder_config, device=self.device)
            self.text_model: nn.Module | None = None
            self.logit_scale: nn.Parameter | None = None
            if cfg.method == "clip":
                self.text_model, self._tokenizer = _build_text_tower(cfg.projection_dim, self.device)
                self.logit_scale = nn.Parameter(torch.tensor(math.log(_LOGIT_SCALE_INIT), device=self.device))
        self.key_model: ContrastiveModel | None = None
        self.queue: losses.FeatureQueue | None = None
        if cfg.method == "moco":
            self.key_model = momentum_copy(self.model)
            self.queue = losses.FeatureQueue(cfg.projection_dim, cfg.queue_size, device=self.device)
            if cfg.queue_size:
                # As in the MoCo paper, start from random unit keys so the first steps have negatives.
                init = torch.randn(cfg.queue_size, cfg.projection_dim, generator=torch.Generator().manual_seed(cfg.seed))
                self.queue.enqueue(F.normalize(init, dim=1).to(self.device))

        params = list(self.model.parameters())
        if self.text_model is not None:
            params += list(self.text_model.parameters()) + [self.logit_scale]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

        # Training images live on the device as uint8 (4000 x 3 x 32 x 32 is 12 MB).
        self._images = self.train_set.images.to(self.device)
        self._labels = torch.as_tensor(self.train_set.labels[self.label_factor], device=self.device)
        self._gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self._aug_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        self._probe_gen_seed = cfg.seed + 2

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
        idx = torch.randperm(len(self.train_set), generator=self._gen)[: self.batch_size]
        return idx.to(self.device)

    def _views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v1 = augment(x, self.cfg.augment, self._aug_gen)
        v2 = augment(x, self.cfg.augment, self._aug_gen)
        return v1, v2

    def _loss(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = self._images[idx]
        y = self._labels[idx]
        n = len(idx)
        if cfg.method == "clip":
            img = self.model(augment(x, cfg.augment, self._aug_gen))
            txt = self.text_model(self._tokens(idx.cpu().numpy()))
            return losses.clip_loss(img, txt, self.logit_scale.exp().clamp(max=_LOGIT_SCALE_MAX))
        v1, v2 = self._views(x)
        if cfg.method == "moco":
            q = self.model(v1)
            with torch.no_grad():
                momentum_update(self.key_model, self.model, cfg.momentum)
                k = self.key_model(v2)
            loss = losses.info_nce(q, k, self.queue.tensor, cfg.temperature)
            self.queue.enqueue(k)
            return loss
        # One forward over both views: BatchNorm sees 2N images, as in SimCLR.
        z = self.model(torch.cat([v1, v2]))
        z1, z2 = z[:n], z[n:]
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

    def _tokens(self, rows: np.ndarray) -> torch.Tensor:
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
        return self._tokenizer(texts).to(self.device)

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
            if self.cfg.precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    loss = self._loss(self._sample()).float()
            else:
                loss = self._loss(self._sample())
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
            self.step_count += 1
            if self.step_count % self.cfg.snapshot_every == 0:
                self._snapshot()
            if self.step_count % self.cfg.eval_every == 0:
                self._evaluate_locked()
            self.seconds += time.perf_counter() - t0
            record = StepRecord(self.step_count, loss.item(), lr, self.current_logit_scale, self.seconds)
            self.history.append(record)
            return record

    def _diverge(self, what: str) -> None:
        hint = (
            f"The temperature {self.cfg.temperature:g} is very low; try 0.1–0.5."
            if self.cfg.method in ("simclr", "moco", "supcon") and self.cfg.temperature < 0.02
            else f"Try a smaller learning rate than {self.cfg.lr:g}."
        )
        self.diverged = f"Training stopped at step {self.step_count + 1}: {what}. {hint}"
        raise TrainingDiverged(self.diverged)

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
        return done

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvalRecord:
        """kNN accuracy per factor on the held-out split, alignment/uniformity and pair similarities."""
        with self._lock:
            t0 = time.perf_counter()
            record = self._evaluate_locked()
            self.seconds += time.perf_counter() - t0
            return record

    def _evaluate_locked(self) -> EvalRecord:
        ref = self._features(self._knn_ref)
        test = self._features(self.heldout)
        knn = {
            f: knn_accuracy(ref, self._knn_ref.labels[f], test, self.heldout.labels[f], k=self.cfg.knn_k)
            for f in self.dataset.factors
        }
        # Two fixed augmented views of the probe set, in projection space (where the loss acts).
        gen = torch.Generator(device="cpu").manual_seed(self._probe_gen_seed)
        x = self.probe.images.to(self.device)
        v1 = augment(x, self.cfg.augment, gen)
        v2 = augment(x, self.cfg.augment, gen)
        z1 = self.model.embed(v1, space="projection", normalize=True)
        z2 = self.model.embed(v2, space="projection", normalize=True)
        pos, neg = losses.positive_negative_similarities(z1, z2)
        if len(neg) > 5000:
            neg = np.random.default_rng(0).choice(neg, 5000, replace=False)
        record = EvalRecord(
            step=self.step_count,
            knn=knn,
            alignment=float(alignment(z1, z2)),
            uniformity=float(uniformity(z1)),
            pos_sims=np.asarray(pos, dtype=np.float32),
            neg_sims=np.asarray(neg, dtype=np.float32),
            seconds=self.seconds,
        )
        self.evals.append(record)
        return record

    def _features(self, imageset: ImageSet, space: str = "encoder") -> np.ndarray:
        x = imageset.images.to(self.device)
        return self.model.embed(x, space=space).float().cpu().numpy()

    def _snapshot(self) -> Snapshot:
        vectors = self._features(self.probe)
        coords = project(vectors, method="pca", dim=2)
        if self.snapshots:
            coords = align_to(coords, self.snapshots[-1].coords)
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
            f"{METHOD_NAMES[self.cfg.method]} · {self.cfg.encoder.arch} on {self.dataset.name}, "
            f"step {self.step_count}"
        )

    # ------------------------------------------------------------------ checkpoints
    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.text_model is not None:
            out.update({f"text.{k}": v for k, v in self.text_model.state_dict().items()})
            out["logit_scale"] = self.logit_scale.detach()
        if self.key_model is not None:
            out.update({f"key.{k}": v for k, v in self.key_model.state_dict().items()})
        # Copies: safetensors refuses tensors that share storage.
        return {k: v.detach().to("cpu").clone().contiguous() for k, v in out.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.safetensors`` checkpoint (config, dataset spec and history in its metadata) and a
        ``.json`` sidecar with the same config. Both are written to a temp file and renamed, so a crash
        never leaves half a file."""
        from safetensors.torch import save_file

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
        """Rebuild a trainer from :meth:`save`'s file. Only safetensors is read (no pickle)."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors raises its own error types for any malformed header
            raise PlaygroundError(
                f"{path.name} is not a readable safetensors checkpoint ({type(err).__name__})."
            ) from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise PlaygroundError(f"{path.name} is a safetensors file but not a Contrastive Playground checkpoint.")
        try:
            cfg = TrainConfig.from_dict(json.loads(meta["config"]))
            spec = json.loads(meta["dataset"])
            history = [StepRecord(**r) for r in json.loads(meta.get("history", "[]"))]
        except (KeyError, TypeError, json.JSONDecodeError, ValueError) as err:
            raise PlaygroundError(f"The checkpoint's settings could not be read: {err}") from None
        if dataset is None:
            dataset = load_dataset(spec["name"], **spec.get("options", {}))
        trainer = cls(cfg, dataset, device=device)
        try:
            trainer._load_tensors(tensors)
        except RuntimeError as err:
            raise PlaygroundError(f"The checkpoint's weights do not fit its own settings: {err}") from None
        trainer.step_count = int(meta.get("step", 0))
        trainer.seconds = float(meta.get("seconds", 0.0))
        trainer.history = history
        trainer.snapshots = []
        trainer._snapshot()
        return trainer

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.model.load_state_dict(part("model."))
        if self.text_model is not None:
            self.text_model.load_state_dict(part("text."))
            with torch.no_grad():
                self.logit_scale.copy_(tensors["logit_scale"])
        if self.key_model is not None:
            self.key_model.load_state_dict(part("key."))


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
