"""Train: pick a method, press play, watch the embedding space organise itself.

Training runs in a job owned by this session, in its own worker process (``core.runner`` via ``ui.jobs``); a
fragment redraws the live panel about once a second while it runs, and stops polling when it does not.
"""
from __future__ import annotations

from ui.router import require as _routed

_routed()  # a page opened before app.py ever ran: route it through app.py (ui/router.py)

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from core import lessons
from ui import charts, jobs, livemap, loaders, presets, registry, session, yourimages
from ui.glossary import help as gloss
from ui import settings as S
from ui import widgets as W
from ui.widgets import user_errors
from ui.cache import store

st.title("Train")
st.caption(
    "Choose a dataset and a method on the left, then press **Play**. Training runs in the background: you "
    "can watch it here, pause it, or visit another page and come back."
)
W.lesson_banner("train")

with st.spinner("Loading the training engine…"):
    from core import train as T
    from core.errors import PlaygroundError
    from core.models import ARCHS, SMALL_ARCHS, count_parameters
    from core.device import pick_device, resolve_precision

METHOD_HELP = {
    "simclr": "No labels. Two augmented views of each image are pulled together; every other image in the "
              "batch is a negative (NT-Xent loss, Chen et al. 2020). NT-Xent: " + gloss("NT-Xent"),
    "moco": "No labels. Like SimCLR, but the negatives come from a queue of earlier batches, encoded by a "
            "slowly moving copy of the model (He et al. 2020).",
    "triplet": "Uses labels. An anchor is pulled towards an image of its class and pushed away from one of "
               "another class until they are a margin apart (Schroff et al. 2015).",
    "margin": "Uses labels. Pairs of the same class are pulled together; pairs of different classes are pushed "
              "apart until they are a margin apart (Hadsell, Chopra & LeCun 2006).",
    "supcon": "Uses labels. Every image of the same class in the batch counts as a positive, not only the "
              "other view (Khosla et al. 2020).",
    "clip": "Images and their captions are embedded by two encoders; each image must pick out its own caption "
            "among the batch's (Radford et al. 2021). Needs a dataset with captions, such as shapes.",
}
# Short names: the full text is the help tooltip.
ARCH_LABELS = {"small_cnn": "Small CNN", "fast_cnn": "Fast CNN", "resnet18": "ResNet-18"}
MAX_CHECKPOINT_BYTES = 300 * 1024 * 1024
SETTLE_S = 1.0  # how long Pause / Stop wait for the training thread to finish its step before drawing the page;
# longer than most steps, and short enough that the click's rerun stays under 2 s on a busy server (with 1.5 s, a
# ten-tab classroom had one of 2.44 s: a step with an evaluation); a longer step is left to the next tick
SIG_KEY = session.SIG_KEY


def _ask(action: str) -> None:
    """Button callbacks only record what was asked; the page does the work (and can show errors)."""
    st.session_state["train._action"] = action


def _signature(cfg, dataset) -> str:
    # The dataset's spec names its size too: shapes at 24 px and at 32 px are different data of the same length.
    data = dataset.spec or {"name": dataset.name}
    return json.dumps({"cfg": cfg.to_dict(), "data": [data, len(dataset)]}, sort_keys=True, default=str)


def _load_training_data(name: str, n: int, image_size: int = 32):
    """The dataset, or None with the error shown; a failed download is remembered for this session."""
    failures = st.session_state.setdefault("train._dataset_failures", {})
    if name in failures:
        st.error(failures[name], icon=":material/cloud_off:")
        return None
    try:
        return loaders.training_dataset(name, n, image_size=image_size)
    except PlaygroundError as err:
        failures[name] = str(err)
        st.error(str(err), icon=":material/cloud_off:")
        return None


def _build_config(method: str):
    values = W.current_values(["train", "aug"])
    values["train.method"] = method
    return S.train_config(values)


