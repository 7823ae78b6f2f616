"""Every experiment in its tiny mode: it writes its figure and JSON, and its numbers show the property
it is about. The list from the CLI."""

from __future__ import annotations

import json
import math

import pytest

from genlab.cli import main
from genlab.experiments import list_experiments, run_experiment
from genlab.experiments.reparam_gradients import closed_form_variances


def _run(name, tmp_path):
    r = run_experiment(name, tmp_path / name, quick=True)
    assert (tmp_path / name / f"{name}.png").stat().st_size > 2000
    saved = json.loads((tmp_path / name / f"{name}.json").read_text())
    assert saved["figure"].endswith(f"{name}.png")
    return r


def test_at_least_twelve_experiments_are_listed(capsys):
    names = list_experiments()
    assert len(names) >= 12
    for n in ("ae-vs-pca", "latent-dim-sweep", "prior-sampling", "reparam-gradients", "elbo-gap", "one-class",
              "flows-ood", "diffusion-bound", "mode-collapse", "synthetic-training"):
        assert n in names
    assert main(["experiment", "--list"]) == 0
    listed = capsys.readouterr().out
    assert main(["experiment"]) == 0 and capsys.readouterr().out == listed
    assert all(n in listed for n in names)
    assert main(["experiment", "ae-vs-pac"]) == 2 and "did you mean 'ae-vs-pca'" in capsys.readouterr().err


def test_reparam_gradients_match_the_closed_forms(tmp_path):
    r = _run("reparam-gradients", tmp_path)
    for row in r["rows"]:
        assert row["var_reparameterised"] < row["var_score_function"]
        assert row["var_reparameterised"] == pytest.approx(row["closed_var_reparameterised"], rel=0.05)
        assert row["var_score_function"] == pytest.approx(row["closed_var_score_function"], rel=0.1)
        assert row["mean_reparameterised"] == pytest.approx(row["true_gradient"], abs=0.05)
    sf = [row["closed_var_score_function"] for row in r["rows"]]
    assert sf == sorted(sf) and sf[-1] > 100 * sf[0]  # grows with the dimension
    assert closed_form_variances(1, 0.0, 0.0, 1.0) == (4.0, 15.0)  # E[eps^6] = 15 for mu = c = 0, d = 1


def test_elbo_gap_bound_rises_with_k(tmp_path):
    lk = _run("elbo-gap", tmp_path)["results"]["ELBO-trained"]["L_k"]
    assert all(b > a for a, b in zip(lk, lk[1:]))  # L_1 = ELBO < L_5 < L_50


def test_ae_vs_pca_matches_pcas_closed_form(tmp_path):
    r = _run("ae-vs-pca", tmp_path)["results"]
    closed = r["pca_train_mse_closed_form"]
    assert 0.95 * closed <= r["pca"]["train_mse"] <= closed + 1e-6  # (clamping to [0, 1] only helps)
    assert r["pca"]["knn5_accuracy"] > 0.3


def test_latent_dim_sweep_pca_error_falls_for_every_example(tmp_path):
    r = _run("latent-dim-sweep", tmp_path)
    assert r["pca_per_example_monotone_share"] > 0.99
    errs = [x["test_mse"] for x in r["results"]["pca"]]
    assert errs == sorted(errs, reverse=True)


def test_prior_sampling_vae_decodes_the_prior_better_than_an_ae(tmp_path):
    s = _run("prior-sampling", tmp_path)["scores"]
    assert s["VAE, z ~ N(0, I)"]["mean_confidence"] > s["AE, z ~ N(0, I)"]["mean_confidence"]
    assert s["real test digits"]["mean_confidence"] > 0.9


def test_one_class_auroc_well_above_chance(tmp_path):
    r = _run("one-class", tmp_path)
    assert r["mean_auroc"]["pca"] > 0.9
    assert all(0.5 < v <= 1 for v in r["auroc"]["pca"].values())


def test_diffusion_bound_parts_add_up(tmp_path):
    r = _run("diffusion-bound", tmp_path)["results"]
    for sched in ("linear", "cosine"):
        p = r[sched]
        assert p["identity_error"] < 1e-3  # L_T + L_0 + sum_t L_(t-1) = the bound, per example
        assert p["min_step_term"] >= -1e-5  # each L_(t-1) is a KL
        assert p["L_T"] < 1e-2 and math.isclose(p["total"], p["L_T"] + p["L_0"] + p["sum_L_t-1"], rel_tol=1e-4)


def test_flows_ood_quick_variant_ranks_noise_below_digits(tmp_path):
    r = _run("flows-ood", tmp_path)["results"]["digits"]
    bpd = r["bits_per_dim"]
    assert bpd["uniform noise"] > bpd["digits (test)"] + 1
    assert r["auroc_vs_in_distribution"]["uniform noise"] > 0.95
    # blank images look more typical than digits to the likelihood (the phenomenon); at 8x8 a 4x4 tile is a
    # quarter of the image, so the ratio has nothing local to cancel (its remedy at 28x28: tests/test_use.py)
    assert r["auroc_vs_in_distribution"]["blank images"] < 0.1
    assert set(r["auroc_of_the_ratio"]) == {"blank images", "uniform noise"}


def test_mode_collapse_runs_its_variants_over_seeds(tmp_path):
    r = _run("mode-collapse", tmp_path)
    assert set(r["results"]) == {"vanilla", "minibatch-std", "pacgan-4"}
    for v in r["results"].values():
        assert len(v["per_seed"]) == len(r["seeds"]) and 0 <= v["modes_mean"] <= r["n_modes"]


def test_synthetic_training_learns_from_samples_and_not_from_shuffled_labels(tmp_path):
    r = _run("synthetic-training", tmp_path)
    assert r["real_data"] > 0.9
    assert r["families"]["gmm"]["cas"] > 0.8                 # class-conditional samples teach the classes
    assert r["shuffled_labels_control"]["cas"] < 0.25        # the same samples with shuffled labels: chance (0.1)
    assert 0 < r["families"]["gmm"]["few_plus_synthetic"] <= 1 and 0.5 < r["real_few"] <= r["real_data"] + 0.05


def test_gan_batchnorm_variants_differ_in_batch_dependence_only_where_batch_norm_is(tmp_path):
    r = _run("gan-batchnorm", tmp_path)["results"]
    assert set(r) == {"batch", "none", "group"}
    assert r["batch"]["batch_dependence"] > 1e-4                    # batch statistics tie a sample to its batch
    assert r["none"]["batch_dependence"] == 0 and r["group"]["batch_dependence"] == 0
    assert all(math.isfinite(v["fid_mean"]) for v in r.values())
