"""Per-session glue run by ``app.py`` on every page: the session's training job and its life cycle
(install, retire, build), registering finished jobs, and a status line.

A job trains in its own worker process (``core.runner``); it only flags ``job.needs_registration``. Whichever
page the user is on next picks that up here and puts the model in the registry, with a toast.

A job belongs to the browser that started it. When its session goes away (the tab closed or reloaded) the job
pauses itself and frees its training slot and process (``Job.attach_owner``). The job's token sits in the URL
(``?job=...``) so that a reload finds it; but the token alone hands nothing over: the job also records a secret of
its browser that a copied link does not carry (:func:`browser_secret`, from Streamlit's own XSRF cookie), and only
a session of that browser, once the job's own session has gone, adopts it. Whoever opens a shared link gets the
page's settings, never its job.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Any, Callable

import streamlit as st

from ui import jobs, registry
from ui import settings as S

JOB_KEY = "train._job"
SIG_KEY = "train._job_sig"
JOB_PARAM = "job"  # URL query parameter with the job's token
LEASE_S = 120.0  # a job nobody polled for this long pauses (a hidden tab still polls about once a minute)
GRACE_S = 10.0  # a job whose browser session closed pauses after this long (a reconnect keeps it)
KEEP_ORPHANS_S = 3600.0  # a paused job nobody came back to is dropped after an hour
MAX_ORPHANS = 20

_tokens: dict[str, jobs.TrainingJob] = {}  # token -> job, for the user who comes back (strong references)
_gone_since: dict[str, float] = {}  # token -> when its job was first seen without an owner
_tokens_lock = threading.Lock()


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


def _session_alive() -> Callable[[], bool] | None:
    """A callable telling whether this browser session is still connected (None outside a served app)."""
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is None or not Runtime.exists():
            return None
        runtime, session_id = Runtime.instance(), ctx.session_id
    except Exception:  # noqa: BLE001 - AppTest and bare scripts have no runtime: fall back to the lease
        return None
    return lambda: runtime.is_active_session(session_id)


XSRF_COOKIE = "_streamlit_xsrf"  # set by Streamlit's server in every browser (server.enableXsrfProtection)


def browser_secret() -> str | None:
    """A digest of this browser's XSRF token (None when there is none: AppTest, XSRF protection off).

    Streamlit's server (tornado) gives each browser a random XSRF token in a cookie and keeps it across reloads;
    the cookie goes with every request of that browser and never with a copied link. Tornado writes it masked
    ("2|mask|masked token|time", a new mask each time it is written), so the token itself is unmasked first."""
    try:
        raw = st.context.cookies.get(XSRF_COOKIE)
    except Exception:  # noqa: BLE001 - no request context (AppTest, a bare script)
        return None
    if not raw:
        return None
    from urllib.parse import unquote

    raw = unquote(str(raw)).strip('"')
    parts = raw.split("|")
    token = raw.encode()
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            token = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)) if mask else masked
        except ValueError:
            pass
    return hashlib.sha256(b"contrastive-playground job owner|" + token).hexdigest()


def _prune_tokens() -> None:
    """Drop paused jobs nobody came back to: older than KEEP_ORPHANS_S, or beyond the MAX_ORPHANS newest."""
    now = time.monotonic()
    with _tokens_lock:
        for token, job in list(_tokens.items()):
            if job.active or not job.owner_disconnected():
                _gone_since.pop(token, None)
            else:
                _gone_since.setdefault(token, now)
        orphans = sorted(((since, t) for t, since in _gone_since.items()), reverse=True)
        dropped = []
        for k, (since, token) in enumerate(orphans):
            if k >= MAX_ORPHANS or now - since > KEEP_ORPHANS_S:
                dropped.append(_tokens.pop(token, None))
                _gone_since.pop(token, None)
    for job in dropped:
        if job is not None:
            job.close()  # its worker process, if it still has one


def _remember(job: jobs.TrainingJob) -> str:
    token = getattr(job, "_token", None) or secrets.token_urlsafe(16)
    job._token = token  # type: ignore[attr-defined]
    with _tokens_lock:
        _tokens[token] = job
    return token


def _forget(job: jobs.TrainingJob) -> None:
    token = getattr(job, "_token", None)
    with _tokens_lock:
        if token and _tokens.get(token) is job:
            del _tokens[token]
    if token and st.query_params.get(JOB_PARAM) == token:
        del st.query_params[JOB_PARAM]


def _adopt() -> jobs.TrainingJob | None:
    """The job named by the URL's token, if it was started in this browser and its own session has gone (a
    reload): it becomes this session's. A link opened in another browser never adopts it."""
    token = st.query_params.get(JOB_PARAM)
    if not token:
        return None
    with _tokens_lock:
        job = _tokens.get(str(token))
    secret = browser_secret()
    if job is None or secret is None or getattr(job, "owner_secret", None) != secret:
        del st.query_params[JOB_PARAM]  # unknown, expired or someone else's: drop it from the URL
        return None
    if not job.owner_disconnected():
        return None
    if job.active:
        job.orphaned = True  # its page went away while it trained: the page says why it is paused
    job.pause()  # it pauses by itself after a grace period; this settles it now
    job.wait(10.0)
    _attach(job)
    st.session_state[JOB_KEY] = job
    st.session_state["train._adopted"] = True
    return job


