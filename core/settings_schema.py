"""The one declaration of every training and augmentation setting: key, default, bounds or choices, label, help.

Two readers, one source: :class:`core.train.TrainConfig`, :class:`core.augment.AugmentConfig` and the Loss
Lab's :class:`core.lab.ToyConfig` check their fields with :func:`check` against these specs, and the app's settings
table (``ui.settings``) builds its ``train.*``, ``aug.*`` and ``loss_lab.*`` entries from them. So a bound, a choice or a default is written once, and a value out
of bounds gets the same sentence from a link, a settings file, a course step and ``TrainConfig(...)``.

No torch, no numpy here: ``ui.settings`` imports this on the app's start path, and Home must open fast. The
method keys are therefore listed here by hand; :mod:`core.methods` checks at import that its registered
classes match them, so a new method cannot be left out of the page.

>>> check(SPECS["train.temperature"], 0.5)
0.5
>>> check(SPECS["aug.hue"], 0.9)
Traceback (most recent call last):
...
ValueError: 'aug.hue' must be between 0 and 0.5; got 0.9.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = ["Spec", "SPECS", "TRAIN", "AUGMENT", "TOY", "METHOD_NAMES", "MINING", "LR_SCHEDULES", "PRECISIONS",
           "TOY_LOSSES", "LAB_PRESETS", "TEXT_INDEXES", "SHAPES_RECIPE", "DEFAULT_DATASET", "check", "declared",
           "page_default", "bounds_sentence"]


@dataclass(frozen=True)
class Spec:
    """One setting of a config dataclass.

    ``key`` is ``"<namespace>.<field>"`` (``"train.temperature"``): the URL parameter, the widget key and the
    name every error sentence gives. ``kind`` is "bool", "int", "float", "str" or "range" (a (low, high) pair).
    ``options``: for "str", the accepted values; for numbers, the values the page offers on its select slider
    (the config accepts anything within ``[low, high]``; each option lies inside). ``page=False``: a field the
    config checks but the page does not show.
    """

    key: str
    kind: str
    default: Any  # the dataclass's own default (the page's may differ: page_default)
    low: float | None = None
    high: float | None = None
    options: tuple | None = None
    label: str = ""
    help: str = ""
    page: bool = True
    name: str = ""  # the dataclass field, when it differs from the key's last part (loss_lab.batch: batch_size)

    @property
    def field(self) -> str:
        return self.name or self.key.split(".", 1)[1]

    def __post_init__(self) -> None:  # a declaration error is the developer's, found at import
        if self.kind in ("int", "float", "range") and self.options is not None:
            outside = [o for o in self.options if not self.low <= o <= self.high]
            if outside:
                raise ValueError(f"{self.key}: options {outside} lie outside [{self.low}, {self.high}].")


# ------------------------------------------------------------------------------------------ choices
# The training methods in the app's order, with their display names. core.methods asserts at import that its
# registered Method classes are exactly these (a torch-free copy, so the start path need not import them).
METHOD_NAMES: dict[str, str] = {
    "simclr": "SimCLR (NT-Xent)",
    "moco": "MoCo (InfoNCE + queue)",
    "triplet": "Triplet",
    "margin": "Margin contrastive",
    "supcon": "SupCon",
    "clip": "CLIP-style (image-text)",
    "vicreg": "VICReg (no negatives)",
}
MINING = ("all", "hard", "semihard")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")  # auto: core.device.resolve_precision

_TRAIN: list[Spec] = [
    # Shown on the Train page (in the table's order there, ui.settings).
    Spec("train.method", "str", "simclr", options=tuple(METHOD_NAMES), label="Method"),
    Spec("train.projection_dim", "int", 64, 2, 1024, options=(8, 16, 32, 64, 128, 256), label="Projection size",
      help="Size of the vector the loss sees (z)."),
    Spec("train.batch_size", "int", 256, 4, 1024, options=(16, 32, 64, 128, 256, 512), label="Batch size",
      help="Images per step. Contrastive losses use the rest of the batch as negatives, so bigger batches help."),
    Spec("train.temperature", "float", 0.2, 1e-4, 10.0,
      options=(0.001, 0.005, 0.01, 0.02, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0), label="Temperature",
      help="Divides the similarities before the softmax. Low: the loss focuses on the hardest negatives."),
    Spec("train.lr", "float", 2e-3, 1e-7, 1.0, options=(1e-4, 3e-4, 1e-3, 2e-3, 4e-3, 5e-3, 6e-3, 1e-2, 3e-2, 1e-1),
      label="Learning rate"),
    Spec("train.precision", "str", "fp32", options=PRECISIONS, label="Precision",
      help="auto: bf16 on CPUs where it trained faster (bf16 in hardware with AMX or AVX512-FP16, as Intel's "
           "since Sapphire Rapids), else fp32. bf16 halves the bits of each number in the forward pass; the loss "
           "curve stays within noise of fp32."),
    Spec("train.steps", "int", 200, 1, 100_000, options=(5, 10, 25, 50, 100, 150, 200, 300, 500, 1000, 2000, 5000),
      label="Steps"),
    # The number input's upper end is the config's bound: any seed a checkpoint may carry can be typed back.
    Spec("train.seed", "int", 0, 0, 2**31 - 1, label="Seed", help="Same seed and settings give the same run."),
    Spec("train.queue_size", "int", 4096, 0, 65_536, options=(0, 256, 1024, 4096, 16384), label="Queue of negatives",
      help="MoCo keeps keys of earlier batches as negatives."),
    Spec("train.momentum", "float", 0.99, 0.0, 0.9999, options=(0.9, 0.95, 0.99, 0.995, 0.999),
      label="Key-encoder momentum", help="MoCo's key encoder is a slow moving average of the trained encoder."),
    Spec("train.mining", "str", "semihard", options=MINING, label="Triplet mining"),
    # Distances between unit vectors lie in [0, 2].
    Spec("train.margin", "float", 0.5, 0.0, 2.0, label="Margin",
      help="How far apart (on the unit sphere) negatives must be pushed."),
    # Checked by TrainConfig only (a checkpoint's metadata, a benchmark): bounds keep memory and time finite.
    Spec("train.weight_decay", "float", 1e-5, 0.0, 1.0, page=False),
    Spec("train.warmup_steps", "int", 10, 0, 10_000, page=False),
    Spec("train.snapshot_every", "int", 10, 1, 10**9, page=False),  # large values switch snapshots off
    Spec("train.eval_every", "int", 25, 1, 10**9, page=False),
    Spec("train.probe_size", "int", 400, 10, 5_000, page=False),
    Spec("train.heldout_fraction", "float", 0.2, 0.01, 0.9, page=False),
    Spec("train.knn_k", "int", 10, 1, 200, page=False),
    Spec("train.knn_reference", "int", 2000, 10, 20_000, page=False),
    Spec("train.lr_schedule", "str", "constant", options=LR_SCHEDULES, page=False),
]

_PROB = dict(low=0.0, high=1.0, label="How often (probability)")
_AUGMENT: list[Spec] = [
    Spec("aug.crop", "bool", True, label="Random crop", help="Crop a random part of the image and resize it back."),
    Spec("aug.crop_scale", "range", (0.2, 1.0), 0.05, 1.0, label="Crop size (fraction of the area)"),
    Spec("aug.flip", "bool", True, label="Horizontal flip", help="Mirror the image left-right half of the time."),
    Spec("aug.rotation", "bool", False, label="Rotation"),
    Spec("aug.rotation_degrees", "float", 15.0, 0.0, 180.0, label="Largest angle (degrees)"),
    Spec("aug.color_jitter", "bool", True, label="Colour jitter",
      help="Randomly change brightness, contrast, saturation, hue."),
    Spec("aug.brightness", "float", 0.4, 0.0, 2.0, label="Brightness"),
    Spec("aug.contrast", "float", 0.4, 0.0, 2.0, label="Contrast"),
    Spec("aug.saturation", "float", 0.4, 0.0, 2.0, label="Saturation"),
    Spec("aug.hue", "float", 0.1, 0.0, 0.5, label="Hue (turns of the colour wheel)"),
    Spec("aug.jitter_p", "float", 0.8, **_PROB),
    Spec("aug.grayscale", "bool", True, label="Greyscale", help="Drop the colour entirely, some of the time."),
    Spec("aug.grayscale_p", "float", 0.2, **_PROB),
    Spec("aug.blur", "bool", False, label="Gaussian blur"),
    Spec("aug.blur_sigma", "range", (0.1, 2.0), 0.1, 5.0, label="Blur sigma (pixels)"),
    Spec("aug.blur_p", "float", 0.5, **_PROB),
    Spec("aug.solarize", "bool", False, label="Solarize", help="Invert the brightest pixels."),
    Spec("aug.solarize_threshold", "float", 0.5, 0.0, 1.0, label="Threshold (pixel value)"),
    Spec("aug.solarize_p", "float", 0.2, **_PROB),
]

# ---- the Loss & Temperature Lab's toy (core.lab.ToyConfig). The loss keys and the experiments' ids are listed
# here by hand for the same reason as METHOD_NAMES; core.lab checks at import that its own tables match them.
TOY_LOSSES = ("nt_xent", "info_nce", "triplet", "margin", "supcon", "vicreg", "align", "invariance",
              "align_uniform")
TEXT_INDEXES = ("exact", "hnsw", "ivf")  # the Text page's search indexes (core.text.INDEX_KINDS checks it)
LAB_PRESETS = ("temperature", "collapse", "color_jitter", "negatives", "head", "shortcut", "no_negatives")

_TOY: list[Spec] = [
    Spec("loss_lab.loss", "str", "nt_xent", options=TOY_LOSSES, label="Loss"),
    Spec("loss_lab.dim", "int", 2, 2, 64, options=(2, 3), label="Where the points live",
      help="The embedding dimension. Real models use 64-2048, but the maths is the same."),
    Spec("loss_lab.temperature", "float", 0.2, 0.01, 10.0, options=(0.05, 0.1, 0.2, 0.5, 1.0),
      label="Temperature τ"),
    Spec("loss_lab.batch", "int", 64, 4, 4096, options=(8, 16, 32, 64, 128, 256), label="Batch size",
      help="Samples per step. NT-Xent's negatives per anchor: 2 × batch − 2.", name="batch_size"),
    Spec("loss_lab.queue", "int", 256, 0, 65_536, options=(16, 64, 256, 1024), label="Negatives in the queue",
      name="queue_size"),
    Spec("loss_lab.mining", "str", "semihard", options=MINING, label="Mining"),
    # distances between unit vectors lie in [0, 2]: a larger margin could never be met
    Spec("loss_lab.margin", "float", 0.5, 0.0, 2.0, label="Margin",
      help="How far apart (on the unit sphere, distances 0-2) negatives must be before they stop being pushed."),
    Spec("loss_lab.noise", "float", 0.5, 0.0, 2.0, label="Augmentation noise",
      help="The two views of a point differ by Gaussian noise of this size: what the model learns to ignore."),
    Spec("loss_lab.steps", "int", 300, 1, 100_000, options=(100, 300, 1000), label="Steps"),
    Spec("loss_lab.seed", "int", 0, 0, 2**31 - 1, label="Seed", help="The same seed gives the same run."),
    # Checked by ToyConfig only (tests, presets): bounds keep a run's memory and time finite.
    Spec("loss_lab.n_classes", "int", 4, 2, 20, page=False),
    Spec("loss_lab.per_class", "int", 64, 2, 1000, page=False),
    Spec("loss_lab.input_dim", "int", 8, 2, 256, page=False),
    Spec("loss_lab.class_spread", "float", 1.5, 0.0, 100.0, page=False),
    Spec("loss_lab.momentum", "float", 0.9, 0.0, 0.9999, page=False),
    Spec("loss_lab.lr", "float", 0.02, 1e-6, 1.0, page=False),
    Spec("loss_lab.eval_every", "int", 5, 1, 10**9, page=False),
    Spec("loss_lab.pace", "float", 0.0, 0.0, 2.0, page=False),  # seconds per step at least, so people can watch
]

TRAIN: dict[str, Spec] = {s.field: s for s in _TRAIN}  # by TrainConfig field name
AUGMENT: dict[str, Spec] = {s.field: s for s in _AUGMENT}  # by AugmentConfig field name
TOY: dict[str, Spec] = {s.field: s for s in _TOY}  # by ToyConfig field name
SPECS: dict[str, Spec] = {s.key: s for s in _TRAIN + _AUGMENT + _TOY}  # by key

# ------------------------------------------------------------------------------------------ page defaults
# Where the pages start differs from the dataclasses' defaults on purpose, and only here:
# - the augmentations start from the built-in shapes' recipe (core.augment.PRESETS["shapes"] is built from
#   these changes to AugmentConfig()): six hues 60 degrees apart survive SimCLR's hue 0.1, so colour stays a
#   shortcut; a full hue turn removes it and crops no smaller than 30% keep the shape in view;
# - the Train page trains in "auto" precision (bf16 where it measured faster), core keeps fp32 so the same
#   arithmetic runs on every host unless asked.
SHAPES_RECIPE: dict[str, Any] = {"crop_scale": (0.3, 1.0), "hue": 0.5}
# The data a run trains on when nothing says otherwise (core.train, the CLI) and the Train page's first choice:
# the built-in shapes, as load_dataset's options.
DEFAULT_DATASET: dict[str, Any] = {"name": "shapes", "options": {"n": 5000, "size": 32, "seed": 0}}
_PAGE_CHANGES: dict[str, Any] = {"train.precision": "auto", **{f"aug.{k}": v for k, v in SHAPES_RECIPE.items()}}


def page_default(key: str) -> Any:
    """Where the page starts for ``key``: the dataclass default, or the declared change above."""
    return _PAGE_CHANGES.get(key, SPECS[key].default)


# ------------------------------------------------------------------------------------------ checking
def _show(value: float) -> str:
    """A bound or value as a sentence writes it: whole numbers with thousands separators, others with %g."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    return f"{float(value):g}"


