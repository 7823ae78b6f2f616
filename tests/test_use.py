"""The "use" verbs: anomaly scores, imputation, denoising (apps/anomaly.py, apps/impute.py,
apps/denoise.py, each family's impute / denoise_gaussian / anomaly_score) and their CLI."""

import json
import warnings

import numpy as np
import pytest
import torch

import genlab
from conftest import data_dir_available
from genlab.apps.anomaly import anomaly, calibrate, local_ratio, score
from genlab.apps.denoise import denoise_data
from genlab.apps.impute import choose_imputer, impute, impute_batched, parse_mask
from genlab.cli import main
from genlab.data.spec import DataSpec, Dataset
from genlab.errors import ConfigError
from genlab.models.base import capabilities_of


def blobs(n_train=2000, n_test=4000, seed=0):
    """2-D toy: normal points N(0, I) (label 0) and far-away outliers at radius 8 (label 1)."""
    g = torch.Generator().manual_seed(seed)

    def draw(n):
        x = torch.randn(n, 2, generator=g)
        y = (torch.rand(n, generator=g) < 0.2).long()
        ang = torch.rand(n, generator=g) * 2 * torch.pi
        far = 8 * torch.stack([ang.cos(), ang.sin()], 1) + 0.3 * torch.randn(n, 2, generator=g)
        return torch.where(y[:, None] == 1, far, x), y

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    spec = DataSpec("vector", (2,), 2, ["normal", "outlier"], name="blobs")
    return Dataset(xtr, xte, spec, ytr, yte)


@pytest.fixture(scope="module")
def digit_models(digits):
    torch.manual_seed(0)
    return {f: genlab.train(f, digits, save=False, progress=False).model.eval() for f in ("pca", "gmm")}


# -- imputation ---------------------------------------------------------------------------------------
def small_model(family, data):
    kw = {"ae": dict(latent_dim=4, hidden=(32,), net="mlp"), "vae": dict(latent_dim=4, hidden=(32,), net="mlp"),
          "realnvp": dict(n_layers=2, hidden=(16,), channels=8, n_scales=1, steps_per_scale=1),
          "maf": dict(n_layers=2, hidden=(32,)), "ddpm": dict(timesteps=100, base=8, mults=(1,), attention=False),
          "fm": dict(base=8, mults=(1,), attention=False), "gmm": dict(n_components=2, max_iter=20)}.get(family, {})
    torch.manual_seed(0)
    m = genlab.create_model(family, data, **kw)
    m.prepare(data)
    m.fit_closed_form(data)
    return m.eval()


IMPUTERS = [("pca", {}), ("gmm", {}), ("ae", dict(steps=3)), ("vae", dict(steps=3)),
            ("vae", dict(steps=3, method="gibbs")), ("realnvp", dict(steps=3)), ("maf", dict(steps=3)),
            ("ddpm", dict(steps=5)), ("fm", dict(steps=3))]


@pytest.mark.parametrize("family,options", IMPUTERS)
def test_imputation_leaves_known_entries_unchanged(digits, family, options):
    assert "impute" in capabilities_of(family)
    m = small_model(family, digits)
    x = digits.test[:6]
    known = parse_mask("random:0.4", x, torch.Generator().manual_seed(1))
    x_nan = torch.where(known.bool(), x, torch.full_like(x, float("nan")))  # missing entries are never read
    out = m.impute(x_nan, known, generator=torch.Generator().manual_seed(0), **options)
    k = known.bool()
    assert torch.equal(out[k], x[k])
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out[~k], torch.zeros_like(out[~k]))  # something was filled in


@pytest.mark.parametrize("family", ["pca", "gmm", "maf", "ddpm"])
def test_imputation_of_vectors_keeps_known_entries(family):
    data = blobs(500, 50)
    m = small_model(family, data)
    known = torch.tensor([[1.0, 0.0]]).expand(50, 2)
    out = impute_batched(m, data.test, known, batch_size=20, steps=3) if family in ("maf", "ddpm") else \
        impute_batched(m, data.test, known, batch_size=20)
    assert torch.equal(out[:, 0], data.test[:, 0])


