"""CLIP models through open_clip's own API: loading, image and text embeddings, zero-shot, retrieval.

Nothing here re-implements open_clip: models come from ``open_clip.create_model_and_transforms``,
tokenisers from ``open_clip.get_tokenizer``, preprocessing is the transform open_clip returns, templates and
ImageNet class names come from ``open_clip.zero_shot_metadata``. What this module adds is what the app needs
around it (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"):

- :func:`load_clip` takes one spec string for every source, fails within seconds with no network (open_clip
  alone spends ~45 s in hub retries), and returns a :class:`ClipBundle` (model in eval mode on ``pick_device()``).
- :func:`embed_images` / :func:`embed_texts`: L2-normalised float32 arrays, batched, with progress; image
  embeddings are cached on disk by (model fingerprint, image content hash).
- :func:`zero_shot_weights` / :func:`zero_shot`: the classifier of ``open_clip.build_zero_shot_classifier``
  (normalise per template, average, renormalise) and its ``scale * image @ W`` logits.
- The shipped offline mini-CLIP (``assets/mini_clip``, an open_clip ``local-dir``), trained by this project's
  own :class:`core.train.Trainer` through :func:`build_trainable_clip` and written by :func:`export_local_dir`.

Spec strings understood by :func:`load_clip`:

- ``"mini-clip"``: the shipped model (``assets/mini_clip``);
- ``"local-dir:/path"``: a folder with ``open_clip_config.json`` and ``open_clip_model.safetensors``;
- ``"hf-hub:org/repo"``: an open_clip model on the Hugging Face hub;
- ``"ViT-B-32:laion2b_s34b_b79k"`` (model name and pretrained tag, see ``open_clip.list_pretrained()``), also
  given as ``load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")``;
- ``"ViT-B-32:/path/weights.safetensors"``: a local weights file and the open_clip model name it fits.

open_clip is imported inside the functions, so importing this module costs nothing on the app's start path.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.device import pick_device
from core.errors import DownloadUnavailable, PlaygroundError
from core.hosting import refuse_typed_path

__all__ = [
    "ClipBundle",
    "ZeroShotWeights",
    "ZeroShotResult",
    "load_clip",
    "parse_spec",
    "embed_images",
    "embed_texts",
    "embed_image_tensor",
    "zero_shot_weights",
    "zero_shot",
    "accuracy_report",
    "search",
    "combine_queries",
    "modality_gap",
    "template_set",
    "classname_presets",
    "MINI_CLIP_SPEC",
    "MINI_CLIP_DIR",
    "TRAINABLE_CONFIGS",
    "build_trainable_clip",
    "export_local_dir",
]

ROOT = Path(__file__).resolve().parents[1]
MINI_CLIP_DIR = ROOT / "assets" / "mini_clip"
MINI_CLIP_SPEC = "mini-clip"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
# Probe deadline for the model hub; with the folder/file checks the offline error comes well within 5 s.
HUB_PROBE_TIMEOUT = 3.0
OPENAI_LOGIT_SCALE = 100.0  # the scale of open_clip's zero-shot evaluation (exp of CLIP's learned 4.6052)
MAX_TEXTS = 20_000  # prompts embedded in one call (class names x templates)

ProgressFn = Callable[[int, int], Any]

_OFFLINE_CHOICES = (
    "Offline choices: the shipped mini-CLIP ('mini-clip'), a local weights file with its model name "
    "('ViT-B-32:/path/to/weights.safetensors'), or a 'local-dir:/path' folder holding open_clip_config.json "
    "and open_clip_model.safetensors."
)

# ------------------------------------------------------------------------------------------ trainable configs
# open_clip model configs (the "model_cfg" of open_clip_config.json) that core.train.Trainer can train with
# method "clip". "mini-rn": a ModifiedResNet image tower (CLIP's RN family, attention pooling) cut to one
# block per stage and width 32, with a two-layer text transformer. Measured (FINDINGS.md): on shapes + varied
# captions it reaches shape ~0.98 / colour 1.0 zero-shot in ~200 steps, where a tiny ViT stalled at shape 0.3.
# Here at width 16 (a quarter of width 32's compute: a step costs ~4x less CPU on the shared 2-core machines).
# Text width 32 keeps the 49,408-token embedding table (open_clip's BPE vocabulary) at 1.6 M parameters; the
# whole model is about 3 M parameters, 6 MB in fp16.
TRAINABLE_CONFIGS: dict[str, dict] = {
    "mini-rn": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    },
}
TRAINABLE_NAMES = {"mini-rn": "mini CLIP (ModifiedResNet 1-1-1-1 x 16 + 2-layer text transformer)"}


# ------------------------------------------------------------------------------------------ the bundle
@dataclass(eq=False)
class ClipBundle:
    """A loaded CLIP model with what it needs around it. Shared read-only: never train or modify it.

    ``model``: an open_clip ``CLIP`` in eval mode on ``device``. ``preprocess``: open_clip's PIL -> tensor
    transform for this model (resize, centre crop, normalise). ``tokenizer``: open_clip's tokenizer
    (list of strings -> (N, context_length) int64). ``name``: what the page shows. ``fingerprint``: content id
    of the weights (cache key). ``image_size``, ``mean``, ``std``: the preprocessing constants.
    """

    model: Any
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    name: str
    spec: str
    fingerprint: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device
    learned_logit_scale: float
    embed_dim: int
    seconds: float = 0.0  # time load_clip took

    def __repr__(self) -> str:
        return f"ClipBundle({self.name!r}, {self.embed_dim}-d, {self.image_size} px, on {self.device})"


# ------------------------------------------------------------------------------------------ loading
def parse_spec(spec: str, pretrained: str | None = None) -> tuple[str, str, str | None]:
    """Split a spec into (kind, model, pretrained). kind is one of "local-dir", "hf-hub", "tag", "file".

    >>> parse_spec("ViT-B-32:laion2b_s34b_b79k")
    ('tag', 'ViT-B-32', 'laion2b_s34b_b79k')
    >>> parse_spec("mini-clip")[0]
    'local-dir'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PlaygroundError("A CLIP model spec must be a non-empty string such as 'mini-clip' or "
                              "'ViT-B-32:laion2b_s34b_b79k'.")
    spec = spec.strip()
    if spec == MINI_CLIP_SPEC:
        return "local-dir", str(MINI_CLIP_DIR), None
    if spec.startswith("local-dir:"):
        path = spec[len("local-dir:"):].strip()
        if not path:
            raise PlaygroundError("'local-dir:' needs a folder path after it, e.g. 'local-dir:/models/my_clip'.")
        return "local-dir", str(Path(path).expanduser()), None
    if spec.startswith("hf-hub:"):
        repo = spec[len("hf-hub:"):].strip().strip("/")
        if repo.count("/") != 1:
            raise PlaygroundError(f"'hf-hub:' needs a repository as org/name, got {repo!r}.")
        return "hf-hub", repo, None
    model, sep, rest = spec.partition(":")
    model = model.strip()
    if sep:
        if pretrained is not None:
            raise PlaygroundError("Give the pretrained tag either after ':' in the spec or as pretrained=, not both.")
        pretrained = rest.strip()
    if not pretrained:
        raise PlaygroundError(
            f"{spec!r} names no weights. Use 'MODEL:TAG' (a tag from open_clip.list_pretrained()), "
            "'MODEL:/path/to/weights.safetensors', 'local-dir:/path', 'hf-hub:org/repo' or 'mini-clip'."
        )
    looks_like_path = os.sep in pretrained or pretrained.endswith((".safetensors", ".pt", ".pth", ".bin"))
    return ("file" if looks_like_path else "tag"), model, pretrained


