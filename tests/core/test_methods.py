"""core.methods: one class per training method. Each method's loss on a fixed batch equals the core.losses function
called directly on embeddings computed here from the same views; the traits the pages read; the registry."""
from __future__ import annotations

import copy
import zlib

import pytest
import torch

from core import losses
from core.augment import augment
from core.methods import METHODS, Method, TwoViewMethod, method_for
from core.train import METHOD_NAMES, METHODS as METHOD_KEYS, SUPERVISED, USES_TEMPERATURE, TrainConfig, Trainer

TINY = dict(batch_size=16, steps=3, probe_size=20, knn_reference=50, queue_size=64, eval_every=1000,
            snapshot_every=1000, margin=0.4, temperature=0.3)


@pytest.fixture(scope="module")
def shapes(shapes_data):
    return shapes_data(200, 16)


def _reference(method: str, t: Trainer, idx: torch.Tensor) -> torch.Tensor:
    """The loss written out here from the views on: forward passes, then the core.losses function."""
    cfg = t.cfg
    x = t._images[idx]
    views = [augment(x, cfg.augment, t._aug_gen) for _ in range(METHODS[method].views)]
    y = t._labels[idx]
    n = len(idx)
    if method == "clip":
        img = t.model(views[0])
        texts = t._captions(idx.numpy())
        txt = t.text_model(t._tokenizer(texts))
        ids = torch.tensor([zlib.crc32(s.encode()) for s in texts])
        return losses.clip_loss(img, txt, t.logit_scale.exp().clamp(max=100.0), text_ids=ids)
    v1, v2 = views
    if method == "moco":
        q = torch.cat([t.model(c) for c in v1.chunk(2)])  # two sub-batches: shuffling BN
        key = copy.deepcopy(t.key_model)
        with torch.no_grad():
            for pk, pq in zip(key.parameters(), t.model.parameters()):
                pk.mul_(cfg.momentum).add_(pq.detach(), alpha=1 - cfg.momentum)
            perm = torch.randperm(n, generator=t._gen)
            k = torch.empty_like(q)
            k[perm] = torch.cat([key(c) for c in v2[perm].chunk(2)])
        return losses.info_nce(q, k, t.queue.tensor.clone(), cfg.temperature)
    z = t.model(torch.cat([v1, v2]))
    z1, z2 = z[:n], z[n:]
    if method == "simclr":
        return losses.nt_xent(z1, z2, cfg.temperature)
    if method == "supcon":
        return losses.supcon(torch.stack([z1, z2], dim=1), y, cfg.temperature)
    if method == "triplet":
        return losses.triplet_loss(torch.cat([z1, z2]), torch.cat([y, y]), cfg.margin, mining=cfg.mining)
    if method == "margin":
        perm = torch.randperm(n, generator=t._gen)
        partner = torch.tensor([i if i < n // 2 else int(perm[i]) for i in range(n)])
        return losses.margin_contrastive(z1, z2[partner], y == y[partner], cfg.margin)
    if method == "vicreg":
        return losses.vicreg(z1, z2, 25.0, 25.0, 1.0)
    raise AssertionError(f"no reference for {method}")


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_s_loss_is_its_loss_function_on_the_same_embeddings(method, shapes):
    t = Trainer(TrainConfig(method=method, **TINY), shapes, device="cpu")
    t.model.train()
    if t.text_model is not None:
        t.text_model.train()
    idx = torch.arange(16) * 3
    states = (t._gen.get_state(), t._aug_gen.get_state())
    key_before = copy.deepcopy(t.key_model.state_dict()) if t.key_model is not None else None
    queue_before = t.queue.tensor.clone() if t.queue is not None else None
    with torch.no_grad():
        want = _reference(method, t, idx)
    t._gen.set_state(states[0])
    t._aug_gen.set_state(states[1])
    if key_before is not None:
        t.key_model.load_state_dict(key_before)
    with torch.no_grad():
        got = t._loss(idx)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    if queue_before is not None:  # MoCo's loss used the queue as it was, then pushed this batch's keys
        assert not torch.equal(t.queue.tensor, queue_before)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_names_its_loss_function_and_module_and_they_agree(method):
    cls = METHODS[method]
    assert cls.loss_function is not None and getattr(losses, cls.loss_function.__name__) is cls.loss_function
    assert issubclass(cls.loss_module, torch.nn.Module) and getattr(losses, cls.loss_module.__name__) is cls.loss_module
    z1, z2 = torch.randn(8, 5, generator=torch.Generator().manual_seed(1)), torch.randn(
        8, 5, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    calls = {  # the function and the module on the same inputs
        "simclr": ((z1, z2, 0.5), (z1, z2), {"temperature": 0.5}),
        "moco": ((z1, z2, z2, 0.5), (z1, z2, z2), {"temperature": 0.5}),
        "triplet": ((torch.cat([z1, z2]), torch.cat([y, y]), 0.5), (torch.cat([z1, z2]), torch.cat([y, y])),
                    {"margin": 0.5}),
        "margin": ((z1, z2, y == y.flip(0), 0.5), (z1, z2, y == y.flip(0)), {"margin": 0.5}),
        "supcon": ((torch.stack([z1, z2], 1), y, 0.5), (torch.stack([z1, z2], 1), y), {"temperature": 0.5}),
        "clip": ((z1, z2, 10.0), (z1, z2), {"init_scale": 10.0, "learnable": False}),
        "vicreg": ((z1, z2), (z1, z2), {}),
    }
    fn_args, mod_args, kw = calls[method]
    assert cls.loss_module(**kw)(*mod_args).item() == pytest.approx(cls.loss_function(*fn_args).item(), rel=1e-6)


def test_the_registry_is_built_from_the_classes_and_the_old_names_derive_from_it():
    assert list(METHODS) == ["simclr", "moco", "triplet", "margin", "supcon", "clip", "vicreg"]
    assert all(issubclass(c, Method) and c.key == k for k, c in METHODS.items())
    assert METHOD_KEYS == tuple(METHODS)
    assert SUPERVISED == ("triplet", "margin", "supcon")
    assert USES_TEMPERATURE == ("simclr", "moco", "supcon")
    assert METHOD_NAMES["vicreg"] == METHODS["vicreg"].name
    assert [k for k, c in METHODS.items() if c.needs_captions] == ["clip"]
    assert [k for k, c in METHODS.items() if c.uses_margin] == ["triplet", "margin"]
    assert [k for k, c in METHODS.items() if not c.uses_negatives] == ["vicreg"]
    assert issubclass(METHODS["vicreg"], TwoViewMethod) and not issubclass(METHODS["moco"], TwoViewMethod)
    with pytest.raises(ValueError, match="simclr"):
        method_for("byol")
    with pytest.raises(ValueError, match="must be one of simclr"):
        TrainConfig(method="byol")


def test_a_second_class_with_a_taken_key_is_refused():
    with pytest.raises(ValueError, match="simclr"):
        type("Again", (TwoViewMethod,), {"key": "simclr"})


def test_vicreg_trains_without_collapse_checks_firing_and_resumes_exactly(shapes, tmp_path):
    """The seventh method through the whole Trainer: finite losses, the page's schedule of evaluations, and a
    checkpoint that resumes to the same losses as a run that never stopped."""
    cfg = TrainConfig(method="vicreg", **{**TINY, "steps": 6, "eval_every": 3})
    straight = Trainer(cfg, shapes, device="cpu")
    straight.run()
    assert [e.step for e in straight.evals] == [1, 3, 6]
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in straight.history)
    first = Trainer(cfg, shapes, device="cpu")
    first.run(4, callbacks=[])
    resumed = Trainer.load(first.save(tmp_path / "vicreg"), shapes, device="cpu")
    resumed.run(2, callbacks=[])
    assert [r.loss for r in resumed.history] == [r.loss for r in straight.history]
    assert "VICReg" in resumed.describe()
