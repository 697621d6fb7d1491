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


def test_a_t_sne_compare_of_few_shared_items_bounds_perplexity_by_the_compared_set(make_app):
    """t-SNE's perplexity is capped by the points in the map being drawn: the Compare view's 10 shared probe items,
    not the 40 of the space that was opened (the cap once came from the opened space and t-SNE refused)."""
    entry = _trained_entry()
    at = _open(make_app, registry={entry.name: entry}, **{"explorer.source": "Your models",
                                                           "explorer.entry": "tiny run"})
    at.session_state["explorer.applied"] = dict(PCA, method="tsne")
    at.session_state["explorer.view"] = "Compare"
    at.session_state["explorer.other"] = "tiny run · step 0 (snapshot)"
    at.run()
    assert_clean(at)
    assert "10 items" in _texts(at)


def test_my_model_vs_clip_on_the_same_images(make_app, mini_clip):
    """'My model vs CLIP' is one pick: the shipped mini-CLIP embeds the trained run's own held-out images."""
    from ui.registry import Entry

    entry = _trained_entry()
    at = _open(make_app, registry={entry.name: entry}, **{"explorer.source": "Your models",
                                                           "explorer.entry": "tiny run"})
    registry = at.session_state["registry"]
    bundle = mini_clip  # tests/conftest.py: the shipped mini-CLIP, loaded once
    registry["mini-CLIP"] = Entry(name="mini-CLIP", kind="clip", source="the shipped mini-CLIP", payload=bundle,
                                  image_size=int(bundle.image_size))
    at.session_state["registry"] = registry
    at.session_state["explorer.view"] = "Compare"
    at.run()
    assert "mini-CLIP on these images" in at.selectbox(key="explorer.other").options
    at.selectbox(key="explorer.other").set_value("mini-CLIP on these images").run(timeout=180)
    assert_clean(at)
    assert "40 items are in both spaces" in _texts(at)  # every held-out image, matched by id


# ------------------------------------------------------------------------------------------ uploads (issue 30)
def _csv(n: int, d: int = 8, *, zeros: bool = False, labels: bool = True, seed: int = 0) -> bytes:
    import pandas as pd

    rng = np.random.default_rng(seed)
    v = np.zeros((n, d)) if zeros else rng.normal(size=(n, d))
    frame = pd.DataFrame(v, columns=[f"d{j}" for j in range(d)])
    if labels:
        frame.insert(0, "label", [f"class ({i % 3})" for i in range(n)])  # brackets, as sentences have
    return frame.to_csv(index=False).encode()


def _upload(make_app, name: str, data: bytes, **state):
    at = make_app()
    at.session_state["explorer.applied"] = dict(PCA)
    at.session_state["explorer.source"] = "Upload a file"
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(PAGE).run()
    at.file_uploader(key="explorer.upload").set_value((name, data, "text/csv")).run()
    return at


@pytest.mark.parametrize("case", ["one row", "two rows", "all zero"])
def test_tiny_and_all_zero_uploads_get_one_sentence_and_no_traceback(make_app, case):
    """Was: the right sentence, then a `NameError: name 'fig' is not defined` traceback box under it."""
    data = {"one row": _csv(1), "two rows": _csv(2), "all zero": _csv(50, zeros=True)}[case]
    for view in ("Map", "Export"):
        at = _upload(make_app, "e.csv", data, **{"explorer.view": view})
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.error) == 1
        expected = "need at least three" if case != "all zero" else "All 50 vectors are zero"
        assert expected in at.error[0].value


def test_similarity_of_labelled_vectors_without_images(make_app):
    """Was: "SyntaxError: '(' was never closed" (Streamlit's magic st.write of `show_images(...) or
    st.dataframe(...)`, a bare expression over two lines) for any labelled set without pictures: a CSV, the
    Text page's sentences."""
    at = _upload(make_app, "e.csv", _csv(400), **{"explorer.view": "Similarity"})
    assert_clean(at)
    assert "Hardest negatives" in " ".join(s.value for s in at.subheader)
    assert any("cosine" in str(df.value.columns.tolist()) for df in at.dataframe)


