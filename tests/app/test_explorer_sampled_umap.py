"""The Explorer's UMAP of a big set: fitted on a sample (core.bigmap.sampled_umap), the rest placed by neighbours."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tests.app.conftest import assert_clean

SETTINGS = {"method": "umap", "dim": 2, "n_neighbors": 10, "min_dist": 0.1, "metric": "cosine", "perplexity": 30,
            "k": 10}


def test_the_umap_button_of_a_big_set_fits_a_sample_and_says_so(make_app, monkeypatch):
    import core.bigmap
    import ui.explorer as X

    monkeypatch.setattr(X, "SLOW_MAP_POINTS", 120)
    calls = []
    real = core.bigmap.sampled_umap

    def spy(vectors, **kwargs):
        out = real(vectors, **kwargs)
        calls.append((len(vectors), kwargs, out))
        return out

    monkeypatch.setattr(core.bigmap, "sampled_umap", spy)
    rng = np.random.default_rng(7)
    centres = 4.0 * rng.normal(size=(3, 8))
    labels = np.arange(400) % 3
    frame = pd.DataFrame(centres[labels] + rng.normal(size=(400, 8)), columns=[f"d{j}" for j in range(8)])
    frame.insert(0, "label", [f"blob {c}" for c in labels])

    at = make_app()
    at.session_state["explorer.applied"] = dict(SETTINGS)
    at.session_state["explorer.source"] = "Upload a file"
    at.switch_page("pages/explorer.py").run()
    at.file_uploader(key="explorer.upload").set_value(("blobs.csv", frame.to_csv(index=False).encode(),
                                                       "text/csv")).run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Map"] == "PCA 2-D"  # a big set opens on PCA
    assert not calls
    at.button(key="explorer.slow_go").click().run(timeout=240)
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Map"] == "UMAP 2-D"
    assert len(calls) == 1
    n, kwargs, proj = calls[0]
    assert n == 400 and kwargs["sample"] == 120 and kwargs["n_neighbors"] == 10 and kwargs["metric"] == "cosine"
    assert len(proj.sample) == 120 and proj.coords.shape == (400, 2)
    assert any("random sample of 120 of 400 points" in c.value for c in at.caption)
    # the placed points sit with their own blob: nearest fitted point in the map has the same label
    rest = np.setdiff1d(np.arange(400), proj.sample)
    d = ((proj.coords[rest, None] - proj.coords[None, proj.sample]) ** 2).sum(-1)
    assert (labels[proj.sample][d.argmin(1)] == labels[rest]).mean() > 0.95