def _new_job(cfg, dataset) -> jobs.TrainingJob:
    # The page's trainer is the job's mirror (core.runner): it holds the records and, once paused, the weights; the
    # worker process trains on the best device, so the mirror stays on the CPU.
    return session.new_job(lambda: T.Trainer(cfg, dataset, device="cpu"), target_steps=cfg.steps,
                           sig=_signature(cfg, dataset))


def _checkpoint_bytes(trainer, suffix: str):
    """A deferred download: Trainer.save into a temp folder, read back one of the two files."""
    def make() -> bytes:
        with tempfile.TemporaryDirectory() as d:
            path = trainer.save(Path(d) / "model.safetensors")
            return path.with_suffix(suffix).read_bytes()
    return make


def _embedding_bytes(trainer, kind: str):
    def make() -> bytes:
        emb = trainer.embeddings()
        return emb.to_csv_bytes() if kind == "csv" else emb.to_npz_bytes()
    return make


def _load_checkpoint(name: str, data: bytes, fallback_dataset=None, anyway: bool = False):
    if not name.lower().endswith(".safetensors"):
        raise PlaygroundError(
            f"'{name}' was refused: only .safetensors checkpoints saved by this app can be loaded. "
            "Files such as .pt, .pth, .ckpt or .pkl can run code when opened, so they are never read.")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise PlaygroundError(f"'{name}' is {len(data) / 1e6:.0f} MB; checkpoints up to "
                              f"{MAX_CHECKPOINT_BYTES / 1e6:.0f} MB are accepted.")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[:120] or "checkpoint.safetensors"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / safe
        path.write_bytes(data)
        with st.spinner("Loading the checkpoint…"):
            # Never on other data silently: the data it names, the same data (by fingerprint), or, when the
            # user asks, the chosen data with a sentence that says it differs (ui.yourimages.open_checkpoint).
            return yourimages.open_checkpoint(path, fallback_dataset, anyway=anyway)


def _settings_from_config(cfg, dataset) -> dict:
    """Page settings that describe ``cfg`` (values the widgets cannot show are left as they are)."""
    wanted = {
        "train.method": cfg.method, "train.arch": cfg.encoder.arch, "train.projection_dim": cfg.projection_dim,
        "train.width": cfg.encoder.width,
        "train.batch_size": cfg.batch_size, "train.temperature": cfg.temperature, "train.lr": cfg.lr,
        "train.steps": cfg.steps, "train.seed": cfg.seed, "train.queue_size": cfg.queue_size,
        "train.precision": cfg.precision, "train.momentum": cfg.momentum, "train.margin": cfg.margin,
        "train.mining": cfg.mining,
        "train.label_factor": cfg.label_factor or "", "train.dataset": dataset.name, "train.n": len(dataset),
    }
    wanted.update(yourimages.train_settings(dataset))  # the user's own images: "yours", with that set picked
    if dataset.name == "shapes":
        wanted["train.image_size"] = dataset.image_size
    wanted.update({f"aug.{k}": v for k, v in cfg.augment.to_dict().items()})
    out = {}
    for k, v in wanted.items():
        try:
            out[k] = S.coerce(k, v)
        except ValueError:
            pass
    return out


def _continue_uploaded() -> None:
    trainer = st.session_state.get("train._uploaded")
    if trainer is None:
        return
    W.assign(_settings_from_config(trainer.cfg, trainer.dataset))
    _ask("continue_upload")


