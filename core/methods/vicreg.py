"""VICReg: variance-invariance-covariance regularisation, a method without negatives (Bardes et al. 2022)."""
from __future__ import annotations

from typing import Any

import torch

from core import losses
from core.methods.base import TwoViewMethod


class VICReg(TwoViewMethod):
    """The two views of an image are pulled together (invariance) while every projection dimension keeps a
    standard deviation of at least 1 over the batch (variance) and the dimensions stay decorrelated
    (covariance); no sample is ever pushed away from another. Weights 25 / 25 / 1 as in the paper. The loss
    acts on the raw projections (not normalised), as the variance term needs their scale."""

    key = "vicreg"
    name = "VICReg (no negatives)"
    paper = "Bardes, Ponce & LeCun 2022"
    order = 70
    uses_negatives = False
    description = ("No labels and no negatives. The two views of each image are pulled together, while a "
                   "variance term keeps every dimension spread over the batch and a covariance term keeps the "
                   "dimensions decorrelated: that, not negatives, stops the collapse (Bardes, Ponce & LeCun "
                   "2022).")
    loss_function = staticmethod(losses.vicreg)
    loss_module = losses.VICRegLoss

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, settings: Any,
                  generator: torch.Generator) -> torch.Tensor:
        return losses.vicreg(z1, z2)