def _attach(job: jobs.TrainingJob) -> None:
    job.attach_owner(_session_alive(), lease_s=LEASE_S, grace_s=GRACE_S)


def own(job: jobs.TrainingJob) -> jobs.TrainingJob:
    """Tie a page's own job (the Loss Lab's toy, the Text page's fine-tuning) to this browser session: it pauses
    and frees its process when the session goes away (``core.runner``'s orphan rule)."""
    _attach(job)
    return job


def current_job() -> jobs.TrainingJob | None:
    """This session's training job (adopting its own paused job after a reload); marks it as watched."""
    job = st.session_state.get(JOB_KEY)
    if job is None:
        try:
            job = _adopt()
        except Exception:  # noqa: BLE001 - a bad token must never break a page
            job = None
    if job is not None:
        job.touch()
    return job


def retire_job(job: jobs.TrainingJob) -> None:
    """Stop a job for good (its worker process ends); what it trained is kept in the registry."""
    job.pause()
    job.wait(30.0)
    register_job(job)
    _forget(job)
    job.close()


def install_job(job: jobs.TrainingJob, sig: str | None = None) -> jobs.TrainingJob:
    """Make ``job`` this session's job (the previous one is retired), tied to this browser session."""
    old = st.session_state.get(JOB_KEY)
    if old is not None and old is not job:
        retire_job(old)
    _attach(job)
    job.owner_secret = browser_secret()  # type: ignore[attr-defined]
    st.session_state[JOB_KEY] = job
    st.session_state[SIG_KEY] = sig
    _prune_tokens()
    st.query_params[JOB_PARAM] = _remember(job)
    return job


def new_job(make_trainer: Callable[[], Any], *, target_steps: int | None = None,
            sig: str | None = None) -> jobs.TrainingJob:
    """Build a trainer (with a spinner) and install a job for it."""
    with st.spinner("Building the model…"):
        trainer = make_trainer()
    return install_job(jobs.TrainingJob(trainer, target_steps=target_steps), sig)


def clear_job() -> None:
    """Reset: retire this session's job and forget it."""
    job = st.session_state.pop(JOB_KEY, None)
    if job is not None:
        retire_job(job)
    st.session_state.pop(SIG_KEY, None)


def server_line(job: jobs.TrainingJob | None) -> str:
    """ "3 of 10 training, you are 2nd in the queue": the server's load as this session sees it."""
    running, total = jobs.server_load(job.slots if job is not None else None)
    line = f"{running} of {total} training on this server" if total else "Nothing else training on this server"
    if job is not None and job.state == jobs.QUEUED and job.queue_position is not None:
        line += f", you are {jobs.ordinal(job.queue_position + 1)} in the queue"
    return line


def register_job(job: jobs.TrainingJob, *, toast: bool = True) -> registry.Entry | None:
    """Put the job's model in the registry if it trained since it was last registered."""
    if job.active or job.trainer.step_count == 0 or job.registered_step == job.trainer.step_count:
        return None
    entry = registry.register_trainer(job.trainer)
    if getattr(job.trainer, "clip", None) is not None:
        # a CLIP-style run with open_clip towers: also a CLIP entry, for the CLIP page and the Explorer
        registry.register_clip_trainer(job.trainer, label=f"CLIP · {entry.name}")
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
    n = len(registry.entries(registry.EMBEDDING_KINDS))
    sets = len(registry.entries(["images"]))  # the user's own image sets (ui.yourimages)
    with box if box is not None else st.sidebar:
        if job is not None:
            state = job.state
            rate = job.rate() if state == jobs.RUNNING else None
            st.caption(f":material/model_training: Training: **{state}**, step {job.steps_done} of "
                       f"{job.target_steps}" + (f" · {rate:.1f} steps/s now" if rate is not None else ""))
            if job.active:
                st.caption(f":material/groups: {server_line(job)}")
        things = f"{n} model{'s' if n != 1 else ''} or embedding file{'s' if n != 1 else ''}" if n else \
            "No models or embedding files yet"
        sets_text = f" and {sets} image set{'s' if sets != 1 else ''}" if sets else ""
        st.caption(f":material/inventory_2: {things}{sets_text} {ROUTER_MARK}")
