"""pix2pix (Isola et al. 2017): a conditional GAN that maps an input image c to an output image x,
trained on pairs (c, x). The discriminator classifies *pairs*: is (c, x) a real pair or (c, G(c))?

    G* = arg min_G max_D  L_cGAN(G, D) + lambda L_L1(G),                      lambda = 100
    L_cGAN(G, D) = E_{c,x}[log D(c, x)] + E_c[log(1 - D(c, G(c, z)))]
    L_L1(G)      = E_{c,x}[ ||x - G(c, z)||_1 ]

G is a U-Net with skip connections (nn/translation.py), D a PatchGAN on the concatenated pair; the
noise z is dropout in G's decoder, kept on when sampling (pix2pix notes that G learns to largely
ignore it: `genlab eval` reports the outputs' diversity). Inputs smaller than the output (a 7x7
low-resolution digit) are upsampled bilinearly to the output size first.

Super-resolution is the same model on a low-resolution input (`mnist-sr`, `digits-sr`). The
SRGAN-style option (Ledig et al. 2017) adds a feature (perceptual) loss:

    L_G = L_adv + l1_weight * ||x - G(c)||_1 + feature_weight * ||phi(x) - phi(G(c))||_2^2 / dim

with phi the penultimate features of genlab's shipped classifier for the target domain (no
pretrained VGG can be downloaded offline); it is frozen and not part of the saved weights.
The adversarial loss is any of nn/gan.py's (`non-saturating`, pix2pix's; `lsgan`, ...); the
discriminator may take its own learning rate (`d_lr`).
"""

from __future__ import annotations


import torch
from torch.nn import functional as F

from ..params import Int, Float, Text, Bool, OneOf
from ..errors import ConfigError
from ..nn.classifier import SHIPPED, shipped_classifier
from ..nn.gan import check_loss_without_penalty, discriminator_step, generator_step
from ..nn.translation import PatchDiscriminator, UNetGenerator, check_norm, noise_on
from .base import GenerativeModel, Player, register_model


