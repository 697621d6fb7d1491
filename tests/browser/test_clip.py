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


def test_heatmap_panel_shows_two_methods_and_an_upload_keeps_its_template(app: Any, tmp_path: Any) -> None:
    """The "Why this answer?" panel draws occlusion beside Grad-CAM and coloured words with no exception box;
    after switching to uploads and uploading a photo, the template box shows the template the page uses
    (it used to be empty in the browser while the session held "a photo of a {}.")."""
    from tests.app.conftest import png_bytes

    app.goto("/")
    clip = next(link for link in app.nav_links() if link["label"] == "CLIP")
    app.goto(clip["href"])
    app.wait_for_plot_points(TOPK_CHART_KEY, 5, timeout=FIRST_CHART_TIMEOUT)
    page = app.page
    heading = page.get_by_text("Why this answer?", exact=True)
    heading.wait_for(timeout=120_000)
    text = app.main_text()
    assert "Occlusion:" in text and "Grad-CAM at layer1" in text and "of its heat on the shape" in text
    assert page.locator('[data-testid="stMain"] span[title]').count() >= 3  # the prompt's coloured words
    shot = app.screenshot("clip-heatmaps")
    heading.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = heading.bounding_box()  # viewport coordinates, after the full-page shot put the viewport back
    if shot is not None and box is not None:
        page.screenshot(path=str(shot.with_name("clip-heatmap-panel.png")),
                        clip={"x": 0, "y": box["y"] - 10, "width": 1400, "height": 520})
        for extra in app.screenshot_dirs[1:]:
            extra.mkdir(parents=True, exist_ok=True)
            (extra / "clip-heatmap-panel.png").write_bytes(shot.with_name("clip-heatmap-panel.png").read_bytes())
    assert app.problems() == []

    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes())
    page.get_by_text("Upload images", exact=True).click()
    app.wait_idle(timeout=120)
    page.locator('input[type="file"]').set_input_files(str(photo))
    page.get_by_text("Why this answer?", exact=True).wait_for(timeout=120_000)
    app.wait_idle(timeout=120)
    template = page.locator('input[aria-label="Template ({} is the class name)"]')
    assert template.input_value() == "a photo of a {}."
    assert "trained only on coloured shapes" in app.main_text()
    assert app.problems() == []
