"""Train page: trains through its own buttons, registers models, refuses bad uploads, reports divergence."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from tests.app.conftest import TINY, assert_clean, errors, wait_for_job

TRAIN = "pages/train.py"


def test_changing_widgets_changes_state(make_app):
    at = make_app(page=TRAIN)
    at.selectbox(key="train.method").set_value("triplet").run()
    assert_clean(at)
    assert at.session_state["train.method"] == "triplet"
    # method-specific settings appear, temperature (unused by triplet) goes away
    at.selectbox(key="train.mining").set_value("hard").run()
    at.slider(key="train.margin").set_value(1.0).run()
    assert at.session_state["train.mining"] == "hard" and at.session_state["train.margin"] == 1.0
    assert "train.temperature" not in [w.key for w in at.select_slider]
    at.selectbox(key="train.label_factor").set_value("colour").run()
    assert at.session_state["train.label_factor"] == "colour"
    assert_clean(at)


def test_width_and_image_size_reach_the_trainer(make_app):
    """The first lesson trains a width-16 encoder on 24 px shapes: both settings must reach the run, and the
    image size must make a new run (24 px and 32 px shapes have the same length, not the same pixels)."""
    at = make_app(query_params={**TINY, "train.width": "16", "train.image_size": "24"}, page=TRAIN)
    at.button(key="train.step").click().run()
    assert_clean(at)
    job = at.session_state["train._job"]
    assert job.trainer.cfg.encoder.width == 16
    assert tuple(job.trainer.dataset.images.shape[-2:]) == (24, 24)
    at.select_slider(key="train.image_size").set_value(32).run()
    assert any("changed settings" in w.value for w in at.warning), [w.value for w in at.warning]
    # the encoder width is a small-CNN setting: it goes away for ResNet-18
    at.selectbox(key="train.arch").set_value("resnet18").run()
    assert "train.width" not in [w.key for w in at.select_slider]


def test_reload_finds_the_job_paused_not_lost(make_app, monkeypatch):
    """Issue 6.7: a reload (a new session) while a long run trains. The old session is gone, so its job
    pauses and frees its slot and its worker process; the reloaded page, carrying the job's token in its URL,
    adopts it paused. Issue 29 goal 4: the same link opened in another browser never hands it over."""
    import time

    from ui import jobs, session

    browser = {"secret": "browser A"}  # AppTest has no cookies: say which browser each session runs in
    monkeypatch.setattr(session, "browser_secret", lambda: browser["secret"])
    at = make_app(query_params={**TINY, "train.steps": "5000"}, page=TRAIN)
    at.button(key="train.play").click().run()
    assert_clean(at)
    job = at.session_state["train._job"]
    token = at.query_params[session.JOB_PARAM]
    token = token[0] if isinstance(token, list) else token
    assert token and session._tokens[token] is job
    deadline = time.monotonic() + 60
    while job.steps_done < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    # Every tab closed: the runtime reports the session inactive (AppTest has no runtime, so say it here).
    job.attach_owner(lambda: False, lease_s=None, grace_s=0.0)
    assert job.wait(30)
    assert job.state == jobs.PAUSED and job.orphaned and job.slots.running == 0
    deadline = time.monotonic() + 10
    while job.pid is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.pid is None  # its process ended: an orphan holds no worker
    kept = job.steps_done
    # Another user's fresh page does not get it (no token in its URL) ...
    stranger = make_app(query_params=TINY, page=TRAIN)
    assert "train._job" not in stranger.session_state
    # ... nor does another browser that opens the copied link, token and all.
    browser["secret"] = "browser B"
    shared = make_app(query_params={**TINY, "train.steps": "5000", session.JOB_PARAM: token}, page=TRAIN)
    assert_clean(shared)
    assert "train._job" not in shared.session_state
    # The user reloads in their own browser: a new session whose URL carries the token.
    browser["secret"] = "browser A"
    back = make_app(query_params={**TINY, "train.steps": "5000", session.JOB_PARAM: token}, page=TRAIN)
    assert_clean(back)
    assert back.session_state["train._job"] is job and job.steps_done == kept
    assert any("while this page was closed" in i.value for i in back.info)
    back.button(key="train.play").click().run()  # and goes on, in a fresh worker from the paused state
    deadline = time.monotonic() + 60
    while job.steps_done <= kept and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.steps_done > kept and job.trainer.history[kept].step == kept + 1
    job.pause()
    assert job.wait(30)


def test_a_live_session_keeps_its_job_from_a_copied_url(make_app):
    import time

    from ui import session

    at = make_app(query_params=TINY, page=TRAIN)
    at.button(key="train.step").click().run()
    job = at.session_state["train._job"]
    job.attach_owner(lambda: True, lease_s=0.01)  # its page is still open, idle (nothing polls a paused job)
    time.sleep(0.05)
    token = job._token
    other = make_app(query_params={**TINY, session.JOB_PARAM: token}, page=TRAIN)
    assert_clean(other)
    assert "train._job" not in other.session_state


def test_the_precision_setting_says_what_auto_means_here_and_reaches_the_trainer(make_app):
    from core.device import resolve_precision

    at = make_app(query_params=TINY, page=TRAIN)
    box = at.selectbox(key="train.precision")
    here = resolve_precision("auto", "cpu")
    assert box.value == "auto" and f"auto ({here} here)" in box.options
    at.button(key="train.step").click().run()
    assert_clean(at)
    job = at.session_state["train._job"]
    assert job.trainer.cfg.precision == "auto" and job.trainer.precision == here
    at.selectbox(key="train.precision").set_value("bf16").run()
    assert any("changed settings" in w.value for w in at.warning), [w.value for w in at.warning]
    at.button(key="train.reset").click().run()
    at.button(key="train.step").click().run()
    assert_clean(at)
    assert at.session_state["train._job"].trainer.precision == "bf16"


def test_step_buttons_train_and_stop_registers(make_app):
    at = make_app(query_params=TINY, page=TRAIN)
    at.button(key="train.step").click().run()
    assert_clean(at)
    job = at.session_state["train._job"]
    assert job.steps_done == 1 and job.state == "paused"
    at.button(key="train.step").click().run()
    assert job.steps_done == 2
    assert at.get("plotly_chart"), "the loss chart is drawn after a step"
    at.button(key="train.stop").click().run()
    assert_clean(at)
    names = list(at.session_state["registry"])
    assert len(names) == 1 and "step 2" in names[0]
    assert any("Stopped at step 2" in i.value for i in at.info)
    # downloads are offered for a stopped model
    labels = [b.label for b in at.get("download_button")]
    assert any(".safetensors" in label for label in labels) and any(".npz" in label for label in labels)


def test_play_runs_in_the_background_until_finished(make_app):
    at = make_app(query_params=TINY, page=TRAIN)
    at.button(key="train.play").click().run()
    assert_clean(at)
    assert at.button(key="train.pause")  # Play turned into Pause while the job runs
    job = wait_for_job(at)
    assert job.state == "finished" and job.steps_done == 10
    at.run()
    assert_clean(at)
    assert len(at.session_state["registry"]) == 1
    assert any("Finished 10 steps" in s.value for s in at.success)
    assert job.trainer.evals and job.trainer.evals[-1].step == 10  # final evaluation for the charts
    # the 2-D view and its timeline over the snapshots
    assert at.select_slider(key="train.timeline").options
    at.selectbox(key="train.color_by").set_value("colour").run()
    assert_clean(at)
    # the map says what it can show: its own 10-NN beside the vectors' (issue 30), for the live map and for PCA
    trust = [m.value for m in at.markdown if "The map keeps" in m.value]
    assert trust and "of what the model knows about colour" in trust[0] and "in this map" in trust[0], trust
    at.button_group(key="train.map_view").set_value("pca").run()
    assert_clean(at)
    assert any("The map keeps" in m.value for m in at.markdown)
    # train on: the button offers more steps
    assert "more steps" in at.button(key="train.play").label


def test_pause_draws_play_in_the_same_rerun(make_app):
    """Pressing Pause shows Play at once: the page waits for the step in progress (before, it drew Pause again
    and a busy classroom server showed Play only at the next status tick)."""
    at = make_app(query_params={**TINY, "train.steps": "100000"}, page=TRAIN)
    import time

    at.button(key="train.play").click().run()
    job = at.session_state["train._job"]
    assert job.active
    deadline = time.monotonic() + 60
    while job.steps_done == 0 and time.monotonic() < deadline:  # its worker trains
        time.sleep(0.05)
    at.button(key="train.pause").click().run()
    assert_clean(at)
    assert job.state == "paused" and not job.active
    assert at.button(key="train.play") and not [b for b in at.button if b.key == "train.pause"]
    at.button(key="train.stop").click().run()
    assert job.state == "stopped" and len(at.session_state["registry"]) == 1


def test_reset_keeps_the_trained_model_and_starts_fresh(make_app):
    at = make_app(query_params=TINY, page=TRAIN)
    at.button(key="train.step").click().run()
    at.button(key="train.reset").click().run()
    assert_clean(at)
    assert "train._job" not in at.session_state
    assert len(at.session_state["registry"]) == 1
    at.select_slider(key="train.temperature").set_value(0.5).run()
    at.button(key="train.step").click().run()
    assert at.session_state["train._job"].trainer.cfg.temperature == 0.5


def test_changed_settings_warn_until_reset(make_app):
    at = make_app(query_params=TINY, page=TRAIN)
    at.button(key="train.step").click().run()
    at.select_slider(key="train.temperature").set_value(0.5).run()
    assert any("changed settings" in w.value for w in at.warning)


def test_clip_needs_captions(make_app):
    at = make_app(query_params=TINY, page=TRAIN)
    at.selectbox(key="train.dataset").set_value("digits").run()
    at.selectbox(key="train.method").set_value("clip").run()
    assert not at.exception
    assert any("captions" in w.value for w in at.warning)
    assert at.button(key="train.step").disabled


@pytest.mark.slow  # trains through worker processes to the end (15-80 s on a loaded 2-core machine)
def test_divergence_stops_and_explains(make_app, monkeypatch):
    """A step that raises in the worker process: the job fails with the trainer's own sentence on the page."""
    from core.runner import job as runner_job
    from tests.runner_fakes import DIVERGED, DivergingImageKind

    monkeypatch.setattr(runner_job, "kind_of", lambda trainer: DivergingImageKind)
    at = make_app(query_params={**TINY, "train.temperature": "0.001"}, page=TRAIN)
    at.button(key="train.play").click().run()
    job = wait_for_job(at)
    assert job.state == "failed"
    assert not at.exception
    assert DIVERGED in errors(at)


