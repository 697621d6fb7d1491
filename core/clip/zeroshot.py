"""Zero-shot classification: the classifier of ``open_clip.build_zero_shot_classifier`` (normalise per template,
average, renormalise), its ``scale * image @ W`` logits, accuracy with scikit-learn, and the named class-name
and template presets (open_clip's ``zero_shot_metadata``)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.clip.embed import MAX_TEXTS, ProgressFn, embed_images, embed_texts
from core.clip.load import ClipBundle
from core.errors import PlaygroundError

OPENAI_LOGIT_SCALE = 100.0  # the scale of open_clip's zero-shot evaluation (exp of CLIP's learned 4.6052)


# ------------------------------------------------------------------------------------------ zero-shot
@dataclass
class ZeroShotWeights:
    """A zero-shot classifier: ``weights`` (D, C), columns are unit class embeddings, as returned by
    ``open_clip.build_zero_shot_classifier``. ``per_template`` (T, C, D): each template's unit text
    embedding, kept so a single-template classifier (:meth:`single`) costs nothing extra."""

    weights: np.ndarray
    per_template: np.ndarray
    classnames: list[str]
    templates: list[str]

    def single(self, t: int = 0) -> "ZeroShotWeights":
        """The classifier from template ``t`` alone (the baseline for the ensembling gain)."""
        w = self.per_template[t]  # (C, D), unit rows already
        return ZeroShotWeights(np.ascontiguousarray(w.T), self.per_template[t:t + 1], self.classnames,
                               [self.templates[t]])


MAX_TEMPLATE_CHARS = 300  # CLIP reads 77 tokens; a longer template only costs memory


def _check_templates(templates: Sequence[str]) -> list[str]:
    """Templates as given, once each is known to be safe to ``format``: plain ``{}`` (or ``{0}``) fields only.

    ``str.format`` would run a format spec (``{:>200000000}`` builds a 200 MB string) or an attribute or index
    lookup (``{0.__class__}``) taken from user text, so those are refused before anything is formatted, as is a
    template with no field at all, which would give every class the same prompt and every image equal scores.
    """
    import string

    if isinstance(templates, str):
        templates = [templates]
    out = [str(t).strip() for t in templates if str(t).strip()]
    if not out:
        raise PlaygroundError("Give at least one prompt template, e.g. 'a photo of a {}.'.")
    for t in out:
        if len(t) > MAX_TEMPLATE_CHARS:
            raise PlaygroundError(f"A template may be at most {MAX_TEMPLATE_CHARS} characters; one has {len(t)}.")
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(t) if name is not None]
        except ValueError:
            fields = None
        if fields is None or any(name not in ("", "0") or spec or conv for name, spec, conv in fields):
            raise PlaygroundError(
                f"The template {t!r} is not a plain template: use '{{}}' where the class name goes (no format "
                "specs or other fields), and '{{' / '}}' for a literal brace."
            )
        if not fields:
            raise PlaygroundError(
                f"The template {t!r} has no '{{}}' for the class name, so every class would get the same prompt "
                "and the same score. Put '{}' where the class name goes."
            )
        try:
            t.format("x")  # only plain fields are left: this cannot grow beyond the name's length
        except (IndexError, ValueError):
            raise PlaygroundError(f"The template {t!r} mixes '{{}}' and '{{0}}'; use '{{}}' for the class name.") from None
    return out


def zero_shot_weights(bundle: ClipBundle, classnames: Sequence[str], templates: Sequence[str] = ("{}",),
                      *, progress: ProgressFn | None = None) -> ZeroShotWeights:
    """Class embeddings for zero-shot classification, the way ``open_clip.build_zero_shot_classifier`` makes
    them (Radford et al. 2021, prompt ensembling): each ``template.format(name)`` is embedded and
    L2-normalised, the T templates of a class are averaged, and the mean is renormalised.
    Shape: C class names x T templates -> weights (D, C).
    """
    names = [str(c).strip() for c in classnames if str(c).strip()]
    if len(names) < 2:
        raise PlaygroundError("Zero-shot classification needs at least two class names.")
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise PlaygroundError(f"The class name {dup!r} is given twice; each class needs its own name.")
    temps = _check_templates(templates)
    if len(names) * len(temps) > MAX_TEXTS:
        raise PlaygroundError(f"{len(names)} classes x {len(temps)} templates is more than {MAX_TEXTS} prompts.")
    prompts = [t.format(c) for c in names for t in temps]  # class-major, as open_clip orders them
    emb = embed_texts(bundle, prompts, progress=progress).reshape(len(names), len(temps), -1)  # (C, T, D)
    mean = emb.mean(axis=1)
    weights = mean / np.linalg.norm(mean, axis=1, keepdims=True)  # (C, D)
    return ZeroShotWeights(np.ascontiguousarray(weights.T, dtype=np.float32),
                           np.ascontiguousarray(emb.transpose(1, 0, 2)), names, temps)


@dataclass
class ZeroShotResult:
    """``logits`` (N, C) = ``logit_scale * image @ W``; ``probs`` their softmax; ``features`` (N, D)."""

    logits: np.ndarray
    probs: np.ndarray
    features: np.ndarray
    logit_scale: float

    def top_k(self, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(indices, probabilities), each (N, k), most probable first."""
        k = max(1, min(int(k), self.probs.shape[1]))
        idx = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(self.probs, idx, axis=1)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


