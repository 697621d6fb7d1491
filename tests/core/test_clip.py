"""core.clip against open_clip's own functions, on a random-initialised tiny open_clip model in a temp local-dir.

Nothing touches the network: the hub forms are loaded with the hub's cache lookups patched to point at the
temp folder, and the offline path has the network probe patched to "unreachable".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core.clip as cc
import core.clip.cache as clip_cache
import core.clip.load as clip_load  # where load_clip looks up its probe and cache helpers
import core.clip.zeroshot as clip_zeroshot
from core.data import load_dataset
from core.errors import DownloadUnavailable, PlaygroundError

# A CLIP small enough to build in a blink: ModifiedResNet 1-1-1-1 at width 8, text width 16.
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
TINY_NAME = "cp-tiny-test"  # registered with open_clip.add_model_config for the "MODEL:file/tag" forms


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(**json.loads(json.dumps(TINY_CFG)))
    folder = tmp_path_factory.mktemp("tiny_clip")
    cc.export_local_dir(model, json.loads(json.dumps(TINY_CFG)), folder, half=False)
    cfg_file = tmp_path_factory.mktemp("cfg") / f"{TINY_NAME}.json"
    cfg_file.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg_file)
    return folder


@pytest.fixture(scope="module")
def bundle(tiny_dir):
    return cc.load_clip(f"local-dir:{tiny_dir}", device="cpu")


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def pil_images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)) for i in range(6)]


def reference_image_features(bundle, images) -> np.ndarray:
    """open_clip's plain loop: preprocess each PIL image, encode_image, normalise."""
    x = torch.stack([bundle.preprocess(im) for im in images])
    with torch.no_grad():
        return bundle.model.encode_image(x, normalize=True).numpy()


def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the network must not be touched")

    import open_clip

    monkeypatch.setattr(clip_load, "_hub_reachable", refuse)
    monkeypatch.setattr(open_clip, "download_pretrained", refuse)


# ------------------------------------------------------------------------------------------ loading
def test_local_dir_loads_in_eval_mode_with_open_clips_tokenizer(bundle):
    import open_clip

    assert not bundle.model.training
    assert all(not p.requires_grad for p in bundle.model.parameters())
    assert bundle.embed_dim == 16 and bundle.image_size == 32
    tok = open_clip.get_tokenizer(f"local-dir:{Path(bundle.spec.split(':', 1)[1])}")
    assert torch.equal(bundle.tokenizer(["a red circle"]), tok(["a red circle"]))


def test_weights_file_with_model_name_gives_the_same_model(bundle, tiny_dir):
    other = cc.load_clip(f"{TINY_NAME}:{tiny_dir / cc.WEIGHTS_NAME}", device="cpu")
    texts = ["a circle", "a blue star"]
    np.testing.assert_allclose(cc.embed_texts(other, texts), cc.embed_texts(bundle, texts), atol=1e-6)
    assert other.fingerprint != bundle.fingerprint or other.name != bundle.name


