"""SupCon: the supervised contrastive loss over both views (Khosla et al. 2020)."""
from __future__ import annotations

from typing import Any

import torch

from core import losses
from core.methods.base import TwoViewMethod


class SupCon(TwoViewMethod):
    """Every view of the same label is a positive; views of other labels are negatives."""

    key = "supcon"
    name = "SupCon"
    paper = "Khosla et al. 2020"
    order = 50
    needs_labels = True
    uses_temperature = True
    description = ("Uses labels. Every image of the same class in the batch counts as a positive, not only the "
                   "other view (Khosla et al. 2020).")
    loss_function = staticmethod(losses.supcon)
    loss_module = losses.SupConLoss

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, settings: Any,
                  generator: torch.Generator) -> torch.Tensor:
        return losses.supcon(torch.stack([z1, z2], dim=1), labels, settings.temperature)  # (N, 2, D)
