"""A trainable open_clip CLIP for core.train (method "clip" with ``clip_model`` set) and its way back out: a
``local-dir`` folder on disk (:func:`export_local_dir`) or a frozen :class:`ClipBundle`
(:func:`bundle_from_trainer`)."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.clip.load import CONFIG_NAME, WEIGHTS_NAME, ClipBundle
from core.device import pick_device
from core.errors import PlaygroundError

# ------------------------------------------------------------------------------------------ trainable configs
# open_clip model configs (the "model_cfg" of open_clip_config.json) that core.train.Trainer can train with
# method "clip". "mini-rn": a ModifiedResNet image tower (CLIP's RN family, attention pooling) cut to one
# block per stage and width 32, with a two-layer text transformer. Measured (FINDINGS.md): on shapes + varied
# captions it reaches shape ~0.98 / colour 1.0 zero-shot in ~200 steps, where a tiny ViT stalled at shape 0.3.
# Here at width 16 (a quarter of width 32's compute: a step costs ~4x less CPU on the shared 2-core machines).
# Text width 32 keeps the 49,408-token embedding table (open_clip's BPE vocabulary) at 1.6 M parameters; the
# whole model is about 3 M parameters, 6 MB in fp16.
TRAINABLE_CONFIGS: dict[str, dict] = {
    "mini-rn": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    },
}
TRAINABLE_NAMES = {"mini-rn": "mini CLIP (ModifiedResNet 1-1-1-1 x 16 + 2-layer text transformer)"}


# ------------------------------------------------------------------------------------------ training glue
class _ImageTower(nn.Module):
    """An open_clip CLIP's image tower seen as a :class:`core.models.ContrastiveModel` by core.train:
    ``forward`` / ``encode`` / ``embed`` on float images in [0, 1] (resized to the tower's size and normalised
    with open_clip's constants). Encoder and projection space are the same (the attention-pool output)."""

    def __init__(self, clip_model: nn.Module, mean: Sequence[float], std: Sequence[float], name: str):
        super().__init__()
        self.visual = clip_model.visual
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        size = self.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.feature_dim = int(self.visual.output_dim)
        self.cfg = _TowerCfg(arch=name, projection_dim=self.feature_dim)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        return self.visual((x - self.pixel_mean) / self.pixel_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, space: str = "encoder", normalize: bool = False,
              batch_size: int = 1024) -> torch.Tensor:
        if space not in ("encoder", "projection"):
            raise ValueError(f"Unknown embedding space {space!r}; use 'encoder' or 'projection'.")
        was_training = self.training
        self.eval()
        try:
            chunks = [self.encode(x[s:s + batch_size]) for s in range(0, x.shape[0], batch_size)]
            out = torch.cat(chunks) if chunks else torch.empty(0, self.feature_dim, device=self.device)
            return F.normalize(out, dim=1) if normalize else out
        finally:
            self.train(was_training)


@dataclass(frozen=True)
class _TowerCfg:
    arch: str
    projection_dim: int


class _TextTower(nn.Module):
    """The text half of an open_clip CLIP (shares its parameters); ``forward(tokens) = encode_text``."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.positional_embedding = clip_model.positional_embedding
        if clip_model.text_projection is not None:
            self.text_projection = clip_model.text_projection
        object.__setattr__(self, "_clip", clip_model)  # not a submodule: the image half is not ours

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._clip.encode_text(tokens)


@dataclass
class TrainableClip:
    """What core.train needs to train an open_clip CLIP: the model and its two halves."""

    clip: nn.Module
    image_tower: _ImageTower
    text_tower: _TextTower
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    model_cfg: dict = field(default_factory=dict)


def trainable_config(name: str, embed_dim: int | None = None) -> dict:
    if name not in TRAINABLE_CONFIGS:
        raise PlaygroundError(f"Unknown CLIP model config {name!r}; choose one of {', '.join(TRAINABLE_CONFIGS)}.")
    cfg = json.loads(json.dumps(TRAINABLE_CONFIGS[name]))
    if embed_dim is not None:
        cfg["embed_dim"] = int(embed_dim)
    return cfg


def build_trainable_clip(name: str, *, embed_dim: int | None = None,
                         device: torch.device | str | None = None) -> TrainableClip:
    """A freshly initialised open_clip ``CLIP`` from :data:`TRAINABLE_CONFIGS` (seeded by the caller's torch
    RNG), split into an image and a text tower for core.train. ``embed_dim`` overrides the config's."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer

    cfg = trainable_config(name, embed_dim)
    dev = torch.device(device) if device is not None else pick_device()
    model = CLIP(**cfg).to(dev)
    tokenizer = SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    return TrainableClip(model, _ImageTower(model, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, name).to(dev),
                         _TextTower(model), tokenizer, cfg)


def export_local_dir(clip_model: nn.Module, model_cfg: dict, folder: str | os.PathLike, *,
                     half: bool = True, extra: dict | None = None) -> Path:
    """Write an open_clip ``local-dir`` folder: ``open_clip_config.json`` (model_cfg + preprocess_cfg) and
    ``open_clip_model.safetensors`` (fp16 when ``half``, which open_clip casts back on load). Each file is
    written to a temp file and renamed."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    from core.files import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous().clone()
             for k, v in clip_model.state_dict().items()}
    size = model_cfg["vision_cfg"]["image_size"]
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"size": size, "mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }
    if extra:
        config["contrastive_playground"] = extra
    for name, write in ((WEIGHTS_NAME, lambda p: save_file(state, p)),
                        (CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(config, indent=2)))):
        atomic_write(folder / name, write, mode=0o644)  # a shipped model must be readable by every user
    return folder


def bundle_from_trainer(trainer: Any, *, name: str | None = None) -> ClipBundle:
    """A frozen :class:`ClipBundle` of a core.train.Trainer's open_clip CLIP (``clip_model`` set): a deep copy
    in eval mode, so training on never changes it, with open_clip's eval preprocessing for its size. This is
    how a CLIP trained on the Train page joins the registry (``ui.registry.register_clip``)."""
    import copy

    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.transform import PreprocessCfg, image_transform_v2

    if getattr(trainer, "clip", None) is None:
        raise PlaygroundError("Only a CLIP-style run trained as an open_clip model (clip_model set, e.g. 'mini-rn') "
                              "can be used as a CLIP model.")
    with trainer._lock:
        model = copy.deepcopy(trainer.clip.clip).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    size = int(trainer.clip.model_cfg["vision_cfg"]["image_size"])
    preprocess = image_transform_v2(PreprocessCfg(size=size), is_train=False)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    dev = next(model.parameters()).device
    return ClipBundle(
        model=model, preprocess=preprocess, tokenizer=trainer.clip.tokenizer, name=name or trainer.describe(),
        spec="trained", fingerprint=f"trained:{h.hexdigest()[:24]}", image_size=size,
        mean=tuple(OPENAI_DATASET_MEAN), std=tuple(OPENAI_DATASET_STD), device=dev,
        learned_logit_scale=float(model.logit_scale.exp()), embed_dim=int(trainer.clip.model_cfg["embed_dim"]),
    )
