"""The Home page's Train lessons: their settings build a valid run, and the first lesson's recipe learns shape."""
from __future__ import annotations

import json

import pytest

from ui import presets
from ui import settings as S


def _lesson_values(preset) -> dict:
    values = S.defaults(S.PAGE_NAMESPACES["train"])  # what ui.presets.apply puts in session state
    values.update(preset.settings)
    return values


def test_train_config_of_the_defaults_is_core_default():
    from core.train import TrainConfig

    cfg = S.train_config(S.defaults(["train", "aug"]))
    core = TrainConfig(augment=cfg.augment)  # the augmentations are the shapes recipe (test_settings)
    assert cfg == core


def test_every_train_lesson_builds_its_run():
    train_lessons = [p for p in presets.load_all() if p.page == "train"]
    assert train_lessons
    for preset in train_lessons:
        cfg = S.train_config(_lesson_values(preset))
        assert cfg.batch_size == preset.settings.get("train.batch_size", S.default("train.batch_size"))
        assert cfg.encoder.width == preset.settings.get("train.width", S.default("train.width"))


def test_first_lesson_uses_the_fast_recipe():
    """The first lesson's recipe (issue 10): width 16 at 24 px, batch 128, lr 6e-3 (benchmarks/RESULTS.md)."""
    doc = json.loads((presets.PRESET_DIR / "simclr_shapes.json").read_text())
    cfg = S.train_config(_lesson_values(presets.parse(doc, "simclr_shapes")))
    assert (cfg.encoder.width, cfg.batch_size, cfg.lr) == (16, 128, 6e-3)
    assert doc["settings"]["train.image_size"] == 24


@pytest.mark.slow
def test_first_lesson_recipe_learns_shape():
    """The recipe the first lesson trains with learns shape, not colour: after 300 steps held-out shape kNN
    beats the untrained encoder by a clear margin while colour falls (hue jitter hides it)."""
    from core.data import load_dataset
    from core.train import Trainer

    preset = next(p for p in presets.load_all() if p.id == "simclr_shapes")
    values = _lesson_values(preset)
    trainer = Trainer(S.train_config(values), load_dataset("shapes", n=values["train.n"],
                                                           size=values["train.image_size"], seed=0))
    before = trainer.evaluate().knn
    trainer.run(300)
    after = trainer.evaluate().knn
    assert after["shape"] > before["shape"] + 0.2, (before, after)
    assert after["colour"] < before["colour"] - 0.1, (before, after)
