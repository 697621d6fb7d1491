"""Batch embedding of a big image folder on Ray Data (the optional extra in requirements-scale.txt).

The driver lists the images (core.batch_embed.list_images), Ray Data splits the list into blocks, a pool of
actors (:class:`EmbedActor`, each holding one model) runs core.batch_embed.embed_paths on batches, and the
workers write Parquet shards in the core.batch_embed layout. ``ray.init(address=...)`` is the only change
between this machine (Ray's local mode) and a cluster; the image paths must then be readable on every node
(a shared filesystem). Ray is imported inside the functions, so importing this module costs nothing.

Measured traps (FINDINGS.md): on 2 CPUs, actors at ``num_cpus=1`` starve Ray Data's read tasks and the job
hangs, so actors ask for a fraction of a CPU; the actor class lives in this module (a class defined in
``__main__`` cannot be rebuilt when an actor restarts); ``compute=ActorPoolStrategy(size=...)`` replaces the
deprecated ``concurrency=``.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["EmbedActor", "EmbedJobResult", "run_embed_job"]


class EmbedActor:
    """Ray Data UDF: one model per actor, ``__call__`` embeds a pyarrow batch of (id, path, label) rows.

    Returns the shard columns (core.batch_embed.SHARD_COLUMNS) for the readable images only; skipped rows are
    counted by the driver from what was written.
    """

    def __init__(self, checkpoint: str, size: int | None = None, space: str = "encoder", device: str | None = None):
        import torch

        from core.batch_embed import load_checkpoint_model

        torch.set_num_threads(max(1, int(os.environ.get("CP_ACTOR_THREADS", "1"))))
        self.model, trained_size = load_checkpoint_model(checkpoint, device=device)
        self.size = size or trained_size
        self.space = space

    def __call__(self, batch):
        from core.batch_embed import embed_paths, shard_table

        cols = batch.to_pydict()
        result = embed_paths(cols["path"], self.model, size=self.size, space=self.space)
        keep = np.flatnonzero(result.ok)
        kept = {k: [cols[k][i] for i in keep] for k in ("id", "path", "label")}
        vectors = result.vectors if len(keep) else np.zeros((0, self._dim()), dtype=np.float32)
        return shard_table(kept, vectors)

    def _dim(self) -> int:
        return self.model.feature_dim if self.space == "encoder" else self.model.cfg.projection_dim


@dataclass
class EmbedJobResult:
    out_dir: Path
    total: int  # images listed
    written: int  # rows in the shards
    shards: list[Path]
    skipped: list[str] = field(default_factory=list)  # ids of images that could not be embedded
    seconds: float = 0.0

    def summary(self) -> str:
        skipped = f", skipped {len(self.skipped)} unreadable" if self.skipped else ""
        return (f"embedded {self.written:,} of {self.total:,} images into {len(self.shards)} Parquet shard(s) "
                f"in {self.out_dir}{skipped} ({self.seconds:.1f} s)")


def run_embed_job(source: str | os.PathLike, checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *,
                  address: str | None = None, size: int | None = None, space: str = "encoder", actors: int = 2,
                  batch_size: int = 128, cpus_per_actor: float = 0.5, gpus_per_actor: float = 0,
                  init_options: dict | None = None) -> EmbedJobResult:
    """Embed every image under ``source`` with ``checkpoint`` on Ray Data; write Parquet shards to ``out_dir``.

    ``address``: a Ray cluster ("ray://head:10001", "auto"); None starts (or reuses) a local Ray.
    ``cpus_per_actor``: fractional by default so read tasks still get a CPU on a small machine.
    ``gpus_per_actor``: e.g. 1 on a GPU cluster (the actor then picks CUDA through core.device).
    ``init_options``: extra ``ray.init`` arguments (tests pass num_cpus and a small object store).
    A corrupt or missing image is skipped and listed in the result, never fatal.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from core.batch_embed import list_images
    from core.errors import PlaygroundError

    if actors < 1:
        raise PlaygroundError(f"actors = {actors} is not allowed; use at least 1.")
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and any(out.glob("*.parquet")):
        raise PlaygroundError(f"{out} already holds Parquet shards; choose an empty folder.")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_options or {}))
    with tempfile.TemporaryDirectory(prefix="cp-embed-") as tmp:
        refs = list_images(source, extract_to=tmp)
        if not refs:
            raise PlaygroundError(f"{source} holds no images with the extensions this app reads.")
        listing = pa.table({"id": [r.id for r in refs], "path": [r.path for r in refs],
                            "label": [r.label for r in refs]})
        try:
            ds = ray.data.from_arrow(listing).repartition(max(1, min(len(refs) // batch_size, 4 * actors)))
            ds = ds.map_batches(
                EmbedActor,
                fn_constructor_kwargs={"checkpoint": str(Path(checkpoint).resolve()), "size": size, "space": space},
                batch_size=batch_size, batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
            )
            ds.write_parquet(str(out))
        finally:
            if started:
                ray.shutdown()
    shards = sorted(out.glob("*.parquet"))
    written_ids = set()
    for f in shards:
        written_ids.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    skipped = [r.id for r in refs if r.id not in written_ids]
    return EmbedJobResult(out, len(refs), len(written_ids), shards, skipped, time.perf_counter() - t0)
