"""Adversarial parts any GAN family composes (`gan`, and image-to-image ones): the losses, the
gradient penalties, the two-player step, minibatch standard deviation and the MLP / DCGAN nets.

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))],      D(x) = sigmoid(l(x))

D outputs a logit l; every loss is written in terms of logits (log D = -softplus(-l),
log(1 - D) = -softplus(l)). `LOSSES` maps a loss name to its (discriminator_loss,
generator_loss) pair; `discriminator_step` / `generator_step` turn a critic, real and fake
samples and a loss name into each player's loss, so a new adversarial family writes only its
networks and its extra terms (an L1 reconstruction, a cycle loss, ...).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import unknown_name
from .conv import ConvDecoder, ConvEncoder
from .embed import one_hot
from .mlp import MLP, activation
from .shard import global_batch


# -- the losses, on logits ------------------------------------------------------------------------
def discriminator_loss_bce(real_logits, fake_logits):
    """Minimax and non-saturating D loss:  L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
    = E[softplus(-l(x))] + E[softplus(l(G(z)))]."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_minimax(fake_logits):
    """The original, saturating G loss:  L_G = E[log(1 - D(G(z)))] = -E[softplus(l(G(z)))].
    Its gradient vanishes where D confidently rejects the samples (D(G(z)) -> 0)."""
    return -F.softplus(fake_logits).mean()


def generator_loss_non_saturating(fake_logits):
    """The -log D trick:  L_G = -E[log D(G(z))] = E[softplus(-l(G(z)))]; same fixed point,
    strong gradients early in training."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss_hinge(real_logits, fake_logits):
    """Hinge D loss (Lim & Ye 2017):  L_D = E[relu(1 - l(x))] + E[relu(1 + l(G(z)))]."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_loss_linear(fake_logits):
    """Hinge and WGAN G loss:  L_G = -E[l(G(z))]."""
    return -fake_logits.mean()


def critic_loss_wasserstein(real_logits, fake_logits):
    """WGAN critic loss (Arjovsky et al. 2017):  L_D = E[l(G(z))] - E[l(x)]."""
    return fake_logits.mean() - real_logits.mean()


def discriminator_loss_least_squares(real_logits, fake_logits):
    """LSGAN D loss (Mao et al. 2017), targets 1 for real and 0 for fake on the raw output l:

        L_D = 1/2 E[(l(x) - 1)^2] + 1/2 E[l(G(z))^2]"""
    return 0.5 * (real_logits - 1).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()


def generator_loss_least_squares(fake_logits):
    """LSGAN G loss:  L_G = 1/2 E[(l(G(z)) - 1)^2]; its gradient grows with the distance from the
    real target, so it does not saturate where D rejects."""
    return 0.5 * (fake_logits - 1).pow(2).mean()


#: loss name -> (discriminator_loss(real_logits, fake_logits), generator_loss(fake_logits))
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "minimax": (discriminator_loss_bce, generator_loss_minimax),
    "non-saturating": (discriminator_loss_bce, generator_loss_non_saturating),
    "hinge": (discriminator_loss_hinge, generator_loss_linear),
    "wgan-gp": (critic_loss_wasserstein, generator_loss_linear),
    "lsgan": (discriminator_loss_least_squares, generator_loss_least_squares),
}
#: the logit above which D calls an example real, per loss (none for a Wasserstein critic, whose output has
#: no such threshold): what `d_acc`, D's accuracy on a real and a fake batch, is measured against
DECISION_THRESHOLD = {"minimax": 0.0, "non-saturating": 0.0, "hinge": 0.0, "lsgan": 0.5}
#: losses whose critic also pays gp_weight * gradient_penalty
GRADIENT_PENALTY_LOSSES = ("wgan-gp",)
#: losses whose optimal D has logit l(x) = log p_data(x) / p_G(x) (what DRS and DDLS rely on)
DENSITY_RATIO_LOSSES = ("minimax", "non-saturating")


def check_loss_without_penalty(name: str, family: str) -> None:
    """A ConfigError unless `name` is a loss that needs no gradient penalty on the critic (every
    loss but wgan-gp): what the image-to-image families' PatchGAN critics are trained with."""
    if name not in LOSSES or name == "wgan-gp":
        raise unknown_name(f"{family} GAN loss", name, [k for k in LOSSES if k != "wgan-gp"])


def adversarial_loss(name: str) -> tuple[Callable, Callable]:
    """The (discriminator_loss, generator_loss) pair of a loss name; a ConfigError for an unknown one."""
    if name not in LOSSES:
        raise unknown_name("GAN loss", name, LOSSES)
    return LOSSES[name]


