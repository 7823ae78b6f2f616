"""GAN losses against their formulas, player isolation, a short run on the ring, and errors."""

from __future__ import annotations

import math

import pytest
import torch

import genlab
from genlab.errors import ConfigError
from genlab.metrics.evaluate import evaluate
from genlab.nn import gan as G

LOGITS_REAL = torch.tensor([2.0, -1.0, 0.5])
LOGITS_FAKE = torch.tensor([-3.0, 0.0, 1.5])
sig = torch.sigmoid


def test_losses_equal_their_formulas():
    d_real, d_fake = sig(LOGITS_REAL), sig(LOGITS_FAKE)
    expected_d = -(d_real.log().mean() + (1 - d_fake).log().mean())
    assert torch.allclose(G.discriminator_loss_bce(LOGITS_REAL, LOGITS_FAKE), expected_d)
    assert torch.allclose(G.generator_loss_minimax(LOGITS_FAKE), (1 - d_fake).log().mean())
    assert torch.allclose(G.generator_loss_non_saturating(LOGITS_FAKE), -d_fake.log().mean())
    hinge = torch.clamp(1 - LOGITS_REAL, min=0).mean() + torch.clamp(1 + LOGITS_FAKE, min=0).mean()
    assert torch.allclose(G.discriminator_loss_hinge(LOGITS_REAL, LOGITS_FAKE), hinge)
    assert torch.allclose(G.generator_loss_linear(LOGITS_FAKE), -LOGITS_FAKE.mean())
    assert torch.allclose(G.critic_loss_wasserstein(LOGITS_REAL, LOGITS_FAKE),
                          LOGITS_FAKE.mean() - LOGITS_REAL.mean())


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([3.0, 4.0])  # |grad| = 5 everywhere: penalty (5 - 1)^2 = 16; R1 = 1/2 * 25
    critic = lambda x, y=None: x @ w
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    assert G.gradient_penalty(critic, real, fake).item() == pytest.approx(16.0)
    assert G.r1_penalty(critic, real).item() == pytest.approx(12.5)


def test_saturation_minimax_gradient_vanishes_where_d_rejects():
    l = torch.tensor([-8.0], requires_grad=True)  # D(G(z)) ~ 3e-4
    (g_mm,) = torch.autograd.grad(G.generator_loss_minimax(l), l)
    (g_ns,) = torch.autograd.grad(G.generator_loss_non_saturating(l), l)
    assert abs(g_mm.item()) < 1e-3 < 0.9 < abs(g_ns.item())


def test_lsgan_losses_equal_their_closed_forms():
    # L_D = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2],  L_G = 1/2 E[(D(G(z)) - 1)^2]
    # real logits 2, -1, 0.5: (l - 1)^2 = 1, 4, 0.25;  fake -3, 0, 1.5: l^2 = 9, 0, 2.25 and (l - 1)^2 = 16, 1, 0.25
    d = 0.5 * (1 + 4 + 0.25) / 3 + 0.5 * (9 + 0 + 2.25) / 3
    assert G.discriminator_loss_least_squares(LOGITS_REAL, LOGITS_FAKE).item() == pytest.approx(d)  # 2.75
    assert G.generator_loss_least_squares(LOGITS_FAKE).item() == pytest.approx(0.5 * (16 + 1 + 0.25) / 3)
    # at the optimum targets (real 1, fake 0 for D; fake 1 for G) each loss is zero
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert G.discriminator_loss_least_squares(ones, zeros) == 0 and G.generator_loss_least_squares(ones) == 0


def test_loss_lookup_and_two_player_step_match_the_functions():
    assert set(G.LOSSES) == {"minimax", "non-saturating", "hinge", "wgan-gp", "lsgan"}
    assert G.LOSSES["lsgan"] == (G.discriminator_loss_least_squares, G.generator_loss_least_squares)
    w = torch.tensor([3.0, 4.0])
    critic = lambda x, y=None: x @ w  # noqa: E731
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    for name, (d_loss, g_loss) in G.LOSSES.items():
        d = G.discriminator_step(critic, real, fake, name, gp_weight=10.0)
        gp = 10.0 * 16.0 if name == "wgan-gp" else 0.0  # |grad| = 5: (5 - 1)^2 = 16
        assert d["loss"].item() == pytest.approx((d_loss(real @ w, fake @ w)).item() + gp, rel=1e-5)
        assert torch.equal(G.generator_step(critic, fake, name)["loss"], g_loss(fake @ w))
    with pytest.raises(ConfigError, match="GAN loss"):
        G.adversarial_loss("lsgna")


