"""CLIP image and text embeddings: L2-normalised float32 arrays, batched, with progress; image embeddings
go through the disk cache (:mod:`core.clip.cache`). Also the one crop-resize-normalise (:func:`model_pixels`)
that embedding and attribution share, and the safe decoding of uploaded images."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.clip.cache import EmbeddingCache, _image_hashes
from core.clip.load import ClipBundle
from core.errors import PlaygroundError

MAX_TEXTS = 20_000  # prompts embedded in one call (class names x templates)

ProgressFn = Callable[[int, int], Any]


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
    (:class:`EmbeddingCache`, capped by ``$CP_CLIP_CACHE_MB``); a second run over the same images only hashes
    them, and vectors evicted since are recomputed.
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
