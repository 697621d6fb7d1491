"""CLIP-style image-text training: a symmetric contrastive loss with a learnable logit scale (Radford et al. 2021).

The text tower is open_clip's ``TextTransformer`` with its own BPE tokenizer, sized for captions; with
``TrainConfig.clip_model`` the two towers are instead one open_clip ``CLIP`` (core.clip.TRAINABLE_CONFIGS) that
core.clip.export_local_dir can save as a local-dir.
"""
from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING

import torch
from torch import nn

from core import losses
from core.methods.base import Method

if TYPE_CHECKING:
    from core.train import Trainer

# Text tower: tiny, because captions are short and the machine is a CPU.
TEXT_CONTEXT = 16
TEXT_WIDTH = 128
TEXT_LAYERS = 2
TEXT_HEADS = 4
LOGIT_SCALE_INIT = 1 / 0.07  # CLIP's initial temperature 0.07
LOGIT_SCALE_MAX = 100.0  # CLIP clamps the learned multiplier here so training stays stable


class TextTower(nn.Module):
    """open_clip's TextTransformer with a context sized for short captions. Shape: tokens (N, 16) -> (N, D)."""

    def __init__(self, embed_dim: int):
        super().__init__()
        from open_clip.transformer import TextTransformer

        self.transformer = TextTransformer(context_length=TEXT_CONTEXT, width=TEXT_WIDTH, heads=TEXT_HEADS,
                                           layers=TEXT_LAYERS, output_dim=embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.transformer(tokens)


class Clip(Method):
    """Each image against every caption of the batch and back. State: ``trainer.text_model``,
    ``trainer._tokenizer`` and ``trainer.logit_scale`` (log of the multiplier), saved as ``text.*`` and
    ``logit_scale``; with ``clip_model`` also ``trainer.clip``, whose image tower is ``trainer.model``."""

    key = "clip"
    name = "CLIP-style (image-text)"
    paper = "Radford et al. 2021"
    order = 60
    needs_captions = True
    description = ("Images and their captions are embedded by two encoders; each image must pick out its own "
                   "caption among the batch's (Radford et al. 2021). Needs a dataset with captions, such as "
                   "shapes.")
    views = 1  # one augmented view per image; the caption is the other side
    loss_function = staticmethod(losses.clip_loss)
    loss_module = losses.ClipLoss

    def build_encoder(self, trainer: "Trainer") -> nn.Module:
        if not trainer.cfg.clip_model:
            return super().build_encoder(trainer)
        from core.clip import build_trainable_clip

        trainer.clip = build_trainable_clip(trainer.cfg.clip_model, embed_dim=trainer.cfg.projection_dim,
                                            device=trainer.device)
        return trainer.clip.image_tower

    def setup(self, trainer: "Trainer") -> None:
        if trainer.clip is not None:
            trainer.text_model, trainer._tokenizer = trainer.clip.text_tower, trainer.clip.tokenizer
            trainer.logit_scale = trainer.clip.clip.logit_scale  # CLIP's own parameter, log(1 / 0.07) at init
            return
        from open_clip.tokenizer import SimpleTokenizer

        trainer._tokenizer = SimpleTokenizer(context_length=TEXT_CONTEXT)
        trainer.text_model = TextTower(trainer.cfg.projection_dim).to(trainer.device)
        trainer.logit_scale = nn.Parameter(torch.tensor(math.log(LOGIT_SCALE_INIT), device=trainer.device))

    def param_groups(self, trainer: "Trainer") -> list[dict]:
        """AdamW groups as open_clip's training script builds them: weight decay on weight matrices only;
        none on anything with fewer than two dimensions or named bn/ln/bias/logit_scale (biases, BatchNorm
        and LayerNorm gains, the logit scale)."""
        named = list(trainer.model.named_parameters(prefix="image"))
        named += list(trainer.text_model.named_parameters(prefix="text"))
        named.append(("logit_scale", trainer.logit_scale))  # not inside either tower, also for an open_clip CLIP
        decay, no_decay, seen = [], [], set()
        for name, p in named:
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            exclude = p.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
            (no_decay if exclude else decay).append(p)
        return [{"params": no_decay, "weight_decay": 0.0},
                {"params": decay, "weight_decay": trainer.cfg.weight_decay}]

    def loss(self, trainer: "Trainer", idx: torch.Tensor, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        img = trainer.forward_model(views[0])
        texts = trainer._captions(idx.cpu().numpy())
        txt = trainer.forward_text(trainer._tokenizer(texts).to(trainer.device))
        # Rows that drew the same caption text are not each other's negatives (multi-positive batch). The id is a
        # checksum of the text, so equal captions on different ranks get equal ids once gathered.
        text_ids = torch.tensor([zlib.crc32(t.encode("utf-8")) for t in texts], device=img.device)
        return losses.clip_loss(trainer.gather(img), trainer.gather(txt),
                                trainer.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX),
                                text_ids=trainer.gather(text_ids))

    def after_step(self, trainer: "Trainer") -> None:
        # As open_clip: clamp the parameter itself, so past ln(100) its gradient never goes dead.
        with torch.no_grad():
            trainer.logit_scale.clamp_(0.0, math.log(LOGIT_SCALE_MAX))

    def checkpoint_tensors(self, trainer: "Trainer") -> dict[str, torch.Tensor]:
        out = {f"text.{k}": v for k, v in trainer.text_model.state_dict().items()}
        out["logit_scale"] = trainer.logit_scale.detach()
        return out

    def load_checkpoint(self, trainer: "Trainer", tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        trainer.text_model.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("text.")})
        with torch.no_grad():
            trainer.logit_scale.copy_(tensors["logit_scale"])
