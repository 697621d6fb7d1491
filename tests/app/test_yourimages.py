"""Your own images on every page: a generated .zip uploaded on Train, Augmentation Lab, Explorer and CLIP, and a
checkpoint trained on it reopened with the same data, other data (said) and none (asked)."""
from __future__ import annotations

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