def _known_model(model: str) -> None:
    import open_clip

    if model.replace("/", "-") not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if model.lower().split("-")[0] in m.lower()][:8]
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise PlaygroundError(f"open_clip has no model called {model!r}.{hint} See open_clip.list_models().")


def _hub_reachable(timeout: float) -> bool:
    from core import network

    return network.reachable([network.hub_endpoint()], timeout=timeout)


def _hf_cached(repo: str, filename: str, cache_dir: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip's extras
        return None
    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _weights_candidates(filename: str | None) -> list[str]:
    """The file names open_clip's download_pretrained_from_hf tries, safetensors first."""
    from open_clip.constants import HF_WEIGHTS_NAME

    filename = filename or HF_WEIGHTS_NAME
    stem = filename.rsplit(".", 1)[0]
    names = []
    if filename == HF_WEIGHTS_NAME:
        names.append("open_clip_model.safetensors")
    if filename.endswith((".bin", ".pth")):
        names.append(stem + ".safetensors")
    return names + [filename]


def _cached_tag_weights(pcfg: dict, cache_dir: str | None) -> str | None:
    """Where a pretrained tag's weights already sit on disk, or None (no network is touched)."""
    if pcfg.get("file") and os.path.isfile(pcfg["file"]):
        return pcfg["file"]
    hub = pcfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        for name in _weights_candidates(filename or None):
            found = _hf_cached(repo, name, cache_dir)
            if found:
                return found
    url = pcfg.get("url", "")
    if url:
        local = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if local.is_file():
            return str(local)
    return None


def _offline_error(what: str) -> DownloadUnavailable:
    return DownloadUnavailable(
        f"The CLIP weights for {what} are not on this machine and could not be downloaded: the model hub "
        f"cannot be reached (no network?). {_OFFLINE_CHOICES}"
    )


def _fingerprint_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


def _create(model_name: str, pretrained: str | None, device: torch.device, **kw: Any):
    import open_clip

    return open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device, **kw)


