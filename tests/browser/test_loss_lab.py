"""Loss & Temperature Lab in a real browser: the toy plays, the τ slider moves, a clicked point becomes the anchor.

Markup this relies on (pages/loss_lab.py): buttons ``loss_lab.play`` / ``loss_lab.pause``; the toy's loss chart
``loss_lab.chart.loss`` (one point per step); the anchor's bar chart ``loss_lab.chart.anchor``; the slider
``loss_lab.tau``.
"""
from __future__ import annotations

import contextlib
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def _page(app: Any) -> None:
    app.goto("/")
    link = next(link for link in app.nav_links() if "Loss" in link["label"])
    app.goto(link["href"])


def test_toy_plays_and_temperature_slider_moves(app: Any) -> None:
    _page(app)
    steps = app.page.locator(".st-key-loss_lab-steps input").first
    steps.focus()
    steps.press("ArrowRight")  # 300 -> 1000 steps: the toy cannot finish before Pause (it reached 221 of 300 once)
    app.wait_idle(timeout=60)
    assert steps.get_attribute("aria-valuetext") == "1000"
    app.click("loss_lab.play")
    try:
        # It moves within a second of Play on a quiet machine; the timeout allows for a loaded CI box.
        points = app.wait_for_plot_points("loss_lab.chart.loss", 3, timeout=60)
        assert points >= 3
        app.click("loss_lab.pause", timeout=10)
        app.wait_idle(timeout=60)
    except BaseException:
        # Leave no toy training for the next test, and never hide the first error behind a failed cleanup.
        with contextlib.suppress(Exception):
            app.button("loss_lab.pause").click(timeout=5000)
        raise
    assert app.button("loss_lab.play").is_visible()
    title_before = app.page.inner_text(".st-key-loss_lab-chart-anchor")
    slider = app.page.locator(".st-key-loss_lab-tau input").first  # Streamlit 1.67 draws a range <input>
    slider.focus()
    # 0.2 -> 0.1 -> 0.07 -> 0.05 -> 0.02, one press per rerun (as a person presses): four presses inside one rerun
    # can lose one to the rerun's redraw of the URL-bound widget.
    for expected in ("0.1", "0.07", "0.05", "0.02"):
        slider.press("ArrowLeft")
        app.wait_idle(timeout=60)
        app.page.wait_for_function(
            "([el, v]) => el.getAttribute('aria-valuetext') === v", arg=[slider.element_handle(), expected],
            timeout=20_000)
    assert slider.get_attribute("aria-valuetext") == "0.02"
    assert "τ = 0.02" in app.page.inner_text(".st-key-loss_lab-chart-anchor")
    assert "τ = 0.2:" in title_before
    # Click a point of the batch: it becomes the anchor (plotly selection -> callback -> number input).
    anchor_input = app.page.locator(".st-key-loss_lab-anchor input").first
    before = anchor_input.input_value()
    points = app.page.locator(".st-key-loss_lab-chart-batch .scatterlayer .trace:nth-child(2) .points path")
    points.nth(3).click(force=True)
    app.page.wait_for_function(  # the rerun may start a moment after the click on a loaded machine
        "([sel, v]) => { const e = document.querySelector(sel); return e && e.value !== v; }",
        arg=[".st-key-loss_lab-anchor input", before], timeout=60_000, polling=200)
    app.wait_idle(timeout=60)
    assert f"Anchor {anchor_input.input_value()} at" in app.page.inner_text(".st-key-loss_lab-chart-anchor")
    app.screenshot("loss-lab-after-play")
    assert app.problems() == []
