"""Margin contrastive loss on view pairs (Hadsell, Chopra & LeCun 2006)."""
from __future__ import annotations

from typing import Any

import torch

from core import losses
from core.methods.base import TwoViewMethod


def margin_partners(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Each sample's partner: itself (its other view) for the first half, a random sample for the rest.

    Shape: (n,) indices. One ``randperm`` from ``generator`` (CPU), so a seeded run draws the same partners."""
    perm = torch.randperm(n, generator=generator).to(device)
    ar = torch.arange(n, device=device)
    return torch.where(ar < n // 2, ar, perm)


class Margin(TwoViewMethod):
    """View 1 of each image against view 2 of a partner: pulled together when they share a label, pushed apart
    until the margin when they do not."""

    key = "margin"
    name = "Margin contrastive"
    paper = "Hadsell et al. 2006"
    order = 40
    needs_labels = True
    uses_margin = True
    description = ("Uses labels. Pairs of the same class are pulled together; pairs of different classes are "
                   "pushed apart until they are a margin apart (Hadsell, Chopra & LeCun 2006).")
    loss_function = staticmethod(losses.margin_contrastive)
    loss_module = losses.MarginContrastiveLoss

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, settings: Any,
                  generator: torch.Generator) -> torch.Tensor:
        partner = margin_partners(len(labels), generator, z1.device)
        return losses.margin_contrastive(z1, z2[partner], labels == labels[partner], settings.margin)
