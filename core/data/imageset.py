"""The one in-memory dataset type, :class:`ImageSet`, and what a checkpoint records about one (never a path).

An ImageSet is uint8 images (N, 3, H, W) with one or more label factors, maybe captions, and the ``spec`` that
rebuilds it. Its identity is a built-in's spec, or for data a user brings the content's :func:`fingerprint`, so a
checkpoint can ask for "the same data" and check it was given (:func:`same_data`) without naming a file.
:func:`heldout_stratify` picks how a run's held-out split keeps classes.
"""
from __future__ import annotations

import hashlib
import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.data import limits
from core.device import pick_device

__all__ = ["ImageSet", "OFFLINE_DATASETS", "DOWNLOAD_DATASETS", "OWN_DATA", "fingerprint", "safe_title",
           "dataset_identity", "describe_identity", "same_data", "heldout_stratify", "dataset_identity_is_builtin"]

# The built-in names a spec may carry: a set under one of these is recorded by its spec, anything else by content.
OFFLINE_DATASETS = ("shapes", "digits", "photos")
DOWNLOAD_DATASETS = ("cifar10", "mnist", "fashion_mnist", "stl10")


@dataclass(eq=False)
class ImageSet:
    """A labelled image dataset held in memory.

    ``images`` Shape: (N, 3, H, W), uint8, on the CPU, H == W. Grey data is repeated to RGB.
    ``labels[factor]`` Shape: (N,), int64 indices into ``classes[factor]``. The first factor is the
    main one (the one supervised methods and kNN accuracy use by default).

    >>> s = load_dataset("shapes", n=100)
    >>> s.images.shape, s.factors[:2], s.captions[0]  # doctest: +SKIP
    (torch.Size([100, 3, 32, 32]), ['shape', 'colour'], 'a small red triangle at the top left')
    """

    images: torch.Tensor  # uint8 (N, 3, H, W) on the CPU
    labels: dict[str, np.ndarray]  # factor -> int64 (N,)
    classes: dict[str, list[str]]  # factor -> class names
    name: str  # "shapes", "digits", "photos", a folder name, ...
    captions: list[str] | None = None  # one caption per image (CLIP-style training)
    caption_pool: list[list[str]] | None = None  # per image: alternative captions, one sampled per step
    ids: list[str] | None = None  # stable per-image id; defaults to str(index)
    spec: dict | None = None  # {"name": ..., "options": {...}}: load_dataset(name, **options) rebuilds it
    skipped: int = 0  # files left out while loading (unreadable, too large, not images)
    notes: list[str] = field(default_factory=list)  # sentences about what loading left out or capped
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (file, why) for every file left out

    def __post_init__(self) -> None:
        images = self.images
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, torch.Tensor):
            raise ValueError(
                f"ImageSet.images must be a uint8 torch.Tensor (N, 3, H, W), not {type(images).__name__}."
            )
        if images.dtype != torch.uint8:
            raise ValueError(f"ImageSet.images must have dtype uint8 (values 0-255), not {images.dtype}.")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"ImageSet.images must have shape (N, 3, H, W) with 3 colour channels, not {tuple(images.shape)}."
            )
        if images.shape[2] != images.shape[3] or images.shape[2] < 1:
            raise ValueError(
                f"ImageSet images must be square (H == W >= 1), not {images.shape[2]} x {images.shape[3]}."
            )
        self.images = images.cpu().contiguous()
        n = int(images.shape[0])

        if not isinstance(self.labels, dict) or not self.labels:
            raise ValueError("ImageSet.labels must be a non-empty dict of factor name -> label array.")
        if not isinstance(self.classes, dict) or set(self.classes) != set(self.labels):
            raise ValueError(
                f"ImageSet.classes must name the classes of exactly the label factors {list(self.labels)}, "
                f"not {list(self.classes) if isinstance(self.classes, dict) else self.classes!r}."
            )
        labels: dict[str, np.ndarray] = {}
        classes: dict[str, list[str]] = {}
        for factor, values in self.labels.items():
            names = [str(c) for c in self.classes[factor]]
            if not names:
                raise ValueError(f"Factor {factor!r} has no class names.")
            arr = np.asarray(values)
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"Labels for {factor!r} must have shape ({n},), one per image, not {arr.shape}.")
            if n and arr.dtype.kind not in "iu":
                raise ValueError(f"Labels for {factor!r} must be integers, not {arr.dtype}.")
            arr = arr.astype(np.int64, copy=False)
            if n and (arr.min() < 0 or arr.max() >= len(names)):
                raise ValueError(
                    f"Labels for {factor!r} must lie in 0..{len(names) - 1} (its {len(names)} classes), "
                    f"found {arr.min()}..{arr.max()}."
                )
            labels[str(factor)] = arr
            classes[str(factor)] = names
        self.labels, self.classes = labels, classes

        if self.captions is not None:
            if len(self.captions) != n:
                raise ValueError(
                    f"ImageSet needs one caption per image: {n} images but {len(self.captions)} captions."
                )
            self.captions = [str(c) for c in self.captions]
        if self.caption_pool is not None:
            if len(self.caption_pool) != n:
                raise ValueError(
                    f"ImageSet.caption_pool needs one list per image: {n} images but {len(self.caption_pool)} lists."
                )
            if any(not pool for pool in self.caption_pool):
                raise ValueError("Every caption_pool entry must hold at least one caption.")
        if self.ids is None:
            self.ids = [str(i) for i in range(n)]
        elif len(self.ids) != n:
            raise ValueError(f"ImageSet needs one id per image: {n} images but {len(self.ids)} ids.")
        else:
            self.ids = [str(i) for i in self.ids]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageSet(name={self.name!r}, n={len(self)}, size={self.image_size}, factors={self.factors}, "
            f"captions={self.captions is not None}, skipped={self.skipped})"
        )

    @property
    def factors(self) -> list[str]:
        """Label factor names in order; the first is the main factor."""
        return list(self.labels)

    @property
    def image_size(self) -> int:
        """H (== W) in pixels."""
        return int(self.images.shape[2])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageSet:
        """The images at ``indices`` (ints in 0..N-1, or a boolean mask of length N), in that order.

        ``spec`` is kept as it is: it names the dataset the subset was taken from.
        """
        idx = _as_indices(indices, len(self))
        spec = None if self.spec is None else dict(self.spec)
        return ImageSet(
            images=self.images[torch.from_numpy(idx)],
            labels={f: a[idx] for f, a in self.labels.items()},
            classes={f: list(c) for f, c in self.classes.items()},
            name=self.name,
            captions=None if self.captions is None else [self.captions[i] for i in idx],
            caption_pool=None if self.caption_pool is None else [list(self.caption_pool[i]) for i in idx],
            ids=[self.ids[i] for i in idx],  # type: ignore[index]
            spec=spec,
            skipped=self.skipped,
            notes=list(self.notes),
            skipped_files=list(self.skipped_files),
        )

    def split(
        self, test_fraction: float = 0.2, seed: int = 0, stratify: str | None = None
    ) -> tuple[ImageSet, ImageSet]:
        """A seeded (train, test) split; both keep the original order of their images.

        With ``stratify`` (a factor name) each class is split in the same proportion; a class with a
        single image stays in train.
        """
        n = len(self)
        if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, not {test_fraction!r}.")
        if n < 2:
            raise ValueError(f"Splitting needs at least 2 images; {self.name!r} has {n}.")
        rng = np.random.default_rng(seed)
        if stratify is None:
            n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
            test = rng.permutation(n)[:n_test]
        else:
            if stratify not in self.labels:
                raise ValueError(f"Cannot stratify by {stratify!r}; the factors are {', '.join(self.factors)}.")
            lab = self.labels[stratify]
            parts = []
            for c in np.unique(lab):
                members = np.flatnonzero(lab == c)
                rng.shuffle(members)
                k = min(int(round(len(members) * test_fraction)), len(members) - 1)
                parts.append(members[:k])
            test = np.concatenate(parts)
            if test.size == 0:  # every class too small to give one away: fall back to a plain split
                test = rng.permutation(n)[:1]
        is_test = np.zeros(n, dtype=bool)
        is_test[test] = True
        return self.subset(np.flatnonzero(~is_test)), self.subset(np.flatnonzero(is_test))

    def to_float(self, device: torch.device | str | None = None) -> torch.Tensor:
        """float32 in [0, 1] on ``device`` (default :func:`pick_device`). Shape: (N, 3, H, W).

        Moves the uint8 tensor first (4x less to copy), then converts on the device.
        """
        device = pick_device() if device is None else torch.device(device)
        return self.images.to(device).float().div_(255.0)


