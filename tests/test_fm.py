"""Flow matching and the ODE integrators against closed forms, and learning on small problems."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

import genlab
from genlab.data.spec import DataSpec, Dataset
from genlab.errors import ConfigError
from genlab.metrics.toy import mmd
from genlab.nn import diffusion as diffusion_core
from genlab.models.fm import cfm_loss, interpolate
from genlab.nn.diffusion import ot_coupling, ot_plan
from genlab.samplers.ode import (divergence_exact, divergence_hutchinson, integrate, integrate_with_divergence,
                                 make_probes)


# -- integrators -----------------------------------------------------------------------------------
def _linear_problem():
    """dx/dt = A x + b(t) with A = [[-1, 2], [-2, -1]], b(t) = (cos t, 0): the closed form by the
    variation of constants is awkward, so use the autonomous part x' = A x, x(t) = expm(A t) x0."""
    A = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=torch.float64)
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(A * 1.0).T
    return (lambda t, x: x @ A.T), x0, exact


@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2)])
def test_fixed_step_integrators_converge_at_their_order(method, order):
    f, x0, exact = _linear_problem()
    errs = [(integrate(f, x0, 0.0, 1.0, method=method, steps=n) - exact).abs().max().item() for n in (40, 80, 160)]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - order) < 0.15 for r in rates), (errs, rates)


def test_nonautonomous_backward_and_tuple_state():
    # x' = 2 t x  =>  x(t) = x(t0) exp(t^2 - t0^2); backwards from t = 1 to t = 0 on a tuple state
    f = lambda t, s: (2 * t * s[0], -s[1])  # noqa: E731
    x1 = torch.tensor([1.5, -2.0], dtype=torch.float64)
    out = integrate(f, (x1, x1.clone()), 1.0, 0.0, method="heun", steps=400)
    assert torch.allclose(out[0], x1 * math.exp(-1.0), atol=1e-5)
    assert torch.allclose(out[1], x1 * math.exp(1.0), atol=1e-4)


def test_dopri5_is_accurate_and_adaptive():
    f, x0, exact = _linear_problem()
    stats = {}
    out = integrate(f, x0, 0.0, 1.0, method="dopri5", rtol=1e-8, atol=1e-8, stats=stats)
    assert (out - exact).abs().max() < 1e-6
    loose = {}
    integrate(f, x0, 0.0, 1.0, method="dopri5", rtol=1e-3, atol=1e-3, stats=loose)
    assert loose["nfe"] < stats["nfe"]  # the step size adapts to the tolerance


def test_unknown_sampler_names_raise_config_error():
    f, x0, _ = _linear_problem()
    with pytest.raises(ConfigError, match="did you mean 'euler'"):
        integrate(f, x0, method="eulr")
    with pytest.raises(ConfigError, match="steps"):
        integrate(f, x0, method="heun", steps=0)
    spec = DataSpec("vector", (2,))
    model = genlab.create_model("fm", spec, hidden=(8,))
    with pytest.raises(ConfigError, match="did you mean 'dopri5'"):
        model.sample(3, sampler="dopri")
    with pytest.raises(ConfigError, match="unknown sampler"):
        genlab.create_model("fm", spec, sampler="rk45")


# -- divergence -----------------------------------------------------------------------------------
def test_hutchinson_is_unbiased_for_the_trace():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Linear(32, 5)).double()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    v = net(x)
    exact = divergence_exact(v, x)
    jac = torch.stack([torch.autograd.functional.jacobian(net, x[i].detach()).trace() for i in range(4)])
    assert torch.allclose(exact, jac, atol=1e-10)
    g = torch.Generator().manual_seed(1)
    for kind in ("rademacher", "gaussian"):
        probes = make_probes(x.shape, 4000, kind, generator=g, dtype=torch.float64)
        est = divergence_hutchinson(v, x, probes)
        # Monte Carlo mean of eps^T J eps over 4000 probes: its standard error is
        # sqrt(Var / 4000); Var <= 2 ||J||_F^2 (Gaussian), less for Rademacher
        per = torch.stack([divergence_hutchinson(v, x, probes[i:i + 1]) for i in range(200)])
        se = per.std(0) / math.sqrt(4000)
        assert ((est - exact).abs() < 4 * se + 1e-9).all(), (kind, est, exact, se)


