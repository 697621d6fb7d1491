"""core.atlas: every sprite lands where its offset says, untouched (or resized like PIL does), in one texture."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.atlas import MAX_ATLAS_SIDE, max_sprites, png_data_url, sprite_atlas
from core.errors import PlaygroundError


@pytest.mark.parametrize("n", [1, 2, 7, 100, 2000])
def test_each_sprite_is_cut_back_out_unchanged(n):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    atlas = sprite_atlas(images, cell=32)
    w, h = atlas.size
    assert w <= MAX_ATLAS_SIDE and h <= MAX_ATLAS_SIDE and w * h >= n * 32 * 32
    assert len({tuple(o) for o in atlas.offsets.tolist()}) == n  # no two sprites share a place
    for i in {0, n // 2, n - 1}:
        x, y = atlas.offsets[i]
        np.testing.assert_array_equal(atlas.image[y:y + 32, x:x + 32, :3], images[i])
        assert (atlas.image[y:y + 32, x:x + 32, 3] == 255).all()
    # unused cells stay transparent
    assert (atlas.image[..., 3] == 255).sum() == n * 32 * 32


def test_other_sizes_are_resized_like_pil_and_grey_is_expanded():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    atlas = sprite_atlas(images, cell=16)
    ref = np.asarray(Image.fromarray(images[2]).resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(atlas.sprite(2)[..., :3], ref)
    grey = sprite_atlas(rng.integers(0, 256, (2, 8, 8), dtype=np.uint8), cell=8)
    assert (grey.sprite(1)[..., 0] == grey.sprite(1)[..., 2]).all()


def test_bad_input_gets_a_sentence():
    with pytest.raises(PlaygroundError, match="uint8"):
        sprite_atlas(np.zeros((2, 8, 8, 3), np.float32), cell=8)
    with pytest.raises(PlaygroundError, match="do not fit"):
        sprite_atlas(np.zeros((max_sprites(64) + 1, 4, 4, 3), np.uint8), cell=64)
    with pytest.raises(PlaygroundError, match="at least one"):
        sprite_atlas(np.zeros((0, 8, 8, 3), np.uint8), cell=8)


def test_png_data_url_round_trips():
    import base64
    import io

    img = np.random.default_rng(1).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    url = png_data_url(img)
    assert url.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    np.testing.assert_array_equal(back, img)
