"""Why did CLIP answer that? Heatmaps over the image, scores over the prompt's words, and how far to trust them.

Three attribution methods for a CLIP image tower and one text target (a class's zero-shot weight, or any
prompt's unit text embedding), all over the image the model actually sees (resized and cropped to its input):

- :func:`occlusion` (Zeiler & Fergus 2014): grey out one square patch at a time (the dataset mean, 0 after
  normalisation), and record how much the target drops. Model-agnostic. Every occluded copy of every image goes
  through the tower in a few large batches, never one forward per patch.
- :func:`grad_cam` (Selvaraju et al. 2017) on ResNet towers (open_clip's ``ModifiedResNet``): the stage output
  ``A`` (K, h, w), channel weights ``alpha_k = mean_ij d score / d A_kij``, map ``ReLU(sum_k alpha_k A_k)``.
  It only localises as finely as the stage's grid. CLIP's RN towers end in a 1 x 1 grid at 32 px (the shipped
  mini-CLIP: stem and layer1 8 x 8, layer2 4 x 4, layer3 2 x 2, layer4 1 x 1), so :func:`grad_cam_stage` takes
  the deepest stage whose grid is at least ``MIN_GRID`` a side: layer1 for the mini-CLIP, layer4 (7 x 7) for
  RN50 at 224 px.
- :func:`legrad` (Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via Feature
  Formation Sensitivity", arXiv 2404.03214, ICCV 2025) on ViT towers: for every block l, the block's tokens are
  read out as an image embedding (mean over tokens, then the tower's ``ln_post`` and ``proj``, as the authors'
  code does), compared with the text; the gradient of that score w.r.t. block l's attention probabilities
  (B, heads, N, N) is clamped at 0, averaged over heads and query tokens, and its patch columns form the layer's
  map; maps are summed over blocks and min-max scaled. Implemented here rather than through the ``legrad-torch``
  package: that package pins open_clip <= 2.23 (we run 3.3) and patches the model's ``forward`` methods in place,
  which a model shared read-only between sessions must not have. Here the tower's forward is re-run block by
  block with the attention written out (checked against open_clip's own forward in the tests).

:func:`pointing_game` scores a map against a known object mask: the energy-based pointing game (share of the
positive attribution inside the mask; Wang et al. 2020, Score-CAM) and the plain pointing game (is the maximum
inside; Zhang et al. 2016), beside :func:`random_maps` as the floor. :func:`word_importance` is leave-one-word-out
on a prompt. Nothing here imports streamlit.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import PlaygroundError

__all__ = [
    "METHOD_NAMES",
    "TARGETS",
    "Heatmap",
    "model_inputs",
    "display_pixels",
    "occlusion",
    "occlusion_windows",
    "occlusion_defaults",
    "grad_cam",
    "grad_cam_maps",
    "grad_cam_stage",
    "resnet_stages",
    "legrad",
    "gradient_method",
    "heatmaps",
    "pointing_game",
    "random_maps",
    "centre_maps",
    "word_importance",
    "TrustReport",
    "trust_report",
]

METHOD_NAMES = {"occlusion": "Occlusion", "gradcam": "Grad-CAM", "legrad": "LeGrad"}
TARGETS = ("similarity", "probability")
MIN_GRID = 7  # Grad-CAM stage: the deepest one whose grid is at least this many cells a side
ProgressFn = Callable[[int, int], Any]


@dataclass
class Heatmap:
    """One attribution map. ``values`` (S, S) float32 over the model's input view, S = the model's image size;
    positive = supports the target. ``grid``: the side of the map before upsampling (its real resolution)."""

    values: np.ndarray
    method: str
    detail: str
    grid: int


# ------------------------------------------------------------------------------------------ inputs
def model_inputs(bundle: Any, images: Any) -> torch.Tensor:
    """What the image tower sees, normalised, on the bundle's device. Shape: N images -> (N, 3, S, S).

    PIL images go through ``bundle.preprocess`` (open_clip's own transform, as zero-shot does); uint8 or float
    (N, 3, H, W) tensors / arrays / an ImageSet are centre-cropped and resized like
    :func:`core.clip.embed_image_tensor`.
    """
    from core.clip import model_pixels
    from core.data import ImageSet

    if isinstance(images, ImageSet):
        images = images.images
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, torch.Tensor):
        x = images if images.dim() == 4 else images[None]
        if x.shape[1] != 3:
            raise PlaygroundError("Images must be RGB, shaped (N, 3, H, W).")
        return model_pixels(bundle, x)
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    return torch.stack([bundle.preprocess(im.convert("RGB")) for im in items]).to(bundle.device)


def display_pixels(bundle: Any, x: torch.Tensor) -> np.ndarray:
    """Undo the normalisation of :func:`model_inputs`. Shape: (N, 3, S, S) -> uint8 (N, S, S, 3)."""
    mean = torch.tensor(bundle.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std, device=x.device).view(1, 3, 1, 1)
    rgb = (x.detach().float() * std + mean).clamp(0, 1).mul(255).round().byte()
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


def _unit_text(text: Any, device: torch.device) -> torch.Tensor:
    """(C, D) unit rows from a (D, C) ZeroShotWeights / array of columns, or (C, D) / (D,) rows."""
    from core.clip import ZeroShotWeights

    if isinstance(text, ZeroShotWeights):
        t = torch.from_numpy(np.ascontiguousarray(text.weights.T))
    else:
        t = torch.as_tensor(np.asarray(text, dtype=np.float32))
        t = t[None] if t.dim() == 1 else t
    return F.normalize(t.float(), dim=-1).to(device)


def _class_index(class_index: Any, n: int, n_classes: int, device: torch.device) -> torch.Tensor:
    idx = torch.as_tensor(np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,)).copy(), device=device)
    if n and (idx.min() < 0 or idx.max() >= n_classes):
        raise PlaygroundError(f"The class index must lie in 0..{n_classes - 1}.")
    return idx


def _score(features: torch.Tensor, text: torch.Tensor, idx: torch.Tensor, target: str,
           logit_scale: float) -> torch.Tensor:
    """(B, D) image features -> (B,) target scores: the cosine with the class's text, or its softmax probability
    over all the classes at ``logit_scale`` (for gradients: its log, which stays informative when p is ~1)."""
    sims = F.normalize(features.float(), dim=-1) @ text.T  # (B, C)
    own = sims.gather(1, idx[:, None])[:, 0]
    if target == "similarity":
        return own
    if target in ("probability", "log-probability"):
        logp = torch.log_softmax(logit_scale * sims, dim=1).gather(1, idx[:, None])[:, 0]
        return logp.exp() if target == "probability" else logp
    raise PlaygroundError(f"Unknown target {target!r}; choose one of {', '.join(TARGETS)}.")


# ------------------------------------------------------------------------------------------ occlusion
def occlusion_defaults(size: int) -> tuple[int, int]:
    """(patch, stride) in pixels for a ``size``-px input; see :func:`occlusion_windows`."""
    coarse = 4 if size > 64 else 8
    return max(1, int(round(size / coarse))), max(1, int(round(size / (2 * coarse))))


def occlusion_windows(size: int, patch: int | None = None, stride: int | None = None) -> torch.Tensor:
    """Occluding windows as masks. Shape: -> bool (P, size, size), True inside the patch.

    Defaults: up to 64 px (a forward costs little) patch = size / 8 and stride = size / 16 (15 x 15 = 225
    copies; on the mini-CLIP's shapes this put 0.71 of the heat on the shape where patch size / 4 put 0.54);
    above, patch = size / 4 and stride = size / 8 (7 x 7 = 49 copies), each a forward of a big tower. The last
    row and column of windows are moved in so that they end at the border, so every pixel is covered."""
    default_patch, default_stride = occlusion_defaults(size)
    patch = default_patch if patch is None else int(patch)
    stride = default_stride if stride is None else int(stride)
    if not (1 <= patch <= size) or stride < 1:
        raise PlaygroundError(f"The occlusion patch must be 1..{size} pixels and the stride at least 1.")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    windows = torch.zeros(len(starts) ** 2, size, size, dtype=torch.bool)
    for a, top in enumerate(starts):
        for b, left in enumerate(starts):
            windows[a * len(starts) + b, top:top + patch, left:left + patch] = True
    return windows


@torch.no_grad()
def occlusion(bundle: Any, x: torch.Tensor, text: Any, class_index: Any = 0, *, target: str = "probability",
              logit_scale: float = 100.0, patch: int | None = None, stride: int | None = None,
              batch_size: int = 256, progress: ProgressFn | None = None) -> np.ndarray:
    """Occlusion sensitivity: per pixel, the mean drop of the target over the windows that cover it.

    ``x`` (N, 3, S, S) normalised (:func:`model_inputs`); ``text``: the classes' text embeddings (a
    :class:`core.clip.ZeroShotWeights`, (D, C) columns or (C, D) rows); ``class_index``: int or (N,) ints.
    The occluder is 0 in normalised space, i.e. the dataset's mean colour. Each image's P occluded copies go
    through ``bundle.model.encode_image`` in batches of ``batch_size`` copies (all images' copies together).
    Shape: -> float32 (N, S, S); positive where hiding the pixels lowers the target.
    """
    n, _, size, _ = x.shape
    t = _unit_text(text, x.device)
    idx = _class_index(class_index, n, len(t), x.device)
    windows = occlusion_windows(size, patch, stride).to(x.device)  # (P, S, S)
    keep = (~windows)[:, None].to(x.dtype)  # (P, 1, S, S): 1 outside the window
    p = len(windows)
    base = _score(bundle.model.encode_image(x), t, idx, target, logit_scale)  # (N,)
    drops = torch.empty(n, p, device=x.device)
    per_batch = max(1, batch_size // p)  # images whose copies share one forward
    for s in range(0, n, per_batch):
        e = min(n, s + per_batch)
        copies = (x[s:e, None] * keep[None]).reshape(-1, *x.shape[1:])  # ((e-s)*P, 3, S, S)
        scores = _score(bundle.model.encode_image(copies), t, idx[s:e].repeat_interleave(p), target, logit_scale)
        drops[s:e] = base[s:e, None] - scores.view(e - s, p)
        if progress is not None:
            progress(e, n)
    w = windows.float().view(p, -1)  # (P, S*S)
    heat = (drops @ w) / w.sum(0).clamp_min(1)  # (N, S*S): mean drop over the windows covering each pixel
    return heat.view(n, size, size).float().cpu().numpy()


# ------------------------------------------------------------------------------------------ Grad-CAM
def grad_cam_maps(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """The Grad-CAM formula. ``activations``, ``gradients`` (N, K, h, w) -> (N, h, w):
    ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k = mean_ij dS/dA_kij``."""
    alpha = gradients.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    return torch.relu((alpha * activations).sum(dim=1))


def grad_cam(forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
             size: int | None = None) -> np.ndarray:
    """Grad-CAM of any model given as ``forward(x) -> (scores (N,), activations (N, K, h, w))``, the layer's
    output taken inside the same forward (no hooks: the CLIP models are shared between sessions). Images are
    independent (eval mode), so one backward of ``scores.sum()`` gives every image's gradients.
    Shape: -> float32 (N, size, size), bilinearly upsampled from (h, w) (no upsampling when size is None)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)  # builds the graph through a frozen model
        scores, acts = forward(x)
        grads = torch.autograd.grad(scores.sum(), acts)[0]
    cam = grad_cam_maps(acts.detach(), grads.detach())
    if size is not None and cam.shape[-2:] != (size, size):
        cam = F.interpolate(cam[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return cam.float().cpu().numpy()


def resnet_stages(visual: Any, image_size: int) -> list[tuple[str, int]]:
    """(stage name, grid side) of an open_clip ModifiedResNet at ``image_size``: the stem and layer1 at 1/4,
    then 1/8, 1/16, 1/32."""
    return [("stem", image_size // 4), ("layer1", image_size // 4), ("layer2", image_size // 8),
            ("layer3", image_size // 16), ("layer4", image_size // 32)]


def grad_cam_stage(bundle: Any) -> tuple[str, int]:
    """The deepest stage of a ResNet tower whose grid is at least ``MIN_GRID`` a side (else the finest one)."""
    stages = [s for s in resnet_stages(bundle.model.visual, bundle.image_size) if s[0] != "stem"]
    fine = [s for s in stages if s[1] >= MIN_GRID]
    return fine[-1] if fine else stages[0]


def _resnet_forward(visual: Any, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip's ModifiedResNet.forward, step by step, also returning ``stage``'s output."""
    h = visual.stem(x)
    act = h if stage == "stem" else None
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(visual, name)(h)
        if name == stage:
            act = h
    return visual.attnpool(h), act


# ------------------------------------------------------------------------------------------ LeGrad
def _is_vit(visual: Any) -> bool:
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    return (isinstance(visual, VisionTransformer) and visual.attn_pool is None
            and all(isinstance(b, ResidualAttentionBlock) and isinstance(b.attn, torch.nn.MultiheadAttention)
                    and b.attn._qkv_same_embed_dim and not hasattr(b, "ln_1_kv")
                    for b in visual.transformer.resblocks))


def _block_with_attention(block: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One open_clip ResidualAttentionBlock on batch-first tokens (B, N, D), with its attention probabilities
    written out. Returns (tokens (B, N, D), attention (B, heads, N, N))."""
    mha = block.attn
    b, n, d = x.shape
    heads = mha.num_heads
    q, k, v = F.linear(block.ln_1(x), mha.in_proj_weight, mha.in_proj_bias).split(d, dim=-1)
    q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in (q, k, v))  # (B, H, N, d/H)
    attn = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d // heads), dim=-1)  # (B, H, N, N)
    out = (attn @ v).transpose(1, 2).reshape(b, n, d)
    x = x + block.ls_1(mha.out_proj(out))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, attn


def _vit_forward(visual: Any, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """open_clip's VisionTransformer.forward block by block. Returns every block's tokens (B, N, D), every
    block's attention (B, H, N, N) and the pooled, projected image features (B, embed_dim)."""
    h = visual._embeds(x)  # (B, N, D): patches + class token + positions, ln_pre
    tokens, attns = [], []
    for block in visual.transformer.resblocks:
        h, a = _block_with_attention(block, h)
        tokens.append(h)
        attns.append(a)
    pooled, _ = visual._pool(h)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return tokens, attns, pooled


def legrad(bundle: Any, x: torch.Tensor, text: Any, class_index: Any = 0, *, target: str = "similarity",
           logit_scale: float = 100.0, layers: Sequence[int] | None = None) -> np.ndarray:
    """LeGrad maps of a ViT tower (see the module docstring). ``layers``: block indices (default all).
    Images are independent, so each layer's gradient for the whole batch comes from one backward of the
    summed scores, and it only runs back through that one block. Shape: -> float32 (N, S, S) in [0, 1]."""
    visual = bundle.model.visual
    if not _is_vit(visual):
        raise PlaygroundError("LeGrad needs an open_clip VisionTransformer image tower with standard attention "
                              "blocks; occlusion works on any model.")
    n, _, size, _ = x.shape
    t = _unit_text(text, x.device)
    idx = _class_index(class_index, n, len(t), x.device)
    depth = len(visual.transformer.resblocks)
    chosen = list(range(depth)) if layers is None else sorted({int(i) % depth for i in layers})
    with torch.enable_grad():
        tokens, attns, _ = _vit_forward(visual, x.detach().requires_grad_(True))
        total = 0.0
        for layer in chosen:
            feats = visual.ln_post(tokens[layer].mean(dim=1))  # the block's tokens read out as an image embedding
            if visual.proj is not None:
                feats = feats @ visual.proj
            score = _score(feats, t, idx, "log-probability" if target == "probability" else target, logit_scale)
            grad = torch.autograd.grad(score.sum(), attns[layer], retain_graph=True)[0]  # (B, H, N, N)
            total = total + grad.clamp_min(0).mean(dim=(1, 2))[:, 1:]  # (B, N - 1): the patch columns
    side = int(round(math.sqrt(total.shape[1])))
    maps = total.detach().view(n, 1, side, side)
    lo = maps.amin(dim=(2, 3), keepdim=True)
    hi = maps.amax(dim=(2, 3), keepdim=True)
    maps = (maps - lo) / (hi - lo).clamp_min(1e-12)
    maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return maps.float().cpu().numpy()


# ------------------------------------------------------------------------------------------ dispatch
def gradient_method(bundle: Any) -> tuple[str, str, int] | None:
    """(method key, what it looks at, grid side) of the gradient method for this image tower, or None."""
    from open_clip.modified_resnet import ModifiedResNet

    visual = bundle.model.visual
    if isinstance(visual, ModifiedResNet):
        stage, side = grad_cam_stage(bundle)
        return "gradcam", f"at {stage} ({side} x {side} grid)", side
    if _is_vit(visual):
        size = bundle.image_size
        patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
        side = size // patch
        return "legrad", f"over {len(visual.transformer.resblocks)} blocks ({side} x {side} patches)", side
    return None


def _grad_cam_clip(bundle: Any, x: torch.Tensor, text: Any, class_index: Any, target: str,
                   logit_scale: float, stage: str | None = None) -> np.ndarray:
    visual = bundle.model.visual
    stage = stage or grad_cam_stage(bundle)[0]
    t = _unit_text(text, x.device)
    idx = _class_index(class_index, len(x), len(t), x.device)
    grad_target = "log-probability" if target == "probability" else target

    def forward(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, act = _resnet_forward(visual, inp, stage)
        return _score(feats, t, idx, grad_target, logit_scale), act

    return grad_cam(forward, x, size=x.shape[-1])


def heatmaps(bundle: Any, x: torch.Tensor, text: Any, class_index: Any = 0, *, methods: Sequence[str] | None = None,
             target: str = "probability", logit_scale: float = 100.0, batch_size: int = 256,
             progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """Every requested method's maps for a batch. ``methods``: keys of :data:`METHOD_NAMES`; default occlusion
    and the tower's gradient method. Shape: x (N, 3, S, S) -> {method: float32 (N, S, S)}."""
    grad = gradient_method(bundle)
    if methods is None:
        methods = ["occlusion"] + ([grad[0]] if grad else [])
    out: dict[str, np.ndarray] = {}
    for m in methods:
        if m == "occlusion":
            out[m] = occlusion(bundle, x, text, class_index, target=target, logit_scale=logit_scale,
                               batch_size=batch_size, progress=progress)
        elif m == "gradcam":
            out[m] = _grad_cam_clip(bundle, x, text, class_index, target, logit_scale)
        elif m == "legrad":
            out[m] = legrad(bundle, x, text, class_index, target=target, logit_scale=logit_scale)
        else:
            raise PlaygroundError(f"Unknown attribution method {m!r}; choose from {', '.join(METHOD_NAMES)}.")
    return out


# ------------------------------------------------------------------------------------------ trust
def pointing_game(maps: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Score maps against object masks. Shape: maps (N, H, W) float, masks (N, H, W) bool -> per image:

    - ``energy``: sum of the map's positive part inside the mask / its sum everywhere (energy-based pointing
      game); 0 for a map with no positive value;
    - ``hit``: whether the map's maximum lies inside the mask (pointing game, no tolerance); where several
      pixels share the maximum, the share of them inside (the expected hit of a random tie-break); 0 for a map
      with no positive value.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps and masks must both be (N, H, W); got {maps.shape} and {masks.shape}.")
    pos = np.clip(maps, 0, None).reshape(len(maps), -1)
    m = masks.reshape(len(masks), -1)
    total = pos.sum(axis=1)
    energy = np.where(total > 0, (pos * m).sum(axis=1) / np.where(total > 0, total, 1), 0.0)
    top = pos.max(axis=1, keepdims=True)
    at_max = (pos == top) & (top > 0)
    hit = np.where(at_max.any(axis=1), (at_max & m).sum(axis=1) / np.maximum(at_max.sum(axis=1), 1), 0.0)
    return {"energy": energy, "hit": hit}


def random_maps(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """The floor: i.i.d. uniform heat per pixel. Its expected energy and hit equal the mask's area share."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def centre_maps(shape: tuple[int, int, int]) -> np.ndarray:
    """A map that knows nothing about the image: a Gaussian blob on the centre (sigma = side / 4). Built-in
    shapes sit near the centre, so a method must beat this prior, not only random heat, to show it looks."""
    n, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    blob = np.exp(-(((yy - (h - 1) / 2) / (h / 4)) ** 2 + ((xx - (w - 1) / 2) / (w / 4)) ** 2) / 2)
    return np.broadcast_to(blob, (n, h, w)).copy()


# ------------------------------------------------------------------------------------------ words
def word_importance(bundle: Any, image_features: np.ndarray, prompt: str, *,
                    logit_scale: float = 100.0) -> tuple[list[str], np.ndarray, float]:
    """Leave-one-word-out on a prompt: for each whitespace-separated word, how far the image's logit
    ``logit_scale * cos(image, text)`` falls when that word is removed (positive: the word helped).
    All shortened prompts are embedded in one call. Returns (words, drops (W,), the full prompt's logit)."""
    from core.clip import embed_texts

    words = str(prompt).split()
    if not words:
        raise PlaygroundError("Type a prompt with at least one word.")
    if len(words) > 40:
        raise PlaygroundError("That prompt has more than 40 words; CLIP reads at most 77 tokens anyway.")
    variants = [" ".join(words)] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    emb = embed_texts(bundle, variants)  # (W + 1, D), unit rows
    img = np.asarray(image_features, dtype=np.float32).reshape(-1)
    img = img / np.linalg.norm(img)
    logits = float(logit_scale) * (emb @ img)
    return words, (logits[0] - logits[1:]).astype(np.float32), float(logits[0])


# ------------------------------------------------------------------------------------------ the trust figure
@dataclass
class TrustReport:
    """Pointing games on fresh built-in shapes, over the images the model classified right.
    ``energy`` / ``hit``: method (and "random", "centre") -> mean over those images."""

    energy: dict[str, float]
    hit: dict[str, float]
    n_correct: int
    n_images: int
    seed: int


def trust_report(bundle: Any, *, n: int = 60, seed: int = 3, target: str = "probability",
                 logit_scale: float = 100.0, template: str = "a {}", methods: Sequence[str] | None = None,
                 progress: ProgressFn | None = None) -> TrustReport:
    """How far each method's heat lands on the object: ``n`` fresh shapes (``seed``) at the model's image size,
    zero-shot on the shape names with ``template``, then the pointing games of :func:`pointing_game` against
    :func:`core.data.shape_masks` (>= half covered) on the correctly classified ones, with the random and
    centre-blob baselines beside them."""
    from core.clip import zero_shot, zero_shot_weights
    from core.data import load_dataset, shape_masks

    shapes = load_dataset("shapes", n=n, size=max(8, min(128, bundle.image_size)), seed=seed)
    w = zero_shot_weights(bundle, shapes.classes["shape"], [template])
    x = model_inputs(bundle, shapes.images)
    with torch.no_grad():
        feats = F.normalize(bundle.model.encode_image(x).float(), dim=-1).cpu().numpy()
    pred = zero_shot(bundle, feats, w).predictions
    ok = np.flatnonzero(pred == shapes.labels["shape"])
    masks = shape_masks(shapes)[ok] >= 0.5
    if masks.shape[-1] != bundle.image_size:  # shapes are drawn at most at 128 px; masks follow the model's view
        m = torch.from_numpy(masks.astype(np.float32))[:, None]
        masks = F.interpolate(m, size=(bundle.image_size,) * 2, mode="nearest")[:, 0].numpy() >= 0.5
    maps = heatmaps(bundle, x[ok], w, pred[ok], methods=methods, target=target, logit_scale=logit_scale,
                    progress=progress) if len(ok) else {}
    maps["random"] = random_maps(masks.shape, seed=seed)
    maps["centre"] = centre_maps(masks.shape)
    energy, hit = {}, {}
    for name, m in maps.items():
        res = pointing_game(m, masks) if len(ok) else {"energy": np.array([np.nan]), "hit": np.array([np.nan])}
        energy[name], hit[name] = float(res["energy"].mean()), float(res["hit"].mean())
    return TrustReport(energy, hit, int(len(ok)), int(n), int(seed))
