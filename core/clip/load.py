"""Loading a CLIP with open_clip from one spec string, failing within seconds with no network.

open_clip alone spends ~45 s in hub retries offline; here a pretrained tag or hub repo not already in the local
cache is refused after one short probe (:mod:`core.network`) with a sentence naming the offline choices.
:class:`ClipBundle` is what every other part of :mod:`core.clip` takes.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.device import pick_device
from core.errors import DownloadUnavailable, PlaygroundError
from core.hosting import refuse_typed_path

ROOT = Path(__file__).resolve().parents[2]
MINI_CLIP_DIR = ROOT / "assets" / "mini_clip"
MINI_CLIP_SPEC = "mini-clip"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
# Probe deadline for the model hub; with the folder/file checks the offline error comes well within 5 s.
HUB_PROBE_TIMEOUT = 3.0

_OFFLINE_CHOICES = (
    "Offline choices: the shipped mini-CLIP ('mini-clip'), a local weights file with its model name "
    "('ViT-B-32:/path/to/weights.safetensors'), or a 'local-dir:/path' folder holding open_clip_config.json "
    "and open_clip_model.safetensors."
)


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
