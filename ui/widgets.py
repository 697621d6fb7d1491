"""Widgets shared by the pages, all driven by the settings table in :mod:`ui.settings`.

Every settings widget is created with ``key=<setting key>`` and the table default (only while session state
holds no value for it: passing both makes Streamlit warn). ``ui.urlstate`` puts every changed value in the URL
after each run, so a shared link opens the app with the same settings. Presets and JSON imports change values
by assigning ``st.session_state[key]`` before the widget is drawn (or in a callback).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import streamlit as st

from ui import settings as S

# Styles every page gets (app.py emits them once per run). Progress bars jump to their value instead of sliding
# there for 0.5 s (the frontend's CSS transition): the Train page's status line moves its bar every second, and
# in a headless Chromium (software rendering) the animation's frames cost more than the rerun itself: a tab
# showing only that line used 0.12 cores, 0.05 without the transition (benchmarks/server/bench_browser_cost.py).
PAGE_CSS = "<style>[data-testid='stProgress'] * { transition: none !important; }</style>"

log = logging.getLogger(__name__)


def initial(key: str, **default: Any) -> dict[str, Any]:
    """``default`` (e.g. ``value=...``) unless session state already holds the setting."""
    return {} if key in st.session_state else default


def _label(key: str, label: str | None) -> str:
    return label if label is not None else S.SETTINGS[key].label


def _help(key: str, help: str | None) -> str | None:
    return help if help is not None else (S.SETTINGS[key].help or None)


def toggle(key: str, label: str | None = None, *, help: str | None = None, **kw: Any) -> bool:
    return st.toggle(_label(key, label), **initial(key, value=S.default(key)), key=key, help=_help(key, help), **kw)


def select(key: str, options: Sequence | None = None, *, label: str | None = None, help: str | None = None,
           format_func: Callable[[Any], str] = str, **kw: Any) -> Any:
    """A selectbox. ``options`` defaults to the table's; the default is the table default when allowed,
    else the first option (dataset-dependent choices such as the label factor)."""
    opts = list(options if options is not None else S.SETTINGS[key].options)
    d = S.default(key)
    index = opts.index(d) if d in opts else 0
    if key in st.session_state and st.session_state[key] not in opts:
        del st.session_state[key]  # e.g. a label factor of another dataset: fall back to the default
    return st.selectbox(_label(key, label), opts, **initial(key, index=index), key=key, help=_help(key, help),
                        format_func=format_func, **kw)


def select_slider(key: str, *, label: str | None = None, help: str | None = None,
                  format_func: Callable[[Any], str] = str, options: Sequence | None = None, **kw: Any) -> Any:
    opts = list(options if options is not None else S.SETTINGS[key].options)
    return st.select_slider(_label(key, label), options=opts, **initial(key, value=S.default(key)), key=key,
                            help=_help(key, help), format_func=format_func, **kw)


def slider(key: str, *, step: float, label: str | None = None, help: str | None = None, **kw: Any) -> Any:
    s = S.SETTINGS[key]
    lo, hi = (float(s.low), float(s.high)) if s.kind in ("float", "range") else (int(s.low), int(s.high))
    value = tuple(s.default) if s.kind == "range" else s.default
    return st.slider(_label(key, label), min_value=lo, max_value=hi, **initial(key, value=value), step=step,
                     key=key, help=_help(key, help), **kw)


def number(key: str, *, label: str | None = None, help: str | None = None, max_value: int | None = None,
           **kw: Any) -> int:
    s = S.SETTINGS[key]
    hi = int(s.high) if max_value is None else int(max_value)
    return st.number_input(_label(key, label), min_value=int(s.low), max_value=hi,
                           **initial(key, value=int(s.default)), step=1, key=key, help=_help(key, help), **kw)


def current(key: str) -> Any:
    """The setting's value now: the widget's if it has been drawn, else the table default."""
    return st.session_state.get(key, S.default(key))


def current_values(namespaces: Sequence[str]) -> dict[str, Any]:
    return {k: current(k) for k in S.keys(namespaces)}


def assign(values: dict[str, Any]) -> None:
    """Set settings before their widgets are drawn (in a callback, or before switching page)."""
    for k, v in values.items():
        st.session_state[k] = tuple(v) if isinstance(v, list) else v


# ------------------------------------------------------------------------------------------ errors
@contextmanager
def user_errors(what: str | None = None) -> Iterator[None]:
    """Show a :class:`core.errors.PlaygroundError` (and any ``ValueError`` from a config check) as ``st.error``.

    Streamlit's own control flow (rerun, stop, switch_page) derives from BaseException and passes through.
    Anything else is a bug: it is logged with its traceback for the developer, and the page shows one
    sentence instead of a traceback.
    """
    try:
        yield
    except ValueError as err:  # PlaygroundError is a ValueError
        st.error(str(err), icon=":material/error:")
    except Exception as err:  # noqa: BLE001 - last resort: no traceback on the page
        log.exception("Unexpected error%s", f" while {what}" if what else "")
        st.error(
            f"Something went wrong{f' while {what}' if what else ''}: {type(err).__name__}: {err}. "
            "The app is still running; try other settings or press Reset.",
            icon=":material/bug_report:",
        )


# ------------------------------------------------------------------------------------------ augmentations
_OPS = ("crop", "flip", "rotation", "color_jitter", "grayscale", "blur", "solarize")


def augment_values() -> dict[str, Any]:
    """Current augmentation settings as ``AugmentConfig.from_dict`` input (field name -> value)."""
    return {k.split(".", 1)[1]: current(k) for k in S.keys(["aug"])}


def augment_config():
    """The shared :class:`core.augment.AugmentConfig`; raises PlaygroundError for impossible values."""
    from core.augment import AugmentConfig

    return AugmentConfig.from_dict({k: list(v) if isinstance(v, tuple) else v for k, v in augment_values().items()})


RECIPE_LABELS = {"simclr": "SimCLR (textbook)", "none": "none", "crop only": "crop", "colour only": "colour",
                 "geometry only": "geometry", "shapes": "shapes", "digits": "digits", "strong": "strong"}


def follow_dataset(dataset_key: str) -> None:
    """on_change of a dataset picker: the augmentations switch to that dataset's recipe (core.augment.recipe_for),
    which the user then sees and can edit; SimCLR's textbook recipe stays one click away in the recipe picker."""
    from core.augment import recipe_for

    name = st.session_state.get(dataset_key)
    assign({f"aug.{k}": v for k, v in recipe_for("photos" if name == "upload" else name).to_dict().items()})


