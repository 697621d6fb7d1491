"""Encoders and projection heads for contrastive learning.

A :class:`ContrastiveModel` is ``encoder -> features h (N, feature_dim) -> projector -> z (N, projection_dim)``,
the split of SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): the loss sees ``z``, downstream tasks (kNN, linear probes, the Explorer) usually use ``h``.

Three encoders:

* ``"small_cnn"``: a five-conv network sized for 8–64 px images on a CPU. Full resolution gets only
  ``width // 2`` channels and every later block halves the resolution with a stride-2 conv, so the costly
  early layers stay cheap; an adaptive average pool at the end makes any input size work.
* ``"fast_cnn"``: the same five convs and channels with the strides of the first two swapped, so no layer
  works at full resolution (24 px: 12 -> 12 -> 6 -> 6 -> 3). The full-resolution block with its BatchNorm is the
  costliest part of small_cnn's forward and backward on a CPU; without it the first lesson (SimCLR on 24 px
  shapes) needs about as many steps and each is cheaper (figures: benchmarks/RESULTS.md). A checkpoint names
  its arch.
* ``"resnet18"``: torchvision's ResNet-18 with the CIFAR stem (He et al. 2016; the 3x3 stride-1 stem without
  max-pool that SimCLR uses for 32 px images). Only the stem and the classifier are swapped out.

Callers pass float images in [0, 1] (uint8 is accepted and divided by 255); the per-channel normalisation
lives inside the model so no caller can forget it.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from core.device import pick_device

ARCHS: dict[str, str] = {
    "small_cnn": "Small CNN (5 conv layers, fast on CPU, 8–64 px images)",
    "fast_cnn": "Fast CNN (the small CNN from half resolution on: faster steps on a CPU, 16–64 px images)",
    "resnet18": "ResNet-18, CIFAR-style stem (11 M parameters, better with a GPU)",
}
SPACES = ("encoder", "projection")
SMALL_ARCHS = ("small_cnn", "fast_cnn")  # the two whose ``width`` sets the channels

# Normalisation constants: mean 0.5 / std 0.25 maps [0, 1] pixels to [-2, 2] with roughly unit variance
# (a uniform [0, 1] pixel has std 0.29). Dataset-agnostic on purpose: the app mixes shapes, digits and photos.
_PIXEL_MEAN = 0.5
_PIXEL_STD = 0.25


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder to build and how wide. JSON-safe through :meth:`to_dict` / :meth:`from_dict`.

    >>> EncoderConfig(arch="small_cnn", width=32).to_dict()["arch"]
    'small_cnn'
    """

    arch: str = "small_cnn"  # "small_cnn" (8–64 px) | "fast_cnn" (16–64 px) | "resnet18" (CIFAR-style ResNet-18)
    width: int = 32  # small/fast_cnn base channels: blocks use width/2, width, 2w, 2w, 4w; resnet18 keeps 64..512
    in_channels: int = 3  # 3 for RGB; core.data always repeats grey images to RGB
    projection_dim: int = 64  # size of z, what the contrastive loss sees
    projection_hidden: int = 256  # hidden layer of the MLP head (SimCLR uses an MLP, not a single Linear)

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or self.arch not in ARCHS:
            raise ValueError(f"Unknown encoder arch {self.arch!r}; choose one of {', '.join(map(repr, ARCHS))}.")
        limits = {"width": (4, 512), "in_channels": (1, 16), "projection_dim": (1, 4096),
                  "projection_hidden": (1, 8192)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            # bool is an int subclass; True as a width is a bug, not a setting
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"EncoderConfig.{name} must be a whole number, got {value!r}.")
            if not low <= value <= high:
                raise ValueError(f"EncoderConfig.{name} must be between {low} and {high}, got {value}.")
        if self.arch in SMALL_ARCHS and self.width % 2:
            raise ValueError(f"EncoderConfig.width must be even for {self.arch} (its first block uses width/2), "
                             f"got {self.width}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ValueError``, missing keys take defaults."""
        if not isinstance(d, dict):
            raise ValueError(f"EncoderConfig.from_dict needs a dict, got {type(d).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown EncoderConfig field(s) {unknown}; allowed: {sorted(known)}.")
        return cls(**d)

    @property
    def feature_dim(self) -> int:
        """Size of the encoder output h (what ``embed(space="encoder")`` returns)."""
        return 512 if self.arch == "resnet18" else 4 * self.width


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    # bias=False: the BatchNorm right after has its own shift
    return [nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _small_cnn(cfg: EncoderConfig) -> nn.Module:
    w = cfg.width
    # Resolutions for a 32 px input: 32 -> 16 -> 8 -> 8 -> 4 -> pool. Striding instead of max-pooling and only
    # w/2 channels at full resolution made a SimCLR step on 2x256 32 px images (2 CPU cores) about 2x faster
    # than a conv(32)-pool-conv(64)-pool-conv(128) net, with two more conv layers. fast_cnn strides the first
    # conv instead of the second: 32 -> 16 -> 16 -> 8 -> 4, the same parameters, no full-resolution activations.
    first, second = (2, 1) if cfg.arch == "fast_cnn" else (1, 2)
    return nn.Sequential(
        *_conv_bn_relu(cfg.in_channels, w // 2, stride=first),
        *_conv_bn_relu(w // 2, w, stride=second),
        *_conv_bn_relu(w, 2 * w, stride=2),
        *_conv_bn_relu(2 * w, 2 * w),
        *_conv_bn_relu(2 * w, 4 * w, stride=2),
        nn.AdaptiveAvgPool2d(1),  # any input size -> (N, 4w, 1, 1)
        nn.Flatten(),  # (N, 4w)
    )


def _resnet18_cifar(cfg: EncoderConfig) -> nn.Module:
    from torchvision.models import resnet18  # lazy: torchvision import is not free

    net = resnet18(weights=None)
    # CIFAR stem: 3x3 stride-1 conv, no max-pool, so 32 px images keep 32x32 maps in layer1
    net.conv1 = nn.Conv2d(cfg.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()  # forward now returns the pooled (N, 512) features
    return net


def _projection_head(feature_dim: int, hidden: int, out_dim: int) -> nn.Module:
    # SimCLR's g(.): Linear-BN-ReLU-Linear
    return nn.Sequential(
        nn.Linear(feature_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


class ContrastiveModel(nn.Module):
    """Encoder + MLP projection head; inputs are images in [0, 1].

    ``forward(x)`` returns the projection z used by losses. Shape: (N, C, H, W) -> (N, projection_dim).
    ``encode(x)`` returns encoder features h with gradients. Shape: (N, C, H, W) -> (N, feature_dim).
    ``embed(x, space=...)`` is the no-grad, eval-mode, batched version for analysis.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_dim = cfg.feature_dim
        # non-persistent: constants, kept out of checkpoints so the normalisation can change without
        # breaking old files
        self.register_buffer("pixel_mean", torch.full((1, cfg.in_channels, 1, 1), _PIXEL_MEAN), persistent=False)
        self.register_buffer("pixel_std", torch.full((1, cfg.in_channels, 1, 1), _PIXEL_STD), persistent=False)
        self.encoder = _small_cnn(cfg) if cfg.arch in SMALL_ARCHS else _resnet18_cifar(cfg)
        self.projector = _projection_head(self.feature_dim, cfg.projection_hidden, cfg.projection_dim)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"Expected a batch of images shaped (N, C, H, W), got {shape}.")
        if x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"The model takes {self.cfg.in_channels}-channel images, got {x.shape[1]} channels.")
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        x = (x - self.pixel_mean) / self.pixel_std  # (N, C, H, W)
        if x.device.type in ("cpu", "cuda"):
            # NHWC lets oneDNN / cuDNN pick their fast kernels (about 1.7x on CPU for small_cnn); MPS is left alone
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features h, with gradients. Shape: (N, C, H, W) -> (N, feature_dim)."""
        return self.encoder(self._prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection z = g(f(x)). Shape: (N, C, H, W) in [0, 1] -> (N, projection_dim)."""
        return self.projector(self.encode(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, space: str = "encoder", normalize: bool = False,
              batch_size: int = 1024) -> torch.Tensor:
        """Vectors for analysis: eval mode (BatchNorm running stats), no gradients, in batches.

        The model's train/eval mode is restored afterwards, so a trainer can call this mid-training.
        ``x`` may live on any device; batches are moved to the model's device and the result stays there.
        Shape: (N, C, H, W) -> (N, feature_dim) for ``space="encoder"``, (N, projection_dim) for "projection".
        """
        if space not in SPACES:
            raise ValueError(f"Unknown embedding space {space!r}; use 'encoder' or 'projection'.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}.")
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError("embed expects a batch of images shaped (N, C, H, W).")
        was_training = self.training
        self.eval()
        try:
            out_dim = self.feature_dim if space == "encoder" else self.cfg.projection_dim
            chunks = []
            for start in range(0, x.shape[0], batch_size):
                batch = x[start:start + batch_size].to(self.device, non_blocking=True)
                h = self.encode(batch)  # (B, feature_dim)
                chunks.append(h if space == "encoder" else self.projector(h))
            if not chunks:
                return torch.empty(0, out_dim, device=self.device)
            out = torch.cat(chunks)  # (N, out_dim)
            if normalize:
                out = nn.functional.normalize(out, dim=1)
            return out
        finally:
            self.train(was_training)


def build_model(cfg: EncoderConfig | None = None, *, device: torch.device | str | None = None) -> ContrastiveModel:
    """Build a freshly initialised :class:`ContrastiveModel` on ``device`` (default ``pick_device()``).

    >>> m = build_model(EncoderConfig(width=16), device="cpu")
    >>> m(torch.rand(4, 3, 32, 32)).shape
    torch.Size([4, 64])
    """
    cfg = EncoderConfig() if cfg is None else cfg
    if not isinstance(cfg, EncoderConfig):
        raise ValueError(f"build_model needs an EncoderConfig, got {type(cfg).__name__}.")
    device = torch.device(device) if device is not None else pick_device()
    return ContrastiveModel(cfg).to(device)


def momentum_copy(model: ContrastiveModel) -> ContrastiveModel:
    """A frozen deep copy for a momentum (EMA) encoder, as in MoCo (He et al. 2020) and BYOL.

    All parameters have ``requires_grad=False``; update it with :func:`momentum_update`.
    """
    target = copy.deepcopy(model)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """EMA step ``theta_t <- m * theta_t + (1 - m) * theta_o`` for parameters; buffers are copied.

    Buffers (BatchNorm running statistics, the batch counter) are copied from the online model rather than
    averaged, so the target's statistics follow the encoder it tracks. ``momentum`` in [0, 1]: 1 freezes
    the target, 0 makes it a copy.
    """
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be a number between 0 and 1, got {momentum!r}.")
    t_params, o_params = dict(target.named_parameters()), dict(online.named_parameters())
    t_bufs, o_bufs = dict(target.named_buffers()), dict(online.named_buffers())
    if t_params.keys() != o_params.keys() or t_bufs.keys() != o_bufs.keys() \
            or any(t_params[k].shape != o_params[k].shape for k in t_params):
        raise ValueError("momentum_update needs two models of the same architecture (use momentum_copy).")
    weight = 1.0 - float(momentum)
    for name, t in t_params.items():
        t.lerp_(o_params[name], weight)  # t + (1 - m)(o - t) = m t + (1 - m) o
    for name, tb in t_bufs.items():
        tb.copy_(o_bufs[name])


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