def gradient_penalty(critic, real, fake, y=None):
    """WGAN-GP (Gulrajani et al. 2017):  E[(||grad_x^ l(x^)||_2 - 1)^2],  x^ = eps x + (1 - eps) G(z)."""
    eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat, y).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(critic, real, y=None):
    """R1 (Mescheder et al. 2018):  1/2 E[||grad_x l(x)||^2] on real data (times r1_weight)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(real, y).sum(), real, create_graph=True)
    return 0.5 * grad.flatten(1).pow(2).sum(1).mean()


# -- the two-player step ----------------------------------------------------------------------------
def discriminator_step(critic, real, fake, loss: str, y=None, *, gp_weight: float = 0.0,
                       r1_weight: float = 0.0) -> dict:
    """The discriminator's loss on a real batch and a (detached) fake one, with the penalties:

        L_D(l(x), l(G(z))) + gp_weight * GP (wgan-gp) + r1_weight * R1

    `critic(x, y)` -> logits [N]. Returns {"loss", "real_logit", "fake_logit"[, "d_acc"][, "gp"][, "r1"]};
    d_acc is the share of real and fake examples D classifies rightly (a D at 1.0 for long has won)."""
    d_loss, _ = adversarial_loss(loss)
    real_l, fake_l = critic(real, y), critic(fake, y)
    total = d_loss(real_l, fake_l)
    out = {"real_logit": real_l.mean().detach(), "fake_logit": fake_l.mean().detach()}
    if loss in DECISION_THRESHOLD:
        t = DECISION_THRESHOLD[loss]
        out["d_acc"] = 0.5 * ((real_l.detach() > t).float().mean() + (fake_l.detach() <= t).float().mean())
    if loss in GRADIENT_PENALTY_LOSSES:
        gp = gradient_penalty(critic, real, fake, y)
        total, out["gp"] = total + gp_weight * gp, gp.detach()
    if r1_weight:
        r1 = r1_penalty(critic, real, y)
        total, out["r1"] = total + r1_weight * r1, r1.detach()
    return {"loss": total, **out}


def generator_step(critic, fake, loss: str, y=None) -> dict:
    """The generator's loss L_G(l(G(z))) on fakes that carry G's graph.
    Returns {"loss", "d_of_fake"} (the mean of sigmoid(l), D's belief that they are real)."""
    _, g_loss = adversarial_loss(loss)
    fake_l = critic(fake, y)
    return {"loss": g_loss(fake_l), "d_of_fake": torch.sigmoid(fake_l).mean().detach()}


# -- the networks ------------------------------------------------------------------------------------
class MinibatchStd(nn.Module):
    """Appends the mean (over features) of the per-feature std across the batch: lets D see
    diversity (Karras et al. 2018), a remedy for mode collapse. Under data parallelism the
    statistic is the global batch's (`shard.global_batch`), as on one process."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        whole = global_batch(h)
        s = whole.std(0, unbiased=False).mean().expand(len(h), 1) if len(whole) > 1 else h.new_zeros(len(h), 1)
        return torch.cat([h, s], 1)


class Discriminator(nn.Module):
    """x [, y] -> logit, an MLP or a DCGAN conv trunk. With pac > 1 (PacGAN, Lin et al. 2018) it
    takes groups of `pac` samples (one logit per group). Labels enter by projection (Miyato &
    Koyama 2018), l(x, y) = psi(h(x)) + <embed(y), h(x)>, or as a concatenated one-hot."""

    def __init__(self, spec, net, hidden, channels, pac, num_classes, conditioning, minibatch_std):
        super().__init__()
        self.net, self.pac, self.k, self.conditioning = net, pac, num_classes, conditioning
        concat = num_classes if conditioning == "concat" else 0
        if net == "conv":
            c, h, w = spec.shape
            self.trunk = ConvEncoder((c * pac + concat, h, w), 1, channels, "leaky_relu").trunk
            feat = ConvEncoder((c * pac + concat, h, w), 1, channels).flat_features
        else:
            self.trunk = nn.Sequential(MLP(spec.dim * pac + concat, hidden[-1], hidden[:-1], "leaky_relu"),
                                       activation("leaky_relu"))
            feat = hidden[-1]
        self.mbstd = MinibatchStd() if minibatch_std else None
        self.head = nn.Linear(feat + (1 if minibatch_std else 0), 1)
        self.embed = nn.Embedding(num_classes, feat) if conditioning == "projection" and num_classes else None

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.pac > 1:  # [B, ...] -> [B / pac, pac * ...]: pac samples side by side
            x = x.reshape(len(x) // self.pac, -1, *x.shape[2:]) if self.net == "conv" else x.reshape(len(x) // self.pac, -1)
        if self.conditioning == "concat" and y is not None:
            c = one_hot(y, self.k, len(x), x.device)
            x = torch.cat([x, c[:, :, None, None].expand(-1, -1, *x.shape[2:])] if self.net == "conv" else [x, c], 1)
        h = self.trunk(x if self.net == "conv" else x.flatten(1)).flatten(1)
        logit = self.head(self.mbstd(h) if self.mbstd is not None else h).squeeze(1)
        if self.embed is not None and y is not None:
            logit = logit + (self.embed(y) * h).sum(1)
        return logit


class Generator(nn.Module):
    """z [, y] -> sample in the working scale (tanh for images in [-1, 1], linear for vectors);
    a label embedding joins z when conditional. `norm`: the conv generator's normalisation after
    each transposed convolution, "batch" (DCGAN), "group" or "none"."""

    def __init__(self, spec, latent_dim, net, hidden, channels, num_classes, norm: str = "batch"):
        super().__init__()
        self.net, self.shape = net, tuple(spec.shape)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        z_dim = latent_dim * (2 if num_classes else 1)
        if net == "conv":  # DCGAN: transposed convolutions with batch norm, tanh output
            self.body = ConvDecoder(z_dim, spec.shape, tuple(reversed(channels)), "relu",
                                    norm=None if norm == "none" else norm)
        else:
            self.body = MLP(z_dim, spec.dim, tuple(reversed(hidden)), "relu")
        self.image = spec.kind == "image"

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        out = self.body(z).reshape(len(z), *self.shape)
        return torch.tanh(out) if self.image else out
