"""log_columns=true: every vector family models the logs of a table's nonnegative columns
(nn/log_columns.py). The transform's offsets follow their rule, it inverts exactly, a density with it
still integrates to 1 and matches the closed-form lognormal, samples stay in the support, imputing a
multiplicative relation gets better, a saved run keeps it, and misuse is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import genlab
from genlab.data.spec import DataSpec, Dataset
from genlab.errors import ConfigError
from genlab.nn.log_columns import fit_log_columns, log_abs_det, log_forward, log_inverse


def test_the_offsets_follow_the_rule_and_the_transform_inverts():
    x = torch.tensor([[1.0, 0.0, -1.0, 0.0],
                      [4.0, 0.5, 2.0, 0.0],
                      [2.0, 2.0, 3.0, 0.0]], dtype=torch.float64)
    cols, off, floor = fit_log_columns([x[:2], x[2:]])                   # batches give the same as one pass
    assert cols.tolist() == [True, True, False, False]                   # negative / all-zero columns stay linear
    assert off.tolist() == [0.0, 0.25, 0.0, 0.0]                         # half the smallest positive value
    assert floor[:2].tolist() == [0.5, 0.125]                            # half the smallest training x + c
    t = log_forward(x, cols, off, floor)
    assert torch.allclose(t[:, 0], x[:, 0].log()) and torch.equal(t[:, 2:], x[:, 2:])
    assert torch.allclose(log_inverse(t, cols, off), x, atol=1e-12)
    # the log-determinant is d t / d x summed over the logged columns
    assert torch.allclose(log_abs_det(x, cols, off, floor), -(x[:, 0].log() + (x[:, 1] + 0.25).log()))
    # a value below the training range is clamped to the floor, not sent to -inf
    assert torch.isfinite(log_forward(torch.tensor([[-5.0, -5.0, 0.0, 0.0]], dtype=torch.float64),
                                      cols, off, floor)).all()


def lognormal_table(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(0.5 + 0.8 * torch.randn(n, 1, generator=g, dtype=torch.float64)).float()


@pytest.mark.parametrize("family", ["gmm", "pca"])
def test_a_density_with_log_columns_integrates_to_one_and_is_the_lognormal(family):
    if family == "pca":  # pca needs a second column to have a latent dimension
        x = lognormal_table(2000)
        x = torch.cat([x, x * torch.exp(0.3 * torch.randn(2000, 1, generator=torch.Generator().manual_seed(1)))], 1)
        settings = {"latent_dim": 1}
    else:
        x, settings = lognormal_table(2000), {"n_components": 1, "reg_covar": 1e-6}
    data = Dataset(x[:1500], x[1500:], DataSpec("vector", tuple(x.shape[1:]), name="lognormal"))
    model = genlab.train(family, data, save=False, progress=False, log_columns=True, **settings).model
    assert model.log_columns.all()
    if family == "gmm":
        # one Gaussian over t = log x is the lognormal: log p(x) = log N(log x; m, s^2) - log x
        t = data.train.double().log().flatten()
        m, s = float(t.mean()), float(t.std(unbiased=False))
        xs = torch.linspace(float(data.train.min()), 30, 50).reshape(-1, 1)   # the clamp starts below this
        want = stats.lognorm(s=s, scale=np.exp(m)).logpdf(xs.double().numpy().ravel())
        assert np.allclose(model.log_prob(xs).double().numpy(), want, atol=2e-3)

        def density(v):
            return float(model.log_prob(torch.tensor([[v]], dtype=torch.float32)).exp())
        total = integrate.quad(density, 0, 50, limit=200)[0] + integrate.quad(density, 50, np.inf, limit=200)[0]
    else:  # 2-D: integrate over t = log x with the Jacobian undone, on a grid (the density in x is the one checked)
        g = torch.linspace(-4, 5, 400, dtype=torch.float64)
        tt = torch.cartesian_prod(g, g)
        lp = model.log_prob(tt.exp().float()).double() + tt.sum(1)      # p_x(e^t) |dx/dt|
        total = float(lp.exp().sum() * (g[1] - g[0]) ** 2)
    assert total == pytest.approx(1.0, abs=2e-3)


def test_samples_stay_in_the_support_and_the_density_is_better_on_skewed_data():
    x = lognormal_table(3000)
    noise = torch.exp(0.2 * torch.randn(3000, 1, generator=torch.Generator().manual_seed(2)))
    x = torch.cat([x, 0.2 * x ** 2 * noise], 1)
    data = Dataset(x[:2000], x[2000:], DataSpec("vector", (2,), name="skewed"))
    plain = genlab.train("gmm", data, save=False, progress=False, n_components=1).model
    logged = genlab.train("gmm", data, save=False, progress=False, n_components=1, log_columns=True).model
    g = torch.Generator().manual_seed(0)
    assert (plain.sample(2000, generator=g) < 0).any()          # a Gaussian puts mass below 0
    assert (logged.sample(2000, generator=g) > 0).all()         # the log columns never leave the support
    assert logged.log_prob(data.test).mean() > plain.log_prob(data.test).mean() + 1.0


def test_imputing_a_multiplicative_relation_is_better_with_log_columns():
    # area ~ radius^2 (times lognormal noise): linear in the logs, curved on the raw scale
    from genlab.apps.impute import impute

    g = torch.Generator().manual_seed(3)
    r = torch.exp(0.6 * torch.randn(1200, 1, generator=g))
    x = torch.cat([r, 3.14 * r ** 2 * torch.exp(0.05 * torch.randn(1200, 1, generator=g)), r * 2.0], 1)
    data = Dataset(x[:1000], x[1000:], DataSpec("vector", (3,), name="circles"))
    rmse = {}
    for logs in (False, True):
        model = genlab.train("gmm", data, save=False, progress=False, n_components=1, log_columns=logs).model
        out = impute(model, data, mask="random:0.3", n=200, seed=0, baselines=("iterative",))
        rmse[logs] = out["methods"]["gmm"]["rmse_standardised"]
        rmse["iterative"] = out["methods"]["iterative"]["rmse_standardised"]
    assert rmse[True] < 0.85 * rmse[False] and rmse[True] < 0.85 * rmse["iterative"]   # 0.219, 0.268, 0.306


def test_a_saved_run_keeps_its_log_columns_and_a_streamed_table_fits_the_same(tmp_path):
    x = lognormal_table(600)
    x = torch.cat([x, x - 1.0], 1)                                      # the second column has negatives
    np.save(tmp_path / "t.npy", x.numpy())
    run = genlab.train("gmm", str(tmp_path / "t.npy"), tmp_path / "run", progress=False, steps=1,
                       n_components=2, log_columns=True)
    again = genlab.load(tmp_path / "run")
    assert again.config["log_columns"] is True and again.log_columns.tolist() == [True, False]
    assert torch.equal(again.log_prob(x[:20]), run.model.log_prob(x[:20]))
    streamed = genlab.train("gmm", str(tmp_path / "t.npy"), save=False, progress=False, steps=1, stream=True,
                            n_components=2, log_columns=True).model
    for name in ("log_columns", "log_offset", "log_floor", "data_shift", "data_scale"):
        assert torch.allclose(getattr(streamed, name).double(), getattr(run.model, name).double(), rtol=1e-5), name


def test_log_columns_misuse_is_a_one_line_error():
    with pytest.raises(ConfigError, match="log_columns=true is for tables"):
        genlab.train("gmm", "digits", save=False, progress=False, log_columns=True, steps=1)
    x = lognormal_table(300)
    data = Dataset(torch.cat([x, x], 1)[:200], torch.cat([x, x], 1)[200:], DataSpec("vector", (2,), name="t"))
    model = genlab.train("pca", data, save=False, progress=False, latent_dim=1, log_columns=True).model
    with pytest.raises(ConfigError, match="log_columns") as e:
        model.denoise_gaussian(data.test, 0.1)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("family", sorted(n for n, c in genlab.models.MODELS.items()
                                          if "vector" in c.kinds and c.__module__.startswith("genlab.")))
def test_every_vector_family_trains_with_log_columns_and_samples_inside_the_support(family):
    torch.manual_seed(0)
    x = torch.exp(0.5 + 0.8 * torch.randn(600, 2))
    data = Dataset(x[:500], x[500:], DataSpec("vector", (2,), name="positive"))
    model = genlab.train(family, data, save=False, progress=False, steps=30, log_columns=True).model
    assert model.log_columns.all()
    assert (model.sample(300, generator=torch.Generator().manual_seed(0)) > 0).all()   # a plain model's need not
    if "log_prob" in model.capabilities():
        assert torch.isfinite(model.log_prob(data.test[:10])).all()