# -- log_prob against the analytic density ---------------------------------------------------------
class GaussianVelocity(nn.Module):
    """The exact marginal velocity of the linear path from N(0, I) to N(mu, s^2 I), independent coupling:

        x_t ~ N(t mu, sigma_t^2 I),  sigma_t^2 = (1 - t)^2 + t^2 s^2,
        v(t, x) = mu + (sigma_t' / sigma_t) (x - t mu),   sigma_t sigma_t' = t s^2 - (1 - t).

    forward(x, t_net, y) with t_net = time_scale * t, as the model's networks are called."""

    def __init__(self, mu, s, time_scale=1000.0):
        super().__init__()
        self.register_buffer("mu", mu)
        self.s, self.time_scale = s, time_scale
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        t = (t / self.time_scale).reshape(-1, 1)
        var = (1 - t) ** 2 + t ** 2 * self.s ** 2
        return self.mu + (t * self.s ** 2 - (1 - t)) / var * (x - t * self.mu) + 0 * self.dummy


def _gaussian_model(D, mu, s, **hp):
    model = genlab.create_model("fm", DataSpec("vector", (D,)), hidden=(8,), **hp)
    model.net = GaussianVelocity(mu, s)
    return model.double().eval()


def test_log_prob_with_the_exact_velocity_equals_the_analytic_density():
    D, s = 3, 0.5
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    model = _gaussian_model(D, mu, s)
    # vector data are standardised: a shift/scale turns the working density into the data density
    model.data_shift.fill_(0.7)
    model.data_scale.fill_(2.0)
    x = model.from_working(mu + s * torch.randn(50, D, generator=torch.Generator().manual_seed(0),
                                                dtype=torch.float64))
    truth = torch.distributions.Normal(model.from_working(mu), s * 2.0).log_prob(x).sum(1)
    lp = model.log_prob(x, rtol=1e-8, atol=1e-8)
    assert model.likelihood_kind == "exact"
    assert (lp - truth).abs().max() < 1e-5
    # Hutchinson (forced) is unbiased: its mean over independent probe sets matches too
    est = torch.stack([model.log_prob(x, exact=False, hutchinson_samples=8, rtol=1e-6, atol=1e-6,
                                      generator=torch.Generator().manual_seed(i)) for i in range(20)])
    assert (est.mean(0) - truth).abs().mean() < 0.05
    # sampling with the same field reproduces the target moments
    xs = model.sample(4000, generator=torch.Generator().manual_seed(1), sampler="dopri5")
    u = model.to_working(xs)
    assert (u.mean(0) - mu).abs().max() < 0.05 and (u.std(0) - s).abs().max() < 0.03
    # encode is the inverse of decode
    z = torch.randn(5, D, dtype=torch.float64)
    assert torch.allclose(model.encode(model.decode(z, sampler="dopri5"), sampler="dopri5"), z, atol=1e-4)


def test_integrate_with_divergence_matches_linear_flow_log_det():
    # v = A x: x(1) = e^A x(0), and int_0^1 div v dt = tr(A)
    A = torch.tensor([[0.3, 1.0], [-0.5, -0.8]], dtype=torch.float64)
    x = torch.randn(7, 2, dtype=torch.float64)
    for method in ("euler", "heun", "dopri5"):
        xt, l1 = integrate_with_divergence(lambda t, u: u @ A.T, x, 0.0, 1.0, method=method, steps=200)
        assert torch.allclose(l1, torch.full((7,), A.trace().item(), dtype=torch.float64), atol=1e-9)
        assert torch.allclose(xt, x @ torch.linalg.matrix_exp(A).T, atol=2e-2 if method == "euler" else 1e-5)


# -- training ------------------------------------------------------------------------------------
def test_trained_model_log_prob_on_gaussian_data():
    g = torch.Generator().manual_seed(0)
    mu, C = torch.tensor([2.0, -1.0]), torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    dist = torch.distributions.MultivariateNormal(mu, C)
    L = torch.linalg.cholesky(C)
    draw = lambda n: mu + torch.randn(n, 2, generator=g) @ L.T  # noqa: E731
    ds = Dataset(draw(4000), draw(500), DataSpec("vector", (2,), name="gauss"))
    model = genlab.train("fm", ds, steps=400, seed=0, save=False, progress=False, hidden=(64, 64),
                         batch_size=256, lr=2e-3).model
    lp = model.log_prob(ds.test, rtol=1e-5, atol=1e-5)
    kl = (dist.log_prob(ds.test) - lp).mean()  # Monte Carlo KL(p || q) >= 0 up to noise
    assert abs(kl) < 0.05, kl


