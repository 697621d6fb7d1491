"""MoCo: InfoNCE against a FIFO queue of keys from a momentum encoder (He et al. 2020)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from core import losses
from core.methods.base import Method
from core.models import momentum_copy, momentum_update

if TYPE_CHECKING:
    from core.train import Trainer

# Shuffling BatchNorm on one device: the batch is run through each encoder in this many sub-batches, the key
# encoder's in a shuffled order, so a query and its key never share BatchNorm statistics (He et al. 2020, section
# 3.3; the single-device form of the split-batch substitute that Chen et al. 2020 describe for SimCLR's global BN).
MOCO_BN_SPLITS = 2


def split_batch_forward(model: nn.Module, x: torch.Tensor, splits: int = MOCO_BN_SPLITS) -> torch.Tensor:
    """``model`` over ``x`` in ``splits`` consecutive sub-batches, so BatchNorm sees each sub-batch alone.

    Shape: x (N, C, H, W) -> (N, D). Sub-batches smaller than 2 images are merged (BatchNorm needs two).
    """
    splits = max(1, min(splits, x.shape[0] // 2))
    return torch.cat([model(chunk) for chunk in x.chunk(splits)])


class MoCo(Method):
    """Queries from the encoder on view 1, keys from its momentum copy on view 2; the negatives are the queue of
    earlier keys (``queue_size`` 0: the other keys of the batch). State: ``trainer.key_model`` and
    ``trainer.queue``, both saved in checkpoints (``key.*``, ``queue.buffer`` and the queue's position)."""

    key = "moco"
    name = "MoCo (InfoNCE + queue)"
    paper = "He et al. 2020"
    order = 20
    uses_temperature = True
    description = ("No labels. Like SimCLR, but the negatives come from a queue of earlier batches, encoded by a "
                   "slowly moving copy of the model (He et al. 2020).")
    loss_function = staticmethod(losses.info_nce)
    loss_module = losses.InfoNCELoss

    def setup(self, trainer: "Trainer") -> None:
        cfg = trainer.cfg
        trainer.key_model = momentum_copy(trainer.model)
        if cfg.queue_size:
            trainer.queue = losses.FeatureQueue(cfg.projection_dim, cfg.queue_size, device=trainer.device)
            # As in the MoCo paper, start from random unit keys so the first steps have negatives.
            init = torch.randn(cfg.queue_size, cfg.projection_dim, generator=torch.Generator().manual_seed(cfg.seed))
            trainer.queue.enqueue(F.normalize(init, dim=1).to(trainer.device))

    def loss(self, trainer: "Trainer", idx: torch.Tensor, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        cfg = trainer.cfg
        v1, v2 = views
        n = len(idx)
        q = split_batch_forward(trainer.forward_model, v1)
        with torch.no_grad():
            momentum_update(trainer.key_model, trainer.model, cfg.momentum)
            # Shuffling BN: keys are computed on sub-batches of a shuffled order, then put back in place.
            perm = torch.randperm(n, generator=trainer._gen).to(trainer.device)
            k = torch.empty_like(q)
            k[perm] = split_batch_forward(trainer.key_model, v2[perm])
        q, k = trainer.gather(q), trainer.gather(k)  # the queue takes every rank's keys
        if trainer.queue is None:
            return losses.info_nce(q, k, None, cfg.temperature, batch_negatives=True)
        loss = losses.info_nce(q, k, trainer.queue.tensor, cfg.temperature)
        trainer.queue.enqueue(k)
        return loss

    def checkpoint_tensors(self, trainer: "Trainer") -> dict[str, torch.Tensor]:
        out = {f"key.{k}": v for k, v in trainer.key_model.state_dict().items()}
        if trainer.queue is not None:
            out["queue.buffer"] = trainer.queue._buffer
        return out

    def checkpoint_meta(self, trainer: "Trainer") -> dict[str, str]:
        if trainer.queue is None:
            return {}
        return {"queue": json.dumps({"next": trainer.queue._next, "count": trainer.queue._count})}

    def load_checkpoint(self, trainer: "Trainer", tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        trainer.key_model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("key.")})
        queue = trainer.queue
        if queue is not None:
            q = json.loads(meta.get("queue", "null")) or {"next": 0, "count": queue.size}
            nxt, count = int(q["next"]), int(q["count"])
            if not (0 <= nxt < queue.size and 0 <= count <= queue.size):
                raise ValueError("the MoCo queue's position is out of range")
            queue._buffer.copy_(tensors["queue.buffer"].to(trainer.device))
            queue._next, queue._count = nxt, count
