"""Per-session glue run by ``app.py`` on every page: register finished training jobs, show a status line.

The training thread never touches ``st.*``; it only flags ``job.needs_registration``. Whichever page the
user is on next picks that up here and puts the model in the registry, with a toast.
"""
from __future__ import annotations

import streamlit as st

from ui import jobs, registry
from ui import settings as S

JOB_KEY = "train._job"


def keep_settings() -> None:
    """Carry every setting across page switches.

    Streamlit gives a widget drawn on a new page its default value even when a widget with the same key
    was set on the previous page. Assigning each known setting its current value before any page draws
    its widgets (the entry point runs first on every rerun) makes the new widget start from that value,
    and its URL binding follows.
    """
    for key in S.SETTINGS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def current_job() -> jobs.TrainingJob | None:
    return st.session_state.get(JOB_KEY)


def register_job(job: jobs.TrainingJob, *, toast: bool = True) -> registry.Entry | None:
    """Put the job's model in the registry if it trained since it was last registered."""
    if job.active or job.trainer.step_count == 0 or job.registered_step == job.trainer.step_count:
        return None
    entry = registry.register_trainer(job.trainer)
    job.mark_registered()
    if toast:
        st.toast(f"Saved to your session: **{entry.name}**", icon=":material/inventory_2:")
    return entry


def sync_registry() -> None:
    job = current_job()
    if job is not None and job.needs_registration and not job.active:
        register_job(job)


ROUTER_MARK = "in this session"  # tests look for it on every page: the router (app.py) ran there


def sidebar_status(box=None) -> None:
    """The session's training state and how many models it holds, in ``box`` (default: the sidebar)."""
    job = current_job()
    sync_registry()  # a job that ended while the page ran is registered before it is counted
    n = len(registry.entries())
    with box if box is not None else st.sidebar:
        if job is not None:
            state = job.state
            st.caption(f":material/model_training: Training: **{state}**, step {job.steps_done} of "
                       f"{job.target_steps}")
        things = f"{n} model{'s' if n != 1 else ''} or embedding file{'s' if n != 1 else ''}" if n else \
            "No models or embedding files yet"
        st.caption(f":material/inventory_2: {things} {ROUTER_MARK}")