def recipe_caption(dataset: str | None) -> str:
    """Which named recipe the current augmentations are, e.g. "the shapes recipe (this dataset's default)"."""
    from core.augment import PRESETS, recipe_name_for

    try:
        current = augment_config()
    except ValueError:
        return "custom settings"
    default = recipe_name_for(dataset)
    name = next((n for n, cfg in PRESETS.items() if cfg == current), None)
    if name is None:
        return f"custom settings (this dataset starts from the *{default}* recipe)"
    if name == default:
        return f"the *{name}* recipe, this dataset's default"
    return f"the *{name}* recipe (this dataset starts from *{default}*)"


def _apply_augment_preset(pill_key: str) -> None:
    from core.augment import PRESETS

    name = st.session_state.get(pill_key)
    if name in PRESETS:
        values = PRESETS[name].to_dict()
        assign({f"aug.{k}": v for k, v in values.items()})
    st.session_state[pill_key] = None  # a one-shot action, not a lasting choice


def augment_editor(*, where: str) -> None:
    """Toggles and strengths for every augmentation op; shared state, so both pages edit the same config.

    ``where`` makes the recipe picker's key unique per page ("lab" or "train").
    """
    from core.augment import PRESETS

    pill_key = f"{where}.aug_recipe"
    st.pills("Start from a recipe", list(PRESETS), key=pill_key, on_change=_apply_augment_preset,
             args=(pill_key,), format_func=RECIPE_LABELS.get,
             help="Sets every augmentation below at once; then adjust what you like. *SimCLR (textbook)* is "
                  "Chen et al.'s CIFAR recipe: on shapes it keeps colour as a shortcut, a lesson of its own.")
    if toggle("aug.crop"):
        slider("aug.crop_scale", step=0.05)
    toggle("aug.flip")
    if toggle("aug.rotation"):
        slider("aug.rotation_degrees", step=5.0)
    if toggle("aug.color_jitter"):
        c1, c2 = st.columns(2)
        with c1:
            slider("aug.brightness", step=0.05)
            slider("aug.saturation", step=0.05)
            slider("aug.jitter_p", step=0.05)
        with c2:
            slider("aug.contrast", step=0.05)
            slider("aug.hue", step=0.01)
    if toggle("aug.grayscale"):
        slider("aug.grayscale_p", step=0.05)
    if toggle("aug.blur"):
        slider("aug.blur_sigma", step=0.1)
        slider("aug.blur_p", step=0.05)
    if toggle("aug.solarize"):
        slider("aug.solarize_threshold", step=0.05)
        slider("aug.solarize_p", step=0.05)


