"""Image-to-image translation: paired and unpaired data, the U-Net / PatchGAN / pool parts, pix2pix,
CycleGAN, the translation metrics and `genlab translate`."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

import genlab
from genlab.cli import main
from genlab.data import DataSpec, Dataset
from genlab.data.images import area_downsample
from genlab.data.translation import mask_centre, sobel_edges
from genlab.errors import ConfigError, DataError
from genlab.metrics.evaluate import evaluate
from genlab.metrics.translation import Upsample, baseline_result, diversity, is_super_resolution, psnr_ssim
from genlab.models.base import create_model, load
from genlab.models.cyclegan import cycle_consistency_loss, identity_loss
from genlab.nn.translation import ImagePool, UNetGenerator

from conftest import data_dir_available

SMALL = dict(base=16, d_base=16)  # small networks keep the suite fast


@pytest.fixture(scope="module")
def sr():
    return genlab.load_dataset("digits-sr")


@pytest.fixture(scope="module")
def inverted():
    return genlab.load_dataset("digits-inverted")


# ---------------------------------------------------------------- data
def test_digits_inverted_is_unpaired_from_disjoint_halves_with_a_paired_test_split(inverted, digits):
    half = len(digits.train) // 2
    assert inverted.spec.unpaired and inverted.spec.condition_shape == (1, 8, 8) and inverted.spec.domain == "digits"
    assert torch.equal(inverted.train_cond, 1 - digits.train[:half])      # A: the first half, inverted
    assert torch.equal(inverted.train, digits.train[half:2 * half])        # B: the second half
    assert torch.equal(inverted.train_labels, digits.train_labels[half:2 * half])
    assert torch.equal(inverted.test_cond, 1 - inverted.test)             # the test split is paired
    d = inverted.spec.to_dict()
    assert d["unpaired"] is True and DataSpec.from_dict(d) == inverted.spec
    assert "unpaired" not in genlab.load_dataset("digits-sr").spec.to_dict()  # old run files look the same


def test_unpaired_spec_without_a_second_collection_is_refused(digits):
    spec = DataSpec("image", (1, 8, 8), 10, name="u", unpaired=True)
    with pytest.raises(DataError, match="unpaired data needs a second collection"):
        Dataset(digits.train, digits.test, spec)


def test_edge_maps_and_masks_on_a_known_image():
    x = torch.zeros(1, 1, 12, 12)
    x[..., 3:9, 3:9] = 1.0                        # a white square
    e = sobel_edges(x)[0, 0]
    assert e[3:9, 3:9].sum() > 0 and e[5:7, 5:7].sum() == 0   # edges on its border, none inside
    assert e[:2].sum() == 0 and e[:, :2].sum() == 0            # nor far outside
    m = mask_centre(torch.rand(2, 1, 28, 28))
    assert (m[..., 7:21, 7:21] == 0.5).all() and m[..., :7, :].ne(0.5).any()


@pytest.mark.skipif(not data_dir_available("mnist"), reason="MNIST IDX files not available (GENLAB_DATA_DIR)")
def test_mnist_sr_is_area_downsampled_mnist():
    ds = genlab.load_dataset("mnist-sr")
    assert ds.spec.shape == (1, 28, 28) and ds.spec.condition_shape == (1, 7, 7) and ds.spec.domain == "mnist"
    assert torch.allclose(ds.test_cond[:50], area_downsample(ds.test[:50], 4))
    assert is_super_resolution(ds.spec)


# ---------------------------------------------------------------- parts
@pytest.mark.parametrize("c_in,size_in,size_out", [(1, (7, 7), (28, 28)), (1, (4, 4), (8, 8)), (3, (7, 7), (7, 7)),
                                                   (1, (28, 28), (28, 28)), (2, (5, 9), (13, 11)), (1, (8, 8), (4, 4))])
def test_unet_maps_shape_to_shape_for_odd_sizes(c_in, size_in, size_out):
    torch.manual_seed(0)
    g = UNetGenerator(c_in, 3, size_out, base=8).eval()
    c = torch.rand(4, c_in, *size_in) * 2 - 1
    y = g(c)
    assert y.shape == (4, 3, *size_out) and y.abs().max() <= 1
    # skip connections: every output pixel depends on the input, and inputs move outputs
    c2 = c.clone()
    c2[0] = -c2[0]
    y2 = g(c2)
    assert not torch.allclose(y2[0], y[0]) and torch.allclose(y2[1:], y[1:])  # batch norm in eval: per example


def test_patchgan_judges_pairs_swapping_the_input_changes_its_output(sr):
    torch.manual_seed(0)
    model = create_model("pix2pix", sr, **SMALL).eval()
    x, c = model.to_working(sr.test[:6]), 2 * sr.test_cond[:6] - 1
    d = model.discriminator
    out = d(x, c)
    assert out.dim() == 4 and out.shape[1] == 1 and out.shape[-1] > 1          # a map of patch logits
    swapped = d(x, c.roll(1, 0))                                                 # the same outputs, other inputs
    assert (out - swapped).abs().flatten(1).amax(1).min() > 1e-4
    with pytest.raises(ConfigError, match="pairs"):
        d(x)


def test_image_pool_fills_then_mixes_history_and_is_a_buffer():
    torch.manual_seed(0)
    pool = ImagePool(4, (1, 2, 2))
    first = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and int(pool.count) == 4   # filling: shown as they come
    new = (10 + torch.arange(400.0)).reshape(400, 1, 1, 1).expand(400, 1, 2, 2)
    shown = pool.query(new)
    swapped = shown[:, 0, 0, 0] != new[:, 0, 0, 0]
    assert 0.4 < swapped.float().mean() < 0.6             # each new image swapped for a stored one w.p. 1/2
    assert set(shown[swapped, 0, 0, 0].tolist()) <= set(range(4)) | set(new[:, 0, 0, 0].tolist())
    assert (shown[swapped, 0, 0, 0] < 4).sum() == 4      # the first four come out once each, later ones later
    assert set(pool.state_dict()) == {"images", "count"}  # resumes exactly from a checkpoint
    assert torch.equal(ImagePool(0, (1, 2, 2)).query(new), new)


def test_cycle_loss_of_an_identity_pair_is_zero_and_of_an_inverse_pair_too():
    a, b = torch.rand(5, 1, 8, 8) * 2 - 1, torch.rand(5, 1, 8, 8) * 2 - 1
    ident = nn.Identity()
    assert cycle_consistency_loss(ident, ident, a, b) == 0 and identity_loss(ident, ident, a, b) == 0
    neg = lambda t: -t                                                     # noqa: E731 - inversion in [-1, 1]
    assert cycle_consistency_loss(neg, neg, a, b) == 0                     # inverses of each other: cycle-consistent
    assert torch.isclose(identity_loss(neg, neg, a, b), 2 * a.abs().mean() + 2 * b.abs().mean())
    half = lambda t: t / 2                                                 # noqa: E731
    assert torch.isclose(cycle_consistency_loss(half, half, a, b), 0.75 * (a.abs().mean() + b.abs().mean()))


# ---------------------------------------------------------------- metrics
def test_psnr_ssim_equal_scikit_image_and_the_closed_form():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(0)
    t = torch.rand(6, 1, 8, 8, generator=g)
    o = (t + 0.1 * torch.randn(6, 1, 8, 8, generator=g)).clamp(0, 1)
    r = psnr_ssim(o, t)
    ref_p = np.mean([peak_signal_noise_ratio(a[0].numpy().astype(float), b[0].numpy().astype(float), data_range=1)
                     for a, b in zip(t, o)])
    ref_s = np.mean([structural_similarity(a[0].numpy().astype(float), b[0].numpy().astype(float), data_range=1)
                     for a, b in zip(t, o)])
    assert r["psnr"] == pytest.approx(ref_p, rel=1e-9) and r["ssim"] == pytest.approx(ref_s, rel=1e-9)
    flat = torch.full((2, 1, 8, 8), 0.5)
    assert psnr_ssim(flat + 0.1, flat)["psnr"] == pytest.approx(20.0, abs=1e-5)   # 10 log10(1 / 0.01), float32 inputs
    rgb = torch.rand(3, 3, 9, 9, generator=g)
    want = np.mean([structural_similarity(a.double().numpy(), (a * 0.9).double().numpy(), data_range=1,
                                          channel_axis=0) for a in rgb])
    assert psnr_ssim(rgb * 0.9, rgb)["ssim"] == pytest.approx(want, rel=1e-9)
    assert psnr_ssim(t, t)["ssim"] == pytest.approx(1.0)


def test_diversity_is_the_mean_pairwise_distance_per_input():
    f = torch.tensor([[0.0, 0], [3, 4], [1, 1], [1, 1]])      # input 1: two outputs 5 apart; input 2: identical
    assert diversity(f, 2) == pytest.approx(2.5)


def test_bicubic_baseline_is_the_upsampled_input_and_only_for_super_resolution(sr, inverted):
    base = Upsample(sr.spec)
    up = base.sample(3, sr.test_cond[:3])
    want = torch.nn.functional.interpolate(sr.test_cond[:3], size=(8, 8), mode="bicubic", align_corners=False)
    assert torch.allclose(up, want.clamp(0, 1))
    assert baseline_result(inverted) is None and not is_super_resolution(inverted.spec)
    with pytest.raises(ConfigError, match="super-resolution"):
        Upsample(inverted.spec)


# ---------------------------------------------------------------- pix2pix
def test_pix2pix_learns_super_resolution_beyond_bicubic(sr):
    run = genlab.train("pix2pix", sr, save=False, steps=200, lr=1e-3, seed=0, progress=False, **SMALL)
    got = evaluate(run.model, sr, ["psnr", "ssim", "diversity"], seed=0)["metrics"]
    bic = baseline_result(sr, seed=0, metrics=["psnr", "ssim"])["metrics"]
    assert got["psnr"] > bic["psnr"] + 1.0 and got["ssim"] > bic["ssim"]
    assert got["diversity"] == 0  # at 8 px the U-Net has no dropout layer: a deterministic translator


def test_pix2pix_discriminator_takes_its_own_learning_rate(sr):
    """d_lr reaches the discriminator's optimizer only; the generator keeps the trainer's lr (the data
    default on images of at most 32 px, 1e-3)."""
    from genlab.train.callbacks import Callback

    class Grab(Callback):
        def on_train_start(self, trainer):
            self.optimizers = trainer.optimizers

    grab = Grab()
    genlab.train("pix2pix", sr, save=False, steps=2, seed=0, progress=False, d_lr=5e-5, callbacks=[grab], **SMALL)
    (d_opt, g_opt) = grab.optimizers
    assert [g["lr"] for g in d_opt.param_groups] == [5e-5] and [g["lr"] for g in g_opt.param_groups] == [1e-3]
    with pytest.raises(ConfigError, match="d_lr"):
        create_model("pix2pix", sr, d_lr=-1.0)


def test_pix2pix_refuses_unpaired_and_unconditioned_data_and_bad_conditions(inverted, digits, sr):
    with pytest.raises(ConfigError, match="learns from pairs.*unpaired.*use cyclegan"):
        create_model("pix2pix", inverted)
    with pytest.raises(ConfigError, match="class labels of 'digits'.*paired data"):
        create_model("pix2pix", digits)
    with pytest.raises(ConfigError, match="conditional by construction"):
        create_model("pix2pix", sr, conditional=False)
    model = create_model("pix2pix", sr, **SMALL)
    with pytest.raises(ConfigError, match=r"condition of shape \(1, 8, 8\) given; this model takes \(1, 4, 4\)"):
        model.sample(2, torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="pass one"):
        model.sample(2)


def test_pix2pix_dropout_noise_gives_diverse_outputs_when_deep_enough():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 16, 16, generator=g)
    spec = DataSpec("image", (1, 16, 16), name="p", condition_shape=(1, 16, 16), condition_type="image")
    ds = Dataset(x[:48], x[48:], spec, train_cond=x[:48], test_cond=x[48:])
    model = create_model("pix2pix", ds, base=8, d_base=8, depth=3)
    a = model.sample(4, ds.test_cond[0], generator=torch.Generator().manual_seed(1))
    b = model.sample(4, ds.test_cond[0], generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a[0], a[1])            # seeded noise, distinct draws
    c = model.sample(4, ds.test_cond[0], noise=False)
    assert torch.allclose(c[0], c[1])


def test_pix2pix_srgan_feature_loss_uses_the_frozen_shipped_classifier(sr, tmp_path):
    run = genlab.train("pix2pix", sr, out=tmp_path / "r", steps=3, seed=0, progress=False, feature_weight=1.0, **SMALL)
    assert "generator/feature" in run.history[-1] and run.history[-1]["generator/feature"] > 0
    assert not any("phi" in k or "trunk" in k for k in run.model.state_dict())   # not trained, not saved
    again = load(tmp_path / "r")
    y = sr.test_cond[:4]
    assert torch.equal(again.sample(4, y), run.model.sample(4, y))
    spec = DataSpec("image", (1, 8, 8), name="x", condition_shape=(1, 4, 4), condition_type="image")
    with pytest.raises(ConfigError, match="feature_weight needs a shipped classifier"):
        create_model("pix2pix", spec, feature_weight=1.0)


# ---------------------------------------------------------------- cyclegan
def test_cyclegan_learns_unpaired_inversion_both_ways(inverted):
    run = genlab.train("cyclegan", inverted, save=False, steps=200, lr=1e-3, seed=0, progress=False,
                       **SMALL)   # the defaults: no identity loss, which would fight an inversion
    assert run.model.identity_weight == 0.0
    assert type(run.model).data_defaults(inverted.spec) == {"lr": 1e-3}  # small images (the test sets lr itself)
    got = evaluate(run.model, inverted, ["psnr", "balance", "reverse"], seed=0)["metrics"]
    start = psnr_ssim(inverted.test_cond, inverted.test)["psnr"]          # the untranslated input
    assert got["psnr"] > start + 5 and got["class_accuracy"] > 0.6
    back = run.model.sample(len(inverted.test), inverted.test, direction="BA")
    assert psnr_ssim(back, inverted.test_cond)["psnr"] > start + 5
    assert got["psnr_ba"] == pytest.approx(psnr_ssim(back, inverted.test_cond)["psnr"], abs=0.5)  # the evaluation's way back
    with pytest.raises(ConfigError, match="translates B -> A from"):
        run.model.sample(2, torch.rand(2, 1, 4, 4), direction="BA")


def test_reverse_metric_scores_the_way_back_against_the_inputs(inverted):
    model = create_model("cyclegan", inverted, **SMALL)                  # untrained: its sampling is replaced
    exact = lambda n, y=None, generator=None, direction="AB": 1 - y       # noqa: E731  (inversion is its own inverse)
    model.sample = exact
    got = evaluate(model, inverted, ["reverse"], n=200)["metrics"]
    assert got["psnr_ba"] == float("inf") and got["ssim_ba"] == pytest.approx(1.0)
    assert abs(got["fid_ba"]) < 1e-3                                      # the very images A: Frechet distance 0
    model.sample = lambda n, y=None, generator=None, direction="AB": y    # noqa: E731  (forgets to translate)
    wrong = evaluate(model, inverted, ["reverse"], n=200)["metrics"]
    assert wrong["fid_ba"] > 1.0 and wrong["psnr_ba"] < 10
    assert "reverse" not in evaluate(create_model("pix2pix", genlab.load_dataset("digits-sr"), **SMALL),
                                     genlab.load_dataset("digits-sr"), n=10, metrics=["psnr"])["metrics"]


def test_unpaired_folders_load_as_two_collections_and_only_unpaired_families_take_them(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for side, n in (("A", 6), ("B", 10)):                                # unrelated names and counts
        (tmp_path / "pics" / side).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "pics" / side / f"{side}{i}.png")
    with pytest.raises(DataError, match="same names"):
        genlab.load_dataset(tmp_path / "pics")
    ds = genlab.load_dataset(tmp_path / "pics", unpaired=True, test_fraction=0.25)
    assert ds.spec.unpaired and not ds.spec.paired_test and ds.spec.condition_shape == (1, 8, 8)
    assert len(ds.train) == len(ds.train_cond) == 8 and len(ds.test) == len(ds.test_cond) == 2  # B 8/2, A 4(+4 again)/2
    assert len({tuple(a.flatten().tolist()) for a in ds.train_cond}) == 4   # A's 4 training images, each used twice
    assert DataSpec.from_dict(ds.spec.to_dict()) == ds.spec
    with pytest.raises(ConfigError, match="learns from pairs"):
        create_model("pix2pix", ds)
    model = create_model("cyclegan", ds, **SMALL)
    support = genlab.metrics.evaluate.supported_metrics(model, ds)
    assert support["psnr"] and "unpaired" in support["psnr"] and support["fid"] is None and support["reverse"] is None


@pytest.mark.skipif(not data_dir_available("fashion-mnist") or not data_dir_available("mnist"),
                    reason="needs MNIST and Fashion-MNIST (GENLAB_DATA_DIR)")
def test_mnist_fashion_is_two_unrelated_collections_scored_as_distributions():
    ds = genlab.load_dataset("mnist-fashion")
    mnist, fashion = genlab.load_dataset("mnist"), genlab.load_dataset("fashion-mnist")
    assert torch.equal(ds.train, mnist.train) and torch.equal(ds.train_cond, fashion.train)
    assert ds.spec.unpaired and not ds.spec.paired_test and ds.spec.domain == "mnist"
    model = create_model("cyclegan", ds, **SMALL)
    got = evaluate(model, ds, n=50, metrics=["fid", "balance"])
    assert "class_accuracy" not in got["metrics"]                        # labels of unrelated pairs say nothing


# ---------------------------------------------------------------- genlab translate
def test_cli_translate_end_to_end_and_its_errors(in_tmp, capsys):
    from PIL import Image

    assert main(["train", "pix2pix", "--data", "digits-sr", "--steps", "3", "--out", "p", "--quiet",
                 "--set", "base=8", "--set", "d_base=8"]) == 0
    sr = genlab.load_dataset("digits-sr")
    Image.fromarray((sr.test_cond[0, 0].numpy() * 255).astype(np.uint8)).save("one.png")
    np.save("three.npy", sr.test_cond[1:4].numpy())
    capsys.readouterr()
    assert main(["translate", "p", "one.png", "three.npy", "--out", "t"]) == 0
    assert "translated 4 input(s)" in capsys.readouterr().out
    outs = np.load("t/outputs.npy")
    assert outs.shape == (4, 1, 8, 8) and (in_tmp / "t" / "grid.png").is_file()
    assert sorted(p.name for p in (in_tmp / "t").glob("*.png")) == sorted(
        ["grid.png", "one.png"] + [f"three-{i:04d}.png" for i in range(3)])
    assert np.asarray(Image.open("t/three-0001.png")).shape == (8, 8)
    model = load("p")
    want = model.sample(3, sr.test_cond[1:4])
    assert np.allclose(outs[1:], want.numpy(), atol=1e-6)   # the same translation as the API's

    Image.fromarray(np.zeros((8, 8), np.uint8)).save("big.png")
    assert main(["translate", "p", "big.png", "--out", "t2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image of 8x8" in err and "takes 4x4" in err
    assert not (in_tmp / "t2").exists()                     # nothing half-written
    assert main(["translate", "p", "one.png", "--out", "t3", "--direction", "BA"]) == 2
    assert "without option(s) direction" in capsys.readouterr().err
    assert main(["train", "pca", "--data", "digits", "--out", "q", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["translate", "q", "one.png", "--out", "t4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an image-to-image run" in err


# ---------------------------------------------------------------- compare
def test_compare_on_paired_data_picks_translators_conditions_them_and_shows_the_baseline(sr, inverted, tmp_path):
    from genlab.workflows.compare import compare, families_for, translation_settings

    fams = families_for(sr.spec)
    assert {"pix2pix", "cyclegan", "ddpm", "fm"} <= set(fams) and "vae" not in fams
    assert families_for(inverted.spec) == ["cyclegan"]
    assert not {"pix2pix", "cyclegan"} & set(families_for(genlab.load_dataset("digits").spec))  # they need inputs
    got = translation_settings(["pix2pix", "ddpm", "fm"], sr.spec, {"fm": {"conditional": False}})
    assert got["ddpm"] == {"conditional": True} and got["fm"] == {"conditional": False} and "pix2pix" not in got
    res = compare(sr, ["pix2pix"], steps=2, out=tmp_path / "c", n=40, progress=False,
                  settings={"pix2pix": {"base": 8, "d_base": 8}})
    assert res["families"][0]["status"] == "ok" and "psnr" in res["families"][0]["metrics"]
    (b,) = res["baselines"]
    want = baseline_result(sr, 40, 0, metrics=["psnr"])["metrics"]["psnr"]
    assert b["name"] == "bicubic" and b["metrics"]["psnr"] == pytest.approx(want)
    page = (tmp_path / "c" / "report.html").read_text()
    assert "bicubic (baseline, no learning)" in page and "PSNR (dB)" in page
    assert 'id="translations"' in page and (tmp_path / "c" / "pix2pix" / "translations.png").is_file()