def load_clip(
    spec: str,
    *,
    pretrained: str | None = None,
    device: torch.device | str | None = None,
    cache_dir: str | None = None,
    progress: Callable[[str], Any] | None = None,
    probe_timeout: float | None = None,
) -> ClipBundle:
    """Load a CLIP model with open_clip from any of the spec forms in the module docstring.

    With no network, a pretrained tag or hub repo that is not already in the local cache raises
    :class:`~core.errors.DownloadUnavailable` within seconds, naming the offline choices. ``progress(message)``
    hears each stage ("Checking the local cache…", "Downloading…", "Building the model…"); open_clip's own
    download shows byte progress in the console. Local files must be safetensors, or .pt/.bin read with
    ``weights_only=True`` (no pickle execution).

    >>> b = load_clip("mini-clip", device="cpu")  # doctest: +SKIP
    >>> embed_texts(b, ["a red circle"]).shape  # doctest: +SKIP
    (1, 64)
    """
    import open_clip

    t0 = time.perf_counter()
    say = progress or (lambda message: None)
    kind, model_name, tag = parse_spec(spec, pretrained)
    if kind == "file" or (kind == "local-dir" and spec.strip() != MINI_CLIP_SPEC):
        refuse_typed_path()  # a shared server answers before looking at the path (core.hosting)
    dev = torch.device(device) if device is not None else pick_device()
    timeout = HUB_PROBE_TIMEOUT if probe_timeout is None else probe_timeout
    create_kw: dict[str, Any] = {}
    tokenizer_name = model_name

    if kind == "local-dir":
        folder = Path(model_name)
        if not (folder / CONFIG_NAME).is_file():
            missing = "was not found" if not folder.is_dir() else f"has no {CONFIG_NAME}"
            hint = " Run scripts/make_mini_clip.py to rebuild the shipped one." if folder == MINI_CLIP_DIR else ""
            raise PlaygroundError(f"The CLIP folder {folder} {missing}.{hint}")
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise PlaygroundError(f"The CLIP folder {folder} has no {WEIGHTS_NAME} (safetensors weights).")
        open_name, open_pretrained = f"local-dir:{folder}", None
        tokenizer_name = open_name
        fingerprint = _fingerprint_file(weights)
        name = "mini-CLIP (shipped, trained on shapes)" if folder == MINI_CLIP_DIR else f"{folder.name} (local folder)"
    elif kind == "hf-hub":
        say("Checking the local cache…")
        from open_clip.constants import HF_CONFIG_NAME

        config = _hf_cached(model_name, HF_CONFIG_NAME, cache_dir)
        weights = next((w for n in _weights_candidates(None) if (w := _hf_cached(model_name, n, cache_dir))), None)
        if config and weights and Path(config).parent == Path(weights).parent:
            open_name = tokenizer_name = f"local-dir:{Path(config).parent}"
            fingerprint = f"hf-hub:{model_name}:{Path(config).parent.name}"
        else:
            if not _hub_reachable(timeout):
                raise _offline_error(f"hf-hub:{model_name}")
            say(f"Downloading hf-hub:{model_name}…")
            open_name = tokenizer_name = f"hf-hub:{model_name}"
            fingerprint = f"hf-hub:{model_name}"
        open_pretrained = None
        name = model_name
    else:
        _known_model(model_name)
        if kind == "file":
            path = Path(tag).expanduser()
            if not path.is_file():
                raise PlaygroundError(f"The weights file {path} was not found.")
            if path.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
                raise PlaygroundError(f"{path.name} is not a weights file; use .safetensors (or .pt/.bin).")
            open_name, open_pretrained = model_name, str(path)
            fingerprint = f"{model_name}:{_fingerprint_file(path)}"
            name = f"{model_name} ({path.name})"
        else:
            pcfg = open_clip.get_pretrained_cfg(model_name.replace("/", "-"), tag)
            if not pcfg:
                tags = open_clip.list_pretrained_tags_by_model(model_name.replace("/", "-"))
                raise PlaygroundError(
                    f"{model_name} has no pretrained tag {tag!r}; its tags are: {', '.join(tags) or 'none'}."
                )
            say("Checking the local cache…")
            cached = _cached_tag_weights(pcfg, cache_dir)
            if cached is None:
                if not _hub_reachable(timeout):
                    raise _offline_error(f"{model_name} / {tag}")
                say(f"Downloading {model_name} / {tag}… (progress in the console)")
                cached = open_clip.download_pretrained(pcfg, cache_dir=cache_dir)
            open_name, open_pretrained = model_name, cached
            # The tag's own preprocessing, which open_clip applies when loading by tag.
            for ours, theirs in (("image_mean", "mean"), ("image_std", "std"),
                                 ("image_interpolation", "interpolation"), ("image_resize_mode", "resize_mode")):
                if pcfg.get(theirs) is not None:
                    create_kw[ours] = pcfg[theirs]
            fingerprint = f"{model_name}:{tag}"
            name = f"{model_name} / {tag}"

    say("Building the model…")
    try:
        model, _, preprocess = _create(open_name, open_pretrained, dev, **create_kw)
    except (RuntimeError, ValueError, OSError, KeyError) as err:
        raise PlaygroundError(f"open_clip could not build {name}: {str(err)[:300]}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(tokenizer_name)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(float(v) for v in getattr(model.visual, "image_mean", None) or _find_normalize(preprocess)[0])
    std = tuple(float(v) for v in getattr(model.visual, "image_std", None) or _find_normalize(preprocess)[1])
    with torch.no_grad():
        embed_dim = int(model.encode_text(tokenizer(["a"]).to(dev)).shape[-1])
    return ClipBundle(
        model=model, preprocess=preprocess, tokenizer=tokenizer, name=name, spec=spec, fingerprint=fingerprint,
        image_size=size, mean=mean, std=std, device=dev,
        learned_logit_scale=float(model.logit_scale.detach().exp()), embed_dim=embed_dim,
        seconds=time.perf_counter() - t0,
    )


def _find_normalize(preprocess) -> tuple[Sequence[float], Sequence[float]]:
    for t in getattr(preprocess, "transforms", []):
        if hasattr(t, "mean") and hasattr(t, "std"):
            return t.mean, t.std
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return OPENAI_DATASET_MEAN, OPENAI_DATASET_STD


# ------------------------------------------------------------------------------------------ image embeddings
def _image_hashes(images: Sequence[Any]) -> list[str]:
    """Content hash per image: pixels + shape (PIL images as RGB arrays, tensors/arrays as uint8 CHW)."""
    out = []
    for img in images:
        if isinstance(img, (torch.Tensor, np.ndarray)):
            arr = np.ascontiguousarray(img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else img)
            data, shape = arr.data, (arr.shape, str(arr.dtype))
        else:  # PIL: its own buffer, no array copy
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            data, shape = rgb.tobytes(), ("pil", rgb.size)
        h = hashlib.blake2b(data, digest_size=16)
        h.update(repr(shape).encode())
        out.append(h.hexdigest())
    return out


class EmbeddingCache:
    """On-disk image embeddings by (model fingerprint, image content hash).

    One folder per model under ``<cache>/clip-embeddings``; each :meth:`put` writes one ``.npz`` chunk
    (``keys`` as fixed-width bytes, ``vectors`` float32) through a temp file and a rename, and reads are
    ``np.load(allow_pickle=False)``. Chunks are read once per process and kept in memory.
    """

    _lock = threading.Lock()
    _memory: dict[str, tuple[frozenset, dict[str, np.ndarray]]] = {}

    def __init__(self, fingerprint: str, root: str | os.PathLike | None = None):
        from core.data import default_cache_dir

        base = Path(root) if root is not None else default_cache_dir() / "clip-embeddings"
        self.folder = base / hashlib.sha256(fingerprint.encode()).hexdigest()[:20]

    def _index(self) -> dict[str, np.ndarray]:
        files = frozenset(p.name for p in self.folder.glob("*.npz")) if self.folder.is_dir() else frozenset()
        key = str(self.folder)
        with self._lock:
            seen, index = self._memory.get(key, (frozenset(), {}))
            for name in sorted(files - seen):
                try:
                    with np.load(self.folder / name, allow_pickle=False) as z:
                        keys, vecs = z["keys"], z["vectors"]
                except (OSError, ValueError, KeyError):  # a damaged chunk is ignored (and recomputed)
                    continue
                for k, v in zip(keys.tolist(), vecs):
                    index[k.decode()] = v
            self._memory[key] = (seen | files, index)
            return index

    def get(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        index = self._index()
        return [index.get(k) for k in keys]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        import io

        from core.files import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, keys=np.array([k.encode() for k in keys], dtype="S32"),
                 vectors=np.asarray(vectors, dtype=np.float32))
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:20] + ".npz"
        atomic_write_bytes(self.folder / name, buf.getvalue())

    def clear(self) -> None:
        with self._lock:
            self._memory.pop(str(self.folder), None)
        if self.folder.is_dir():
            for p in self.folder.glob("*.npz"):
                p.unlink(missing_ok=True)


