"""Every user-facing setting of the app, in one table: key, default, allowed values, label and help.

The key is at once the widget key, the session-state key and the URL query parameter (``ui.urlstate`` writes
every changed setting into the address after each run, as a value, and reads a link back when a session starts),
so a link reproduces a lesson. The same table drives JSON export/import and
the presets in ``assets/presets``. Keys are namespaced by page (``"train.temperature"``); the augmentation
settings live under ``"aug."`` because the Augmentation Lab and the Train page share them.

The ``train.*`` settings that are ``TrainConfig`` fields, every ``aug.*`` setting and the Loss Lab toy's
``loss_lab.*`` settings (``ToyConfig`` fields) are not written here: they come from :mod:`core.settings_schema`,
the one declaration the dataclasses validate against (:func:`_core`),
so bounds, choices, labels and defaults cannot drift, and a bad value gets the same sentence from a link, a
settings file, a course step and ``TrainConfig(...)``. The rest are the pages' own.

No torch here: this module is on the app's start path (so is core.settings_schema, which imports none).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from core import settings_schema as SCHEMA

SETTINGS_FORMAT = "contrastive-playground/settings@1"


@dataclass(frozen=True)
class Setting:
    """One setting. ``kind`` is "bool", "int", "float", "str" (one of ``options`` when given), "text" (free text
    up to MAX_TEXT characters) or "range" (a (low, high) pair)."""

    key: str
    default: Any
    kind: str
    label: str
    help: str = ""
    options: tuple | None = None  # allowed values (select widgets); None: any value within [low, high]
    low: float | None = None
    high: float | None = None

    @property
    def page(self) -> str:
        return self.key.split(".", 1)[0]


def _s(key: str, default: Any, kind: str, label: str, help: str = "", **kw: Any) -> Setting:
    return Setting(key, default, kind, label, help, **kw)


def _core(key: str) -> Setting:
    """A setting declared in core.settings_schema: its bounds, choices, label and help, starting where the page
    starts (the dataclass default, or the change the schema declares: the shapes recipe, auto precision)."""
    spec = SCHEMA.SPECS[key]
    return Setting(key, SCHEMA.page_default(key), spec.kind, spec.label, spec.help, options=spec.options,
                   low=spec.low, high=spec.high)


DATASET_LAB_OPTIONS = ("shapes", "digits", "photos", "upload", "yours")  # yours: ui.yourimages
TEMPERATURES = SCHEMA.SPECS["train.temperature"].options
LEARNING_RATES = SCHEMA.SPECS["train.lr"].options

_TABLE: list[Setting] = [
    # ---- Augmentation Lab -------------------------------------------------------------------------------
    _s("lab.dataset", "shapes", "str", "Dataset", "Built-in data works offline; or upload one image of your own.",
       options=DATASET_LAB_OPTIONS),
    _s("lab.image", 0, "int", "Image", "Which image of the dataset to augment.", low=0, high=1_000_000),
    _s("lab.n_views", 8, "int", "Number of views", options=(4, 8, 12, 16)),
    _s("lab.seed", 0, "int", "Random seed of the views", low=0, high=1_000_000),
    # ---- augmentations (shared by the Lab and the Train page): AugmentConfig's fields, as core declares them.
    # They start from the built-in shapes' recipe (the default dataset learns shape with it); choosing another
    # dataset switches to its recipe (ui.widgets.follow_dataset).
    *(_core(k) for k in SCHEMA.SPECS if k.startswith("aug.")),
    # ---- Train page ---------------------------------------------------------------------------------------
    _s("train.dataset", SCHEMA.DEFAULT_DATASET["name"], "str", "Dataset",
       "shapes, digits and photos are built in and work offline; the others need a download."),
    _s("train.n", SCHEMA.DEFAULT_DATASET["options"]["n"], "int", "Images to use",
       "A subset of the dataset: 20% of it is held out for evaluation.",
       options=(200, 500, 1000, 2000, 5000, 10000, 20000, 50000)),
    _core("train.method"),
    _s("train.arch", "fast_cnn", "str", "Encoder", options=("small_cnn", "fast_cnn", "resnet18")),
    _s("train.width", 32, "int", "Encoder width",
       "Channels of the small CNN: its five blocks use w/2, w, 2w, 2w and 4w, so its features have 4w numbers. "
       "A narrower encoder steps faster on a CPU.", options=(8, 16, 32, 64)),
    _s("train.image_size", SCHEMA.DEFAULT_DATASET["options"]["size"], "int", "Image size (pixels)",
       "The built-in shapes are drawn at this size. Smaller images step faster; shape is still visible at 24 px.",
       options=(16, 24, 32, 48, 64)),
    _core("train.projection_dim"),
    _core("train.batch_size"),
    _core("train.temperature"),
    _core("train.lr"),
    _core("train.precision"),
    _core("train.steps"),
    _core("train.seed"),
    _core("train.queue_size"),
    _core("train.momentum"),
    _core("train.mining"),
    _s("train.clip_model", "", "str", "CLIP towers",
       "Small CNN + text transformer (fast), or an open_clip model (a mini ResNet image tower, as the shipped "
       "mini-CLIP): that run also joins your models as a CLIP the CLIP page and the Explorer can use.",
       options=("", "mini-rn")),
    _core("train.margin"),
    _s("train.label_factor", "", "str", "Label for supervised methods",
       "Triplet, margin and SupCon use labels; pick which factor counts as 'the same'."),
    _s("train.color_by", "", "str", "Colour the points by"),
    # ---- Loss & Temperature Lab: the toy's settings are core.lab.ToyConfig's fields, as core declares them;
    # the anatomy's batch and τ are the page's own.
    *(_core(k) for k, spec in SCHEMA.SPECS.items() if k.startswith("loss_lab.") and spec.page),
    _s("loss_lab.anatomy_batch", 32, "int", "Batch size", options=(8, 16, 32, 64, 128, 256)),
    _s("loss_lab.tau", 0.2, "float", "Temperature τ", options=(0.02, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0)),
    _s("loss_lab.preset", "temperature", "str", "Experiment", options=SCHEMA.LAB_PRESETS),
    # ---- Embedding Explorer --------------------------------------------------------------------------------
    _s("explorer.source", "Demo", "str", "Look at", options=("Demo", "Your models", "Your images", "Upload a file")),
    _s("explorer.method", "umap", "str", "Method", options=("umap", "pca", "tsne")),
    _s("explorer.dim", 2, "int", "Dimensions", options=(2, 3)),
    _s("explorer.n_neighbors", 15, "int", "UMAP neighbours", low=2, high=100),
    _s("explorer.min_dist", 0.1, "float", "UMAP min distance", low=0.0, high=0.99),
    _s("explorer.metric", "cosine", "str", "Metric (UMAP, t-SNE)", options=("cosine", "euclidean")),
    _s("explorer.perplexity", 30, "int", "t-SNE perplexity", low=5, high=50),
    _s("explorer.k", 10, "int", "Neighbours k (scores, lists)", low=5, high=50),
    _s("explorer.view", "Map", "str", "View", options=("Map", "Similarity", "Health", "Compare", "Export")),
    _s("explorer.sim_n", 200, "int", "Items in the matrix", options=(50, 100, 200, 500, 1000)),
    _s("explorer.tau", 0.2, "float", "Temperature", options=(0.05, 0.1, 0.2, 0.5, 1.0)),
    _s("explorer.dup_thr", 0.98, "float", "Similarity threshold", low=0.8, high=1.0),
    # ---- CLIP ----------------------------------------------------------------------------------------------
    _s("clip.source", "mini", "str", "Where the model comes from", options=("mini", "tag", "hub", "local")),
    _s("clip.dataset", "shapes", "str", "Images", options=("shapes", "photos", "digits", "upload", "yours")),
    _s("clip.n", 200, "int", "How many", options=(50, 100, 200, 500, 1000)),
    _s("clip.factor", "shape", "str", "Label", "Which known factor the class names describe."),
    _s("clip.names_from", "dataset", "str", "Class names", options=("dataset", "preset", "typed")),
    _s("clip.typed", "circle\nsquare\nstar", "text", "One class per line (or comma-separated)"),
    _s("clip.tmode", "one", "str", "Prompt templates", options=("one", "custom", "openai")),
    _s("clip.scale", 100, "int", "Logit scale (1 / temperature)", options=(1, 2, 5, 10, 20, 50, 100)),
    _s("clip.topk", 5, "int", "Top-k shown", options=(3, 5, 10)),
    _s("clip.ret_mode", "text", "str", "Search with", options=("text", "image")),
    _s("clip.ret_k", 8, "int", "Results", options=(4, 8, 12, 24)),
    _s("clip.plus", "", "text", "+ text (optional)"),
    _s("clip.minus", "", "text", "− text (optional)"),
    _s("clip.map_method", "pca", "str", "Projection", options=("pca", "umap")),
    # ---- Text ----------------------------------------------------------------------------------------------
    _s("text.source", "Built-in corpus", "str", "Texts", options=("Built-in corpus", "Paste a list", "Upload a file")),
    _s("text.query", "how do bats find food in the dark", "text", "Query"),
    _s("text.k", 5, "int", "Results (k)", low=1, high=20),
    _s("text.index", "exact", "str", "Index", options=SCHEMA.TEXT_INDEXES),
    _s("text.pairs", "topic", "str", "Pairs", options=("topic", "qa", "upload")),
    _s("text.steps", 30, "int", "Steps", options=(10, 20, 30, 50, 100)),
    _s("text.temperature", 0.05, "float", "Temperature", options=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)),
    _s("text.hard_negatives", False, "bool", "Hard negatives"),
]

SETTINGS: dict[str, Setting] = {s.key: s for s in _TABLE}
PAGES = ("lab", "aug", "train", "loss_lab", "explorer", "clip", "text")
# Which namespaces a page's export/import (and a course step) covers: the Train page uses the Lab's augmentations.
PAGE_NAMESPACES = {"lab": ("lab", "aug"), "train": ("train", "aug"), "loss_lab": ("loss_lab",),
                   "explorer": ("explorer",), "clip": ("clip",), "text": ("text",)}
MAX_TEXT = 500  # characters of a free-text setting (a query, class names): a link is no place for an essay


def default(key: str) -> Any:
    return SETTINGS[key].default


def bounds(key: str) -> tuple:
    """(low, high) of a numeric setting: what a page's slider or number input spans."""
    s = SETTINGS[key]
    return (s.low, s.high)


