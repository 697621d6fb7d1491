"""Trainer: every method trains, seeds reproduce, checkpoints round-trip, divergence stops cleanly."""
from __future__ import annotations

import json
import math
import pickle
import threading

import numpy as np
import pytest
import torch

from core.augment import AugmentConfig
from core.data import load_dataset
from core.errors import PlaygroundError, TrainingDiverged
from core.metrics import knn_accuracy
from core.models import EncoderConfig
from core.train import METHODS, TrainConfig, Trainer

TINY = dict(batch_size=32, steps=4, snapshot_every=2, eval_every=2, probe_size=40, knn_reference=100, warmup_steps=0)


@pytest.fixture(scope="module")
def shapes_small():
    return load_dataset("shapes", n=300, size=32, seed=0)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_with_finite_loss(method, shapes_small):
    trainer = Trainer(TrainConfig(method=method, **TINY), shapes_small)
    records = trainer.run()
    assert [r.step for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r.loss) for r in records)
    assert all(r.seconds > 0 for r in records)
    assert [s.step for s in trainer.snapshots] == [0, 2, 4]
    assert [e.step for e in trainer.evals] == [2, 4]
    ev = trainer.evals[-1]
    assert set(ev.knn) == set(shapes_small.factors)
    assert all(0.0 <= a <= 1.0 for a in ev.knn.values())
    assert trainer.snapshots[-1].coords.shape == (len(trainer.probe), 2)
    if method == "clip":
        # CLIP initialises the learnable multiplier at 1/0.07 and never lets it pass 100.
        assert records[0].logit_scale == pytest.approx(1 / 0.07, rel=0.05)
        assert all(r.logit_scale <= 100.0 for r in records)
    else:
        assert records[0].logit_scale is None


def test_same_seed_gives_the_same_loss_curve(shapes_small):
    cfg = TrainConfig(**TINY)
    a = [r.loss for r in Trainer(cfg, shapes_small, device="cpu").run()]
    b = [r.loss for r in Trainer(cfg, shapes_small, device="cpu").run()]
    c = [r.loss for r in Trainer(TrainConfig(**{**TINY, "seed": 1}), shapes_small, device="cpu").run()]
    assert a == b
    assert a != c


def test_global_rng_is_left_alone(shapes_small):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Trainer(TrainConfig(**TINY), shapes_small).run(2)
    assert torch.equal(torch.rand(3), expected)


def test_run_calls_back_every_step_and_honours_stop(shapes_small):
    trainer = Trainer(TrainConfig(**TINY), shapes_small)
    seen = []
    stop = threading.Event()

    def on_step(record):
        seen.append(record.step)
        if record.step == 2:
            stop.set()

    trainer.run(10, on_step=on_step, stop=stop)
    assert seen == [1, 2]
    assert trainer.step_count == 2
    trainer.run(1, stop=lambda: True)
    assert trainer.step_count == 2


def test_short_simclr_run_beats_the_untrained_encoder():
    data = load_dataset("shapes", n=1500, size=32, seed=3)
    cfg = TrainConfig(batch_size=128, lr=3e-3, eval_every=1000, snapshot_every=1000, steps=80, seed=0)
    trainer = Trainer(cfg, data)

    def shape_knn() -> float:
        ref = trainer._features(trainer._knn_ref)
        test = trainer._features(trainer.heldout)
        return knn_accuracy(ref, trainer._knn_ref.labels["shape"], test, trainer.heldout.labels["shape"], k=10)

    before = shape_knn()
    trainer.run()
    after = shape_knn()
    assert after > before + 0.03, (before, after)
    assert trainer.history[-1].loss < trainer.history[0].loss


def test_nan_loss_stops_training_with_a_clear_message(shapes_small, monkeypatch):
    trainer = Trainer(TrainConfig(**TINY), shapes_small)
    trainer.step()
    monkeypatch.setattr("core.losses.nt_xent", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingDiverged, match="step 2.*nan"):
        trainer.run(5)
    assert trainer.step_count == 1
    with pytest.raises(TrainingDiverged):  # stays stopped; the page shows the same sentence
        trainer.step()


