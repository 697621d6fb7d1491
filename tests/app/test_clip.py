"""CLIP page: opens on the shipped mini-CLIP with a zero-shot result, scores labelled sets, searches, maps,
refuses bad uploads, registers the model, and shows the offline error as a sentence (hub patched away)."""
from __future__ import annotations

import pytest

from tests.app.conftest import assert_clean, errors, png_bytes

CLIP = "pages/clip.py"


def _charts(at):
    return [c for c in at.get("plotly_chart")]


def test_opens_with_a_zero_shot_result_on_the_shipped_model(make_app):
    at = make_app(page=CLIP)
    assert_clean(at)
    assert any("mini-CLIP" in m.value for m in at.markdown)
    assert at.session_state["clip._spec"] == "mini-clip"
    assert len(_charts(at)) >= 4  # top-k bars, per-class accuracy, confusion matrix, map
    assert any(m.label == "Accuracy" for m in at.metric)
    assert any(m.label == "Modality gap" for m in at.metric)


def test_templates_scale_and_ensembling(make_app):
    at = make_app(page=CLIP)
    at.radio(key="clip.tmode").set_value("custom").run()
    assert_clean(at)
    labels = [m.label for m in at.metric]
    assert "Ensembling gain" in labels and "One template only" in labels
    at.select_slider(key="clip.scale").set_value(2).run()
    assert_clean(at)
    at.radio(key="clip.tmode").set_value("openai").run()
    assert_clean(at)
    at.selectbox(key="clip.factor").set_value("colour").run()
    assert_clean(at)
    assert at.session_state["clip.template"] == "a {} shape"


def test_typed_and_preset_class_names(make_app):
    at = make_app(page=CLIP)
    at.radio(key="clip.names_from").set_value("typed").run()
    at.text_area(key="clip.typed").set_value("circle, star").run()
    assert_clean(at)
    assert not any(m.label == "Accuracy" for m in at.metric)  # typed names are not scored
    at.text_area(key="clip.typed").set_value("circle").run()
    assert any("at least two class names" in e for e in errors(at))
    assert not at.exception
    at.radio(key="clip.names_from").set_value("preset").run()
    at.selectbox(key="clip.preset").set_value("CIFAR-10").run()
    assert_clean(at)


def test_confusion_cell_opens_its_images(make_app):
    at = make_app(page=CLIP)
    at.selectbox(key="clip.cm_true").set_value("circle").run()
    at.selectbox(key="clip.cm_pred").set_value("circle").run()
    assert_clean(at)
    assert any("classified as **circle** (right)" in c.value for c in at.caption)


def test_retrieval_by_text_image_and_arithmetic(make_app):
    at = make_app(page=CLIP)
    at.text_input(key="clip.query").set_value("a blue star").run()
    assert_clean(at)
    at.radio(key="clip.ret_mode").set_value("image").run()
    at.text_input(key="clip.plus").set_value("a blue shape").run()
    at.text_input(key="clip.minus").set_value("a red shape").run()
    assert_clean(at)
    assert any("Query: image 0 + “a blue shape” − “a red shape”" in c.value for c in at.caption)


def test_register_adds_a_clip_entry_for_other_pages(make_app):
    at = make_app(page=CLIP)
    at.button(key="clip.register").click().run()
    assert_clean(at)
    reg = at.session_state["registry"]
    entry = next(e for e in reg.values() if e.kind == "clip")
    import numpy as np
    import torch

    vecs = entry.embed_images(torch.rand(3, 3, 32, 32))
    assert vecs.shape == (3, 64) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    emb = entry.embeddings()
    assert len(emb) == 200 and "shape" in emb.labels


def _image_captions(at) -> list[str]:
    return [c for el in at.get("image") for c in el.captions]


def test_bad_uploads_are_refused_with_a_sentence(make_app):
    at = make_app(page=CLIP)
    at.segmented_control(key="clip.dataset").set_value("upload").run()
    assert_clean(at)
    assert any("Upload one or more images" in i.value for i in at.info)
    up = at.file_uploader(key="clip.upload")
    up.upload("notes.png", b"this is not an image", "image/png").upload("photo.png", png_bytes(), "image/png").run()
    assert not at.exception
    assert any(w.value.startswith("notes.png:") and "not an image in a format this app reads" in w.value
               for w in at.warning), [w.value for w in at.warning]
    assert not errors(at)  # the good file is classified; no error the user did not cause
    # The template box shows the template the page uses (it was reset while the box was hidden): before the fix
    # the browser got an empty box while the session held "a photo of a {}.".
    box = at.text_input(key="clip.template")
    assert box.proto.set_value and box.proto.value == "a photo of a {}." == at.session_state["clip.template"]
    assert any("trained only on coloured shapes" in i.value and "cached" in i.value for i in at.info)
    at.file_uploader(key="clip.upload").clear().upload("broken.jpg", b"", "image/jpeg").run()
    assert not at.exception and any(w.value.startswith("broken.jpg:") for w in at.warning)


def test_heatmaps_beside_the_answer_with_their_trust_figure_and_words(make_app):
    at = make_app(page=CLIP)
    assert_clean(at)
    assert any(h.value == "Why this answer?" for h in at.subheader)
    caps = _image_captions(at)
    assert any(c.startswith("Occlusion:") and "of its heat on the shape" in c for c in caps), caps
    assert any(c.startswith("Grad-CAM at layer1 (8 x 8 grid)") for c in caps), caps
    assert any("<span" in m.value and "background: rgba" in m.value for m in at.markdown)  # coloured words
    at.selectbox(key="clip.why_class").set_value("star").run()
    at.radio(key="clip.why_target").set_value("similarity").run()
    assert_clean(at)
    at.button(key="clip.trust").click().run(timeout=600)
    assert_clean(at)
    labels = {m.label: m.value for m in at.metric}
    assert {"Occlusion", "Grad-CAM", "Random heat", "Centre blob"} <= set(labels), labels
    assert any("of the heat on the shape" in c.value for c in at.caption)