def test_lsgan_trains_on_a_toy_without_nan():
    ds = genlab.load_dataset("8gaussians", n_train=512, n_test=64)
    torch.manual_seed(0)
    run = genlab.train("gan", ds, steps=30, log_every=10, save=False, progress=False, loss="lsgan", latent_dim=2,
                       hidden=(32, 32), batch_size=64)
    losses = [(h["discriminator/loss"], h["generator/loss"]) for h in run.history if "generator/loss" in h]
    assert losses and all(math.isfinite(a) and math.isfinite(b) for a, b in losses)
    assert torch.isfinite(run.model.sample(100)).all()


@pytest.mark.parametrize("loss", ["minimax", "non-saturating", "hinge", "wgan-gp", "lsgan"])
def test_each_player_changes_only_its_own_parameters(loss):
    ds = genlab.load_dataset("8gaussians", n_train=256, n_test=64)
    m = genlab.create_model("gan", ds, loss=loss, r1_weight=1.0, minibatch_std=True)
    m.prepare(ds)
    x = ds.train[:64]
    for player in m.players():
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        opt = torch.optim.Adam(player.parameters, lr=1e-2)
        out = m(player.method, x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        mine = player.name + "."
        changed = {n for n, p in m.named_parameters() if not torch.equal(before[n], p)}
        assert changed and all(n.startswith(mine) for n in changed), (player.name, changed)
        # (a parameter of its own may have zero gradient, e.g. a bias under the balanced hinge loss)


def test_dcgan_conditional_and_pac_shapes(digits):
    m = genlab.create_model("gan", digits, net="conv", conditional=True)
    assert m.sample(10, y=3).shape == (10, 1, 8, 8)
    for cond in ("projection", "concat"):
        m = genlab.create_model("gan", digits, net="conv", conditional=True, conditioning=cond)
        assert torch.isfinite(m.discriminator_loss(digits.train[:16], digits.train_labels[:16])["loss"])
    m = genlab.create_model("gan", digits, net="conv", pac=4, minibatch_std=True)
    assert torch.isfinite(m.discriminator_loss(digits.train[:18])["loss"])  # 18 -> 4 packs of 4
    z = m.draw_z(5)
    assert torch.equal(m.generate(z), m.generate(z)) and 0 <= m.generate(z).min()


def test_bad_gan_settings_are_clear(digits):
    with pytest.raises(ConfigError, match="did you mean 'hinge'"):
        genlab.create_model("gan", digits, loss="hinj")
    with pytest.raises(ConfigError, match=r"invalid n_critic=0 for 'gan' \(must be an integer >= 1\)"):
        genlab.create_model("gan", digits, n_critic=0)
    with pytest.raises(ConfigError, match="invalid pac=0"):
        genlab.create_model("gan", digits, pac=0)


def test_short_seeded_run_on_the_ring_captures_most_modes():
    ds = genlab.load_dataset("8gaussians", n_train=4000, n_test=2500)  # PacGAN's ring, sigma 0.01
    run = genlab.train("gan", ds, steps=2000, save=False, progress=False, latent_dim=2, hidden=(128, 128),
                       batch_size=128, lr=1e-3)
    r = evaluate(run.model, ds, metrics=["modes"], n=2500)["metrics"]
    # measured over seeds 0-3: 8 modes each, 59-78% of samples within 3 sigma (about 5 s)
    assert r["modes"] >= 6 and r["high_quality"] > 0.3, r

    # discriminator-driven refinement of z lowers the energy ||z||^2/2 - d(G(z)) of every step's
    # batch and moves samples into the modes (seed 0: 58.6% -> 97.0% within 3 sigma)
    from genlab.data.toy2d import mode_centers
    from genlab.metrics.modes import mode_coverage

    m, g = run.model, torch.Generator().manual_seed(1)
    z = m.draw_z(2500, g)

    def energy(z):
        with torch.no_grad():
            return 0.5 * z.pow(2).sum(1) - m.discriminator(m.generator(z, None), None).flatten()

    z_ref = m.refine_latent(z, steps=20, step_size=0.01)
    assert energy(z_ref).mean() < energy(z).mean()
    before = mode_coverage(m.generate(z), mode_centers("8gaussians"), 0.01)["high_quality"]
    after = mode_coverage(m.sample(2500, generator=torch.Generator().manual_seed(1), refine=20),
                          mode_centers("8gaussians"), 0.01)["high_quality"]
    assert after > before + 0.05, (before, after)


def test_gan_saturation_experiment_shows_the_minimax_gradient_vanishing(tmp_path):
    from genlab.experiments import run_experiment

    out = run_experiment("gan-saturation", tmp_path, quick=True)
    assert (tmp_path / "gan-saturation.png").exists() and (tmp_path / "gan-saturation.json").exists()
    # where D rejects the fakes (D(G(z)) < 0.1), the non-saturating loss gives the larger gradient
    assert out["low_d_ratio_non_saturating_over_minimax"] > 2


def test_conditional_gan_puts_samples_in_the_requested_mode():
    from genlab.data.toy2d import mode_centers

    ds = genlab.load_dataset("8gaussians", n_train=4000, n_test=1000)  # labels = mixture component
    run = genlab.train("gan", ds, steps=1500, save=False, progress=False, latent_dim=2, hidden=(128, 128),
                       batch_size=128, lr=1e-3, conditional=True)
    y = torch.arange(800) % 8
    x = run.model.sample(800, y=y, generator=torch.Generator().manual_seed(0))
    nearest = torch.cdist(x, mode_centers("8gaussians")).argmin(1)
    # chance is 1/8; measured 1.0 (seed 0)
    assert (nearest == y).float().mean() > 0.9


def test_mode_collapse_experiment_writes_its_figure_and_table(tmp_path):
    from genlab.experiments import run_experiment

    out = run_experiment("mode-collapse", tmp_path, quick=True)
    assert (tmp_path / "mode-collapse.png").exists() and (tmp_path / "mode-collapse.json").exists()
    assert set(out["results"]) == {"vanilla", "minibatch-std", "pacgan-4"}
    for r in out["results"].values():
        assert 0 <= r["modes_mean"] <= out["n_modes"] and 0 <= r["high_quality_mean"] <= 1


def test_drs_acceptance_is_the_density_ratio_at_gamma_zero():
    from genlab.models.gan import drs_accept

    logit = torch.tensor([-3.0, -1.0, 0.0, 1.5])
    m = torch.tensor(2.0)
    assert torch.allclose(drs_accept(logit, m), (logit - m).exp(), atol=1e-5)
    assert (drs_accept(logit, m, gamma=-2.0) > drs_accept(logit, m)).all()  # gamma < 0 accepts more


def test_rejection_sampling_errors_are_clear(digits):
    m = genlab.create_model("gan", digits, loss="hinge")
    with pytest.raises(ConfigError, match="cross-entropy"):
        m.sample(4, rejection=True)
    m = genlab.create_model("gan", digits, pac=2)
    with pytest.raises(ConfigError, match="packs"):
        m.sample(4, rejection=True)
    with pytest.raises(ConfigError, match="packs"):
        m.sample(4, refine=5)
    m = genlab.create_model("gan", digits, conditional=True)
    assert m.sample(6, y=2, rejection=True, gamma=-20.0).shape == (6, 1, 8, 8)
    assert m.sample(6, y=2, refine=3).shape == (6, 1, 8, 8)
    with pytest.raises(ConfigError, match="steps >= 1"):
        m.sample(4, refine=2, refine_step=-1.0)


def test_rejection_sampling_draws_the_data_when_the_discriminator_is_the_density_ratio():
    """G(z) = 2z draws N(0, 4I); with the exact logit l(x) = log N(x; 0, I) - log N(x; 0, 4I) =
    log 4 - 3|x|^2 / 8, DRS at gamma = 0 must draw the data, N(0, I) (Azadi et al. 2019)."""
    data = genlab.load_dataset("8gaussians")
    m = genlab.create_model("gan", data, sampling="drs")
    m.data_shift, m.data_scale = torch.zeros(2), torch.ones(2)  # working scale = data scale

    class Double(torch.nn.Module):
        def forward(self, z, y=None):
            return 2 * z

    class Ratio(torch.nn.Module):
        def forward(self, x, y=None):
            return math.log(4.0) - 3 * x.pow(2).sum(1) / 8

    m.generator, m.discriminator = Double(), Ratio()
    plain = m.sample(4000, generator=torch.Generator().manual_seed(0), rejection=False)
    drawn = m.sample(4000, generator=torch.Generator().manual_seed(0))
    assert abs(float(plain.std()) - 2.0) < 0.1
    assert abs(float(drawn.std()) - 1.0) < 0.05 and float(drawn.mean(0).abs().max()) < 0.06
    few = m.sample(3, generator=torch.Generator().manual_seed(1))  # fewer rows than a proposal batch
    assert few.shape == (3, 2) and float(few.abs().max()) < 5


def test_low_dimensional_gans_sample_by_rejection_where_it_applies(digits):
    toy = genlab.load_dataset("8gaussians")
    m = genlab.create_model("gan", toy)
    assert m.config["sampling"] == "auto" and m.default_rejection
    assert not genlab.create_model("gan", toy, loss="hinge").default_rejection  # auto: hinge is no density ratio
    assert not genlab.create_model("gan", toy, pac=2).default_rejection
    assert not genlab.create_model("gan", digits).default_rejection  # images: the plain generator
    with pytest.raises(ConfigError, match="sampling=drs needs"):
        genlab.create_model("gan", toy, loss="hinge", sampling="drs")
    with pytest.raises(ConfigError, match="sampling"):
        genlab.create_model("gan", toy, sampling="sometimes")
    z = torch.randn(5, m.latent_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.sample(5, z=z), m.generate(z))  # given codes: decoded as they are
    with pytest.raises(ConfigError, match="rejection"):
        m.check_sample_options({"rejection": "yes"})