def test_short_seeded_run_on_8gaussians_matches_the_data():
    """MMD of 1000 samples against 1000 test points. The reference scale is a Gaussian with the
    data's mean and covariance (right first two moments, no modes): MMD ~0.12 here. Two
    independent real samples give |MMD| ~0.003 (sampling noise). The model must be far closer
    to the real-data noise than to the moment-matched Gaussian: below 0.1 x the Gaussian's."""
    ds = genlab.load_dataset("8gaussians")
    model = genlab.train("fm", ds, steps=1000, seed=0, save=False, progress=False, hidden=(128, 128, 128),
                         batch_size=256, lr=2e-3).model
    ref = ds.test[:1000]
    x = model.sample(1000, generator=torch.Generator().manual_seed(1))
    mean, cov = ds.train.mean(0), torch.cov(ds.train.T)
    gauss = mean + torch.randn(1000, 2, generator=torch.Generator().manual_seed(2)) @ torch.linalg.cholesky(cov).T
    m_model, m_gauss = mmd(ref, x), mmd(ref, gauss)
    assert m_gauss > 0.05
    assert m_model < 0.1 * m_gauss, (m_model, m_gauss)


@pytest.mark.skipif(not diffusion_core._has_pot(), reason="POT (pip install pot) is not installed")
def test_ot_coupling_reduces_transport_cost_and_is_optimal():
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(64, 1, 1, 2, generator=g), 2 * torch.rand(64, 1, 1, 2, generator=g) - 1  # any shape
    perm = ot_coupling(x0, x1)
    assert sorted(perm.tolist()) == list(range(64))  # a permutation
    cost = lambda a, b: (a - b).flatten(1).pow(2).sum(1).mean().item()  # noqa: E731
    c_ind, c_ot = cost(x0, x1), cost(x0[perm], x1)
    assert c_ot < 0.5 * c_ind, (c_ot, c_ind)  # in 2-D, OT pairs are much shorter than random ones
    M = torch.cdist(x1.flatten(1), x0.flatten(1)).pow(2).numpy()
    r, c = linear_sum_assignment(M)
    assert abs(c_ot - M[r, c].mean()) < 1e-4  # the exact optimum
    ds = Dataset(torch.randn(256, 2), torch.randn(64, 2), DataSpec("vector", (2,)))
    run = genlab.train("fm", ds, steps=3, ot=True, hidden=(16,), save=False, progress=False)
    assert torch.isfinite(run.model.sample(4)).all()