def test_pca_imputation_is_the_conditional_gaussian(digit_models, digits):
    m = digit_models["pca"]
    x = digits.test[:20]
    known = parse_mask("random:0.5", x, torch.Generator().manual_seed(2))
    out = m.impute(x, known).reshape(20, -1).double().numpy()
    mu = m.mean.double().numpy()
    C = m.covariance().numpy()
    xf, kf = x.reshape(20, -1).double().numpy(), known.reshape(20, -1).bool().numpy()
    for i in range(20):
        o, mi = kf[i], ~kf[i]
        direct = mu[mi] + C[np.ix_(mi, o)] @ np.linalg.solve(C[np.ix_(o, o)], xf[i, o] - mu[o])
        np.testing.assert_allclose(out[i, mi], np.clip(direct, 0, 1), atol=1e-5)


def test_gmm_imputation_of_one_full_component_is_the_conditional_gaussian():
    data = blobs(1000, 30)
    data = Dataset(data.train @ torch.tensor([[1.0, 0.8], [0.0, 0.6]]), data.test, data.spec, data.train_labels,
                   data.test_labels)
    torch.manual_seed(0)
    m = genlab.create_model("gmm", data, n_components=1, covariance_type="full")
    m.prepare(data)
    m.fit_closed_form(data)
    known = torch.tensor([[0.0, 1.0]]).expand(30, 2)
    out = m.impute(data.test, known)
    from sklearn.mixture import GaussianMixture

    u = ((data.train - m.data_shift) / m.data_scale).double().numpy()  # gmm fits the standardised data
    gm = GaussianMixture(1, covariance_type="full", reg_covar=1e-6, random_state=0).fit(u)
    S, mu = gm.covariances_[0], gm.means_[0]
    v = ((data.test - m.data_shift) / m.data_scale).double().numpy()
    x0 = mu[0] + S[0, 1] / S[1, 1] * (v[:, 1] - mu[1])
    expect = x0 * float(m.data_scale[0]) + float(m.data_shift[0])
    np.testing.assert_allclose(out[:, 0].numpy(), expect, atol=1e-4)


