"""Normalizing flows: log-dets against autograd Jacobians, exact inverses, normalisation on a grid,
entropy of a known 2-D density, gradcheck, image preprocessing and the bits/dim convention."""

from __future__ import annotations

import math

import pytest
import torch

import genlab
from genlab.data.spec import DataSpec
from genlab.errors import ConfigError
from genlab.metrics.likelihood import bits_per_dim
from genlab.metrics.toy import kl_estimate
from genlab.nn import flows as F

VEC3 = DataSpec("vector", (3,))
IMG = DataSpec("image", (1, 4, 4), levels=256)
SMALL_IMG = dict(n_scales=2, steps_per_scale=2, channels=8, n_checkerboard=1)
VARIANTS = [
    ("realnvp", VEC3, {}),
    ("realnvp", VEC3, {"mixing": "random", "actnorm": False}),
    ("maf", VEC3, {}),
    ("maf", VEC3, {"transform": "spline", "tail_bound": 2.0, "actnorm": True}),
    ("realnvp", IMG, SMALL_IMG),
    ("maf", IMG, {"n_layers": 2, "hidden": (32,)}),
]


def randomised(family, spec, std=0.1, seed=0, **hp):
    """A float64 model whose layers are not the identity (zero-initialised outputs get random weights)."""
    torch.manual_seed(seed)
    m = genlab.create_model(family, spec, **hp).double()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                mod.weight.normal_(0, std)
                mod.bias.normal_(0, std)
            if isinstance(mod, F.ActNorm):
                mod.loc.normal_(0, 0.2)
                mod.log_scale.normal_(0, 0.2)
    return m


@pytest.mark.parametrize("family,spec,hp", VARIANTS)
def test_log_det_equals_autograd_jacobian(family, spec, hp):
    m = randomised(family, spec, **hp)
    v = torch.randn(4, *spec.shape, dtype=torch.float64) * 1.2
    z, log_det = m.flow(v)
    for i in range(len(v)):
        jac = torch.autograd.functional.jacobian(lambda t: m.flow(t.view(1, *spec.shape))[0].flatten(), v[i])
        expected = torch.linalg.slogdet(jac.reshape(spec.dim, spec.dim))[1]
        assert log_det[i].item() == pytest.approx(expected.item(), abs=1e-8)


@pytest.mark.parametrize("family,spec,hp", VARIANTS)
def test_inverse_of_forward_is_identity(family, spec, hp):
    m = randomised(family, spec, **hp).float()
    v = torch.randn(16, *spec.shape) * 1.5
    z, _ = m.flow(v)
    assert (m.flow.inverse(z) - v).abs().max().item() < 1e-5
    assert (m.flow(m.flow.inverse(z))[0] - z).abs().max().item() < 1e-4  # and the other way round


def test_spline_inverse_identity_tails_and_gradcheck():
    torch.manual_seed(0)
    x = torch.linspace(-5, 5, 101, dtype=torch.float64).requires_grad_()
    w, h, d = (torch.randn(101, k, dtype=torch.float64) for k in (6, 6, 5))
    y, lg = F.rational_quadratic_spline(x, w, h, d, bound=3.0)
    back, lg_inv = F.rational_quadratic_spline(y, w, h, d, bound=3.0, inverse=True)
    assert torch.allclose(back, x, atol=1e-10) and torch.allclose(lg, -lg_inv, atol=1e-10)
    outside = x.abs() > 3
    assert torch.equal(y[outside], x[outside]) and (lg[outside] == 0).all()
    (dy,) = torch.autograd.grad(y.sum(), x)  # elementwise: the derivative is log g'
    assert torch.allclose(dy.log(), lg, atol=1e-8) and (dy > 0).all()
    zero = torch.zeros(5, 4, dtype=torch.float64)  # zero parameters: the identity
    u = torch.linspace(-2, 2, 5, dtype=torch.float64)
    assert torch.allclose(F.rational_quadratic_spline(u, zero, zero, zero[:, :3])[0], u, atol=1e-12)


def test_spline_bins_at_dim_1_equal_bins_last():
    """The bins may sit at dim 1 (a MADE's layout): the same spline, value and log-gradient, both ways."""
    torch.manual_seed(0)
    x = torch.randn(7, 5, dtype=torch.float64) * 3
    w, h, d = (torch.randn(7, k, 5, dtype=torch.float64) for k in (6, 6, 5))
    for inverse in (False, True):
        a = F.rational_quadratic_spline(x, w, h, d, 3.0, inverse, dim=1)
        b = F.rational_quadratic_spline(x, *(t.transpose(1, 2) for t in (w, h, d)), 3.0, inverse)
        assert all(torch.allclose(u, v, atol=1e-12) for u, v in zip(a, b))
    layer = F.MaskedSplineAutoregressive(5, (16,), bins=6, bound=3.0).double()
    torch.nn.init.normal_(layer.made.out.weight)
    p = layer.made(x)  # [N, D, 3K - 1]
    z, lg = F.rational_quadratic_spline(x, p[..., :6], p[..., 6:12], p[..., 12:], 3.0)
    z2, ld = layer(x)
    assert torch.allclose(z2, z, atol=1e-12) and torch.allclose(ld, lg.sum(1), atol=1e-12)
    assert torch.allclose(layer.inverse(z2), x, atol=1e-8)


