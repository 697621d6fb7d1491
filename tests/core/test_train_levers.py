"""Speed levers of core.train (issue 10): cosine schedule, bf16, fused AdamW, kept probe views."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.train import Trainer, TrainConfig


def test_cosine_schedule_matches_the_formula():
    """Linear warm-up, then Loshchilov & Hutter's cosine from lr down to 10% of lr at cfg.steps, flat after."""
    cfg = TrainConfig(lr=0.01, warmup_steps=5, steps=45, lr_schedule="cosine", batch_size=8)
    t = Trainer.__new__(Trainer)  # _lr_at reads only cfg
    t.cfg = cfg
    got = np.array([t._lr_at(s) for s in range(60)])
    want = []
    for s in range(60):
        if s < 5:
            want.append(0.01 * (s + 1) / 5)
        else:
            frac = min((s - 5) / 40, 1.0)
            want.append(0.001 + (0.01 - 0.001) * (1 + math.cos(math.pi * frac)) / 2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[5] == pytest.approx(0.01) and got[45] == pytest.approx(0.001) and got[59] == pytest.approx(0.001)
    constant = replace(cfg, lr_schedule="constant")
    t.cfg = constant
    assert t._lr_at(30) == 0.01


def test_unknown_schedule_or_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="cosine"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="bf16"):
        TrainConfig(precision="fp8")
    assert TrainConfig.from_dict(TrainConfig(precision="bf16").to_dict()).precision == "bf16"


@pytest.mark.slow
def test_bf16_autocast_trains_like_fp32_on_a_short_seeded_run(shapes_data):
    data = shapes_data(400, 32)
    base = TrainConfig(batch_size=64, steps=12, seed=0, eval_every=1000, snapshot_every=1000, knn_reference=200)
    runs = {}
    for precision in ("fp32", "bf16"):
        t = Trainer(replace(base, precision=precision), data, device="cpu")
        before = t.evaluate().knn["shape"]
        t.run()
        after = t.evaluate().knn["shape"]
        losses = np.array([r.loss for r in t.history])
        assert np.isfinite(losses).all()
        runs[precision] = (losses, before, after)
    fp32, bf16 = runs["fp32"][0], runs["bf16"][0]
    # same data, same seeds: the curves agree to bf16's ~3 significant digits, plus drift over 12 steps
    assert np.abs(fp32 - bf16).max() < 0.1 * fp32.max()
    assert bf16[-3:].mean() < bf16[:3].mean() and fp32[-3:].mean() < fp32[:3].mean()
    # the untrained model is the same one; after training, kNN moved the same way in both
    assert runs["fp32"][1] == pytest.approx(runs["bf16"][1], abs=1e-6)
    d32, d16 = runs["fp32"][2] - runs["fp32"][1], runs["bf16"][2] - runs["bf16"][1]
    assert abs(d32 - d16) < 0.08


def test_auto_precision_is_bf16_only_on_a_cpu_where_bf16_pays(monkeypatch):
    import core.device as D

    for fast, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(D, "_cpu_bf16_pays", lambda fast=fast: fast)
        assert D.resolve_precision("auto", "cpu") == want
        assert D.resolve_precision("auto", torch.device("cpu")) == want
        # a GPU's "auto" stays fp32 whatever the host CPU can do; an explicit choice is kept everywhere
        assert D.resolve_precision("auto", "cuda") == "fp32"
        assert D.resolve_precision("auto", "mps") == "fp32"
        assert D.resolve_precision("fp32", "cpu") == "fp32" and D.resolve_precision("bf16", "cuda") == "bf16"
    with pytest.raises(ValueError, match="auto, fp32 or bf16"):
        D.resolve_precision("fp16", "cpu")
    assert TrainConfig.from_dict(TrainConfig(precision="auto").to_dict()).precision == "auto"


