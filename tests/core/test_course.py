"""Course files: the shipped ones load, each kind of bad file gets its own sentence, answers are decided right."""
from __future__ import annotations

import copy
import json

import pytest

from core import course as C
from ui import settings as S


def check(page, values):
    return S.validate(values, S.PAGE_NAMESPACES[page])


GOOD = {
    "format": C.FORMAT,
    "title": "Tiny",
    "steps": [
        {"title": "Views", "page": "lab", "text": "Look.", "settings": {"aug.hue": 0.2}, "look_at": "lab.n_views"},
        {"title": "Train", "page": "train", "run": "train", "text": "Go.", "settings": {"train.steps": 100},
         "question": {"text": "Which?", "choices": {"shape": "Shape", "colour": "Colour"},
                      "measure": "train_knn", "answer": "largest", "textbook": "shape"}},
    ],
}


def parse(doc):
    return C.parse(json.dumps(doc), "tiny", check)


def test_good_course_loads_with_checked_values():
    course = parse(GOOD)
    assert [s.page for s in course.steps] == ["lab", "train"]
    assert course.steps[0].settings == {"aug.hue": 0.2}
    assert course.steps[1].question.choices == {"shape": "Shape", "colour": "Colour"}


def test_shipped_courses_load_and_cover_the_pages():
    courses = C.load_all(check)
    assert courses, "no course in assets/courses"
    intro = next(c for c in courses if c.id == "intro")
    assert 8 <= len(intro.steps) <= 12
    assert {"lab", "train", "loss_lab", "explorer", "clip", "text"} <= {s.page for s in intro.steps}
    assert sum(s.question is not None for s in intro.steps) >= 4


def _with(path, value):
    doc = copy.deepcopy(GOOD)
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize("path, value, sentence", [
    (("colour",), "red", "The course has an unknown key 'colour'"),
    (("steps", 0, "pgae"), "lab", "Step 1 has an unknown key 'pgae'"),
    (("steps", 0, "page"), "moon", "Step 1: 'page' must be one of lab, train, loss_lab, explorer, clip, text, not 'moon'."),
    (("steps", 0, "settings", "aug.hue"), 0.9, "Step 1: 'aug.hue' must be between 0 and 0.5; got 0.9."),
    (("steps", 0, "settings", "train.steps"), 100, "Step 1: 'train.steps' is not a setting of this page."),
    (("steps", 1, "settings", "train.steps"), 7, "Step 2: 'train.steps' must be one of"),
    (("steps", 0, "settings", "nope.x"), 1, "Step 1: 'nope.x' is not a setting of this page."),
    (("steps", 0, "look_at"), "train.chart.knn", "Step 1: 'look_at' must be something the lab page draws"),
    (("steps", 0, "run"), "train", "Step 1: only a Train-page step can start a training run."),
    (("steps", 0, "run"), "fly", "Step 1: 'run' must be one of none, train, measure, not 'fly'."),
    (("steps", 1, "run"), "none", "Step 2: a 'train_knn' question needs the step to run training"),
    (("steps", 1, "question", "measure"), "clip_ensemble", "belongs to the clip page, not to train"),
    (("steps", 1, "question", "measure"), "oracle", "'measure' must be one of"),
    (("steps", 1, "question", "answer"), "vote", "'answer' must be one of largest, above, not 'vote'."),
    (("steps", 1, "question", "textbook"), "size", "'textbook' must be one of its choices (shape, colour)"),
    (("steps", 1, "question", "choices"), {"shape": "Shape"}, "needs 'choices'"),
    (("steps", 1, "text"), KeyError, "Step 2 needs a 'text' text."),
    (("steps",), [], "The course needs 'steps'"),
    (("format",), "other@9", "The course's 'format' must be"),
])
def test_each_bad_course_gets_its_sentence(path, value, sentence):
    with pytest.raises(ValueError) as err:
        parse(_with(path, value))
    assert sentence in str(err.value)
    assert str(err.value).startswith("The course was not loaded: ")


def test_not_json_not_text_and_too_big():
    with pytest.raises(ValueError, match="not valid JSON"):
        C.parse(b"{nope", "x", check)
    with pytest.raises(ValueError, match="not UTF-8"):
        C.parse(b"\xff\xfe\x00", "x", check)
    with pytest.raises(ValueError, match="at most 200,000"):
        C.parse(b" " * (C.MAX_BYTES + 1), "x", check)
    with pytest.raises(ValueError, match="JSON object"):
        C.parse(b"[1, 2]", "x", check)


def test_every_problem_is_named_at_once():
    doc = _with(("steps", 0, "page"), "moon")
    doc["steps"][1]["settings"]["train.lr"] = -1
    with pytest.raises(ValueError) as err:
        parse(doc)
    assert "'moon'" in str(err.value) and "'train.lr'" in str(err.value)


def test_course_step_values_are_checked_like_a_link():
    """The same value is refused with the same sentence by a link and by a course step."""
    with pytest.raises(ValueError) as link:
        S.from_url("aug.hue", "0.9")
    with pytest.raises(ValueError) as step:
        parse(_with(("steps", 0, "settings", "aug.hue"), 0.9))
    assert str(link.value) in str(step.value)


def _q(**kw):
    base = dict(text="?", choices={"shape": "S", "colour": "C"}, measure="train_knn", answer="largest")
    base.update(kw)
    return C.Question(**base)


def test_decide_largest_and_above():
    q = _q()
    assert C.decide(q, {"shape": 0.9, "colour": 0.4, "size": 1.0}) == "shape"
    assert C.decide(q, {"shape": 0.3, "colour": 0.4}) == "colour"
    assert C.decide(q, {"shape": 0.3}) is None  # a figure the run has not produced yet
    above = _q(choices={"yes": "Y", "no": "N"}, measure="toy_hardest_share", answer="above", figure="tau",
               threshold=0.5)
    assert C.decide(above, {"tau": 0.51}) == "yes"
    assert C.decide(above, {"tau": 0.5}) == "no"
    gap = _q(choices={"yes": "Y", "no": "N"}, measure="map_trust", answer="above", figure="vector_knn",
             than="map_knn", threshold=0.05)
    assert C.decide(gap, {"vector_knn": 0.81, "map_knn": 0.25}) == "yes"
    assert C.decide(gap, {"vector_knn": 0.81, "map_knn": 0.78}) == "no"
    assert C.decide(gap, {"vector_knn": float("nan"), "map_knn": 0.78}) is None