def test_tiny_temperature_diverges_or_says_what_to_change(shapes_small):
    """A temperature of 0.001 must either train finitely or stop with advice about the temperature."""
    trainer = Trainer(TrainConfig(**{**TINY, "temperature": 0.001, "lr": 0.5}), shapes_small)
    try:
        trainer.run(20)
    except TrainingDiverged as err:
        assert "temperature" in str(err) or "learning rate" in str(err)
    else:
        assert all(np.isfinite([r.loss for r in trainer.history]))


def test_checkpoint_round_trip(tmp_path, shapes_small):
    cfg = TrainConfig(method="moco", queue_size=64, **TINY)
    trainer = Trainer(cfg, shapes_small)
    trainer.run()
    path = trainer.save(tmp_path / "run1")
    assert path.suffix == ".safetensors" and path.exists()
    assert json.loads(path.with_suffix(".json").read_text())["config"]["method"] == "moco"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.json", "run1.safetensors"]  # no temp files left

    loaded = Trainer.load(path, shapes_small)
    assert loaded.cfg == cfg
    assert loaded.step_count == trainer.step_count
    assert [r.loss for r in loaded.history] == [r.loss for r in trainer.history]
    x = shapes_small.images[:16]
    for space in ("encoder", "projection"):
        np.testing.assert_allclose(
            loaded.model.embed(x.float() / 255, space=space).numpy(),
            trainer.model.embed(x.float() / 255, space=space).numpy(),
            atol=1e-5,
        )
    loaded.run(1)  # training continues from the checkpoint
    assert loaded.step_count == trainer.step_count + 1


def test_checkpoint_rebuilds_its_dataset_from_the_spec(tmp_path, shapes_small):
    trainer = Trainer(TrainConfig(method="clip", **TINY), shapes_small)
    trainer.run(2)
    loaded = Trainer.load(trainer.save(tmp_path / "clip.safetensors"))
    assert len(loaded.dataset) == len(shapes_small)
    assert loaded.current_logit_scale == pytest.approx(trainer.current_logit_scale)


def test_load_refuses_pickle_and_foreign_files(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(PlaygroundError, match="not a readable safetensors"):
        Trainer.load(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(PlaygroundError, match="not a Contrastive Playground checkpoint"):
        Trainer.load(foreign)


def test_config_round_trips_through_json():
    cfg = TrainConfig(
        method="triplet",
        encoder=EncoderConfig(arch="small_cnn", width=16),
        augment=AugmentConfig(grayscale=False, rotation=True),
        mining="hard",
        seed=7,
    )
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "byol"},
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"batch_size": 1},
        {"lr": float("nan")},
        {"momentum": 1.0},
        {"mining": "random"},
        {"heldout_fraction": 1.5},
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ValueError, match="Unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "red"})


def test_clip_needs_captions():
    digits = load_dataset("digits")
    with pytest.raises(PlaygroundError, match="captions"):
        Trainer(TrainConfig(method="clip", **TINY), digits)


def test_supervised_methods_use_the_chosen_factor(shapes_small):
    trainer = Trainer(TrainConfig(method="supcon", label_factor="colour", **TINY), shapes_small)
    assert trainer.label_factor == "colour"
    with pytest.raises(PlaygroundError, match="no factor"):
        Trainer(TrainConfig(method="supcon", label_factor="flavour", **TINY), shapes_small)


# ---------------------------------------------------------------------------------------------
# CLIP-style training: open_clip model, logit-scale clamp, weight-decay groups, duplicate captions
# ---------------------------------------------------------------------------------------------
from core.augment import PRESETS as _AUG  # noqa: E402

CLIP_TINY = dict(TINY, method="clip", augment=_AUG["none"])


@pytest.mark.parametrize("clip_model", [None, "mini-rn"])
def test_logit_scale_is_clamped_in_place_after_each_step(clip_model, shapes_small):
    """open_clip clamps the parameter to [0, ln 100] after optimizer.step(); clamping only inside the forward
    (min(exp(s), 100)) gives s a zero gradient above ln 100, so it would stay there for good."""
    trainer = Trainer(TrainConfig(clip_model=clip_model, **CLIP_TINY), shapes_small)
    with torch.no_grad():
        trainer.logit_scale.fill_(math.log(150.0))
    trainer.step()
    assert trainer.logit_scale.item() <= math.log(100.0) + 1e-6
    assert trainer.current_logit_scale == pytest.approx(100.0, rel=1e-3)