def test_conditional_covariance_of_the_missing_entries_is_the_schur_complement():
    from genlab.nn.imputation import conditional_gaussian, expected_scatter

    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov, mean = A @ A.T + 0.5 * torch.eye(5, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    known = torch.rand(40, 5, generator=g) > 0.4
    known[0] = False  # a row with nothing known: the mean and the whole covariance
    filled, blocks = conditional_gaussian(x, known, mean, cov, with_missing_cov=True)
    w = torch.rand(40, generator=g, dtype=torch.float64)
    expect = torch.zeros(5, 5, dtype=torch.float64)
    C = cov.numpy()
    for i in range(40):
        o, mi = known[i].numpy(), ~known[i].numpy()
        block = C[np.ix_(mi, mi)] - C[np.ix_(mi, o)] @ np.linalg.solve(C[np.ix_(o, o)], C[np.ix_(o, mi)])
        expect[np.ix_(mi, mi)] += w[i] * torch.from_numpy(block)
    d = filled - mean
    expect += (w[:, None] * d).T @ d
    assert torch.allclose(expected_scatter(filled, blocks, w, mean), expect, atol=1e-10)
    assert torch.allclose(filled[0], mean)


def test_gmm_em_round_on_complete_rows_is_scikit_learns_em_step():
    from sklearn.mixture import GaussianMixture

    data = blobs(500, 10)
    for cov_type in ("full", "tied", "diag", "spherical"):
        torch.manual_seed(0)
        m = genlab.train("gmm", data, save=False, progress=False, n_components=3, covariance_type=cov_type,
                         reg_covar=1e-3, max_iter=2).model   # not converged: a round still moves it
        u = ((data.train - m.data_shift) / m.data_scale).double().numpy()
        gm = GaussianMixture(3, covariance_type=cov_type, reg_covar=1e-3, max_iter=1, warm_start=True)
        gm.weights_, gm.means_ = m.log_weights[0].exp().numpy(), m.means[0].numpy()
        gm.precisions_cholesky_, gm.converged_, gm.lower_bound_ = m.precisions_cholesky[0].numpy(), False, -np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(u)                                              # one E step and one M step from there
        m.fit_incomplete(data.train, torch.ones_like(data.train), max_iter=1)
        np.testing.assert_allclose(m.means[0].numpy(), gm.means_, atol=1e-9)
        np.testing.assert_allclose(m.log_weights[0].exp().numpy(), gm.weights_, atol=1e-9)
        np.testing.assert_allclose(m.precisions_cholesky[0].numpy(), gm.precisions_cholesky_, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("family, settings", [("gmm", {"n_components": 2, "reg_covar": 0.0}),
                                              ("gmm", {"n_components": 1, "reg_covar": 0.0, "conditional": True}),
                                              ("pca", {"latent_dim": 3})])
def test_em_from_incomplete_rows_climbs_and_learns_what_complete_rows_alone_cannot(family, settings):
    # 600 rows of a 2-cluster, correlated 6-D table with 40% of entries missing: 19 rows are complete
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g)

    def draw(n):
        c = torch.randint(2, (n, 1), generator=g).float() * 2 - 1
        return 3 * c * torch.ones(6) + torch.randn(n, 6, generator=g) @ A.T * (1 + 0.5 * c), (c[:, 0] > 0).long()
    (x, y), (xt, yt) = draw(600), draw(2000)
    spec = DataSpec("vector", (6,), 2, ["a", "b"], name="t")
    known = torch.rand(600, 6, generator=g) > 0.4
    rows = known.all(1)
    complete = Dataset(x[rows], xt, spec, y[rows], yt)
    model = genlab.train(family, complete, save=False, progress=False, seed=0, **settings).model
    before = float(model.log_prob(xt, yt if settings.get("conditional") else None).mean())
    history = model.fit_incomplete(torch.where(known, x, torch.nan), known, y if settings.get("conditional") else None)
    assert len(history) > 2 and all(b >= a - 1e-9 for a, b in zip(history, history[1:]))  # EM never descends
    after = float(model.log_prob(xt, yt if settings.get("conditional") else None).mean())
    ideal = genlab.train(family, Dataset(x, xt, spec, y, yt), save=False, progress=False, seed=0, **settings).model
    best = float(ideal.log_prob(xt, yt if settings.get("conditional") else None).mean())
    assert after - before > 0.75 * (best - before) > 0, (before, after, best)  # most of the way to the full rows
    # the closed-form / scikit-learn fit on complete rows is a fixed point of the same EM
    state = {k: v.clone() for k, v in ideal.state_dict().items()}
    ideal.fit_incomplete(x, torch.ones_like(x), y if settings.get("conditional") else None)
    for k, v in ideal.state_dict().items():
        assert torch.allclose(v, state[k], atol=1e-4), k


def test_impute_with_em_learns_from_the_rows_it_fills():
    # 20 complete training rows of a correlated 8-D Gaussian; 400 test rows with 30% missing: EM on both
    # estimates the covariance from 420 rows instead of 20, and imputes almost as the true Gaussian does
    from genlab.nn.imputation import conditional_gaussian

    g = torch.Generator().manual_seed(1)
    A = torch.randn(8, 8, generator=g)
    data = Dataset(torch.randn(20, 8, generator=g) @ A.T, torch.randn(400, 8, generator=g) @ A.T,
                   DataSpec("vector", (8,), name="gauss"))
    model = genlab.train("gmm", data, save=False, progress=False, n_components=1, reg_covar=1e-3).model
    keep = {k: v.clone() for k, v in model.state_dict().items()}
    plain, em = (impute(model, data, mask="random:0.3", n=400, baselines=(), em=e) for e in (False, True))
    known = parse_mask("random:0.3", data.test, torch.Generator().manual_seed(0)).bool()  # impute's mask
    truth = conditional_gaussian(data.test, known, torch.zeros(8), A @ A.T)
    oracle = float((truth - data.test.double())[~known].pow(2).mean().sqrt())
    plain, em_rmse = plain["methods"]["gmm"]["rmse"], em["methods"]["gmm"]["rmse"]
    assert em["em"] and em_rmse - oracle < 0.2 * (plain - oracle), (plain, em_rmse, oracle)
    assert all(torch.equal(v, keep[k]) for k, v in model.state_dict().items())  # a copy was refined
    with pytest.raises(ConfigError, match="cannot learn from rows with missing entries"):
        impute(small_model("ae", data), data, mask="random:0.3", em=True)


def test_choose_imputer_picks_the_mixture_a_two_cluster_table_needs_without_its_test_rows():
    # two clusters whose columns correlate in opposite directions: one Gaussian averages the two
    # regressions away, a 2-component mixture imputes each with its own
    g = torch.Generator().manual_seed(0)
    def rows(n):
        c = torch.randint(2, (n, 1), generator=g).float() * 2 - 1           # cluster -1 / +1
        t = torch.randn(n, 1, generator=g)
        return torch.cat([t + 4 * c, c * t + 0.1 * torch.randn(n, 1, generator=g), t, c * t], 1)
    data = Dataset(rows(400), rows(100), DataSpec("vector", (4,), name="two-clusters"))
    chosen = choose_imputer(data, mask="random:0.25", seed=0)
    assert chosen["family"] == "gmm" and chosen["settings"]["n_components"] >= 2
    assert chosen["rmse"] == min(r["rmse"] for r in chosen["scores"]) and len(chosen["scores"]) == 22  # 3D/4 = D-1,
    # so 3 pca ranks, raw and standardised, and 16 gmm; no log_columns candidates: no column is nonnegative
    blind = Dataset(data.train, 1e3 * torch.randn(100, 4, generator=g), data.spec)  # other test rows: same choice
    assert choose_imputer(blind, mask="random:0.25", seed=0)["scores"] == chosen["scores"]
    best = genlab.train("gmm", data, save=False, progress=False, **chosen["settings"]).model
    one = genlab.train("gmm", data, save=False, progress=False, n_components=1).model
    rmse = [impute(m, data, mask="random:0.25", n=100, baselines=())["methods"]["gmm"]["rmse_standardised"]
            for m in (best, one)]
    assert rmse[0] < 0.8 * rmse[1]
    with pytest.raises(ConfigError, match="validation"):
        choose_imputer(data, validation=1.5)


def test_imputation_on_digits_beats_mean_imputation(digit_models, digits, tmp_path):
    for family in ("pca", "gmm"):
        for mask in ("center", "random:0.3"):
            r = impute(digit_models[family], digits, mask=mask, n=200, baselines=("mean",), out=tmp_path / family)
            rows = r["methods"]
            assert rows[family]["rmse"] < 0.85 * rows["mean"]["rmse"], (family, mask, rows)
            assert rows[family]["accuracy"] > rows["mean"]["accuracy"]
    assert (tmp_path / "gmm" / "impute.png").exists() and (tmp_path / "gmm" / "impute.json").exists()


# -- anomaly ------------------------------------------------------------------------------------------
def test_auroc_on_planted_outliers_and_calibrated_fpr(tmp_path):
    data = blobs()
    normal_only = data.select_classes([0])
    m = small_model("gmm", normal_only)
    r = anomaly(m, data, normal_class="normal", fpr=0.1, out=tmp_path / "s.csv")
    assert r["auroc"] > 0.99 and r["auroc_full"] > 0.99
    assert r["recall"] > 0.95 and r["precision"] > 0.8
    # about 10% of the normal examples not used for the threshold are flagged (3200 normals, 1600 held out)
    assert abs(r["fpr"] - 0.1) < 0.025, r["fpr"]
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "index,label,normal,role,score,flagged" and len(lines) == len(data.test) + 1
    assert json.loads((tmp_path / "s.json").read_text())["auroc"] == r["auroc"]
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_calibrate_quantile():
    s = np.arange(1000, dtype=float)
    t = calibrate(s, 0.05)
    assert (s > t).mean() <= 0.05 and (s > t).mean() > 0.04


def test_one_class_digits_run_scores_other_digits_as_anomalies(digits):
    run = genlab.train("pca", "digits", classes=[0], save=False, progress=False, latent_dim=8)
    r = anomaly(run.model)  # the run's own data, all classes; normal = the class it was trained on
    assert r["normal_classes"] == ["0"] and r["auroc_full"] > 0.95


def test_local_density_is_the_tile_gaussian_in_closed_form():
    from scipy.stats import multivariate_normal

    from genlab.nn.local_density import LocalGaussian

    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, 4, 6, generator=g) ** 2  # two channels, 4 x 6 images, 2 x 2 tiles
    m = LocalGaussian(patch=2, reg=1e-3).fit(x[:200])
    tiles = np.concatenate([x[:200, :, i:i + 2, j:j + 2].reshape(200, -1).numpy()
                            for i in range(0, 4, 2) for j in range(0, 6, 2)]).astype(np.float64)
    mu, cov = tiles.mean(0), np.cov(tiles.T, bias=True) + 1e-3 * np.eye(8)  # maximum likelihood, + reg
    ref = sum(multivariate_normal(mu, cov).logpdf(x[200:, :, i:i + 2, j:j + 2].reshape(100, -1).double().numpy())
              for i in range(0, 4, 2) for j in range(0, 6, 2))
    np.testing.assert_allclose(m.log_prob(x[200:]).numpy(), ref, rtol=1e-10)
    whole = LocalGaussian(patch=1, reg=0).fit(x[:, :1, :1, :1])  # one 1x1 tile: the 1-D Gaussian
    s = x[:, 0, 0, 0].double().numpy()
    np.testing.assert_allclose(whole.log_prob(x[:5, :1, :1, :1]).numpy(),
                               -0.5 * ((s[:5] - s.mean()) ** 2 / s.var() + np.log(2 * np.pi * s.var())))
    assert LocalGaussian().fit(x).patch == 2  # the default: the largest of 4, 2, 1 dividing 4 x 6
    with pytest.raises(ConfigError, match="must divide the 4x6 images"):
        LocalGaussian(patch=4).fit(x)