def test_gradcheck_affine_coupling_float64():
    torch.manual_seed(0)
    net = F.MLPConditioner(4, 8, (16,), "tanh", context_dim=2).double()
    torch.nn.init.normal_(net.net[-1].weight, std=0.3)
    layer = F.AffineCoupling(F.alternating_mask(4, 0).double(), net, scale_bound=2.0)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: layer(a, c), (x, ctx))
    assert torch.autograd.gradcheck(lambda a, c: layer.inverse(a, c), (x, ctx))


def test_made_is_autoregressive():
    torch.manual_seed(0)
    made = F.MADE(5, 2, (32, 32), context_dim=3).double()
    torch.nn.init.normal_(made.out.weight)
    x = torch.randn(5, dtype=torch.float64)
    ctx = torch.randn(1, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: made(t.view(1, 5), ctx)[0], x)  # [5, 2, 5]
    for p in range(2):
        j = jac[:, p, :]
        assert torch.equal(torch.triu(j), torch.zeros_like(j))  # output i depends on x_<i only
        assert (torch.tril(j, -1).abs().sum() > 0)
    x = torch.randn(4, 5, dtype=torch.float64)  # split: forward's outputs as contiguous tensors, exactly
    assert all(torch.equal(s, made(x, ctx.expand(4, 3))[..., k]) for k, s in enumerate(made.split(x, ctx.expand(4, 3))))


def test_reverse_permutation_is_the_permutation_it_names():
    for image in (False, True):
        perm = F.Permutation(6, "reverse", image)
        x = torch.randn(3, 6, 2, 2) if image else torch.randn(3, 6)
        z, logdet = perm(x)
        assert torch.equal(z, x[:, perm.perm]) and torch.equal(perm.inverse(z), x) and not logdet.any()


def test_maf_defaults_by_data_kind_and_initialisation():
    """ReLU MADEs for vectors, ELU for images; the affine MADE starts from a random (not zero) output layer,
    so an affine MAF is not the identity at initialisation, while a spline MAF is."""
    torch.manual_seed(0)
    vec, img = genlab.create_model("maf", VEC3), genlab.create_model("maf", IMG, n_layers=2, hidden=(32,))
    acts = lambda m: {type(mod.act) for mod in m.modules() if isinstance(mod, F.MADE)}  # noqa: E731
    assert acts(vec) == {torch.nn.ReLU} and acts(img) == {torch.nn.ELU}
    assert acts(genlab.create_model("maf", VEC3, activation="elu")) == {torch.nn.ELU}
    x = torch.randn(16, 3)
    z, _ = vec.flow(x)
    assert not torch.allclose(z, x)
    spline = genlab.create_model("maf", VEC3, transform="spline")
    z, ld = spline.flow(x)
    assert torch.allclose(z, x, atol=1e-5) and torch.allclose(ld, torch.zeros(16), atol=1e-5)


def test_logit_preprocessing_log_det_and_bits_per_dim_convention(digits):
    y = torch.rand(6, 10, dtype=torch.float64) * 0.98 + 0.01
    v, ld = F.logit_transform(y, 0.05)
    for i in range(6):
        jac = torch.autograd.functional.jacobian(lambda t: F.logit_transform(t.view(1, 10), 0.05)[0][0], y[i])
        assert ld[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-10)
    assert torch.allclose(F.inverse_logit_transform(v, 0.05), y)
    # dequantization keeps every value inside its level's bin [k/L, (k+1)/L)
    x = digits.train[:50]
    k = torch.round(x * 16)
    yq = F.dequantize(x, 17, torch.Generator().manual_seed(0))
    assert ((yq * 17).floor() == k).all()
    # evaluate's bits/dim is the shared helper applied to log_prob (density of the dequantised image)
    m = genlab.create_model("realnvp", digits, channels=16, steps_per_scale=1, n_checkerboard=0)
    m.prepare(digits)
    res = genlab.evaluate(m, digits, metrics=["nll"], n=100, reference=False)["metrics"]
    assert res["bpd"] == pytest.approx(bits_per_dim(res["nll"], 64, n_levels=17))
    assert res["bpd"] == pytest.approx((res["nll"] / 64 + math.log(17)) / math.log(2))