# ------------------------------------------------------------------------------------------ settings column
settings_col, main_col = st.columns([1, 2.3], gap="large")
dataset = None
cfg = None
with settings_col:
    with st.container(border=True):
        st.markdown("**Data**")
        catalog = loaders.catalog()
        ds_name = W.select("train.dataset", [*catalog, yourimages.CHOICE], format_func=yourimages.choice_label,
                           help="; ".join(f"{k}: {v}" for k, v in catalog.items()) + "; " + yourimages.CHOICE_HELP,
                           on_change=W.follow_dataset, args=("train.dataset",))
        st.caption(catalog.get(ds_name, ""))
        if ds_name == yourimages.CHOICE:  # the user's own images (ui.yourimages), with defaults that fit them
            dataset = yourimages.train_source("train.yours")
        else:
            n_images = W.select_slider("train.n", format_func=lambda v: f"{v:,}")
            image_size = W.select_slider("train.image_size", format_func=lambda v: f"{v} px") \
                if ds_name == "shapes" else S.default("train.image_size")
            dataset = _load_training_data(ds_name, int(n_images), int(image_size))
            if dataset is not None and len(dataset) < int(n_images):
                st.caption(f"{ds_name} has {len(dataset):,} images; all of them are used.")

    with st.container(border=True):
        st.markdown("**Method**")
        method = W.select("train.method", format_func=lambda m: T.METHOD_NAMES.get(m, m))
        st.caption(METHOD_HELP.get(method) or T.METHOD_HELP.get(method, ""))
        if method == "moco":
            queue = W.select_slider("train.queue_size", format_func=lambda v: f"{v:,}" if v else "none")
            W.select_slider("train.momentum")
            if not queue:
                st.caption("No queue: the only negatives are the other images of this batch (their keys), as in "
                           "MoCo v3. A queue adds keys from earlier batches, so far more negatives per step.")
        if method == "triplet":
            W.select("train.mining", format_func=lambda m: {"all": "all valid triplets", "hard": "hardest only",
                                                            "semihard": "semi-hard (FaceNet)"}[m])
        if method in ("triplet", "margin"):
            W.slider("train.margin", step=0.05)
        if method in T.SUPERVISED and dataset is not None:
            W.select("train.label_factor", dataset.factors)
        clip_blocked = method == "clip" and dataset is not None and not dataset.captions
        if clip_blocked:
            st.warning(f"CLIP-style training needs a caption for every image, and {dataset.name} has none. "
                       "Choose **shapes**, which comes with captions, or another method.",
                       icon=":material/subtitles_off:")

    with st.container(border=True):
        st.markdown("**Model and optimiser**")
        W.select("train.arch", format_func=lambda a: ARCH_LABELS.get(a, a),
                 help="; ".join(f"{ARCH_LABELS.get(a, a)}: {text}" for a, text in ARCHS.items()))
        if W.current("train.arch") in SMALL_ARCHS:
            W.select_slider("train.width")
        W.select_slider("train.projection_dim")
        W.select_slider("train.batch_size")
        if method in T.USES_TEMPERATURE:
            W.select_slider("train.temperature", format_func=lambda t: f"{t:g}", help=gloss("temperature"))
        elif method == "clip":
            W.select("train.clip_model", format_func=lambda m: {"": "Small CNN + text transformer",
                                                                "mini-rn": "open_clip mini ResNet (a real CLIP)"}[m])
            st.caption("CLIP learns its own temperature: watch the logit scale chart. " + gloss("logit scale"))
        W.select_slider("train.lr", format_func=lambda v: f"{v:g}")
        auto_here = resolve_precision("auto", pick_device())
        W.select("train.precision", format_func=lambda p: f"auto ({auto_here} here)" if p == "auto" else p)
        W.select_slider("train.steps", format_func=lambda v: f"{v:,}")
        W.number("train.seed")

    with st.container(border=True):
        st.markdown("**Augmentations**")
        st.caption(f"Now: {W.recipe_caption(ds_name)}. The same settings as the Augmentation Lab: change them "
                   "there to see the views, or here.")
        aug_box = st.container()
        with st.expander("Edit the augmentations here"):
            W.augment_editor(where="train")
        with aug_box, user_errors("reading the augmentation settings"):
            st.markdown("\n".join(f"- {line}" for line in W.augment_config().describe()))
        st.page_link("pages/augmentation_lab.py", label="Views in the Lab",
                     icon=":material/auto_awesome_mosaic:")

    with st.expander("Share or save these settings", icon=":material/share:"):
        W.share_panel("train")

settings_problem = None
try:
    cfg = _build_config(method)
