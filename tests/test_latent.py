"""Latent models (models/latent.py): any family over the codes of another run's autoencoder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import genlab
from genlab.cli import main
from genlab.errors import ConfigError
from genlab.metrics.evaluate import evaluate, supported_metrics
from genlab.models.latent import LatentModel

AE = dict(net="mlp", hidden=[128], latent_dim=8, batch_size=64)  # small and quick: ~5 CPU-s on digits


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("latent") / "ae"
    genlab.train("ae", digits, out=out, steps=300, seed=0, progress=False, **AE)
    return out


@pytest.fixture(scope="module")
def gmm_prior(ae_run, digits):
    """pythae's two-stage sampler: a 10-component GMM over the AE's codes (closed form)."""
    return genlab.train("gmm", digits, out=ae_run.parent / "gmm@ae", latent=ae_run, seed=0, progress=False)


def test_samples_are_the_inner_samples_decoded_and_reload_exactly(ae_run, gmm_prior, digits):
    model, ae = gmm_prior.model, genlab.load(ae_run)
    assert model.family == "gmm@ae" and model.latent_dim == 8
    # the codes the inner model was fitted on are the AE's encoding of the training split
    assert torch.allclose(model.code_dataset(digits).train, ae.encode(digits.train), atol=1e-6)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    x = model.sample(50, generator=g())
    assert x.shape == (50, *digits.spec.shape) and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(x, ae.decode(model.inner.sample(50, generator=g())), atol=1e-6)
    again = genlab.load(gmm_prior.path)
    assert isinstance(again, LatentModel)
    assert torch.equal(again.sample(50, generator=g()), x)
    cfg = json.loads((gmm_prior.path / "config.json").read_text())
    assert cfg["family"] == "gmm" and cfg["latent"]["latent_dim"] == 8 and cfg["latent"]["family"] == "ae"
    assert cfg["latent"]["run_relative"] == "../ae"
    # the likelihood metric does not apply: the inner density is one of the codes, not of x
    assert not hasattr(model, "log_prob") and supported_metrics(model, digits)["nll"] is not None
    # the anomaly score ranks noise far above test digits
    noise = torch.rand(50, *digits.spec.shape)
    assert model.anomaly_score(noise).min() > model.anomaly_score(digits.test[:50]).median()


def test_gmm_prior_beats_the_single_gaussian_code_fit(ae_run, gmm_prior, digits):
    """An AE with a GMM over its codes (two-stage sampling) against the AE's own N(m, C) code fit:
    held-out codes are likelier, and samples are closer to the test set (Frechet distance, seed 0)."""
    ae, prior = genlab.load(ae_run), gmm_prior.model
    z = prior.codes(digits.test)
    gauss = torch.distributions.MultivariateNormal(ae.code_mean, scale_tril=ae.code_chol)
    assert prior.latent_log_prob(digits.test).mean() > gauss.log_prob(z).mean() + 1.0  # nats per code
    fd_gauss = evaluate(ae, digits, ["fid"], seed=0, progress=False)["metrics"]["fid"]
    fd_gmm = evaluate(prior, digits, ["fid"], seed=0, progress=False)["metrics"]["fid"]
    assert fd_gmm < 0.8 * fd_gauss, (fd_gmm, fd_gauss)


def test_refuses_a_changed_or_missing_autoencoder_run(ae_run, gmm_prior, tmp_path, capsys):
    ae, lat = tmp_path / "ae", tmp_path / "gmm@ae"
    shutil.copytree(ae_run, ae)
    shutil.copytree(gmm_prior.path, lat)
    cfg = json.loads((lat / "config.json").read_text())
    cfg["latent"]["run"] = str(tmp_path / "elsewhere")  # as if moved: found through run_relative
    (lat / "config.json").write_text(json.dumps(cfg))
    assert genlab.load(lat).latent_dim == 8

    w = genlab.load(ae).state_dict()
    key = next(k for k in w if k.startswith("encoder") and k.endswith("weight"))
    w[key] = w[key] + 1e-3  # retrained / modified weights
    from genlab.io import save_weights
    save_weights(w, ae / "model.safetensors")
    with pytest.raises(ConfigError, match="changed.*model.safetensors"):
        genlab.load(lat)
    assert main(["sample", str(lat), "-n", "4", "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genlab: error:") and "model.safetensors" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.npy").exists()

    shutil.rmtree(ae)
    with pytest.raises(ConfigError, match="missing.*model.safetensors"):
        genlab.load(lat)


def test_cli_train_sample_eval_and_conditional_ddpm(ae_run, tmp_path, capsys, digits):
    """`genlab train ddpm --latent RUN` end to end; conditional latent diffusion samples the asked class."""
    run = tmp_path / "ddpm@ae"
    assert main(["train", "ddpm", "--data", "digits", "--latent", str(ae_run), "--steps", "200", "--out", str(run),
                 "--set", "conditional=true", "--set", "hidden=[128,128]", "--set", "timesteps=200",
                 "--quiet"]) == 0
    assert (run / "samples.png").exists() and (run / "reconstructions.png").exists()
    out = tmp_path / "s.npy"
    assert main(["sample", str(run), "-n", "20", "--label", "3", "--steps", "20", "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (20, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert main(["eval", str(run), "--metrics", "fid,balance"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    # chance is 0.1; the AE's reconstructions bound what the codes can say (measured: 0.69 here)
    assert ev["metrics"]["class_accuracy"] > 0.4 and ev["metrics"]["classes_dropped"] == 0
    capsys.readouterr()
    # pixelcnn models discrete images: over continuous codes it does not apply (one line, exit 2)
    assert main(["train", "pixelcnn", "--latent", str(ae_run), "--steps", "1", "--out", str(tmp_path / "p"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not apply" in err and len(err.splitlines()) == 1 and not (tmp_path / "p").exists()
    # a run that does not decode is no autoencoder; a path that is no run is named
    genlab.train("gmm", digits, out=tmp_path / "gmm", progress=False)
    assert main(["train", "gmm", "--latent", str(tmp_path / "gmm"), "--out", str(tmp_path / "g2"), "--quiet"]) == 2
    assert "no encode/decode" in capsys.readouterr().err
    assert main(["train", "gmm", "--latent", str(tmp_path / "nope"), "--out", str(tmp_path / "g3"), "--quiet"]) == 2
    assert "not a genlab run" in capsys.readouterr().err


def test_compare_trains_the_autoencoder_then_the_latent_model(tmp_path):
    from genlab.workflows.compare import compare, expand_models

    spec = genlab.load_dataset("digits").spec
    assert expand_models(["gmm@pca"], spec) == ["pca", "gmm@pca"]
    full = expand_models(["all", "ddpm@vae"], spec)
    assert full[-1] == "ddpm@vae" and full.index("vae") < full.index("ddpm@vae") and "pixelcnn" in full
    with pytest.raises(genlab.GenlabError):
        expand_models(["ddpm@nosuch"], spec)
    res = compare("digits", ["gmm@pca"], steps=1, n=200, out=tmp_path / "cmp", progress=False)
    by = {e["name"]: e for e in res["families"]}
    assert [e["status"] for e in res["families"]] == ["ok", "ok"]
    assert by["gmm@pca"]["latent"] == {"dim": 16, "autoencoder": "pca", "run": "pca"}
    assert "nll" not in by["gmm@pca"]["metrics"]
    assert by["gmm@pca"]["metrics"]["fid"] < by["pca"]["metrics"]["fid"]  # a better prior than N(0, I)
    assert "gmm@pca (16-D codes)" in (tmp_path / "cmp" / "report.html").read_text()
