"""Exploring latent spaces (apps/explore.py) and the shared interpolation (nn/interpolate.py), the
DDIM inversion behind ddpm's encode, the memorisation share, and `genlab explore` end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

import genlab
from genlab.apps import explore as ex
from genlab.cli import main
from genlab.data.spec import Dataset
from genlab.errors import ConfigError
from genlab.nn.interpolate import lerp, path, slerp
from genlab.samplers import NoiseSchedule, ddim_invert, sample_ddim


# -- slerp ---------------------------------------------------------------------------------------------
def test_slerp_keeps_the_norm_of_equal_norm_codes_and_follows_the_great_circle():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 16, generator=g), torch.randn(50, 16, generator=g)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # same norm, random directions
    for t in (0.0, 0.1, 0.5, 0.77, 1.0):
        z = slerp(a, b, t)
        assert torch.allclose(z.norm(dim=1), a.norm(dim=1), rtol=1e-5)
        # the angle to a grows linearly: angle(a, z) = t * angle(a, b)
        cos = lambda u, v: (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))  # noqa: E731
        omega = torch.arccos(cos(a, b).clamp(-1, 1))
        assert torch.allclose(torch.arccos(cos(a, z).clamp(-1, 1)), t * omega, atol=1e-3)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    # lerp's midpoint of two independent Gaussian codes falls inside the shell: norm ~ sqrt(d/2), not sqrt(d)
    a, b = torch.randn(2000, 64, generator=g), torch.randn(2000, 64, generator=g)
    assert abs(float(lerp(a, b, 0.5).norm(dim=1).mean()) / 8 - math.sqrt(0.5)) < 0.03
    assert abs(float(slerp(a, b, 0.5).norm(dim=1).mean()) / 8 - 1) < 0.03


def test_slerp_equals_lerp_for_parallel_codes_and_path_has_its_ends():
    a = torch.tensor([1.0, 2.0, -0.5])
    for b in (3 * a, a.clone()):
        for t in (0.0, 0.3, 1.0):
            assert torch.allclose(slerp(a, b, t), lerp(a, b, t), atol=1e-6)
    # closed form on the unit circle: slerp(e1, e2, t) = (cos(t pi/2), sin(t pi/2))
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(slerp(e1, e2, 1 / 3), torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))
    p = path(e1, e2, 5, "slerp")
    assert p.shape == (5, 2) and torch.allclose(p[0], e1) and torch.allclose(p[-1], e2, atol=1e-6)
    with pytest.raises(ConfigError, match="interpolation"):
        path(e1, e2, 5, "cubic")


# -- DDIM inversion --------------------------------------------------------------------------------------
def test_ddim_inversion_round_trip_is_exact_in_the_limit_for_an_exact_eps_model():
    s = NoiseSchedule("linear", 1000)
    mu, sd = 1.5, 0.3
    ab_all = s.alpha_bar.float()

    def eps_fn(x, t):  # the exact eps for data N(mu, sd^2)
        ab = ab_all[t.long()].reshape(-1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * sd * sd + 1 - ab)

    x0 = mu + sd * torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    errs = []
    for k in (10, 50, 250):
        z = ddim_invert(eps_fn, s, x0, k)
        errs.append(float((sample_ddim(eps_fn, s, z, k, eta=0.0) - x0).abs().mean()))
        if k == 250:  # the codes are the prior's: N(0, I)
            assert abs(float(z.mean())) < 0.1 and abs(float(z.std()) - 1) < 0.1
    assert errs[0] > 3 * errs[1] > 9 * errs[2] and errs[2] < 0.02  # first order: the error shrinks with the step


@pytest.fixture(scope="module")
def tiny_ddpm():
    torch.manual_seed(0)
    data = genlab.load_dataset("moons", n_train=2000, n_test=400, seed=0)
    run = genlab.train("ddpm", data, steps=250, timesteps=100, hidden=[64, 64], seed=0, save=False, progress=False)
    return run.model.eval(), data


def test_ddpm_encode_then_decode_reconstructs_its_input(tiny_ddpm):
    model, data = tiny_ddpm
    x = data.test[:200]
    z = model.encode(x, steps=100)
    back = model.decode(z, steps=100)
    err = float((back - x).norm(dim=1).mean())
    spread = float(torch.cdist(x, x).mean())  # typical distance between two data points
    assert err < 0.05 * spread, (err, spread)
    # the codes look like the prior's noise, not like the data
    assert abs(float(z.std()) - 1) < 0.25


# -- explore on trained models -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pca(digits):
    return genlab.train("pca", digits, latent_dim=12, save=False, progress=False).model.eval()


def test_interpolation_endpoints_reconstruct_the_inputs(pca, digits, tmp_path):
    r = ex.interpolate(pca, digits, tmp_path, pairs=[("3", "17")], steps=5)
    x = digits.test[[3, 17]]
    own = (pca.decode(pca.encode(x)) - x).abs().flatten(1).mean(1)  # the posterior-mean round trip
    proj = (pca.reconstruct(x) - x).abs().flatten(1).mean(1)        # the orthogonal projection
    for kind in ("lerp", "slerp"):
        ends = r["pairs"][0][kind]["endpoint_error"]
        assert ends == pytest.approx(own.tolist(), abs=1e-6)  # alpha = 0 and 1 decode the endpoints' codes
        assert all(e <= 1.15 * p for e, p in zip(ends, proj.tolist()))  # ~ PCA's reconstruction error
    assert (tmp_path / "interpolate.png").stat().st_size > 1000
    # slerp keeps the code norm between two codes of the same norm, lerp dips in the middle
    z = ex.encode(pca, digits.test[[0, 1]])
    z[1] = z[1] / z[1].norm() * z[0].norm()
    norms = path(z[0], z[1], 7, "slerp").norm(dim=1)
    assert torch.allclose(norms, z[0].norm().expand(7), rtol=1e-5)


def test_flow_interpolation_inverts_exactly(digits, tmp_path):
    model = genlab.train("realnvp", digits, steps=3, n_layers=2, hidden=[16], save=False, progress=False).model.eval()
    r = ex.interpolate(model, digits, tmp_path, pairs=[("0", "1")], steps=3)
    assert r["pairs"][0]["lerp"]["endpoint_error"] == [0.0, 0.0]  # f^-1(f(x)) = x on the data's levels


def test_arithmetic_traverse_and_map_write_their_outputs(pca, digits, tmp_path):
    a = ex.arithmetic(pca, digits, tmp_path, equations=[(3, 5, 5), (1, 2, 3)])
    first = a["equations"][0]
    assert first["equation"] == "3 - 5 + 5" and first["predicted"] == 3  # a - b + b is a's mean code
    assert 0 <= first["confidence"] <= 1 and a["judge"] == "genlab-classifier-digits"
    assert a["means_recognised"] >= 0.8  # PCA's class-mean codes decode to recognisable digits
    t = ex.traverse(pca, digits, tmp_path, dims=3, steps=5)
    changes = [r["mean_change"] for r in t["ranking"]]
    assert changes == sorted(changes, reverse=True) and changes[0] > 0
    m = ex.latent_map(pca, digits, tmp_path, n=300)
    assert m["knn5_accuracy"]["codes"] > 0.7  # classes cluster in a 12-D PCA code
    for name in ("arithmetic.png", "traverse.png", "map.png"):
        assert (tmp_path / name).stat().st_size > 1000


# -- memorisation ------------------------------------------------------------------------------------------
class _Copier(torch.nn.Module):
    """A 'model' that returns training examples (plus nothing): a perfect memoriser."""

    condition_kind = "none"

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    @property
    def device(self):
        return torch.device("cpu")

    def sample(self, n, y=None, generator=None):
        return self.pool[torch.randint(0, len(self.pool), (n,), generator=generator)]


def test_memorisation_share_of_a_copier_is_one_and_of_fresh_data_the_baseline(digits, tmp_path):
    # a copier of the training set vs a "model" whose samples are unseen data from the same distribution
    half = len(digits.test) // 2
    fresh = _Copier(digits.test[:half])
    held = Dataset(digits.train, digits.test[half:], digits.spec, digits.train_labels,
                                    digits.test_labels[half:])
    copy = ex.neighbours(_Copier(digits.train), held, tmp_path, n=300, q=0.05)
    new = ex.neighbours(fresh, held, tmp_path, n=half, q=0.05)
    assert copy["share"] == 1.0 and copy["median_d_train_samples"] == 0.0
    assert new["share"] < 0.15  # ~ q for data drawn like the test split
    assert (tmp_path / "neighbours.png").exists()
    # the definition on hand-made features: threshold = the q-quantile of the test examples' distances
    f_tr = torch.tensor([[0.0], [10.0]])
    f_te = torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # distances to train: 1, 2, 3, 4
    f_s = torch.tensor([[0.5], [9.0], [5.0]])          # distances: 0.5, 1, 5
    m = ex.memorisation(f_s, f_tr, f_te, q=0.0)
    assert m["threshold"] == 1.0 and m["share"] == pytest.approx(1 / 3)


# -- errors and the CLI ------------------------------------------------------------------------------------
def test_families_without_a_latent_path_get_a_one_line_error(digits, tmp_path):
    gmm = genlab.train("gmm", digits, n_components=2, save=False, progress=False).model
    with pytest.raises(ConfigError, match=r"families that can: .*ae.*ddpm.*fm.*gan.*pca.*realnvp.*vae"):
        ex.explore(gmm, digits, tmp_path, what="interpolate")
    gan = genlab.create_model("gan", digits, latent_dim=4)
    with pytest.raises(ConfigError, match="has no encoder"):
        ex.interpolate(gan, digits, tmp_path, pairs=[("0", "1")])
    with pytest.raises(ConfigError, match="families that can: ae, ddpm, fm, maf, pca, realnvp, vae"):
        ex.latent_map(gan, digits, tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'map'"):
        ex.parse_what("mapp")


def test_explore_end_to_end_via_the_cli(in_tmp, capsys):
    assert main(["train", "ae", "--data", "digits", "--steps", "20", "--set", "latent_dim=4", "--out", "run",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["explore", "run", "--pairs", "1,2", "random", "--n", "120", "--out", "x"]) == 0
    out = capsys.readouterr().out
    res = json.loads((in_tmp / "x" / "explore.json").read_text())
    assert set(res) >= {"interpolate", "traverse", "arithmetic", "map", "neighbours"}
    assert [p["a"] for p in res["interpolate"]["pairs"]] == ["test[1]", "random"]
    assert 0 <= res["neighbours"]["share"] <= 1 and "memorisation share" in out
    for name in ("interpolate", "traverse", "arithmetic", "map", "neighbours"):
        assert (in_tmp / "x" / f"{name}.png").exists()
    assert main(["explore", "run", "--what", "interpolate", "--pairs", "1,99999"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["train", "gmm", "--data", "digits", "--out", "g", "--set", "n_components=2", "--quiet"]) == 0
    assert main(["explore", "g", "--what", "traverse"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genlab: error:") and "families that can" in err and len(err.strip().splitlines()) == 1


def test_ddpm_encode_decode_follow_the_contracts_signature():
    import inspect

    from genlab.models.ddpm import DDPM

    for name, first in (("encode", "x"), ("decode", "z")):
        params = list(inspect.signature(getattr(DDPM, name)).parameters.values())[1:]
        assert [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD] == [first, "y"]
        assert params[1].default is None and all(p.kind == p.KEYWORD_ONLY for p in params[2:])
