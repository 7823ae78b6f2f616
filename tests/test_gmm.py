"""gmm: exact log-likelihood (against scikit-learn), save/load, sampling, per-class mixtures, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

import genlab
from genlab.data.spec import DataSpec, Dataset
from genlab.errors import ConfigError
from genlab.models.base import load


def toy2(n=3000, seed=0):
    """Three anisotropic 2-D blobs with unequal weights."""
    g = torch.Generator().manual_seed(seed)

    def draw(m):
        c = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), m, replacement=True, generator=g)
        means = torch.tensor([[0.0, 0.0], [4.0, 1.0], [-2.0, 5.0]])
        A = torch.tensor([[[1.0, 0.0], [0.6, 0.4]], [[0.3, 0.0], [0.0, 1.2]], [[0.8, 0.5], [0.0, 0.5]]])
        z = torch.randn(m, 2, generator=g)
        return means[c] + torch.einsum("nij,nj->ni", A[c], z)

    return Dataset(draw(n), draw(500), DataSpec("vector", (2,), name="blobs"))


@pytest.mark.parametrize("cov", ["full", "diag", "spherical", "tied"])
def test_log_prob_equals_sklearn_score_samples(cov):
    ds = toy2()
    m = genlab.train("gmm", ds, n_components=3, covariance_type=cov, seed=1, save=False, progress=False).model
    # the same mixture, rebuilt in scikit-learn from genlab's parameters (data space = working scale
    # mapped back): score_samples on the raw data must equal log_prob, standardisation's Jacobian included
    gm = GaussianMixture(3, covariance_type=cov, random_state=0)
    x = ((ds.train - m.data_shift) / m.data_scale).double().numpy()
    gm.fit(x)  # (to get a fitted object; its parameters are replaced below)
    gm.weights_ = m.log_weights[0].exp().numpy()
    gm.means_ = m.means[0].numpy()
    gm.precisions_cholesky_ = m.precisions_cholesky[0].numpy()
    xt = ds.test
    expected = gm.score_samples(((xt - m.data_shift) / m.data_scale).double().numpy()) \
        - np.log(m.data_scale.double().numpy()).sum()
    np.testing.assert_allclose(m.log_prob(xt).double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_log_prob_matches_an_independent_sklearn_fit_on_images(digits):
    m = genlab.create_model("gmm", digits, n_components=4, covariance_type="diag")
    torch.manual_seed(0)
    m.fit_closed_form(digits)
    torch.manual_seed(0)  # the same seed the model drew from torch's generator
    seed = int(torch.randint(0, 2**31 - 1, ()))
    gm = GaussianMixture(4, covariance_type="diag", reg_covar=m.reg_covar, random_state=seed)
    gm.fit(digits.train.flatten(1).double().numpy())
    np.testing.assert_allclose(m.log_prob(digits.test).double().numpy(),
                               gm.score_samples(digits.test.flatten(1).double().numpy()), rtol=1e-5, atol=1e-4)


def test_saves_and_reloads_exactly(digits, tmp_path):
    run = genlab.train("gmm", digits, out=tmp_path / "run", n_components=3, conditional=True, progress=False)
    m2 = load(tmp_path / "run")
    assert m2.covariance_type == "full" and m2.means.dtype == torch.float64
    x, y = digits.test[:50], digits.test_labels[:50]
    assert torch.equal(run.model.log_prob(x), m2.log_prob(x))
    assert torch.equal(run.model.log_prob(x, y), m2.log_prob(x, y))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(run.model.sample(8, generator=g1), m2.sample(8, generator=g2))


def test_sample_moments_match_the_fitted_mixture():
    ds = toy2()
    m = genlab.train("gmm", ds, n_components=3, save=False, progress=False).model
    w = m.log_weights[0].exp()
    mu_u = m.means[0]                                       # working (standardised) scale
    cov_u = torch.linalg.inv(m.precisions_cholesky[0] @ m.precisions_cholesky[0].transpose(1, 2))
    mean_u = (w[:, None] * mu_u).sum(0)
    second = (w[:, None, None] * (cov_u + mu_u[:, :, None] * mu_u[:, None, :])).sum(0)
    cov_mix_u = second - mean_u[:, None] * mean_u[None, :]
    s, t = m.data_scale.double(), m.data_shift.double()
    mean, cov = mean_u * s + t, cov_mix_u * s[:, None] * s[None, :]
    x = m.sample(200_000, generator=torch.Generator().manual_seed(0)).double()
    assert torch.allclose(x.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(x.T), cov, rtol=0.03, atol=0.05)
    # and the fit is close to the truth: three components near the generating means
    near = torch.cdist(mu_u * s + t, torch.tensor([[0.0, 0.0], [4.0, 1.0], [-2.0, 5.0]], dtype=torch.float64))
    assert near.min(0).values.max() < 0.2


def test_conditional_samples_come_from_the_class_mixture(digits):
    from genlab.metrics.features import extractor_for

    m = genlab.train("gmm", digits, n_components=2, conditional=True, save=False, progress=False).model
    y = torch.arange(200) % 10
    x = m.sample(200, y=y, generator=torch.Generator().manual_seed(0))
    assert x.shape == (200, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    acc = (extractor_for(digits.spec).predict(x) == y).double().mean()
    assert acc > 0.8  # chance is 0.1
    # log_prob(x, y) uses the class's mixture; y=None marginalises with the class frequencies
    xt, yt = digits.test[:40], digits.test_labels[:40]
    per_class = torch.stack([m.log_prob(xt, torch.full((40,), k)).double() for k in range(10)])
    freq = torch.bincount(digits.train_labels, minlength=10).double() / len(digits.train_labels)
    marg = torch.logsumexp(per_class + freq.log()[:, None], 0)
    assert torch.allclose(m.log_prob(xt).double(), marg, atol=1e-4)
    assert torch.allclose(m.log_prob(xt, yt).double(), per_class[yt, torch.arange(40)], atol=1e-6)
    assert torch.equal(m.anomaly_score(xt, yt), -m.log_prob(xt, yt))
    r = m.encode(xt, yt)
    assert r.shape == (40, 2) and torch.allclose(r.sum(1), torch.ones(40), atol=1e-5)
    assert m.encode(xt).shape == (40, 20) and m.encode(xt, yt, hard=True).dtype == torch.long


def test_unconditional_model_refuses_a_label_to_sample(digits):
    m = genlab.train("gmm", digits, n_components=2, covariance_type="spherical", save=False, progress=False).model
    with pytest.raises(ConfigError, match="without conditional=true"):
        m.sample(4, y=3)
    assert m.capabilities() == ["log_prob", "encode", "anomaly_score", "impute", "fit_incomplete"]


@pytest.mark.parametrize("bad, match", [
    ({"covariance_type": "fulll"}, "invalid covariance_type='fulll' for 'gmm'; did you mean 'full'?"),
    ({"n_components": 0}, r"invalid n_components=0 for 'gmm' \(must be an integer >= 1\)"),
    ({"reg_covar": -1.0}, r"invalid reg_covar=-1.0 for 'gmm' \(must be a number >= 0 or null\)"),
    ({"init_params": "pca"}, "invalid init_params='pca' for 'gmm' .must be one of kmeans"),
])
def test_bad_hyperparameters_give_one_line_config_errors(digits, bad, match):
    with pytest.raises(ConfigError, match=match) as e:
        genlab.create_model("gmm", digits, **bad)
    assert "\n" not in str(e.value)


def test_too_many_components_for_a_class_is_a_config_error(digits):
    with pytest.raises(ConfigError, match="fewer than n_components=500"):
        genlab.train("gmm", digits, n_components=500, conditional=True, save=False, progress=False)