OP_NAMES = {
    "crop": "random crop",
    "flip": "flip",
    "rotation": "rotation",
    "color_jitter": "colour jitter",
    "grayscale": "greyscale",
    "blur": "blur",
    "solarize": "solarize",
}


# ------------------------------------------------------------------------------------------ share / JSON
def _import_settings(uploader_key: str, page: str) -> None:
    f = st.session_state.get(uploader_key)
    if f is None:
        return
    try:
        values = S.from_json(f.getvalue(), namespaces=S.PAGE_NAMESPACES[page])
    except ValueError as err:
        st.session_state[f"{page}._import_msg"] = ("error", str(err))
        return
    assign(values)
    st.session_state[f"{page}._import_msg"] = ("success", f"Loaded {len(values)} settings from {f.name}.")


def _reset_settings(page: str) -> None:
    assign(S.defaults(S.PAGE_NAMESPACES[page]))
    st.session_state[f"{page}._import_msg"] = ("success", "Every setting of this page is back to its default.")


def share_panel(page: str) -> None:
    """Export / import this page's settings as JSON, and explain the shareable link."""
    ns = S.PAGE_NAMESPACES[page]
    st.caption(
        "The address in your browser holds every setting you changed: copy it to share this exact lesson. "
        "Or save the settings as a file and load it later."
    )
    values = current_values(ns)
    st.download_button("Save settings (.json)", S.to_json(values, page=page), file_name=f"{page}-settings.json",
                       mime="application/json", key=f"{page}.export", icon=":material/download:", on_click="ignore")
    st.file_uploader("Load settings (.json), up to 1 MB", key=f"{page}.import", max_upload_size=1,
                     on_change=_import_settings,
                     args=(f"{page}.import", page), help="A settings file saved from this page.")
    msg = st.session_state.pop(f"{page}._import_msg", None)
    if msg:
        (st.error if msg[0] == "error" else st.success)(msg[1])
    st.button("Reset this page's settings", key=f"{page}.reset_settings", on_click=_reset_settings, args=(page,),
              icon=":material/restart_alt:")


# ------------------------------------------------------------------------------------------ lessons
def lesson_banner(page: str) -> None:
    """The text of the preset that opened this page, until the user closes it."""
    lesson = st.session_state.get("lesson")
    if not lesson or lesson.get("page") != page:
        return
    with st.container(border=True):
        st.markdown(f"**{lesson['title']}**  \n{lesson['text']}")
        if st.button("Close", key=f"{page}.lesson_close", type="tertiary", icon=":material/close:"):
            st.session_state.pop("lesson", None)
            st.rerun()
