"""The shell: every page renders on defaults, presets open a page set up, the sidebar and registry work."""
from __future__ import annotations

import time

import pytest

from tests.app.conftest import PAGES, assert_clean


def test_home_renders_with_presets_and_device_line(make_app, monkeypatch):
    """Before the warm-up thread has found the device, Home says it is checking; once it has, it names it."""
    from ui import warmup

    monkeypatch.setattr(warmup, "device_description", lambda: None)
    at = make_app()
    assert_clean(at)
    assert at.title[0].value == "Contrastive Playground"
    keys = {b.key for b in at.button}
    assert {"home.preset.simclr_shapes", "home.preset.colour_jitter", "home.preset.temperature"} <= keys
    captions = " ".join(c.value for c in at.caption)
    assert "Checking which device" in captions and "Running on" not in captions
    monkeypatch.setattr(warmup, "device_description", lambda: "a test CPU")
    at.run()
    captions = " ".join(c.value for c in at.caption)
    assert "Running on **a test CPU**" in captions and "Checking which device" not in captions


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_defaults(make_app, page):
    at = make_app(page=page)
    assert_clean(at)
    assert at.title, f"{page} has no title"


def test_device_line_appears_once_torch_is_loaded(make_app):
    from ui import warmup

    at = make_app()
    warmup.wait(60)
    at.run()
    assert_clean(at)
    assert any("Running on" in c.value for c in at.caption)


def test_preset_opens_the_lab_already_set_up(make_app):
    at = make_app()
    at.button(key="home.preset.colour_jitter").click().run()
    assert_clean(at)
    assert at.title[0].value == "Augmentation Lab"
    assert at.session_state["aug.hue"] == 0.5
    assert at.session_state["aug.jitter_p"] == 1.0
    assert at.session_state["lab.image"] == 3
    assert any("What colour jitter teaches" in m.value for m in at.markdown)  # the lesson banner
    at.button(key="lab.lesson_close").click().run()
    assert not any("What colour jitter teaches" in m.value for m in at.markdown)


def test_autoplay_preset_starts_training(make_app):
    at = make_app()
    at.button(key="home.preset.temperature").click().run()
    assert_clean(at)
    assert at.title[0].value == "Train"
    assert at.session_state["train.temperature"] == 0.05
    job = at.session_state["train._job"]
    assert job.trainer.cfg.temperature == 0.05
    assert job.state in ("queued", "running")  # started by the click, not waiting for Play
    deadline = time.monotonic() + 60
    while job.steps_done == 0 and time.monotonic() < deadline:  # and it trains
        job.wait(0.1)
    assert job.steps_done > 0, job.state
    job.pause()


def test_presets_are_valid():
    from ui import presets

    found = presets.load_all()
    assert [p.id for p in found] == ["simclr_shapes", "colour_jitter", "temperature", "shortcut"]
    for p in found:
        assert p.title and p.summary and p.lesson


def test_registry_upload_of_embedding_file(make_app):
    import numpy as np

    at = make_app()
    buf = __import__("io").BytesIO()
    np.save(buf, np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))
    at.file_uploader(key="home.registry.upload").upload("vectors.npy", buf.getvalue()).run()
    assert_clean(at)
    assert "vectors.npy" in at.session_state["registry"]
    # a bad file: a sentence, not a traceback
    at.file_uploader(key="home.registry.upload").clear().upload("broken.npy", b"not numpy").run()
    assert not at.exception
    assert at.error


@pytest.mark.parametrize("page", PAGES)
def test_router_runs_on_every_page(make_app, page):
    """app.py's sidebar line shows on each page: the pages/ folder is routed by st.navigation, not by
    Streamlit's legacy folder mode (which would skip app.py and this line)."""
    from ui.session import ROUTER_MARK

    at = make_app(page=page)
    assert_clean(at)
    assert any(ROUTER_MARK in c.value for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]


