"""Augmentation Lab: widgets drive the shared augmentation settings, uploads fail politely, models are checked."""
from __future__ import annotations

from tests.app.conftest import TINY, assert_clean, png_bytes

LAB = "pages/augmentation_lab.py"


def _captions(at) -> list[str]:
    return [c for img in at.image for c in img.captions]


def test_defaults_show_views_and_negatives(make_app):
    at = make_app(page=LAB)
    assert_clean(at)
    captions = _captions(at)
    assert sum(c.startswith("view ") for c in captions) >= 8, captions
    assert any("negative" in c for c in captions)
    assert any("positive" in m.value.lower() for m in at.subheader)


def test_toggling_an_op_changes_state_and_shows_its_strength(make_app):
    at = make_app(page=LAB)
    assert "aug.rotation_degrees" not in [s.key for s in at.slider]
    at.toggle(key="aug.rotation").set_value(True).run()
    assert_clean(at)
    assert at.session_state["aug.rotation"] is True
    at.slider(key="aug.rotation_degrees").set_value(90.0).run()
    assert at.session_state["aug.rotation_degrees"] == 90.0
    assert any("rotation by up to ±90°" in m.value for m in at.markdown)


def test_lab_settings_are_what_train_uses(make_app):
    at = make_app(page=LAB)
    at.toggle(key="aug.color_jitter").set_value(False).run()
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    assert at.session_state["aug.color_jitter"] is False
    assert not any("colour jitter" in m.value for m in at.markdown)


def test_augmentation_recipe_buttons(make_app):
    at = make_app(page=LAB)
    at.pills(key="lab.aug_recipe").set_value("none").run()
    assert_clean(at)
    assert at.session_state["aug.crop"] is False and at.session_state["aug.color_jitter"] is False
    assert any("no augmentation" in m.value for m in at.markdown)
    assert at.session_state["lab.aug_recipe"] is None  # the recipe picker is a one-shot action


def test_other_datasets_and_image_picker(make_app):
    at = make_app(page=LAB)
    at.selectbox(key="lab.dataset").set_value("digits").run()
    assert_clean(at)
    at.slider(key="lab.image").set_value(10).run()
    assert at.session_state["lab.image"] == 10
    at.button(key="lab.random").click().run()
    at.button(key="lab.new_views").click().run()
    assert at.session_state["lab.seed"] == 1
    at.selectbox(key="lab.dataset").set_value("photos").run()
    assert_clean(at)
    assert at.session_state["lab.image"] < 20


def test_upload_a_good_image(make_app):
    at = make_app(page=LAB)
    at.selectbox(key="lab.dataset").set_value("upload").run()
    assert_clean(at)
    assert at.info  # asks for a file
    at.file_uploader(key="lab.upload").upload("me.png", png_bytes(), "image/png").run()
    assert_clean(at)
    assert any("me.png" in c for c in _captions(at))


def test_bad_uploads_show_an_error_not_an_exception(make_app):
    at = make_app(page=LAB)
    at.selectbox(key="lab.dataset").set_value("upload").run()
    at.file_uploader(key="lab.upload").upload("notes.png", b"this is not an image", "image/png").run()
    assert not at.exception
    assert at.error
    at.file_uploader(key="lab.upload").clear().upload("empty.jpg", b"", "image/jpeg").run()
    assert not at.exception
    assert at.error


def test_trained_model_shows_invariance(make_app):
    at = make_app(query_params=TINY, page="pages/train.py")
    at.button(key="train.step").click().run()
    at.button(key="train.stop").click().run()
    assert_clean(at)
    name = next(iter(at.session_state["registry"]))
    at.switch_page(LAB).run()
    at.selectbox(key="lab.model").set_value(name).run()
    assert_clean(at)
    assert any("ignore" in s.value for s in at.subheader)
    assert at.get("plotly_chart")
    assert any("sim" in c for c in _captions(at))