except ValueError as err:  # one sentence, shown beside the buttons it disables (below)
    settings_problem = str(err)

# ------------------------------------------------------------------------------------------ actions
action = st.session_state.pop("train._action", None)
if st.session_state.pop("train._autoplay", False):
    action = "autoplay"
job = session.current_job()
can_train = cfg is not None and dataset is not None and not clip_blocked
sig = _signature(cfg, dataset) if can_train else None

with main_col, user_errors("controlling the training"):
    if action == "continue_upload":
        trainer = st.session_state.pop("train._uploaded", None)
        if trainer is not None:
            job = session.install_job(jobs.TrainingJob(trainer, target_steps=trainer.step_count + trainer.cfg.steps),
                                      _signature(trainer.cfg, trainer.dataset))
            job.play()  # "Continue training" means train: it starts now, from the checkpoint's step
    elif action == "reset":
        session.clear_job()
        job = None
    elif action in ("play", "step", "autoplay") and not can_train:
        pass  # the reason is shown beside the buttons
    elif action in ("play", "step", "autoplay"):
        stale = job is not None and job.steps_done == 0 and st.session_state.get(SIG_KEY) != sig
        failed = job is not None and job.state == jobs.FAILED and not job.crashed  # a crash restarts (play)
        if job is None or stale or action == "autoplay" or failed and action == "step":
            job = _new_job(cfg, dataset)
        if action == "step":
            if not job.step_now() and job.state != jobs.FAILED:
                st.toast(f"All {jobs.MAX_RUNNING} training slots on this server are busy; press Play to queue.",
                         icon=":material/hourglass_top:")
        else:
            if job.state == jobs.FINISHED:
                job.extend(job.trainer.cfg.steps)
            if job.state == jobs.FAILED and not job.crashed:
                job = _new_job(cfg, dataset)
            job.play()
    elif action == "pause" and job is not None:
        job.pause()
        # The thread ends after the step it is in (or at once while it waits for a turn): wait for it, so this
        # rerun draws Play. Otherwise the page showed Pause until the next status tick (and a click could be lost).
        job.wait(SETTLE_S)
    elif action == "stop" and job is not None:
        job.stop()
        job.wait(SETTLE_S)
        session.sync_registry()

# ------------------------------------------------------------------------------------------ controls
with main_col:
    state = job.state if job is not None else None
    active = job is not None and job.active
    with st.container(horizontal=True, gap="small", vertical_alignment="center"):
        if active:
            st.button("Pause", key="train.pause", on_click=_ask, args=("pause",), icon=":material/pause:",
                      type="primary")
        else:
            more = state == jobs.FINISHED
            label = f"Train {job.trainer.cfg.steps:,} more steps" if more else "Play"
            st.button(label, key="train.play", on_click=_ask, args=("play",), icon=":material/play_arrow:",
                      type="primary", disabled=not can_train and job is None)
        st.button("Step", key="train.step", on_click=_ask, args=("step",), icon=":material/skip_next:",
                  disabled=active or not can_train, help="One training step, then pause.")
        # While a job runs these buttons are not redrawn (they sit outside the live fragment): Stop must
        # already be enabled when Play was pressed at step 0.
        kept = job is not None and not active and (job.steps_done == 0 or job.registered_step == job.steps_done)
        st.button("Stop", key="train.stop", on_click=_ask, args=("stop",), icon=":material/stop:",
                  disabled=job is None or kept or state == jobs.FAILED,
                  help="Stop and keep this model: it joins your session's models, which other pages can use.")
        st.button("Reset", key="train.reset", on_click=_ask, args=("reset",), icon=":material/restart_alt:",
                  disabled=job is None,
                  help="Start again from a fresh model with the current settings. A model that trained is kept "
                       "in your session's models.")
    if settings_problem is not None:
        st.error(f"Training cannot start with these settings: {settings_problem}", icon=":material/tune:")
    elif clip_blocked:
        st.error("CLIP-style training needs captions; choose shapes or another method (see the left).",
                 icon=":material/subtitles_off:")
    if job is not None and job.steps_done > 0 and sig is not None and st.session_state.get(SIG_KEY) != sig:
        st.warning("You changed settings since this model started. **Play** goes on with the model as it is; "
                   "**Reset** starts a new one with the new settings.", icon=":material/tune:")


