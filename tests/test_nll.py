"""The nll metric: bits/dim that mean the same thing for every family (a code length bound of the
discrete data), whatever the model's log_prob is over (likelihood_support)."""

from __future__ import annotations

import math

import pytest
import torch

import genlab
from genlab.metrics.evaluate import evaluate, likelihood_support, parse_nll_note
from genlab.metrics.likelihood import bits_per_dim


def isotropic_bpd(x: torch.Tensor, mu: torch.Tensor, s2: float, levels: int) -> float:
    """Closed form of the dequantised bits/dim of N(mu, s2 I) fitted at the lattice points x = k/(L-1).

    With z = (k + u - 1/2) / (L - 1) (the dequantised point y = (k + u) / L on the model's scale),
    E_u (z - mu)^2 = (x - mu)^2 + 1 / (12 (L - 1)^2), so
        E_u[-log N(z)] = D/2 log(2 pi s2) + (|x - mu|^2 + D / (12 (L - 1)^2)) / (2 s2);
    log p_y = log p_z + D log(L / (L - 1)) and bpd = (nll_y + D log L) / (D log 2).
    (In the y scale this is the brief's ((k + 1/2)/L - mu_y)^2 + 1/(12 L^2) with mu_y, s2_y mapped.)"""
    x, mu = x.flatten(1).double(), mu.double()
    D, L = x.shape[1], levels
    e = ((x - mu) ** 2).sum(1) + D / (12 * (L - 1) ** 2)
    nll_z = 0.5 * D * math.log(2 * math.pi * s2) + e / (2 * s2)
    nll_y = nll_z - D * math.log(L / (L - 1))
    return float(bits_per_dim(float(nll_y.mean()), D, n_levels=L))


def test_isotropic_gaussian_same_bits_per_dim_through_gmm_pca_and_closed_form(digits):
    gmm = genlab.train("gmm", digits, n_components=1, covariance_type="spherical", save=False,
                       progress=False).model
    mu = gmm.means[0, 0].float()
    s2 = float(gmm.precisions_cholesky[0, 0]) ** -2
    pca = genlab.create_model("pca", digits, latent_dim=4)  # W = 0: N(mu, sigma^2 I)
    pca.mean.copy_(mu)
    pca.noise_variance.fill_(s2)
    assert likelihood_support(gmm) == likelihood_support(pca) == "lattice"
    r_g = evaluate(gmm, digits, metrics=["nll"], reference=False)
    r_p = evaluate(pca, digits, metrics=["nll"], reference=False)
    g, p = r_g["metrics"], r_p["metrics"]
    assert g["nll"] == pytest.approx(p["nll"], rel=1e-5)  # the same density at the lattice points
    assert g["bpd"] == pytest.approx(p["bpd"], abs=1e-5)   # the same uniform draws (seeded)
    exact = isotropic_bpd(digits.test, mu, s2, digits.spec.levels)
    assert 0 < g["bpd_se"] < 2e-3
    assert abs(g["bpd"] - exact) < 4 * g["bpd_se"]
    kind, support = parse_nll_note(r_g["notes"]["nll"])
    assert (kind, support) == ("exact", "lattice") and "dequantised at evaluation" in r_g["notes"]["nll"]


def test_pca_with_many_components_is_no_longer_flattered(digits):
    pca = genlab.train("pca", digits, latent_dim=60, save=False, progress=False).model
    m = evaluate(pca, digits, metrics=["nll"], reference=False)["metrics"]
    naive = bits_per_dim(m["nll"], digits.spec.dim, n_levels=digits.spec.levels)
    assert naive < 3.5 < 10 < m["bpd"]  # near-singular covariance: a density spike, not a short code


