"""The Explorer's shipped demo model (assets/demo, made by scripts/make_explorer_demo.py) has learned shape, so
its default map can group by shape (issue 30: the old one had learned background, size and position instead)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.neighbors import KNeighborsClassifier

from core.data import load_dataset
from core.models import EncoderConfig, build_model

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"


def test_demo_model_knows_shape_on_held_out_images():
    meta = json.loads((DEMO / "shapes_small_cnn.json").read_text())
    model = build_model(EncoderConfig.from_dict(meta["encoder"]), device="cpu")
    model.load_state_dict(load_file(str(DEMO / "shapes_small_cnn.safetensors")))
    size = int(meta["dataset"]["size"])
    train = load_dataset("shapes", n=2000, size=size, seed=int(meta["dataset"]["seed"]))
    shown = load_dataset("shapes", n=1000, size=size, seed=0)  # the images the Explorer shows: another seed

    def embed(ds):
        v = model.embed(ds.images, space="encoder").numpy().astype(np.float64)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with torch.no_grad():
        ref, test = embed(train), embed(shown)
    clf = KNeighborsClassifier(n_neighbors=10, metric="cosine").fit(ref, train.labels["shape"])
    accuracy = float((clf.predict(test) == shown.labels["shape"]).mean())
    assert accuracy >= 0.95, accuracy