def test_actnorm_data_init_in_prepare(digits):
    for family, data in (("realnvp", digits), ("maf", genlab.load_dataset("moons", n_train=600, n_test=100))):
        hp = {"actnorm": True} if family == "maf" else {}
        m = genlab.create_model(family, data, **hp)
        m.prepare(data)
        acts = [mod for mod in m.modules() if isinstance(mod, F.ActNorm)]
        assert acts and any(a.log_scale.abs().sum() > 0 for a in acts)
        v = m.to_working(data.train[:512], generator=torch.Generator().manual_seed(0))
        first = next(mod for mod in m.flow.modules() if isinstance(mod, F.ActNorm))
        dims = (0, 2, 3) if v.dim() == 4 else (0,)
        out = first(v)[0]
        assert out.mean(dims).abs().max() < 0.1 and (out.std(dims) - 1).abs().max() < 0.1


def test_density_integrates_to_one_and_entropy_of_a_known_density():
    data = genlab.load_dataset("8gaussians", sigma=0.3, n_train=5000, n_test=2000)
    run = genlab.train("maf", data, steps=400, seed=0, save=False, progress=False, n_layers=4, hidden=(64, 64))
    m = run.model
    with torch.no_grad():
        lp = m.log_prob(data.test)
        kl = kl_estimate(lp, data.log_density(data.test))  # test NLL minus the true entropy
        assert -0.05 < kl < 0.1, kl  # within 0.1 nats of the true entropy
        g = torch.linspace(-3.5, 3.5, 281)
        grid = torch.cartesian_prod(g, g)
        mass = m.log_prob(grid).exp().sum().item() * (g[1] - g[0]).item() ** 2
        assert mass == pytest.approx(1.0, abs=0.02)
        assert torch.allclose(m.anomaly_score(data.test[:10]), -lp[:10])


def test_realnvp_trains_on_a_toy_and_samples_are_seeded():
    data = genlab.load_dataset("moons", n_train=2000, n_test=500)
    m0 = genlab.create_model("realnvp", data, n_layers=4, hidden=(64, 64))
    m0.prepare(data)
    before = -m0.log_prob(data.test).mean().item()
    run = genlab.train("realnvp", data, steps=250, seed=0, save=False, progress=False, n_layers=4, hidden=(64, 64))
    m = run.model
    after = -m.log_prob(data.test).mean().item()
    assert after < before - 0.3, (before, after)
    s1 = m.sample(64, generator=torch.Generator().manual_seed(3))
    s2 = m.sample(64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and s1.shape == (64, 2)
    assert m.encode(data.test[:5]).shape == (5, 2)
    assert torch.allclose(m.decode(m.encode(data.test[:5])), data.test[:5], atol=1e-4)


@pytest.mark.parametrize("family", ["realnvp", "maf"])
def test_conditional_images(family, digits):
    hp = dict(SMALL_IMG, channels=16) if family == "realnvp" else {"n_layers": 1, "hidden": (32,)}
    m = genlab.create_model(family, digits, conditional=True, **hp)
    m.prepare(digits)
    x, y = digits.train[:8], digits.train_labels[:8]
    s = m.sample(5, y=3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and set(torch.unique(s * 16).round().tolist()) <= set(range(17))
    g = lambda: torch.Generator().manual_seed(1)
    per_class = torch.stack([m.log_prob(x, torch.full((8,), c), generator=g()) for c in range(10)])
    marginal = m.log_prob(x, generator=g())
    assert torch.allclose(marginal, per_class.logsumexp(0) - math.log(10), atol=1e-4)
    assert torch.isfinite(m.loss(x, y)["loss"]) and "bpd" in m.loss(x, y)
    with pytest.raises(ConfigError, match="conditional"):
        m.encode(x)


def test_bad_flow_settings_are_clear(digits):
    with pytest.raises(ConfigError, match="transform"):
        genlab.create_model("maf", digits, transform="splin")
    with pytest.raises(ConfigError, match="mixing"):
        genlab.create_model("realnvp", digits, mixing="glow")
    with pytest.raises(ConfigError, match="n_scales"):
        genlab.create_model("realnvp", digits, n_scales=4)
    with pytest.raises(ConfigError, match="trained without conditional"):
        genlab.create_model("realnvp", digits, channels=8).sample(2, y=1)


@pytest.mark.parametrize("family,data_name", [("realnvp", "digits"), ("maf", "moons")])
def test_run_directory_save_load_roundtrip(family, data_name, digits, tmp_path):
    data = digits if data_name == "digits" else genlab.load_dataset("moons", n_train=500, n_test=100)
    hp = {"channels": 8, "steps_per_scale": 1} if family == "realnvp" else {"n_layers": 2, "hidden": (16,)}
    run = genlab.train(family, data, steps=3, out=tmp_path / "run", progress=False, **hp)
    assert (tmp_path / "run" / "samples.png").exists()
    loaded = genlab.load(tmp_path / "run")
    x = data.test[:6]
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.allclose(loaded.log_prob(x, generator=g()), run.model.log_prob(x, generator=g()))
    assert torch.equal(loaded.sample(5, generator=g()), run.model.sample(5, generator=g()))
    assert {"log_prob", "encode", "decode", "anomaly_score"} <= set(loaded.capabilities())
