"""Course mode in the app: every shipped step opens its page set up, links carry course and step, Next/Back."""
from __future__ import annotations

import pytest

from tests.app.conftest import assert_clean
from ui import settings as S

TITLES = {"lab": "Augmentation Lab", "train": "Train", "loss_lab": "Loss & Temperature Lab",
          "explorer": "Embedding Explorer", "clip": "CLIP: images and text in one space", "text": "Text"}


def _course():
    from ui import course

    return course.shipped()[0]


@pytest.mark.parametrize("index", range(len(_course().steps)))
def test_every_step_link_opens_its_page_with_the_steps_settings(make_app, index):
    course = _course()
    step = course.steps[index]
    query = {"course": course.id, "step": str(index + 1)}
    at = make_app(query_params=query)
    assert at.session_state["course"] == {"id": course.id, "step": index}
    job = at.session_state["train._job"] if "train._job" in at.session_state else None
    if job is not None:
        job.pause()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value.startswith(TITLES[step.page]), (at.title[0].value, step.page)
    for key, value in step.settings.items():
        assert S.coerce(key, at.session_state[key]) == value, key
    if step.run == "train":
        assert job is not None, "a training step starts its run"
        assert job.trainer.cfg.steps == step.settings["train.steps"]
    progress = " ".join(p.value if isinstance(p.value, str) else "" for p in at.markdown)
    assert step.text[:40] in progress


def test_next_and_back_walk_the_course(make_app):
    course = _course()
    at = make_app()
    at.button(key="home.course.intro").click().run()
    assert at.session_state["course"] == {"id": "intro", "step": 0}
    assert at.title[0].value == "Augmentation Lab"
    assert_clean(at)
    at.button(key="course.next").click().run()  # step 2 trains
    assert at.session_state["course"]["step"] == 1
    assert at.title[0].value == "Train"
    at.session_state["train._job"].pause()
    at.button(key="course.back").click().run()
    assert at.session_state["course"]["step"] == 0
    assert at.title[0].value == "Augmentation Lab"
    assert at.button(key="course.back").disabled
    at.button(key="course.leave").click().run()
    assert "course" not in at.session_state
    assert not any(b.key == "course.next" for b in at.button)
    assert len(course.steps) >= 8


def test_bad_course_link_is_a_sentence(make_app):
    at = make_app(query_params={"course": "nope"})
    assert not at.exception
    assert any("course 'nope'" in w.value for w in at.warning)
    at = make_app(query_params={"course": "intro", "step": "99"})
    assert not at.exception
    assert any("step '99'" in w.value for w in at.warning)
    assert at.session_state["course"]["step"] == 0


def test_question_answered_by_the_steps_own_figures(make_app):
    """The Loss Lab step's answer is core.lab.hardest_negative_share on the step's batch, decided live."""
    import torch

    from core import lab

    course = _course()
    index = next(i for i, s in enumerate(course.steps) if s.question and s.question.measure == "toy_hardest_share")
    at = make_app(query_params={"course": "intro", "step": str(index + 1)})
    at.radio(key=f"course.guess.intro.{index}").set_value("no").run()
    assert not at.exception
    z1, z2, _ = lab.ToyTrainer(lab.ToyConfig(), device="cpu").batch(32, seed=0)
    share = lab.hardest_negative_share(torch.as_tensor(z1), torch.as_tensor(z2), 0.05)
    expected = "Yes, more than a tenth" if share > 0.1 else "No, it is shared out"
    said = " ".join(m.value for m in [*at.success, *at.warning])
    assert f"The run says: {expected}" in said, said
    assert f"tau {share:.2f}" in said


def test_uploaded_course_is_checked(make_app):
    at = make_app()
    bad = b'{"title": "x", "steps": [{"title": "a", "page": "moon", "text": "t"}]}'
    at.file_uploader(key="home.course_upload").upload("c.json", bad).run()
    assert not at.exception
    assert any("'page' must be one of" in e.value for e in at.error)