def test_checkpoint_upload_refuses_other_formats(make_app):
    at = make_app(page=TRAIN)
    at.file_uploader(key="train.ckpt_upload").upload("model.pt", b"\x80\x04pickle").run()
    assert not at.exception
    assert any("only .safetensors" in e for e in errors(at))
    at.file_uploader(key="train.ckpt_upload").clear().upload("model.safetensors", b"garbage bytes").run()
    assert not at.exception
    assert any("not a readable safetensors" in e for e in errors(at))


@pytest.mark.slow  # trains through worker processes to the end (15-80 s on a loaded 2-core machine)
def test_checkpoint_round_trip_and_continue(make_app):
    at = make_app(query_params=TINY, page=TRAIN)
    at.button(key="train.step").click().run()
    trainer = at.session_state["train._job"].trainer
    with tempfile.TemporaryDirectory() as d:
        data = trainer.save(Path(d) / "m.safetensors").read_bytes()

    other = make_app(page=TRAIN)
    other.file_uploader(key="train.ckpt_upload").upload("m.safetensors", data).run()
    assert_clean(other)
    assert len(other.session_state["registry"]) == 1
    other.button(key="train.continue_upload").click().run()
    assert_clean(other)
    job = other.session_state["train._job"]
    assert job.steps_done == 1
    assert other.session_state["train.batch_size"] == 32  # the page shows the checkpoint's settings
    assert not any("changed settings" in w.value for w in other.warning)


