"""Command line for the work that outgrows the app: ``python -m core.cli {train,embed} ...``.

``train`` runs :class:`core.train.Trainer` in one process, or under ``torchrun`` as one rank of a
DistributedDataParallel run (core.distributed); rank 0 writes the checkpoint the app opens (safetensors).

    torchrun --standalone --nproc_per_node=2 -m core.cli train --dataset shapes --steps 300 --out runs/simclr
    python -m core.cli train --method supcon --dataset photos/ --set size=64 --batch-size 64 --out runs/sup

``embed`` embeds a folder, zip or CSV of image paths with a checkpoint on Ray Data (core.ray_embed) and
writes Parquet shards that the Explorer loads (core.batch_embed.read_shards):

    python -m core.cli embed images/ --checkpoint runs/simclr.safetensors --out shards/ [--address ray://head:10001]
    python -m core.cli merge shards/ --out vectors.npz      # one file for the Explorer's upload
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import PlaygroundError
from core.settings_schema import METHOD_NAMES


def _options(pairs: list[str]) -> dict:
    """``["n=2000", "size=32"]`` -> ``{"n": 2000, "size": 32}`` (values parsed as JSON when they can be)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PlaygroundError(f"--set takes key=value, got {pair!r}.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _train_config(args: argparse.Namespace):
    from dataclasses import replace

    from core.train import TrainConfig, default_preset

    if args.config:
        cfg = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    else:
        cfg = default_preset()
    changes = {k: v for k, v in {
        "method": args.method, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "temperature": args.temperature, "seed": args.seed, "eval_every": args.eval_every,
    }.items() if v is not None}
    return replace(cfg, **changes)


def train(args: argparse.Namespace) -> Path | None:
    """Train (one rank of) a run and let rank 0 save it. Returns the checkpoint path on rank 0."""
    from core import distributed
    from core.data import load_dataset
    from core.train import Trainer

    ctx = distributed.init_from_env(args.device)
    try:
        cfg = _train_config(args)
        dataset = load_dataset(args.dataset, **_options(args.set))
        trainer = distributed.make_distributed(Trainer(cfg, dataset, device=ctx.device), ctx)

        def report(record) -> None:
            if ctx.is_main and (record.step % args.log_every == 0 or record.step == cfg.steps):
                print(f"step {record.step}/{cfg.steps} loss {record.loss:.4f} ({record.seconds:.1f} s)", flush=True)

        class Report:  # a run callback beside the default evaluations and snapshots
            def on_step(self, t, record) -> None:
                report(record)

        trainer.run(callbacks=[*trainer.default_callbacks(), Report()])
        path = None
        if ctx.is_main:
            path = trainer.save(args.out)
            last = trainer.evals[-1] if trainer.evals else None  # the run's own end-of-run evaluation
            knn = (last if last is not None and last.step == trainer.step_count else trainer.evaluate()).knn
            print(f"saved {path} (world size {ctx.world_size}); held-out kNN "
                  + ", ".join(f"{k} {v:.3f}" for k, v in knn.items()), flush=True)
        distributed.barrier()
        return path
    finally:
        distributed.shutdown()


def embed(args: argparse.Namespace) -> None:
    from core.ray_embed import run_embed_job

    result = run_embed_job(args.source, args.checkpoint, args.out, address=args.address, size=args.size,
                           space=args.space, actors=args.actors, batch_size=args.batch_size)
    print(result.summary(), flush=True)


def merge(args: argparse.Namespace) -> Path:
    """Join a job's shards into one .npz the Explorer's upload reads (core.embed.EmbeddingSet.from_file)."""
    from core.batch_embed import read_shards

    emb = read_shards(args.shards)
    out = Path(args.out).with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(emb.to_npz_bytes())
    tmp.replace(out)
    print(f"wrote {out}: {len(emb):,} vectors of {emb.dim} numbers", flush=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.cli", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (under torchrun: one DDP rank)")
    t.add_argument("--dataset", default="shapes", help="built-in name or a folder / zip / CSV path")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. n=2000 or size=64 (repeatable)")
    t.add_argument("--config", help="a TrainConfig JSON file (e.g. a checkpoint's .json sidecar's 'config')")
    t.add_argument("--method", help=" | ".join(METHOD_NAMES))
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int, help="images per rank per step (global batch = ranks x this)")
    t.add_argument("--lr", type=float)
    t.add_argument("--temperature", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--eval-every", type=int)
    t.add_argument("--device", help="cpu | cuda | mps (default: core.device.pick_device())")
    t.add_argument("--log-every", type=int, default=25)
    t.add_argument("--out", required=True, help="checkpoint path (.safetensors is added)")
    t.set_defaults(func=train)

    e = sub.add_parser("embed", help="embed a folder / zip / CSV of images on Ray Data into Parquet shards")
    e.add_argument("source", help="an image folder, a .zip of one, or a .csv / .txt of image paths")
    e.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint saved by the app or `train`")
    e.add_argument("--out", required=True, help="folder for the Parquet shards")
    e.add_argument("--address", help="Ray cluster address (default: a local Ray on this machine)")
    e.add_argument("--size", type=int, help="image side in pixels (default: the checkpoint's training size)")
    e.add_argument("--space", default="encoder", choices=("encoder", "projection"))
    e.add_argument("--actors", type=int, default=2, help="embedding actors (each holds one model copy)")
    e.add_argument("--batch-size", type=int, default=128)
    e.set_defaults(func=embed)

    m = sub.add_parser("merge", help="join Parquet shards into one .npz for the Explorer's upload")
    m.add_argument("shards", help="the folder `embed` wrote")
    m.add_argument("--out", required=True, help="the .npz to write")
    m.set_defaults(func=merge)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PlaygroundError as err:  # a user's mistake: one sentence, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
