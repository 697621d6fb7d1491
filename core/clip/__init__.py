"""CLIP models through open_clip's own API: loading, image and text embeddings, zero-shot, retrieval.

Nothing here re-implements open_clip: models come from ``open_clip.create_model_and_transforms``,
tokenisers from ``open_clip.get_tokenizer``, preprocessing is the transform open_clip returns, templates and
ImageNet class names come from ``open_clip.zero_shot_metadata``. What this module adds is what the app needs
around it (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"):

- :func:`load_clip` takes one spec string for every source, fails within seconds with no network (open_clip
  alone spends ~45 s in hub retries), and returns a :class:`ClipBundle` (model in eval mode on ``pick_device()``).
- :func:`embed_images` / :func:`embed_texts`: L2-normalised float32 arrays, batched, with progress; image
  embeddings are cached on disk by (model fingerprint, image content hash), in a cache with a size cap.
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

One role per module, as open_clip cuts its own: :mod:`core.clip.load` (specs, loading, the offline error),
:mod:`core.clip.cache` (the disk cache of image embeddings), :mod:`core.clip.embed` (image and text
embeddings), :mod:`core.clip.zeroshot` (templates, class weights, logits, accuracy, presets),
:mod:`core.clip.retrieval` (search, query arithmetic, modality gap, the joint map) and
:mod:`core.clip.trainable` (the CLIP core.train trains, and its export). Every public name is re-exported here.

open_clip is imported inside the functions, so importing this package costs nothing on the app's start path.
"""
from __future__ import annotations

from core.clip.cache import EmbeddingCache, images_key
from core.clip.embed import (MAX_TEXTS, MAX_UPLOADS, ProgressFn, embed_image_tensor, embed_images, embed_texts,
                             images_from_uploads, model_pixels)
from core.clip.load import (CONFIG_NAME, HUB_PROBE_TIMEOUT, MINI_CLIP_DIR, MINI_CLIP_SPEC, ROOT, WEIGHTS_NAME,
                            ClipBundle, load_clip, parse_spec)
from core.clip.retrieval import MAP_MAX_POINTS, JointMap, combine_queries, joint_map, modality_gap, search
from core.clip.trainable import (TRAINABLE_CONFIGS, TRAINABLE_NAMES, TrainableClip, build_trainable_clip,
                                 bundle_from_trainer, export_local_dir, trainable_config)
from core.clip.zeroshot import (CIFAR10_CLASSNAMES, MAX_TEMPLATE_CHARS, OPENAI_LOGIT_SCALE, ZeroShotResult,
                                ZeroShotWeights, accuracy_report, cell_images, classname_presets, parse_classnames,
                                template_set, worst_confusion, zero_shot, zero_shot_weights)

__all__ = [
    # loading
    "ClipBundle", "load_clip", "parse_spec", "MINI_CLIP_SPEC", "MINI_CLIP_DIR", "CONFIG_NAME", "WEIGHTS_NAME",
    "HUB_PROBE_TIMEOUT", "ROOT",
    # embeddings and their disk cache
    "embed_images", "embed_texts", "embed_image_tensor", "model_pixels", "images_from_uploads", "EmbeddingCache",
    "images_key", "ProgressFn", "MAX_TEXTS", "MAX_UPLOADS",
    # zero-shot
    "ZeroShotWeights", "ZeroShotResult", "zero_shot_weights", "zero_shot", "accuracy_report", "template_set",
    "classname_presets", "CIFAR10_CLASSNAMES", "MAX_TEMPLATE_CHARS", "OPENAI_LOGIT_SCALE", "worst_confusion",
    "cell_images", "parse_classnames",
    # retrieval and the modality gap
    "search", "combine_queries", "modality_gap", "JointMap", "joint_map", "MAP_MAX_POINTS",
    # trainable CLIP and export
    "TRAINABLE_CONFIGS", "TRAINABLE_NAMES", "TrainableClip", "trainable_config", "build_trainable_clip",
    "export_local_dir", "bundle_from_trainer",
]
