"""core.models: shapes for every arch and size, config validation, embed's mode handling, EMA maths."""
from __future__ import annotations

import json

import pytest
import torch

from core.models import (EncoderConfig, build_model, count_parameters, momentum_copy, momentum_update)



@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return build_model(EncoderConfig(width=16, projection_dim=8, projection_hidden=32), device="cpu")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model(EncoderConfig(arch="resnet18", projection_dim=8, projection_hidden=32), device="cpu")


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_small_cnn_shapes(small, size):
    x = torch.rand(3, 3, size, size)
    small.train()
    assert small(x).shape == (3, 8)
    assert small.encode(x).shape == (3, small.feature_dim) == (3, 64)  # 4 x width
    assert small.embed(x, space="projection").shape == (3, 8)


@pytest.mark.parametrize("size", [8, 16, 24, 32, 64])
def test_fast_cnn_shapes(size):
    fast = build_model(EncoderConfig(arch="fast_cnn", width=16, projection_dim=8, projection_hidden=32), device="cpu")
    x = torch.rand(3, 3, size, size)
    assert fast(x).shape == (3, 8)
    assert fast.embed(x).shape == (3, fast.feature_dim) == (3, 64)


def _conv_resolutions(model, size: int) -> list[int]:
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
             for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    model.embed(torch.rand(2, 3, size, size))
    for h in hooks:
        h.remove()
    return seen


def test_fast_cnn_is_the_small_cnn_without_a_full_resolution_layer():
    """Same layers and parameter shapes (a width means the same channels); only the first two convs' strides are
    swapped, so the first layer already works at half resolution."""
    small = build_model(EncoderConfig(width=16), device="cpu")
    fast = build_model(EncoderConfig(arch="fast_cnn", width=16), device="cpu")
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in small.state_dict().items()}
    assert count_parameters(fast) == count_parameters(small)
    assert _conv_resolutions(small, 24) == [24, 12, 6, 6, 3]
    assert _conv_resolutions(fast, 24) == [12, 12, 6, 6, 3]
    with pytest.raises(ValueError, match="even for fast_cnn"):
        EncoderConfig(arch="fast_cnn", width=15)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_resnet18_shapes(resnet, size):
    x = torch.rand(2, 3, size, size)
    resnet.eval()
    assert resnet(x).shape == (2, 8)
    assert resnet.embed(x).shape == (2, 512)


def test_resnet18_is_torchvision_with_cifar_stem(resnet):
    from torchvision.models import ResNet

    enc = resnet.encoder
    assert isinstance(enc, ResNet)
    assert enc.conv1.kernel_size == (3, 3) and enc.conv1.stride == (1, 1)
    assert isinstance(enc.maxpool, torch.nn.Identity) and isinstance(enc.fc, torch.nn.Identity)


def test_resnet18_64px_shape(resnet):
    assert resnet.embed(torch.rand(1, 3, 64, 64)).shape == (1, 512)


def test_projection_head_is_linear_bn_relu_linear(small):
    kinds = [type(m).__name__ for m in small.projector]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]


def test_normalisation_is_inside_and_uint8_accepted(small):
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    a = small.embed(x)
    b = small.embed(x.float() / 255)
    torch.testing.assert_close(a, b)


def test_embed_restores_mode_and_uses_no_grad(small):
    x = torch.rand(5, 3, 16, 16)
    small.train()
    out = small.embed(x, normalize=True)
    assert small.training
    assert not out.requires_grad
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
    small.eval()
    small.embed(x)
    assert not small.training


def test_embed_is_eval_mode_and_batch_independent(small):
    # eval mode uses running statistics, so batching must not change the result
    x = torch.rand(7, 3, 16, 16)
    small.train()
    torch.testing.assert_close(small.embed(x, batch_size=2), small.embed(x, batch_size=100), atol=1e-5, rtol=1e-5)


def test_embed_rejects_bad_arguments(small):
    with pytest.raises(ValueError, match="space"):
        small.embed(torch.rand(1, 3, 8, 8), space="latent")
    with pytest.raises(ValueError, match="channels"):
        small(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        small(torch.rand(3, 8, 8))


def test_config_round_trip_and_validation():
    cfg = EncoderConfig(arch="resnet18", width=48, projection_dim=32)
    assert EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="arch"):
        EncoderConfig(arch="vit")
    with pytest.raises(ValueError, match="width"):
        EncoderConfig(width=0)
    with pytest.raises(ValueError, match="width"):
        EncoderConfig(width=33)
    with pytest.raises(ValueError, match="whole number"):
        EncoderConfig(projection_dim=2.5)
    with pytest.raises(ValueError, match="Unknown EncoderConfig field"):
        EncoderConfig.from_dict({"arch": "small_cnn", "depth": 3})
    with pytest.raises(ValueError):
        build_model({"arch": "small_cnn"})


def test_count_parameters(small):
    manual = sum(p.numel() for p in small.parameters())
    assert count_parameters(small) == manual
    frozen = momentum_copy(small)
    assert count_parameters(frozen, trainable_only=True) == 0
    assert count_parameters(frozen) == manual


def test_momentum_copy_is_independent_and_frozen(small):
    target = momentum_copy(small)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in small.parameters())
    for a, b in zip(target.parameters(), small.parameters()):
        assert a.data_ptr() != b.data_ptr()
        torch.testing.assert_close(a, b)


def test_momentum_update_matches_hand_computation():
    torch.manual_seed(1)
    online = build_model(EncoderConfig(width=8, projection_dim=4, projection_hidden=8), device="cpu")
    target = momentum_copy(online)
    with torch.no_grad():  # make the two differ, parameters and buffers alike
        for p in online.parameters():
            p.add_(torch.randn_like(p))
        for name, b in online.named_buffers():
            if b.is_floating_point():
                b.add_(1.5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    m = 0.9
    momentum_update(target, online, m)
    online_sd = online.state_dict()
    param_names = {n for n, _ in online.named_parameters()}
    for name, value in target.state_dict().items():
        if name in param_names:
            expected = m * before[name] + (1 - m) * online_sd[name]
        else:  # buffers (BN running stats, counters) are copied
            expected = online_sd[name]
        torch.testing.assert_close(value, expected, msg=name)
    with pytest.raises(ValueError, match="momentum"):
        momentum_update(target, online, 1.5)
    other = build_model(EncoderConfig(width=16, projection_dim=4, projection_hidden=8), device="cpu")
    with pytest.raises(ValueError, match="same architecture"):
        momentum_update(target, other, 0.5)


def test_training_step_reduces_a_simple_loss():
    # the model trains: a few Adam steps pull two views of the same images together
    torch.manual_seed(0)
    model = build_model(EncoderConfig(width=8, projection_dim=8, projection_hidden=16), device="cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(16, 3, 16, 16)

    def loss_fn():
        z1 = torch.nn.functional.normalize(model(x), dim=1)
        z2 = torch.nn.functional.normalize(model(x.flip(3)), dim=1)
        logits = z1 @ z2.T / 0.2
        return torch.nn.functional.cross_entropy(logits, torch.arange(16))

    first = loss_fn().item()
    for _ in range(10):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < first
