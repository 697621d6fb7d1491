"""Losses without negatives: VICReg (Bardes, Ponce & LeCun 2022), whose variance and covariance terms keep the
embedding from collapsing where a contrastive loss would push negatives apart."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import PlaygroundError
from core.losses.validation import check_pair, check_positive


# ---------------------------------------------------------------------------------------------
# VICReg: no negatives
# ---------------------------------------------------------------------------------------------

# Bardes, Ponce & LeCun 2022, section 4.2: lambda = mu = 25, nu = 1, gamma = 1, epsilon = 1e-4.
VICREG_INVARIANCE = 25.0
VICREG_VARIANCE = 25.0
VICREG_COVARIANCE = 1.0


def _off_diagonal_square_sum(c: torch.Tensor) -> torch.Tensor:
    return c.square().sum() - c.diagonal().square().sum()


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0,
                 eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg's three unweighted terms (Bardes et al. 2022): (invariance, variance, covariance).

    - invariance ``s``: mean squared difference of the two views, over the batch and the D dimensions;
    - variance ``v``: per view, the mean over dimensions of ``relu(gamma - sqrt(Var(z_d) + eps))`` (unbiased
      variance over the batch), summed over the two views: it is zero once every dimension varies by gamma;
    - covariance ``c``: per view, the sum of squared off-diagonal entries of the batch covariance divided by
      D, summed over the two views: zero when the dimensions are decorrelated.

    Embeddings are NOT normalised: the variance term needs their raw scale. Collapse (every row equal) gives
    ``s = 0``, ``v = 2 (gamma - sqrt(eps))`` and ``c = 0``: the variance term is what forbids it.

    Shape:
        z1, z2: (N, D) with N >= 2 (a variance needs two samples). Returns three scalars.

    >>> z = torch.ones(4, 3)
    >>> [round(t.item(), 4) for t in vicreg_terms(z, z)]  # collapsed: only the variance term is left
    [0.0, 1.98, 0.0]
    """
    z1, z2 = check_pair(z1, z2, "z1", "z2")
    n, d = z1.shape
    if n < 2:
        raise PlaygroundError(f"VICReg needs a batch of at least 2 samples to measure a variance, got {n}.")
    gamma = float(check_positive(gamma, "gamma", "VICReg uses gamma = 1, the target standard deviation."))
    eps = float(check_positive(eps, "eps", "VICReg uses eps = 1e-4."))
    invariance = F.mse_loss(z1, z2)  # mean over N x D
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        std = torch.sqrt(z.var(dim=0) + eps)  # (D,) unbiased, as torch.var and the paper's pseudocode
        variance = variance + F.relu(gamma - std).mean()
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / (n - 1)  # (D, D)
        covariance = covariance + _off_diagonal_square_sum(cov) / d
    return invariance, variance, covariance


def vicreg(z1: torch.Tensor, z2: torch.Tensor, invariance: float = VICREG_INVARIANCE,
           variance: float = VICREG_VARIANCE, covariance: float = VICREG_COVARIANCE, gamma: float = 1.0,
           eps: float = 1e-4) -> torch.Tensor:
    """VICReg, variance-invariance-covariance regularisation (Bardes, Ponce & LeCun 2022).

    ``loss = invariance * s + variance * v + covariance * c`` with the terms of :func:`vicreg_terms` and the
    paper's weights 25 / 25 / 1 as defaults. There are no negatives: the invariance term pulls the two views
    of each sample together, and the variance and covariance terms keep the batch spread over every
    dimension, which is what stops the collapse a pull alone leads to. Setting ``variance`` and
    ``covariance`` to 0 leaves that pull alone (the Loss Lab's collapse lesson).

    Shape:
        z1, z2: (N, D) raw (not normalised) embeddings of two views, N >= 2. Returns a scalar.

    Args:
        invariance, variance, covariance: the weights lambda, mu, nu (>= 0).
        gamma: the target standard deviation per dimension; eps: keeps the square root's gradient finite.

    >>> z = torch.ones(4, 3)
    >>> round(vicreg(z, z).item(), 2)  # 25 x (1 - sqrt(1e-4)) x 2 views
    49.5
    """
    weights = {"invariance": invariance, "variance": variance, "covariance": covariance}
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise PlaygroundError(f"The VICReg weight {name} must be a finite number of at least 0, got {w!r}; "
                                  "the paper uses 25 (invariance), 25 (variance) and 1 (covariance).")
    s, v, c = vicreg_terms(z1, z2, gamma=gamma, eps=eps)
    return invariance * s + variance * v + covariance * c


class VICRegLoss(nn.Module):
    """Module form of :func:`vicreg` (Bardes et al. 2022), the weights fixed at construction.

    Shape: forward(z1 (N, D), z2 (N, D)) -> scalar.

    >>> loss = VICRegLoss()
    >>> round(loss(torch.ones(2, 3), torch.ones(2, 3)).item(), 2)
    49.5
    """

    def __init__(self, invariance: float = VICREG_INVARIANCE, variance: float = VICREG_VARIANCE,
                 covariance: float = VICREG_COVARIANCE, gamma: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__()
        self.invariance, self.variance, self.covariance = invariance, variance, covariance
        self.gamma, self.eps = gamma, eps
        vicreg(torch.ones(2, 1), torch.ones(2, 1), invariance, variance, covariance, gamma, eps)  # checks them

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return vicreg(z1, z2, self.invariance, self.variance, self.covariance, self.gamma, self.eps)

    def extra_repr(self) -> str:
        return f"invariance={self.invariance}, variance={self.variance}, covariance={self.covariance}"


