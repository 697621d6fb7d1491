"""Course mode: the panel every page shows while a course is open, and how a step sets its page up.

A course (``core.course``, files in ``assets/courses``) is a list of steps. Opening a step does what a Home
lesson does (``ui.presets``): the page's settings go back to their defaults plus the step's own, a training
step asks the Train page to start at once (``train._autoplay``), and the page opens. The course and step sit
in the URL (``?course=intro&step=4``, 1-based), so a student's copy of the teacher's link opens step 4.

Questions are answered by the step's own run: :func:`figures` measures (the training job's kNN, a toy batch,
the demo map, the mini-CLIP, the bundled MiniLM), ``core.course.decide`` picks the choice, and the panel says
when the run disagrees with the textbook.
"""
from __future__ import annotations

import json
import time
from typing import Any

import streamlit as st

from core import course as C
from ui import settings as S

COURSE_PARAM, STEP_PARAM = "course", "step"
STATE = "course"  # {"id": course id, "step": 0-based index}; absent while no course is open
GOTO = "course._goto"  # set when a link opened a step: the panel switches to the step's page once
UPLOADED = "course._uploaded"
PENDING = "course._pending_run"
# A browser request sent before the step opened (the Train page's live status ticks every second) carries the
# previous step's widget values, and Streamlit applies them on top of the step's: the next full runs put the
# step's values back before the page draws (measured: step 3 opened with step 2's settings and trained them).
ASSERT = "course._assert"
ASSERT_RUNS = 3  # at least this many full runs ...
ASSERT_S = 8.0  # ... and this long: on a loaded server such a request waited seconds behind the step's own runs  # (course id, step) whose training run has not been seen on the Train page yet  # a course this session uploaded (never shared with other sessions)
PAGE_FILES = {"lab": "pages/augmentation_lab.py", "train": "pages/train.py", "loss_lab": "pages/loss_lab.py",
              "explorer": "pages/explorer.py", "clip": "pages/clip.py", "text": "pages/text.py"}
PAGE_TITLES = {"lab": "Augmentation Lab", "train": "Train", "loss_lab": "Loss & Temperature Lab",
               "explorer": "Embedding Explorer", "clip": "CLIP", "text": "Text"}
URL_PATHS = {page: path.split("/")[-1][:-3] for page, path in PAGE_FILES.items()}  # st.Page's url_path
HIGHLIGHT = "outline: 3px solid #f59e0b; outline-offset: 6px; border-radius: 8px;"


def check_settings(page: str, values: Any) -> tuple[dict[str, Any], list[str]]:
    """A step's settings, checked exactly as a link's or a settings file's (``ui.settings.validate``)."""
    return S.validate(values, S.PAGE_NAMESPACES[page])


@st.cache_data(max_entries=1, show_spinner=False)
def shipped() -> list[C.Course]:
    return C.load_all(check_settings)


def by_id(course_id: str) -> C.Course | None:
    found = {c.id: c for c in shipped()}.get(course_id)
    uploaded = st.session_state.get(UPLOADED)
    if found is None and uploaded is not None and uploaded.id == course_id:
        found = uploaded
    return found


def current() -> tuple[C.Course, int] | None:
    state = st.session_state.get(STATE)
    if not state:
        return None
    course = by_id(str(state.get("id", "")))
    if course is None or not 0 <= int(state.get("step", -1)) < len(course.steps):
        return None
    return course, int(state["step"])


def step_values(step: C.Step) -> dict[str, Any]:
    """The page's settings as the step opens it: every default, then the step's own."""
    values = S.defaults(S.PAGE_NAMESPACES[step.page])
    values.update(step.settings)
    return values


def apply_step(course: C.Course, index: int, *, switch: bool = True) -> None:
    """Set the step's page up (settings, the run to start) and, with ``switch``, open it."""
    step = course.steps[index]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in step_values(step).items()}
    st.session_state.update(values)
    st.session_state[ASSERT] = {"values": values, "runs": ASSERT_RUNS, "until": time.monotonic() + ASSERT_S}
    st.session_state[STATE] = {"id": course.id, "step": index}
    st.session_state.pop("lesson", None)  # a Home lesson's banner would talk about another page
    if step.page == "explorer":
        st.session_state.pop("explorer.applied", None)  # the Explorer's map starts from its settings again
    if step.run == "train":
        st.session_state["train._autoplay"] = True  # as a one-click lesson: the Train page starts the run
        st.session_state[PENDING] = (course.id, index)
    if switch:
        st.switch_page(PAGE_FILES[step.page])


