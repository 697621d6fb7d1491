"""AppTest fixtures: the app from its entry point, tiny training settings, clean-up of background jobs."""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 60  # seconds per script run: generous for a cold import of torch on a busy 2-core machine

# Query parameters that make the Train page train a few steps on 200 shapes in seconds.
TINY = {"train.n": "200", "train.batch_size": "32", "train.steps": "10"}

PAGES = ("pages/home.py", "pages/augmentation_lab.py", "pages/train.py", "pages/loss_lab.py", "pages/clip.py",
         "pages/text.py", "pages/explorer.py")


@pytest.fixture(scope="session", autouse=True)
def _navigation_mode_as_served():
    """Run every AppTest script the way a served app runs after its first rerun.

    Streamlit remembers in a class flag whether an app uses the legacy ``pages/`` folder mode; ``st.navigation``
    switches it off for good. A real server pays the legacy wrapper on its process's first script run only,
    but AppTest resets the flag before *every* run, so each run would go through the legacy wrapper, which
    re-registers the pages under other hashes and drops the URL bindings of widgets. The browser tests
    (tests/browser/test_pages.py) check the real server's behaviour with the folder in place.
    """
    from streamlit.runtime import pages_manager

    original = pages_manager.PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        pages_manager.PagesManager.uses_pages_directory = False

    pages_manager.PagesManager.__init__ = init
    yield
    pages_manager.PagesManager.__init__ = original


@pytest.fixture(scope="session")
def served_config() -> dict:
    """The options Streamlit itself reads from the project's config when started from the repo root (as the
    README's `streamlit run app.py` is): ``{"options": {name: value}, "where": {name: file or "<default>"},
    "unknown": [names in .streamlit/config.toml that Streamlit does not know]}``. Read in a fresh interpreter,
    so a typo or a renamed option shows up as unknown instead of being silently ignored."""
    import json
    import subprocess
    import sys

    code = (
        "import json, tomllib\n"
        "import streamlit.config as c\n"
        "opts = c.get_config_options()\n"
        "doc = tomllib.load(open('.streamlit/config.toml', 'rb'))\n"
        "names = [f'{s}.{k}' for s, kv in doc.items() for k in kv]\n"
        "print(json.dumps({'options': {n: o.value for n, o in opts.items() if isinstance(o.value, (bool, int, float, str))},\n"
        "                  'where': {n: c.get_where_defined(n) for n in names if n in opts},\n"
        "                  'unknown': [n for n in names if n not in opts]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def make_app() -> Callable[..., AppTest]:
    """``make_app(query_params=None)``: an AppTest of app.py, already run once (home page)."""
    from ui import jobs

    def make(query_params: dict | None = None, page: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        if query_params:
            at.query_params.update(query_params)
        at.run()
        if page:
            at.switch_page(page).run()
        return at

    yield make
    jobs.stop_all(timeout=30)
    for job in jobs.live_jobs():
        job.close()  # its worker process ends


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not errors(at), errors(at)


def wait_for_job(at: AppTest, timeout: float = 60.0):
    """Rerun the page (as the live fragment would) until the session's job stops being active."""
    deadline = time.monotonic() + timeout
    job = at.session_state["train._job"]
    while job.active and time.monotonic() < deadline:
        job.wait(0.5)  # returns at once only when the job settled
    assert not job.active, f"training still {job.state} after {timeout} s"
    at.run()
    return job


def png_bytes(size: int = 40) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