def options(key: str) -> list:
    """The allowed values of a choice setting, in display order (what a page's select widget lists)."""
    return list(SETTINGS[key].options)


def keys(namespaces: Iterable[str]) -> list[str]:
    wanted = set(namespaces)
    return [s.key for s in _TABLE if s.page in wanted]


def defaults(namespaces: Iterable[str]) -> dict[str, Any]:
    return {k: SETTINGS[k].default for k in keys(namespaces)}


# ------------------------------------------------------------------------------------------ validation
def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def coerce(key: str, value: Any) -> Any:
    """Check one value against its setting and return it in the widget's type.

    A setting core declares (``train.*`` config fields, ``aug.*``) is checked by core's own
    :func:`core.settings_schema.check`, so it is refused with the sentence ``TrainConfig`` gives; numeric ones
    must then also be one of the page's options, where it offers a list.
    Raises ``ValueError`` with a sentence saying what is allowed.
    """
    s = SETTINGS.get(key)
    if s is None:
        raise ValueError(f"'{key}' is not a setting of this app.")
    spec = SCHEMA.SPECS.get(key)
    if spec is not None and s.kind in ("bool", "str", "range"):
        return SCHEMA.check(spec, value)
    if s.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"'{key}' must be true or false, not {value!r}.")
        return value
    if s.kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"'{key}' must be text, not {value!r}.")
        if len(value) > MAX_TEXT:
            raise ValueError(f"'{key}' must be at most {MAX_TEXT} characters long; it has {len(value)}.")
        return value
    if s.kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"'{key}' must be text, not {value!r}.")
        if s.options is not None and value not in s.options:
            raise ValueError(f"'{key}' must be one of {', '.join(map(str, s.options))}; got {value!r}.")
        return value
    if s.kind == "range":
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_num(v) for v in value):
            raise ValueError(f"'{key}' must be a pair of numbers [low, high], not {value!r}.")
        lo, hi = float(value[0]), float(value[1])
        if not (s.low <= lo <= hi <= s.high):
            raise ValueError(f"'{key}' must satisfy {s.low:g} <= low <= high <= {s.high:g}; got [{lo:g}, {hi:g}].")
        return (lo, hi)
    if not _num(value):
        raise ValueError(f"'{key}' must be a number, not {value!r}.")
    if s.kind == "int":
        if float(value) != int(value):
            raise ValueError(f"'{key}' must be a whole number, not {value!r}.")
        value = int(value)
    else:
        value = float(value)
    if spec is not None:
        value = SCHEMA.check(spec, value)  # core's bounds, core's sentence
    elif s.low is not None and not (s.low <= value <= s.high):
        raise ValueError(SCHEMA.bounds_sentence(key, value, s.low, s.high))
    if s.options is not None:
        match = [o for o in s.options if math.isclose(float(o), float(value), rel_tol=1e-9, abs_tol=1e-12)]
        if not match:
            raise ValueError(f"'{key}' must be one of {', '.join(f'{o:g}' for o in s.options)}; got {value:g}.")
        return match[0]
    return value


