"""One settings system on every page: a link carries each page's settings into a fresh session, a bad value
in a link is left out with a sentence, and the table's choices agree with what core accepts."""
from __future__ import annotations

import pytest

from tests.app.conftest import assert_clean
from ui import settings as S

PAGE_FILES = {"lab": "pages/augmentation_lab.py", "train": "pages/train.py", "loss_lab": "pages/loss_lab.py",
              "explorer": "pages/explorer.py", "clip": "pages/clip.py", "text": "pages/text.py"}
# Settings whose widget a page draws only in some states (another method, another view, a model loaded).
HIDDEN_UNLESS = {"loss_lab.queue": {"loss_lab.loss": "info_nce"}, "loss_lab.mining": {"loss_lab.loss": "triplet"},
                 "loss_lab.margin": {"loss_lab.loss": "triplet"}}


def _other_value(key: str):
    """A valid value that is not the default: the next option, or a point inside the bounds."""
    s = S.SETTINGS[key]
    if s.kind == "bool":
        return not s.default
    if s.kind == "text":
        return s.default + " changed"
    if s.options is not None:
        opts = list(s.options)
        return opts[(opts.index(s.default) + 1) % len(opts)] if s.default in opts else opts[0]
    if s.kind == "range":
        return (float(s.low), float(s.high))
    value = s.low + (s.high - s.low) * 0.5
    return int(value) if s.kind == "int" else round(value, 2)


# What each page's round trip changes: its own settings, minus those another test or a download would need.
ROUND_TRIP = {
    "loss_lab": ["loss_lab.temperature", "loss_lab.batch", "loss_lab.noise", "loss_lab.steps", "loss_lab.seed",
                 "loss_lab.anatomy_batch", "loss_lab.tau", "loss_lab.dim", "loss_lab.preset"],
    "explorer": ["explorer.method", "explorer.dim", "explorer.n_neighbors", "explorer.min_dist", "explorer.k",
                 "explorer.perplexity", "explorer.metric"],
    "clip": ["clip.n", "clip.scale", "clip.topk", "clip.ret_k", "clip.ret_mode", "clip.map_method", "clip.plus",
             "clip.minus", "clip.tmode"],
    "text": ["text.k", "text.query", "text.index", "text.steps", "text.temperature", "text.hard_negatives",
             "text.pairs"],
    "train": ["train.n", "train.steps", "train.temperature", "train.lr", "train.seed", "train.batch_size"],
    "lab": ["lab.n_views", "lab.seed", "aug.hue", "aug.crop_scale", "aug.blur"],
}


@pytest.mark.parametrize("page", list(ROUND_TRIP))
def test_link_round_trip_of_every_page(make_app, page):
    """Set the page's settings in one session, build its link as ui.urlstate.write does, open that link in a
    fresh session: the page shows the same values."""
    at = make_app(page=PAGE_FILES[page])
    changed = {k: _other_value(k) for k in ROUND_TRIP[page]}
    for key, value in changed.items():
        at.session_state[key] = value
    at.run()
    assert_clean(at)
    values = {k: at.session_state[k] for k in changed}
    assert values == changed  # the page kept them (no widget reset them to its own default)
    link = S.url_params(values)
    assert set(link) == set(changed)
    fresh = make_app(query_params=link, page=PAGE_FILES[page])
    assert_clean(fresh)
    assert not fresh.warning or all("not used" not in w.value for w in fresh.warning)
    assert {k: fresh.session_state[k] for k in changed} == changed


BAD = {"lab": ("lab.n_views", "7"), "train": ("train.steps", "-3"), "loss_lab": ("loss_lab.temperature", "9"),
       "explorer": ("explorer.method", "magic"), "clip": ("clip.scale", "1e9"), "text": ("text.k", "500")}


@pytest.mark.parametrize("page", list(BAD))
def test_bad_link_value_is_left_out_with_a_sentence(make_app, page):
    """The link opens the page itself (``/loss_lab?loss_lab.temperature=9``), as a pasted link does."""
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP, TIMEOUT

    key, raw = BAD[page]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params[key] = raw
    at.switch_page(PAGE_FILES[page]).run()
    assert at.title[0].value != "Contrastive Playground"  # the page itself, not Home
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(w.value for w in at.warning)
    assert "Some settings in the link were not used" in said and f"'{key}'" in said
    assert at.session_state[key] == S.default(key)


def test_the_toy_setting_is_checked_by_core_with_one_sentence():
    """The Lab's toy settings are ToyConfig's fields as core declares them: a bad value in a link and the same value
    given to ToyConfig get one sentence, and the page starts where the dataclass does."""
    from core import lab

    for key, bad in (("loss_lab.noise", 2.5), ("loss_lab.margin", 3.0), ("loss_lab.loss", "hinge"),
                     ("loss_lab.batch", 2), ("loss_lab.temperature", 0.001)):
        with pytest.raises(ValueError) as from_link:
            S.coerce(key, bad)
        with pytest.raises(ValueError) as from_core:
            S.toy_config({key: bad})
        assert str(from_link.value) == str(from_core.value), key
        assert f"'{key}'" in str(from_core.value)
    assert S.toy_config({}) == lab.ToyConfig()
    assert S.toy_config({"loss_lab.batch": 128, "loss_lab.queue": 16}).batch_size == 128
    assert S.bounds("loss_lab.margin") == (0.0, 2.0)