# ------------------------------------------------------------------------------------------ live panel
def _lesson_goal(job: jobs.TrainingJob) -> lessons.LessonGoal | None:
    """The open lesson's goal when this job is that lesson's run (another seed or more steps still count)."""
    lesson = st.session_state.get("lesson")
    if not lesson or lesson.get("page") != "train":
        return None
    preset = presets.by_id(str(lesson.get("id", "")))
    if preset is None or preset.goal is None:
        return None
    values = presets.lesson_values(preset)
    tr = job.trainer
    data = tr.dataset
    same_data = (data.name == values["train.dataset"] and len(data) == values["train.n"]
                 and (data.name != "shapes" or data.images.shape[-1] == values["train.image_size"]))
    try:
        lesson_cfg = S.train_config(values)
    except ValueError:
        return None
    if not same_data or not lessons.same_lesson(lesson_cfg.to_dict(), tr.cfg.to_dict()):
        return None
    if any(f not in data.factors for f in preset.goal.factors()):
        return None
    return preset.goal


def _goal_status(job: jobs.TrainingJob, goal: lessons.LessonGoal) -> None:
    tr = job.trainer
    p = lessons.goal_progress(goal, list(tr.evals), tr.step_count, tr.cfg.steps)
    if p.reached:
        when = f" after {p.seconds:.0f} s of training" if p.seconds is not None else ""
        st.success(f"**The lesson's point is on screen** (step {p.step:,}{when}): {goal.text} ({p.detail}).",
                   icon=":material/flag:")
    elif p.missed:
        st.warning(f"Not this time: the lesson expected that {goal.text}, and the run ended with {p.detail}. "
                   "Press **Reset** and play again to try another run.", icon=":material/flag:")
    else:
        st.progress(p.fraction, text=f"Lesson goal: {goal.text} · {p.detail}")


def _status(job: jobs.TrainingJob, chart_refresh: float | None = None) -> None:
    tr = job.trainer
    done, target, state = tr.step_count, job.target_steps, job.state
    secs = tr.history[-1].seconds if tr.history else 0.0
    now = job.rate() if state == jobs.RUNNING else None  # the current rate, not the average since the start
    rate = f" · {now:.1f} steps/s" if now is not None else ""
    st.progress(min(done / max(target, 1), 1.0), text=f"Step {done:,} of {target:,} · {secs:.0f} s of training"
                                                       f"{rate} · {state}")
    goal = _lesson_goal(job)
    if goal is not None:
        _goal_status(job, goal)
    if state in (jobs.QUEUED, jobs.RUNNING):
        slower = (f" The charts redraw every {chart_refresh:.0f} s while the server is this busy."
                  if chart_refresh and chart_refresh > jobs.REFRESH_ALONE[1] else "")
        st.caption(f":material/groups: {session.server_line(job)}.{slower}")
    if state == jobs.QUEUED:
        st.info(f"Queued: {session.server_line(job)}. All {job.slots.capacity} training slots are busy; "
                "training starts by itself when one frees up.", icon=":material/hourglass_top:")
    elif state == jobs.PAUSED and job.orphaned:
        st.info(f"Paused at step {done:,} while this page was closed, so other users could train. "
                "Press **Play** to go on.", icon=":material/pause_circle:")
    elif state == jobs.FAILED:
        st.error(job.error or "Training stopped.", icon=":material/warning:")
    elif state == jobs.FINISHED:
        st.success(f"Finished {done:,} steps in {secs:.0f} s. The model is in your session's models: the "
                   "Augmentation Lab can check what it learned to ignore.", icon=":material/check_circle:")
    elif state == jobs.STOPPED:
        st.info(f"Stopped at step {done:,}; the model is in your session's models. Play trains it further.",
                icon=":material/stop_circle:")