@pytest.mark.parametrize("clip_model", [None, "mini-rn"])
def test_weight_decay_skips_logit_scale_norms_and_biases(clip_model, shapes_small):
    trainer = Trainer(TrainConfig(clip_model=clip_model, weight_decay=0.1, **CLIP_TINY), shapes_small)
    groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in trainer.optimizer.param_groups}
    assert set(groups) == {0.0, 0.1}
    no_decay, decay = groups[0.0], groups[0.1]
    assert id(trainer.logit_scale) in no_decay
    norms = [m for mod in (trainer.model, trainer.text_model) for m in mod.modules()
             if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))]
    assert norms and all(id(p) in no_decay for m in norms for p in m.parameters())
    for mod in (trainer.model, trainer.text_model):
        for name, p in mod.named_parameters():
            if name.endswith("bias"):
                assert id(p) in no_decay, name
    convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(id(w) in decay for w in convs)
    every = {id(p) for mod in (trainer.model, trainer.text_model) for p in mod.parameters()} | {id(trainer.logit_scale)}
    assert no_decay | decay == every and not (no_decay & decay)


def test_identical_captions_in_a_batch_share_a_text_id(shapes_small, monkeypatch):
    from core import losses

    seen = {}
    original = losses.clip_loss

    def spy(img, txt, scale, text_ids=None):
        seen["ids"] = text_ids.cpu().numpy()
        return original(img, txt, scale, text_ids=text_ids)

    trainer = Trainer(TrainConfig(batch_size=128, **{k: v for k, v in CLIP_TINY.items() if k != "batch_size"}),
                      shapes_small)
    captions = []
    monkeypatch.setattr(losses, "clip_loss", spy)
    real = trainer._captions
    monkeypatch.setattr(trainer, "_captions", lambda rows: captions.extend(real(rows)) or captions[-len(rows):])
    trainer.step()
    ids, texts = seen["ids"], captions[-128:]
    assert len(set(texts)) < len(texts), "a 128-caption batch of shapes repeats some captions"
    for i in range(len(texts)):
        for j in range(len(texts)):
            assert (ids[i] == ids[j]) == (texts[i] == texts[j])


@pytest.mark.slow
def test_open_clip_model_trains_round_trips_and_exports_as_local_dir(tmp_path, shapes_small):
    from core.clip import embed_image_tensor, embed_texts, export_local_dir, load_clip

    trainer = Trainer(TrainConfig(clip_model="mini-rn", **CLIP_TINY), shapes_small)
    trainer.run(2)
    assert "mini-rn" in trainer.describe()
    path = trainer.save(tmp_path / "run.safetensors")
    again = Trainer.load(path, shapes_small)
    x = shapes_small.images[:8].float() / 255
    assert torch.allclose(again.model.embed(x), trainer.model.embed(x), atol=1e-6)
    folder = export_local_dir(trainer.clip.clip, trainer.clip.model_cfg, tmp_path / "exported", half=False)
    bundle = load_clip(f"local-dir:{folder}", device="cpu")
    ours = trainer.model.embed(x, normalize=True).numpy()
    np.testing.assert_allclose(embed_image_tensor(bundle, x), ours, atol=1e-5)
    trainer.text_model.eval()
    with torch.no_grad():
        t = torch.nn.functional.normalize(trainer.text_model(trainer.clip.tokenizer(["a red circle"])), dim=1)
    np.testing.assert_allclose(embed_texts(bundle, ["a red circle"]), t.numpy(), atol=1e-5)
    # The in-memory bundle (how a trained CLIP joins the registry) is a frozen copy that agrees with the export.
    from core.clip import bundle_from_trainer

    frozen = bundle_from_trainer(trainer)
    np.testing.assert_allclose(embed_image_tensor(frozen, x), ours, atol=1e-5)
    np.testing.assert_allclose(embed_texts(frozen, ["a red circle"]), t.numpy(), atol=1e-5)
    trainer.step()
    np.testing.assert_allclose(embed_image_tensor(frozen, x), ours, atol=1e-5)  # training on leaves it alone