def restore(course_id: str, step_raw: str | None, problems: list[str]) -> None:
    """A link's ``course=`` and ``step=`` (once per session, from ui.urlstate.restore)."""
    course = by_id(course_id)
    if course is None:
        problems.append(f"The link names a course {course_id!r} that this app does not have.")
        return
    index = 0
    if step_raw is not None:
        try:
            index = int(str(step_raw).strip()) - 1
        except ValueError:
            index = -1
        if not 0 <= index < len(course.steps):
            problems.append(f"The link's step {step_raw!r} is not a step of '{course.title}' "
                            f"(1 to {len(course.steps)}); it opens at step 1.")
            index = 0
    apply_step(course, index, switch=False)
    st.session_state[GOTO] = True


def follow_link(current_path: str) -> None:
    """After a course link was read (:func:`restore`), open the step's page once, before anything is drawn."""
    if not st.session_state.pop(GOTO, False):
        return
    found = current()
    if found is not None and current_path != URL_PATHS[found[0].steps[found[1]].page]:
        st.switch_page(PAGE_FILES[found[0].steps[found[1]].page])


def _keep_run_asked(course: C.Course, index: int, step: C.Step) -> None:
    """Ask the Train page again for the step's run until the session's job is that run.

    The page consumes ``train._autoplay`` at its top; a run of the page that is cut short by a newer rerun
    (the browser asks for one while the previous job is being retired) loses the request, and the step would
    show the previous step's paused run. Checked before the page runs, so at most one job is started.
    """
    if st.session_state.get(PENDING) != (course.id, index):
        return
    from ui import session

    job = session.current_job()
    try:
        wanted = S.train_config(step_values(step)).to_dict()
    except ValueError:
        st.session_state.pop(PENDING, None)
        return
    if job is not None and job.trainer.cfg.to_dict() == wanted:
        st.session_state.pop(PENDING, None)  # the step's run exists: from here on the page's own buttons rule
    else:
        st.session_state["train._autoplay"] = True


def url_params() -> dict[str, str]:
    """What the address carries for the open course (ui.urlstate.write)."""
    found = current()
    if found is None:
        return {}
    course, index = found
    return {COURSE_PARAM: course.id, STEP_PARAM: str(index + 1)}


def leave() -> None:
    st.session_state.pop(STATE, None)


# ------------------------------------------------------------------------------------------ measures
@st.cache_data(max_entries=16, show_spinner=False)
def _toy_share(settings_json: str) -> dict[str, float]:
    import torch

    from core import lab

    v = json.loads(settings_json)
    cfg = lab.ToyConfig(loss="nt_xent", dim=int(v["loss_lab.dim"]), noise=float(v["loss_lab.noise"]),
                        seed=int(v["loss_lab.seed"]))
    z1, z2, _ = lab.ToyTrainer(cfg, device="cpu").batch(int(v["loss_lab.anatomy_batch"]), seed=0)
    z1, z2 = torch.as_tensor(z1), torch.as_tensor(z2)
    n = len(z1)
    return {"tau": lab.hardest_negative_share(z1, z2, float(v["loss_lab.tau"])),
            "tau_1": lab.hardest_negative_share(z1, z2, 1.0), "uniform": 1.0 / (2 * n - 2)}


@st.cache_data(max_entries=16, show_spinner=False)
def _map_trust(settings_json: str) -> dict[str, float]:
    from core.metrics import knn_accuracy
    from ui import explorer as X

    v = json.loads(settings_json)
    space = list(X.demo_spaces().values())[-1]  # the trained demo encoder, as the Explorer opens
    es = space.es
    method, dim, k = v["explorer.method"], int(v["explorer.dim"]), int(v["explorer.k"])
    params = ({"n_neighbors": int(v["explorer.n_neighbors"]), "min_dist": float(v["explorer.min_dist"]),
               "metric": v["explorer.metric"]} if method == "umap" else
              {"perplexity": int(v["explorer.perplexity"]), "metric": v["explorer.metric"]} if method == "tsne"
              else {})
    pj = json.dumps(params, sort_keys=True)
    coords = X.projection(space.key, method, dim, pj, es.vectors)
    labels = es.labels["shape"]
    honest = X.honesty(space.key, method, dim, pj, v["explorer.metric"] if method != "pca" else "euclidean", k,
                       es.vectors, coords)
    return {"map_knn": knn_accuracy(coords, labels, coords, labels, k=10, exclude_self=True, device="cpu"),
            "vector_knn": knn_accuracy(es.vectors, labels, es.vectors, labels, k=10, exclude_self=True,
                                       device="cpu"),
            "preservation": float(honest["mean"])}


