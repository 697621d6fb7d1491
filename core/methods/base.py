"""What every training method is: its traits, the state it adds to a trainer, its loss and its checkpoint part.

A method is a class (one file per method in this package), registered by defining it: subclassing
:class:`Method` with a ``key`` adds it to :data:`core.methods.METHODS`. The Trainer asks the class, never a
string tuple, whether the method needs labels, a temperature, a margin or captions.

The state a method adds (MoCo's key encoder and queue, CLIP's text tower and logit scale) lives on the trainer
under the attribute names the rest of the app reads (``trainer.key_model``, ``trainer.queue``,
``trainer.text_model``, ``trainer.logit_scale``); the method builds it (:meth:`Method.setup`), saves it
(:meth:`Method.checkpoint_tensors`) and restores it (:meth:`Method.load_checkpoint`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:  # the trainer imports this package; the annotation only names it
    from core.train import Trainer

_REGISTRY: dict[str, type["Method"]] = {}


class Method:
    """A training method. Subclasses set the class attributes and :meth:`loss`; the defaults fit a method that
    trains the encoder alone on two augmented views, with no state of its own."""

    key: ClassVar[str] = ""  # what TrainConfig.method, the URL and checkpoints store; "" for abstract bases
    name: ClassVar[str] = ""  # shown in the app, e.g. "SimCLR (NT-Xent)"
    paper: ClassVar[str] = ""  # the source, e.g. "Chen et al. 2020"
    description: ClassVar[str] = ""  # one or two sentences for the Train page: what it pulls, what it pushes
    order: ClassVar[int] = 100  # position in the app's method list
    needs_labels: ClassVar[bool] = False  # supervised: trains on a label factor of the dataset
    uses_temperature: ClassVar[bool] = False  # reads TrainConfig.temperature
    uses_margin: ClassVar[bool] = False  # reads TrainConfig.margin
    needs_captions: ClassVar[bool] = False  # needs a dataset with captions (image-text)
    uses_negatives: ClassVar[bool] = True  # False: nothing pushes samples apart except a regulariser
    views: ClassVar[int] = 2  # augmented views of each image the trainer draws for the loss
    loss_function: ClassVar[Callable[..., torch.Tensor] | None] = None  # from core.losses
    loss_module: ClassVar[type[nn.Module] | None] = None  # its nn.Module form

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.key:
            if cls.key in _REGISTRY and _REGISTRY[cls.key] is not cls:
                raise ValueError(f"Two training methods are called {cls.key!r}.")
            _REGISTRY[cls.key] = cls

    # ---------------------------------------------------------------- building
    def build_encoder(self, trainer: "Trainer") -> nn.Module:
        """The image model being trained (under the trainer's seed). Default: :func:`core.models.build_model`."""
        from core.models import build_model

        return build_model(trainer.cfg.encoder_config, device=trainer.device)

    def setup(self, trainer: "Trainer") -> None:
        """Build the state this method adds to ``trainer`` (under the trainer's seed, after the encoder)."""

    def param_groups(self, trainer: "Trainer") -> list[dict]:
        """AdamW's parameter groups. Default: the encoder, with the config's weight decay."""
        return [{"params": list(trainer.model.parameters()), "weight_decay": trainer.cfg.weight_decay}]

    # ---------------------------------------------------------------- training
    def loss(self, trainer: "Trainer", idx: torch.Tensor, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The loss of one step on the batch ``idx`` (B,) with its ``views`` (``self.views`` tensors, each
        (B, C, H, W) floats). Runs through ``trainer.forward_model`` and gathers rows with ``trainer.gather``
        (both identities in one process; DDP wrappers under torchrun)."""
        raise NotImplementedError

    def after_step(self, trainer: "Trainer") -> None:
        """Called after each optimiser step (e.g. CLIP clamps its logit scale)."""

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_tensors(self, trainer: "Trainer") -> dict[str, torch.Tensor]:
        """The method's own state as named tensors for a checkpoint (the encoder is saved by the trainer)."""
        return {}

    def checkpoint_meta(self, trainer: "Trainer") -> dict[str, str]:
        """The method's own state that is not a tensor, as strings for the checkpoint's metadata."""
        return {}

    def load_checkpoint(self, trainer: "Trainer", tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        """Restore what :meth:`checkpoint_tensors` and :meth:`checkpoint_meta` wrote."""


class TwoViewMethod(Method):
    """A method whose loss is a function of the two views' projections (and the labels): one forward pass over
    both views, so BatchNorm sees 2B images as in SimCLR, then :meth:`pair_loss`. The Loss Lab's toy calls
    :meth:`pair_loss` on its own embeddings, so the toy and the trainer share the loss code."""

    def loss(self, trainer: "Trainer", idx: torch.Tensor, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        v1, v2 = views
        n = len(idx)
        z = trainer.forward_model(torch.cat([v1, v2]))  # (2B, D)
        z1, z2 = trainer.gather(z[:n]), trainer.gather(z[n:])
        y = trainer.gather(trainer._labels[idx])
        return self.pair_loss(z1, z2, y, trainer.cfg, trainer._gen)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, settings: Any,
                  generator: torch.Generator) -> torch.Tensor:
        """The loss on projections ``z1``, ``z2`` (N, D) of two views and ``labels`` (N,). ``settings`` is any
        object with the config fields the method reads (``temperature``, ``margin``, ``mining``: a
        TrainConfig or the toy's ToyConfig); ``generator`` serves any random draw (CPU)."""
        raise NotImplementedError