def test_supports_derived_for_the_existing_families(digits):
    toy = genlab.load_dataset("8gaussians", n_train=200, n_test=100)
    make = genlab.create_model
    assert likelihood_support(make("vae", digits)) == "discrete"                        # Bernoulli
    assert likelihood_support(make("vae", digits, likelihood="gaussian")) == "lattice"
    assert likelihood_support(make("realnvp", digits)) == "dequantized"
    assert likelihood_support(make("maf", digits)) == "dequantized"
    assert likelihood_support(make("ddpm", digits)) == "dequantized"
    assert likelihood_support(make("fm", digits)) == "dequantized"
    assert likelihood_support(make("fm", digits, dequantize=False)) == "lattice"
    for fam in ("vae", "realnvp", "gmm", "pca", "fm"):
        assert likelihood_support(make(fam, toy)) == "continuous"


def test_flow_bits_per_dim_unchanged(digits):
    m = genlab.create_model("realnvp", digits)
    res = evaluate(m, digits, metrics=["nll"], n=50, reference=False)["metrics"]
    assert res["bpd"] == pytest.approx(bits_per_dim(res["nll"], 64, n_levels=17)) and "bpd_se" not in res


def test_vector_data_has_nll_but_no_bits_per_dim():
    toy = genlab.load_dataset("8gaussians", n_train=1000, n_test=200)
    m = genlab.train("gmm", toy, n_components=8, save=False, progress=False).model
    r = evaluate(m, toy, metrics=["nll"], reference=False)
    assert "bpd" not in r["metrics"] and parse_nll_note(r["notes"]["nll"]) == ("exact", "continuous")
    assert r["metrics"]["kl"] < 0.2  # eight components for eight Gaussians


def test_metrics_table_one_comparable_column(digits):
    from genlab.report.html import metrics_table

    fam = lambda name, kind, support, met: {"name": name, "status": "ok", "likelihood_kind": kind,
                                            "metrics": met, "notes": {"nll": f"{kind} ({support}): ..."}}
    results = {"data": "digits", "data_spec": digits.spec.to_dict(), "n": 360, "families": [
        fam("vae", "estimate", "discrete", {"fid": 3.0, "nll": 319.5}),
        fam("realnvp", "exact", "dequantized", {"fid": 5.0, "nll": -1329.0, "bpd": 1.9}),
        fam("pca", "exact", "lattice", {"fid": 4.0, "nll": -57.4, "bpd": 21.07, "bpd_se": 0.14}),
        fam("ddpm", "bound", "dequantized", {"fid": 2.0, "nll": -90.0, "bpd": 1.5}),
    ]}
    html = metrics_table(results)
    assert html.count("class=best") == 2  # fid (ddpm) and bits/dim (ddpm); none on the NLL text column
    assert "<td class=best>1.5" in html and "319.5 nats, estimate, discrete" in html
    assert "-1329 nats, exact, density of dequantised data" in html and "21.07<small> ±0.14</small>" in html
    assert "upper bound on their code length" in html
    # vector data: no bits/dim; NLL a comparable density column with its best
    vec = {"data": "8gaussians", "data_spec": {"kind": "vector", "shape": [2]}, "n": 100, "families": [
        fam("gmm", "exact", "continuous", {"nll": 2.5}), fam("realnvp", "exact", "continuous", {"nll": 2.9})]}
    html = metrics_table(vec)
    assert "bits/dim" not in html and "<td class=best>2.5" in html


def test_a_categorical_likelihood_over_the_data_levels_is_a_code_length(digits):
    """pixelcnn's log_prob is a probability of the digits' 17 levels: bits/dim is nll / (D log 2), no
    dequantisation term; with coarser levels (or Bernoulli pixels) it is not a code length of the data."""
    model = genlab.create_model("pixelcnn", digits, channels=8, n_layers=1).eval()
    res = evaluate(model, digits, ["nll"], n=50, seed=0)
    assert res["metrics"]["bpd"] == pytest.approx(res["metrics"]["nll"] / (64 * math.log(2)), rel=1e-9)
    coarse = genlab.create_model("pixelcnn", digits, channels=8, n_layers=1, levels=5).eval()
    assert "bpd" not in evaluate(coarse, digits, ["nll"], n=50, seed=0)["metrics"]