def _figure(name: str, version: tuple, build):
    """The live chart ``name``, rebuilt only when ``version`` (its trainer and data sizes) changed.

    Building a plotly figure costs tens of milliseconds of Python under the GIL, shared with every training
    thread on the server; between new steps / evaluations / snapshots the last figure is drawn again.
    """
    owner = version[0]
    if not hasattr(owner, "_figure_token"):
        owner._figure_token = object()  # identity of this trainer (ids of dead objects get reused)
    key = (owner._figure_token, *version[1:])
    held = store().get(("train.figure", name))  # the session's bounded store (ui.cache): one slot per chart
    if held is None or held[0] != key:
        held = store().put(("train.figure", name), (key, build()))
    return held[1]


def _charts(job: jobs.TrainingJob) -> None:
    tr = job.trainer
    hist = list(tr.history)
    evals = list(tr.evals)
    snaps = list(tr.snapshots)
    factors = tr.dataset.factors

    c1, c2 = st.columns(2)
    with c1:
        if hist:
            st.plotly_chart(_figure("loss", (tr, len(hist)), lambda: charts.loss([r.step for r in hist],
                                                                                  [r.loss for r in hist])),
                            key="train.chart.loss")
            st.caption("How wrong the model is on each batch. It should fall quickly, then flatten.")
        else:
            st.caption("The loss appears after the first step.")
    with c2:
        if evals:
            chance = {f: 1.0 / max(len(tr.dataset.classes[f]), 1) for f in factors}
            goal = _lesson_goal(job)
            target = (goal.factor, goal.target) if goal is not None and goal.kind == "knn_at_least" else None
            st.plotly_chart(_figure("knn", (tr, len(evals), target), lambda: charts.knn(
                [e.step for e in evals], {f: [e.knn.get(f, np.nan) for e in evals] for f in factors}, chance,
                goal=target)), key="train.chart.knn")
            aim = (f" The dashed line is the lesson's goal: {target[0]} at {target[1]:.0%}." if target else "")
            st.caption("For each held-out image, do its 10 nearest training images share its label? One line per "
                       "factor; dotted lines are chance. The model keeps what it needs and may drop what the "
                       f"augmentations hide.{aim}")
        else:
            st.caption(f"Accuracy on held-out images is measured every {tr.cfg.eval_every} steps and at the end.")
    if evals:
        c3, c4 = st.columns(2)
        with c3:
            st.plotly_chart(_figure("au", (tr, len(evals)), lambda: charts.alignment_uniformity(
                [e.step for e in evals], [e.alignment for e in evals], [e.uniformity for e in evals])),
                key="train.chart.au")
            st.caption(gloss("alignment / uniformity") + " Alignment: " + gloss("alignment") + " Uniformity: "
                       + gloss("uniformity"))
        with c4:
            last = evals[-1]
            st.plotly_chart(_figure("hist", (tr, len(evals)), lambda: charts.similarity_histogram(
                last.pos_sims, last.neg_sims, last.step)), key="train.chart.hist")
            st.caption("Green: two views of the same image. Red: different images. Training pulls green to the "
                       "right and pushes red to the left.")
    if tr.cfg.method == "clip" and hist and hist[-1].logit_scale is not None:
        st.plotly_chart(_figure("logit", (tr, len(hist)), lambda: charts.logit_scale(
            [r.step for r in hist], [r.logit_scale for r in hist])), key="train.chart.logit")
        st.caption("Logit scale: " + gloss("logit scale"))


