"""CycleGAN (Zhu et al. 2017): translation between two *unpaired* collections A and B.

Two generators G: A -> B and F: B -> A, two discriminators D_B (on B) and D_A (on A):

    L(G, F, D_A, D_B) = L_GAN(G, D_B) + L_GAN(F, D_A) + lambda L_cyc(G, F) + lambda_id L_id(G, F)
    L_cyc(G, F) = E_a ||F(G(a)) - a||_1 + E_b ||G(F(b)) - b||_1          (cycle consistency, lambda = 10)
    L_id(G, F)  = E_b ||G(b) - b||_1 + E_a ||F(a) - a||_1                 (identity, lambda_id = w lambda)

with the least-squares GAN loss (Mao et al. 2017; nn/gan.py's `lsgan`) and each discriminator shown
fakes from an image pool of the last 50 (nn/translation.py's `ImagePool`). Domain A is the data's
condition c, domain B its target x: on `mnist-inverted` A is inverted MNIST, B MNIST. The data may
be unpaired (`DataSpec.unpaired`): the training batches of x and c are then two independent
collections; on paired data CycleGAN simply ignores the pairing.

The generators are pix2pix's U-Nets (the CycleGAN code offers them beside its ResNet generator),
shallow by default (`local_depth`); they also map between sizes (A 4x4, B 8x8), in which case the identity loss is undefined and left
out. `sample(n, y=a)` translates A -> B; `sample(n, y=b, direction="BA")` translates B -> A.
"""

from __future__ import annotations

import torch

from ..params import Int, Float, Text, Bool, OneOf
from ..errors import ConfigError, unknown_name
from ..nn.gan import check_loss_without_penalty, discriminator_step, generator_step
from ..nn.translation import ImagePool, PatchDiscriminator, UNetGenerator, check_norm, noise_on
from .base import GenerativeModel, Player, register_model

DIRECTIONS = ("AB", "BA")


def local_depth(size) -> int:
    """The generators' default depth: two halvings (one below 16 px), as CycleGAN's generators
    downsample twice, so the translation stays local. A U-Net down to 2 x 2 sees the whole image and
    can settle on a translation that is cycle-consistent but wrong: on digits-inverted, seed-dependent,
    inversion composed with a 180-degree rotation (class accuracy below chance)."""
    return 2 if min(size) >= 16 else 1