def test_pretrained_tag_loads_from_the_local_cache_without_network(bundle, tiny_dir, monkeypatch):
    import open_clip

    no_network(monkeypatch)
    pcfg = {"hf_hub": "someorg/tiny-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda m, t: pcfg if (m, t) == (TINY_NAME, "fake") else {})
    weights = str(tiny_dir / cc.WEIGHTS_NAME)
    monkeypatch.setattr(clip_load, "_hf_cached", lambda repo, name, cache_dir: weights
                        if (repo, name) == ("someorg/tiny-clip", "open_clip_model.safetensors") else None)
    tagged = cc.load_clip(TINY_NAME, pretrained="fake", device="cpu")
    assert tagged.mean == (0.5, 0.5, 0.5) and tagged.std == (0.25, 0.25, 0.25)  # the tag's preprocessing
    np.testing.assert_allclose(cc.embed_texts(tagged, ["a star"]), cc.embed_texts(bundle, ["a star"]), atol=1e-6)


def test_hf_hub_repo_loads_from_the_local_cache_without_network(bundle, tiny_dir, monkeypatch):
    no_network(monkeypatch)
    files = {cc.CONFIG_NAME: tiny_dir / cc.CONFIG_NAME, "open_clip_model.safetensors": tiny_dir / cc.WEIGHTS_NAME}
    monkeypatch.setattr(clip_load, "_hf_cached", lambda repo, name, cache_dir: str(files[name])
                        if repo == "someorg/tiny" and name in files else None)
    hub = cc.load_clip("hf-hub:someorg/tiny", device="cpu")
    np.testing.assert_allclose(cc.embed_texts(hub, ["a cross"]), cc.embed_texts(bundle, ["a cross"]), atol=1e-6)


@pytest.mark.parametrize("spec", ["ViT-B-32:laion2b_s34b_b79k", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"])
def test_offline_fails_fast_naming_the_offline_choices(spec, monkeypatch):
    import open_clip

    probes = []
    monkeypatch.setattr(clip_load, "_hf_cached", lambda *a: None)
    monkeypatch.setattr(clip_load, "_cached_tag_weights", lambda *a: None)
    monkeypatch.setattr(clip_load, "_hub_reachable", lambda timeout: probes.append(timeout) or False)
    monkeypatch.setattr(open_clip, "download_pretrained", lambda *a, **k: pytest.fail("no download offline"))
    monkeypatch.setattr(clip_load, "_create", lambda *a, **k: pytest.fail("open_clip must not be asked to download"))
    with pytest.raises(DownloadUnavailable) as err:
        cc.load_clip(spec, device="cpu")
    msg = str(err.value)
    assert "could not be downloaded" in msg and "mini-clip" in msg and "local-dir:" in msg
    assert probes == [cc.HUB_PROBE_TIMEOUT]


@pytest.mark.parametrize("spec,needle", [
    ("", "non-empty"), ("ViT-B-32", "names no weights"), ("No-Such-Model:openai", "no model called"),
    ("ViT-B-32:not-a-tag", "no pretrained tag"), ("local-dir:/nonexistent/folder", "was not found"),
    ("hf-hub:just-one-part", "org/name"),
])
def test_bad_specs_say_what_is_wrong(spec, needle, monkeypatch):
    no_network(monkeypatch)
    with pytest.raises(PlaygroundError, match=needle):
        cc.load_clip(spec, device="cpu")


def test_local_dir_without_weights_is_refused(tmp_path):
    (tmp_path / cc.CONFIG_NAME).write_text(json.dumps({"model_cfg": TINY_CFG}))
    with pytest.raises(PlaygroundError, match="safetensors"):
        cc.load_clip(f"local-dir:{tmp_path}", device="cpu")


# ------------------------------------------------------------------------------------------ embeddings
def test_embed_images_matches_open_clips_plain_loop(bundle, pil_images, cache_root):
    ours = cc.embed_images(bundle, pil_images, batch_size=4)
    assert ours.dtype == np.float32 and ours.shape == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, reference_image_features(bundle, pil_images), atol=1e-5)
    at_size = [im.resize((32, 32)) for im in pil_images]  # the batched fast path
    np.testing.assert_allclose(cc.embed_images(bundle, at_size, cache=False),
                               reference_image_features(bundle, at_size), atol=1e-5)


def test_imageset_fast_path_equals_the_pil_path(bundle, cache_root):
    shapes = load_dataset("shapes", n=10, size=32, seed=3)  # already at the model's 32 px
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in shapes.images]
    np.testing.assert_allclose(cc.embed_images(bundle, shapes, cache=False),
                               reference_image_features(bundle, pil), atol=1e-5)
    other_size = load_dataset("shapes", n=4, size=48, seed=3)  # goes through PIL + preprocess
    pil48 = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in other_size.images]
    np.testing.assert_allclose(cc.embed_images(bundle, other_size, cache=False),
                               reference_image_features(bundle, pil48), atol=1e-5)