def _uploaders(at) -> list[tuple[str, int]]:
    return [(u.proto.label, u.proto.max_upload_size_mb) for u in at.get("file_uploader")]


def test_every_uploader_states_the_cap_it_enforces_and_the_server_lets_it_through(make_app, served_config):
    """Uploaders say their own limit (not Streamlit's '200MB per file'), the limit they say is the one they enforce,
    it is core's constant where core has one, and the served config's upload cap lets the largest through."""
    import re

    from core.data import MAX_IMAGE_BYTES
    from core.embed import MAX_EMBEDDING_FILE_BYTES

    at = make_app()
    seen = {"home": _uploaders(at)}
    at.switch_page("pages/train.py").run()
    seen["train"] = _uploaders(at)
    at.switch_page("pages/augmentation_lab.py").run()
    at.selectbox(key="lab.dataset").set_value("upload").run()
    assert_clean(at)
    seen["lab"] = _uploaders(at)
    caps = {}
    for page, found in seen.items():
        for label, cap_mb in found:
            stated = re.search(r"up to (\d+) (MB|KB)", label)
            assert stated, (page, label)
            size, unit = int(stated[1]), stated[2]
            assert (size == cap_mb) if unit == "MB" else (size * 2**10 <= cap_mb * 2**20), (page, label, cap_mb)
            caps[label] = cap_mb
    assert MAX_EMBEDDING_FILE_BYTES // 2**20 in {c for label, c in seen["home"] if "embedding" in label}
    assert MAX_IMAGE_BYTES // 2**20 in {c for label, c in seen["lab"] if "image" in label.lower()}, seen["lab"]
    assert max(caps.values()) <= served_config["options"]["server.maxUploadSize"]


def test_the_served_config_is_all_read_by_streamlit(served_config):
    """Every option in .streamlit/config.toml is one Streamlit knows and takes from that file (a misspelt or
    renamed option would be ignored without a word)."""
    assert not served_config["unknown"], served_config["unknown"]
    from tests.app.conftest import ROOT

    project = str(ROOT / ".streamlit" / "config.toml")
    assert set(served_config["where"].values()) == {project}, served_config["where"]


def test_the_served_app_caches_no_message_in_the_browser(served_config):
    """A rerun that referenced a chart the browser had just dropped from Streamlit's message cache killed the page
    ("Cached ForwardMsg MISS", a fatal connection error after Stop): the served app caches no message at all."""
    options = served_config["options"]
    assert options["global.minCachedMessageSize"] > options["server.maxMessageSize"] * 1e6  # MB: none is larger


def test_pages_that_draw_charts_wait_until_pandas_is_imported_whole(make_app, monkeypatch):
    """plotly read a half-imported pandas from sys.modules while the warm-up thread imported it ("partially
    initialized module 'pandas' has no attribute 'Series'" on the CLIP page): every page but Home waits for the
    warm-up's import of pandas first."""
    import sys

    from ui import warmup

    calls = []
    monkeypatch.setattr(warmup, "plotly_ready", lambda *a, **k: calls.append(1))
    at = make_app()
    assert not calls  # Home draws no plotly chart and stays quick on a cold start
    at.switch_page("pages/clip.py").run()
    assert_clean(at)
    assert calls
    monkeypatch.undo()
    warmup.plotly_ready(timeout=60)
    assert warmup._pandas_ready.is_set() and "pandas" in sys.modules


def test_plotly_ready_waits_for_the_warm_ups_pandas(monkeypatch):
    import threading

    from ui import warmup

    event = threading.Event()
    monkeypatch.setattr(warmup, "_pandas_ready", event)
    monkeypatch.setattr(warmup, "start", lambda: None)
    waiter = threading.Thread(target=warmup.plotly_ready, kwargs={"timeout": 60}, daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # still waiting: pandas is not imported yet
    event.set()
    waiter.join(30)
    assert not waiter.is_alive()  # returned once it was
