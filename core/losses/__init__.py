"""Contrastive losses: plain functions do the maths, ``nn.Module`` wrappers hold the settings.

Each loss exists twice, in the open_clip style: a function (``nt_xent``, ``info_nce``, ...) that takes
tensors and settings, and a module (``NTXentLoss``, ``InfoNCELoss``, ...) that stores the settings in
``__init__`` and calls the function in ``forward``. Tests and the trainer call the same code.

Conventions shared by every loss here:

- Embeddings are L2-normalised inside the loss (a zero vector stays zero), so callers may pass raw
  projector outputs. Cosine similarity is then a dot product and Euclidean distances lie in [0, 2].
  The one exception is :func:`vicreg`, whose variance term needs the raw scale (unit vectors in D
  dimensions cannot reach a standard deviation of 1 per dimension).
- Every tensor op runs on the device of the inputs; inputs on different devices are refused.
- Inputs of different floating dtypes are promoted to a common dtype.
- Illegal arguments raise :class:`core.errors.PlaygroundError` (a ``ValueError``) whose message says
  what was wrong and what is allowed.
- A loss with nothing to learn from (a triplet batch of one class, SupCon with no positive pair)
  returns a zero that is still connected to the inputs, so ``loss.backward()`` works and gives zero
  gradients instead of NaN.

One module a family: :mod:`~core.losses.contrastive` (NT-Xent, InfoNCE + queue, SupCon, CLIP),
:mod:`~core.losses.metric` (triplet with mining, margin contrastive), :mod:`~core.losses.non_contrastive`
(VICReg), :mod:`~core.losses.diagnostics` (similarity read-outs) and :mod:`~core.losses.validation` (the
argument checks they share). Callers use the names re-exported here (``losses.nt_xent``), so patching
``core.losses.nt_xent`` reaches every trainer.
"""
from core.losses.contrastive import (ClipLoss, FeatureQueue, InfoNCELoss, NTXentLoss, SupConLoss, clip_loss,
                                     info_nce, nt_xent, supcon)
from core.losses.diagnostics import positive_negative_similarities
from core.losses.metric import (DISTANCES, MINING_MODES, MarginContrastiveLoss, TripletLoss, margin_contrastive,
                                triplet_loss)
from core.losses.non_contrastive import (VICREG_COVARIANCE, VICREG_INVARIANCE, VICREG_VARIANCE, VICRegLoss, vicreg,
                                         vicreg_terms)

__all__ = [
    "DISTANCES",
    "MINING_MODES",
    "ClipLoss",
    "FeatureQueue",
    "InfoNCELoss",
    "MarginContrastiveLoss",
    "NTXentLoss",
    "SupConLoss",
    "TripletLoss",
    "VICRegLoss",
    "clip_loss",
    "info_nce",
    "margin_contrastive",
    "nt_xent",
    "positive_negative_similarities",
    "supcon",
    "triplet_loss",
    "vicreg",
    "vicreg_terms",
]
