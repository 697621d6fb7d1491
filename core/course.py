"""Courses: a numbered path through the app, written as data (``assets/courses/<id>.json``), never as code.

A course file is untrusted input (a teacher's upload as much as a shipped file), so :func:`parse` checks
everything and names each problem in one sentence: unknown keys, unknown pages, settings the page does not
have or values out of range (checked by the caller's ``check_settings``, the same function that checks a
link's values), look-at targets the page does not draw, questions whose answer the step cannot compute.

The format::

    {"format": "contrastive-playground/course@1", "title": "...", "summary": "...",
     "steps": [{"title": "...", "page": "train", "settings": {"train.steps": 300}, "run": "train",
                "text": "Markdown to read aloud", "look_at": "train.chart.knn",
                "question": {"text": "Will shape or colour win?", "choices": {"shape": "Shape", "colour": "Colour"},
                             "measure": "train_knn", "answer": "largest", "textbook": "shape",
                             "why": "what the textbook says, shown when the run disagrees"}}]}

``run`` is "none" (the page opens set up), "train" (the Train page starts the step's run, as a one-click lesson
does) or "measure" (the course computes the question's figures itself, with the step's settings). A question's
answer is computed live from the step's run: ``measure`` names the figures (:data:`MEASURES`) and ``answer``
how they pick a choice (:func:`decide`). No streamlit and no torch here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

FORMAT = "contrastive-playground/course@1"
MAX_BYTES = 200_000  # a course is a few kilobytes of text
MAX_STEPS = 40
MAX_TEXT = 4000  # characters of one step's text
COURSE_DIR = Path(__file__).resolve().parent.parent / "assets" / "courses"

PAGES = ("lab", "train", "loss_lab", "explorer", "clip", "text")
RUNS = ("none", "train", "measure")

# What a step may point at: element keys each page draws (Streamlit gives every keyed element the CSS class
# st-key-<key>, which the course highlights). A chart that only exists once the run has data still counts.
LOOK_AT: dict[str, tuple[str, ...]] = {
    "lab": ("aug.color_jitter", "aug.crop", "aug.crop_scale", "aug.hue", "lab.n_views", "lab.new_views",
            "lab.invariance_chart"),
    "train": ("train.chart.loss", "train.chart.knn", "train.chart.au", "train.chart.hist", "train.chart.embedding",
              "train.temperature", "train.play"),
    "loss_lab": ("loss_lab.chart.points", "loss_lab.chart.batch", "loss_lab.chart.anchor", "loss_lab.tau",
                 "loss_lab.chart.au", "loss_lab.chart.pairs"),
    "explorer": ("explorer.method", "explorer.view", "explorer.map", "explorer.colour"),
    "clip": ("clip.tmode", "clip.scale", "clip.dataset", "clip.n"),
    "text": ("text.query", "text.k", "text.best", "text.index"),
}

# Figures a step's question can be decided by: measure -> (page it belongs to, figure names).
# "train_knn": held-out kNN accuracy per factor of the step's training run, at its last evaluation.
# "toy_hardest_share": the largest single negative's share of NT-Xent's push (core.lab.hardest_negative_share)
#     on one toy batch at the step's temperature ("tau") and at 1.0 ("tau_1"), with "uniform" = 1 / (2N - 2).
# "map_trust": the demo space's map at the step's settings: "map_knn" (10-NN label accuracy in 2-D),
#     "vector_knn" (the same in the full vectors), "preservation" (neighbours kept).
# "clip_ensemble": zero-shot accuracy of the shipped mini-CLIP with one template ("one") and the 80 OpenAI
#     templates averaged ("ensemble").
# "text_search": the bundled MiniLM's cosine similarity of the step's query to each choice sentence.
MEASURES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "train_knn": ("train", None),  # figure names are the dataset's factors (shape, colour, ...)
    "toy_hardest_share": ("loss_lab", ("tau", "tau_1", "uniform")),
    "map_trust": ("explorer", ("map_knn", "vector_knn", "preservation")),
    "clip_ensemble": ("clip", ("one", "ensemble")),
    "text_search": ("text", None),  # figure names are the question's choices (sentences)
}
ANSWERS = ("largest", "above")  # largest: the choice whose figure is highest; above: figure > threshold


@dataclass(frozen=True)
class Question:
    text: str
    choices: dict[str, str]  # choice id -> label shown
    measure: str
    answer: str  # "largest" or "above"
    figure: str = ""  # "above": the figure compared ...
    threshold: float = 0.0  # ... with this (added to the figure named by ``than``, when one is)
    than: str = ""
    textbook: str = ""  # the choice the textbook expects ("" if none)
    why: str = ""  # shown when the run disagrees with the textbook
    yes: str = "yes"  # "above": the choice when figure > threshold ...
    no: str = "no"  # ... and when not


@dataclass(frozen=True)
class Step:
    title: str
    page: str
    text: str
    settings: dict[str, Any] = field(default_factory=dict)
    run: str = "none"
    look_at: str = ""
    question: Question | None = None


@dataclass(frozen=True)
class Course:
    id: str
    title: str
    summary: str
    steps: tuple[Step, ...]
    minutes: int = 0


CheckSettings = Callable[[str, Mapping[str, Any]], "tuple[dict[str, Any], list[str]]"]

_COURSE_KEYS = {"format", "title", "summary", "minutes", "steps"}
_STEP_KEYS = {"title", "page", "text", "settings", "run", "look_at", "question"}
_QUESTION_KEYS = {"text", "choices", "measure", "answer", "figure", "threshold", "than", "textbook", "why",
                  "yes", "no"}


def _unknown(where: str, got: Mapping, allowed: set[str]) -> list[str]:
    extra = sorted(set(got) - allowed)
    return [f"{where} has an unknown key '{k}' (allowed: {', '.join(sorted(allowed))})." for k in extra]


def _text(where: str, doc: Mapping, key: str, problems: list[str], *, required: bool = True,
          limit: int = 300) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        problems.append(f"{where} needs a '{key}' text." if required else f"{where}'s '{key}' must be text.")
        return ""
    if len(value) > limit:
        problems.append(f"{where}'s '{key}' is {len(value)} characters long; at most {limit} are allowed.")
        return ""
    return value


def _question(where: str, doc: Any, page: str, problems: list[str]) -> Question | None:
    if not isinstance(doc, dict):
        problems.append(f"{where}: 'question' must be an object with text, choices, measure and answer.")
        return None
    where = f"{where}'s question"
    problems += _unknown(where, doc, _QUESTION_KEYS)
    text = _text(where, doc, "text", problems)
    choices = doc.get("choices")
    if not isinstance(choices, dict) or len(choices) < 2 or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in choices.items()):
        problems.append(f"{where} needs 'choices': an object of at least two choice ids and their labels.")
        choices = {}
    measure = doc.get("measure")
    if measure not in MEASURES:
        problems.append(f"{where}: 'measure' must be one of {', '.join(MEASURES)}, not {measure!r}.")
        return None
    if MEASURES[measure][0] != page:
        problems.append(f"{where}: the measure '{measure}' belongs to the {MEASURES[measure][0]} page, "
                        f"not to {page}.")
    answer = doc.get("answer")
    if answer not in ANSWERS:
        problems.append(f"{where}: 'answer' must be one of {', '.join(ANSWERS)}, not {answer!r}.")
        return None
    figures = MEASURES[measure][1]
    figure, than = str(doc.get("figure", "")), str(doc.get("than", ""))
    threshold = doc.get("threshold", 0.0)
    yes, no = str(doc.get("yes", "yes")), str(doc.get("no", "no"))
    if answer == "above":
        for name, value in (("figure", figure), ("than", than)):
            if (value or name == "figure") and figures is not None and value not in figures:
                problems.append(f"{where}: '{name}' must name a figure of '{measure}' "
                                f"({', '.join(figures)}), not {value!r}.")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
            problems.append(f"{where}: 'threshold' must be a number.")
            threshold = 0.0
        if choices and {yes, no} != set(choices):
            problems.append(f"{where}: an 'above' question's choices must be exactly '{yes}' and '{no}'.")
    elif figures is not None and choices and not set(choices) <= set(figures):
        problems.append(f"{where}: a 'largest' question's choices must be figures of '{measure}' "
                        f"({', '.join(figures)}).")
    textbook = str(doc.get("textbook", ""))
    if textbook and choices and textbook not in choices:
        problems.append(f"{where}: 'textbook' must be one of its choices ({', '.join(choices)}), not {textbook!r}.")
    why = _text(where, doc, "why", problems, required=False, limit=MAX_TEXT)
    return Question(text=text, choices=dict(choices), measure=measure, answer=answer, figure=figure,
                    threshold=float(threshold), than=than, textbook=textbook, why=why, yes=yes, no=no)


def _step(i: int, doc: Any, check_settings: CheckSettings, problems: list[str]) -> Step | None:
    where = f"Step {i + 1}"
    if not isinstance(doc, dict):
        problems.append(f"{where} must be an object with a title, a page and a text.")
        return None
    problems += _unknown(where, doc, _STEP_KEYS)
    title = _text(where, doc, "title", problems)
    page = doc.get("page")
    if page not in PAGES:
        problems.append(f"{where}: 'page' must be one of {', '.join(PAGES)}, not {page!r}.")
        return None
    text = _text(where, doc, "text", problems, limit=MAX_TEXT)
    settings = doc.get("settings", {})
    good: dict[str, Any] = {}
    if not isinstance(settings, dict):
        problems.append(f"{where}: 'settings' must be an object of setting keys and values.")
    else:
        good, bad = check_settings(page, settings)
        problems += [f"{where}: {p}" for p in bad]
    run = doc.get("run", "none")
    if run not in RUNS:
        problems.append(f"{where}: 'run' must be one of {', '.join(RUNS)}, not {run!r}.")
    elif run == "train" and page != "train":
        problems.append(f"{where}: only a Train-page step can start a training run.")
    look_at = doc.get("look_at", "")
    if look_at and look_at not in LOOK_AT[page]:
        problems.append(f"{where}: 'look_at' must be something the {page} page draws "
                        f"({', '.join(LOOK_AT[page])}), not {look_at!r}.")
    question = _question(where, doc["question"], page, problems) if doc.get("question") is not None else None
    if question is not None and question.measure == "train_knn" and run != "train":
        problems.append(f"{where}: a 'train_knn' question needs the step to run training (\"run\": \"train\").")
    return Step(title=title, page=page, text=text, settings=good, run=run if run in RUNS else "none",
                look_at=str(look_at), question=question)


def parse(data: bytes | str | Mapping, course_id: str, check_settings: CheckSettings) -> Course:
    """Validate a course document. Raises ``ValueError`` whose message lists every problem, one sentence each.

    ``check_settings(page, values) -> (good values, problems)`` is the app's settings check (``ui.settings``),
    so a course step's values pass the same test as a link's.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise ValueError(f"That course file is {len(data):,} bytes; a course is at most {MAX_BYTES:,}.")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("That course file is not UTF-8 text; a course is a .json file.") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise ValueError(f"That course file is not valid JSON ({err.msg} at line {err.lineno}).") from None
    if not isinstance(data, dict):
        raise ValueError('A course is a JSON object with "title" and "steps".')
    problems: list[str] = _unknown("The course", data, _COURSE_KEYS)
    if data.get("format", FORMAT) != FORMAT:
        problems.append(f"The course's 'format' must be '{FORMAT}', not {data.get('format')!r}.")
    title = _text("The course", data, "title", problems)
    summary = _text("The course", data, "summary", problems, required=False, limit=1000)
    minutes = data.get("minutes", 0)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= 600:
        problems.append("The course's 'minutes' must be a whole number of minutes (0-600).")
        minutes = 0
    steps_doc = data.get("steps")
    steps: list[Step] = []
    if not isinstance(steps_doc, list) or not steps_doc:
        problems.append("The course needs 'steps': a list of at least one step.")
    elif len(steps_doc) > MAX_STEPS:
        problems.append(f"The course has {len(steps_doc)} steps; at most {MAX_STEPS} are allowed.")
    else:
        for i, doc in enumerate(steps_doc):
            step = _step(i, doc, check_settings, problems)
            if step is not None:
                steps.append(step)
    if problems:
        raise ValueError("The course was not loaded: " + " ".join(problems))
    return Course(id=course_id, title=title, summary=summary, steps=tuple(steps), minutes=minutes)


def load_all(check_settings: CheckSettings, directory: Path = COURSE_DIR) -> list[Course]:
    """Every shipped course, by title. A broken shipped file raises (tests keep them valid)."""
    out = [parse(p.read_bytes(), p.stem, check_settings) for p in sorted(directory.glob("*.json"))]
    return sorted(out, key=lambda c: c.title)


def decide(question: Question, figures: Mapping[str, float]) -> str | None:
    """The choice the run's own ``figures`` pick, or None while a needed figure is missing (the run goes on).

    "largest": the choice with the highest figure (ties go to the first choice listed).
    "above": ``yes`` when ``figure`` > ``threshold`` (plus ``than``'s figure when named), else ``no``.
    """
    def get(name: str) -> float | None:
        v = figures.get(name)
        return float(v) if v is not None and math.isfinite(float(v)) else None

    if question.answer == "largest":
        values = [(get(c), c) for c in question.choices]
        if any(v is None for v, _ in values):
            return None
        best = max(v for v, _ in values)
        return next(c for v, c in values if v == best)
    value = get(question.figure)
    other = get(question.than) if question.than else 0.0
    if value is None or other is None:
        return None
    bar = other + question.threshold
    return question.yes if value > bar else question.no
