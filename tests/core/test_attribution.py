"""core.attribution against independent references: a brute-force occlusion loop, Grad-CAM by hand on a two-layer
CNN, the pointing game on hand-made masks, a model that only looks at one region, leave-one-word-out computed
directly, and the step-by-step tower forwards against open_clip's own. Tiny random models, no network."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import core.attribution as A
import core.clip as cc
from core.data import BACKGROUNDS, COLOURS, load_dataset, shape_masks

RN_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
VIT_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def _bundle(tmp_path_factory, cfg, name):
    from open_clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(**json.loads(json.dumps(cfg)))
    folder = tmp_path_factory.mktemp(name)
    cc.export_local_dir(model, json.loads(json.dumps(cfg)), folder, half=False)
    return cc.load_clip(f"local-dir:{folder}", device="cpu")


@pytest.fixture(scope="module")
def rn(tmp_path_factory):
    return _bundle(tmp_path_factory, RN_CFG, "rn")


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return _bundle(tmp_path_factory, VIT_CFG, "vit")


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n=24, size=32, seed=31)


def _text(bundle, names=("circle", "square", "star")):
    return cc.zero_shot_weights(bundle, list(names), ["a {}"])


# ------------------------------------------------------------------------------------------ occlusion
@pytest.mark.parametrize("target", ["similarity", "probability"])
def test_occlusion_equals_a_brute_force_loop_over_patches(rn, shapes, target):
    x = A.model_inputs(rn, shapes.images[:3])
    w = _text(rn)
    cls = np.array([0, 2, 1])
    got = A.occlusion(rn, x, w, cls, target=target, logit_scale=30.0, patch=8, stride=4, batch_size=50)
    t = torch.from_numpy(w.weights.T)

    def score(img, c):
        f = F.normalize(rn.model.encode_image(img[None]), dim=-1)
        sims = (f @ t.T)[0]
        return float(sims[c] if target == "similarity" else torch.softmax(30.0 * sims, 0)[c])

    want = np.zeros((3, 32, 32))
    count = np.zeros((32, 32))
    starts = list(range(0, 32 - 8 + 1, 4))
    with torch.no_grad():
        for i in range(3):
            base = score(x[i], cls[i])
            for top in starts:
                for left in starts:
                    img = x[i].clone()
                    img[:, top:top + 8, left:left + 8] = 0.0
                    want[i, top:top + 8, left:left + 8] += base - score(img, cls[i])
                    if i == 0:
                        count[top:top + 8, left:left + 8] += 1
    np.testing.assert_allclose(got, want / count, atol=2e-5)


def test_occlusion_windows_cover_every_pixel_and_reach_the_border():
    win = A.occlusion_windows(30, patch=8, stride=4)  # 0, 4, ..., 20, then 22 so the last ends at 30
    assert win.shape == (7 * 7, 30, 30) and bool(win.any(0).all())
    assert bool(win[-1, 29, 29]) and int(win[0].sum()) == 64
    assert len(A.occlusion_windows(32)) == 15 * 15 and int(A.occlusion_windows(32)[0].sum()) == 16  # patch 4
    assert len(A.occlusion_windows(224)) == 7 * 7 and int(A.occlusion_windows(224)[0].sum()) == 56 ** 2
    with pytest.raises(Exception, match="patch"):
        A.occlusion_windows(32, patch=40)


class _RegionTower(nn.Module):
    """Image features (2,) = (mean red of rows 4-11 x cols 20-27, 1): nothing else reaches the output."""

    def encode_image(self, x):
        return torch.stack([x[:, 0, 4:12, 20:28].mean(dim=(1, 2)), torch.ones(len(x))], dim=1)


def test_a_model_that_only_sees_one_region_gets_its_heat_there():
    bundle = SimpleNamespace(model=_RegionTower(), device=torch.device("cpu"))
    x = torch.rand(2, 3, 32, 32) + 1.0  # positive red everywhere: hiding the region lowers the score
    heat = A.occlusion(bundle, x, np.array([[1.0, 0.0], [0.0, 1.0]]), 0, target="similarity", patch=8, stride=4)
    region = np.zeros((32, 32), bool)
    region[4:12, 20:28] = True
    windows = A.occlusion_windows(32, 8, 4).numpy()
    touches = windows[(windows & region).any(axis=(1, 2))].any(axis=0)  # pixels under a window that sees it
    for h in heat:
        assert np.all(h[~touches] == 0) and np.all(h[region] > 0)
        assert region[np.unravel_index(h.argmax(), h.shape)]
    assert A.pointing_game(heat, np.stack([region, region]))["hit"].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------ Grad-CAM
def test_grad_cam_equals_a_hand_computation_on_a_two_layer_cnn():
    torch.manual_seed(1)
    conv1 = nn.Conv2d(3, 4, 3, padding=1)
    conv2 = nn.Conv2d(4, 2, 1)
    v = torch.randn(2)
    x = torch.randn(2, 3, 6, 6)

    def forward(inp):
        act = torch.relu(conv1(inp))  # (N, 4, 6, 6): the layer Grad-CAM looks at
        return conv2(act).mean(dim=(2, 3)) @ v, act

    got = A.grad_cam(forward, x)
    # By hand: A = relu(conv1 x) with an explicit sum over taps; score = sum_c v_c mean_ij (W2 A + b2)_c, so
    # dS/dA_kij = sum_c v_c W2[c, k] / 36 everywhere and alpha_k is that same number.
    xn = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    w1, b1 = conv1.weight.detach().numpy(), conv1.bias.detach().numpy()
    act = np.zeros((2, 4, 6, 6))
    for k in range(4):
        for di in range(3):
            for dj in range(3):
                act[:, k] += np.einsum("nchw,c->nhw", xn[:, :, di:di + 6, dj:dj + 6], w1[k, :, di, dj])
        act[:, k] += b1[k]
    act = np.maximum(act, 0)
    alpha = (v.numpy()[:, None] * conv2.weight.detach().numpy()[:, :, 0, 0]).sum(0) / 36.0  # (4,)
    want = np.maximum(np.einsum("k,nkhw->nhw", alpha, act), 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    up = A.grad_cam(forward, x, size=12)
    assert up.shape == (2, 12, 12)


def test_resnet_forward_step_by_step_is_open_clips(rn):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats, act = A._resnet_forward(rn.model.visual, x, "layer1")
        np.testing.assert_allclose(feats.numpy(), rn.model.visual(x).numpy(), atol=1e-5)
    assert act.shape[-2:] == (8, 8)
    assert A.grad_cam_stage(rn) == ("layer1", 8)  # 32 px: layer2 is only 4 x 4
    assert A.gradient_method(rn)[0] == "gradcam"


def test_grad_cam_on_clip_maps_every_image_on_its_own(rn, shapes):
    x = A.model_inputs(rn, shapes.images[:4])
    w = _text(rn)
    both = A.heatmaps(rn, x, w, [0, 1, 2, 0], methods=["gradcam"])["gradcam"]
    one = A.heatmaps(rn, x[2:3], w, 2, methods=["gradcam"])["gradcam"]
    assert both.shape == (4, 32, 32) and np.all(both >= 0)
    np.testing.assert_allclose(both[2], one[0], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ LeGrad
def test_vit_forward_step_by_step_is_open_clips(vit):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, attns, pooled = A._vit_forward(vit.model.visual, x)
        np.testing.assert_allclose(pooled.numpy(), vit.model.visual(x).numpy(), atol=1e-5)
    assert len(attns) == 2 and attns[0].shape == (2, 2, 17, 17)
    np.testing.assert_allclose(attns[0].sum(-1).numpy(), 1.0, atol=1e-5)


def test_legrad_equals_the_gradient_with_respect_to_one_injected_attention_map(vit):
    """With one layer, LeGrad is mean_{heads, queries} ReLU(dS/dA)[patch columns], min-max scaled. The
    reference feeds that block's attention in as a leaf tensor and differentiates the score by it."""
    visual = vit.model.visual
    x = torch.randn(1, 3, 32, 32)
    w = _text(vit)
    got = A.legrad(vit, x, w, 1, target="similarity", layers=[0])
    with torch.no_grad():
        h = visual._embeds(x)
        _, attn = A._block_with_attention(visual.transformer.resblocks[0], h)
    leaf = attn.clone().requires_grad_(True)
    blk = visual.transformer.resblocks[0]
    b, n, d = h.shape
    v = F.linear(blk.ln_1(h), blk.attn.in_proj_weight, blk.attn.in_proj_bias)[..., 2 * d:]
    v = v.reshape(b, n, 2, d // 2).transpose(1, 2)
    out = h + blk.attn.out_proj((leaf @ v).transpose(1, 2).reshape(b, n, d))
    out = out + blk.mlp(blk.ln_2(out))
    feat = F.normalize(visual.ln_post(out.mean(1)) @ visual.proj, dim=-1)
    score = feat[0] @ torch.from_numpy(w.weights[:, 1])
    (g,) = torch.autograd.grad(score, leaf)
    rel = g.clamp_min(0).mean(dim=(1, 2))[0, 1:].view(1, 1, 4, 4)
    rel = (rel - rel.min()) / (rel.max() - rel.min())
    want = F.interpolate(rel, size=(32, 32), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(got[0], want, atol=1e-5)
    full = A.legrad(vit, torch.randn(3, 3, 32, 32), w, [0, 1, 2])
    assert full.shape == (3, 32, 32) and full.min() >= 0 and full.max() <= 1 + 1e-6
    assert A.gradient_method(vit)[0] == "legrad"


# ------------------------------------------------------------------------------------------ pointing game
def test_pointing_game_on_hand_made_masks():
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :2, :2] = True  # top-left quarter
    maps = np.zeros((5, 4, 4))
    maps[0, 0, 0] = 3.0
    maps[0, 3, 3] = 1.0  # 3 of 4 units inside, maximum inside
    maps[1, 3, 3] = 2.0
    maps[1, 0, 1] = 2.0  # a tie at the maximum: one inside, one outside
    maps[1, 0, 0] = -5.0  # negative heat counts for nothing
    maps[3] = 1.0  # flat: energy = area share, ties everywhere: hit = area share
    maps[4, 2, 2] = 1.0  # all heat outside
    res = A.pointing_game(maps, np.repeat(mask, 5, axis=0))
    np.testing.assert_allclose(res["energy"], [0.75, 0.5, 0.0, 0.25, 0.0])
    np.testing.assert_allclose(res["hit"], [1.0, 0.5, 0.0, 0.25, 0.0])  # an all-zero map hits nothing
    with pytest.raises(ValueError):
        A.pointing_game(maps, mask)


def test_random_and_centre_baselines():
    masks = np.zeros((400, 16, 16), bool)
    masks[:, 4:12, 4:12] = True  # a quarter of the image, in the middle
    rnd = A.pointing_game(A.random_maps(masks.shape, seed=3), masks)
    assert abs(rnd["energy"].mean() - 0.25) < 0.01 and abs(rnd["hit"].mean() - 0.25) < 0.06
    cen = A.pointing_game(A.centre_maps(masks.shape), masks)
    assert cen["hit"].mean() == 1.0 and cen["energy"].mean() > 0.5


# ------------------------------------------------------------------------------------------ words
def test_leave_one_word_out_equals_a_direct_computation(rn):
    img = np.random.default_rng(0).normal(size=16).astype(np.float32)
    words, drops, full = A.word_importance(rn, img, "a photo of a red  star", logit_scale=50.0)
    assert words == ["a", "photo", "of", "a", "red", "star"]
    unit = img / np.linalg.norm(img)
    direct_full = 50.0 * float(cc.embed_texts(rn, ["a photo of a red star"])[0] @ unit)
    assert full == pytest.approx(direct_full, abs=1e-4)
    for i, word in enumerate(words):
        rest = " ".join(words[:i] + words[i + 1:])
        assert drops[i] == pytest.approx(direct_full - 50.0 * float(cc.embed_texts(rn, [rest])[0] @ unit), abs=1e-4)
    with pytest.raises(Exception, match="at least one word"):
        A.word_importance(rn, img, "   ")


# ------------------------------------------------------------------------------------------ shape masks
def test_shape_masks_are_the_generators_coverage():
    s = load_dataset("shapes", n=60, size=32, seed=8)
    m = shape_masks(s)
    fg = np.array(list(COLOURS.values()), np.float32)[s.labels["colour"]][:, :, None, None]
    bg = np.array(list(BACKGROUNDS.values()), np.float32)[s.labels["background"]][:, :, None, None]
    redrawn = np.clip(np.rint(bg + m[:, None] * (fg - bg)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(redrawn, s.images.numpy())  # every pixel of every channel, exactly
    np.testing.assert_array_equal(shape_masks(s.subset([5, 2])), m[[5, 2]])
    with pytest.raises(ValueError, match="shapes"):
        shape_masks(load_dataset("digits", n=5))


def test_shape_mask_of_a_circle_drawn_by_hand():
    from core.data import render_shapes

    r, size = 0.3, 32
    img = render_shapes(np.array([0]), np.array([0.5], np.float32), np.array([0.5], np.float32),
                         np.array([r], np.float32), np.zeros(1, np.float32),
                         np.array([[220, 35, 35]], np.float32), np.array([[15, 15, 15]], np.float32), size)
    s = load_dataset("shapes", n=1, size=size, seed=0)
    s.images = torch.from_numpy(img)
    s.labels["colour"][:] = 0  # red
    s.labels["background"][:] = 0  # black
    m = shape_masks(s)[0]
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    dist = np.hypot(xx - 0.5, yy - 0.5)
    assert np.all(m[dist < r - 1.5 / size] == 1) and np.all(m[dist > r + 1.5 / size] == 0)
    assert m.sum() == pytest.approx(np.pi * (r * size) ** 2, rel=0.03)