def test_text_embeddings_in_the_similarity_view(make_app):
    """The Text page's entry: sentences as captions and a topic label, no images."""
    from core.embed import EmbeddingSet
    from ui.registry import Entry

    rng = np.random.default_rng(0)
    emb = EmbeddingSet(rng.normal(size=(120, 16)).astype(np.float32), labels={"topic": np.arange(120) % 4},
                       classes={"topic": ["cats (pets)", "dogs", "tea", "trains"]},
                       captions=[f"Sentence {i} (with brackets" for i in range(120)])
    entry = Entry(name="MiniLM", kind="embeddings", source="text", payload=emb, _embeddings=emb)
    at = _open(make_app, registry={"MiniLM": entry}, **{"explorer.source": "Your models", "explorer.entry": "MiniLM",
                                                       "explorer.view": "Similarity"})
    assert_clean(at)


def test_a_big_upload_opens_on_pca_although_umap_was_chosen(make_app, monkeypatch):
    """Was 517 s for 200,000 x 64: the demo's UMAP setting carried over and mapped every point. A set above
    SLOW_MAP_POINTS opens on PCA with one sentence and a button; the button computes the chosen map."""
    import ui.explorer as X

    monkeypatch.setattr(X, "SLOW_MAP_POINTS", 100)
    umap = dict(PCA, method="umap")
    at = _upload(make_app, "big.csv", _csv(300), **{"explorer.applied": umap})
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Map"] == "PCA 2-D"
    assert any("takes minutes here" in i.value for i in at.info)
    at.button(key="explorer.slow_go").click().run(timeout=180)
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Map"] == "UMAP 2-D"


def test_an_upload_is_parsed_once_for_every_rerun(make_app, monkeypatch):
    from core.embed import EmbeddingSet

    calls = []
    original = EmbeddingSet.from_file.__func__

    def counting(cls, *args, **kwargs):
        calls.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(EmbeddingSet, "from_file", classmethod(counting))
    at = _upload(make_app, "e.csv", _csv(60))
    assert_clean(at)
    at.selectbox(key="explorer.colour").set_value("nothing").run()
    at.run()
    assert_clean(at)
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------ selections both ways
def _figure(at, key: str) -> dict:
    import json

    chart = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return json.loads(chart.proto.spec)


