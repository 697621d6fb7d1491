"""core.owndata: a user's .zip becomes an ImageSet named by content; every refusal is a sentence."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from core import data as D
from core import owndata as O
from core.errors import DatasetError, PlaygroundError
from tests.ownzips import digits_entries, encode, photo_crops_zip, zip_of


def rgb(seed: int, side: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)


def two_classes(n: int = 30, **kw) -> list[tuple[str, bytes]]:
    return [(f"set/{c}/{i}.png", encode(rgb(i + 100 * k, **kw))) for k, c in enumerate(("a", "b")) for i in range(n)]


def test_class_folders_give_labels_and_names_and_progress():
    calls = []
    ds = O.load_zip(zip_of(digits_entries(200)), name="My digits.zip", progress=lambda d, t: calls.append((d, t)))
    assert ds.name == "My digits" and len(ds) == 200 and ds.image_size == O.DEFAULT_OWN_SIZE
    assert ds.classes["class"] == [str(i) for i in range(10)]
    from sklearn.datasets import load_digits

    assert O.class_counts(ds) == {str(k): int(v) for k, v in enumerate(np.bincount(load_digits().target[:200]))}
    assert calls[0] == (0, 200) and calls[-1] == (200, 200)
    assert ds.spec["name"] == D.OWN_DATA and ds.spec["fingerprint"] == D.fingerprint(ds)
    assert "/" not in str(ds.spec) and "tmp" not in str(ds.spec)  # no path of the server in the spec


def test_flat_zip_with_labels_from_a_csv_inside():
    rows = ["image,label"] + [f"img{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(20)]
    entries = [(f"img{i}.png", encode(rgb(i))) for i in range(20)] + [("labels.csv", "\n".join(rows).encode())]
    ds = O.load_zip(zip_of(entries), name="pets.zip")
    assert ds.classes["class"] == ["cat", "dog"] and O.class_counts(ds) == {"cat": 10, "dog": 10}


def test_fingerprint_is_the_same_for_the_cli_path_and_the_upload_and_changes_with_content(tmp_path):
    data = zip_of(two_classes())
    path = tmp_path / "mine.zip"
    path.write_bytes(data)
    uploaded = O.load_zip(data, name="mine.zip")
    from_cli = D.load_dataset(str(path))  # what `core.cli train --dataset mine.zip` reads
    assert D.fingerprint(uploaded) == D.fingerprint(from_cli)
    assert D.dataset_identity(from_cli)["name"] == D.OWN_DATA and str(tmp_path) not in str(
        D.dataset_identity(from_cli))
    other = O.load_zip(zip_of(two_classes()[:-1]), name="mine.zip")  # one image fewer
    assert D.fingerprint(other) != D.fingerprint(uploaded)
    relabelled = uploaded.subset(np.arange(len(uploaded)))
    relabelled.labels["class"] = 1 - relabelled.labels["class"]
    assert D.fingerprint(relabelled) != D.fingerprint(uploaded)
    # an independent reference: sha256 over the same bytes in the documented order
    import hashlib
    import json

    h = hashlib.sha256(json.dumps({"shape": list(uploaded.images.shape), "classes": uploaded.classes},
                                  sort_keys=True).encode())
    h.update(uploaded.images.numpy().tobytes())
    h.update(uploaded.labels["class"].astype("<i8").tobytes())
    assert D.fingerprint(uploaded) == h.hexdigest()


def test_a_built_in_name_is_never_taken():
    assert O.load_zip(zip_of(two_classes()), name="shapes.zip").name == "shapes (yours)"
    assert D.dataset_identity(O.load_zip(zip_of(two_classes()), name="shapes.zip"))["name"] == D.OWN_DATA


def test_zip_slip_is_refused():
    entries = two_classes() + [("../../evil.png", encode(rgb(1)))]
    with pytest.raises(DatasetError, match="outside"):
        O.load_zip(zip_of(entries))


def test_zip_bomb_is_refused():
    entries = two_classes() + [("set/a/bomb.png", b"\0" * (3 * 1024**2))]
    with pytest.raises(DatasetError, match="zip bomb"):
        O.load_zip(zip_of(entries, compression=zipfile.ZIP_DEFLATED))


def test_pixel_bomb_is_skipped_with_a_sentence(monkeypatch):
    monkeypatch.setattr(D.limits, "MAX_IMAGE_PIXELS", 50 * 50)
    entries = two_classes() + [("set/a/huge.png", encode(rgb(7, side=60)))]
    ds = O.load_zip(zip_of(entries))
    assert ("a/huge.png", "that are too large") in ds.skipped_files and len(ds) == 60


def test_no_images_is_refused():
    with pytest.raises(DatasetError, match="no image files"):
        O.load_zip(zip_of([("readme.txt", b"hello"), ("data/x.csv", b"a,b")]))


def test_not_a_zip_is_refused():
    with pytest.raises(DatasetError, match="not a readable .zip"):
        O.load_zip(b"PK\x03\x04 this is not really a zip")


def test_one_class_is_refused():
    with pytest.raises(DatasetError, match="one class"):
        O.load_zip(zip_of([(f"set/a/{i}.png", encode(rgb(i))) for i in range(30)]))
    # one usable class after the unreadable files of the other are skipped
    broken = [(f"set/b/{i}.png", b"not an image") for i in range(5)]
    with pytest.raises(DatasetError, match="only one class"):
        O.load_zip(zip_of([(f"set/a/{i}.png", encode(rgb(i))) for i in range(30)] + broken))


def test_too_many_files_is_refused_before_unpacking(monkeypatch):
    monkeypatch.setattr(O, "MAX_OWN_IMAGES", 50)
    unpacked = []
    monkeypatch.setattr(D.folders, "safe_extract_zip", lambda *a, **k: unpacked.append(1))
    with pytest.raises(DatasetError, match="holds 60 images; at most 50"):
        O.load_zip(zip_of(two_classes()))
    assert not unpacked
    assert "up to 50 images" in O.caps_sentence()


def test_too_many_bytes_is_refused(monkeypatch):
    monkeypatch.setattr(D.limits, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(DatasetError, match="archives up to"):
        O.load_zip(zip_of(two_classes()))


def test_mixed_sizes_and_modes_are_accepted_and_converted():
    base = rgb(3, side=50)
    entries = [
        ("set/a/grey.png", encode(base, mode="L")),
        ("set/a/rgba.png", encode(base, mode="RGBA")),
        ("set/a/palette.png", encode(base, mode="P")),
        ("set/a/wide.jpg", encode(rgb(4, side=80)[:40], "JPEG")),
        ("set/b/small.png", encode(rgb(5, side=12))),
        ("set/b/big.png", encode(rgb(6, side=300))),
        ("set/b/gif.gif", encode(base, "GIF", mode="P")),
        ("set/b/broken.png", b"\x89PNG\r\n\x1a\n not really"),
        ("set/b/notes.txt", b"hi"),
        ("set/loose.png", encode(base)),
    ]
    ds = O.load_zip(zip_of(entries), size=32)
    assert len(ds) == 7 and ds.images.shape[1:] == (3, 32, 32)
    grey = ds.images[ds.ids.index("a/grey.png")]
    assert bool((grey[0] == grey[1]).all() and (grey[1] == grey[2]).all())  # grey repeated to RGB
    why = dict(ds.skipped_files)
    assert why == {"b/broken.png": "that are not readable images",
                   "b/notes.txt": "that are not images (by their extension)",
                   "loose.png": "outside any class sub-folder"}


def test_size_must_be_one_of_the_offered():
    with pytest.raises(DatasetError, match="size must be one of"):
        O.load_zip(zip_of(two_classes()), size=33)


def test_typed_folders_work_on_a_laptop_and_are_refused_alike_on_a_shared_server(tmp_path, monkeypatch):
    folder = tmp_path / "pets"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(10):
            (folder / c / f"{i}.png").write_bytes(encode(rgb(i)))
    monkeypatch.delenv("CP_SHARED_SERVER", raising=False)
    assert len(O.load_folder(str(folder))) == 20
    with pytest.raises(DatasetError, match="no folder"):
        O.load_folder(str(tmp_path / "missing"))
    monkeypatch.setenv("CP_SHARED_SERVER", "1")
    answers = set()
    for p in (folder, tmp_path / "missing", "/etc"):
        with pytest.raises(PlaygroundError) as err:
            O.load_folder(str(p))
        answers.add(str(err.value))
    assert len(answers) == 1 and "switched off" in answers.pop()


def test_defaults_and_sentences_fit_the_set():
    small = O.load_zip(zip_of(two_classes(15)))
    assert O.training_defaults(small)["batch_size"] == 16
    assert any("too few" in s for s in O.learnability(small))
    big = O.load_zip(zip_of(digits_entries(400)))
    assert O.training_defaults(big) == {"batch_size": 64, "image_size": 32, "recipe": "simclr"}
    assert O.learnability(big) == []
    from core.augment import PRESETS, recipe_for

    assert recipe_for(big.name) == PRESETS["simclr"]  # the photo recipe, not the shapes one
    lonely = O.load_zip(zip_of(two_classes(30) + [("set/c/0.png", encode(rgb(99)))]))
    assert any("one image" in s for s in O.learnability(lonely))


def test_the_held_out_split_keeps_every_class_of_own_data():
    from core.train import TrainConfig, Trainer

    entries = [(f"set/c{k}/{i}.png", encode(rgb(i + 100 * k))) for k in range(6) for i in range(3 + k)]
    entries += [(f"set/big/{i}.png", encode(rgb(1000 + i))) for i in range(60)]
    ds = O.load_zip(zip_of(entries))
    t = Trainer(TrainConfig(batch_size=16, steps=1, probe_size=20), ds, device="cpu")
    assert set(t.heldout.labels["class"]) == set(range(len(ds.classes["class"])))


def test_photo_crops_load_as_jpegs():
    ds = O.load_zip(photo_crops_zip(6, side=64, classes=3), name="crops.zip")
    assert len(ds) == 18 and len(ds.classes["class"]) == 3


# ------------------------------------------------------------------------------------------ checkpoints
def _trained_on(ds, tmp_path, steps: int = 2):
    from core.train import TrainConfig, Trainer

    t = Trainer(TrainConfig(batch_size=16, steps=steps, probe_size=20, knn_reference=40, eval_every=100), ds,
                device="cpu")
    t.run()
    return t, t.save(tmp_path / "mine.safetensors")


def test_a_checkpoint_names_uploaded_data_by_fingerprint_and_asks_for_it(tmp_path):
    import json

    from safetensors import safe_open

    from core.train import CheckpointNeedsDataset, Trainer

    ds = O.load_zip(zip_of(two_classes(15)), name="pets.zip")
    trainer, path = _trained_on(ds, tmp_path)
    with safe_open(str(path), framework="pt") as f:
        ident = json.loads(f.metadata()["dataset"])
    sidecar = path.with_suffix(".json").read_text()
    assert ident == {"name": "own", "title": "pets", "fingerprint": D.fingerprint(ds), "n": 30, "size": 32,
                     "classes": {"class": ["a", "b"]}}
    assert "cp-upload" not in sidecar and "/tmp" not in sidecar and str(tmp_path) not in sidecar
    with pytest.raises(CheckpointNeedsDataset) as err:  # none given: asked, never shapes
        Trainer.load(path)
    assert 'your own images "pets" (30 images of 32 px, 2 classes, fingerprint ' in str(err.value)
    assert "Provide that data" in str(err.value)
    again = O.load_zip(zip_of(two_classes(15)), name="renamed.zip")  # the same content under another name
    assert D.same_data(ident, again)
    loaded = Trainer.load(path, again)
    assert loaded.step_count == trainer.step_count
    assert not D.same_data(ident, O.load_zip(zip_of(two_classes(14)), name="pets.zip"))
    assert not D.same_data(ident, D.load_dataset("shapes", n=30))


def test_cli_training_on_a_zip_records_its_fingerprint_not_its_path(tmp_path, capsys):
    import json

    from core import cli

    zpath = tmp_path / "secret-folder" / "icons.zip"
    zpath.parent.mkdir()
    zpath.write_bytes(zip_of(two_classes(15)))
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", str(zpath), "--steps", "2", "--batch-size", "16", "--out", str(out)]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["dataset"]["name"] == "own" and sidecar["dataset"]["title"] == "icons"
    assert "secret-folder" not in json.dumps(sidecar)
    assert sidecar["dataset"]["fingerprint"] == D.fingerprint(O.load_zip(zpath.read_bytes(), name="icons.zip"))


def test_a_built_in_download_root_never_reaches_the_checkpoint():
    ds = D.load_dataset("shapes", n=30)
    ds.spec = {"name": "shapes", "options": {"n": 30, "size": 32, "seed": 0, "root": "/home/me/cache"}}
    assert D.dataset_identity(ds) == {"name": "shapes", "options": {"n": 30, "size": 32, "seed": 0}}


def test_describe_identity_shows_only_checked_fields():
    text = D.describe_identity({"name": "own", "title": "../../etc/passwd\n<script>", "n": "lots", "size": -1,
                                "fingerprint": "not hex", "classes": "x"})
    assert text == 'your own images "etc_passwd_script"'


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("make", ["digits"])
def test_the_default_run_beats_the_untrained_encoder_on_a_set_the_user_brings(make):
    """Issue 34's goal on data that is not the shapes: the digits written out as PNGs in class folders. Default
    TrainConfig, the batch training_defaults picks (measured 0.905 -> 0.975,
    benchmarks/quality/bench_own_images.py). The photo crops are left to the benchmark: untrained 0.988 of 84
    held-out crops leaves one image of room, too little for a test."""
    import torch

    from core.train import TrainConfig, Trainer
    from tests.ownzips import digits_zip

    data = digits_zip(1000) if make == "digits" else photo_crops_zip(60, side=64, seed=1)
    ds = O.load_zip(data, name=f"{make}.zip")
    cfg = TrainConfig(batch_size=O.training_defaults(ds)["batch_size"])
    with torch.random.fork_rng(devices=[]):
        trainer = Trainer(cfg, ds, device="cpu")
        untrained = trainer.evaluate().knn["class"]
        trainer.run()
    assert trainer.step_count == cfg.steps
    assert trainer.evals[-1].knn["class"] > untrained, (untrained, [e.knn["class"] for e in trainer.evals])