def model_pixels(bundle: "ClipBundle", x: torch.Tensor) -> torch.Tensor:
    """An RGB batch as the image tower takes it: on the bundle's device, uint8 scaled to [0, 1], the centre square
    resized (bilinear, antialiased) to ``bundle.image_size``, then normalised with the model's mean and std.
    Shape: (N, 3, H, W) -> (N, 3, S, S)."""
    x = x.to(bundle.device)
    x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
    size = bundle.image_size
    if x.shape[-2:] != (size, size):
        side = min(x.shape[-2:])
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        x = x[..., top:top + side, left:left + side]
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return _normalise_pixels(bundle, x)


def _normalise_pixels(bundle: ClipBundle, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(bundle.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


@torch.inference_mode()
def embed_image_tensor(bundle: ClipBundle, x: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1] (or uint8) -> L2-normalised float32 (N, D) numpy.

    Square images of another side are resized (bilinear, antialiased) to ``bundle.image_size``; this is the
    registry's ``Entry.embed_images`` (the Explorer feeds dataset batches through it).
    Shape: (N, 3, H, W) -> (N, embed_dim).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        raise PlaygroundError("CLIP takes RGB image batches shaped (N, 3, H, W).")
    feats = bundle.model.encode_image(model_pixels(bundle, x))
    return F.normalize(feats.float(), dim=-1).cpu().numpy()


MAX_UPLOADS = 64  # images in one upload batch on the page


def images_from_uploads(files: Sequence[tuple[str, bytes]], *, max_files: int = MAX_UPLOADS
                        ) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """Decode uploaded files safely (core.data.decode_image: size cap, decompression-bomb guard, only image
    formats) into RGB PIL images. Returns ``([(name, image)], [(name, why it was refused)])``."""
    from PIL import Image

    from core.data import decode_image
    from core.errors import DatasetError

    if len(files) > max_files:
        raise PlaygroundError(f"{len(files)} files were uploaded; at most {max_files} images at once.")
    images, problems = [], []
    for name, data in files:
        try:
            images.append((name, Image.fromarray(decode_image(data))))
        except DatasetError as err:
            problems.append((name, str(err)))
    return images, problems


def _as_image_list(images: Any) -> tuple[list[Any], bool]:
    """(items, are_tensors): an ImageSet or uint8 tensor gives CHW tensors, else a list of PIL images."""
    from core.data import ImageSet

    if isinstance(images, ImageSet):
        return list(images.images), True
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise PlaygroundError("An image tensor must be shaped (N, 3, H, W).")
        return list(images), True
    items = list(images)
    from PIL import Image

    bad = [type(i).__name__ for i in items if not isinstance(i, Image.Image)]
    if bad:
        raise PlaygroundError(f"embed_images takes PIL images or an ImageSet, got {bad[0]}.")
    return items, False


def embed_images(
    bundle: ClipBundle,
    images: Any,
    *,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cache: bool | EmbeddingCache = True,
) -> np.ndarray:
    """CLIP image embeddings, L2-normalised float32. Shape: N images -> (N, embed_dim).

    ``images``: PIL images, an :class:`core.data.ImageSet` or a uint8 (N, 3, H, W) tensor. Images of
    another size go through ``bundle.preprocess`` (open_clip's transform) one by one, exactly as open_clip's
    own loops do; images already at the model's square size skip PIL (open_clip's resize and crop are the
    identity there, so ``ToTensor`` + ``Normalize`` on the whole batch is the same computation). Batches run on the
    bundle's device under ``torch.inference_mode``. ``progress(done, total)`` after every batch.
    ``cache``: look up and store vectors on disk by (model fingerprint, image content hash)
    (:class:`EmbeddingCache`); a second run over the same images only hashes them.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PlaygroundError(f"batch_size must be a positive whole number, got {batch_size!r}.")
    items, tensors = _as_image_list(images)
    n = len(items)
    out = np.zeros((n, bundle.embed_dim), dtype=np.float32)
    store = cache if isinstance(cache, EmbeddingCache) else (EmbeddingCache(bundle.fingerprint) if cache else None)
    keys = _image_hashes(items) if store is not None else []
    todo = list(range(n))
    if store is not None:
        hits = store.get(keys)
        todo = [i for i, v in enumerate(hits) if v is None or v.shape != (bundle.embed_dim,)]
        for i, v in enumerate(hits):
            if v is not None and v.shape == (bundle.embed_dim,):
                out[i] = v
    done = n - len(todo)
    if progress is not None:
        progress(done, n)
    size = bundle.image_size
    for start in range(0, len(todo), batch_size):
        rows = todo[start:start + batch_size]
        batch = [items[i] for i in rows]
        if not tensors and all(im.size == (size, size) for im in batch):
            # Already at the model's size: open_clip's Resize and CenterCrop leave it as it is, so
            # ToTensor + Normalize on the stacked batch is the same computation without per-image PIL work.
            batch = [torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1) for im in batch]
            tensors_now = True
        else:
            tensors_now = tensors
        if tensors_now and all(t.shape[-2:] == (size, size) for t in batch):
            out[rows] = embed_image_tensor(bundle, torch.stack(batch))
        else:
            if tensors:
                from PIL import Image

                batch = [Image.fromarray(t.permute(1, 2, 0).numpy()) for t in batch]
            x = torch.stack([bundle.preprocess(img) for img in batch]).to(bundle.device)
            with torch.inference_mode():
                out[rows] = F.normalize(bundle.model.encode_image(x).float(), dim=-1).cpu().numpy()
        if store is not None:
            store.put([keys[i] for i in rows], out[rows])
        done += len(rows)
        if progress is not None:
            progress(done, n)
    return out


# ------------------------------------------------------------------------------------------ text embeddings
def embed_texts(bundle: ClipBundle, texts: Sequence[str], *, batch_size: int = 256,
                progress: ProgressFn | None = None) -> np.ndarray:
    """CLIP text embeddings of ``texts`` (tokenised by the bundle's open_clip tokenizer), L2-normalised
    float32. Shape: N strings -> (N, embed_dim)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = [str(t) for t in texts]
    if len(texts) > MAX_TEXTS:
        raise PlaygroundError(f"{len(texts)} texts is too many at once; at most {MAX_TEXTS} are embedded per call.")
    out = np.zeros((len(texts), bundle.embed_dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        tokens = bundle.tokenizer(texts[start:start + batch_size]).to(bundle.device)
        with torch.inference_mode():
            out[start:start + len(tokens)] = F.normalize(bundle.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
        if progress is not None:
            progress(min(start + batch_size, len(texts)), len(texts))
    return out


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


# ------------------------------------------------------------------------------------------ retrieval, map
def combine_queries(terms: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
    """Query arithmetic on unit vectors: ``sum(sign * v)``, renormalised (e.g. image + "red" - "blue").
    Shape: terms of (D,) -> (D,)."""
    if not terms:
        raise PlaygroundError("A query needs at least one image or text.")
    total = np.zeros_like(np.asarray(terms[0][1], dtype=np.float32))
    for sign, v in terms:
        total = total + float(sign) * np.asarray(v, dtype=np.float32)
    norm = float(np.linalg.norm(total))
    if norm < 1e-8:
        raise PlaygroundError("The query terms cancel out exactly; change a sign or add a term.")
    return total / norm


def search(gallery: np.ndarray, query: np.ndarray, k: int = 12, *, exclude: int | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The k gallery rows most cosine-similar to ``query`` (D,), best first, via core.similarity.nearest.
    ``exclude``: a gallery row to leave out (the query image itself). Returns (indices, similarities)."""
    from core.similarity import nearest

    k_eff = min(int(k) + (exclude is not None), len(gallery))
    idx, sims = nearest(gallery, np.asarray(query, dtype=np.float32)[None, :], k=k_eff, exclude_self=False)
    idx, sims = idx[0], sims[0]
    if exclude is not None:
        keep = idx != exclude
        idx, sims = idx[keep], sims[keep]
    return idx[:k], sims[:k]


def modality_gap(image_vectors: np.ndarray, text_vectors: np.ndarray) -> float:
    """Distance between the centroids of unit image and unit text embeddings (Liang et al. 2022,
    "Mind the Gap"). Shape: (N, D), (M, D) -> float."""
    a = np.asarray(image_vectors, dtype=np.float64)
    b = np.asarray(text_vectors, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))


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


# ------------------------------------------------------------------------------------------ training glue
class _ImageTower(nn.Module):
    """An open_clip CLIP's image tower seen as a :class:`core.models.ContrastiveModel` by core.train:
    ``forward`` / ``encode`` / ``embed`` on float images in [0, 1] (resized to the tower's size and normalised
    with open_clip's constants). Encoder and projection space are the same (the attention-pool output)."""

    def __init__(self, clip_model: nn.Module, mean: Sequence[float], std: Sequence[float], name: str):
        super().__init__()
        self.visual = clip_model.visual
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        size = self.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.feature_dim = int(self.visual.output_dim)
        self.cfg = _TowerCfg(arch=name, projection_dim=self.feature_dim)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        return self.visual((x - self.pixel_mean) / self.pixel_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, space: str = "encoder", normalize: bool = False,
              batch_size: int = 1024) -> torch.Tensor:
        if space not in ("encoder", "projection"):
            raise ValueError(f"Unknown embedding space {space!r}; use 'encoder' or 'projection'.")
        was_training = self.training
        self.eval()
        try:
            chunks = [self.encode(x[s:s + batch_size]) for s in range(0, x.shape[0], batch_size)]
            out = torch.cat(chunks) if chunks else torch.empty(0, self.feature_dim, device=self.device)
            return F.normalize(out, dim=1) if normalize else out
        finally:
            self.train(was_training)


@dataclass(frozen=True)
class _TowerCfg:
    arch: str
    projection_dim: int


class _TextTower(nn.Module):
    """The text half of an open_clip CLIP (shares its parameters); ``forward(tokens) = encode_text``."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.positional_embedding = clip_model.positional_embedding
        if clip_model.text_projection is not None:
            self.text_projection = clip_model.text_projection
        object.__setattr__(self, "_clip", clip_model)  # not a submodule: the image half is not ours

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._clip.encode_text(tokens)


@dataclass
class TrainableClip:
    """What core.train needs to train an open_clip CLIP: the model and its two halves."""

    clip: nn.Module
    image_tower: _ImageTower
    text_tower: _TextTower
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    model_cfg: dict = field(default_factory=dict)


def trainable_config(name: str, embed_dim: int | None = None) -> dict:
    if name not in TRAINABLE_CONFIGS:
        raise PlaygroundError(f"Unknown CLIP model config {name!r}; choose one of {', '.join(TRAINABLE_CONFIGS)}.")
    cfg = json.loads(json.dumps(TRAINABLE_CONFIGS[name]))
    if embed_dim is not None:
        cfg["embed_dim"] = int(embed_dim)
    return cfg


def build_trainable_clip(name: str, *, embed_dim: int | None = None,
                         device: torch.device | str | None = None) -> TrainableClip:
    """A freshly initialised open_clip ``CLIP`` from :data:`TRAINABLE_CONFIGS` (seeded by the caller's torch
    RNG), split into an image and a text tower for core.train. ``embed_dim`` overrides the config's."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer

    cfg = trainable_config(name, embed_dim)
    dev = torch.device(device) if device is not None else pick_device()
    model = CLIP(**cfg).to(dev)
    tokenizer = SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    return TrainableClip(model, _ImageTower(model, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, name).to(dev),
                         _TextTower(model), tokenizer, cfg)


def export_local_dir(clip_model: nn.Module, model_cfg: dict, folder: str | os.PathLike, *,
                     half: bool = True, extra: dict | None = None) -> Path:
    """Write an open_clip ``local-dir`` folder: ``open_clip_config.json`` (model_cfg + preprocess_cfg) and
    ``open_clip_model.safetensors`` (fp16 when ``half``, which open_clip casts back on load). Each file is
    written to a temp file and renamed."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    from core.files import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous().clone()
             for k, v in clip_model.state_dict().items()}
    size = model_cfg["vision_cfg"]["image_size"]
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"size": size, "mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }
    if extra:
        config["contrastive_playground"] = extra
    for name, write in ((WEIGHTS_NAME, lambda p: save_file(state, p)),
                        (CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(config, indent=2)))):
        atomic_write(folder / name, write, mode=0o644)  # a shipped model must be readable by every user
    return folder


def bundle_from_trainer(trainer: Any, *, name: str | None = None) -> ClipBundle:
    """A frozen :class:`ClipBundle` of a core.train.Trainer's open_clip CLIP (``clip_model`` set): a deep copy
    in eval mode, so training on never changes it, with open_clip's eval preprocessing for its size. This is
    how a CLIP trained on the Train page joins the registry (``ui.registry.register_clip``)."""
    import copy

    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.transform import PreprocessCfg, image_transform_v2

    if getattr(trainer, "clip", None) is None:
        raise PlaygroundError("Only a CLIP-style run trained as an open_clip model (clip_model set, e.g. 'mini-rn') "
                              "can be used as a CLIP model.")
    with trainer._lock:
        model = copy.deepcopy(trainer.clip.clip).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    size = int(trainer.clip.model_cfg["vision_cfg"]["image_size"])
    preprocess = image_transform_v2(PreprocessCfg(size=size), is_train=False)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    dev = next(model.parameters()).device
    return ClipBundle(
        model=model, preprocess=preprocess, tokenizer=trainer.clip.tokenizer, name=name or trainer.describe(),
        spec="trained", fingerprint=f"trained:{h.hexdigest()[:24]}", image_size=size,
        mean=tuple(OPENAI_DATASET_MEAN), std=tuple(OPENAI_DATASET_STD), device=dev,
        learned_logit_scale=float(model.logit_scale.exp()), embed_dim=int(trainer.clip.model_cfg["embed_dim"]),
    )
