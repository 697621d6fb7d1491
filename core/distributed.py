"""Training one :class:`core.train.Trainer` on several processes: ``torchrun`` + DistributedDataParallel.

Each process (rank) draws its own slice of one global batch, runs the encoder on it, and the contrastive
losses see the embeddings of *every* rank: :func:`gather_with_grad` concatenates them with an all-gather
whose backward pass is a reduce-scatter (as open_clip's ``gather_with_grad`` and lightly's ``GatherLayer``),
so gradients flow back to the rank that made each row. Every rank then computes the same global loss
(NT-Xent, InfoNCE with MoCo's queue fed the gathered keys, SupCon, CLIP, triplet, margin) and DDP averages
the parameter gradients; the result equals one process training on the concatenated batch
(tests/core/test_distributed.py checks it parameter by parameter).

Why the sum works: every rank holds the same loss L, so the reduce-scatter hands rank r ``W * dL/dz_r``
(W = world size) and DDP's mean over ranks gives ``sum_r dL/dz_r * dz_r/dtheta``, the full-batch gradient.
CLIP's learnable logit scale lives outside the DDP modules; its gradient is already the global one on
every rank (the loss sees all rows), so it needs no reduction.

BatchNorm: on CUDA the encoder's BatchNorm layers become ``SyncBatchNorm`` (statistics over the global
batch). On the CPU (gloo) PyTorch has no SyncBatchNorm, so each rank normalises with its own shard's
statistics ("ghost" BatchNorm, as in SimCLR's per-device BN); the test's single-process reference does the same.

Launch (see README "Scaling up")::

    torchrun --standalone --nproc_per_node=2 -m core.cli train --dataset shapes --steps 300 --out run.safetensors
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from core.device import pick_device
from core.errors import PlaygroundError

__all__ = ["DistContext", "init_from_env", "gather_with_grad", "make_distributed", "shutdown"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # "nccl" | "gloo"; None in a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise PlaygroundError(f"The environment variable {name}={raw!r} must be a whole number.") from None


def init_from_env(device: torch.device | str | None = None) -> DistContext:
    """Join the process group that ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK.

    Without those variables (a plain ``python -m core.cli train``) nothing is initialised and a
    single-process context is returned. The backend is NCCL on CUDA, gloo otherwise; each CUDA rank takes
    GPU ``local_rank``.
    """
    world = _env_int("WORLD_SIZE", 1)
    base = torch.device(device) if device is not None else pick_device()
    if world <= 1:
        return DistContext(device=base)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if base.type == "cuda":
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
        backend = "nccl"
    else:
        base = torch.device("cpu") if base.type != "cpu" else base  # MPS has no collective backend
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=base if backend == "nccl" else None)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       device=base, backend=backend)


def _all_gather_autograd():
    from torch.distributed import _functional_collectives as funcol

    # torch 2.14 renamed all_gather_tensor_autograd (now a deprecated alias) to all_gather_single_autograd.
    return getattr(funcol, "all_gather_single_autograd", None) or funcol.all_gather_tensor_autograd


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients.

    Shape: (B, ...) on each rank -> (world_size * B, ...), rank 0's rows first. The backward pass
    reduce-scatters (sums) the incoming gradient, so each rank receives the gradient of its own rows from
    every rank's loss. Integer tensors (labels) are gathered too, without gradient. A single process
    returns ``x`` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    out = _all_gather_autograd()(x.contiguous(), 0, dist.group.WORLD)
    # The functional collective returns an AsyncCollectiveTensor; wait so callers get a plain tensor.
    return out.wait() if hasattr(out, "wait") else out


def make_distributed(trainer, ctx: DistContext):
    """Turn a :class:`core.train.Trainer` built on ``ctx.device`` into one rank of a data-parallel run.

    Sets the trainer's hooks: ``forward_model`` / ``forward_text`` become DDP wrappers (the trainer keeps the
    plain modules for evaluation and :meth:`~core.train.Trainer.save`, so checkpoints have the same keys as
    single-process ones), ``gather`` becomes :func:`gather_with_grad`, and ``shard`` picks this rank's slice
    of each global draw. Augmentations get a per-rank seed. Returns the trainer.
    """
    if ctx.world_size <= 1:
        return trainer
    need = trainer.batch_size * ctx.world_size
    if need > len(trainer.train_set):
        raise PlaygroundError(
            f"{ctx.world_size} ranks x batch {trainer.batch_size} need {need} training images per step, but the "
            f"training split has {len(trainer.train_set)}; use a smaller batch size or a bigger dataset."
        )
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    if ctx.device.type == "cuda":
        # Same Parameter objects, so the optimizer built by the Trainer still owns them.
        trainer.model = nn.SyncBatchNorm.convert_sync_batchnorm(trainer.model)
    from torch.nn.parallel import DistributedDataParallel as DDP

    trainer.forward_model = DDP(trainer.model, device_ids=device_ids)
    if trainer.text_model is not None:
        trainer.forward_text = DDP(trainer.text_model, device_ids=device_ids)
    trainer.gather = gather_with_grad
    trainer.shard = (ctx.rank, ctx.world_size)
    # The batch draw stays identical on every rank (that is how the shards stay disjoint); the augmentation
    # draws must differ, or every rank would crop its images the same way.
    trainer._aug_gen.manual_seed(trainer.cfg.seed + 1 + 7919 * ctx.rank)
    return trainer


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
