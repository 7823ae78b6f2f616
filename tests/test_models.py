"""PCA, AE and VAE against closed forms, the model contract, and learning on small problems."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import genlab
from genlab.data.spec import DataSpec, Dataset
from genlab.errors import ConfigError
from genlab.models.vae import elbo, gaussian_kl, iwae_bound, reparameterize
from genlab.nn.density import binarize, marginal_log_prob


def ppca_data(D=5, q=2, n=4000, s=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    W, mu = 1.5 * torch.randn(D, q, generator=g), torch.randn(D, generator=g)

    def draw(m):
        return torch.randn(m, q, generator=g) @ W.T + mu + s * torch.randn(m, D, generator=g)

    truth = torch.distributions.MultivariateNormal(mu, W @ W.T + s * s * torch.eye(D))
    return Dataset(draw(n), draw(1000), DataSpec("vector", (D,), name="ppca")), truth


def test_ppca_closed_form_matches_truth_and_sklearn():
    ds, truth = ppca_data()
    model = genlab.train("pca", ds, latent_dim=2, save=False, progress=False).model
    ll = model.log_prob(ds.test)
    # the ML fit on 4000 points is within sampling error of the true model's likelihood
    assert abs(ll.mean() - truth.log_prob(ds.test).mean()) < 0.05
    from sklearn.decomposition import PCA as SkPCA

    sk = SkPCA(2).fit(ds.train.numpy())
    # same per-example log-likelihood as scikit-learn's probabilistic PCA (it uses n-1 in the covariance)
    assert torch.allclose(ll, torch.from_numpy(sk.score_samples(ds.test.numpy())).float(), atol=2e-3)
    z = model.encode(ds.test)
    assert z.shape == (1000, 2)
    # reconstruction is a projection: applying it twice changes nothing
    r = model.reconstruct(ds.test)
    assert torch.allclose(model.reconstruct(r), r, atol=1e-4)


def test_vae_linear_gaussian_iwae_matches_exact_likelihood():
    """A VAE with linear decoder and Gaussian likelihood is a linear-Gaussian model whose marginal
    is N(b, W W^T + Psi) in closed form; its IWAE estimate must agree with that, and training
    on pPCA data must reach the ML likelihood."""
    ds, truth = ppca_data()
    torch.manual_seed(0)
    model = genlab.train("vae", ds, steps=2000, latent_dim=2, hidden=(), lr=3e-3, batch_size=200,
                         save=False, progress=False).model
    lin = model.decoder.body[-1]
    C = lin.weight @ lin.weight.T + torch.diag((2 * model.log_std.clamp(-7, 3)).exp())
    with torch.no_grad():
        exact = torch.distributions.MultivariateNormal(lin.bias, C).log_prob(model.to_working(ds.test))
        exact = exact + model.working_log_det(ds.test)
    iwae = model.log_prob(ds.test, k=1000)
    assert (iwae - exact).abs().mean() < 0.05  # estimator: well inside the 0.5 nats asked for
    assert (iwae <= exact + 0.05).float().mean() > 0.95  # a lower bound, up to Monte Carlo noise
    assert abs(exact.mean() - truth.log_prob(ds.test).mean()) < 0.5  # learning: reaches the ML fit


def test_gaussian_vae_uses_its_code_on_2d_data():
    """No posterior collapse on circles: with p(x|z)'s std started at the data's own (1.0 on the
    working scale) q(z|x) fell to the prior (KL 0.000 after 2000 steps); from 0.5 it carries
    information after a few hundred steps (KL ~1.25 nats)."""
    ds = genlab.load_dataset("circles", n_train=2000, n_test=500)
    m = genlab.train("vae", ds, steps=300, save=False, progress=False, seed=0).model
    with torch.no_grad():
        mu, logvar = m.posterior(ds.test)
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(1).mean()
    assert float(kl) > 0.5


def test_elbo_kl_and_iwae_formulas():
    mu, logvar = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.2, -0.5]])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))
    bound, kl = elbo(torch.tensor([-5.0]), mu, logvar, beta=2.0)
    assert torch.allclose(bound, -5.0 - 2 * kl)
    log_w = torch.log(torch.tensor([[1.0], [3.0]]))
    assert torch.allclose(iwae_bound(log_w), torch.log(torch.tensor([2.0])))


def test_reparameterize_draws_from_q_and_carries_gradients():
    mu, logvar = torch.tensor([0.5, -2.0], requires_grad=True), torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    torch.manual_seed(0)
    z = reparameterize(mu, logvar, k=200_000)  # z = mu + exp(logvar / 2) * eps
    assert z.shape == (200_000, 2)
    assert torch.allclose(z.mean(0), mu, atol=0.02) and torch.allclose(z.std(0), torch.tensor([1.0, 2.0]), atol=0.02)
    z.sum().backward()  # dz/dmu = 1 per sample; dz/dlogvar = eps * sigma / 2
    assert torch.allclose(mu.grad, torch.full((2,), 200_000.0))
    torch.manual_seed(0)
    one = reparameterize(mu.detach(), logvar.detach())  # the loss's draw: randn_like(mu)
    torch.manual_seed(0)
    assert one.shape == (2,) and torch.equal(one, mu.detach() + (0.5 * logvar.detach()).exp() * torch.randn(2))


def test_marginal_log_prob_is_the_uniform_mixture():
    means = torch.tensor([-1.0, 2.0, 0.5])
    x = torch.linspace(-3, 3, 7)
    given = lambda x, y: torch.distributions.Normal(means[y], 1.0).log_prob(x)  # noqa: E731
    mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(torch.ones(3)),
                                                torch.distributions.Normal(means, 1.0))
    assert torch.allclose(marginal_log_prob(given, x, 3), mix.log_prob(x), atol=1e-6)


@pytest.mark.parametrize("family", ["pca", "gmm", "ae", "vae", "gan", "realnvp", "maf", "ddpm", "fm"])
def test_capabilities_share_one_signature(family, digits):
    """encode(x, y=None), decode(z, y=None), ...: the same two positional parameters everywhere,
    impute(x, mask, y=None) and denoise_gaussian(x, sigma, y=None) three, every other knob keyword-only."""
    m = genlab.create_model(family, digits)
    for name in ["log_prob", "encode", "decode", "reconstruct", "anomaly_score", "impute", "denoise_gaussian",
                 "sample"]:
        if not hasattr(m, name) or (name == "encode" and family in ("ddpm", "fm")):
            continue
        params = list(inspect.signature(getattr(m, name)).parameters.values())
        positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
        first = "n" if name == "sample" else ("z" if name == "decode" else "x")
        middle = {"impute": ["mask"], "denoise_gaussian": ["sigma"]}.get(name, [])
        expect = [first, "y", "generator"] if name == "sample" else [first, *middle, "y"]
        if family in ("ddpm", "fm") and name not in ("impute", "denoise_gaussian", "anomaly_score"):
            continue  # the diffusion families' older methods are checked in their own tests
        assert positional == expect, (name, positional)
        assert params[len(expect) - 1].default is None


@pytest.mark.parametrize("family", ["pca", "ae", "vae"])
def test_contract_shapes_and_save_load_roundtrip(family, digits, tmp_path):
    run = genlab.train(family, digits, steps=5, out=tmp_path / "run", progress=False)
    m = run.model
    g = torch.Generator().manual_seed(0)
    x = m.sample(10, generator=g)
    assert x.shape == (10, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    xt = digits.test[:7]
    assert m.reconstruct(xt).shape == xt.shape
    assert m.encode(xt).shape == (7, 16)
    assert m.anomaly_score(xt).shape == (7,)
    loaded = genlab.load(tmp_path / "run")
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(loaded.sample(10, generator=g), x)
    assert set(m.capabilities()) >= {"encode", "decode", "reconstruct", "anomaly_score"}


def test_vae_learns_digits_and_autoencoder_beats_pca(digits):
    vae = genlab.train("vae", digits, epochs=60, latent_dim=8, save=False, progress=False)
    losses = [r["loss"] for r in vae.history]
    assert losses[-1] < 0.8 * losses[0]
    untrained = genlab.create_model("vae", digits, latent_dim=8)
    torch.manual_seed(0)
    assert vae.model.log_prob(digits.test, k=50).mean() > untrained.log_prob(digits.test, k=50).mean() + 10
    ae = genlab.train("ae", digits, epochs=60, latent_dim=8, save=False, progress=False).model
    pca = genlab.train("pca", digits, latent_dim=8, save=False, progress=False).model
    err = lambda m: (m.reconstruct(digits.test) - digits.test).pow(2).mean()
    assert err(ae) < err(pca)  # a nonlinear 8-d code beats the best linear one


def test_iwae_objective_trains_and_bound_tightens(digits):
    m = genlab.train("vae", digits, steps=100, iwae_k=5, save=False, progress=False).model
    torch.manual_seed(0)
    l1, l100 = m.log_prob(digits.test, k=1).mean(), m.log_prob(digits.test, k=100).mean()
    assert l100 > l1  # L_k increases with k


def test_conditional_vae_samples_requested_class_shape_and_marginal_likelihood(digits):
    m = genlab.train("vae", digits, steps=30, conditional=True, save=False, progress=False).model
    assert m.sample(6, y=3).shape == (6, 1, 8, 8)
    lp = m.log_prob(digits.test[:5], k=10)
    assert lp.shape == (5,) and torch.isfinite(lp).all()
    with pytest.raises(ConfigError, match="label must be in"):
        m.sample(2, y=12)


def test_denoising_autoencoder_corruptions(digits):
    for kind in ("gaussian", "mask"):
        m = genlab.train("ae", digits, steps=10, corruption=kind, save=False, progress=False).model
        assert m.sample(4).shape == (4, 1, 8, 8)


def test_conv_nets_on_28px_and_odd_sizes():
    for hw in ((28, 28), (32, 32), (13, 17)):
        spec = DataSpec("image", (1, *hw), name="x")
        for fam in ("ae", "vae"):
            m = genlab.create_model(fam, spec, net="conv")
            x = torch.rand(3, 1, *hw)
            assert m.reconstruct(x).shape == x.shape
            assert torch.isfinite(m.loss(x)["loss"])


def test_bad_hyperparameters_name_the_problem(digits):
    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        genlab.create_model("vae", digits, latent_dims=3)
    with pytest.raises(ConfigError, match="did you mean 'vae'"):
        genlab.create_model("vea", digits)
    with pytest.raises(ConfigError, match="likelihood"):
        genlab.create_model("vae", digits, likelihood="poisson")
    with pytest.raises(ConfigError, match="without conditional"):
        genlab.create_model("vae", digits).sample(2, y=1)


def test_estimator_sklearn_style():
    ds, truth = ppca_data()
    est = genlab.Estimator("pca", latent_dim=2).fit(ds.train.numpy())
    s = est.score_samples(ds.test.numpy())
    assert s.shape == (1000,) and abs(s.mean() - truth.log_prob(ds.test).mean().item()) < 0.05
    assert est.sample(7, random_state=0).shape == (7, 5)
    assert est.transform(ds.test.numpy()[:3]).shape == (3, 2)
    with pytest.raises(ConfigError, match="not fitted"):
        genlab.Estimator("vae").sample(2)


def test_pca_default_latent_dim_fits_low_dimensional_data():
    ds = genlab.load_dataset("25gaussians", n_train=500, n_test=100)
    run = genlab.train("pca", ds, steps=1, save=False, progress=True)  # closed form, with a progress bar
    assert run.model.W.shape == (2, 1) and run.model.config["latent_dim"] is None


def test_binarize_draws_bernoulli_p():
    """binarize(p) is x ~ Bernoulli(p) elementwise: values 0/1 in p's dtype, p = 0 and 1 exact,
    frequencies within 5 standard errors of p."""
    n = 20_000
    p = torch.linspace(0, 1, 11, dtype=torch.float64).repeat(n, 1)
    torch.manual_seed(0)
    b = binarize(p)
    assert b.dtype == p.dtype and set(b.unique().tolist()) == {0.0, 1.0}
    assert (b[:, 0] == 0).all() and (b[:, -1] == 1).all()
    q = p[0]
    assert ((b.mean(0) - q).abs() <= 5 * (q * (1 - q) / n).sqrt() + 1e-12).all(), b.mean(0)


def test_ppca_standardised_is_the_closed_form_on_standardised_columns_and_imputes_mixed_units_better():
    """standardise=true: PPCA of the correlation matrix. log p(x) is the ML PPCA density of (x - m) / s
    plus the log-determinant -sum log s; on columns in very different units it imputes the small ones
    far better than PPCA on the raw scale, whose one noise variance the large columns set."""
    from genlab.apps.impute import impute

    g = torch.Generator().manual_seed(0)
    z = torch.randn(1200, 2, generator=g)
    mix = torch.randn(2, 6, generator=g)
    units = torch.tensor([1000.0, 1000.0, 1.0, 1.0, 0.001, 0.001])
    x = ((z @ mix + 0.1 * torch.randn(1200, 6, generator=g)) * units).float()
    data = Dataset(x[:1000], x[1000:], DataSpec("vector", (6,), name="units"))
    model = genlab.train("pca", data, latent_dim=2, standardise=True, save=False, progress=False).model
    m, s = data.train.double().mean(0), data.train.double().std(0)
    u = (data.train.double() - m) / s
    lam, U = torch.linalg.eigh(torch.cov(u.T, correction=0))
    lam, U = lam.flip(0), U.flip(1)
    s2 = lam[2:].mean()
    W = U[:, :2] * (lam[:2] - s2).sqrt()
    gaussian = torch.distributions.MultivariateNormal(u.mean(0), W @ W.T + s2 * torch.eye(6, dtype=torch.float64))
    want = gaussian.log_prob((data.test.double() - m) / s) - s.log().sum()
    assert torch.allclose(model.log_prob(data.test).double(), want, atol=1e-3)
    raw = genlab.train("pca", data, latent_dim=2, save=False, progress=False).model
    rmse = {name: impute(mdl, data, mask="random:0.3", n=200, baselines=())["methods"]["pca"]["rmse_standardised"]
            for name, mdl in (("standardised", model), ("raw", raw))}
    assert rmse["standardised"] < 0.8 * rmse["raw"]                     # 0.335 against 0.450
    with pytest.raises(ConfigError, match="standardise=true is for vector data"):
        genlab.train("pca", "digits", standardise=True, save=False, progress=False)
