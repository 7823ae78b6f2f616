"""`genlab compare` and `genlab report`: every family on one page, from the registry, failures shown."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.errors import ConfigError
from genlab.models import MODELS, GenerativeModel
from genlab.workflows.compare import DEFAULT_MINUTES, compare, families_for, load_results, plan_budgets


class TinyGaussian(GenerativeModel):
    """A family registered only inside these tests: x ~ N(m, diag s^2) over the flattened data."""

    family = "tinygauss"
    description = "diagonal Gaussian (test family)"
    likelihood_kind = "exact"
    compare_weight = 2.0

    def __init__(self, spec, init_scale: float = 1.0):
        super().__init__(spec)
        self.mean = torch.nn.Parameter(torch.zeros(spec.dim))
        self.log_std = torch.nn.Parameter(torch.full((spec.dim,), math.log(init_scale)))

    def log_prob(self, x, y=None):
        """Exact: sum_j log N(x_j; m_j, s_j^2)."""
        return torch.distributions.Normal(self.mean, self.log_std.exp()).log_prob(x.reshape(len(x), -1)).sum(1)

    def loss(self, x, y=None):
        return {"loss": -self.log_prob(x).mean()}

    @torch.no_grad()
    def sample(self, n, y=None, generator=None):
        self.condition(y, n, sample=True)
        z = torch.randn(n, self.spec.dim, generator=generator)
        x = (self.mean + self.log_std.exp() * z).reshape(n, *self.spec.shape)
        return x.clamp(0, 1) if self.spec.kind == "image" else x


class Broken(TinyGaussian):
    """Trains a few steps, then raises: the page must show it failed and still show the others."""

    family = "broken"
    description = "fails mid-way (test family)"
    calls = 0

    def loss(self, x, y=None):
        type(self).calls += 1
        if type(self).calls > 5:
            raise RuntimeError("boom: this family fails at its sixth step")
        return super().loss(x, y)


@pytest.fixture
def extra_families(monkeypatch):
    monkeypatch.setitem(MODELS, "tinygauss", TinyGaussian)
    monkeypatch.setitem(MODELS, "broken", Broken)
    Broken.calls = 0


def page_checks(html: str, names):
    """Self-contained, accessible page listing every family in the metrics table."""
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)
    imgs = re.findall(r"<img [^>]*>", html)
    assert imgs and all('src="data:image/png;base64,' in t for t in imgs)
    assert all(re.search(r'alt="[^"]{10,}"', t) for t in imgs)
    table = html[html.index('<table id="metrics">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<th scope="row">([^<]+?)(?: <span class="badge[^>]*>[^<]*</span>)?</th>', table)
    assert rows == ["real data (train vs test)", *names]
    assert '<th scope="col">' in table and "<caption>" in table
    assert 'class="stamp"' in html and "@media print" in html


def test_compare_end_to_end_with_a_new_and_a_failing_family(extra_families, tmp_path, capsys, digits):
    # a family registered later is picked up from the registry without changes to the report code
    assert {"tinygauss", "broken"} <= set(families_for(digits.spec))
    out = tmp_path / "cmp"
    assert main(["compare", "--data", "digits", "--models", "pca,vae,tinygauss,broken", "--steps", "20",
                 "--set", "vae.eval_k=20", "--set", "vae.latent_dim=4", "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()  # the page is written, and the exit status says a family failed
    printed = captured.out
    assert "genlab: error: 1 of 4 failed: broken (train)" in captured.err
    assert f"report: {out / 'report.html'}" in printed and "broken       FAILED  (train)" in printed

    res = load_results(out)
    assert [e["name"] for e in res["families"]] == ["pca", "vae", "tinygauss", "broken"]
    ok = {e["name"]: e for e in res["families"] if e["status"] == "ok"}
    assert set(ok) == {"pca", "vae", "tinygauss"}
    for name, e in ok.items():  # every metric that applies, for every family, under one protocol
        m = e["metrics"]
        expected = {"fid", "kid", "precision", "recall", "density", "coverage", "balance_kl", "classes_dropped"}
        if "log_prob" in e["capabilities"]:
            expected |= {"nll"}  # (bits/dim too, except for a Bernoulli likelihood on non-binary data)
        assert expected <= set(m), (name, set(m))
        assert ("nll" in m) == ("log_prob" in e["capabilities"])
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in m.values()), (name, m)
        assert e["train"]["steps"] == (0 if name == "pca" else 20)
        assert (out / e["run"] / "eval.json").exists()
    assert ok["vae"]["capabilities"] == ["log_prob", "encode", "decode", "reconstruct", "anomaly_score", "impute"]
    assert {"samples", "reconstructions", "latent"} <= set(ok["vae"]["figures"])
    assert "latent" not in ok["tinygauss"]["figures"]  # it does not encode
    # the reference row is real data: train split against the test split, better than any 20-step model
    assert res["reference"]["fid"] < min(e["metrics"]["fid"] for e in ok.values())
    assert res["protocol"]["n_generated"] == 360 and res["protocol"]["reference_split"] == "test"

    bad = next(e for e in res["families"] if e["name"] == "broken")
    assert bad["status"] == "failed" and bad["stage"] == "train" and "boom" in bad["error"]
    assert "boom" in bad["traceback"] and bad["run"] == "broken"

    # each family keeps an ordinary run directory: loadable and resumable
    model = genlab.load(out / "vae")
    assert model.config["latent_dim"] == 4
    genlab.resume(out / "vae", steps=3, progress=False)
    assert json.loads((out / "vae" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 23

    html = (out / "report.html").read_text()
    page_checks(html, ["pca", "vae", "tinygauss", "broken"])
    assert 'id="failures"' in html and "boom: this family fails at its sixth step" in html
    assert 'id="latent"' in html and 'id="reconstructions"' in html and 'id="density"' not in html


def test_report_from_existing_runs_reuses_their_evaluation(tmp_path, capsys):
    runs = []
    for fam in ("pca", "ae"):
        runs.append(genlab.train(fam, "digits", out=tmp_path / fam, steps=20, progress=False, latent_dim=3).path)
    page = tmp_path / "page" / "r.html"
    assert main(["report", *map(str, runs), "--out", str(page), "--quiet", "--n", "200"]) == 0
    assert f"report: {page}" in capsys.readouterr().out
    res = load_results(page.parent)
    assert [e["name"] for e in res["families"]] == ["pca", "ae"] and res["n"] == 200
    assert all(e["status"] == "ok" and e["metrics"]["fid"] > 0 for e in res["families"])
    page_checks(page.read_text(), ["pca", "ae"])
    evals = [r / "eval.json" for r in runs]
    stamps = [p.stat().st_mtime_ns for p in evals]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "again"), "--quiet", "--n", "200"]) == 0
    assert [p.stat().st_mtime_ns for p in evals] == stamps  # same protocol: evaluation read back, not redone
    again = load_results(tmp_path / "again")
    assert again["families"][1]["metrics"] == res["families"][1]["metrics"]


def test_report_refuses_runs_on_different_data_and_compare_an_occupied_dir(tmp_path, capsys):
    a = genlab.train("pca", "digits", out=tmp_path / "a", progress=False).path
    b = genlab.train("pca", "8gaussians", out=tmp_path / "b", progress=False, latent_dim=1).path
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "x.html"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "trained on different data" in err and err.count("\n") == 1
    (tmp_path / "c" / "pca").mkdir(parents=True)
    (tmp_path / "c" / "pca" / "config.json").write_text("{}")
    assert main(["compare", "--models", "pca", "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "already holds runs for pca" in capsys.readouterr().err
    assert main(["compare", "--models", "pca", "--budget", "vea=1", "--quiet"]) == 2
    assert "did you mean 'vae'" not in capsys.readouterr().err  # only the requested families are valid


def test_budget_plan_splits_the_total_by_weight(extra_families, digits):
    plan = plan_budgets(["pca", "vae", "gan", "tinygauss"], digits.spec, minutes=4.0)
    assert plan["pca"] == {"steps": 1}  # closed form: takes none of the time
    assert plan["vae"] == plan["gan"] == {"minutes": 1.0} and plan["tinygauss"] == {"minutes": 2.0}
    plan = plan_budgets(["vae", "gan", "tinygauss"], digits.spec, minutes=3.0, budgets={"gan": 5})
    assert plan["gan"] == {"minutes": 5.0} and plan["vae"] == {"minutes": 1.0}
    assert plan_budgets(["vae", "gan"], digits.spec, steps=7) == {"vae": {"steps": 7}, "gan": {"steps": 7}}
    # a latent entry trains an MLP over codes: weight 1, whatever its family's weight on images
    plan = plan_budgets(["vae", "ddpm", "ddpm@vae"], digits.spec, minutes=4.0)
    assert plan["ddpm"] == {"minutes": 2.0} and plan["vae"] == plan["ddpm@vae"] == {"minutes": 1.0}
    total = sum(b["minutes"] for b in plan_budgets(families_for(digits.spec), digits.spec).values() if "minutes" in b)
    assert total == pytest.approx(DEFAULT_MINUTES)  # the default total, whatever families are registered
    with pytest.raises(ConfigError, match="unknown family in --budget 'vea'"):
        plan_budgets(["vae"], digits.spec, budgets={"vea": 1})
    with pytest.raises(ConfigError):
        plan_budgets(["vae"], digits.spec, minutes=-1)


def test_likelihood_past_its_time_limit_is_scored_on_a_stated_subset(tmp_path, digits):
    from genlab.metrics.evaluate import LATTICE_DRAWS
    from genlab.workflows.compare import evaluate_run
    from genlab.report.html import build_html

    run = genlab.train("pca", digits, out=tmp_path / "p", progress=False, latent_dim=4)
    full = evaluate_run(run.model, digits, None, 120, seed=3, nll_seconds=0)
    scored, log_prob = [], run.model.log_prob
    run.model.log_prob = lambda x, y=None, **kw: scored.append(len(x)) or log_prob(x, y, **kw)
    part = evaluate_run(run.model, digits, None, 120, seed=3, nll_seconds=1e-9)
    del run.model.log_prob
    assert "nll_examples" not in full and part["nll_examples"] == 8  # the timing probe's size, at least
    # the probe's 8 log-probs are the metric's, not computed a second time (then one pass per
    # dequantisation draw: pca is a density at the lattice points)
    assert scored == [8] * (1 + LATTICE_DRAWS)
    idx = torch.randperm(len(digits.test), generator=torch.Generator().manual_seed(3))[:8]
    with torch.no_grad():
        expected = -run.model.log_prob(digits.test[idx]).mean().item()
    assert part["metrics"]["nll"] == pytest.approx(expected, rel=1e-5)  # the first 8 of the same reference
    assert full["metrics"]["fid"] == part["metrics"]["fid"]  # the other metrics keep the whole protocol
    assert "on 8 of the 120 reference examples" in part["notes"]["nll"]
    entry = {"name": "pca", "status": "ok", "metrics": part["metrics"], "nll_examples": 8, "figures": {}}
    html = build_html({"data": "digits", "seed": 3, "n": 120, "nll_seconds": 1e-9, "families": [entry],
                       "reference": part["reference"], "protocol": part["protocol"], "genlab_version": "x",
                       "created": "now", "data_spec": digits.spec.to_dict()}, tmp_path)
    assert "†: on 8 (pca) of the 120 reference examples" in html


class BadSampler(TinyGaussian):
    """Trains and draws the run's 64-sample grid, then cannot draw the evaluation's samples."""

    family = "badsampler"

    def sample(self, n, y=None, generator=None):
        if n > 100:
            raise ValueError("no sampler today")
        return super().sample(n, y, generator)


def test_failure_in_evaluation_is_reported_with_its_stage(tmp_path, monkeypatch):
    from genlab.workflows.compare import compare

    monkeypatch.setitem(MODELS, "badsampler", BadSampler)
    res = compare("digits", ["badsampler"], steps=5, out=tmp_path / "c", progress=False)
    (e,) = res["families"]
    assert e["status"] == "failed" and e["stage"] == "evaluate" and "no sampler today" in e["error"]
    assert (tmp_path / "c" / "badsampler" / "config.json").exists()  # training finished; the run stays
    html = (tmp_path / "c" / "report.html").read_text()
    assert "failed during evaluate: ValueError: no sampler today" in html
    assert "No family finished its evaluation" in html


def test_progress_shows_the_family_and_its_own_bar(extra_families, tmp_path, capsys):
    from genlab.workflows.compare import compare

    res = compare("digits", ["pca", "tinygauss"], steps=5, out=tmp_path / "c", n=50, progress=True)
    assert [e["status"] for e in res["families"]] == ["ok", "ok"]  # a closed-form fit under a progress bar too
    err = capsys.readouterr().err
    assert "compare" in err and "tinygauss on digits" in err and "training left" in err


def test_normal_class_runs_the_one_class_protocol_with_an_auroc_column(tmp_path, capsys):
    res = compare("digits", ["pca", "gmm"], steps=2, out=tmp_path / "c", n=30, progress=False, normal_class="0")
    by = {e["name"]: e for e in res["families"]}
    for fam in ("pca", "gmm"):
        cfg = json.loads((tmp_path / "c" / fam / "config.json").read_text())
        assert cfg["data"]["source"]["classes"] == [0]                    # trained on the normal class only
        assert by[fam]["metrics"]["auroc"] > 0.9                          # zeros are easy to tell from other digits
    assert "0" in by["pca"]["notes"]["auroc"]
    assert "AUROC (one-class)" in (tmp_path / "c" / "report.html").read_text()
    assert main(["compare", "--data", "digits", "--models", "pca", "--steps", "1", "--n", "20", "--quiet",
                 "--normal-class", "eleven", "--out", str(tmp_path / "d")]) == 2
    assert "eleven" in capsys.readouterr().err
