"""core.data: built-in datasets match their sources, user data loads, and every bad input is refused clearly.

No test touches the network: an autouse fixture makes every outgoing connection fail.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import core.data as data
from core.data import (
    OFFLINE_DATASETS,
    ImageSet,
    ImageTooLarge,
    ImageUnreadable,
    available_datasets,
    decode_image,
    load_dataset,
    safe_extract_zip,
)
from core.errors import DatasetError, DownloadUnavailable

RED, GREEN, BLUE = (230, 20, 20), (20, 200, 40), (30, 40, 230)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails at once, as it does on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (blocked in tests)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n=600, size=32, seed=0)


# ---------------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------------
def test_shapes_is_deterministic_by_seed():
    a = load_dataset("shapes", n=120, seed=5)
    b = load_dataset("shapes", n=120, seed=5)
    c = load_dataset("shapes", n=120, seed=6)
    assert torch.equal(a.images, b.images)
    assert all(np.array_equal(a.labels[f], b.labels[f]) for f in a.factors)
    assert a.captions == b.captions and a.caption_pool == b.caption_pool
    assert not torch.equal(a.images, c.images)


def test_shapes_layout_factors_and_balance(shapes):
    assert shapes.images.dtype == torch.uint8 and shapes.images.shape == (600, 3, 32, 32)
    assert shapes.factors == ["shape", "colour", "size", "position", "background"]
    assert len(shapes.classes["shape"]) >= 5 and len(shapes.classes["colour"]) >= 6
    assert shapes.classes["size"] == ["small", "large"]
    assert shapes.classes["position"] == ["centre", "top left", "top right", "bottom left", "bottom right"]
    for f in shapes.factors:
        counts = np.bincount(shapes.labels[f], minlength=len(shapes.classes[f]))
        assert counts.min() > 0 and counts.max() - counts.min() <= 1, f  # every class, balanced
    assert shapes.ids[123] == "shapes/n600-s0/000123"
    other_seed = load_dataset("shapes", n=600, size=32, seed=1)
    assert not set(other_seed.ids) & set(shapes.ids)  # other shapes, other ids (Compare matches by id)
    smaller = load_dataset("shapes", n=600, size=16, seed=0)
    assert smaller.ids == shapes.ids  # the same shapes drawn at another size keep their ids
    assert shapes.spec == {"name": "shapes", "options": {"n": 600, "size": 32, "seed": 0}}
    assert shapes.image_size == 32 and len(shapes) == 600


def _foreground(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) -> (mask of shape pixels, background colour) using the border's median as background."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).astype(float)
    bg = np.median(border, axis=0)
    far = np.abs(img.astype(float) - bg).max(axis=2)
    return far > 0.6 * far.max(), bg


def test_shapes_pixels_agree_with_their_labels(shapes):
    palette = np.array(list(data.COLOURS.values()), dtype=float)
    palette /= np.linalg.norm(palette, axis=1, keepdims=True)
    backgrounds = np.array(list(data.BACKGROUNDS.values()), dtype=float)
    imgs = shapes.images.permute(0, 2, 3, 1).numpy()
    area = np.zeros(len(shapes))
    for i, img in enumerate(imgs):
        mask, bg = _foreground(img)
        fg = np.median(img[mask].astype(float), axis=0)
        # colour: the shape's pixels point the way of the labelled palette entry (brightness may vary)
        assert np.argmax(palette @ (fg / np.linalg.norm(fg))) == shapes.labels["colour"][i], shapes.captions[i]
        # background: the border is the labelled background level
        assert np.argmin(np.abs(backgrounds[:, 0] - bg.mean())) == shapes.labels["background"][i]
        # position: the shape's centroid lies in the labelled region
        ys, xs = np.nonzero(mask)
        cx, cy = xs.mean() / 32, ys.mean() / 32
        where = shapes.classes["position"][shapes.labels["position"][i]]
        if where == "centre":
            assert abs(cx - 0.5) < 0.12 and abs(cy - 0.5) < 0.12, (where, cx, cy)
        else:
            assert (cy < 0.45) == where.startswith("top") and (cx < 0.45) == where.endswith("left"), (where, cx, cy)
        area[i] = mask.sum()
    for k in range(len(shapes.classes["shape"])):  # size: every large kind of shape is bigger than every small one
        of_kind = shapes.labels["shape"] == k
        small, large = area[of_kind & (shapes.labels["size"] == 0)], area[of_kind & (shapes.labels["size"] == 1)]
        assert small.max() < large.min()


def test_red_shapes_are_red_dominant(shapes):
    red = shapes.classes["colour"].index("red")
    for i in np.flatnonzero(shapes.labels["colour"] == red)[:40]:
        img = shapes.images[i].permute(1, 2, 0).numpy().astype(int)
        mask, _ = _foreground(img)
        r, g, b = img[mask].mean(axis=0)
        assert r > g + 100 and r > b + 100


def test_shape_kinds_differ_from_each_other():
    """Same colour, size, position and no jitter: every pair of shape kinds differs in many pixels."""
    k = len(data.SHAPES)
    ones = np.ones(k, dtype=np.float32)
    out = data.render_shapes(
        np.arange(k), 0.5 * ones, 0.5 * ones, data.SIZES["small"] * ones, 0 * ones,
        np.tile(np.float32([255, 0, 0]), (k, 1)), np.zeros((k, 3), np.float32), 32,
    )
    masks = out[:, 0] > 127
    for a in range(k):
        for b in range(a + 1, k):
            assert (masks[a] != masks[b]).sum() >= 6, (data.SHAPES[a], data.SHAPES[b])


def test_shapes_captions_follow_the_labels(shapes):
    for i in range(0, len(shapes), 7):
        name = {f: shapes.classes[f][shapes.labels[f][i]] for f in shapes.factors}
        where = "in the centre" if name["position"] == "centre" else f"at the {name['position']}"
        assert shapes.captions[i] == f"a {name['size']} {name['colour']} {name['shape']} {where}"
        pool = shapes.caption_pool[i]
        assert shapes.captions[i] in pool and len(set(pool)) == len(pool) >= 6
        assert {f"a {name['colour']} {name['shape']}", f"a {name['shape']}", f"a {name['colour']} shape",
                f"a {name['size']} {name['shape']}"} <= set(pool)
        others = [c for c in shapes.classes["colour"] if c != name["colour"]]
        assert not any(c in caption.split() for caption in pool for c in others)


def test_shapes_spec_rebuilds_the_same_set(shapes):
    again = load_dataset(**shapes.spec)
    assert torch.equal(again.images, shapes.images)
    small = load_dataset("shapes", n=10, size=8)
    assert small.images.shape == (10, 3, 8, 8)


@pytest.mark.parametrize(
    "opts, words",
    [
        ({"size": 4}, "between 8 and 128"),
        ({"size": 200}, "between 8 and 128"),
        ({"n": 0}, "between 1 and 200000"),
        ({"n": 250_000}, "between 1 and 200000"),
        ({"n": 2.5}, "whole number"),
        ({"n": True}, "whole number"),
        ({"colour": "red"}, "Unknown option colour"),
    ],
)
def test_shapes_refuses_bad_options(opts, words):
    with pytest.raises(DatasetError, match=words):
        load_dataset("shapes", **opts)


def test_shapes_refuses_sets_too_big_for_memory():
    with pytest.raises(DatasetError, match="memory"):
        load_dataset("shapes", n=200_000, size=128)


# ---------------------------------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------------------------------
def test_subset_and_split(shapes):
    sub = shapes.subset([5, 2, 9])
    assert torch.equal(sub.images, shapes.images[[5, 2, 9]])
    assert sub.ids == [shapes.ids[i] for i in (5, 2, 9)] and sub.captions[1] == shapes.captions[2]
    assert sub.labels["colour"].tolist() == shapes.labels["colour"][[5, 2, 9]].tolist()
    assert sub.spec == shapes.spec  # names the dataset it came from
    mask = np.zeros(len(shapes), bool)
    mask[:4] = True
    assert len(shapes.subset(mask)) == 4 and len(shapes.subset([])) == 0
    with pytest.raises(ValueError, match="0..599"):
        shapes.subset([600])

    train, test = shapes.split(0.25, seed=1)
    assert len(test) == 150 and len(train) == 450
    assert set(train.ids).isdisjoint(test.ids) and set(train.ids) | set(test.ids) == set(shapes.ids)
    assert train.ids == sorted(train.ids)  # original order kept
    again = shapes.split(0.25, seed=1)[1]
    assert again.ids == test.ids and shapes.split(0.25, seed=2)[1].ids != test.ids

    _, strat = shapes.split(0.2, seed=0, stratify="shape")
    counts = np.bincount(strat.labels["shape"], minlength=6)
    assert counts.tolist() == [20] * 6  # 100 of each shape, 20% of each
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        shapes.split(1.0)
    with pytest.raises(ValueError, match="factors are"):
        shapes.split(0.2, stratify="texture")


def test_to_float(shapes):
    x = shapes.subset(range(4)).to_float("cpu")
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32)
    assert torch.allclose(x * 255, shapes.images[:4].float())


def test_imageset_validates_what_it_is_given():
    imgs = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    ok = ImageSet(imgs, {"a": np.array([0, 1, 0])}, {"a": ["x", "y"]}, "t")
    assert ok.ids == ["0", "1", "2"] and ok.factors == ["a"] and ok.labels["a"].dtype == np.int64
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(imgs.float(), {"a": np.zeros(3, int)}, {"a": ["x"]}, "t")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ImageSet(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), {"a": np.zeros(3, int)}, {"a": ["x"]}, "t")
    with pytest.raises(ValueError, match="square"):
        ImageSet(torch.zeros(3, 3, 4, 5, dtype=torch.uint8), {"a": np.zeros(3, int)}, {"a": ["x"]}, "t")
    with pytest.raises(ValueError, match="one per image"):
        ImageSet(imgs, {"a": np.zeros(2, int)}, {"a": ["x"]}, "t")
    with pytest.raises(ValueError, match="0..1"):
        ImageSet(imgs, {"a": np.array([0, 1, 2])}, {"a": ["x", "y"]}, "t")
    with pytest.raises(ValueError, match="exactly the label factors"):
        ImageSet(imgs, {"a": np.zeros(3, int)}, {"b": ["x"]}, "t")
    with pytest.raises(ValueError, match="one caption per image"):
        ImageSet(imgs, {"a": np.zeros(3, int)}, {"a": ["x"]}, "t", captions=["c"])


# ---------------------------------------------------------------------------------------------------
# digits and photos
# ---------------------------------------------------------------------------------------------------
def test_digits_match_scikit_learn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    d = load_dataset("digits")
    assert d.images.shape == (1797, 3, 8, 8) and d.factors == ["digit"]
    expected = np.rint(ref.images * 255 / 16).astype(np.uint8)
    for c in range(3):  # grey repeated to RGB
        assert np.array_equal(d.images[:, c].numpy(), expected)
    assert np.array_equal(d.labels["digit"], ref.target)
    assert d.classes["digit"] == [str(i) for i in range(10)]
    assert d.captions is None  # only shapes, photos and tables come with captions
    big = load_dataset("digits", n=50, size=16)
    assert big.images.shape == (50, 3, 16, 16) and np.array_equal(big.labels["digit"], ref.target[:50])
    assert load_dataset(**big.spec).images.shape == (50, 3, 16, 16)


def test_photos_load_offline():
    p = load_dataset("photos", size=64)
    assert p.images.shape[1:] == (3, 64, 64) and len(p) >= 8
    names = p.classes["photo"]
    assert {"astronaut", "cat", "coffee", "rocket"} <= set(names)
    assert p.captions[names.index("cat")] == "a photo of a cat"
    assert p.skipped == 0
    # the astronaut photo is colourful, the cameraman is grey repeated to RGB
    cam = p.images[names.index("cameraman")]
    assert torch.equal(cam[0], cam[1]) and torch.equal(cam[1], cam[2])
    ast = p.images[names.index("astronaut")].float()
    assert (ast[0] - ast[2]).abs().mean() > 5


# ---------------------------------------------------------------------------------------------------
# your own data: folder, zip, csv, jsonl
# ---------------------------------------------------------------------------------------------------
def test_image_folder_loads_with_labels_from_sub_folders(make_image_folder, image_bytes):
    root = make_image_folder({"red": RED, "blue": BLUE}, per_class=3)
    (root / "blue" / "photo.jpg").write_bytes(image_bytes(BLUE, fmt="JPEG"))
    ds = load_dataset(root, size=16)
    assert ds.name == "pets" and ds.classes == {"class": ["blue", "red"]}
    assert ds.images.shape == (7, 3, 16, 16) and ds.skipped == 0
    assert ds.ids[0] == "blue/00.png" and "blue/photo.jpg" in ds.ids
    for img, lab in zip(ds.images, ds.labels["class"]):
        r, _, b = img.float().mean(dim=(1, 2)).tolist()
        assert (r > b) == (lab == 1)
    assert ds.captions is None
    assert ds.spec == {"name": str(root.resolve()), "options": {"size": 16, "max_images": 20000}}
    assert torch.equal(load_dataset(ds.spec["name"], **ds.spec["options"]).images, ds.images)
    seen = []
    capped = load_dataset(str(root), size=16, max_images=4, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (4, 4)
    assert len(capped) == 4 and set(capped.labels["class"].tolist()) == {0, 1}
    assert any("max_images" in n for n in capped.notes)


def test_folder_skips_corrupt_and_non_image_files_and_counts_them(make_image_folder, image_bytes):
    root = make_image_folder({"red": RED, "green": GREEN}, per_class=2)
    (root / "red" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (root / "red" / "notes.png").write_bytes(b"this is a text file with an image's name")
    (root / "green" / "readme.txt").write_text("hello")
    good = image_bytes(GREEN)
    (root / "green" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "green" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored, not counted
    ds = load_dataset(root, size=8)
    assert len(ds) == 4 and ds.skipped == 4
    text = " ".join(ds.notes)
    assert "not readable images" in text and "corrupt.png" in text and "readme.txt" in text


def test_folder_refusals(tmp_path, make_image_folder, image_bytes):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(empty)
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.png").write_bytes(image_bytes(RED))
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_dataset(loose)
    one = make_image_folder({"cats": RED}, per_class=3, name="one")
    with pytest.raises(DatasetError, match="at least two classes"):
        load_dataset(one)
    broken = tmp_path / "broken"
    for cls in ("a", "b"):
        (broken / cls).mkdir(parents=True)
        (broken / cls / "x.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="None of the 2 image files"):
        load_dataset(broken)
    with pytest.raises(DatasetError, match="There is no file or folder"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="Unknown dataset"):
        load_dataset("imagenet-21k")
    with pytest.raises(DatasetError, match="Unknown option"):
        load_dataset(empty, n=3)


def test_zip_of_a_folder_loads_like_the_folder(tmp_path, make_image_folder):
    root = make_image_folder({"red": RED, "blue": BLUE}, per_class=2)
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(root.rglob("*.png")):
            zf.write(f, f"pets/{f.relative_to(root).as_posix()}")  # wrapped in one top-level folder
    from_zip = load_dataset(archive, size=16)
    from_dir = load_dataset(root, size=16)
    assert torch.equal(from_zip.images, from_dir.images) and from_zip.ids == from_dir.ids
    assert from_zip.name == "pets" and from_zip.spec["name"] == str(archive.resolve())


def _table_fixture(tmp_path, image_bytes) -> Path:
    (tmp_path / "imgs").mkdir()
    for i, rgb in enumerate([RED, GREEN, BLUE, RED]):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(image_bytes(rgb))
    (tmp_path / "outside.png").write_bytes(image_bytes(RED))
    return tmp_path


def test_csv_with_captions_and_labels(tmp_path, image_bytes):
    base = _table_fixture(tmp_path, image_bytes)
    (base / "sub").mkdir()
    csv_path = base / "sub" / "captions.csv"
    csv_path.write_text(
        "image,caption,label\n"
        "../imgs/0.png,a red square,warm\n"
        "../imgs/1.png,\"a green square, bright\",cool\n"
        "../imgs/2.png,a blue square,cool\n"
        "../imgs/404.png,missing,cool\n",
        encoding="utf-8",
    )
    # The CSV sits in sub/, so ../imgs leaves its folder: all refused. Move it next to the images instead.
    with pytest.raises(DatasetError, match="leaves the table's folder"):
        load_dataset(csv_path)
    csv_path = base / "captions.csv"
    csv_path.write_text(
        "image,caption,label\nimgs/0.png,a red square,warm\nimgs/1.png,\"a green square, bright\",cool\n"
        "imgs/2.png,a blue square,cool\nimgs/404.png,missing,cool\n../outside.png,escapes,warm\n",
        encoding="utf-8",
    )
    ds = load_dataset(csv_path, size=8)
    assert ds.captions == ["a red square", "a green square, bright", "a blue square"]
    assert ds.classes == {"class": ["cool", "warm"]} and ds.labels["class"].tolist() == [1, 0, 0]
    assert ds.ids == ["imgs/0.png", "imgs/1.png", "imgs/2.png"] and ds.skipped == 2
    assert "do not exist" in " ".join(ds.notes) and "leaves the table's folder" in " ".join(ds.notes)
    assert ds.images[0, 0].float().mean() > 200 and ds.images[0, 2].float().mean() < 50


def test_jsonl_without_labels_uses_captions_as_the_factor(tmp_path, image_bytes):
    base = _table_fixture(tmp_path, image_bytes)
    rows = [{"file_name": f"imgs/{i}.png", "text": t} for i, t in enumerate(["warm", "grass", "sky", "warm"])]
    path = base / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    ds = load_dataset(path, size=8)
    assert ds.factors == ["caption"] and ds.classes["caption"] == ["grass", "sky", "warm"]
    assert ds.labels["caption"].tolist() == [2, 0, 1, 2] and ds.captions == ["warm", "grass", "sky", "warm"]
    path.write_text('{"file_name": "imgs/0.png", "text": "ok"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="Line 2"):
        load_dataset(path)
    path.write_text('{"picture": "imgs/0.png", "text": "ok"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="image paths"):
        load_dataset(path)
    assert len(load_dataset(path, image_column="picture", size=8)) == 1


def test_zip_holding_a_csv(tmp_path, image_bytes):
    archive = tmp_path / "captioned.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data.csv", "path,caption\na.png,a red thing\nb.png,a blue thing\n")
        zf.writestr("a.png", image_bytes(RED))
        zf.writestr("b.png", image_bytes(BLUE))
    ds = load_dataset(archive, size=8)
    assert ds.captions == ["a red thing", "a blue thing"] and ds.name == "captioned"


# ---------------------------------------------------------------------------------------------------
# decode_image and archive safety
# ---------------------------------------------------------------------------------------------------
def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression-bomb shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_decode_image_basics(image_bytes):
    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[:, :25] = RED
    rgb[:, 25:] = BLUE
    out = decode_image(image_bytes(rgb))
    assert out.shape == (30, 50, 3) and out.dtype == np.uint8 and np.array_equal(out, rgb)
    small = decode_image(image_bytes(rgb), size=10)  # centre crop (30 x 30) then resize
    assert small.shape == (10, 10, 3)
    assert small[:, 0, 0].min() > 200 and small[:, -1, 2].min() > 200
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent: laid over white
    assert decode_image(image_bytes(rgba)).min() == 255
    grey = decode_image(image_bytes(np.full((5, 5), 77, np.uint8)))
    assert grey.shape == (5, 5, 3) and (grey == 77).all()


def test_decode_image_refusals(monkeypatch, image_bytes):
    with pytest.raises(ImageUnreadable, match="not an image in a format this app reads"):
        decode_image(b"hello, I am text pretending to be a PNG")
    with pytest.raises(ImageUnreadable, match="empty"):
        decode_image(b"")
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        decode_image(_png_claiming(100_000, 100_000))  # 10 gigapixels claimed by a ~100-byte file
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        decode_image(_png_claiming(8000, 6000))  # 48 MP: under Pillow's own limit, over ours
    monkeypatch.setattr(data.limits, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageTooLarge, match="1000 x 1000"):
        decode_image(image_bytes((1, 2, 3), size=(1000, 1000)))
    assert decode_image(image_bytes((1, 2, 3), size=(20, 20))).shape == (20, 20, 3)  # under the cap
    monkeypatch.setattr(data.limits, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(ImageTooLarge, match="images up to"):
        decode_image(bytes(101))
    assert isinstance(ImageTooLarge("x"), DatasetError) and isinstance(ImageUnreadable("x"), ValueError)


def test_decode_errors_are_plain_sentences(image_bytes):
    """A damaged file says so in words; Pillow's internals (format codes such as 'MPO', struct errors) stay
    in the log."""
    jpeg = image_bytes(np.full((64, 64, 3), 128, np.uint8), fmt="JPEG")
    with pytest.raises(ImageUnreadable) as err:
        decode_image(jpeg[: len(jpeg) // 2])  # cut short
    assert str(err.value) == "The image file is damaged or cut short, so it could not be decoded."
    with pytest.raises(ImageUnreadable) as err:
        decode_image(b"GIF89a" + bytes(40))
    assert str(err.value) == "The file is not an image in a format this app reads (PNG, JPEG, GIF, BMP, WebP, " \
                             "TIFF or PPM)."


def test_decode_image_never_touches_the_warnings_filters(monkeypatch, image_bytes):
    """warnings.catch_warnings swaps process-wide state and is not thread-safe; Streamlit decodes uploads on
    several threads, so decoding must not use it."""
    import warnings

    def refuse(*args, **kwargs):
        raise AssertionError("decode_image used warnings.catch_warnings")

    monkeypatch.setattr(warnings, "catch_warnings", refuse)
    assert decode_image(image_bytes((10, 20, 30), size=(16, 16))).shape == (16, 16, 3)
    with pytest.raises(ImageTooLarge):
        decode_image(_png_claiming(100_000, 100_000))


def test_folder_skips_an_image_over_the_pixel_cap(monkeypatch, make_image_folder, image_bytes):
    root = make_image_folder({"red": RED, "blue": BLUE}, per_class=2)
    (root / "red" / "huge.png").write_bytes(image_bytes(RED, size=(200, 200)))
    monkeypatch.setattr(data.limits, "MAX_IMAGE_PIXELS", 30 * 30)
    ds = load_dataset(root, size=8)
    assert len(ds) == 4 and ds.skipped == 1 and "huge.png" in " ".join(ds.notes)


def _zip_with(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, body)
    return path


@pytest.mark.parametrize(
    "evil", ["../evil.png", "/abs.png", "ok/../../evil.png", "C:/evil.png", "a\\..\\..\\evil.png"]
)
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, image_bytes, evil):
    archive = _zip_with(tmp_path / "slip.zip", {"cls/fine.png": image_bytes(RED), evil: image_bytes(BLUE)})
    target = tmp_path / "a" / "b" / "target"
    with pytest.raises(DatasetError, match="refused"):
        safe_extract_zip(archive, target)
    assert not list(tmp_path.rglob("evil.png")) and not list(tmp_path.rglob("abs.png"))
    assert not target.exists() or not any(target.rglob("*"))  # checked before a byte was written
    with pytest.raises(DatasetError, match="refused"):
        load_dataset(archive)


def test_zip_with_a_symlink_is_refused(tmp_path):
    info = zipfile.ZipInfo("link.png")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        safe_extract_zip(tmp_path / "link.zip", tmp_path / "out")


def test_zip_bombs_and_caps(tmp_path, monkeypatch, image_bytes):
    bomb = _zip_with(tmp_path / "bomb.zip", {"a/zeros.bmp": bytes(8 * 1024**2)})  # 8 MB of zeros, ~8 KB packed
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DatasetError, match="zip bomb"):
        safe_extract_zip(bomb, tmp_path / "out1")
    ok = _zip_with(tmp_path / "ok.zip", {f"c{i}/{j}.png": image_bytes(RED) for i in range(2) for j in range(3)})
    assert len(list(safe_extract_zip(ok, tmp_path / "out2").rglob("*.png"))) == 6
    monkeypatch.setattr(data.limits, "MAX_ZIP_ENTRIES", 5)
    with pytest.raises(DatasetError, match="at most 5 are accepted"):
        safe_extract_zip(ok, tmp_path / "out3")
    monkeypatch.setattr(data.limits, "MAX_ZIP_ENTRIES", 60_000)
    monkeypatch.setattr(data.limits, "MAX_UNZIPPED_BYTES", 100)
    with pytest.raises(DatasetError, match="would unpack to"):
        safe_extract_zip(ok, tmp_path / "out4")
    monkeypatch.setattr(data.limits, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(DatasetError, match="archives up to"):
        load_dataset(ok)
    with pytest.raises(DatasetError, match="archives up to"):
        safe_extract_zip(ok.read_bytes(), tmp_path / "out5")


def test_not_a_zip(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not really")
    with pytest.raises(DatasetError, match="not a readable .zip"):
        load_dataset(fake)


def test_oversized_table_is_refused(tmp_path, monkeypatch, image_bytes):
    base = _table_fixture(tmp_path, image_bytes)
    (base / "t.csv").write_text("image,caption\nimgs/0.png,a red square\n" + "x,y\n" * 100)
    monkeypatch.setattr(data.limits, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(DatasetError, match="tables up to"):
        load_dataset(base / "t.csv")


# ---------------------------------------------------------------------------------------------------
# downloads (network blocked by the autouse fixture)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion_mnist", "stl10"])
def test_download_without_network_fails_fast_naming_offline_datasets(tmp_path, name):
    data.downloads.torchvision_class(name)  # import torchvision first: its import time is not the probe's
    start = time.monotonic()
    with pytest.raises(DownloadUnavailable) as err:
        load_dataset(name, root=tmp_path)
    assert time.monotonic() - start < 5.0  # the requirement: fail within seconds, not a minute of retries
    message = str(err.value)
    assert "network is unreachable" in message
    assert all(d in message for d in OFFLINE_DATASETS) and "folder or .zip" in message
    assert isinstance(err.value, DatasetError)


def test_download_probe_gives_up_on_a_hanging_network(tmp_path, monkeypatch):
    """A connection attempt that never returns (DNS stuck, packets dropped) is abandoned at the deadline."""
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(30)
        raise OSError("gave up")

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(data.downloads, "PROBE_TIMEOUT", 0.2)
    data.downloads.torchvision_class("cifar10")
    start = time.monotonic()
    try:
        with pytest.raises(DownloadUnavailable, match="unreachable"):
            load_dataset("cifar10", root=tmp_path)
    finally:
        release.set()
    assert time.monotonic() - start < 5.0


def _idx(path: Path, arr: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, bytes."""
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_cached_dataset_loads_without_network(tmp_path):
    raw = tmp_path / "torchvision" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    for prefix in ("train", "t10k"):
        _idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    ds = load_dataset("mnist", root=tmp_path, n=10)
    assert ds.images.shape == (10, 3, 28, 28) and ds.factors == ["digit"]
    assert np.array_equal(ds.images[:, 1].numpy(), images[:10])
    assert ds.labels["digit"].tolist() == labels[:10].tolist()
    assert ds.spec == {"name": "mnist", "options": {"split": "train", "size": 28, "n": 10, "root": str(tmp_path)}}
    assert load_dataset("mnist", root=tmp_path, split="test", size=14).images.shape == (12, 3, 14, 14)
    with pytest.raises(DatasetError, match="split must be one of"):
        load_dataset("mnist", root=tmp_path, split="val")


def test_available_datasets_lists_offline_ones_first():
    names = list(available_datasets())
    assert names[:3] == list(OFFLINE_DATASETS)
    assert {"cifar10", "mnist", "fashion_mnist", "stl10"} <= set(names)
    assert all(isinstance(v, str) and v for v in available_datasets().values())
    assert re.search("offline", available_datasets()["shapes"], re.I)
