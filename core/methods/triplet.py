"""Triplet loss with online mining over both views, labels from a factor (Schroff et al. 2015)."""
from __future__ import annotations

from typing import Any

import torch

from core import losses
from core.methods.base import TwoViewMethod


class Triplet(TwoViewMethod):
    """Anchors, positives (same label) and negatives (another label) mined in the batch of 2N views."""

    key = "triplet"
    name = "Triplet"
    paper = "Schroff et al. 2015"
    order = 30
    needs_labels = True
    uses_margin = True
    description = ("Uses labels. An anchor is pulled towards an image of its class and pushed away from one of "
                   "another class until they are a margin apart (Schroff et al. 2015).")
    loss_function = staticmethod(losses.triplet_loss)
    loss_module = losses.TripletLoss

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, settings: Any,
                  generator: torch.Generator) -> torch.Tensor:
        return losses.triplet_loss(torch.cat([z1, z2]), torch.cat([labels, labels]), settings.margin,
                                   mining=settings.mining)
