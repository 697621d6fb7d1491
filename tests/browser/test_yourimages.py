"""Your own images in Chromium: a .zip uploaded on the Train page (playwright set_input_files) trains a few steps,
then the Explorer, reached through the sidebar in the same session, maps those images.

Markup this relies on: the uploader's key ``train.yours.zip`` (ui.yourimages.source), the Train page's
``train.step`` button and ``train.chart.loss`` chart, the Explorer's ``explorer.source`` segmented control and its
``explorer.map`` chart.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.browser.harness import key_selector

pytestmark = pytest.mark.browser


@pytest.mark.timeout(600)  # a cold UMAP (numba) on a loaded 2-core machine
def test_train_a_few_steps_on_an_uploaded_zip_then_explore_it(app: Any, tmp_path) -> None:
    from tests.ownzips import digits_zip

    zpath = tmp_path / "digits.zip"
    zpath.write_bytes(digits_zip(200))
    app.goto("/")
    app.goto(next(link for link in app.nav_links() if "train" in link["label"].lower())["href"], timeout=120)
    app.page.locator(f"{key_selector('train.dataset')} input[role=combobox]").click()
    app.page.get_by_role("option", name="your images (.zip)").click()
    app.wait_idle(timeout=60)
    app.page.locator(f"{key_selector('train.yours.zip')} input[type=file]").set_input_files(str(zpath))
    app.page.wait_for_function("() => document.querySelector('[data-testid=\"stMain\"]').innerText"
                               ".includes('Added digits (yours)')", timeout=120_000)
    app.wait_idle(timeout=60)
    assert "200 images" in app.main_text()
    for n in (1, 2, 3):  # one step at a time: each click waits until the previous step is drawn
        app.click("train.step", timeout=120)
        assert app.wait_for_plot_points("train.chart.loss", n, timeout=180) >= n
    assert "Defaults for 200 images: batch 32" in app.main_text()
    app.screenshot("yourimages-train")

    app.page.locator("[data-testid='stSidebarNav'] a", has_text="Explorer").first.click()
    app.wait_idle(timeout=120)
    app.page.locator(key_selector("explorer.source")).get_by_text("Your images").click()
    app.wait_idle(timeout=120)
    # The map is coloured by class (one trace per digit, ~20 points each): wait for it, then count every trace.
    app.wait_for_plot_points("explorer.map", 10, timeout=300)
    app.wait_idle(timeout=60)
    assert sum(app.plot_info("explorer.map")["points"]) == 200  # the untrained encoder's map of all the images
    text = app.main_text()
    assert "digits (yours)" in text
    # A thumbnail the Train page drew can be requested by the browser after the switch to the Explorer removed it
    # (a media 404 during navigation, no effect on the page); everything else counts.
    assert [p for p in app.problems() if "/media/" not in p] == []
    app.screenshot("yourimages-explorer")