def test_embed_texts_matches_encode_text(bundle):
    texts = ["a red circle", "a star", "a small blue cross at the top left"]
    with torch.no_grad():
        ref = bundle.model.encode_text(bundle.tokenizer(texts), normalize=True).numpy()
    ours = cc.embed_texts(bundle, texts, batch_size=2)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_progress_is_reported_per_batch(bundle, pil_images, cache_root):
    seen = []
    cc.embed_images(bundle, pil_images, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 6) and seen[-1] == (6, 6) and len(seen) == 3


def test_cache_hits_skip_the_model_and_return_the_same_vectors(bundle, pil_images, cache_root, monkeypatch):
    first = cc.embed_images(bundle, pil_images)
    assert list(cache_root.rglob("cache.db")), "embeddings were written to the cache folder"
    calls = []
    original = bundle.model.encode_image
    monkeypatch.setattr(bundle.model, "encode_image", lambda x, **k: calls.append(len(x)) or original(x, **k))
    clip_cache.close_all()  # as a new process: read back from disk
    again = cc.embed_images(bundle, pil_images)
    assert calls == [] and np.array_equal(first, again)
    # one new image: only it is encoded
    extra = Image.fromarray(np.full((32, 32, 3), 7, dtype=np.uint8))
    both = cc.embed_images(bundle, [*pil_images, extra])
    assert calls == [1] and np.array_equal(both[:6], first)


def test_cache_keys_follow_the_model(bundle, pil_images, tmp_path):
    a = cc.EmbeddingCache("model-a", root=tmp_path)
    b = cc.EmbeddingCache("model-b", root=tmp_path)
    keys = clip_cache._image_hashes(pil_images[:2])
    a.put(keys, np.ones((2, 16), dtype=np.float32))
    assert b.get(keys) == [None, None] and a.get(keys)[0] is not None


def test_embed_images_refuses_non_images(bundle):
    with pytest.raises(PlaygroundError, match="PIL images"):
        cc.embed_images(bundle, ["not an image"])


def test_uploads_decode_safely(image_bytes):
    from PIL import Image as PILImage

    good = image_bytes((255, 0, 0), size=(30, 20))
    bomb = _png_header_only(20_000, 20_000)
    images, problems = cc.images_from_uploads([("ok.png", good), ("broken.png", good[:40]),
                                               ("notes.txt", b"hello there"), ("bomb.png", bomb)])
    assert len(images) == 1 and isinstance(images[0][1], PILImage.Image) and images[0][0] == "ok.png"
    reasons = dict(problems)
    assert set(reasons) == {"broken.png", "notes.txt", "bomb.png"}
    assert "decompression bomb" in reasons["bomb.png"]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image (no pixel data): decoders must refuse it before allocating."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------ zero-shot
def test_zero_shot_weights_and_logits_match_open_clip(bundle, pil_images, cache_root):
    from open_clip import build_zero_shot_classifier

    names = ["circle", "square", "star", "red thing", "cat"]
    templates = cc.template_set("simple")
    ours = cc.zero_shot_weights(bundle, names, templates)
    ref = build_zero_shot_classifier(bundle.model, bundle.tokenizer, names, templates,
                                     num_classes_per_batch=2, device="cpu")
    assert ours.weights.shape == tuple(ref.shape) == (16, 5)
    np.testing.assert_allclose(ours.weights, ref.numpy(), atol=1e-5)
    res = cc.zero_shot(bundle, pil_images, ours)
    feats = torch.from_numpy(reference_image_features(bundle, pil_images))
    np.testing.assert_allclose(res.logits, (100.0 * feats @ ref).numpy(), atol=1e-4)  # logits are 100x: 1e-6 relative
    np.testing.assert_allclose(res.probs, torch.softmax(100.0 * feats @ ref, dim=1).numpy(), atol=1e-5)


