"""AppTests of the Embedding Explorer: the demo, a trained registry model, every file type, each view."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest

from tests.app.conftest import assert_clean

PAGE = "pages/explorer.py"


PCA = {"method": "pca", "dim": 2, "n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "perplexity": 30,
       "k": 10}


def _open(make_app, **state):
    """The Explorer with session state set before its first run (PCA maps unless the test asks otherwise)."""
    at = make_app()
    at.session_state["explorer.applied"] = dict(PCA)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(PAGE).run()
    return at


def _pca(at):
    """Choose PCA in the settings form and apply it, as a user would."""
    at.selectbox(key="explorer.method").set_value("pca")
    at.button(key="explorer.apply").click().run()
    return at


def _view(at, name):
    at.session_state["explorer.view"] = name
    at.run()
    assert_clean(at)
    return at


def _texts(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] +
                    [str(m.label) + " " + str(m.value) for m in at.metric])


def test_demo_draws_a_map_with_honesty_scores_and_every_view(make_app):
    at = make_app(page=PAGE)
    assert_clean(at)  # the default: UMAP of the trained demo model
    labels = {m.label: m.value for m in at.metric}
    assert 0.0 < float(labels["Neighbour preservation"]) <= 1.0
    assert 0.5 < float(labels["Trustworthiness"]) <= 1.0
    assert labels["Map"] == "UMAP 2-D"
    _pca(at)
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Map"] == "PCA 2-D"
    at.selectbox(key="explorer.colour").set_value("neighbour preservation").run()
    assert_clean(at)
    at.number_input(key="explorer.point").set_value(5).run()  # the same panel a click on a point opens
    assert_clean(at)
    text = _texts(at)
    assert re.search(r"nearest neighbours in the original \d+-D space", text), text  # the demo model's feature size
    assert "also its nearest on the map" in text
    for view in ("Similarity", "Health", "Compare", "Export"):
        _view(at, view)
    _view(at, "Health")
    text = _texts(at)
    assert "Effective rank" in text and "Alignment" in text
    _view(at, "Compare")
    assert "Jaccard@10" in _texts(at)


def _trained_entry():
    import copy

    from core.data import load_dataset
    from core.train import TrainConfig, Trainer
    from ui.registry import Entry, TrainedModel

    t = Trainer(TrainConfig(batch_size=32, steps=2, eval_every=1000, probe_size=10, knn_reference=10),
                load_dataset("shapes", n=200, size=32, seed=0), device="cpu")
    t.run()
    model = copy.deepcopy(t.model).eval()
    tm = TrainedModel(model=model, cfg=t.cfg, dataset=t.dataset, heldout=t.heldout, step=t.step_count,
                      history=list(t.history), evals=list(t.evals), snapshots=list(t.snapshots), probe=t.probe)
    return Entry(name="tiny run", kind="trained", source=t.describe(), payload=tm, image_size=32,
                 dataset_name="shapes")


def test_trained_registry_model_in_both_spaces(make_app):
    entry = _trained_entry()
    at = _open(make_app, registry={entry.name: entry}, **{"explorer.source": "Your models",
                                                           "explorer.entry": "tiny run"})
    assert_clean(at)
    assert "40 items" in _texts(at)  # the held-out 20% of 200
    at.radio(key="explorer.space").set_value("projection").run()
    assert_clean(at)
    _view(at, "Similarity")  # includes the NT-Xent matrix of a batch
    assert any("NT-Xent loss" in c.proto.spec for c in at.get("plotly_chart"))


def _files():
    from core.embed import EmbeddingSet

    rng = np.random.default_rng(0)
    es = EmbeddingSet(rng.normal(size=(60, 8)).astype(np.float32), ids=[f"item{i}" for i in range(60)],
                      labels={"kind": np.arange(60) % 3}, classes={"kind": ["a", "b", "c"]})
    npy = io.BytesIO()
    np.save(npy, es.vectors)
    pq = io.BytesIO()
    import pandas as pd

    pd.DataFrame({"id": es.ids, "kind": es.label_names("kind"),
                  "embedding": list(es.vectors.astype(np.float64))}).to_parquet(pq)
    flat = io.BytesIO()
    np.save(flat, rng.normal(size=(30, 2)))  # already 2-D: drawn as it is
    return {"e.npz": es.to_npz_bytes(), "e.csv": es.to_csv_bytes(), "e.npy": npy.getvalue(),
            "e.parquet": pq.getvalue(), "flat.npy": flat.getvalue()}


@pytest.mark.parametrize("name", ["e.npz", "e.csv", "e.npy", "e.parquet", "flat.npy"])
def test_each_file_type_from_the_registry(make_app, name):
    from ui.registry import Entry
    from core.embed import EmbeddingSet

    emb = EmbeddingSet.from_file(_files()[name], name)
    entry = Entry(name=name, kind="embeddings", source=emb.source, payload=emb, _embeddings=emb)
    at = _open(make_app, registry={name: entry}, **{"explorer.source": "Your models", "explorer.entry": name})
    assert_clean(at)
    if name == "flat.npy":
        assert {m.label: m.value for m in at.metric}["Map"] == "as given 2-D"
    else:
        _view(at, "Health")
        _view(at, "Export")


def test_a_set_above_the_plotly_limit_gets_every_point_in_a_datashader_map(make_app):
    """60,000 points: the plotly map draws a seeded sample (and says so), the datashader image below it holds
    all of them, opens on PCA, and a typed coordinate picks a point whose neighbours are listed."""
    from core.embed import EmbeddingSet
    from ui.explorer import MAX_POINTS
    from ui.registry import Entry

    rng = np.random.default_rng(0)
    n = MAX_POINTS + 10_000
    labels = rng.integers(0, 3, n)
    vectors = (rng.normal(size=(n, 8)) + 4 * np.eye(8)[labels]).astype(np.float32)
    emb = EmbeddingSet(vectors=vectors, ids=[f"p{i}" for i in range(n)], labels={"cluster": labels},
                       classes={"cluster": ["a", "b", "c"]}, source="synthetic")
    entry = Entry(name="big", kind="embeddings", source="synthetic", payload=emb, _embeddings=emb)
    at = make_app()
    at.session_state["registry"] = {"big": entry}
    at.session_state["explorer.source"] = "Your models"
    at.session_state["explorer.entry"] = "big"
    at.switch_page(PAGE).run(timeout=300)
    assert_clean(at)
    assert any(f"random sample of {MAX_POINTS:,}" in w.value for w in at.warning)
    assert {m.label: m.value for m in at.metric}["Map"] == "PCA 2-D"
    assert any(f"All {n:,} points" in s.value for s in at.subheader)
    assert at.get("imgs") or at.get("plotly_chart")  # the raster is drawn


def test_compare_the_finished_model_with_an_early_snapshot_of_its_run(make_app):
    """'Step 0 vs the end of the same run': a registry run's snapshots are comparable spaces, matched by id."""
    entry = _trained_entry()
    at = _open(make_app, registry={entry.name: entry}, **{"explorer.source": "Your models",
                                                           "explorer.entry": "tiny run"})
    at.session_state["explorer.view"] = "Compare"
    at.run()
    options = at.selectbox(key="explorer.other").options
    assert "tiny run · step 0 (snapshot)" in options
    at.selectbox(key="explorer.other").set_value("tiny run · step 0 (snapshot)").run()
    assert_clean(at)
    text = _texts(at)
    assert "Jaccard@10" in text and "10 items" in text  # the probe's 10 images are in both spaces


def test_my_model_vs_clip_on_the_same_images(make_app):
    """'My model vs CLIP' is one pick: the shipped mini-CLIP embeds the trained run's own held-out images."""
    from core.clip import load_clip
    from ui.registry import Entry

    entry = _trained_entry()
    at = _open(make_app, registry={entry.name: entry}, **{"explorer.source": "Your models",
                                                           "explorer.entry": "tiny run"})
    registry = at.session_state["registry"]
    bundle = load_clip("mini-clip")
    registry["mini-CLIP"] = Entry(name="mini-CLIP", kind="clip", source="the shipped mini-CLIP", payload=bundle,
                                  image_size=int(bundle.image_size))
    at.session_state["registry"] = registry
    at.session_state["explorer.view"] = "Compare"
    at.run()
    assert "mini-CLIP on these images" in at.selectbox(key="explorer.other").options
    at.selectbox(key="explorer.other").set_value("mini-CLIP on these images").run(timeout=180)
    assert_clean(at)
    assert "40 items are in both spaces" in _texts(at)  # every held-out image, matched by id