@pytest.mark.skipif(not diffusion_core._has_pot(), reason="POT (pip install pot) is not installed")
def test_entropic_ot_plan_is_sinkhorns_and_pairs_are_drawn_from_it():
    """reg > 0: the plan is Sinkhorn's for the cost scaled by its mean (against a hand-written
    Sinkhorn-Knopp iteration); data point j draws its noise partner from n pi*_j.; softer plans give
    longer pairs, and reg -> infinity the independent coupling."""
    g = torch.Generator().manual_seed(1)
    n, reg = 6, 0.1
    x0, x1 = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) + 1
    C = torch.cdist(x1.double(), x0.double()).pow(2)
    K = torch.exp(-(C / C.mean()) / reg)
    u, v = torch.ones(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    for _ in range(5000):  # plan = diag(u) K diag(v) with both marginals 1/n
        u = (1.0 / n) / (K @ v)
        v = (1.0 / n) / (K.T @ u)
    expected = u[:, None] * K * v[None, :]
    plan = ot_plan(x0, x1, reg)
    assert torch.allclose(plan, expected, atol=1e-6), (plan - expected).abs().max()  # POT stops at 1e-6
    assert torch.equal(ot_plan(x0, x1, 0.0).argmax(1), ot_plan(x0, x1, 2e-3).argmax(1))  # reg -> 0: the exact plan
    torch.manual_seed(0)
    draws = torch.stack([ot_coupling(x0, x1, reg) for _ in range(600)])  # [draws, n]
    freq = torch.stack([(draws == i).double().mean(0) for i in range(n)], 1)  # freq[j, i] ~ n pi*_ji
    assert (freq - n * expected).abs().max() < 0.07, (freq - n * expected).abs().max()

    cost = lambda idx: (x0[idx] - x1).pow(2).sum(1).mean().item()  # noqa: E731
    x0, x1 = torch.randn(128, 8, generator=g), torch.rand(128, 8, generator=g)
    mean_cost = {reg: statistics.mean(cost(ot_coupling(x0, x1, reg)) for _ in range(5))
                 for reg in (0.0, 0.02, 0.1, 100.0)}
    independent = (x0[:, None] - x1[None]).pow(2).sum(2).mean().item()
    assert mean_cost[0.0] < mean_cost[0.02] < mean_cost[0.1] < mean_cost[100.0]  # softer plans, longer pairs
    assert abs(mean_cost[100.0] - independent) < 0.05 * independent  # reg -> infinity: independent pairs
    ds = Dataset(torch.randn(256, 2), torch.randn(64, 2), DataSpec("vector", (2,)))
    run = genlab.train("fm", ds, steps=3, ot=True, ot_reg=0.05, hidden=(16,), save=False, progress=False)
    assert run.model.ot_reg == 0.05 and torch.isfinite(run.model.sample(4)).all()
    with pytest.raises(ConfigError, match="needs ot=true"):
        genlab.create_model("fm", DataSpec("vector", (2,)), ot_reg=0.05)


def test_ot_without_pot_is_a_clear_config_error(monkeypatch):
    monkeypatch.setattr(diffusion_core, "_has_pot", lambda: False)
    with pytest.raises(ConfigError, match="pip install pot"):
        genlab.create_model("fm", DataSpec("vector", (2,)), ot=True)


def test_interpolant_and_loss_formulas():
    x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.allclose(interpolate(x0, x1, torch.tensor([0.25, 1.0])), torch.tensor([[0.25] * 3, [1.0] * 3]))
    assert torch.allclose(cfm_loss(torch.ones(2, 3), x0, x1), torch.zeros(2))
    assert torch.allclose(cfm_loss(torch.zeros(2, 3), x0, x1), torch.ones(2))


def test_time_sampling_distributions():
    from genlab.models.fm import sample_time

    torch.manual_seed(0)
    u = sample_time(200_000)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    t = sample_time(200_000, "logit-normal", mean=0.5, std=0.8)
    n = torch.logit(t.double())  # logit(t) ~ N(m, s)
    assert abs(n.mean() - 0.5) < 0.01 and abs(n.std() - 0.8) < 0.01
    m = genlab.create_model("fm", DataSpec("vector", (2,)), time_sampling="logit-normal")
    assert torch.isfinite(m.loss(torch.randn(16, 2))["loss"])
    with pytest.raises(ConfigError, match="time_sampling"):
        genlab.create_model("fm", DataSpec("vector", (2,)), time_sampling="beta")


def test_digits_contract_guidance_inpaint_and_roundtrip(digits, tmp_path):
    hp = dict(base=8, mults=(1, 2), attention=False, conditional=True, sample_steps=3)
    run = genlab.train("fm", digits, steps=4, out=tmp_path / "run", progress=False, **hp)
    m = run.model
    g = torch.Generator().manual_seed(0)
    x = m.sample(6, y=3, generator=g, guidance=2.0)
    assert x.shape == (6, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert m.likelihood_kind == "estimate"
    lp = m.log_prob(digits.test[:4], digits.test_labels[:4], sampler="euler", steps=4)
    assert lp.shape == (4,) and torch.isfinite(lp).all()
    # working scale: the bin centres map back to the data exactly
    assert torch.allclose(m.from_working(m.to_working(digits.test[:8])), digits.test[:8], atol=1e-6)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    filled = m.inpaint(digits.test[:3], mask, y=digits.test_labels[:3], generator=g, steps=4)
    assert torch.allclose(filled[..., :4], digits.test[:3, :, :, :4], atol=1e-6)
    from genlab.apps.inpaint import inpaint

    assert torch.allclose(inpaint(m, digits.test[:2], mask, y=digits.test_labels[:2], steps=2)[..., :4],
                          digits.test[:2, :, :, :4], atol=1e-6)
    noisy, clean = m.denoise(digits.test[:2], 0.5, y=digits.test_labels[:2], generator=g, steps=4)
    assert noisy.shape == clean.shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="t_star"):
        m.denoise(digits.test[:2], 5)
    loaded = genlab.load(tmp_path / "run")
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(loaded.decode(z, y=1), m.decode(z, y=1), atol=1e-6)
    with pytest.raises(ConfigError):
        genlab.create_model("fm", digits, hidden=(8,)).sample(2, y=1)


def test_x_prediction_turns_the_network_output_into_a_velocity():
    m = genlab.create_model("fm", DataSpec("vector", (3,)), prediction="x", hidden=(8,))
    clean = torch.tensor([1.0, -2.0, 0.5])

    class Constant(nn.Module):  # a network that always predicts the same x1
        def forward(self, x, t, y=None):
            return clean.expand(len(x), 3)

    m.net = Constant()
    v = m.velocity(torch.tensor([0.5, 0.99]), torch.zeros(2, 3))
    assert torch.allclose(v[0], clean / 0.5)  # (x1 - x_t) / (1 - t)
    assert torch.allclose(v[1], clean / 0.05)  # 1 - t clamped at 0.05
    # the field moves x_t along the straight line to x1: x(t) = x1 + (x(s) - x1) (1 - t) / (1 - s)
    x_half = torch.randn(4, 3)
    end = integrate(lambda t, x: m.velocity(t, x), x_half, 0.5, 0.9, method="euler", steps=50)
    assert torch.allclose(end, clean + (x_half - clean) * 0.2, atol=1e-5)
    # the loss goes through the same conversion. A network that knows x1 is exact wherever 1 - t >= 0.05;
    # above, v = s (x1 - x0) with s = (1 - t) / 0.05, so with t ~ U[0, 1] the loss (mean over dims) is
    # E[(1 - s)^2; t > 0.95] E||x1 - x0||^2 / 3 = (0.05 / 3) (|x1|^2 / 3 + 1). Read as a velocity, the
    # same output would give E||x0||^2 / 3 = 1.
    torch.manual_seed(0)
    data = m.from_working(clean).expand(50000, 3)
    expected = 0.05 / 3 * (float(clean.pow(2).sum()) / 3 + 1)
    assert float(m.loss(data)["loss"]) == pytest.approx(expected, rel=0.15)
    with pytest.raises(ConfigError, match="prediction"):
        genlab.create_model("fm", DataSpec("vector", (3,)), prediction="eps")


def test_image_conditioned_flow_matching_trains_samples_and_guides():
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    c = x.flip(-1)  # condition: the mirror image, same size (concatenated as a second channel)
    spec = DataSpec("image", (1, 8, 8), name="pairs", levels=None, condition_shape=(1, 8, 8), condition_type="image")
    data = Dataset(x[:48], x[48:], spec, train_cond=c[:48], test_cond=c[48:])
    torch.manual_seed(0)
    m = genlab.create_model("fm", data, conditional=True, base=8, mults=(1, 2), attention=False, sample_steps=3)
    assert m.net.net.conv_in.in_channels == 2
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(3):
        loss = m.loss(data.train, data.train_cond)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # break the zero init of the output layer
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.eval()
    cond = data.test_cond[:4]

    def draw(y, **kw):
        return m.sample(4, y=y, generator=torch.Generator().manual_seed(0), **kw)

    s = draw(cond)
    assert s.shape == (4, 1, 8, 8) and 0 <= float(s.min()) and float(s.max()) <= 1
    assert not torch.allclose(draw(cond.flip(0)), s)  # the condition changes the output
    with pytest.raises(ConfigError, match="condition"):
        m.sample(2)
    xt, t = torch.randn(4, 1, 8, 8), torch.full((4,), 0.5)
    v_c, v_u = m.velocity(t, xt, cond), m.velocity(t, xt, torch.zeros_like(cond))
    assert torch.allclose(m.velocity(t, xt), v_u)  # no condition = the null (zero) condition
    assert torch.allclose(m.velocity(t, xt, cond, guidance=2.5), v_u + 2.5 * (v_c - v_u), atol=1e-5)
    assert not torch.allclose(draw(cond, guidance=2.5), s)
    opts = dict(sampler="euler", steps=2)
    lp = m.log_prob(data.test[:2], data.test_cond[:2], generator=torch.Generator().manual_seed(0), **opts)
    score = m.anomaly_score(data.test[:2], data.test_cond[:2], generator=torch.Generator().manual_seed(0), **opts)
    assert lp.shape == (2,) and torch.allclose(score, -lp)
