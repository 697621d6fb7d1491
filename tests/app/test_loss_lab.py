"""Loss & Temperature Lab page: the toy steps and plays, the τ slider changes the weights, anchors can be picked,
every loss is compared on one batch, presets run and are remembered, the glossary fills in live numbers."""
from __future__ import annotations

import time

import pytest

from tests.app.conftest import assert_clean

PAGE = "pages/loss_lab.py"


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _play_until(at, steps: int, timeout: float = 60.0):
    """Press Play and wait (at most ``timeout`` s) until the toy's job has taken ``steps`` steps; returns the job."""
    at.button(key="loss_lab.play").click().run()
    job = at.session_state["loss_lab._job"]
    deadline = time.monotonic() + timeout
    while job.steps_done < steps and time.monotonic() < deadline:
        time.sleep(0.02)
    return job


def test_page_renders_with_an_untrained_toy(make_app):
    at = make_app(page=PAGE)
    assert_clean(at)
    assert at.session_state["loss_lab._job"].steps_done == 0
    assert any("Every loss" in s.value for s in at.subheader)
    table = at.dataframe[0].value
    assert len(table) == 7 and set(table["loss"]) >= {"NT-Xent", "Triplet, hardest", "Margin contrastive"}
    assert at.latex, "the worked formula is missing"
    assert len(at.dataframe[1].value) >= 12


def test_step_trains_the_toy_and_updates_the_metrics(make_app):
    at = make_app(page=PAGE)
    before = at.session_state["loss_lab._job"].trainer.points().copy()
    at.button(key="loss_lab.step").click().run()
    assert_clean(at)
    job = at.session_state["loss_lab._job"]
    assert job.steps_done == 1
    assert job.trainer.evals, "the first step is followed by a first evaluation"
    assert abs(job.trainer.points() - before).max() > 1e-4
    assert _metric(at, "Uniformity") and _metric(at, "Alignment")


def test_play_moves_and_pause_stops(make_app):
    at = make_app(page=PAGE)
    job = _play_until(at, 3)
    assert job.steps_done >= 3
    at.button(key="loss_lab.pause").click().run()
    job.wait(10)
    assert not job.active
    steps = job.steps_done
    time.sleep(0.3)
    assert job.steps_done == steps
    assert_clean(at)


def test_pause_draws_play_in_the_same_rerun(make_app):
    """The rerun that handles Pause shows Play (it waits for the worker's answer); the old page drew Pause again
    while the step finished, and its live panel swapped the button a moment later. The page's toy steps at
    least 40 ms (its pace), so the pause lands in the middle of one."""
    at = make_app(page=PAGE)
    job = _play_until(at, 2)
    at.button(key="loss_lab.pause").click().run()
    assert not job.active
    keys = {b.key for b in at.button}
    assert "loss_lab.play" in keys and "loss_lab.pause" not in keys
    assert_clean(at)


def test_the_points_move_while_the_toy_trains_in_its_worker(make_app):
    """The page's toy is the job's mirror: the worker's weights come back while it plays, so the drawn points
    move before any pause."""
    at = make_app(page=PAGE)
    job = at.session_state["loss_lab._job"]
    before = job.trainer.points().copy()
    job = _play_until(at, 20)
    deadline = time.monotonic() + 30
    while abs(job.trainer.points() - before).max() < 1e-3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.active or job.steps_done >= 20
    assert abs(job.trainer.points() - before).max() > 1e-3
    job.pause()
    assert job.wait(30)


def test_temperature_slider_changes_weights_and_formula(make_app):
    at = make_app(page=PAGE)
    share_02 = _metric(at, "Hardest share")
    latex_02 = [x.value for x in at.latex]
    at.select_slider(key="loss_lab.tau").set_value(0.02).run()
    assert_clean(at)
    share_low = _metric(at, "Hardest share")
    assert float(share_low.rstrip("%")) > float(share_02.rstrip("%"))
    assert [x.value for x in at.latex] != latex_02
    assert "/0.02" in at.latex[0].value


def test_anchor_selection_changes_the_breakdown(make_app):
    at = make_app(page=PAGE)
    loss0 = _metric(at, "Anchor's loss")
    at.number_input(key="loss_lab.anchor").set_value(5).run()
    assert_clean(at)
    assert at.session_state["loss_lab._last_anchor"]["loss"] != pytest.approx(float(loss0), abs=1e-4)
    # a smaller batch clamps an anchor that no longer exists
    at.number_input(key="loss_lab.anchor").set_value(60).run()
    at.select_slider(key="loss_lab.anatomy_batch").set_value(8).run()
    assert_clean(at)
    assert at.session_state["loss_lab.anchor"] < 16


def test_changing_the_loss_rebuilds_an_untrained_toy(make_app):
    at = make_app(page=PAGE)
    at.selectbox(key="loss_lab.loss").set_value("triplet").run()
    assert_clean(at)
    assert at.session_state["loss_lab._job"].trainer.cfg.loss == "triplet"
    assert at.selectbox(key="loss_lab.mining").value == "semihard"
    at.radio(key="loss_lab.dim").set_value(3).run()
    assert_clean(at)
    assert at.session_state["loss_lab._job"].trainer.points().shape[1] == 3


@pytest.mark.slow
def test_collapse_preset_runs_and_is_cached(make_app, monkeypatch):
    from core import lab

    at = make_app(page=PAGE)
    at.selectbox(key="loss_lab.preset").set_value("collapse").run()
    at.button(key="loss_lab.run_preset").click().run()
    assert_clean(at)
    result = at.session_state["loss_lab._presets"]["collapse"]
    assert result.reproduced and result.numbers["effective_rank_align"] < 1.2
    assert any("Alignment only" in s.value for s in at.success)
    words = next(d.value for d in at.dataframe if "term" in d.value.columns)  # the glossary quotes this run
    assert words.set_index("term").loc["collapse", "here on this page"] == f"experiment 2: {result.verdict}"
    # cached for everyone: another session's click trains nothing and gets the same result
    monkeypatch.setattr(lab, "run_preset", lambda *a, **k: pytest.fail("the preset ran again"))
    other = make_app(page=PAGE)
    other.selectbox(key="loss_lab.preset").set_value("collapse").run()
    other.button(key="loss_lab.run_preset").click().run()
    assert_clean(other)
    assert other.session_state["loss_lab._presets"]["collapse"].verdict == result.verdict


def test_glossary_covers_the_issue_terms_in_one_line_each():
    from ui import glossary

    wanted = ["NT-Xent", "InfoNCE", "temperature", "alignment", "uniformity", "logit scale", "projection head",
              "effective rank", "hard negative", "false negative", "modality gap", "PCA",
              "PCA of encoder features", "alignment / uniformity"]
    for term in wanted:
        text = glossary.help(term)
        assert text and "\n" not in text and len(text) < 260, term
    assert glossary.help("nt-xent") == glossary.TERMS["NT-Xent"]
    with pytest.raises(KeyError):
        glossary.help("no such term")


def test_train_page_explains_its_terms(make_app):
    from ui import glossary

    at = make_app(page="pages/train.py")
    assert_clean(at)
    assert at.select_slider(key="train.temperature").help == glossary.help("temperature")
    assert any(glossary.help("NT-Xent") in c.value for c in at.caption)