@st.cache_data(max_entries=16, show_spinner=False)
def _clip_ensemble(n: int, factor: str) -> dict[str, float]:
    from core.clip import template_set, zero_shot, zero_shot_weights
    from ui import loaders

    bundle = loaders.clip_model("mini-clip")
    images = loaders.dataset("shapes", n=int(n), size=32, seed=1)  # as the CLIP page draws them
    if factor not in images.factors:
        raise ValueError(f"The shapes have no factor {factor!r}; choose one of {', '.join(images.factors)}.")
    names = list(images.classes[factor])
    labels = images.labels[factor]
    from core.clip import embed_images

    feats = embed_images(bundle, images)
    out = {}
    for name, templates in (("one", ["a photo of a {}."]), ("ensemble", template_set("openai"))):
        w = zero_shot_weights(bundle, names, templates)
        out[name] = float((zero_shot(bundle, feats, w).predictions == labels).mean())
    return out


@st.cache_data(max_entries=32, show_spinner=False)
def _text_search(query: str, sentences: tuple[str, ...]) -> list[float]:
    import numpy as np

    from ui import loaders

    vectors = loaders.text_vectors("", (query, *sentences))  # unit rows
    return [float(x) for x in np.asarray(vectors[1:]) @ np.asarray(vectors[0])]


def figures(step: C.Step) -> tuple[dict[str, float] | None, str]:
    """The step's figures for its question, or (None, why not yet). Uses the page's current settings."""
    q = step.question
    values = {k: st.session_state.get(k, S.default(k)) for k in S.keys(S.PAGE_NAMESPACES[step.page])}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    if q.measure == "train_knn":
        from ui import session

        job = session.current_job()
        if job is None:
            return None, "Press **Play** on the Train page: the answer comes from this run."
        try:
            same = job.trainer.cfg.to_dict() == S.train_config(values).to_dict()
        except ValueError:
            same = False
        if not same and st.session_state.get(PENDING):
            return None, "The step's run is starting…"
        if not same:
            return None, ("The answer comes from a run with the settings on this page: press **Reset**, then "
                          "**Play**.")
        if job.active or job.steps_done < job.target_steps:
            return None, f"The run is at step {job.steps_done:,} of {job.target_steps:,}; the answer comes at the end."
        evals = list(job.trainer.evals)
        if not evals:
            return None, "The run has no evaluation yet."
        return dict(evals[-1].knn), ""
    if q.measure == "toy_hardest_share":
        return _toy_share(json.dumps(values, sort_keys=True)), ""
    if q.measure == "map_trust":
        with st.spinner("Measuring the map…"):
            return _map_trust(json.dumps(values, sort_keys=True)), ""
    if q.measure == "clip_ensemble":
        with st.spinner("Classifying with one prompt and with 80…"):
            return _clip_ensemble(int(values["clip.n"]), str(values["clip.factor"])), ""
    if q.measure == "text_search":
        with st.spinner("Embedding the query and the choices…"):
            sims = _text_search(values["text.query"], tuple(q.choices.values()))
        return dict(zip(q.choices, sims)), ""
    return None, f"Unknown measure {q.measure!r}."


def _format(name: str, value: float) -> str:
    return f"{name} {value:.2f}"


# ------------------------------------------------------------------------------------------ the panel
def _go(course: C.Course, index: int) -> None:
    apply_step(course, index)


