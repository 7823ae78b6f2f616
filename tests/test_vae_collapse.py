"""The VAE on low-dimensional vectors uses its code (issue 22, "defaults that work"): p(x|z)'s std
starts at 0.1 of the standardised scale. Started at the data's scale (std 1), the decoder on the
circles explains the data as noise and ignores z (posterior collapse: KL ~ 0, the fitted Gaussian's
likelihood, mean samples at one point)."""

from __future__ import annotations

import math

import torch

import genlab
from genlab.models.vae import VAE


def _fit(data):
    run = genlab.train("vae", data, steps=600, progress=False, save=False, seed=0)
    with torch.no_grad():
        mu, logvar = run.model.posterior(data.test)
        kl = float((0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(1).mean())
    m = genlab.evaluate(run.model, data, ["nll", "mmd"], n=len(data.test), seed=0)["metrics"]
    return kl, m


def test_the_vae_on_circles_uses_its_code_and_beats_the_gaussian(monkeypatch):
    data = genlab.load_dataset("circles", n_train=2000, n_test=500)
    assert VAE.initial_log_std(data.spec) == math.log(0.1)
    kl, m = _fit(data)
    x = data.train.double()
    gauss = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=torch.cov(x.T))
    gauss_nll = float(-gauss.log_prob(data.test.double()).mean())
    assert kl > 1.0                        # the code carries information
    assert m["nll"] < gauss_nll - 0.05     # and the model beats a Gaussian
    assert m["mmd"] < 0.05                 # its (mean) samples lie on the circles

    monkeypatch.setattr(VAE, "initial_log_std", staticmethod(lambda spec: 0.0))  # the old start
    kl0, m0 = _fit(data)
    assert kl0 < 0.1 and m0["mmd"] > 10 * m["mmd"]  # collapsed: the cause, shown