def zero_shot(bundle: ClipBundle, images_or_features: Any, weights: ZeroShotWeights | np.ndarray, *,
              logit_scale: float = OPENAI_LOGIT_SCALE, progress: ProgressFn | None = None) -> ZeroShotResult:
    """Zero-shot logits as open_clip's evaluation computes them: ``logit_scale * image_features @ W``
    (default scale 100). ``images_or_features``: images (anything :func:`embed_images` takes) or unit image
    features (N, D). Shape: -> logits (N, C)."""
    if not (isinstance(logit_scale, (int, float)) and math.isfinite(logit_scale) and logit_scale > 0):
        raise PlaygroundError(f"logit_scale must be a positive number (CLIP uses 100), got {logit_scale!r}.")
    w = weights.weights if isinstance(weights, ZeroShotWeights) else np.asarray(weights, dtype=np.float32)
    if isinstance(images_or_features, np.ndarray) and images_or_features.ndim == 2 \
            and images_or_features.dtype != np.uint8:
        feats = np.asarray(images_or_features, dtype=np.float32)
    else:
        feats = embed_images(bundle, images_or_features, progress=progress)
    if feats.shape[1] != w.shape[0]:
        raise PlaygroundError(f"Image features have {feats.shape[1]} dimensions but the classifier {w.shape[0]}.")
    logits = (float(logit_scale) * torch.from_numpy(feats) @ torch.from_numpy(np.ascontiguousarray(w))).numpy()
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    return ZeroShotResult(logits, probs, feats, float(logit_scale))


def accuracy_report(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall; NaN for a class with no images) and the confusion matrix
    (rows: true class, columns: predicted), from scikit-learn."""
    from sklearn.metrics import confusion_matrix

    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    cm = confusion_matrix(labels, predictions, labels=np.arange(n_classes))
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return {"accuracy": float((predictions == labels).mean()) if len(labels) else float("nan"),
            "per_class": per_class, "confusion": cm, "support": support}


def worst_confusion(confusion: np.ndarray) -> tuple[int, int]:
    """(true, predicted) of the largest off-diagonal cell of a confusion matrix: the most frequent mistake
    (row-major first on ties; (0, 0) when there is no mistake). Shape: (C, C) -> two class indices."""
    off = np.array(confusion, copy=True)
    np.fill_diagonal(off, 0)
    t, p = np.unravel_index(int(off.argmax()), off.shape)
    return int(t), int(p)


def cell_images(labels: np.ndarray, predictions: np.ndarray, true_class: int, predicted_class: int) -> np.ndarray:
    """Indices of the images of ``true_class`` classified as ``predicted_class`` (one confusion-matrix cell).
    Shape: (N,), (N,) -> (k,) ascending."""
    return np.flatnonzero((np.asarray(labels) == true_class) & (np.asarray(predictions) == predicted_class))


def parse_classnames(text: str) -> list[str]:
    """Class names typed one per line or comma-separated, stripped, empty ones dropped."""
    return [c.strip() for part in str(text).splitlines() for c in part.split(",") if c.strip()]


# ------------------------------------------------------------------------------------------ presets
# CIFAR-10's class names (torchvision reads them from the downloaded archive, so they are listed here).
CIFAR10_CLASSNAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def classname_presets() -> dict[str, list[str]]:
    """Named class-name lists: the built-in shapes' factors, CIFAR-10, and ImageNet from open_clip."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from core.data import SHAPE_FACTORS

    return {
        "Shapes: shape": list(SHAPE_FACTORS["shape"]),
        "Shapes: colour": list(SHAPE_FACTORS["colour"]),
        "CIFAR-10": list(CIFAR10_CLASSNAMES),
        "ImageNet (1,000)": list(IMAGENET_CLASSNAMES),
    }


def template_set(name: str) -> list[str]:
    """Prompt templates by name: "one" (``"a photo of a {}."``), "simple" (open_clip's SIMPLE_IMAGENET
    templates) or "openai" (the 80 OpenAI ImageNet templates), as format strings."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    probe = "\x00"
    if name == "one":
        return ["a photo of a {}."]
    table = {"simple": SIMPLE_IMAGENET_TEMPLATES, "openai": OPENAI_IMAGENET_TEMPLATES}
    if name not in table:
        raise PlaygroundError(f"Unknown template set {name!r}; choose one, simple or openai.")
    # open_clip stores them as callables (lambda c: f"a photo of a {c}."): turned into format strings here.
    return [t(probe).replace("{", "{{").replace("}", "}}").replace(probe, "{}") for t in table[name]]