def test_invalid_settings_are_explained_beside_the_buttons(make_app):
    from tests.app.conftest import TINY

    at = make_app(query_params=TINY, page=TRAIN)
    at.session_state["train.method"] = "clip"
    at.session_state["train.dataset"] = "digits"
    at.run()
    assert not at.exception
    assert at.button(key="train.play").disabled
    assert any("needs captions" in e.value for e in at.error)


@pytest.mark.slow  # trains through worker processes to the end (15-80 s on a loaded 2-core machine)
def test_moco_without_a_queue_is_offered_explained_and_trains(make_app):
    from tests.app.conftest import TINY, wait_for_job

    at = make_app(query_params={**TINY, "train.method": "moco", "train.queue_size": "0"}, page=TRAIN)
    assert_clean(at)
    assert any("No queue: the only negatives are the other images of this batch" in c.value for c in at.caption)
    at.button(key="train.play").click().run()
    job = wait_for_job(at)
    assert job.state == "finished" and job.trainer.queue is None


@pytest.mark.slow  # trains through worker processes to the end (15-80 s on a loaded 2-core machine)
def test_checkpoint_naming_other_data_continues_on_the_chosen_data(make_app, tmp_path):
    """A checkpoint whose metadata names a folder on the server is not read from there, and not opened on other
    data silently (issue 34): the page asks; "Open it on shapes anyway" loads it on the data chosen on the left,
    says the data differ, and Continue starts training at once."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from core.data import load_dataset
    from core.train import TrainConfig, Trainer
    from tests.app.conftest import TINY

    trainer = Trainer(TrainConfig(batch_size=32, steps=3, probe_size=20, knn_reference=50),
                      load_dataset("shapes", n=200, size=32, seed=0))
    trainer.run()
    path = trainer.save(tmp_path / "ckpt.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["dataset"] = json.dumps({"name": "/etc", "options": {}})
    save_file(tensors, str(path), metadata=meta)

    at = make_app(query_params=TINY, page=TRAIN)
    at.file_uploader(key="train.ckpt_upload").upload("ckpt.safetensors", path.read_bytes()).run()
    assert not at.exception
    asked = " ".join(w.value for w in at.warning)
    assert "cannot ask this server to load" in asked and "train.continue_upload" not in [b.key for b in at.button]
    at.button(key="train.ckpt_anyway").click().run()
    said = " ".join(w.value for w in at.warning)
    assert "opened on **shapes**" in said and "**different data**" in said, said
    at.button(key="train.continue_upload").click().run()
    job = at.session_state["train._job"]
    assert job.state in ("queued", "running")  # started without pressing Play
    deadline = time.monotonic() + 60
    while job.steps_done <= 3 and time.monotonic() < deadline:
        job.wait(0.1)
    assert job.steps_done > 3, job.state
    job.pause()


@pytest.mark.slow  # trains through worker processes to the end (15-80 s on a loaded 2-core machine)
def test_sidebar_status_shows_what_the_last_click_did(make_app):
    """The sidebar is drawn after the page, so it is never one action behind (it said 'running' after Reset)."""
    at = make_app(query_params=TINY, page=TRAIN)
    at.button(key="train.play").click().run()
    wait_for_job(at)
    at.button(key="train.reset").click().run()
    assert_clean(at)
    side = " ".join(c.value for c in at.sidebar.caption)
    assert "Training:" not in side  # the job is gone
    assert "1 model or embedding file in this session" in side  # and its model was kept


@pytest.mark.slow  # trains through worker processes to the end (15-80 s on a loaded 2-core machine)
def test_clip_run_with_open_clip_towers_joins_the_registry_as_a_clip(make_app):
    """The Train page's CLIP-style run on open_clip towers becomes a CLIP entry the CLIP page can use."""
    at = make_app(query_params={**TINY, "train.method": "clip", "train.clip_model": "mini-rn"}, page=TRAIN)
    assert_clean(at)
    at.button(key="train.play").click().run()
    wait_for_job(at)
    at.run()
    assert_clean(at)
    kinds = {e.kind for e in at.session_state["registry"].values()}
    assert {"trained", "clip"} <= kinds


def test_the_two_panel_titles_fit_their_half_of_a_narrow_chart():
    """In the Train page's half-width column (~300 px a panel at 12 px type) the one-line titles "Alignment (lower:
    views closer)" and "Uniformity (lower: more spread)" ran into each other (seen in the CI screenshot). Each title
    now keeps its lines short and grows upward from above its own panel, never over the plot."""
    from ui import charts

    fig = charts.alignment_uniformity([0, 25, 50], [0.1, 0.2, 0.15], [-0.5, -1.2, -1.3])
    titles = fig.layout.annotations
    assert len(titles) == 2 and titles[0].x == 0 and titles[1].x == 0.55
    for title in titles:
        assert max(len(line) for line in title.text.split("<br>")) <= 22, title.text
        assert title.yanchor == "bottom" and title.y >= 1.0 and title.xanchor == "left"