def test_single_template_equals_open_clip_with_that_template(bundle):
    from open_clip import build_zero_shot_classifier

    names = ["circle", "star", "cross"]
    w = cc.zero_shot_weights(bundle, names, ["a {}", "a photo of a {}.", "a drawing of a {}"])
    ref = build_zero_shot_classifier(bundle.model, bundle.tokenizer, names, ["a photo of a {}."], device="cpu")
    np.testing.assert_allclose(w.single(1).weights, ref.numpy(), atol=1e-5)


def test_openai_templates_are_open_clips_own():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    ours = cc.template_set("openai")
    assert len(ours) == len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert [t.format("dog") for t in ours] == [f("dog") for f in OPENAI_IMAGENET_TEMPLATES]


def test_presets_include_imagenet_from_open_clip():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    presets = cc.classname_presets()
    assert presets["ImageNet (1,000)"] == list(IMAGENET_CLASSNAMES) and len(presets["CIFAR-10"]) == 10


@pytest.mark.parametrize("names,templates,needle", [
    (["cat"], ["{}"], "at least two"), (["cat", "cat"], ["{}"], "twice"), (["a", "b"], ["{0} {1}"], "format"),
    (["a", "b"], [], "at least one"),
])
def test_zero_shot_weights_refuses_bad_input(bundle, names, templates, needle):
    with pytest.raises(PlaygroundError, match=needle):
        cc.zero_shot_weights(bundle, names, templates)


def test_accuracy_report_matches_brute_force():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    rep = cc.accuracy_report(p, y, 5)
    cm = np.zeros((5, 5), int)
    for t, q in zip(y, p):
        cm[t, q] += 1
    assert np.array_equal(rep["confusion"], cm) and rep["accuracy"] == pytest.approx((y == p).mean())
    assert np.allclose(rep["per_class"][:4], [cm[c, c] / cm[c].sum() for c in range(4)])
    assert np.isnan(rep["per_class"][4])


def test_top_k_is_sorted_and_sums_at_most_one(bundle, pil_images, cache_root):
    res = cc.zero_shot(bundle, pil_images, cc.zero_shot_weights(bundle, ["a", "b", "c", "d"], ["{}"]),
                       logit_scale=10.0)
    idx, p = res.top_k(3)
    assert idx.shape == (6, 3) and np.all(np.diff(p, axis=1) <= 0) and np.all(p.sum(axis=1) <= 1 + 1e-6)
    assert np.array_equal(idx[:, 0], res.predictions)


# ------------------------------------------------------------------------------------------ retrieval, map
def test_search_ranks_match_brute_force():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    q = gallery[7] + 0.3 * gallery[11]
    idx, sims = cc.search(gallery, q / np.linalg.norm(q), k=10, exclude=7)
    brute = np.argsort(-(gallery @ (q / np.linalg.norm(q))))
    brute = brute[brute != 7][:10]
    assert np.array_equal(idx, brute) and 7 not in idx
    np.testing.assert_allclose(sims, gallery[brute] @ (q / np.linalg.norm(q)), atol=1e-5)


def test_query_arithmetic_and_modality_gap_follow_their_formulas():
    a, b, c = np.eye(3, dtype=np.float32)
    q = cc.combine_queries([(1, a), (1, b), (-1, c)])
    np.testing.assert_allclose(q, np.array([1, 1, -1]) / np.sqrt(3), atol=1e-6)
    with pytest.raises(PlaygroundError, match="cancel"):
        cc.combine_queries([(1, a), (-1, a)])
    img = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    txt = np.array([[0, 0, 2.0]])  # normalised inside
    assert cc.modality_gap(img, txt) == pytest.approx(np.linalg.norm([0.5, 0.5, -1.0]))