def test_a_template_without_a_slot_and_a_runaway_format_spec_get_a_sentence(make_app):
    at = make_app(page=CLIP)
    at.text_input(key="clip.template").set_value("a photo").run()
    assert not at.exception
    assert any("every class would get the same prompt" in e for e in errors(at)), errors(at)
    at.text_input(key="clip.template").set_value("{:>200000000}").run()
    assert not at.exception and any("not a plain template" in e for e in errors(at))


def test_offline_pretrained_tag_shows_one_sentence(make_app, monkeypatch):
    import core.clip.load as clip_load  # load_clip looks these up in its own module

    monkeypatch.setattr(clip_load, "_cached_tag_weights", lambda *a: None)
    monkeypatch.setattr(clip_load, "_hub_reachable", lambda timeout: False)
    at = make_app(page=CLIP)
    at.radio(key="clip.source").set_value("tag").run()
    at.button(key="clip.load").click().run()
    assert not at.exception
    msgs = errors(at)
    assert any("could not be downloaded" in m and "mini-clip" in m for m in msgs), msgs
    assert at.session_state["clip._spec"] == "mini-clip"  # the shipped model stays in use
    assert any(m.label == "Accuracy" for m in at.metric)


@pytest.mark.parametrize("payload,why", [(b"not an image at all", "not an image in a format this app reads"),
                                         (png_bytes()[:30], "not an image in a format this app reads")])
def test_upload_decoding_refuses_broken_files(payload, why):
    from core.clip import images_from_uploads

    ok, problems = images_from_uploads([("x.png", payload), ("good.png", png_bytes())])
    assert [n for n, _ in ok] == ["good.png"] and why in problems[0][1]


def test_a_users_own_vit_local_dir_gets_legrad_beside_occlusion(make_app, tmp_path):
    import json

    import torch
    from open_clip.model import CLIP as OpenClipModel

    from core.clip import export_local_dir

    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    export_local_dir(OpenClipModel(**json.loads(json.dumps(cfg))), cfg, tmp_path / "my_vit", half=False)
    at = make_app(page=CLIP)
    at.radio(key="clip.source").set_value("local").run()
    at.text_input(key="clip.local").set_value(f"local-dir:{tmp_path / 'my_vit'}").run()
    at.button(key="clip.load").click().run()
    assert_clean(at)
    caps = _image_captions(at)
    assert any(c.startswith("LeGrad over 2 blocks (4 x 4 patches)") for c in caps), caps
    assert any(c.startswith("Occlusion:") for c in caps)
    assert not any("trained only on coloured shapes" in i.value for i in at.info)


def test_a_widget_that_changes_nothing_on_the_map_does_not_reproject(make_app, monkeypatch):
    import streamlit as st

    from core.clip import retrieval

    calls = []
    original = retrieval.joint_map
    monkeypatch.setattr(retrieval, "joint_map", lambda *a, **k: calls.append(k.get("method")) or original(*a, **k))
    st.cache_data.clear()  # the map cache is the process's: start from empty so the first run must project
    at = make_app(page=CLIP)
    assert_clean(at)
    assert calls == ["pca"]
    at.select_slider(key="clip.topk").set_value(3).run()
    at.select_slider(key="clip.scale").set_value(2).run()
    at.text_input(key="clip.query").set_value("a blue star").run()
    at.radio(key="clip.ret_mode").set_value("image").run()
    assert_clean(at)
    assert calls == ["pca"], "an unrelated widget re-fitted the projection"
    at.radio(key="clip.tmode").set_value("custom").run()  # other prompts: a new map
    assert_clean(at)
    assert calls == ["pca", "pca"]
    assert any(m.label == "Modality gap" for m in at.metric)


def test_a_sessions_own_image_sets_are_kept_within_a_bound(make_app):
    from ui.clipcache import USER_KEY, USER_SETS

    at = make_app(page=CLIP)
    for n in (50, 100):  # built-in sets are shared (st.cache_data), never copied into the session
        at.select_slider(key="clip.n").set_value(n).run()
    assert_clean(at)
    assert USER_KEY not in at.session_state and "clip._features" not in at.session_state
    at.segmented_control(key="clip.dataset").set_value("upload").run()
    for i in range(USER_SETS + 3):  # different images each time
        at.file_uploader(key="clip.upload").clear().upload(f"img{i}.png", png_bytes(24 + 4 * i), "image/png").run()
        assert not at.exception and not errors(at)
        assert 1 <= len(at.session_state[USER_KEY]) <= USER_SETS
        assert not at.get("progress")  # the embedding's progress bar is gone once done
    assert len(at.session_state[USER_KEY]) == USER_SETS
    # a new upload under an old name is a new set: keyed by content, not by file name
    before = set(at.session_state[USER_KEY])
    at.file_uploader(key="clip.upload").clear().upload("img0.png", png_bytes(60), "image/png").run()
    assert set(at.session_state[USER_KEY]) - before and len(at.session_state[USER_KEY]) == USER_SETS
    assert {v.shape for v in at.session_state[USER_KEY].values()} == {(1, 64)}
