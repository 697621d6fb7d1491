"""The downloaded sets (torchvision, cached): ``"cifar10"``, ``"mnist"``, ``"fashion_mnist"``, ``"stl10"``.

A set already in the cache loads with no network at all. Otherwise :func:`core.network.reachable` is asked first,
so with no network the load fails within seconds with :class:`~core.errors.DownloadUnavailable` naming the offline
sets instead; files are fetched by us (first mirror that works, checksum checked, written atomically) and then
only extracted by torchvision.
"""
from __future__ import annotations

import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import network
from core.data.imageset import ImageSet
from core.data.limits import ProgressFn, check_memory, int_option
from core.data.pixels import nhwc_to_tensor, resize_batch
from core.errors import DatasetError, DownloadUnavailable
from core.files import atomic_write

__all__ = ["PROBE_TIMEOUT", "default_cache_dir", "torchvision_class", "load_torchvision"]

PROBE_TIMEOUT = 3.0  # seconds the network probe may take before a download is declared impossible
_OFFLINE_HINT = "shapes, digits, photos, or your own image folder or .zip"

_DOWNLOADS: dict[str, dict[str, Any]] = {
    "cifar10": {"title": "CIFAR-10", "factor": "class", "size": 32, "mb": 163, "splits": ("train", "test")},
    "mnist": {"title": "MNIST", "factor": "digit", "size": 28, "mb": 11, "splits": ("train", "test")},
    "fashion_mnist": {"title": "Fashion-MNIST", "factor": "class", "size": 28, "mb": 29, "splits": ("train", "test")},
    "stl10": {"title": "STL-10", "factor": "class", "size": 96, "mb": 2518, "splits": ("train", "test")},
}


def default_cache_dir() -> Path:
    """Where downloads are kept: ``$CP_CACHE_DIR``, else ``~/.cache/contrastive-playground``."""
    env = os.environ.get("CP_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "contrastive-playground"


def torchvision_class(name: str) -> Any:
    """The torchvision dataset class for a download name (importing torchvision, which takes seconds)."""
    from torchvision import datasets

    return {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST,
            "stl10": datasets.STL10}[name]


def _tv_urls(name: str, cls: Any, root: Path) -> list[tuple[list[str], Path, str | None]]:
    """(candidate urls, destination file, md5) for each file torchvision will look for before downloading."""
    if name in ("cifar10", "stl10"):
        return [([cls.url], root / cls.filename, cls.tgz_md5)]
    raw = root / cls.__name__ / "raw"
    return [([m + fname for m in cls.mirrors], raw / fname, md5) for fname, md5 in cls.resources]


def _download(urls: list[str], dest: Path, md5: str | None, report: Callable[[int], None]) -> None:
    """Fetch the first URL that works into ``dest`` (atomically), reporting bytes as they come."""
    from torchvision.datasets.utils import check_integrity

    if check_integrity(str(dest), md5):
        return
    errors = []
    for url in urls:
        def fetch(tmp: Path, url: str = url) -> None:
            with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
                report(-int(resp.headers.get("Content-Length") or 0))  # negative: a new file's expected size
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    report(len(chunk))
            if not check_integrity(str(tmp), md5):
                raise OSError("the file arrived damaged (checksum mismatch)")

        try:
            atomic_write(dest, fetch)
            return
        except OSError as err:  # URLError and socket timeouts are OSErrors
            errors.append(f"{urllib.parse.urlsplit(url).hostname}: {getattr(err, 'reason', err)}")
    raise OSError("; ".join(errors))


def load_torchvision(
    name: str, *, root: str | os.PathLike | None = None, split: str = "train", n: int | None = None,
    size: int | None = None, progress: ProgressFn | None = None,
) -> ImageSet:
    info = _DOWNLOADS[name]
    if split not in info["splits"]:
        raise DatasetError(f"split must be one of {', '.join(info['splits'])}, not {split!r}.")
    size = info["size"] if size is None else int_option("size", size, 8, 256)
    cache = (Path(root).expanduser() if root is not None else default_cache_dir()) / "torchvision"
    cls = torchvision_class(name)

    def build(download: bool) -> Any:
        if name == "stl10":
            return cls(str(cache), split=split, download=download)
        return cls(str(cache), train=split == "train", download=download)

    try:
        ds = build(download=False)  # already in the cache: no network at all
    except (OSError, ValueError) as err:  # present but unreadable (RuntimeError, "not found", is handled below)
        raise DatasetError(
            f"The cached copy of {info['title']} in {cache} could not be read ({err}); delete that folder and "
            "load it again."
        ) from None
    except RuntimeError:
        files = _tv_urls(name, cls, cache)
        all_urls = [u for urls, _, _ in files for u in urls]
        if not network.reachable(all_urls, timeout=PROBE_TIMEOUT):
            targets = network.probe_targets(all_urls)
            host = targets[0][0] if targets else "the download server"
            raise DownloadUnavailable(
                f"{info['title']} has to be downloaded first (about {info['mb']} MB), but the network is "
                f"unreachable from here ({host} did not answer). Use an offline dataset instead: "
                f"{_OFFLINE_HINT}."
            ) from None
        state = {"done": 0, "total": info["mb"] * 1024**2}

        def report(nbytes: int) -> None:
            if nbytes < 0:  # a new file announced its size
                state["total"] = max(state["total"], state["done"] - nbytes)
            else:
                state["done"] += nbytes
                if progress is not None:
                    progress(state["done"], state["total"])

        try:
            for urls, dest, md5 in files:
                _download(urls, dest, md5, report)
            cache.mkdir(parents=True, exist_ok=True)
            ds = build(download=True)  # finds the verified archives and only extracts them
        except (OSError, RuntimeError) as err:
            raise DownloadUnavailable(
                f"Downloading {info['title']} failed ({err}). Try again later, or use an offline dataset: "
                f"{_OFFLINE_HINT}."
            ) from None

    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    targets_raw = ds.labels if name == "stl10" else ds.targets
    if isinstance(targets_raw, torch.Tensor):
        targets_raw = targets_raw.numpy()
    target = np.asarray(targets_raw).astype(np.int64)
    total = len(data)
    n = total if n is None else int_option("n", n, 1, total)
    data, target = data[:n], target[:n]
    check_memory(n, size)
    if name == "stl10":
        images = torch.from_numpy(np.ascontiguousarray(data))  # already (N, 3, 96, 96)
    else:
        images = nhwc_to_tensor(data)  # (N, H, W, 3) for CIFAR, (N, H, W) grey for (Fashion-)MNIST
    images = resize_batch(images, size)
    class_names = [str(i) for i in range(10)] if name == "mnist" else [str(c) for c in ds.classes]
    options: dict[str, Any] = {"split": split, "size": size}
    if n != total:
        options["n"] = n
    if root is not None:
        options["root"] = str(root)
    if progress is not None:
        progress(1, 1)
    return ImageSet(
        images=images,
        labels={info["factor"]: target},
        classes={info["factor"]: class_names},
        name=name,
        ids=[f"{name}/{split}/{i:05d}" for i in range(n)],
        spec={"name": name, "options": options},
    )