@pytest.mark.skipif(not data_dir_available("mnist"), reason="MNIST IDX files not available (GENLAB_DATA_DIR)")
def test_likelihood_ratio_stops_a_simple_digit_passing_for_normal():
    """pca trained on MNIST 8s gives test 1s a higher likelihood than test 8s (AUROC 8 vs 1 about 0.34);
    the ratio against the local density fitted to the same 8s ranks the 1s as the outliers they are."""
    from sklearn.metrics import roc_auc_score

    run = genlab.train("pca", "mnist", classes=[8], save=False, progress=False, latent_dim=32)
    test = genlab.load_dataset("mnist")
    keep = (test.test_labels == 8) | (test.test_labels == 1)
    x, is_one = test.test[keep], (test.test_labels[keep] == 1).numpy()
    plain = roc_auc_score(is_one, score(run.model, x).numpy())
    fn, background = local_ratio(run.model)
    ratio = roc_auc_score(is_one, score(run.model, x, fn=fn).numpy())
    assert background.patch == 4 and plain < 0.45 and ratio > 0.75, (plain, ratio)


def test_likelihood_ratio_errors(digits):
    ae = small_model("ae", digits)
    with pytest.raises(ConfigError, match="cannot score by a likelihood ratio.*pca"):
        anomaly(ae, ratio="local")
    with pytest.raises(ConfigError, match="needs image data"):
        anomaly(small_model("gmm", blobs().select_classes([0])), blobs(), ratio="local")
    with pytest.raises(ConfigError, match="give --ratio local too"):
        anomaly(small_model("pca", digits), patch=2)
    pca = small_model("pca", digits)
    r = anomaly(pca, normal_class="0", ratio="local")
    assert r["score"].startswith("log p_local(x) - log p_model(x)")
    fn, _ = local_ratio(pca)  # what was scored: the local density minus the model's, per test example
    assert r["score_mean"] == pytest.approx(float(fn(digits.test).mean()), rel=1e-9)


