"""Your own images on every page: a generated .zip uploaded on Train, Augmentation Lab, Explorer and CLIP, and a
checkpoint trained on it reopened with the same data, other data (said) and none (asked)."""
from __future__ import annotations

import re

import pytest

from tests.app.conftest import TINY, assert_clean, wait_for_job
from tests.ownzips import digits_zip, photo_crops_zip

TRAIN = "pages/train.py"


@pytest.fixture(scope="module")
def digits() -> bytes:
    return digits_zip(300)


def upload_on_train(at, data: bytes, name: str = "digits.zip"):
    at.selectbox(key="train.dataset").set_value("yours").run()
    at.file_uploader(key="train.yours.zip").upload(name, data, "application/zip").run()
    return at


@pytest.mark.slow  # several pages with their models, or a worker-process run (20-30 s loaded)
def test_train_page_takes_a_zip_with_defaults_that_fit_it(make_app, digits):
    at = make_app(query_params={"train.steps": "10"}, page=TRAIN)
    upload_on_train(at, digits)
    assert_clean(at)
    assert at.selectbox(key="train.yours.pick").value == "digits (yours)"
    captions = " ".join(c.value for c in at.caption)
    assert "300 images" in captions and "10 classes" in captions, captions
    # 240 training images: a batch of at most a quarter of them, and the photo recipe (not the digits/shapes one)
    assert at.session_state["train.batch_size"] == 32
    at.button(key="train.step").click().run()
    job = at.session_state["train._job"]
    from core.augment import PRESETS

    assert job.trainer.cfg.augment == PRESETS["simclr"] != PRESETS["shapes"]
    assert job.trainer.dataset.name == "digits (yours)" and len(job.trainer.dataset) == 300
    # the held-out split keeps every class
    assert set(job.trainer.heldout.labels["class"]) == set(range(10))


def test_augmentation_lab_shows_views_of_an_uploaded_set(make_app, digits):
    at = make_app(page="pages/augmentation_lab.py")
    at.selectbox(key="lab.dataset").set_value("yours").run()
    assert_clean(at)
    at.file_uploader(key="lab.yours.zip").upload("digits.zip", digits, "application/zip").run()
    assert_clean(at)
    at.slider(key="lab.image").set_value(5).run()
    assert_clean(at)
    captions = [c for img in at.image for c in img.captions]
    label = at.session_state["lab.yours.pick"]
    assert label == "digits (yours)"
    assert any(c.startswith("Original · class: ") for c in captions), captions  # image 5 of the set, labelled
    # every view, plus "view 1" again in the positive pair below them
    assert sum(bool(re.fullmatch(r"view \d+", c)) for c in captions) == at.session_state["lab.n_views"] + 1


def test_a_set_added_on_one_page_is_offered_on_the_others(make_app, digits):
    at = make_app(page="pages/augmentation_lab.py")
    at.selectbox(key="lab.dataset").set_value("yours").run()
    at.file_uploader(key="lab.yours.zip").upload("digits.zip", digits, "application/zip").run()
    at.switch_page("pages/clip.py").run()
    at.segmented_control(key="clip.dataset").set_value("yours").run()
    assert at.selectbox(key="clip.yours.pick").value == "digits (yours)"
    assert_clean(at)
    # zero-shot uses the set's own class names by default
    assert at.radio(key="clip.names_from").value == "dataset"
    assert any("0, 1, 2, 3" in c.value for c in at.caption), [c.value for c in at.caption][:10]


def test_clip_page_takes_a_zip(make_app):
    crops = photo_crops_zip(8, side=64, classes=3)
    at = make_app(page="pages/clip.py")
    at.segmented_control(key="clip.dataset").set_value("yours").run()
    at.file_uploader(key="clip.yours.zip").upload("crops.zip", crops, "application/zip").run()
    assert_clean(at)
    assert at.selectbox(key="clip.yours.pick").value == "crops"
    assert any("astronaut" in c.value for c in at.caption)