def _question(course: C.Course, index: int, step: C.Step) -> None:
    q = step.question
    key = f"course.guess.{course.id}.{index}"
    st.markdown(f"**Predict first:** {q.text}")
    guess = st.radio("Your prediction", list(q.choices), format_func=q.choices.get, index=None, key=key,
                     horizontal=True, label_visibility="collapsed")
    if guess is None:
        st.caption("Choose an answer; the step's own run then shows who was right.")
        return
    waiting = q.measure == "train_knn" and figures(step)[0] is None  # only a training run is waited for

    @st.fragment(run_every=2.0 if waiting else None)
    def reveal() -> None:
        from ui.widgets import user_errors

        with user_errors("measuring the answer"):
            figs, why_not = figures(step)
            if figs is None:
                st.info(why_not, icon=":material/hourglass_top:")
                return
            if waiting:
                st.rerun()  # the run ended: a full rerun draws the answer and stops the polling
            answer = C.decide(q, figs)
            if answer is None:
                st.info("The run's figures do not decide this yet.", icon=":material/hourglass_top:")
                return
            shown = ", ".join(_format(k, v) for k, v in figs.items())
            verdict = "You predicted it." if answer == guess else "Not what you predicted."
            (st.success if answer == guess else st.warning)(
                f"**The run says: {q.choices[answer]}** ({shown}). {verdict}", icon=":material/insights:")
            if q.textbook and answer != q.textbook:
                st.warning(f"**This run disagrees with the textbook**, which expects *{q.choices[q.textbook]}*. "
                           + q.why, icon=":material/menu_book:")

    reveal()


def panel(current_path: str) -> None:
    """The open course's step, drawn at the top of every page (nothing while no course is open)."""
    found = current()
    if found is None:
        return
    course, index = found
    step = course.steps[index]
    on_page = current_path == URL_PATHS[step.page]
    n = len(course.steps)
    held = st.session_state.get(ASSERT)
    if held is not None:
        st.session_state.update({k: v for k, v in held["values"].items() if st.session_state.get(k) != v})
        held["runs"] -= 1
        if held["runs"] <= 0 and time.monotonic() > held["until"]:
            st.session_state.pop(ASSERT, None)
    with st.container(border=True, key="course.panel"):
        top = st.columns([4, 1], vertical_alignment="center")
        top[0].progress((index + 1) / n, text=f"**{course.title}** · step {index + 1} of {n}: {step.title}")
        if top[1].button("Leave the course", key="course.leave", type="tertiary", icon=":material/close:"):
            leave()
            st.rerun()
        st.markdown(step.text)
        if not on_page:
            if st.button(f"Open the {PAGE_TITLES[step.page]} page for this step", key="course.open",
                         icon=":material/open_in_new:"):
                apply_step(course, index)
        elif step.run == "train":
            _keep_run_asked(course, index, step)
        if on_page and step.look_at:
            st.html(f"<style>.st-key-{step.look_at.replace('.', '-')} {{ {HIGHLIGHT} }}</style>")
            st.caption(":material/visibility: Look at the part of the page outlined in orange.")
        if on_page and step.question is not None:
            _question(course, index, step)
        nav = st.columns([1, 1, 4])
        if nav[0].button("Back", key="course.back", icon=":material/arrow_back:", disabled=index == 0,
                         width="stretch"):
            _go(course, index - 1)
        if nav[1].button("Next", key="course.next", icon=":material/arrow_forward:", type="primary",
                         disabled=index == n - 1, width="stretch"):
            _go(course, index + 1)
        if index == n - 1:
            nav[2].caption("The last step: well done. **Leave the course** to explore freely.")


def chooser(where: str = "home") -> None:
    """The shipped courses (and an uploaded one) with a Start button each; drawn on Home."""
    from ui.widgets import user_errors

    with user_errors("loading the courses"):
        for course in shipped():
            with st.container(border=True):
                st.markdown(f"#### {course.title}")
                st.caption(f"{len(course.steps)} steps" + (f", about {course.minutes} minutes" if course.minutes
                                                           else "") + f". {course.summary}")
                if st.button("Start the course", key=f"{where}.course.{course.id}", icon=":material/school:",
                             type="primary"):
                    apply_step(course, 0)
    with st.expander("Run your own course (.json)", icon=":material/upload_file:"):
        st.caption("A course is a JSON file of steps: page, settings, what to start, the text, what to look at "
                   "and an optional question. See assets/courses for the shipped one.")
        up = st.file_uploader("Course file, up to 200 KB", type=["json"], key=f"{where}.course_upload",
                              max_upload_size=1)
        if up is not None:
            try:
                course = C.parse(up.getvalue(), "uploaded", check_settings)
            except ValueError as err:
                st.error(str(err), icon=":material/error:")
                return
            st.session_state[UPLOADED] = course
            st.success(f"**{course.title}**: {len(course.steps)} steps, every one checked.")
            if st.button("Start it", key=f"{where}.course_start_uploaded", icon=":material/school:"):
                apply_step(course, 0)
