"""The CLIP page in a real browser: it opens on the shipped mini-CLIP and draws a zero-shot probability chart.

Markup this relies on (pages/clip.py): the top-k probability chart is the plotly chart with key
``clip.chart.topk`` (one bar per class shown); the Images control is the segmented control ``clip.dataset``.
"""
from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

TOPK_CHART_KEY = "clip.chart.topk"
# A cold server imports torch and open_clip, loads the model and embeds 200 shapes before the first chart.
FIRST_CHART_TIMEOUT = 180.0


def test_zero_shot_on_the_shipped_mini_clip_draws_probabilities(app: Any) -> None:
    app.goto("/")
    clip = next(link for link in app.nav_links() if link["label"] == "CLIP")
    app.goto(clip["href"])
    bars = app.wait_for_plot_points(TOPK_CHART_KEY, 5, timeout=FIRST_CHART_TIMEOUT)
    assert bars >= 5, "the top-5 probability chart should have five bars"
    text = app.main_text()
    assert "mini-CLIP" in text and "Accuracy" in text
    app.screenshot("clip-zero-shot")
    assert app.problems() == []