def test_hardware_bf16_is_either_of_torch_s_probes_and_a_failing_probe_is_a_no(monkeypatch):
    """AVX512-BF16 or AMX tiles, as torch's own CPU probes report them; a probe that is missing (older torch) or
    raises counts as "no", never as an error."""
    import core.device as D

    def broken():
        raise RuntimeError("cpuinfo failed")

    cases = [  # (avx512_bf16 probe, amx probe) -> hardware bf16
        ((lambda: False, lambda: False), False), ((lambda: True, lambda: False), True),
        ((lambda: False, lambda: True), True), ((broken, lambda: True), True), ((broken, broken), False),
        ((None, None), False),
    ]
    for (avx, amx), want in cases:
        for name, probe in (("_is_avx512_bf16_supported", avx), ("_is_amx_tile_supported", amx)):
            if probe is None:
                monkeypatch.delattr(torch.cpu, name, raising=False)
            else:
                monkeypatch.setattr(torch.cpu, name, probe, raising=False)
        assert D._cpu_has_fast_bf16() is want, (avx, amx)


def test_bf16_pays_only_with_amx_or_avx512_fp16_beside_hardware_bf16(monkeypatch):
    """An AMD EPYC with AVX512-BF16 alone stepped the lesson slower in bf16 than in fp32: hardware bf16 is not
    enough, the CPU must also have AMX tiles or AVX512-FP16 (where bf16 measured 1.14-1.19x faster)."""
    import core.device as D

    cases = [  # (hardware bf16, AMX tiles, Linux's flags) -> pays
        ((False, False, {"avx512_fp16"}), False),  # no bf16 in hardware: never, whatever else it has
        ((True, False, {"avx512_bf16"}), False),  # AMD Zen 4: AVX512-BF16 alone
        ((True, False, {"avx512_bf16", "avx512_fp16"}), True),  # Intel Sapphire Rapids without AMX exposed
        ((True, True, set()), True),  # AMX tiles (flags unreadable: not needed)
    ]
    for (hardware, amx, flags), pays in cases:
        monkeypatch.setattr(D, "_cpu_has_fast_bf16", lambda hardware=hardware: hardware)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(D, "_cpu_flags", lambda flags=flags: set(flags))
        assert D._cpu_bf16_pays() is pays, (hardware, amx, flags)
        assert D.resolve_precision("auto", "cpu") == ("bf16" if pays else "fp32")


def test_the_cpu_flags_are_the_first_flags_line_of_cpuinfo(monkeypatch, tmp_path):
    """A cpuinfo as Linux writes it (one block per core, tabs before the colon): the first ``flags`` line's words;
    nothing (not an error) without a flags line or without the file."""
    import core.device as D

    cpuinfo = tmp_path / "cpuinfo"
    block = "processor\t: {i}\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme {extra}\nbugs\t\t: sysret_ss_attrs\n\n"
    cases = [
        (block.format(i=0, extra="avx512_bf16  avx512f") + block.format(i=1, extra="other"),
         {"fpu", "vme", "avx512_bf16", "avx512f"}),
        ("processor\t: 0\nFeatures\t: fp asimd\n", set()),  # an ARM cpuinfo: no flags line
        (None, set()),  # no file
    ]
    for text, want in cases:
        if text is None:
            cpuinfo.unlink()
        else:
            cpuinfo.write_text(text)
        monkeypatch.setattr(D, "_CPUINFO", str(cpuinfo))
        D._cpu_flags.cache_clear()
        try:
            assert D._cpu_flags() == want
        finally:
            D._cpu_flags.cache_clear()


@pytest.mark.parametrize("fast", [True, False])
def test_a_trainer_on_auto_steps_in_the_arithmetic_the_cpu_is_fast_at(monkeypatch, fast, shapes_data):
    import core.device as D

    monkeypatch.setattr(D, "_cpu_bf16_pays", lambda: fast)
    cfg = TrainConfig(batch_size=16, steps=2, seed=0, eval_every=1000, snapshot_every=1000, knn_reference=50,
                      precision="auto")
    t = Trainer(cfg, shapes_data(120, 24), device="cpu")
    assert t.precision == ("bf16" if fast else "fp32")
    seen = []
    conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_hook(lambda m, _i, out: seen.append((m.training, out.dtype)))
    try:
        t.run()
        t.evaluate()
    finally:
        handle.remove()
    trained = {dtype for training, dtype in seen if training}
    assert trained == {torch.bfloat16 if fast else torch.float32}
    assert np.isfinite([r.loss for r in t.history]).all()
    # the first step's snapshot and the evaluation embed in fp32 either way
    assert {dtype for training, dtype in seen if not training} == {torch.float32}