def validate(values: Mapping[str, Any], namespaces: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Coerce every value. Returns (good values, problems); keys outside ``namespaces`` are problems too."""
    allowed = set(keys(namespaces))
    good: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in values.items():
        if key not in allowed:
            problems.append(f"'{key}' is not a setting of this page.")
            continue
        try:
            good[key] = coerce(key, value)
        except ValueError as err:
            problems.append(str(err))
    return good, problems


# ------------------------------------------------------------------------------------------ URLs
def to_url(key: str, value: Any) -> str:
    """A setting's value as it appears in a link: values, never labels (``train.steps=5000``,
    ``train.arch=small_cnn``, ``aug.crop_scale=0.3,1``, ``aug.flip=false``)."""
    s = SETTINGS[key]
    value = coerce(key, value)
    if s.kind == "bool":
        return "true" if value else "false"
    if s.kind == "range":
        return ",".join(format(v, ".10g") for v in value)
    if s.kind == "float":
        return format(value, ".10g")
    return str(value)


def from_url(key: str, raw: str | Sequence[str]) -> Any:
    """Parse a link's value (as :func:`to_url` writes it, or typed by hand: ``5,000``, ``True``, ``0.30``) and
    check it with :func:`coerce`. Raises ``ValueError`` with a sentence naming the setting."""
    s = SETTINGS.get(key)
    if s is None:
        raise ValueError(f"'{key}' is not a setting of this app.")
    parts = [raw] if isinstance(raw, str) else list(raw)
    if s.kind == "range":
        if len(parts) == 1:
            parts = parts[0].split(",")
        try:
            return coerce(key, [float(p.strip()) for p in parts])
        except ValueError as err:
            raise ValueError(f"'{key}' in the link must be two numbers 'low,high': {err}") from None
    if s.kind == "text":
        return coerce(key, parts[-1])  # as typed: spaces and line breaks are part of a query
    text = parts[-1].strip()
    if s.kind == "bool":
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"'{key}' in the link must be true or false, not {text!r}.")
    if s.kind == "str":
        if s.options is not None:  # accept any capitalisation of an allowed value
            match = [o for o in s.options if o.lower() == text.lower()]
            text = match[0] if match else text
        return coerce(key, text)
    try:
        number = float(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise ValueError(f"'{key}' in the link must be a number, not {text!r}.") from None
    if s.kind == "int" and number.is_integer():
        number = int(number)
    return coerce(key, number)


def url_params(values: Mapping[str, Any]) -> dict[str, str]:
    """The link parameters for ``values``: every setting that differs from its default, as :func:`to_url`."""
    out = {}
    for key, value in values.items():
        if key not in SETTINGS:
            continue
        try:
            value = coerce(key, value)
        except ValueError:
            continue  # an impossible value is not written into a link
        if value != coerce(key, SETTINGS[key].default):
            out[key] = to_url(key, value)
    return out


# ------------------------------------------------------------------------------------------ JSON files
def to_json(values: Mapping[str, Any], *, page: str) -> str:
    """A settings file a teacher can share: ``{"format", "page", "settings"}`` with JSON-safe values."""
    clean = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return json.dumps({"format": SETTINGS_FORMAT, "page": page, "settings": clean}, indent=2)


def from_json(data: bytes | str, *, namespaces: Iterable[str]) -> dict[str, Any]:
    """Parse and validate a settings file. Raises ``ValueError`` naming every problem; applies nothing."""
    if isinstance(data, bytes):
        if len(data) > 1_000_000:
            raise ValueError("That settings file is larger than 1 MB; a settings file is a few hundred bytes.")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("That file is not text; choose a .json settings file exported by this app.") from None
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as err:
        raise ValueError(f"That file is not valid JSON ({err.msg} at line {err.lineno}).") from None
    except RecursionError:  # brackets nested thousands deep: Python's decoder gives up
        raise ValueError("That file nests brackets too deeply to be a settings file; choose a .json settings "
                         "file exported by this app.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
        raise ValueError('A settings file is a JSON object with a "settings" object inside, as exported here.')
    good, problems = validate(doc["settings"], namespaces)
    if problems:
        raise ValueError("The settings file was not loaded: " + " ".join(problems))
    return good


def train_config(values: Mapping[str, Any]):
    """The :class:`core.train.TrainConfig` that Train-page settings describe (``"train.*"`` and ``"aug.*"``
    keys; any missing one takes its default), as the page, the benchmarks and the tests build it.

    Raises ``ValueError`` (a PlaygroundError for augmentations) naming an impossible value. Imports torch.
    """
    from core.augment import AugmentConfig
    from core.models import SMALL_ARCHS, EncoderConfig
    from core.train import SUPERVISED, TrainConfig

    def get(key: str) -> Any:
        return values.get(key, default(key))

    def whole(value: Any) -> Any:  # 300.0 from a JSON file is the int 300; core's check refuses fractions
        return int(value) if _num(value) and float(value).is_integer() else value

    # Every TrainConfig field the page shows; TrainConfig checks them against core's bounds (any value inside,
    # not only the page's options: benchmarks and lessons ask for others).
    fields = {spec.field: whole(get(key)) if spec.kind == "int" else get(key)
              for key, spec in SCHEMA.SPECS.items() if key.startswith("train.") and spec.page}
    method, arch = fields["method"], get("train.arch")
    label = get("train.label_factor") if method in SUPERVISED else ""
    aug = {k[4:]: list(v) if isinstance(v, tuple) else v for k in keys(["aug"]) for v in [get(k)]}
    return TrainConfig(
        **fields,
        encoder=EncoderConfig(arch=arch, width=int(get("train.width")) if arch in SMALL_ARCHS
                              else EncoderConfig().width, projection_dim=fields["projection_dim"]),
        label_factor=label or None,
        clip_model=(get("train.clip_model") or None) if method == "clip" else None,
        augment=AugmentConfig.from_dict(aug),
    )


def toy_config(values: Mapping[str, Any], **extra: Any):
    """The :class:`core.lab.ToyConfig` that Loss Lab settings describe (``"loss_lab.*"`` keys; any missing one takes
    its default); ``extra`` sets fields the page does not show (``pace``). Raises a PlaygroundError naming a bad
    value, with the sentence a link gets. Imports torch."""
    from core.lab import ToyConfig

    fields = {spec.field: values.get(key, default(key)) for key, spec in SCHEMA.SPECS.items()
              if key.startswith("loss_lab.") and spec.page}
    return ToyConfig(**fields, **extra)
