"""evaluate(): the protocol, the real-data reference, direction checks, and its errors."""

from __future__ import annotations

import json

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.errors import ConfigError
from genlab.metrics.evaluate import evaluate, format_table
from genlab.models.base import GenerativeModel


class Replay(GenerativeModel):
    """A 'generator' that returns (noisy copies of) given examples: a stand-in with known quality."""

    family = "replay"

    def __init__(self, spec, pool):
        super().__init__(spec)
        self.pool = pool

    def sample(self, n, y=None, generator=None):
        idx = torch.randint(len(self.pool), (n,), generator=generator)
        return self.pool[idx]


def test_real_data_generator_scores_like_the_real_data_row(digits):
    r = evaluate(Replay(digits.spec, digits.train), digits, seed=0)
    m, ref = r["metrics"], r["reference"]
    assert set(m) >= {"fid", "kid", "precision", "recall", "density", "coverage", "balance_kl", "classes_dropped"}
    assert "nll" not in m  # no log_prob
    assert m["classes_dropped"] == 0 and m["balance_kl"] < 0.05
    for k in ("precision", "recall", "coverage"):
        assert abs(m[k] - ref[k]) < 0.1, k
    assert m["fid"] < 3 * ref["fid"] + 0.5
    p = r["protocol"]
    assert p["n_generated"] == p["n_reference"] == len(digits.test) and p["reference_split"] == "test"
    assert p["feature_extractor"]["name"] == "genlab-classifier-digits"
    assert len(p["feature_extractor"]["weights_sha256"]) == 64
    assert "real data" in format_table(r)


def test_mode_collapsed_generator_high_precision_low_recall_and_coverage(digits):
    zeros = digits.train[digits.train_labels == 0]
    r = evaluate(Replay(digits.spec, zeros), digits, seed=0)["metrics"]
    assert r["precision"] > 0.8  # its samples are real digits...
    assert r["recall"] < 0.3 and r["coverage"] < 0.3  # ...of one class only
    assert r["classes_dropped"] >= 8 and r["balance_kl"] > 1.0


def test_pca_likelihood_and_toy_kl(digits):
    pca = genlab.train("pca", digits, save=False, progress=False).model
    r = evaluate(pca, digits, metrics=["nll"])  # the whole test split
    assert r["metrics"]["nll"] == pytest.approx(-pca.log_prob(digits.test).mean().item(), rel=1e-5)
    assert "bpd" in r["metrics"] and r["notes"]["nll"].startswith("exact")
    toy = genlab.load_dataset("25gaussians", n_train=3000, n_test=500, sigma=0.5)
    m = genlab.train("pca", toy, latent_dim=1, save=False, progress=False).model
    r = evaluate(m, toy, metrics=["nll", "mmd", "swd"])
    met = r["metrics"]
    # KL(p || q) >= 0, and equals NLL - true entropy by construction
    assert met["kl"] > 0 and met["kl"] == pytest.approx(met["nll"] - met["true_entropy"], abs=1e-6)
    assert r["reference"]["mmd"] < met["mmd"] and r["reference"]["swd"] < met["swd"]


def test_bad_requests_are_clear(digits):
    ae = genlab.create_model("ae", digits)
    with pytest.raises(ConfigError, match="'ae' has no likelihood"):
        evaluate(ae, digits, metrics=["nll"])
    with pytest.raises(ConfigError, match="did you mean 'fid'"):
        evaluate(ae, digits, metrics=["fdi"])
    with pytest.raises(ConfigError, match="larger than the 360 examples"):
        evaluate(ae, digits, n=10_000)
    with pytest.raises(ConfigError, match="only for vector data"):
        evaluate(ae, digits, metrics=["mmd"])


def test_cli_eval_writes_json(in_tmp, capsys):
    assert main(["train", "pca", "--out", "p", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "p", "--n", "100", "--metrics", "fid,precision,nll", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["metrics"]) >= {"fid", "precision", "nll"} and out["protocol"]["n_generated"] == 100
    assert json.loads((in_tmp / "p" / "eval.json").read_text())["metrics"] == out["metrics"]