def test_explorer_maps_an_uploaded_set_and_compares_models_on_it(make_app, digits):
    at = make_app(page="pages/explorer.py")
    at.segmented_control(key="explorer.source").set_value("Your images").run()
    at.file_uploader(key="explorer.yours.zip").upload("digits.zip", digits, "application/zip").run()
    assert_clean(at)
    assert "digits (yours)" in " ".join(c.value for c in at.caption)
    # the untrained encoder embeds them until a model is picked: 300 points, with their labels and images
    at.selectbox(key="explorer.colour").set_value("class").run()
    assert_clean(at)
    at.number_input(key="explorer.point").set_value(7).run()
    assert_clean(at)
    assert any("Item digits/" in s.value or "Item " in s.value for s in at.subheader)
    at.segmented_control(key="explorer.view").set_value("Compare").run()
    assert_clean(at)


@pytest.mark.slow  # several pages with their models, or a worker-process run (20-30 s loaded)
def test_checkpoint_on_uploaded_data_asks_opens_on_the_same_and_says_when_different(make_app, digits, tmp_path):
    from core.owndata import load_zip
    from core.train import TrainConfig, Trainer

    ds = load_zip(digits, name="digits.zip")
    trainer = Trainer(TrainConfig(batch_size=32, steps=3, probe_size=20, knn_reference=50), ds, device="cpu")
    trainer.run()
    ckpt = trainer.save(tmp_path / "mine.safetensors").read_bytes()

    # none: the page shows shapes, so it asks for the data and opens nothing
    at = make_app(query_params=TINY, page=TRAIN)
    at.file_uploader(key="train.ckpt_upload").upload("mine.safetensors", ckpt).run()
    assert not at.exception
    asked = " ".join(w.value for w in at.warning)
    assert 'your own images "digits (yours)" (300 images of 32 px, 10 classes' in asked, asked
    assert "train.continue_upload" not in [b.key for b in at.button]
    # the same data, added afterwards: the checkpoint opens on it by itself
    upload_on_train(at, digits)
    assert not at.exception
    said = " ".join(s.value for s in at.success)
    assert "the fingerprints match" in said, said
    at.button(key="train.continue_upload").click().run()
    job = at.session_state["train._job"]
    assert job.trainer.dataset.name == "digits (yours)" and job.trainer.step_count >= 3
    job.pause()

    # different data, on request: opened, and said
    other = make_app(query_params=TINY, page=TRAIN)
    other.file_uploader(key="train.ckpt_upload").upload("mine.safetensors", ckpt).run()
    other.button(key="train.ckpt_anyway").click().run()
    said = " ".join(w.value for w in other.warning)
    assert "**different data**" in said and "opened on **shapes**" in said, said
    assert "train.continue_upload" in [b.key for b in other.button]


def test_a_bad_zip_is_a_sentence(make_app):
    at = make_app(page=TRAIN)
    at.selectbox(key="train.dataset").set_value("yours").run()
    at.file_uploader(key="train.yours.zip").upload("x.zip", b"not a zip at all", "application/zip").run()
    assert not at.exception
    assert any("not a readable .zip" in e.value for e in at.error)
    label = at.get("file_uploader")[0].label
    assert "up to 20,000 images" in label and "MB per .zip" in label and "megapixels" in label


@pytest.mark.slow  # several pages with their models, or a worker-process run (20-30 s loaded)
def test_a_shared_server_offers_no_typed_paths_and_answers_alike(make_app, monkeypatch, tmp_path):
    monkeypatch.setenv("CP_SHARED_SERVER", "1")
    at = make_app(page="pages/text.py")
    at.selectbox(key="text.model").set_value("Another model (name or folder)…").run()
    answers = []
    for typed in (str(tmp_path), str(tmp_path / "missing"), "/etc", "/no/such/folder"):
        at.text_input(key="text.model_spec").input(typed).run()
        assert not at.exception
        answers.append(tuple(e.value for e in at.error))
    assert len(set(answers)) == 1 and "switched off" in answers[0][0], answers

    at.switch_page("pages/clip.py").run()
    assert "local" not in at.radio(key="clip.source").options
    at.switch_page(TRAIN).run()
    at.selectbox(key="train.dataset").set_value("yours").run()
    assert "train.yours.folder" not in [t.key for t in at.text_input]  # no folder path on a shared server
    monkeypatch.delenv("CP_SHARED_SERVER")
    at.run()
    assert "train.yours.folder" in [t.key for t in at.text_input]  # a laptop has one
