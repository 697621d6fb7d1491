"""One-click presets: JSON files in ``assets/presets`` that open a page already set up.

A preset names its page, the settings to change (every other setting of that page goes back to its
default, so a preset always opens the same lesson) and a few lines of lesson text shown on that page.
``"autoplay": true`` starts training as soon as the Train page opens.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from core.lessons import LessonGoal
from ui import settings as S

PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "presets"
PAGE_FILES = {"home": "pages/home.py", "lab": "pages/augmentation_lab.py", "train": "pages/train.py"}


@dataclass(frozen=True)
class Preset:
    id: str
    title: str
    summary: str
    page: str
    settings: dict[str, Any]
    lesson: str = ""
    autoplay: bool = False
    icon: str = ":material/play_circle:"
    order: int = 100
    goal: LessonGoal | None = None  # the moment the lesson's point is on screen (core.lessons)


def parse(doc: dict[str, Any], preset_id: str) -> Preset:
    """Validate one preset document; ``ValueError`` names the problem."""
    page = doc.get("page")
    if page not in S.PAGE_NAMESPACES:
        raise ValueError(f"Preset {preset_id}: page must be one of {', '.join(S.PAGE_NAMESPACES)}, not {page!r}.")
    good, problems = S.validate(doc.get("settings", {}), S.PAGE_NAMESPACES[page])
    if problems:
        raise ValueError(f"Preset {preset_id}: " + " ".join(problems))
    goal = None
    if doc.get("goal") is not None:
        if page != "train":
            raise ValueError(f"Preset {preset_id}: only Train-page lessons have a goal.")
        try:
            goal = LessonGoal.from_dict(doc["goal"])
        except ValueError as err:
            raise ValueError(f"Preset {preset_id}: {err}") from None
    return Preset(id=preset_id, title=str(doc["title"]), summary=str(doc.get("summary", "")), page=page,
                  settings=good, lesson=str(doc.get("lesson", "")), autoplay=bool(doc.get("autoplay", False)),
                  icon=str(doc.get("icon", ":material/play_circle:")), order=int(doc.get("order", 100)), goal=goal)


def load_all(directory: Path = PRESET_DIR) -> list[Preset]:
    """Every preset in ``directory``, in display order."""
    out = [parse(json.loads(p.read_text(encoding="utf-8")), p.stem) for p in sorted(directory.glob("*.json"))]
    return sorted(out, key=lambda p: (p.order, p.title))


@st.cache_data(max_entries=1, show_spinner=False)
def cached_presets() -> list[Preset]:
    return load_all()


def lesson_state(preset: Preset) -> dict[str, str]:
    """What the lesson banner shows, and the id a link carries (``lesson=<id>``, see ui.urlstate)."""
    return {"id": preset.id, "page": preset.page, "title": preset.title, "text": preset.lesson}


def by_id(preset_id: str) -> Preset | None:
    """The preset with this id (a lesson's ``id``), or None."""
    return next((p for p in cached_presets() if p.id == preset_id), None)


def lesson_values(preset: Preset) -> dict[str, Any]:
    """The page's settings as the preset opens it: every default, then the preset's own settings."""
    values = S.defaults(S.PAGE_NAMESPACES[preset.page])
    values.update(preset.settings)
    return values


def apply(preset: Preset) -> None:
    """Put the preset's settings in session state, remember its lesson, and open its page."""
    values = lesson_values(preset)
    for k, v in values.items():
        st.session_state[k] = v
    st.session_state["lesson"] = lesson_state(preset)
    if preset.autoplay:
        st.session_state[f"{preset.page}._autoplay"] = True
    st.switch_page(PAGE_FILES[preset.page])
