"""Small data fixtures shared by the core tests: encoded image bytes and ImageFolder trees built on the fly."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def encode_image(rgb: tuple[int, int, int] | np.ndarray, size: tuple[int, int] = (20, 20), fmt: str = "PNG") -> bytes:
    """A solid-colour image (or the given (H, W, 3) uint8 array) encoded as ``fmt``."""
    if isinstance(rgb, np.ndarray):
        img = Image.fromarray(rgb)
    else:
        img = Image.new("RGB", size, rgb)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def make_image_folder(tmp_path: Path):
    """Build ``root/<class>/<i>.png`` with solid colours: ``make_image_folder({"red": (255, 0, 0)}, per_class=3)``."""

    def build(colours: dict[str, tuple[int, int, int]], per_class: int = 3, name: str = "pets") -> Path:
        root = tmp_path / name
        for cls, rgb in colours.items():
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (root / cls / f"{i:02d}.png").write_bytes(encode_image(rgb, size=(20 + 4 * i, 16)))
        root.mkdir(parents=True, exist_ok=True)
        return root

    return build


@pytest.fixture
def image_bytes():
    """The :func:`encode_image` helper, as a fixture (test modules do not import conftest)."""
    return encode_image