def _small_run(**over) -> TrainConfig:
    return TrainConfig(batch_size=32, steps=6, seed=3, eval_every=1000, snapshot_every=1000, knn_reference=100,
                       probe_size=40, **over)


@pytest.mark.parametrize("method", ["simclr", pytest.param("clip", marks=pytest.mark.slow)])
def test_the_trainer_steps_with_fused_adamw_and_matches_the_per_parameter_loop(method, shapes_data):
    """On the CPU the optimizer is AdamW's fused kernel; six steps give the same losses and weights as torch's own
    per-parameter AdamW (the reference) up to float rounding."""
    data = shapes_data(200, 16)
    fused = Trainer(_small_run(method=method), data, device="cpu")
    loop = Trainer(_small_run(method=method), data, device="cpu")
    assert fused.optimizer.defaults["fused"] is True
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in loop.optimizer.param_groups]
    loop.optimizer = torch.optim.AdamW(groups, lr=loop.cfg.lr, foreach=False)
    assert not any(g["fused"] for g in loop.optimizer.param_groups)
    fused.run()
    loop.run()
    np.testing.assert_allclose([r.loss for r in fused.history], [r.loss for r in loop.history], rtol=1e-4, atol=1e-5)
    for a, b in zip(fused.model.parameters(), loop.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_fused_optimizer_resumes_from_a_checkpoint_as_if_it_never_stopped(tmp_path: Path, shapes_data):
    data = shapes_data(200, 16)
    straight = Trainer(_small_run(), data, device="cpu")
    straight.run(6)
    first = Trainer(_small_run(), data, device="cpu")
    first.run(3)
    path = first.save(tmp_path / "half.safetensors")
    resumed = Trainer.load(path, dataset=data, device="cpu")
    assert resumed.optimizer.defaults["fused"] is True
    resumed.run(3)
    assert [r.loss for r in resumed.history[-3:]] == [r.loss for r in straight.history[-3:]]


def test_the_probe_views_are_drawn_once_and_are_the_seeded_ones(monkeypatch, shapes_data):
    """Every evaluation measures alignment, uniformity and pair similarities on the same two augmented views of the
    probe set. They are drawn once per trainer (not at every evaluation), and they are the views the probe's own
    seeded generator gives: the evaluation's alignment equals Wang & Isola's formula in NumPy on those views."""
    import core.train as train_mod
    from core.augment import augment

    data = shapes_data(200, 16)
    t = Trainer(_small_run(), data, device="cpu")
    calls = []

    def counting(x, cfg, gen):
        calls.append(len(x))
        return augment(x, cfg, gen)

    monkeypatch.setattr(train_mod, "augment", counting)
    t.run(2)
    first = t.evaluate()
    t.run(2)
    second = t.evaluate()
    assert calls.count(len(t.probe)) == 2  # two views, drawn at the first evaluation only

    gen = torch.Generator().manual_seed(t._probe_gen_seed)
    v1, v2 = augment(t.probe.images, t.cfg.augment, gen), augment(t.probe.images, t.cfg.augment, gen)
    z1 = t.model.embed(v1, space="projection", normalize=True).numpy()
    z2 = t.model.embed(v2, space="projection", normalize=True).numpy()
    assert second.alignment == pytest.approx(float(np.mean(np.sum((z1 - z2) ** 2, axis=1))), rel=1e-5)
    assert first.alignment != second.alignment  # the model moved; the views did not


def test_probe_views_above_the_size_cap_are_drawn_again_not_kept(monkeypatch, shapes_data):
    """A trainer holds its probe views for its whole life; large ones (many probe images at a large size) would cost
    every session hundreds of MB, so above the cap they are drawn again at each evaluation: the same numbers."""
    import core.train as train_mod

    data = shapes_data(200, 16)
    kept = Trainer(_small_run(), data, device="cpu")
    a = kept.evaluate()
    monkeypatch.setattr(train_mod, "_PROBE_VIEWS_KEPT_BYTES", 2 * 40 * 3 * 16 * 16 * 4 - 1)  # one byte too few
    redrawn = Trainer(_small_run(), data, device="cpu")
    b = redrawn.evaluate()
    assert kept._probe_views is not None and redrawn._probe_views is None
    assert a.alignment == b.alignment and a.uniformity == b.uniformity
