"""Generative adversarial networks (Goodfellow et al. 2014): minimax, non-saturating, hinge,
WGAN-GP and least-squares losses, DCGAN nets, conditional GANs, two mode-collapse remedies,
and two ways to sample with the discriminator's help.

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))],      D(x) = sigmoid(l(x))

The parts are shared with every adversarial family and live in `genlab.nn.gan`: the losses
on logits with their equations (`LOSSES`), the gradient penalties, the two-player step, the
networks. The Trainer alternates `n_critic` discriminator steps with one generator step, each
player with its own Adam (betas 0.5, 0.999 by default), and keeps an EMA of the generator.

Remedies for mode collapse: the minibatch standard-deviation feature (Karras et al. 2018)
and packing (PacGAN, Lin et al. 2018): D judges `pac` samples at once, concatenated.
Conditioning (cGAN): a label embedding joins z in G; D uses projection (Miyato & Koyama
2018), l(x, y) = psi(h(x)) + <embed(y), h(x)>, or concatenation of a one-hot label.
Sampling: plain G(z), discriminator rejection sampling (`drs_accept`) or discriminator-driven
latent refinement (`GAN.refine_latent`). The `sampling` hyperparameter sets what `sample` does by
default: `plain` (images), `auto` (low-dimensional vectors: DRS wherever the discriminator is a
density ratio, i.e. a cross-entropy loss and pac = 1) or `drs`.
"""

from __future__ import annotations

import torch

from ..params import Int, Float, OneOf, Ints, Text, Bool
from ..errors import ConfigError, unknown_name
from ..nn import resolve_net
from ..nn.gan import (DENSITY_RATIO_LOSSES, LOSSES, Discriminator, Generator, discriminator_step,
                      generator_step)
from .base import GenerativeModel, Player, register_model


def drs_accept(logit, max_logit, gamma: float = 0.0, eps: float = 1e-6):
    """Discriminator rejection sampling (Azadi et al. 2019). An optimal cross-entropy D has
    l(x) = log p_data(x) / p_G(x), so accepting x ~ p_G with probability exp(l(x) - M),
    M = max l, samples p_data. DRS writes that probability as sigmoid(F) and shifts it:

        F(x) = l(x) - M - log(1 - exp(l(x) - M - eps)) - gamma,    p_accept = sigmoid(F(x))

    gamma = 0 is plain rejection sampling; gamma < 0 accepts more (closer to the generator).
    M is estimated on a burn-in sample and raised whenever a larger logit appears.
    """
    d = logit - max_logit
    f = d - torch.log1p(-torch.exp(d - eps)) - gamma
    return torch.sigmoid(f)


