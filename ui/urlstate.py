"""The address bar holds every setting that differs from its default, so a copied link reproduces a lesson.

``restore()`` runs once when a session starts (app.py, before any page draws a widget): it reads the link's
parameters, checks each with the settings table and puts the good ones in session state; what it could not use is
listed once on the page. A course link (``course=intro&step=4``, ``ui.course``) opens that step first. ``write()`` runs after every page: it puts the session's changed settings into the URL as
values (``train.steps=5000``, never a widget's label), and the open lesson as ``lesson=<preset id>``.
Streamlit's own ``bind="query-params"`` is not used: it writes a widget's formatted label, only once the user
touched that widget, so a lesson opened from a preset never reached the address.
"""
from __future__ import annotations

import streamlit as st

from ui import course
from ui import settings as S

_RESTORED = "_url.restored"
_PROBLEMS = "_url.problems"
LESSON_PARAM = "lesson"
COURSE_PARAMS = (course.COURSE_PARAM, course.STEP_PARAM)


def bind(key: str, param: str = "value", initial: object = None) -> dict:
    """Keyword arguments that bind a page's own widget to the setting ``key``: ``key=`` and, only while session
    state holds no value (a link, a settings file or a course step may have put one there), the table's
    default as ``param`` (``"value"``, ``"default"``, or ``"index"``: the default's place in the options), or
    ``initial`` when the page starts the widget elsewhere (the Explorer's form starts from its applied map).

    ``st.select_slider("Temperature", S.options("loss_lab.tau"), **bind("loss_lab.tau"))``: options, default
    and bounds are declared once, in :mod:`ui.settings`, and the URL carries the widget's value.
    """
    if key in st.session_state:
        return {"key": key}
    s = S.SETTINGS[key]
    if initial is not None:
        return {"key": key, param: initial}
    value = S.options(key).index(s.default) if param == "index" else s.default
    return {"key": key, param: tuple(value) if isinstance(value, list) else value}


def restore() -> None:
    """Seed session state from the link, once per session. Bad values are skipped and remembered."""
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    problems: list[str] = []
    if course.COURSE_PARAM in st.query_params:  # first: the link's own settings below override the step's
        course.restore(st.query_params[course.COURSE_PARAM], st.query_params.get(course.STEP_PARAM), problems)
    for key in st.query_params:
        if key == LESSON_PARAM:
            _restore_lesson(st.query_params[key], problems)
            continue
        if key not in S.SETTINGS:
            continue
        try:
            st.session_state[key] = S.from_url(key, st.query_params.get_all(key))
        except ValueError as err:
            problems.append(str(err))
    if problems:
        st.session_state[_PROBLEMS] = problems


def _restore_lesson(preset_id: str, problems: list[str]) -> None:
    from ui import presets

    found = {p.id: p for p in presets.cached_presets()}.get(preset_id)
    if found is None:
        problems.append(f"The link names a lesson {preset_id!r} that this app does not have.")
        return
    st.session_state.setdefault("lesson", presets.lesson_state(found))


def show_problems() -> None:
    """One warning listing what the link asked for but could not be used (shown once)."""
    problems = st.session_state.pop(_PROBLEMS, None)
    if problems:
        st.warning("Some settings in the link were not used, so their defaults apply: " + " ".join(problems),
                   icon=":material/link_off:")


def write() -> None:
    """Make the URL's setting parameters match this session's changed settings (other parameters stay)."""
    values = {k: st.session_state[k] for k in S.SETTINGS if k in st.session_state}
    wanted = S.url_params(values)
    lesson = st.session_state.get("lesson")
    if lesson and lesson.get("id"):
        wanted[LESSON_PARAM] = lesson["id"]
    wanted.update(course.url_params())
    current = {k: st.query_params.get_all(k) for k in st.query_params}
    for key in list(current):
        if (key in S.SETTINGS or key in (LESSON_PARAM, *COURSE_PARAMS)) and key not in wanted:
            del st.query_params[key]
    for key, value in wanted.items():
        if current.get(key) != [value]:
            st.query_params[key] = value
