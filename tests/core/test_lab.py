"""core.lab: the anchor breakdown against autograd through core.losses, the toy's determinism and job contract,
the loss comparison against direct calls and brute-force mining, and each preset's direction of effect."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import lab, losses
from core.errors import PlaygroundError
from core.metrics import alignment, uniformity


def _batch(n: int = 12, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z1 = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    z2 = F.normalize(z1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 3, (n,), generator=g).numpy()
    return z1, z2, labels


@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_share_matches_autograd_through_info_nce(temperature, seed):
    """One NT-Xent anchor is InfoNCE with one query, its positive as key and every other embedding as the queue.
    For unit keys n_k, d(q . n_k / |n_k|) / d n_k = q - s_k n_k, so <dl/dn_k, q> = (1 - s_k^2) dl/ds_k."""
    z1, z2, _ = _batch(seed=seed)
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    anchor = 3 + seed
    pos = (anchor + n) % (2 * n)
    negs = [k for k in range(2 * n) if k not in (anchor, pos)]
    key = z[pos:pos + 1].clone().requires_grad_(True)
    queue = z[negs].clone().requires_grad_(True)
    loss = losses.info_nce(z[anchor:anchor + 1], key, queue, temperature)
    g_key, g_queue = torch.autograd.grad(loss, [key, queue])
    q = z[anchor]
    s_neg = queue.detach() @ q
    ds_neg = (g_queue @ q) / (1 - s_neg.square())  # (2N - 2,) dl/ds_k from autograd
    s_pos = key.detach()[0] @ q
    ds_pos = float(g_key[0] @ q / (1 - s_pos.square()))

    bd = lab.anchor_breakdown(z1, z2, anchor, temperature)
    assert bd.loss == pytest.approx(float(loss.detach()), rel=1e-9)
    by_index = dict(zip(bd.index.tolist(), bd.grad.tolist()))
    np.testing.assert_allclose([by_index[k] for k in negs], ds_neg.numpy(), rtol=1e-7, atol=1e-10)
    assert by_index[pos] == pytest.approx(ds_pos, rel=1e-7)
    share = dict(zip(bd.index.tolist(), bd.share.tolist()))
    np.testing.assert_allclose([share[k] for k in negs], (ds_neg / ds_neg.sum()).numpy(), rtol=1e-7)
    assert share[pos] == 0.0


def test_per_anchor_losses_average_to_nt_xent():
    z1, z2, _ = _batch(n=10)
    per_anchor = [lab.anchor_breakdown(z1, z2, i, 0.3).loss for i in range(20)]
    assert np.mean(per_anchor) == pytest.approx(float(losses.nt_xent(z1, z2, 0.3)), rel=1e-9)


def test_breakdown_is_sorted_and_marks_positive_and_false_negatives():
    z1, z2, y = _batch(n=16)
    bd = lab.anchor_breakdown(z1, z2, 2, 0.1, y)
    assert np.all(np.diff(bd.similarity) <= 1e-12)
    assert bd.is_positive.sum() == 1 and bd.index[bd.is_positive][0] == 18
    assert bd.weight.sum() == pytest.approx(1.0) and bd.share.sum() == pytest.approx(1.0)
    yy = np.concatenate([y, y])
    expected_false = {k for k in range(32) if k not in (2, 18) and yy[k] == yy[2]}
    assert set(bd.index[bd.same_class].tolist()) == expected_false


def test_lower_temperature_focuses_the_push_on_the_hardest_negative():
    z1, z2, _ = _batch(n=32, d=8)
    hot, cold = lab.anchor_breakdown(z1, z2, 0, 1.0), lab.anchor_breakdown(z1, z2, 0, 0.05)
    hardest = int(np.argmax(np.where(hot.is_positive, -np.inf, hot.similarity)))
    assert cold.share[hardest] > 3 * hot.share[hardest]
    assert cold.effective_negatives < hot.effective_negatives
    assert lab.hardest_negative_share(z1, z2, 0.05) > lab.hardest_negative_share(z1, z2, 1.0)


def test_hardest_negative_share_is_the_mean_of_the_breakdowns_max():
    z1, z2, _ = _batch(n=8)
    brute = np.mean([lab.anchor_breakdown(z1, z2, i, 0.2).share.max() for i in range(16)])
    assert lab.hardest_negative_share(z1, z2, 0.2) == pytest.approx(brute, rel=1e-9)


def test_breakdown_refuses_bad_input():
    z1, z2, _ = _batch(n=4)
    with pytest.raises(PlaygroundError, match="anchor"):
        lab.anchor_breakdown(z1, z2, 8, 0.2)
    with pytest.raises(PlaygroundError, match="temperature"):
        lab.anchor_breakdown(z1, z2, 0, 0.0)
    with pytest.raises(PlaygroundError, match="shaped"):
        lab.anchor_breakdown(z1, z2[:3], 0, 0.2)


def test_wang_isola_losses_equal_the_metrics():
    z1, z2, _ = _batch(n=20)
    assert float(lab.alignment_loss(z1, z2)) == pytest.approx(alignment(z1, z2), rel=1e-6)
    assert float(lab.uniformity_loss(z1)) == pytest.approx(uniformity(z1), rel=1e-6)


def test_compare_losses_values_equal_direct_calls_and_mining_is_brute_force():
    z1, z2, y = _batch(n=12, d=3)
    anchor = 1
    res = {r.key: r for r in lab.compare_losses(z1, z2, y, anchor=anchor, temperature=0.2, margin=0.5)}
    f1, f2 = z1.float(), z2.float()
    yy = torch.as_tensor(np.concatenate([y, y]))
    assert res["nt_xent"].value == pytest.approx(float(losses.nt_xent(f1, f2, 0.2)), rel=1e-5)
    assert res["supcon"].value == pytest.approx(float(losses.supcon(torch.stack([f1, f2], 1), y, 0.2)), rel=1e-5)
    for mining in ("all", "hard", "semihard"):
        direct = float(losses.triplet_loss(torch.cat([f1, f2]), yy, 0.5, mining=mining))
        assert res[f"triplet_{mining}"].value == pytest.approx(direct, rel=1e-5)
    # NT-Xent couples the anchor with every other embedding.
    assert res["nt_xent"].pairs_with_gradient == 23
    # Batch-hard: the anchor's own farthest positive and nearest negative (brute force) are coupled with it.
    z = F.normalize(torch.cat([f1, f2]), dim=1)
    d = torch.cdist(z, z)[anchor].numpy()
    same = (yy == yy[anchor]).numpy()
    same[anchor] = False
    hardest_pos = int(np.argmax(np.where(same, d, -1)))
    hardest_neg = int(np.argmin(np.where(~(yy == yy[anchor]).numpy(), d, np.inf)))
    assert d[hardest_pos] - d[hardest_neg] + 0.5 > 0  # this batch's anchor has an active triplet (margin 0.5)
    assert res["triplet_hard"].coupling[hardest_pos] > 0 and res["triplet_hard"].coupling[hardest_neg] > 0
    assert res["triplet_hard"].pairs_with_gradient < res["nt_xent"].pairs_with_gradient
    # InfoNCE with detached keys: an anchor in view 2 is a key and gets no gradient.
    keyside = {r.key: r for r in lab.compare_losses(z1, z2, y, anchor=12 + 1, temperature=0.2)}
    assert keyside["info_nce"].pairs_with_gradient == 0
    assert np.all(keyside["info_nce"].grad_norm[12:] == 0)


def test_toy_is_deterministic_for_a_seed():
    cfg = lab.ToyConfig(steps=15, eval_every=5, seed=3)
    a, b = lab.ToyTrainer(cfg), lab.ToyTrainer(cfg)
    a.run(), b.run()
    assert [r.loss for r in a.history] == [r.loss for r in b.history]
    np.testing.assert_array_equal(a.points(), b.points())
    assert [e.uniformity for e in a.evals] == [e.uniformity for e in b.evals]
    c = lab.ToyTrainer(lab.ToyConfig(steps=15, seed=4))
    c.run()
    assert not np.allclose(a.points(), c.points())


@pytest.mark.parametrize("loss", lab.TOY_LOSSES)
def test_every_toy_loss_trains_and_moves_points(loss):
    t = lab.ToyTrainer(lab.ToyConfig(loss=loss, dim=3, steps=10, eval_every=5))
    before = t.points().copy()
    t.run()
    assert t.step_count == 10 and len(t.history) == 10
    assert [e.step for e in t.evals] == [0, 5, 10]
    assert np.all(np.isfinite([r.loss for r in t.history]))
    assert np.abs(t.points() - before).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(t.points(), axis=1), 1.0, rtol=1e-5)


def test_toy_runs_through_the_one_loop_with_its_evaluations_as_callbacks():
    """The app's job drives the toy as it drives the Trainer: run() with default callbacks evaluates at step 0,
    every eval_every steps and at the end of a finished run; a stopped run gets no end evaluation; step() alone
    evaluates nothing."""
    t = lab.ToyTrainer(lab.ToyConfig(steps=10, eval_every=4))
    assert len(t.run()) == 10 and t.step_count == 10
    assert [e.step for e in t.evals] == [0, 4, 8, 10]
    stopped = lab.ToyTrainer(lab.ToyConfig(steps=10, eval_every=4))
    stopped.run(stop=lambda: stopped.step_count >= 5)
    assert stopped.step_count == 5 and [e.step for e in stopped.evals] == [0, 4]
    stopped.step()
    assert [e.step for e in stopped.evals] == [0, 4]


def test_toy_config_refuses_bad_values():
    with pytest.raises(PlaygroundError, match="loss"):
        lab.ToyConfig(loss="nope")
    with pytest.raises(PlaygroundError, match="temperature"):
        lab.ToyConfig(temperature=0.0)


def test_collapse_preset_collapses_without_negatives():
    r = lab.run_preset("collapse", steps=120)
    assert r.reproduced
    assert r.numbers["effective_rank_align"] < 1.2 < 2.5 < r.numbers["effective_rank_nt_xent"]
    assert r.numbers["uniformity_align"] > -0.05 > r.numbers["uniformity_nt_xent"]
    # the setup line is read from the run: the steps asked for, the toy's default size and NT-Xent's temperature
    cfg = lab.ToyConfig()
    assert (f"{cfg.n_classes} classes x {cfg.per_class} points on the sphere" in r.setup
            and "120 steps" in r.setup and f"NT-Xent t={cfg.temperature:g}" in r.setup), r.setup


@pytest.mark.parametrize("seed", [0, 1])
def test_no_negatives_preset_collapses_with_the_pull_alone_and_vicreg_keeps_it_spread(seed):
    """The lesson "collapse without negatives": VICReg's invariance term alone puts every point of the toy in one
    place (effective rank near 1 or every pair's cosine near 1); the full VICReg loss, still with no negatives,
    keeps the points spread over the sphere. The verdict quotes the run's own numbers."""
    r = lab.run_preset("no_negatives", steps=150, seed=seed)
    n = r.numbers
    assert n["effective_rank_invariance"] < 1.2 or n["mean_cosine_invariance"] > 0.95
    assert n["effective_rank_vicreg"] > 2.0 and n["mean_cosine_vicreg"] < 0.5
    assert r.reproduced
    assert f"{n['effective_rank_invariance']:.2f}" in r.verdict and f"{n['effective_rank_vicreg']:.2f}" in r.verdict
    # The figures are the trained points' own: recompute the mean cosine from a toy trained the same way.
    t = lab.ToyTrainer(lab.ToyConfig(loss="vicreg", dim=3, steps=150, eval_every=10, seed=seed))
    t.run()
    p = t.points().astype(np.float64)
    off = (p @ p.T)[~np.eye(len(p), dtype=bool)]
    assert n["mean_cosine_vicreg"] == pytest.approx(off.mean(), abs=1e-5)


def test_toy_losses_of_a_training_method_are_that_method_s_loss():
    """The toy trains nt_xent, supcon, triplet, margin and vicreg through the method classes: its loss on a step
    equals the core.losses function on the same embeddings (same partner draw for margin)."""
    from core import losses

    for loss, direct in [
        ("nt_xent", lambda z1, z2, y, cfg, g: losses.nt_xent(z1, z2, cfg.temperature)),
        ("supcon", lambda z1, z2, y, cfg, g: losses.supcon(torch.stack([z1, z2], 1), y, cfg.temperature)),
        ("triplet", lambda z1, z2, y, cfg, g: losses.triplet_loss(torch.cat([z1, z2]), torch.cat([y, y]),
                                                                  cfg.margin, mining=cfg.mining)),
        ("vicreg", lambda z1, z2, y, cfg, g: losses.vicreg(z1, z2)),
        ("invariance", lambda z1, z2, y, cfg, g: ((z1 - z2) ** 2).mean() * 25.0),
    ]:
        t = lab.ToyTrainer(lab.ToyConfig(loss=loss, steps=1, batch_size=32))
        idx = torch.arange(32)
        gen_state = t._gen.get_state()
        got = t._loss(idx)
        t._gen.set_state(gen_state)
        v1, v2 = t._views(idx)
        z1, z2 = t.model(v1), t.model(v2)
        want = direct(z1, z2, t.labels[idx], t.cfg, t._gen)
        assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-7), loss