def bounds_sentence(key: str, value: float, low: float, high: float) -> str:
    """The one sentence for a number out of bounds, whoever checks it (a link, a file, a config)."""
    return f"'{key}' must be between {_show(low)} and {_show(high)}; got {_show(value)}."


def _is_bool(value: Any) -> bool:
    # numpy's bool_ is no bool subclass; recognised by name so this module needs no numpy
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool"))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not _is_bool(value)


def check(spec: Spec, value: Any, error: type[ValueError] = ValueError) -> Any:
    """``value`` checked against ``spec`` and normalised (bool, int, float, str, or a (low, high) float pair).

    The config dataclasses call this on every field; ``ui.settings.coerce`` calls it after parsing a link or a
    file. Numeric options are the page's choices, not a bound: the config accepts anything in [low, high].
    Raises ``error`` (a ``ValueError``) with one sentence naming ``spec.key``.
    """
    key = spec.key
    if spec.kind == "bool":
        if not _is_bool(value):
            raise error(f"'{key}' must be true or false, not {value!r}.")
        return bool(value)
    if spec.kind == "str":
        if not isinstance(value, str) or value not in spec.options:
            raise error(f"'{key}' must be one of {', '.join(spec.options)}; got {value!r}.")
        return value
    if spec.kind == "range":
        if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_number(v) for v in value) \
                or not all(math.isfinite(float(v)) for v in value):
            raise error(f"'{key}' must be a pair of numbers [low, high], not {value!r}.")
        lo, hi = float(value[0]), float(value[1])
        if not spec.low <= lo <= hi <= spec.high:
            raise error(f"'{key}' must satisfy {_show(spec.low)} <= low <= high <= {_show(spec.high)}; "
                        f"got [{lo:g}, {hi:g}].")
        return (lo, hi)
    if spec.kind == "int":
        if not isinstance(value, numbers.Integral) or _is_bool(value):
            raise error(f"'{key}' must be a whole number, not {value!r}.")
        value = int(value)
    else:
        if not _is_number(value) or not math.isfinite(float(value)):
            raise error(f"'{key}' must be a finite number, not {value!r}.")
        value = float(value)
    if not spec.low <= value <= spec.high:
        raise error(bounds_sentence(key, value, spec.low, spec.high))
    return value


def declared(specs: dict[str, Spec]):
    """Class decorator for a config dataclass whose fields ``specs`` declares: at import, every declared field
    must exist with the declared default, so the dataclass and the app's table cannot drift apart (a drift is a
    developer's error and stops the import with a sentence naming the field)."""
    def bind(cls):
        import dataclasses

        have = {f.name: f.default for f in dataclasses.fields(cls)}
        for name, spec in specs.items():
            if name not in have:
                raise RuntimeError(f"{cls.__name__} has no field {name!r}, which core.settings_schema declares.")
            if check(spec, have[name]) != check(spec, spec.default):
                raise RuntimeError(f"{cls.__name__}.{name} defaults to {have[name]!r}; core.settings_schema "
                                   f"declares {spec.default!r}. Change both, or the page and the config differ.")
        return cls
    return bind


for _key, _value in _PAGE_CHANGES.items():  # where the pages start obeys the same bounds (checked at import)
    check(SPECS[_key], _value)