def check_image_to_image(spec, family: str) -> None:
    """One-line errors for data a translation family cannot use: no tensor condition, a
    condition that is not an image, or (for families that learn from pairs) unpaired data."""
    if spec.kind != "image" or spec.condition_shape is None:
        raise ConfigError(f"'{family}' translates images: it needs paired image data (x with an input image c, "
                          f"e.g. digits-sr, mnist-sr or folders A/ and B/); '{spec.name}' has no inputs")
    if len(spec.condition_shape) != 3:
        raise ConfigError(f"'{family}' takes an input image (C x H x W); the conditions of '{spec.name}' have "
                          f"shape {tuple(spec.condition_shape)}")


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L_L1 = E ||x - G(c)||_1, averaged over pixels (the working scale, [-1, 1])."""
    return (fake - real).abs().mean()


@register_model("pix2pix")
class Pix2Pix(GenerativeModel):
    description = ("pix2pix: U-Net generator, PatchGAN on (input, output) pairs, L1 + adversarial loss; "
                   "super-resolution, SRGAN-style feature loss")
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"loss": Text(), "l1_weight": Float(0), "feature_weight": Float(0), "base": Int(1),
                     "depth": Int(0), "dropout": Float(0, 1, high_open=True), "d_base": Int(1), "d_layers": Int(-1),
                     "norm": OneOf("batch", "instance", "none"), "conditional": Bool(), "d_lr": Float(0)}
    train_defaults = {"lr": 2e-4, "betas": (0.5, 0.999), "ema_decay": None, "batch_size": 32}
    min_train_steps = 300
    kinds = ("image",)
    condition_kinds = ("tensor",)

    #: images up to this side take a 5x larger learning rate (`data_defaults`)
    SMALL_SIDE = 32

    @classmethod
    def data_defaults(cls, spec, n_train=None):
        """Images of at most 32 x 32 pixels (digits, MNIST-sized tasks): lr 1e-3, 5x the paper's 2e-4
        (set for hundreds of epochs on 256 x 256 photos). On mnist-sr at 10 CPU-minutes, seeds 0 / 1 / 2,
        all 10,000 test pairs (bench/translate.py, 2026-12-02): the classifier's accuracy on the outputs
        95.6 / 96.3 / 96.3% against 96.0 / 96.2 / 94.8% at 2e-4, PSNR 19.7 / 20.1 / 20.2 against 19.6 /
        19.7 / 19.4 dB, FD excess 0.171 / 0.114 / 0.114 against 0.150 / 0.136 / 0.188."""
        if spec.kind == "image" and max(spec.shape[-2:]) <= cls.SMALL_SIDE:
            return {"lr": 1e-3}
        return {}

    def __init__(self, spec, loss: str = "non-saturating", l1_weight: float = 100.0, feature_weight: float = 0.0,
                 base: int = 32, depth: int = 0, dropout: float = 0.5, d_base: int = 64, d_layers: int = -1,
                 norm: str = "batch", conditional: bool = True, d_lr: float = 0.0):
        super().__init__(spec)
        check_image_to_image(spec, "pix2pix")
        if not conditional:
            raise ConfigError("pix2pix is conditional by construction (it maps an input image to an output); "
                              "leave conditional=true")
        check_loss_without_penalty(loss, "pix2pix")
        if l1_weight < 0 or feature_weight < 0:
            raise ConfigError(f"l1_weight and feature_weight must be >= 0 (got {l1_weight}, {feature_weight})")
        check_norm(norm)
        c, h, w = spec.shape
        cc = spec.condition_shape[0]
        self.loss_name, self.l1_weight, self.feature_weight = loss, float(l1_weight), float(feature_weight)
        self.d_lr = float(d_lr)  # the discriminator's own learning rate (0: the trainer's lr)
        self.generator = UNetGenerator(cc, c, (h, w), base, depth or None, dropout, norm)
        self.discriminator = PatchDiscriminator(c, (h, w), cc, d_base, None if d_layers < 0 else d_layers, norm)
        self._phi = []  # the frozen feature network, kept out of the module tree (not trained, not saved)
        if feature_weight:
            name = spec.domain or spec.name
            if name not in SHIPPED or SHIPPED[name] != tuple(spec.shape):
                raise ConfigError(f"feature_weight needs a shipped classifier for the targets' domain "
                                  f"({', '.join(SHIPPED)}); '{spec.name}' has none")
            self._phi.append(shipped_classifier(name))

    # -- scales ---------------------------------------------------------------------------------
    def to_working(self, x):
        return 2 * x - 1

    def from_working(self, u):
        return ((u + 1) / 2).clamp(0, 1)

    def _input(self, y, n: int, sample: bool = False) -> torch.Tensor:
        c = self.condition(y, n, sample=sample)
        if c is None:
            raise ConfigError("pix2pix needs the input images y (its conditions) for every example")
        return 2 * c - 1

    # -- the two players ------------------------------------------------------------------------
    @property
    def generator_supervision(self):
        """What G learns from besides D: its L1 (and feature) term, unless both weights are 0."""
        terms = [t for t, w in (("L1", self.l1_weight), ("feature", self.feature_weight)) if w > 0]
        return " + ".join(terms) or None

    def players(self):
        d_over = {"lr": self.d_lr} if self.d_lr else {}
        return [Player("discriminator", list(self.discriminator.parameters()), "discriminator_loss", 1, d_over),
                Player("generator", list(self.generator.parameters()), "generator_loss")]

    def ema_names(self):
        return [n for n, _ in self.named_parameters() if n.startswith("generator.")]

    def discriminator_loss(self, x, y=None):
        """D's step: real pairs (c, x) against (c, G(c)) (G fixed)."""
        c = self._input(y, len(x))
        with torch.no_grad():
            fake = self.generator(c)
        return discriminator_step(self.discriminator, self.to_working(x), fake, self.loss_name, c)

    def generator_loss(self, x, y=None):
        """G's step: L_adv(D(c, G(c))) + l1_weight * L1 [+ feature_weight * feature loss]."""
        c = self._input(y, len(x))
        real = self.to_working(x)
        fake = self.generator(c)
        out = generator_step(self.discriminator, fake, self.loss_name, c)
        adv = out["loss"]
        l1 = l1_loss(fake, real)
        total = adv + self.l1_weight * l1
        parts = {"adv": adv.detach(), "l1": l1.detach(), "d_of_fake": out["d_of_fake"]}
        if self.feature_weight:
            feat = self.feature_loss(self.from_working(fake), x)
            total = total + self.feature_weight * feat
            parts["feature"] = feat.detach()
        return {"loss": total, **parts}

    def feature_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """||phi(x) - phi(G(c))||^2 / dim, phi = the shipped classifier's features (images in [0, 1])."""
        phi = self._phi[0].to(fake.device).eval()
        with torch.no_grad():
            target = phi.features(real)
        return F.mse_loss(phi.features(fake), target)

    # -- translation ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, noise: bool = True):
        """G(c, z) for the n input images y (one input is repeated n times); `noise=False` turns the
        dropout off (a deterministic translation). Batch norm uses its running statistics."""
        c = self._input(y, n, sample=True)
        was = self.training
        self.eval()
        try:
            if generator is not None and noise:  # dropout draws from the global generator: seed it from ours
                seed = int(torch.randint(2 ** 62, (), generator=generator, device=generator.device))
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    with noise_on(self.generator, True):
                        return self.from_working(self.generator(c))
            with noise_on(self.generator, noise):
                return self.from_working(self.generator(c))
        finally:
            self.train(was)