def test_unknown_preset_is_refused():
    with pytest.raises(PlaygroundError, match="preset"):
        lab.run_preset("nope")


@pytest.mark.slow
def test_temperature_preset_low_tau_focuses_on_hard_negatives():
    seen = []
    r = lab.run_preset("temperature", lambda f, m: seen.append(f), taus=(0.05, 1.0), steps=30)
    assert r.numbers["hardest_share_t0.05"] > 1.2 * r.numbers["hardest_share_t1"]
    assert seen and seen[-1] == pytest.approx(1.0)
    assert set(r.panels[0].series) == {"t = 0.05", "t = 1"}
    assert "t=0.05 / 1," in r.setup and "30 steps" in r.setup, r.setup


@pytest.mark.slow
def test_shapes_presets_direction_of_effect():
    """Presets 3, 5 and 6 share the baseline run; 4 adds one small-batch run."""
    jitter = lab.run_preset("color_jitter")
    assert jitter.numbers["colour_on"] < jitter.numbers["colour_off"] - 0.1
    assert jitter.numbers["shape_on"] > jitter.numbers["shape_off"]
    head = lab.run_preset("head")
    assert head.numbers["encoder_shape"] > head.numbers["projection_shape"]
    shortcut = lab.run_preset("shortcut")
    assert shortcut.numbers["shape_hue0.5"] > shortcut.numbers["shape_hue0.1"]
    assert shortcut.numbers["colour_hue0.1"] > shortcut.numbers["colour_hue0.5"]
    negatives = lab.run_preset("negatives", batches=(16, 64))
    assert negatives.numbers["knn_shape_batch64"] > negatives.numbers["knn_shape_batch16"]


def test_the_page_s_knob_lists_come_from_the_methods_traits():
    """Which toy losses read the temperature or the margin, and which compared losses depend on the temperature,
    follow the method classes (core.methods), not lists written by hand."""
    from core.methods import METHODS

    assert lab.TOY_USES_TEMPERATURE == ("nt_xent", "info_nce", "supcon")
    assert lab.TOY_USES_MARGIN == ("triplet", "margin")
    assert lab.TEMPERATURE_KEYS == ("nt_xent", "info_nce", "supcon")
    assert set(lab.TOY_METHODS) <= set(lab.TOY_LOSSES) and set(lab.TOY_METHODS.values()) <= set(METHODS)
    assert set(lab.TOY_LOSS_NAMES) == set(lab.TOY_LOSSES)
