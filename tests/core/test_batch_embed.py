"""Batch embedding of image files (core.batch_embed) and its Ray Data job (core.ray_embed).

The reference for every vector is core.embed.embed_imageset on core.data.load_dataset of the same folder,
in-process: the batch path must give the same vectors (1e-5) and skip, not die on, a corrupt file.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.batch_embed import (ImageRef, embed_paths, list_images, load_checkpoint_model, read_shards,
                              write_shard)
from core.data import load_dataset
from core.embed import EmbeddingSet, embed_imageset
from core.errors import PlaygroundError

N_IMAGES = 400
SIZE = 16


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """400 shapes as PNGs in one sub-folder per shape, plus one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    shapes = load_dataset("shapes", n=N_IMAGES, size=SIZE, seed=5)
    names = shapes.classes["shape"]
    for i, (img, lab) in enumerate(zip(shapes.images, shapes.labels["shape"])):
        d = root / names[lab]
        d.mkdir(exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:04d}.png")
    (root / names[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from core.models import EncoderConfig
    from core.train import TrainConfig, Trainer

    cfg = TrainConfig(encoder=EncoderConfig(width=8, projection_hidden=32), projection_dim=16, batch_size=16,
                      steps=2, probe_size=10, knn_reference=20, eval_every=1000)
    t = Trainer(cfg, load_dataset("shapes", n=100, size=SIZE), device="cpu")
    t.run()  # two steps, so BatchNorm running statistics are not the defaults
    return t.save(tmp_path_factory.mktemp("ckpt") / "run.safetensors")


@pytest.fixture(scope="module")
def reference(image_folder, checkpoint) -> EmbeddingSet:
    from core.train import Trainer

    model = Trainer.load(checkpoint, device="cpu").model
    return embed_imageset(model, load_dataset(image_folder, size=SIZE), device="cpu")


def _by_id(emb: EmbeddingSet) -> dict[str, np.ndarray]:
    return dict(zip(emb.ids, emb.vectors))


def test_checkpoint_model_matches_trainer_load(checkpoint):
    from core.train import Trainer

    model, size = load_checkpoint_model(checkpoint, device="cpu")
    full = Trainer.load(checkpoint, device="cpu").model
    assert size == SIZE and not model.training
    for (k, a), (_, b) in zip(model.state_dict().items(), full.state_dict().items()):
        assert torch.equal(a, b), k


def test_embed_paths_matches_embed_imageset_and_skips_bad_files(image_folder, checkpoint, reference):
    model, size = load_checkpoint_model(checkpoint, device="cpu")
    refs = list_images(image_folder)
    assert len(refs) == N_IMAGES + 1
    paths = [r.path for r in refs[:40]] + [str(image_folder / "missing.png")]
    paths.insert(3, next(r.path for r in refs if r.id.endswith("broken.png")))
    result = embed_paths(paths, model, size=size)
    assert result.ok.sum() == 40 and not result.ok[3] and not result.ok[-1]
    assert set(result.errors) == {paths[3], paths[-1]}
    expected = _by_id(reference)
    ids = [r.id for r in refs if not r.id.endswith("broken.png")][:40]
    np.testing.assert_allclose(result.vectors, np.stack([expected[i] for i in ids]), atol=1e-5, rtol=0)


def test_embed_paths_accepts_a_callable_embedder(image_folder):
    refs = list_images(image_folder)[:5]
    mean_colour = lambda images: images.reshape(len(images), -1, 3).mean(axis=1)  # (N, H, W, 3) uint8 -> (N, 3)
    result = embed_paths([r.path for r in refs], mean_colour, size=SIZE)
    pixels = np.stack([np.asarray(Image.open(r.path).convert("RGB")) for r in refs])
    np.testing.assert_allclose(result.vectors, pixels.reshape(5, -1, 3).mean(axis=1), rtol=1e-6)


def test_shards_round_trip_and_load_in_the_app(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(6, 4)).astype(np.float32)
    refs = [ImageRef(f"{c}/{i}.png", f"/data/{c}/{i}.png", c) for i, c in enumerate("abcabc")]
    write_shard(tmp_path / "s1.parquet", refs[3:], vecs[3:])
    write_shard(tmp_path / "s0.parquet", refs[:3], vecs[:3])
    emb = read_shards(tmp_path)
    order = np.argsort([r.id for r in refs])
    np.testing.assert_array_equal(emb.vectors, vecs[order])
    assert emb.ids == sorted(r.id for r in refs)
    assert emb.classes["class"] == ["a", "b", "c"] and emb.label_names("class")[:1] == ["a"]
    one = EmbeddingSet.from_file(tmp_path / "s0.parquet")  # the Explorer's upload path reads a shard too
    np.testing.assert_array_equal(one.vectors, vecs[:3])
    with pytest.raises(PlaygroundError, match="at most 10"):
        read_shards(tmp_path, max_values=10)
    (tmp_path / "junk.parquet").write_bytes(b"nope")
    with pytest.raises(PlaygroundError, match="junk.parquet"):
        read_shards(tmp_path)


def test_list_images_reads_a_csv_of_paths(tmp_path, image_folder):
    refs = list_images(image_folder)[:3]
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{r.path},{r.label}x\n" for r in refs))
    got = list_images(tmp_path / "list.csv")
    assert [g.path for g in got] == [r.path for r in refs] and got[0].label == refs[0].label + "x"
    with pytest.raises(ValueError, match="no image path column"):
        (tmp_path / "bad.csv").write_text("caption\nhello\n")
        list_images(tmp_path / "bad.csv")


@pytest.mark.slow  # a fresh interpreter imports torch and the CLI
def test_app_start_path_does_not_import_ray():
    code = "import sys, core.batch_embed, core.ray_embed, core.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False", out.stderr


@pytest.fixture
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_job_gives_the_in_process_vectors(ray_local, image_folder, checkpoint, reference, tmp_path):
    from core.ray_embed import run_embed_job

    result = run_embed_job(image_folder, checkpoint, tmp_path / "shards", actors=2, batch_size=64)
    assert result.total == N_IMAGES + 1 and result.written == N_IMAGES
    assert [Path(s).name for s in result.skipped] == ["broken.png"]  # skipped and counted, not fatal
    assert len(result.shards) >= 2  # written by the workers, several files
    emb = read_shards(tmp_path / "shards")
    assert sorted(emb.ids) == sorted(reference.ids)
    expected = _by_id(reference)
    np.testing.assert_allclose(emb.vectors, np.stack([expected[i] for i in emb.ids]), atol=1e-5, rtol=0)
    names = emb.classes["class"]
    ref_names = reference.classes["class"]
    ref_labels = dict(zip(reference.ids, reference.labels["class"]))
    assert [names[c] for c in emb.labels["class"]] == [ref_names[ref_labels[i]] for i in emb.ids]


def test_cli_merge_writes_one_file_the_explorer_uploads(tmp_path, capsys):
    from core.cli import main

    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    refs = [ImageRef(f"{c}/{i}.png", f"/x/{c}/{i}.png", c) for i, c in enumerate("abab")]
    write_shard(tmp_path / "shards" / "part-0.parquet", refs, vecs)
    assert main(["merge", str(tmp_path / "shards"), "--out", str(tmp_path / "set")]) == 0
    emb = EmbeddingSet.from_file(tmp_path / "set.npz")
    np.testing.assert_array_equal(emb.vectors, vecs[np.argsort([r.id for r in refs])])
    assert emb.classes["class"] == ["a", "b"]
    assert main(["merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "There is no file or folder" in capsys.readouterr().err