@register_model("gan")
class GAN(GenerativeModel):
    description = "GAN: minimax / non-saturating / hinge / WGAN-GP / LSGAN, DCGAN nets, cGAN, minibatch-std, PacGAN"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"latent_dim": Int(1), "net": OneOf("auto", "mlp", "conv"), "hidden": Ints(1),
                     "channels": Ints(1, min_len=1), "loss": Text(), "n_critic": Int(1), "gp_weight": Float(0),
                     "r1_weight": Float(0), "conditional": Bool(), "conditioning": OneOf("projection", "concat"),
                     "pac": Int(1), "minibatch_std": Bool(), "d_lr": Float(0),
                     "norm": OneOf("batch", "group", "none"), "sampling": OneOf("plain", "drs", "auto")}
    train_defaults = {"lr": 2e-4, "betas": (0.5, 0.999), "ema_decay": 0.999, "batch_size": 64}
    sample_ranges = {"refine": Int(0), "refine_step": Float(0, low_open=True), "refine_noise": Float(0),
                     "rejection": Bool(none=True), "gamma": Float()}
    min_train_steps = 500  # a GAN's two players need many rounds before G leaves its initial blob

    #: what `data_defaults` picks for low-dimensional vectors (vectors of at most 16 numbers: 2-D toys,
    #: small tables), on top of latent_dim = max(2, D)
    LOW_DIM_DEFAULTS = {"minibatch_std": True, "hidden": (128, 128, 128), "lr": 1e-3, "batch_size": 128,
                        "sampling": "auto"}

    @classmethod
    def data_defaults(cls, spec, n_train=None):
        """Low-dimensional vectors (at most 16 numbers: 2-D toys, small tables): a code no wider than
        the data (at least 2), the minibatch standard-deviation feature, a deeper and narrower MLP
        (128-128-128 for G and D), a 5x larger learning rate (1e-3; `train_defaults` keep DCGAN's
        2e-4 for images) and batch 128 (DCGAN's 64 for images). At 1 CPU-minute (`bench/defaults.py --data
        8gaussians,25gaussians --families gan --seeds 0,1,2`, 2026-12-01): % of samples within 3 sigma of a
        mode, ring 86.4 / 94.7 / 92.0, grid 54.6 / 53.3 / 73.4, against 77.1 and 12.0 (seed 0) with the
        previous low-dim defaults (256-256 at 2e-4). On a quiet machine (2026-12-02), batch 64 -> 128: ring
        93.8 / 95.9 / 93.8 -> 96.2 / 96.4 / 94.0, grid 57.2 / 60.2 / 81.1 -> 69.7 / 71.4 / 83.3 (every mode
        found in every seed; 256: 59.0 / 66.5 / 64.5). Sampling by discriminator rejection (`sampling=auto`)
        removes the samples G leaves on the bridges between modes: grid, seeds 0-5 (2026-12-02), 97.2 / 97.5
        / 96.5 / 95.1 / 93.3 / 92.0% against 94.5 / 95.8 / 79.6 / 92.0 / 81.3 / 81.0% plainly. The sweeps
        are in docs/benchmarks.md ("Defaults on every built-in data set").

        Small images (DataSpec.small_image: the 8 x 8 digits): the same 5x larger learning rate. On digits
        (one thread, 2026-12-02, seeds 0 / 1, FD on 360 samples) it gives FD 8.4 / 12.5 against 88.1 / 92.1
        at 12 CPU-seconds (a comparison's share: at 2e-4 G has not left its blob), and 2.5 / 5.2 against
        15.9 / 17.0 at 1 CPU-minute (bench/small_images.py --family gan --seeds 0,1). Larger images
        (MNIST) keep DCGAN's 2e-4."""
        if spec.small_image:
            return {"lr": 1e-3}
        if spec.kind != "vector" or spec.dim > 16:
            return {}
        return {"latent_dim": max(2, spec.dim), **cls.LOW_DIM_DEFAULTS}

    def __init__(self, spec, latent_dim: int = 64, net: str = "auto", hidden: tuple = (256, 256),
                 channels: tuple = (64, 128), loss: str = "non-saturating", n_critic: int = 1,
                 gp_weight: float = 10.0, r1_weight: float = 0.0, conditional: bool = False,
                 conditioning: str = "projection", pac: int = 1, minibatch_std: bool = False,
                 d_lr: float = 0.0, norm: str = "batch", sampling: str = "plain"):
        super().__init__(spec)
        if loss not in LOSSES:
            raise unknown_name("GAN loss", loss, LOSSES)
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ConfigError(f"n_critic must be a positive integer, got {n_critic!r}")
        if not isinstance(pac, int) or pac < 1:
            raise ConfigError(f"pac must be a positive integer, got {pac!r}")
        if conditioning not in ("projection", "concat"):
            raise ConfigError(f"conditioning must be projection or concat, not {conditioning!r}")
        if norm not in ("batch", "group", "none"):
            raise ConfigError(f"norm (the conv generator's normalisation) must be batch, group or none, not {norm!r}")
        if sampling not in ("plain", "drs", "auto"):
            raise ConfigError(f"sampling must be plain, drs or auto, not {sampling!r}")
        if sampling == "drs" and (loss not in DENSITY_RATIO_LOSSES or pac > 1):
            raise ConfigError(f"sampling=drs needs a discriminator trained with the cross-entropy loss (minimax or "
                              f"non-saturating) on single samples (pac 1); this one has loss={loss}, pac={pac}: "
                              "use sampling=auto (DRS only where it applies) or plain")
        if pac > 1 and conditional:
            raise ConfigError("pac > 1 with conditional=true is not supported (a pack mixes labels)")
        net = resolve_net(net, spec)
        k = spec.num_classes if conditional else 0
        self.loss_name, self.n_critic, self.gp_weight, self.r1_weight = loss, n_critic, gp_weight, r1_weight
        self.latent_dim, self.pac, self.d_lr = latent_dim, pac, d_lr
        # what `sample` does when not told: rejection by the discriminator, or the plain generator
        self.default_rejection = sampling == "drs" or (sampling == "auto" and loss in DENSITY_RATIO_LOSSES
                                                       and pac == 1)
        self.generator = Generator(spec, latent_dim, net, hidden, channels, k, norm)
        self.discriminator = Discriminator(spec, net, hidden, channels, pac, k, conditioning, minibatch_std)

    # -- the two players ---------------------------------------------------------------------------
    def players(self):
        d_over = {"lr": self.d_lr} if self.d_lr else {}
        return [Player("discriminator", list(self.discriminator.parameters()), "discriminator_loss",
                       self.n_critic, d_over),
                Player("generator", list(self.generator.parameters()), "generator_loss", 1)]

    def ema_names(self):
        return [n for n, _ in self.named_parameters() if n.startswith("generator.")]

    def to_working(self, x):
        return 2 * x - 1 if self.spec.kind == "image" else super().to_working(x)

    def from_working(self, u):
        return (u + 1) / 2 if self.spec.kind == "image" else super().from_working(u)

    def _trim(self, x, y):
        """Drop the tail of a batch that does not fill a pack of `pac` samples."""
        m = len(x) - len(x) % self.pac
        return x[:m], (None if y is None else y[:m])

    def draw_z(self, n: int, generator=None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=self.device)

    def discriminator_loss(self, x, y=None):
        """One critic step: real batch x against G(z) for fresh z (G is not updated)."""
        x, y = self._trim(self.to_working(x), self.condition(y, len(x)))
        with torch.no_grad():
            fake = self.generator(self.draw_z(len(x)), y)
        return discriminator_step(self.discriminator, x, fake, self.loss_name, y, gp_weight=self.gp_weight,
                                  r1_weight=self.r1_weight)

    def generator_loss(self, x, y=None):
        """One generator step: make D accept G(z); labels (conditional) follow the data batch."""
        x, y = self._trim(x, self.condition(y, len(x)))
        return generator_step(self.discriminator, self.generator(self.draw_z(len(x)), y), self.loss_name, y)

    @torch.no_grad()
    def anomaly_score(self, x, y=None):
        """-l(x, y), minus the discriminator's logit: D judges how real x looks, so a low logit marks
        an outlier. For an optimal cross-entropy D, l(x) = log p_data(x) / p_G(x), so this is a
        density-ratio score, not -log p(x): it is only as good as D is far from equilibrium
        (at equilibrium D is 1/2 everywhere and the score is flat). Needs single-sample D (pac = 1);
        a conditional D needs the labels y."""
        if self.pac > 1:
            raise ConfigError(f"anomaly scores need a discriminator of single samples; this one judges "
                              f"packs of {self.pac}")
        labels = self.condition(y, len(x), required="score with the discriminator")
        was = self.training
        self.eval()
        try:
            return -self.discriminator(self.to_working(x.to(self.device)), labels).flatten()
        finally:
            self.train(was)

    # -- sampling and latent access ----------------------------------------------------------------
    @torch.no_grad()
    def generate(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """G(z, y) in data space, for given codes (interpolation, traversal, arithmetic)."""
        was = self.training
        self.eval()
        try:
            return self.from_working(self.generator(z.to(self.device), self.condition(y, len(z), sample=True)))
        finally:
            self.train(was)

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, z=None, rejection=None, gamma: float = 0.0,
               refine: int = 0, refine_step: float = 0.01, refine_noise: float = 0.0):
        """n samples G(z, y). `rejection=True`: discriminator rejection sampling (see `drs_accept`);
        `refine=K`: K discriminator-driven steps on z before decoding (see `refine_latent`).
        `rejection=None` follows the `sampling` hyperparameter, except with given codes z or refine."""
        if rejection is None:
            rejection = self.default_rejection and z is None and not refine
        if rejection:
            if z is not None or refine:
                raise ConfigError("rejection sampling draws its own z; do not pass z or refine with rejection=true")
            return self._rejection_sample(n, self.condition(y, n, sample=True), generator, gamma)
        z = self.draw_z(n, generator) if z is None else z
        if refine:
            z = self.refine_latent(z, y, steps=refine, step_size=refine_step, noise=refine_noise,
                                   generator=generator)
        return self.generate(z, y)

    def refine_latent(self, z, y=None, *, steps: int = 10, step_size: float = 0.01, noise: float = 0.0,
                      generator=None) -> torch.Tensor:
        """Discriminator-driven latent sampling (DDLS, Che et al. 2020). With d the discriminator's
        logit, G and d define an energy on the latent space,

            E(z) = ||z||^2 / 2 - d(G(z)),       z <- z - (eps / 2) grad E(z) + noise * sqrt(eps) xi,

        xi ~ N(0, I). noise = 1 is Langevin dynamics on p(z) ~ N(z; 0, I) exp(d(G(z))), whose image under
        G is p_data for an optimal D (DRS's density ratio, moved into z); noise = 0 (default) is
        gradient ascent on log N(z) + d(G(z)), as in discriminator optimal transport (Tanaka 2019): it
        moves samples off the low-density bridges a continuous G leaves between modes, and it also
        concentrates each mode (a mode-seeking step: precision up, within-mode spread down)."""
        self._check_density_ratio_discriminator("latent refinement")
        if not (isinstance(steps, int) and steps >= 1) or step_size <= 0 or noise < 0:
            raise ConfigError(f"refinement needs steps >= 1, step_size > 0, noise >= 0 "
                              f"(got {steps}, {step_size}, {noise})")
        labels = self.condition(y, len(z), sample=True)
        was = self.training
        self.eval()
        try:
            with torch.enable_grad():
                z = z.detach().to(self.device)
                for _ in range(steps):
                    z.requires_grad_(True)
                    energy = 0.5 * z.pow(2).sum(1) - self.discriminator(self.generator(z, labels), labels).flatten()
                    (grad,) = torch.autograd.grad(energy.sum(), z)
                    z = z.detach() - 0.5 * step_size * grad
                    if noise:
                        xi = torch.randn(z.shape, generator=generator).to(self.device)
                        z = z + noise * step_size ** 0.5 * xi
            return z.detach()
        finally:
            self.train(was)

    def _check_density_ratio_discriminator(self, what):
        if self.loss_name not in DENSITY_RATIO_LOSSES:
            raise ConfigError(f"{what} needs a discriminator trained with the cross-entropy loss "
                              f"(minimax or non-saturating), not {self.loss_name}: only then is its logit "
                              "log p_data/p_G")
        if self.pac > 1:
            raise ConfigError(f"{what} scores single samples; this discriminator judges packs of {self.pac}")

    MIN_PROPOSALS = 512

    def _rejection_sample(self, n, y, generator, gamma, burn_in: int = 10_000, rounds: int = 1000):
        self._check_density_ratio_discriminator("rejection sampling")
        was = self.training
        self.eval()
        try:
            def propose(labels, m):
                u = self.generator(self.draw_z(m, generator), labels)
                return u, self.discriminator(u, labels).flatten()

            burn_labels = None if y is None else y[torch.randint(len(y), (burn_in,), generator=generator)]
            max_logit = propose(burn_labels, burn_in)[1].max()
            out = torch.empty((n, *self.spec.shape), device=self.device)
            todo = torch.arange(n, device=self.device)  # rows still to fill
            for _ in range(rounds):
                if len(todo) == 0:
                    return self.from_working(out)
                # at least 4 proposals per missing row, and at least MIN_PROPOSALS in all: a minibatch-std
                # discriminator reads the batch's spread, which a handful of samples would misstate
                k = max(4, -(-self.MIN_PROPOSALS // len(todo)))
                rows = todo.repeat(k)
                u, logit = propose(None if y is None else y[rows], len(rows))
                max_logit = torch.maximum(max_logit, logit.max())
                p = drs_accept(logit, max_logit, gamma)
                ok = (torch.rand(len(rows), generator=generator).to(self.device) < p).view(k, len(todo))
                hit = ok.any(0)
                first = ok.int().argmax(0)  # the first accepted proposal fills its row
                cols = hit.nonzero().flatten()
                out[todo[cols]] = u.view(k, len(todo), *u.shape[1:])[first[cols], cols]
                todo = todo[~hit]
            raise ConfigError(f"rejection sampling accepted too few proposals in {rounds} rounds; "
                              "lower gamma (e.g. gamma=-3)")
        finally:
            self.train(was)