def _as_indices(indices: Any, n: int) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"A boolean mask must have length {n}, not {idx.shape}.")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ValueError(f"Indices must be a 1-D array of integers or a boolean mask, not {idx.dtype} {idx.shape}.")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"Indices must lie in 0..{n - 1}; found {idx.min()}..{idx.max()}.")
    return idx.astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------
# Identity: what a checkpoint records about its data (never a path)
# ---------------------------------------------------------------------------------------------
OWN_DATA = "own"  # dataset_identity's "name" for anything that is not a built-in dataset
_FINGERPRINTS: "weakref.WeakKeyDictionary[ImageSet, str]" = weakref.WeakKeyDictionary()


def fingerprint(ds: ImageSet) -> str:
    """sha256 (hex) of the decoded images, their labels and class names: the data's name by content.

    The same files decoded at the same size give the same fingerprint wherever they were loaded (an upload in
    the app, ``core.cli train --dataset x.zip``); a different size, one image more or one label changed give
    another. Computed once per ImageSet (its images are never modified in place).
    """
    known = _FINGERPRINTS.get(ds)
    if known is not None:
        return known
    h = hashlib.sha256()
    head = {"shape": list(ds.images.shape), "classes": ds.classes}
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(memoryview(ds.images.contiguous().numpy()).cast("B"))
    for f in ds.factors:
        h.update(np.ascontiguousarray(ds.labels[f], dtype="<i8").tobytes())
    digest = h.hexdigest()
    _FINGERPRINTS[ds] = digest
    return digest


