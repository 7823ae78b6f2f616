"""Shared networks for diffusion and flow matching: shapes, labels (incl. the null label), time dependence."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.nn import LabelEmbedding, TimeMLP, UNet, sinusoidal_embedding


def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([0.0, 1.0, 500.0, 0.25])
    e = sinusoidal_embedding(t, 8)
    assert e.shape == (4, 8)
    assert torch.allclose(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos 0 = 1, sin 0 = 0
    w = 10000 ** (-torch.arange(4) / 4)
    assert torch.allclose(e[2], torch.cat([torch.cos(500 * w), torch.sin(500 * w)]), atol=1e-5)
    assert torch.allclose(e.pow(2).sum(1), torch.full((4,), 4.0), atol=1e-5)  # cos^2 + sin^2 per pair
    assert sinusoidal_embedding(t, 7).shape == (4, 7)
    assert math.isclose(float(sinusoidal_embedding(torch.tensor([3.0]), 2, max_period=1)[0, 1]), math.sin(3.0),
                        rel_tol=1e-6)


def test_label_embedding_has_null_row():
    emb = LabelEmbedding(10, 16)
    assert emb.weight.shape == (11, 16)
    null = emb.null_labels(3)
    assert null.tolist() == [10, 10, 10] and emb(null).shape == (3, 16)


def _perturb(net):
    torch.manual_seed(1)
    with torch.no_grad():  # zero-initialised output layers would make every output 0
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("size", [8, 28, 32])
def test_unet_shapes_labels_and_time(size):
    torch.manual_seed(0)
    net = _perturb(UNet(1 if size != 32 else 3, size, base=16, num_classes=10)).eval()
    c = net.in_channels
    x = torch.randn(2, c, size, size)
    t = torch.tensor([10.0, 900.0])
    with torch.no_grad():
        out = net(x, t, torch.tensor([3, 10]))  # a class and the null label
        assert out.shape == x.shape and torch.isfinite(out).all()
        # y=None is the null label
        assert torch.allclose(net(x, t, None), net(x, t, torch.tensor([10, 10])), atol=1e-6)
        # the label matters and the time matters
        assert not torch.allclose(net(x, t, torch.tensor([3, 3])), net(x, t, torch.tensor([4, 4])), atol=1e-4)
        assert not torch.allclose(net(x, t), net(x, t + 50), atol=1e-4)
        # a batch is processed example by example (GroupNorm, not BatchNorm)
        assert torch.allclose(net(x[:1], t[:1]), net(x, t)[:1], atol=1e-5)


def test_unet_unconditional_and_without_attention():
    net = _perturb(UNet(1, 8, base=8, mults=(1, 2), attention=False)).eval()
    x = torch.randn(3, 1, 8, 8)
    assert net(x, torch.full((3,), 5.0)).shape == x.shape
    assert not any(type(m).__name__ == "Attention" for m in net.modules())
    with pytest.raises(ValueError):
        UNet(1, 8, mults=())


def test_default_unet_is_small_and_has_a_gradient_at_init():
    net = UNet(1, 8, num_classes=10)
    assert sum(p.numel() for p in net.parameters()) < 1.5e6
    x = torch.randn(4, 1, 8, 8)
    (net(x, torch.rand(4) * 999, torch.randint(0, 11, (4,))) - x).pow(2).sum().backward()
    # output conv is zero-initialised, so its gradient is the one that must be non-zero at step 0
    assert net.conv_out.weight.grad.abs().sum() > 0


def test_timemlp_shapes_labels_and_time():
    torch.manual_seed(0)
    net = TimeMLP(2, hidden=(32, 32), time_dim=16, num_classes=3)
    x = torch.randn(5, 2)
    t = torch.linspace(0, 999, 5)
    assert net(x, t).shape == (5, 2)
    assert torch.allclose(net(x, t), net(x, t, torch.full((5,), 3)))  # None = null label
    assert not torch.allclose(net(x, t, torch.zeros(5, dtype=torch.long)), net(x, t, torch.ones(5, dtype=torch.long)))
    assert not torch.allclose(net(x, t), net(x, t + 1.0))
    assert net(x, torch.tensor(7.0)).shape == (5, 2)  # a 0-dim time is broadcast
    assert TimeMLP(3)(torch.randn(4, 3), torch.rand(4)).shape == (4, 3)


def test_extra_condition_inputs_and_the_denoiser():
    from genlab.data.spec import DataSpec
    from genlab.errors import ConfigError
    from genlab.nn import Denoiser

    torch.manual_seed(0)
    assert UNet(3, 8, base=8, mults=(1, 2), cond_channels=2)(torch.randn(2, 5, 8, 8), torch.rand(2)).shape == (2, 3, 8, 8)
    assert TimeMLP(2, hidden=(8,), cond_dim=3)(torch.randn(4, 5), torch.rand(4)).shape == (4, 2)
    spec = DataSpec("image", (1, 8, 8), condition_shape=(1, 4, 4), condition_type="image")
    d = Denoiser(spec, "auto", "tensor", base=8, mults=(1, 2))
    with torch.no_grad():
        d.net.conv_out.weight.normal_()
    x, t, c = torch.randn(3, 1, 8, 8), torch.rand(3), torch.rand(3, 1, 4, 4)
    assert d.kind == "unet" and d(x, t, c).shape == x.shape  # the 4x4 condition is resized to 8x8
    assert torch.allclose(d(x, t), d(x, t, torch.zeros_like(c)))  # None = the zero (null) condition
    assert not torch.allclose(d(x, t, c), d(x, t))
    d = Denoiser(spec, "mlp", "tensor", hidden=(8,))  # an MLP takes the flattened image and condition
    assert d.net.layers[0].in_features == 64 + 16 and d(x, t, c).shape == x.shape
    with pytest.raises(ConfigError, match="did you mean 'unet'"):
        Denoiser(spec, "unt")
    with pytest.raises(ConfigError, match="needs image data"):
        Denoiser(DataSpec("vector", (2,)), "unet")
    own = Denoiser(DataSpec("vector", (2,)), TimeMLP(2, hidden=(4,)))
    assert own.kind == "module" and own(torch.randn(5, 2), torch.rand(5)).shape == (5, 2)
