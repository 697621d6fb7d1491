"""torchrun + DDP with gathered negatives: one distributed step equals one process on the whole batch.

The file doubles as the torchrun worker (``torchrun ... tests/core/test_distributed.py --worker OUT``): each rank
takes one real ``Trainer.step()`` per method and rank 0 writes its gradients. The reference, in the pytest
process, is written independently of the Trainer's loss code: the plain losses of core.losses on the
concatenation of the per-shard forward passes (per-shard because gloo has no SyncBatchNorm, see core.distributed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("simclr", "moco", "supcon", "clip", "triplet")
PER_RANK = 8
WORLD = 2


def _config(method: str):
    from core.augment import AugmentConfig
    from core.models import EncoderConfig
    from core.train import TrainConfig

    # Identity augmentation: the views are the images themselves, so the reference sees the same pixels.
    ident = AugmentConfig(crop=False, flip=False, color_jitter=False, grayscale=False)
    return TrainConfig(method=method, encoder=EncoderConfig(width=8, projection_hidden=32), projection_dim=16,
                       batch_size=PER_RANK, steps=3, augment=ident, probe_size=10, knn_reference=20,
                       eval_every=1000, snapshot_every=1000, queue_size=32, warmup_steps=0, mining="all")


def _dataset():
    from core.data import load_dataset

    return load_dataset("shapes", n=120, size=16, seed=3)


def _trainer(method: str, dataset):
    from core.train import Trainer

    t = Trainer(_config(method), dataset, device="cpu")
    t.train_set.caption_pool = None  # one fixed caption per image, so the reference can tokenise the same ones
    return t


def _grads(t) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": p.grad.detach().clone() for k, p in t.model.named_parameters()}
    if t.text_model is not None:
        out.update({f"text.{k}": p.grad.detach().clone() for k, p in t.text_model.named_parameters()})
        out["logit_scale"] = t.logit_scale.grad.detach().clone().reshape(1)
    return out


def _worker(out: Path) -> None:
    """One DDP step per method on this rank; rank 0 saves gradients, every rank its batch indices."""
    from safetensors.torch import save_file

    from core import distributed

    torch.set_num_threads(1)
    ctx = distributed.init_from_env("cpu")
    dataset = _dataset()
    for method in METHODS:
        t = distributed.make_distributed(_trainer(method, dataset), ctx)
        drawn = []
        sample = t._sample
        t._sample = lambda: drawn.append(sample()) or drawn[-1]
        record = t.step()
        tensors = {k: v.contiguous() for k, v in _grads(t).items()}
        tensors["idx"] = drawn[0]
        if t.queue is not None:
            tensors["queue"] = t.queue.tensor.contiguous()
        save_file(tensors, str(out / f"{method}.rank{ctx.rank}.safetensors"), metadata={"loss": repr(record.loss)})
    distributed.shutdown()


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CP_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    _torchrun([str(Path(__file__)), "--worker", str(out)], cwd=ROOT)
    return out


def _reference(method: str, shards: list[torch.Tensor]):
    """Single process, plain core.losses on the concatenated batch (rows: rank 0's, then rank 1's)."""
    from core import losses
    from core.augment import augment
    from core.models import momentum_update
    from core.methods.clip import LOGIT_SCALE_MAX as _LOGIT_SCALE_MAX

    t = _trainer(method, _dataset())
    cfg = t.cfg
    t.model.train()
    xs = [augment(t._images[i], cfg.augment) for i in shards]
    ys = torch.cat([t._labels[i] for i in shards])
    if method == "clip":
        t.text_model.train()
        img = torch.cat([t.model(x) for x in xs])
        texts = [t.train_set.captions[j] for i in shards for j in i.tolist()]
        ids = {text: n for n, text in enumerate(dict.fromkeys(texts))}  # equal captions are not negatives
        loss = losses.clip_loss(img, t.text_model(t._tokenizer(texts)), t.logit_scale.exp().clamp(max=_LOGIT_SCALE_MAX),
                                text_ids=[ids[text] for text in texts])
    elif method == "moco":
        from core.methods.moco import split_batch_forward as _split_batch_forward

        # Each rank runs its shard through the encoders in sub-batches, the keys in an order shuffled by its
        # sampler's generator (shuffling BN). Both ranks' generators are in the same state after the step's draw.
        t._sample()
        state = t._gen.get_state()
        q = torch.cat([_split_batch_forward(t.model, x) for x in xs])
        with torch.no_grad():
            momentum_update(t.key_model, t.model, cfg.momentum)
            keys = []
            for x in xs:
                t._gen.set_state(state)
                perm = torch.randperm(len(x), generator=t._gen)
                k_local = torch.empty(len(x), q.shape[1])
                k_local[perm] = _split_batch_forward(t.key_model, x[perm])
                keys.append(k_local)
            k = torch.cat(keys)
        loss = losses.info_nce(q, k, t.queue.tensor, cfg.temperature)
        t.queue.enqueue(k)
    else:
        z = [t.model(torch.cat([x, x])) for x in xs]  # one forward per shard over both views, as each rank does
        z1 = torch.cat([zi[: len(x)] for zi, x in zip(z, xs)])
        z2 = torch.cat([zi[len(x):] for zi, x in zip(z, xs)])
        if method == "simclr":
            loss = losses.nt_xent(z1, z2, cfg.temperature)
        elif method == "supcon":
            loss = losses.supcon(torch.stack([z1, z2], dim=1), ys, cfg.temperature)
        else:
            loss = losses.triplet_loss(torch.cat([z1, z2]), torch.cat([ys, ys]), cfg.margin, mining=cfg.mining)
    loss.backward()
    return float(loss.detach()), _grads(t), (t.queue.tensor if t.queue is not None else None)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_ddp_step_gradients_equal_one_process_on_the_whole_batch(ddp_run, method):
    from safetensors import safe_open

    ranks = []
    for r in range(WORLD):
        with safe_open(str(ddp_run / f"{method}.rank{r}.safetensors"), framework="pt") as f:
            ranks.append(({k: f.get_tensor(k) for k in f.keys()}, float(f.metadata()["loss"])))
    shards = [tensors["idx"] for tensors, _ in ranks]
    assert all(len(s) == PER_RANK for s in shards)
    assert not set(shards[0].tolist()) & set(shards[1].tolist()), "each rank must draw its own shard"

    ref_loss, ref_grads, ref_queue = _reference(method, shards)
    dist0 = ranks[0][0]
    assert ranks[0][1] == pytest.approx(ref_loss, rel=1e-5) == ranks[1][1]
    assert set(ref_grads) <= set(dist0)
    worst = 0.0
    for name, g in ref_grads.items():
        assert torch.allclose(dist0[name], ranks[1][0][name], atol=1e-6), f"{name} differs between ranks"
        worst = max(worst, float((dist0[name] - g).abs().max()))
        torch.testing.assert_close(dist0[name], g, rtol=1e-4, atol=1e-5, msg=f"{method}: gradient of {name}")
    assert worst < 1e-4
    print(f"{method}: max |grad difference| {worst:.2e}")
    assert any(float(g.abs().max()) > 1e-4 for g in ref_grads.values())  # a zero gradient would prove nothing
    if ref_queue is not None:  # MoCo: the queue holds every rank's keys, in rank order
        torch.testing.assert_close(dist0["queue"], ref_queue, rtol=1e-5, atol=1e-6)


def test_gather_is_identity_in_one_process():
    from core.distributed import gather_with_grad, init_from_env, make_distributed

    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
    ctx = init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend) == (0, 1, None)
    t = _trainer("simclr", _dataset())
    assert make_distributed(t, ctx) is t and t.shard == (0, 1) and t.forward_model is t.model


def test_too_big_a_global_batch_is_refused():
    from core.distributed import DistContext, make_distributed
    from core.errors import PlaygroundError

    t = _trainer("simclr", _dataset())
    with pytest.raises(PlaygroundError, match="training images per step"):
        make_distributed(t, DistContext(rank=0, world_size=64))


@pytest.mark.slow
def test_cli_under_torchrun_saves_a_checkpoint_the_app_loads(tmp_path):
    from core.train import Trainer

    cfg = _config("simclr").to_dict()
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    proc = _torchrun(["-m", "core.cli", "train", "--config", str(tmp_path / "cfg.json"), "--dataset", "shapes",
                      "--set", "n=120", "--set", "size=16", "--set", "seed=3", "--steps", "3", "--log-every", "1",
                      "--out", str(tmp_path / "run")], cwd=tmp_path)
    assert "world size 2" in proc.stdout
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["cfg.json", "run.json", "run.safetensors"]  # written once, by rank 0, no temp files left
    loaded = Trainer.load(tmp_path / "run.safetensors", device="cpu")
    assert loaded.step_count == 3 and [r.step for r in loaded.history] == [1, 2, 3]
    fresh = _trainer("simclr", _dataset())
    moved = [not torch.equal(a, b) for a, b in zip(loaded.model.parameters(), fresh.model.parameters())]
    assert any(moved), "three steps must change the weights"
    emb = loaded.embeddings()
    assert emb.vectors.shape == (len(loaded.heldout), loaded.model.feature_dim)
    assert np.isfinite(emb.vectors).all()


if __name__ == "__main__" and "--worker" in sys.argv:
    sys.path.insert(0, str(ROOT))
    _worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