def safe_title(name: str) -> str:
    """A dataset name fit to show and to store: letters, digits, space, ``._-()``, at most 60 characters."""
    clean = re.sub(r"[^A-Za-z0-9 ._()-]+", "_", str(name)).strip(" ._") or "your images"
    return clean[:60]


def dataset_identity(ds: ImageSet) -> dict[str, Any]:
    """What a checkpoint records about ``ds``: a built-in's spec, or the data's fingerprint, never a path.

    Built-in offline and downloadable sets give their spec (a download's cache folder is dropped); anything
    else (a folder, a .zip, an upload) gives ``{"name": "own", "title", "fingerprint", "n", "size", "classes"}``
    so that whoever opens the checkpoint can be asked for that data and told whether what they give is it.
    """
    spec = ds.spec if isinstance(ds.spec, dict) else {}
    name = spec.get("name")
    if name in OFFLINE_DATASETS + DOWNLOAD_DATASETS and name == ds.name:
        options = {k: v for k, v in dict(spec.get("options") or {}).items() if k != "root"}
        return {"name": name, "options": options}
    return {
        "name": OWN_DATA,
        "title": safe_title(ds.name),
        "fingerprint": fingerprint(ds),
        "n": len(ds),
        "size": ds.image_size,
        "classes": {f: [str(c)[:60] for c in names[:100]] for f, names in ds.classes.items()},
    }


def describe_identity(identity: object) -> str:
    """A checkpoint's own-data identity in words, e.g. 'your own images "icons" (359 images of 32 px, 5 classes,
    fingerprint 1a2b3c4d5e6f)'. The identity comes from a file: every field is checked before it is shown."""
    d = identity if isinstance(identity, dict) else {}
    title = safe_title(d.get("title", "")) if isinstance(d.get("title"), str) else "your images"
    parts = []
    n, size = d.get("n"), d.get("size")
    if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= limits.MAX_IMAGES:
        parts.append(f"{n:,} images" + (f" of {size} px" if isinstance(size, int) and 0 < size <= 4096 else ""))
    classes = d.get("classes")
    if isinstance(classes, dict) and classes and isinstance(next(iter(classes.values())), list):
        parts.append(f"{len(next(iter(classes.values())))} classes")
    fp = d.get("fingerprint")
    if isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{64}", fp):
        parts.append(f"fingerprint {fp[:12]}")
    return f'your own images "{title}"' + (f" ({', '.join(parts)})" if parts else "")


def same_data(identity: object, ds: ImageSet) -> bool:
    """True when ``ds`` is the data ``identity`` (from :func:`dataset_identity`, maybe read from a file) names."""
    if not isinstance(identity, dict):
        return False
    mine = dataset_identity(ds)
    if identity.get("name") == OWN_DATA:
        return mine.get("name") == OWN_DATA and identity.get("fingerprint") == mine["fingerprint"]
    return mine == {"name": identity.get("name"), "options": identity.get("options") or {}}


def heldout_stratify(ds: ImageSet) -> str | None:
    """The factor a training run's held-out split should keep every class of: the main one for data a user
    brings (few images, uneven classes), None (a plain seeded split, as measured so far) for built-ins."""
    return None if dataset_identity_is_builtin(ds) else ds.factors[0]


def dataset_identity_is_builtin(ds: ImageSet) -> bool:
    spec = ds.spec if isinstance(ds.spec, dict) else {}
    return spec.get("name") in OFFLINE_DATASETS + DOWNLOAD_DATASETS and spec.get("name") == ds.name