def test_gan_and_ddpm_have_anomaly_scores(digits):
    for family in ("gan", "ddpm"):
        assert "anomaly_score" in capabilities_of(family)
    m = small_model("ddpm", digits)
    x = digits.test[:4]
    s = m.anomaly_score(x, steps=2)
    far = m.anomaly_score(torch.rand_like(x), steps=2)
    assert s.shape == (4,) and torch.isfinite(s).all() and far.mean() > s.mean()  # noise images restore worst


# -- denoising ----------------------------------------------------------------------------------------
def test_pca_denoiser_denoises(digit_models, digits):
    r = denoise_data(digit_models["pca"], digits, noise=0.3, n=200)
    assert r["psnr_denoised"] > r["psnr_noisy"] + 4


def test_denoising_autoencoder_denoises(digits):
    torch.manual_seed(0)
    run = genlab.train("ae", digits, steps=400, save=False, progress=False, corruption="gaussian",
                       noise_level=0.6, latent_dim=16, hidden=(128,))
    r = denoise_data(run.model, digits, noise=0.3, n=200)
    assert r["psnr_denoised"] > r["psnr_noisy"] + 3, r


# -- CLI end to end and one-line errors ----------------------------------------------------------------
def write_table(path, nan=False, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["width,height,depth,species"]
    for i in range(300):
        sp = "setosa" if i % 3 else "virginica"
        c = np.array([1.0, 2.0, 0.5]) if sp == "setosa" else np.array([6.0, -3.0, 4.0])
        v = c + rng.normal(0, [0.5, 0.3, 0.2])
        v[1] += 0.8 * (v[0] - c[0])  # correlated columns, so imputation has something to use
        cells = [f"{a:.4f}" for a in v]
        if nan and i % 4 == 0:
            cells[i % 3] = "" if i % 8 else "NA"
        lines.append(",".join(cells + [sp]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_with_text_labels_end_to_end(in_tmp, capsys):
    table = write_table(in_tmp / "flowers.csv")
    assert main(["train", "gmm", "--data", str(table), "--label-column", "species", "--classes", "setosa",
                 "--out", "run", "--set", "n_components=2", "--quiet"]) == 0
    assert main(["anomaly", "run", "--quiet"]) == 0  # normal = setosa, the class the run was trained on
    r = json.loads((in_tmp / "run" / "anomaly" / "scores.json").read_text())
    assert r["normal_classes"] == ["setosa"] and r["auroc"] > 0.99
    assert main(["anomaly", "run", "--data", str(table), "--label-column", "species", "--normal-class",
                 "virginica", "--out", "v.csv", "--quiet"]) == 0
    assert json.loads((in_tmp / "v.json").read_text())["auroc"] < 0.01  # setosa-trained: virginica looks normal
    assert main(["train", "gmm", "--data", str(table), "--label-column", "species", "--out", "all",
                 "--set", "n_components=2", "--quiet"]) == 0  # both species, for imputation
    holes = write_table(in_tmp / "holes.csv", nan=True)
    assert main(["impute", "all", "--data", str(holes), "--label-column", "species", "--out", "filled",
                 "--quiet"]) == 0
    out = (in_tmp / "filled" / "imputed.csv").read_text().splitlines()
    assert out[0] == "width,height,depth,species" and len(out) == 301
    src = holes.read_text().splitlines()
    for a, b in zip(src[1:], out[1:]):
        for ca, cb in zip(a.split(","), b.split(",")):
            assert cb not in ("", "NA", "nan")
            if ca not in ("", "NA"):
                assert ca == cb or abs(float(ca) - float(cb)) < 1e-6
    assert main(["impute", "all", "--data", str(table), "--label-column", "species", "--mask", "random:0.2",
                 "-n", "60", "--out", "scored", "--quiet"]) == 0
    rows = json.loads((in_tmp / "scored" / "impute.json").read_text())["methods"]
    assert rows["gmm"]["rmse_standardised"] < rows["mean"]["rmse_standardised"]
    assert main(["models", "gmm"]) == 0
    assert "can: train, sample, log_prob, encode, anomaly_score, impute" in capsys.readouterr().out


def test_impute_choose_trains_the_winner_and_fills_a_table_without_a_run(in_tmp, capsys):
    truth = write_table(in_tmp / "truth.csv")
    holes = write_table(in_tmp / "holes.csv", nan=True)  # the same rows, 75 of them with a hole
    assert main(["impute", "--choose", "--data", str(holes), "--label-column", "species", "--out", "chosen",
                 "--quiet"]) == 0
    choice = json.loads((in_tmp / "chosen" / "choice.json").read_text())
    assert len(choice["candidates"]) == 40 and choice["mask"] == "random:0.33"  # 1 of 3 cells per holed row;
    # 40: on a 3-column table pca's rank D/4 = 0 is skipped and 3D/4 = D-1 = 2 is tried once: 16 gmm and 4 pca
    # (2 ranks, raw and standardised) models, each also with log columns (the measurements are positive)
    assert choice["validation_rmse"] == min(c["rmse"] for c in choice["candidates"])
    assert choice["family"] == "gmm" and choice["settings"]["n_components"] >= 2  # two species, two clusters
    held = choice["held_out"]["methods"]
    assert held["gmm"]["rmse_standardised"] < 0.5 * held["mean"]["rmse_standardised"]

    def cells(path):
        return np.array([[float(c) if c not in ("", "NA") else np.nan for c in line.split(",")[:3]]
                         for line in path.read_text().splitlines()[1:]])
    x, gaps, filled = cells(truth), np.isnan(cells(holes)), cells(in_tmp / "chosen" / "imputed.csv")
    assert gaps.sum() == 75 and np.isfinite(filled).all()
    np.testing.assert_allclose(filled[~gaps], x[~gaps], atol=1e-4)  # known cells unchanged
    complete = x[~gaps.any(1)]
    err = ((filled - x) / complete.std(0))[gaps]
    mean_err = ((complete.mean(0) - x) / complete.std(0))[gaps]
    assert np.sqrt((err ** 2).mean()) < 0.5 * np.sqrt((mean_err ** 2).mean())
    out = capsys.readouterr().out
    assert "chose gmm" in out and "filled 75 missing cells in 75 of 300 rows" in out
    # the saved winner is the model that filled the table: used again, it fills it identically
    assert main(["impute", "chosen/run", "--data", str(holes), "--label-column", "species", "--out", "again",
                 "--quiet"] + (["--em"] if choice["em"] else [])) == 0
    assert (in_tmp / "again" / "imputed.csv").read_text() == (in_tmp / "chosen" / "imputed.csv").read_text()


def one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genlab: error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err


def test_one_line_errors(in_tmp, capsys):
    assert main(["train", "pca", "--data", "digits", "--out", "pca", "--quiet"]) == 0
    assert main(["train", "gan", "--data", "digits", "--out", "gan", "--steps", "1", "--quiet"]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["anomaly", "pca", "--normal-class", "tulip", "--quiet"], "tulip", "not among the labels")
    one_line_error(capsys, ["anomaly", "pca", "--data", "moons", "--quiet"], "shape (2,)", "(1, 8, 8)")
    one_line_error(capsys, ["impute", "gan", "--quiet"], "'gan' cannot impute", "pca", "gmm", "ddpm")
    one_line_error(capsys, ["impute", "pca", "--mask", "zigzag", "--quiet"], "--mask")
    one_line_error(capsys, ["impute", "pca", "--mask", "random:1.5", "--quiet"], "0 < P < 1")
    one_line_error(capsys, ["denoise", "gan", "--quiet"], "'gan' cannot denoise", "ae", "pca")
    one_line_error(capsys, ["impute", "--quiet"], "give the RUN", "--choose")
    one_line_error(capsys, ["impute", "pca", "--choose", "--data", "moons", "--quiet"], "not both")
    one_line_error(capsys, ["impute", "--choose", "--quiet"], "--choose needs --data")
    one_line_error(capsys, ["impute", "--choose", "--data", "digits", "--quiet"], "for tables", "images")
    sparse = write_table(in_tmp / "sparse.csv").read_text().splitlines()
    (in_tmp / "sparse.csv").write_text("\n".join(sparse[:1] + [",".join([""] + r.split(",")[1:]) if i % 20 else r
                                                             for i, r in enumerate(sparse[1:])]) + "\n")
    one_line_error(capsys, ["impute", "--choose", "--data", "sparse.csv", "--label-column", "species", "--quiet"],
                   "only 15 of 300 rows are complete", "at least 20")
    one_line_error(capsys, ["anomaly", "pca", "--fpr", "2", "--quiet"], "--fpr")
    one_line_error(capsys, ["train", "pca", "--data", "digits", "--classes", "tulip", "--out", "x", "--quiet"],
                   "tulip")


def test_mask_file(digits, tmp_path):
    holes = np.zeros((8, 8))
    holes[2:5, 3:6] = 1
    np.save(tmp_path / "m.npy", holes)
    known = parse_mask(str(tmp_path / "m.npy"), digits.test[:3])
    assert known.shape == (3, 1, 8, 8) and int((known == 0).sum()) == 3 * 9
    with pytest.raises(ConfigError):
        np.save(tmp_path / "bad.npy", np.zeros((5, 5)))
        parse_mask(str(tmp_path / "bad.npy"), digits.test[:3])


def test_compare_page_says_which_family_supports_which_use():
    from genlab.report.html import uses_table

    fams = [{"name": f, "capabilities": capabilities_of(f)} for f in ("gan", "pca")]
    html = uses_table({"families": fams})
    gan = html.split('<th scope="row">gan</th>')[1].split("</tr>")[0]
    pca = html.split('<th scope="row">pca</th>')[1].split("</tr>")[0]
    assert gan.count("✓") == 1 and pca.count("✓") == 5  # gan: anomaly only; pca: every use