def _embedding_view(job: jobs.TrainingJob) -> None:
    tr = job.trainer
    snaps = list(tr.snapshots)
    st.subheader("The embedding space, in 2-D")
    if not snaps:
        st.caption("The first picture is taken when training starts, then every "
                   f"{tr.cfg.snapshot_every} steps.")
        return
    probe = tr.probe
    steps_list = [s.step for s in snaps]
    latest = steps_list[-1]
    # Follow the newest snapshot unless the user has moved the timeline back.
    current = st.session_state.get("train.timeline")
    if current not in steps_list or current == st.session_state.get("train._timeline_latest"):
        st.session_state["train.timeline"] = latest
    st.session_state["train._timeline_latest"] = latest
    colour_col, time_col = st.columns([1, 3])
    with colour_col:
        factor = W.select("train.color_by", probe.factors)
    with time_col:
        if len(steps_list) > 1:
            chosen = st.select_slider("Timeline: the same images at each snapshot", options=steps_list,
                                      key="train.timeline", format_func=lambda s: f"step {s}")
        else:
            chosen = latest
    snap = snaps[steps_list.index(chosen)]
    livemap.show(tr, snaps, snap, factor, cached=_figure)


active_at_render = job is not None and job.active
# Seconds between live redraws while the job is active (no polling while nothing trains): the status line every
# second and the plotly charts every 3 s, or 4 s and 30 s while more jobs train or wait than there are cores (a
# classroom; see ui.jobs.refresh_seconds for what each redraw costs the browser and the server).
REFRESH = jobs.refresh_seconds()
STATUS_REFRESH = REFRESH[0] if active_at_render else None
CHART_REFRESH = REFRESH[1] if active_at_render else None


@st.fragment(run_every=STATUS_REFRESH)
def status_panel() -> None:
    """Progress, the current rate and the server's queue, redrawn every second while the job is active."""
    job = session.current_job()
    if active_at_render and (job is None or not job.active):
        st.rerun()  # the job ended: a full rerun updates the buttons, the charts, and stops the polling
    if active_at_render and jobs.refresh_seconds() != REFRESH:
        st.rerun()  # a classroom formed or emptied: a full rerun sets the new redraw periods
    if job is None:
        if dataset is not None:
            st.info("Press **Play** to train, or **Step** to take one step at a time.",
                    icon=":material/play_circle:")
            sample = [loaders.upscale(loaders.to_uint8_hwc(dataset.images[i]), 64)
                      for i in range(min(16, len(dataset)))]
            st.image(sample, width=sample[0].shape[1])
            st.caption(f"A few of the {len(dataset):,} images it will train on.")
        return
    with user_errors("drawing the training status"):
        _status(job, CHART_REFRESH)


@st.fragment(run_every=CHART_REFRESH)
def live_panel() -> None:
    """The metric charts, redrawn every few seconds while the job is active."""
    job = session.current_job()
    if job is None:
        return
    with user_errors("drawing the training charts"):
        _charts(job)


@st.fragment(run_every=CHART_REFRESH)
def embedding_panel() -> None:
    """The 2-D view in its own fragment: changing the colour or the timeline redraws only this."""
    job = session.current_job()
    if job is None:
        return
    with user_errors("drawing the 2-D view"):
        _embedding_view(job)


with main_col:
    status_panel()
    live_panel()
    embedding_panel()

