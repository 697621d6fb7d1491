"""SimCLR: NT-Xent over two augmented views of each image (Chen et al. 2020)."""
from __future__ import annotations

from typing import Any

import torch

from core import losses
from core.methods.base import TwoViewMethod


class SimCLR(TwoViewMethod):
    """Each view's positive is the other view of its image; the other 2N - 2 views of the batch are negatives."""

    key = "simclr"
    name = "SimCLR (NT-Xent)"
    paper = "Chen et al. 2020"
    order = 10
    uses_temperature = True
    description = ("No labels. Two augmented views of each image are pulled together; every other image in the "
                   "batch is a negative (NT-Xent loss, Chen et al. 2020).")
    loss_function = staticmethod(losses.nt_xent)
    loss_module = losses.NTXentLoss

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, settings: Any,
                  generator: torch.Generator) -> torch.Tensor:
        return losses.nt_xent(z1, z2, settings.temperature)