@pytest.mark.parametrize("n_images,method", [(50, "pca"), (1300, "pca")])
def test_joint_map_projects_images_and_prompts_together(n_images, method):
    from core.projection import project

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n_images, 8)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    per_template = rng.normal(size=(3, 4, 8)).astype(np.float32)  # (T, C, D)
    per_template /= np.linalg.norm(per_template, axis=2, keepdims=True)
    jm = cc.joint_map(feats, per_template, method=method, seed=0)
    keep = np.sort(np.random.default_rng(0).permutation(n_images)[:1000])
    assert np.array_equal(jm.keep, keep) and len(jm.keep) == min(n_images, 1000)
    prompts = per_template.reshape(12, 8)  # template-major: template 0's four classes first
    assert np.array_equal(jm.prompt_class, [0, 1, 2, 3] * 3)
    coords = project(np.vstack([feats[keep], prompts]), method=method, dim=2, seed=0)
    np.testing.assert_allclose(jm.image_xy, coords[:len(keep)], atol=1e-5)
    np.testing.assert_allclose(jm.prompt_xy, coords[len(keep):], atol=1e-5)
    assert jm.gap == pytest.approx(cc.modality_gap(feats, prompts))  # over all images, not just the drawn ones


def test_confusion_helpers_match_brute_force():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    cm = cc.accuracy_report(preds, labels, 4)["confusion"]
    mistakes = [(cm[t, p], -(t * 4 + p), t, p) for t in range(4) for p in range(4) if t != p]
    _, _, t, p = max(mistakes)
    assert cc.worst_confusion(cm) == (t, p)
    assert cc.worst_confusion(np.diag([3, 4, 5])) == (0, 0)  # no mistake at all
    assert np.array_equal(cc.cell_images(labels, preds, t, p),
                          [i for i in range(200) if labels[i] == t and preds[i] == p])
    assert len(cc.cell_images(labels, preds, t, p)) == cm[t, p]
    assert cc.parse_classnames(" circle, star\n\nsquare ,\n") == ["circle", "star", "square"]


# ------------------------------------------------------------------------------------------ the shipped model
@pytest.mark.slow
def test_shipped_mini_clip_classifies_fresh_shapes(cache_root, mini_clip):
    """The asset loads offline through load_clip and is right zero-shot on shapes it never saw."""
    bundle = mini_clip  # tests/conftest.py: cc.load_clip(cc.MINI_CLIP_SPEC, device="cpu"), loaded once
    fresh = load_dataset("shapes", n=60, size=32, seed=777)
    for factor, template in (("shape", "a {}"), ("colour", "a {} shape")):
        w = cc.zero_shot_weights(bundle, fresh.classes[factor], [template])
        acc = (cc.zero_shot(bundle, fresh, w).predictions == fresh.labels[factor]).mean()
        assert acc >= 0.9, f"{factor} zero-shot accuracy {acc:.2f} on 60 fresh shapes"
    size = sum(p.stat().st_size for p in cc.MINI_CLIP_DIR.iterdir())
    assert size <= 15 * 1024**2


@pytest.mark.parametrize("template,needle", [
    ("{:>200000000}", "not a plain template"),  # took 25 s and 835 MB before the fields were checked
    ("{:>5000}", "not a plain template"),
    ("{0.__class__.__mro__}", "not a plain template"),  # attribute lookups would print the server's objects
    ("{!r}", "not a plain template"),
    ("a photo of a cat", "every class would get the same prompt"),
    ("x" * 301 + "{}", "at most 300 characters"),
])
def test_templates_are_bounded_before_anything_is_formatted(bundle, template, needle):
    with pytest.raises(PlaygroundError, match=needle):
        cc.zero_shot_weights(bundle, ["cat", "dog"], ["a {}", template])


def test_every_shipped_template_set_passes_the_check(bundle):
    for name in ("one", "simple", "openai"):
        assert clip_zeroshot._check_templates(cc.template_set(name)) == cc.template_set(name)
    w = cc.zero_shot_weights(bundle, ["cat", "dog"], ["{{a}} {}", "a {0}."])
    assert w.weights.shape == (16, 2)