def cycle_consistency_loss(g_ab, g_ba, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L_cyc = E_a ||F(G(a)) - a||_1 + E_b ||G(F(b)) - b||_1 (pixel means), G = g_ab, F = g_ba."""
    return (g_ba(g_ab(a)) - a).abs().mean() + (g_ab(g_ba(b)) - b).abs().mean()


def identity_loss(g_ab, g_ba, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L_id = E_b ||G(b) - b||_1 + E_a ||F(a) - a||_1: a generator shown an image of its own
    output domain should leave it alone (keeps colours and intensities)."""
    return (g_ab(b) - b).abs().mean() + (g_ba(a) - a).abs().mean()


@register_model("cyclegan")
class CycleGAN(GenerativeModel):
    description = ("CycleGAN: unpaired translation A <-> B, two U-Net generators, two PatchGANs, LSGAN, "
                   "cycle and identity losses, image pools")
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"loss": Text(), "cycle_weight": Float(0), "identity_weight": Float(0), "pool_size": Int(0),
                     "base": Int(1), "depth": Int(0), "dropout": Float(0, 1, high_open=True), "d_base": Int(1),
                     "d_layers": Int(-1), "norm": OneOf("batch", "instance", "none"), "conditional": Bool()}
    train_defaults = {"lr": 2e-4, "betas": (0.5, 0.999), "ema_decay": None, "batch_size": 32}
    min_train_steps = 300
    kinds = ("image",)
    condition_kinds = ("tensor",)
    learns_unpaired = True
    sample_ranges = {"direction": OneOf(*DIRECTIONS)}
    translates_back = True  # sample(..., direction="BA"); evaluation scores that way too ("reverse")

    @classmethod
    def data_defaults(cls, spec, n_train=None):
        """Small images (DataSpec.small_image: the 8 x 8 digits): lr 1e-3, 5x the paper's 2e-4. At 1
        CPU-minute (bench/defaults.py, 2026-12-02, seed 0, no identity loss): digits-inverted PSNR 24.89
        against 16.68 dB at 2e-4, digits-sr 14.12 against 12.70 (bicubic 13.49)."""
        return {"lr": 1e-3} if spec.small_image else {}

    #: identity_weight w defaults to 0: the paper adds the identity loss (w = 0.5) only for photo <->
    #: painting, to keep colours; on a mapping that changes intensities it pulls G towards the identity.
    #: On digits-inverted at 1 CPU-minute (bench/defaults.py, 2026-12-02) w = 0.5 gave PSNR 4.43 dB
    #: (the input itself: 1.45), w = 0 16.68 dB.
    def __init__(self, spec, loss: str = "lsgan", cycle_weight: float = 10.0, identity_weight: float = 0.0,
                 pool_size: int = 50, base: int = 32, depth: int = 0, dropout: float = 0.0, d_base: int = 64,
                 d_layers: int = -1, norm: str = "instance", conditional: bool = True):
        super().__init__(spec)
        if spec.kind != "image" or spec.condition_shape is None or len(spec.condition_shape) != 3:
            raise ConfigError(f"cyclegan translates between two collections of images: the data needs inputs "
                              f"(domain A, the conditions) beside its images (domain B), e.g. mnist-inverted; "
                              f"'{spec.name}' has none")
        if not conditional:
            raise ConfigError("cyclegan is conditional by construction (it translates its input); "
                              "leave conditional=true")
        check_loss_without_penalty(loss, "cyclegan")
        if cycle_weight < 0 or identity_weight < 0:
            raise ConfigError(f"cycle_weight and identity_weight must be >= 0 (got {cycle_weight}, {identity_weight})")
        check_norm(norm)
        self.shape_a, self.shape_b = tuple(spec.condition_shape), tuple(spec.shape)
        (ca, *size_a), (cb, *size_b) = self.shape_a, self.shape_b
        self.loss_name, self.cycle_weight, self.identity_weight = loss, float(cycle_weight), float(identity_weight)
        self.same_shape = self.shape_a == self.shape_b
        d_layers = None if d_layers < 0 else d_layers
        self.g_ab = UNetGenerator(ca, cb, size_b, base, depth or local_depth(size_b), dropout, norm)
        self.g_ba = UNetGenerator(cb, ca, size_a, base, depth or local_depth(size_a), dropout, norm)
        self.d_a = PatchDiscriminator(ca, size_a, 0, d_base, d_layers, norm)
        self.d_b = PatchDiscriminator(cb, size_b, 0, d_base, d_layers, norm)
        self.pool_a, self.pool_b = ImagePool(pool_size, self.shape_a), ImagePool(pool_size, self.shape_b)

    def to_working(self, x):
        return 2 * x - 1

    def from_working(self, u):
        return ((u + 1) / 2).clamp(0, 1)

    def _domains(self, x, y):
        """(a, b) in the working scale: a batch of A (the conditions) and of B (the images)."""
        a = self.condition(y, len(x))
        if a is None:
            raise ConfigError("cyclegan trains on two collections: pass the domain-A images as y")
        return 2 * a - 1, self.to_working(x)

    # -- the two players ------------------------------------------------------------------------
    @property
    def generator_supervision(self):
        """What the generators learn from besides the critics: cycle consistency, unless weighted 0."""
        return "cycle-consistency" if self.cycle_weight > 0 else None

    def players(self):
        gens = [*self.g_ab.parameters(), *self.g_ba.parameters()]
        return [Player("discriminator", [*self.d_a.parameters(), *self.d_b.parameters()], "discriminator_loss"),
                Player("generator", gens, "generator_loss")]

    def ema_names(self):
        return [n for n, _ in self.named_parameters() if n.startswith(("g_ab.", "g_ba."))]

    def discriminator_loss(self, x, y=None):
        """D_A: real a against pooled F(b); D_B: real b against pooled G(a) (generators fixed)."""
        a, b = self._domains(x, y)
        with torch.no_grad():
            fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        da = discriminator_step(self.d_a, a, self.pool_a.query(fake_a), self.loss_name)
        db = discriminator_step(self.d_b, b, self.pool_b.query(fake_b), self.loss_name)
        out = {"loss": da["loss"] + db["loss"], "d_a": da["loss"].detach(), "d_b": db["loss"].detach()}
        if "d_acc" in da:  # the two critics' accuracy (the Trainer warns when a critic has won outright)
            out["d_acc"] = torch.minimum(da["d_acc"], db["d_acc"])
        return out

    def generator_loss(self, x, y=None):
        """L_GAN(G, D_B) + L_GAN(F, D_A) + cycle_weight L_cyc + identity_weight cycle_weight L_id."""
        a, b = self._domains(x, y)
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        adv = (generator_step(self.d_b, fake_b, self.loss_name)["loss"]
               + generator_step(self.d_a, fake_a, self.loss_name)["loss"])
        cyc = (self.g_ba(fake_b) - a).abs().mean() + (self.g_ab(fake_a) - b).abs().mean()  # = cycle_consistency_loss
        total = adv + self.cycle_weight * cyc
        out = {"adv": adv.detach(), "cycle": cyc.detach()}
        if self.same_shape and self.identity_weight:
            idt = identity_loss(self.g_ab, self.g_ba, a, b)
            total = total + self.identity_weight * self.cycle_weight * idt
            out["identity"] = idt.detach()
        return {"loss": total, **out}

    # -- translation ----------------------------------------------------------------------------
    def translation_input_shape(self, direction: str = "AB") -> tuple:
        """The shape of one input for `direction` (A's for AB, B's for BA)."""
        if direction not in DIRECTIONS:
            raise unknown_name("direction", direction, DIRECTIONS)
        return self.shape_a if direction == "AB" else self.shape_b

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, direction: str = "AB"):
        """Translate the n inputs y: A -> B (default; y of the data's condition shape) or, with
        direction="BA", B -> A (y of the data's image shape). One input is repeated n times."""
        shape = self.translation_input_shape(direction)
        if direction == "AB":
            c = self.condition(y, n, sample=True)
        else:
            if y is None:
                raise ConfigError(f"cyclegan translates B -> A: pass the domain-B images y, of shape {shape}")
            c = torch.as_tensor(y, device=self.device).float()
            c = c.unsqueeze(0) if tuple(c.shape) == shape else c
            c = c.expand(n, *shape) if tuple(c.shape) == (1, *shape) else c
            if tuple(c.shape) != (n, *shape):
                raise ConfigError(f"inputs of shape {tuple(c.shape[1:])} given; cyclegan translates B -> A from "
                                  f"{shape} per example ({n} of them)")
        g = self.g_ab if direction == "AB" else self.g_ba
        was = self.training
        self.eval()
        try:
            with noise_on(g, False):
                return self.from_working(g(2 * c - 1))
        finally:
            self.train(was)
