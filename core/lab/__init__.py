"""The Loss & Temperature Lab: a toy you can watch train, one batch taken apart, and presets that reproduce
known results. All maths here; ``pages/loss_lab.py`` only draws it.

Three parts, all built on :mod:`core.losses` (the same functions the real trainer uses), one module each:

- :mod:`core.lab.toy`: :class:`ToyTrainer` trains a tiny MLP that maps points of a few Gaussian classes onto the
  circle (2-D) or the sphere (3-D) with any of :data:`TOY_LOSSES`.
- :mod:`core.lab.anatomy`: :func:`anchor_breakdown` takes one anchor of an NT-Xent batch apart (its similarities,
  the softmax weights at a temperature and each negative's share of the gradient, Wang & Liu 2021);
  :func:`compare_losses` puts every loss on the very same batch, with which pairs carry gradient.
- :mod:`core.lab.presets`: :data:`PRESETS` are small seeded experiments (the toy, or :class:`core.train.Trainer`
  on the built-in shapes through :mod:`core.lab.shapes_runs`) that reproduce, or honestly fail to reproduce, a
  textbook claim; each returns a :class:`PresetResult`.
"""
from core.lab.anatomy import (COMPARED_LOSSES, TEMPERATURE_KEYS, AnchorBreakdown, LossOnBatch, anchor_breakdown,
                              compare_losses, hardest_negative_share, nt_xent_similarity_gradient)
from core.lab.presets import PRESETS, Panel, PresetResult, run_preset
from core.lab.shapes_runs import _RUNS, CHECK_EVERY, PRESET_DATA, PRESET_STEPS, Progress
from core.lab.toy import (TOY_LOSS_NAMES, TOY_LOSSES, TOY_METHODS, TOY_USES_MARGIN, TOY_USES_TEMPERATURE, ToyConfig,
                          ToyEval, ToyStep, ToyTrainer, alignment_loss, uniformity_loss)

__all__ = [
    "TOY_LOSSES", "TOY_LOSS_NAMES", "TOY_METHODS", "TOY_USES_TEMPERATURE", "TOY_USES_MARGIN", "ToyConfig",
    "ToyTrainer", "ToyStep", "ToyEval",
    "alignment_loss", "uniformity_loss", "nt_xent_similarity_gradient", "AnchorBreakdown", "anchor_breakdown",
    "hardest_negative_share", "LossOnBatch", "compare_losses", "PresetResult", "PRESETS", "run_preset",
]