def _arr(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array dict {"dtype", "bdata": base64}."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def _lit(fig: dict) -> set[int]:
    """Rows a figure highlights: each trace's customdata at its selectedpoints (all rows when none is set)."""
    out: set[int] = set()
    for tr in fig["data"]:
        cd = _arr(tr.get("customdata", []))
        sel = tr.get("selectedpoints")
        if sel is None:
            return set()
        out |= {int(cd[j]) for j in sel}
    return out


def _select(rows) -> dict:
    return {"selection": {"points": [{"customdata": int(r), "curve_number": 0, "point_index": 0} for r in rows],
                          "point_indices": [], "box": [], "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}}


def test_lasso_fills_a_table_and_ticked_rows_light_up_on_the_map(make_app):
    at = _open(make_app)
    assert_clean(at)
    assert _lit(_figure(at, "explorer.map")) == set()  # nothing selected: every point in colour
    group = [3, 10, 42, 77, 500]
    at.session_state["explorer.map"] = _select(group)  # what a lasso on the map reports
    at.run()
    assert_clean(at)
    assert any("5 selected items" in s.value for s in at.subheader)
    table = next(df for df in at.dataframe if "id" in df.value.columns and len(df.value) == len(group))
    from ui.explorer import demo_spaces

    es = list(demo_spaces().values())[-1].es
    assert table.value["id"].tolist() == [es.ids[r] for r in group]
    assert "image" in table.value.columns  # thumbnails: the table is the gallery too
    assert _lit(_figure(at, "explorer.map")) == set(group)  # the group lit, the rest greyed
    # tick two rows of the table: only those stay lit
    key = f"explorer.table.{at.session_state['explorer._group']['token']}"  # ui.mapselect: one table per group
    at.session_state[key] = {"selection": {"rows": [1, 3], "columns": [], "cells": []}}
    at.run()
    assert_clean(at)
    assert _lit(_figure(at, "explorer.map")) == {10, 77}
    fig = _figure(at, "explorer.map")
    assert all(tr["unselected"]["marker"]["opacity"] < 0.5 for tr in fig["data"])  # greyed, not hidden
    assert sum(len(_arr(tr["x"])) for tr in fig["data"]) == len(es)
    at.button(key="explorer.clear_sel").click().run()
    assert _lit(_figure(at, "explorer.map")) == set()


def test_a_click_on_the_map_lists_that_items_neighbours(make_app):
    from core.similarity import nearest
    from ui.explorer import demo_spaces

    at = _open(make_app)
    at.session_state["explorer.map"] = _select([123])
    at.run()
    assert_clean(at)
    es = list(demo_spaces().values())[-1].es
    assert any(s.value == f"Item {es.ids[123]}" for s in at.subheader)
    assert f"10 nearest neighbours in the original {es.vectors.shape[1]}-D space" in _texts(at)
    _, sims = nearest(es.vectors, 123, k=10)
    captions = [str(el.proto) for el in at.get("imgs")] + [str(el.proto) for el in at.get("image")]
    assert any(f"{sims[0]:.3f}" in c for c in captions)  # the closest one's caption


def test_images_on_the_map_one_atlas_and_a_click_opens_neighbours(make_app):
    import json

    from ui.explorer import demo_spaces

    at = _open(make_app)
    at.toggle(key="explorer.thumbs").set_value(True).run()
    assert_clean(at)
    decks = at.get("deck_gl_json_chart")
    assert len(decks) == 1
    spec = json.loads(decks[0].proto.json)
    layer = spec["layers"][0]
    assert layer["@@type"] == "IconLayer" and len(layer["data"]) == 1000
    assert spec["views"][0]["@@type"] == "OrthographicView"
    assert decks[0].proto.json.count("data:image/png;base64,") == 1  # ONE atlas for every thumbnail
    assert "background-image:url('data:image/png;base64," in decks[0].proto.tooltip  # the hover picture
    assert "mapStyle" not in spec or not spec.get("mapStyle")  # no basemap: nothing fetched
    es = list(demo_spaces().values())[-1].es
    at.session_state["explorer.thumbmap"] = {"selection": {"indices": {"thumbs": [7]},
                                                           "objects": {"thumbs": [{"row": 7}]}}}
    at.run()
    assert_clean(at)
    assert any(s.value == f"Item {es.ids[7]}" for s in at.subheader)
    # a table selection made on the dot map lights the same items among the thumbnails
    at.toggle(key="explorer.thumbs").set_value(False).run()
    at.session_state["explorer.map"] = _select([1, 2, 3])
    at.run()
    at.toggle(key="explorer.thumbs").set_value(True).run()
    spec = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    layers = {la["id"]: la for la in spec["layers"]}
    assert {r["row"] for r in layers["thumbs"]["data"]} == {1, 2, 3}
    assert len(layers["faded"]["data"]) == 997 and layers["faded"]["opacity"] < 0.5


def test_a_click_anywhere_on_the_big_map_picks_the_nearest_point(make_app, monkeypatch):
    """Above the plotly cap the datashader map is clicked through a grid of cells: the pick is the point
    nearest the clicked cell's centre (brute force here), and its neighbours are listed."""
    import ui.bigmap as ub
    import ui.explorer as X
    from core.projection import project

    monkeypatch.setattr(X, "MAX_POINTS", 300)
    at = _open(make_app)
    assert_clean(at)
    assert any("All 1,000 points" in s.value for s in at.subheader)
    es = list(X.demo_spaces().values())[-1].es
    coords = project(es.vectors, "pca", dim=2, seed=0)
    (x0, x1), (y0, y1) = at.session_state["explorer.bigmap.window"]
    gx, gy = ub._GRID
    j = gx * (gy // 3) + gx // 4  # a cell a third of the way up, a quarter across
    cx, cy = x0 + (j % gx + 0.5) * (x1 - x0) / gx, y0 + (j // gx + 0.5) * (y1 - y0) / gy
    brute = int(np.argmin(((coords - (cx, cy)) ** 2).sum(axis=1)))
    at.session_state["explorer.bigmap.chart"] = {"selection": {"points": [{"point_index": j, "curve_number": 0}],
                                                               "point_indices": [j], "box": [], "lasso": []}}
    at.run()
    assert_clean(at)
    assert any(s.value == f"Item {es.ids[brute]}" for s in at.subheader)
    assert "nearest neighbours in the original" in _texts(at)


def test_compare_a_selection_on_one_map_lights_the_other(make_app):
    at = _open(make_app, **{"explorer.view": "Compare"})
    assert_clean(at)
    at.session_state["explorer.cmp_a"] = _select([5, 6, 7])
    at.run()
    assert_clean(at)
    assert _lit(_figure(at, "explorer.cmp_b")) == {5, 6, 7}


def test_compare_selection_fills_a_table_whose_ticked_rows_light_both_maps(make_app):
    at = _open(make_app, **{"explorer.view": "Compare"})
    at.session_state["explorer.cmp_b"] = _select([5, 6, 7])  # a lasso on the second map
    at.run()
    assert_clean(at)
    assert any("3 selected items, in both spaces" in s.value for s in at.subheader)
    table = next(df for df in at.dataframe if "id" in df.value.columns and len(df.value) == 3)
    jaccard = next(c for c in table.value.columns if c.startswith("Jaccard@"))
    from ui.explorer import demo_spaces

    untrained, trained = (sp.es.vectors for sp in demo_spaces().values())  # the demo opens on the trained one
    k = int(jaccard.split("@")[1])

    def neighbours(v: np.ndarray, i: int) -> set[int]:  # brute-force cosine top-k, itself left out
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        sims = u @ u[i]
        sims[i] = -np.inf
        return set(np.argsort(-sims, kind="stable")[:k].tolist())

    expected = [len(neighbours(trained, i) & neighbours(untrained, i)) / len(neighbours(trained, i)
                | neighbours(untrained, i)) for i in (5, 6, 7)]
    np.testing.assert_allclose(table.value[jaccard].to_numpy(), expected, atol=1e-6)
    g = at.session_state["explorer.cmp._group"]
    assert g["rows"] == [5, 6, 7]
    assert _lit(_figure(at, "explorer.cmp_a")) == {5, 6, 7} == _lit(_figure(at, "explorer.cmp_b"))
    at.session_state[f"explorer.cmp.table.{g['token']}"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert_clean(at)
    assert _lit(_figure(at, "explorer.cmp_a")) == {6} == _lit(_figure(at, "explorer.cmp_b"))
    at.button(key="explorer.cmp_clear").click().run()
    assert "explorer.cmp._group" not in at.session_state


def test_a_click_on_a_gallery_image_lights_it_on_the_map_and_lists_its_neighbours(make_app):
    at = _open(make_app)
    group = [3, 10, 42, 77, 500]
    at.session_state["explorer.map"] = _select(group)
    at.run()
    assert _lit(_figure(at, "explorer.map")) == set(group)
    at.button(key="explorer.gal.42").click().run()
    assert_clean(at)
    assert _lit(_figure(at, "explorer.map")) == {42}  # that item lit, the rest of the group greyed
    from ui.explorer import demo_spaces

    es = list(demo_spaces().values())[-1].es
    assert any(s.value == f"Item {es.ids[42]}" for s in at.subheader)  # its neighbours are listed
    at.button(key="explorer.gal.77").click().run()
    assert _lit(_figure(at, "explorer.map")) == {42, 77}
    at.button(key="explorer.gal.42").click().run()
    at.button(key="explorer.gal.77").click().run()
    assert _lit(_figure(at, "explorer.map")) == set(group)  # both put out again: the whole group
