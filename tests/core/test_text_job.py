"""The worker's side of a text fine-tuning job (core.worker.TextKind): the recipe a page's tuner sends rebuilds, in
the worker's own imports of core.text, a TextFineTuner that trains the same run as the page's copy would."""
from __future__ import annotations

import numpy as np
import pytest

from core import text as T
from core.worker import TextKind, kind_of

pytestmark = pytest.mark.slow  # loads MiniLM twice and takes optimiser steps


def test_the_worker_rebuilds_the_page_tuner_and_trains_the_same_steps():
    model = T.load_text_model(device="cpu")
    cfg = T.FineTuneConfig(steps=2, batch_size=8, eval_every=10, heldout_fraction=0.25, seed=3)
    mirror = T.TextFineTuner(cfg, T.load_pairs()[:24], model)
    assert kind_of(mirror) is TextKind

    rebuilt = TextKind.build(TextKind.recipe(mirror, {"text_spec": ""}))  # "" = the bundled model, loaded anew
    assert isinstance(rebuilt, T.TextFineTuner)
    assert rebuilt.cfg == cfg and rebuilt.name == mirror.name
    assert rebuilt.train_pairs == mirror.train_pairs and rebuilt.heldout == mirror.heldout
    assert rebuilt.passages == mirror.passages

    ours = [mirror.step().loss for _ in range(2)]
    theirs = [rebuilt.step().loss for _ in range(2)]
    np.testing.assert_allclose(theirs, ours, rtol=1e-4)
    assert rebuilt.evals[0].mrr == pytest.approx(mirror.evals[0].mrr)
    # the trained layers travel back: applying the worker's export makes the page's weights the worker's
    TextKind.apply(mirror, TextKind.export(rebuilt), {})
    for (name, a), b in zip(mirror.model.named_parameters(), rebuilt.model.parameters()):
        assert (a == b).all(), name