# ------------------------------------------------------------------------------------------ files and runs
with main_col:
    st.divider()
    save_col, load_col = st.columns(2, gap="large")
    with save_col:
        st.markdown("**Download**")
        if job is None or job.steps_done == 0:
            st.caption("Train a few steps first; then the checkpoint and embeddings can be downloaded here.")
        elif job.active:
            st.caption("Pause or stop the training to download the model.")
        else:
            tr = job.trainer
            base = f"{tr.cfg.method}-{tr.dataset.name}-step{tr.step_count}"
            with st.container(horizontal=True, gap="small"):
                st.download_button("Checkpoint (.safetensors)", _checkpoint_bytes(tr, ".safetensors"),
                                   file_name=f"{base}.safetensors", mime="application/octet-stream",
                                   key="train.dl.ckpt", on_click="ignore", icon=":material/download:")
                st.download_button("Its settings (.json)", _checkpoint_bytes(tr, ".json"),
                                   file_name=f"{base}.json", mime="application/json", key="train.dl.json",
                                   on_click="ignore", icon=":material/download:")
                st.download_button("Embeddings (.csv)", _embedding_bytes(tr, "csv"),
                                   file_name=f"{base}-embeddings.csv", mime="text/csv", key="train.dl.csv",
                                   on_click="ignore", icon=":material/download:")
                st.download_button("Embeddings (.npz)", _embedding_bytes(tr, "npz"),
                                   file_name=f"{base}-embeddings.npz", mime="application/octet-stream",
                                   key="train.dl.npz", on_click="ignore", icon=":material/download:")
            st.caption(f"{count_parameters(tr.model):,} parameters. The checkpoint holds the weights, the settings "
                       "and the loss history; the embeddings are the encoder vectors of the held-out images.")
    with load_col:
        st.markdown("**Load a checkpoint**")
        up = st.file_uploader(f"A .safetensors file saved from this page, up to {MAX_CHECKPOINT_BYTES // 2**20} MB",
                              key="train.ckpt_upload", max_upload_size=MAX_CHECKPOINT_BYTES // 2**20,
                              help="Only safetensors is read: it holds numbers, never code.")
        if up is not None:
            fp = yourimages.data_key(dataset)
            retry = st.session_state.get("train._ckpt_msg", ("",))[0] == "ask" and (
                st.session_state.get("train._ckpt_data") != fp or st.session_state.get("train._ckpt_anyway"))
            if st.session_state.get("train._ckpt_id") != up.file_id or retry:
                st.session_state["train._ckpt_id"] = up.file_id
                st.session_state["train._ckpt_data"] = fp  # asked again when the chosen data changes
                st.session_state.pop("train._uploaded", None)
                try:
                    loaded, kind, note = _load_checkpoint(up.name, up.getvalue(), dataset,
                                                          anyway=st.session_state.pop("train._ckpt_anyway", False))
                    if loaded is None:
                        st.session_state["train._ckpt_msg"] = (kind, note)
                    else:
                        entry = registry.register_trainer(loaded)
                        st.session_state["train._uploaded"] = loaded
                        st.session_state["train._ckpt_msg"] = (kind, f"Loaded **{entry.name}**. It is in your "
                                                               "session's models; the Augmentation Lab can use it."
                                                               + (f" {note}" if note else ""))
                except PlaygroundError as err:
                    st.session_state["train._ckpt_msg"] = ("error", str(err))
            kind, text = st.session_state.get("train._ckpt_msg", ("", ""))
            if kind == "error":
                st.error(text, icon=":material/block:")
            elif kind in ("ask", "different"):
                st.warning(text, icon=":material/dataset:")
                if kind == "ask" and dataset is not None:
                    st.button(f"Open it on {dataset.name} anyway (different data)", key="train.ckpt_anyway",
                              on_click=lambda: st.session_state.update({"train._ckpt_anyway": True}))
            elif kind:
                st.success(text)
            if st.session_state.get("train._uploaded") is not None:
                st.button("Continue training it here", key="train.continue_upload", on_click=_continue_uploaded,
                          icon=":material/play_arrow:",
                          help="It replaces the model on this page (which, if it trained, stays in your models).")

    runs = [e for e in registry.entries(["trained"]) if dataset is not None
            and e.dataset_name == dataset.name and e.payload is not None and e.payload.evals]
    if runs:
        with st.expander(f"Compare runs ({len(runs)} kept in this session)", icon=":material/compare_arrows:",
                         expanded=True):
            factor = dataset.factors[0]
            data = {e.name: {"steps": [r.step for r in e.payload.evals],
                             "knn": [r.knn.get(factor, np.nan) for r in e.payload.evals],
                             "uniformity": [r.uniformity for r in e.payload.evals]} for e in runs}
            st.plotly_chart(charts.compare_runs(data, factor), key="train.chart.compare")
            st.caption("Every model you stopped, finished or reset on this dataset, side by side.")
