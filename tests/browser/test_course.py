"""The shipped course in a real browser: start it on Home, walk every step with Next, no exception box anywhere.

Two steps are answered on the way (the textbook-augmentation run and the map's trust), and screenshots of them
land in benchmarks/out/screenshots (course-step-03.png, course-step-06.png) for a person to look at.
The URL carries the course and the step, and a settings change on a step's page goes into the address.
"""
from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import harness

pytestmark = pytest.mark.browser

N_STEPS = 10  # assets/courses/intro.json
URL_HOLDS = {3: ("aug.hue=0.1", "train.n=2000"), 4: ("loss_lab.tau=0.05",), 6: ("explorer.method=pca",),
             9: ("clip.factor=size", "clip.tmode=openai")}  # ui.urlstate.write on pages beyond Train and the Lab
STEPS_SHOWN = {2: "150", 3: "200"}  # the Train steps' "train.steps"
ANSWER_AT = {3: "Colour", 6: "No: the vectors know more than the map shows"}  # step -> the choice clicked


# An image drawn by a run that a newer run replaced within a second (the page Next left, or the Train page's sample
# images drawn before ui.course._keep_run_asked started the step's job again) can be gone from Streamlit's media
# store when the browser asks for it; the newer run draws the page. Every other console error counts.
MEDIA_404 = re.compile(r"status of 404 .*/media/[0-9a-f]+\.(jpg|png)\)")


def _wait_text(app: Any, text: str, timeout_s: float) -> None:
    app.page.wait_for_function("(t) => document.querySelector('[data-testid=\"stMain\"]').innerText.includes(t)",
                               arg=text, timeout=timeout_s * 1000)


def test_walk_the_course_with_next(app: Any) -> None:
    app.goto("/")
    app.click("home.course.intro")
    app.wait_idle(timeout=120)
    problems: dict[int, list[str]] = {}
    for step in range(1, N_STEPS + 1):
        _wait_text(app, f"step {step} of {N_STEPS}", 120)
        assert re.search(rf"[?&]course=intro(&|$)", app.page.url) and f"step={step}" in app.page.url, app.page.url
        for param in URL_HOLDS.get(step, ()):  # the page wrote its changed settings into the address
            assert param in app.page.url, (step, param, app.page.url)
        if step in STEPS_SHOWN:  # the step's own settings are on the page, not the previous step's
            selector = harness.key_selector("train.steps")
            try:  # the live status may be rerunning the page: wait for the run that draws the step
                app.page.wait_for_function(
                    "([sel, want]) => { const e = document.querySelector(sel);"
                    " return !!e && e.innerText.split('\\n').map(t => t.trim()).includes(want); }",
                    arg=[selector, STEPS_SHOWN[step]], timeout=60_000)
            except Exception:  # noqa: BLE001 - reported below with what the page shows
                pass
            shown = app.page.locator(selector).first.inner_text()
            assert STEPS_SHOWN[step] in shown.split(), (step, shown)
        if step in ANSWER_AT:
            guess = app.page.locator(harness.key_selector(f"course.guess.intro.{step - 1}"))
            guess.get_by_text(ANSWER_AT[step], exact=True).click()
            _wait_text(app, "The run says", 240)  # a training step: its run must finish first
            app.wait_idle(timeout=60)
            app.screenshot(f"course-step-{step:02d}")
        found = [p for p in app.problems() if not MEDIA_404.search(p)]
        if found:
            problems[step] = found
        if step < N_STEPS:
            app.click("course.next", timeout=60)
            app.wait_idle(timeout=180)
    assert not problems, problems
    # The last step's page (Text) writes a changed setting into the address, as every page does.
    assert "step=10" in app.page.url
    app.click("course.leave")
    app.wait_idle(timeout=60)
    assert "course=" not in app.page.url
