"""Gated PixelCNN (van den Oord et al. 2016): an autoregressive image model with exact likelihood.

The D = H x W pixels are ordered in raster order (row by row, left to right) and

    log p(x | y) = sum_i log p(x_i | x_<i, y)

with every factor computed at once by a causal network (`nn/pixelcnn.py`: masked and gated
convolutions, vertical and horizontal stacks, no blind spot). The channels of a pixel are
conditionally independent given the past pixels. Each factor is

    categorical   p(x_i = k / (L-1) | x_<i) = softmax(logits_i)_k,   k in 0..L-1  (L = the data's
                  intensity levels: 17 for digits, 256 for 8-bit; `levels` overrides it)
    bernoulli     p(x_i = 1 | x_<i) = sigmoid(logit_i)   (binary data; `binarize=true` trains on
                  x ~ Bernoulli(x) resampled each time, Burda et al. 2016)
    logistic_mix  the discretised logistic mixture of PixelCNN++ (Salimans et al. 2017), on the
                  levels' grid v_k = 2k/(L-1) - 1 in [-1, 1] with bin half-width b = 1/(L-1):
                  p(k) = sum_m pi_m [sigma((v_k + b - mu_m) / s_m) - sigma((v_k - b - mu_m) / s_m)],
                  the outer edges extended to -inf and +inf (3 n_mix outputs per channel, not L)

`log_prob` is the exact log-probability, in nats, of the discrete image k = round(x (L-1)):
bits/dim = nll / (D log 2), with no dequantisation term. Sampling fills the pixels in raster
order, one network pass per pixel for the whole batch.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..params import Int, Float, OneOf, Bool
from ..errors import ConfigError
from ..nn.density import binarize
from ..nn.embed import one_hot
from ..nn.pixelcnn import GatedPixelCNN
from .base import GenerativeModel, register_model


def discretized_logistic_mix_log_prob(params: torch.Tensor, k: torch.Tensor, levels: int) -> torch.Tensor:
    """log p(k) under a mixture of logistics discretised to `levels` bins of [-1, 1] (PixelCNN++):

        p(k) = sum_m pi_m [sigma((v_k + b - mu_m) / s_m) - sigma((v_k - b - mu_m) / s_m)],
        v_k = 2k/(L-1) - 1,  b = 1/(L-1),  with sigma(-inf) = 0 below k = 0 and sigma(+inf) = 1 above k = L-1.

    params [..., 3 n_mix] = (mixture logits, mu, log s) per pixel, k [...] levels. Where a bin's mass
    underflows (< 1e-5) the density at its centre times its width stands in, as in PixelCNN++.
    """
    logit_pi, mu, log_s = params.chunk(3, -1)
    log_s = log_s.clamp(min=-7.0)
    b = 1.0 / (levels - 1)
    v = (k.to(params.dtype) * (2 * b) - 1).unsqueeze(-1)
    inv_s = torch.exp(-log_s)
    plus, minus, mid = inv_s * (v - mu + b), inv_s * (v - mu - b), inv_s * (v - mu)
    log_cdf_plus = plus - F.softplus(plus)               # log sigma(plus): the bin of k = 0
    log_one_minus_cdf_minus = -F.softplus(minus)         # log (1 - sigma(minus)): the bin of k = L-1
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    log_mid = mid - log_s - 2 * F.softplus(mid) + math.log(2 * b)
    log_bin = torch.where(delta > 1e-5, delta.clamp_min(1e-12).log(), log_mid)
    kk = k.unsqueeze(-1)
    log_p = torch.where(kk == 0, log_cdf_plus, torch.where(kk == levels - 1, log_one_minus_cdf_minus, log_bin))
    return torch.logsumexp(log_p + logit_pi.log_softmax(-1), -1)


def autoregressive_nll(out: torch.Tensor, k: torch.Tensor, output: str, levels: int) -> torch.Tensor:
    """-log p(x) = -sum_i log p(x_i | x_<i) per example, from the causal network's outputs.

    out [N, C, P, H, W]: P = L logits (categorical), 1 logit of a 1 (bernoulli) or 3 n_mix mixture
    parameters (logistic_mix) per channel and pixel; k [N, C, H, W] the level of every pixel.
    """
    if output == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(out[:, :, 0], k.to(out.dtype), reduction="none")
    elif output == "logistic_mix":
        nll = -discretized_logistic_mix_log_prob(out.movedim(2, -1), k, levels)
    else:
        nll = -out.log_softmax(2).gather(2, k.unsqueeze(2)).squeeze(2)
    return nll.flatten(1).sum(1)


@register_model("pixelcnn")
class PixelCNN(GenerativeModel):
    description = ("gated PixelCNN: autoregressive pixels (categorical, Bernoulli or discretised logistic mixture), "
                   "no blind spot, conditional")
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"channels": Int(1), "n_layers": Int(1), "kernel_size": Int(1), "first_kernel": Int(1),
                     "levels": Int(2, none=True), "binarize": Bool(),
                     "output": OneOf("auto", "categorical", "bernoulli", "logistic_mix"), "n_mix": Int(1),
                     "conditional": Bool(), "dropout": Float(0, 1, high_open=True)}
    kinds = ("image",)
    likelihood_kind = "exact"
    sample_ranges = {"temperature": Float(0, low_open=True)}
    discrete_likelihood = True
    likelihood_support = "discrete"
    train_defaults = {"lr": 1e-3, "batch_size": 64, "grad_clip": 100.0}
    compare_weight = 2.0  # a deep masked-conv step: twice an MLP family's share of a comparison

    def __init__(self, spec, channels: int = 32, n_layers: int = 5, kernel_size: int = 3, first_kernel: int = 7,
                 levels: int | None = None, binarize: bool = False, output: str = "auto", n_mix: int = 5,
                 conditional: bool = False, dropout: float = 0.0):
        super().__init__(spec)
        if output not in ("auto", "categorical", "bernoulli", "logistic_mix"):
            raise ConfigError(f"output must be auto, categorical, bernoulli or logistic_mix, not {output!r}")
        if n_mix < 1:
            raise ConfigError(f"n_mix must be >= 1, got {n_mix}")
        if binarize and (levels is not None or output in ("categorical", "logistic_mix")):
            raise ConfigError("binarize=true models binary pixels (Bernoulli): leave levels and output unset")
        if output == "auto":
            output = "bernoulli" if binarize or levels == 2 or (levels is None and spec.levels == 2) else "categorical"
        if output == "bernoulli" and levels not in (None, 2):
            raise ConfigError(f"output=bernoulli has 2 levels, not levels={levels}")
        levels = 2 if output == "bernoulli" else levels or spec.levels
        if levels is None:
            raise ConfigError(f"'{spec.name}' has no intensity levels (continuous images): set levels=L")
        if levels < 2:
            raise ConfigError(f"levels must be >= 2, got {levels}")
        if channels < 1 or n_layers < 0 or not 0 <= dropout < 1:
            raise ConfigError("need channels >= 1, n_layers >= 0 and 0 <= dropout < 1")
        if kernel_size < 1 or first_kernel < 1 or kernel_size % 2 == 0 or first_kernel % 2 == 0:
            raise ConfigError("kernel_size and first_kernel must be odd and >= 1")
        self.output, self.levels, self.binarize = output, int(levels), binarize
        self.discrete_levels = self.levels  # log_prob is over k / (levels - 1), k = 0..levels-1
        per_channel = {"bernoulli": 1, "categorical": self.levels, "logistic_mix": 3 * n_mix}[output]
        self.net = GatedPixelCNN(spec.shape[0], per_channel, channels, n_layers, kernel_size, first_kernel,
                                 spec.num_classes if conditional else 0, dropout)

    # -- pieces ---------------------------------------------------------------------------------
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The level k = round(x (L-1)) in 0..L-1 of every pixel (long)."""
        return (x * (self.levels - 1)).round().clamp(0, self.levels - 1).long()

    def logits(self, k: torch.Tensor, y=None) -> torch.Tensor:
        """The network's outputs for levels k [N, C, H, W] (input rescaled to [-1, 1])."""
        cond = one_hot(y, self.spec.num_classes, len(k), k.device) if y is not None else None
        return self.net(k.to(torch.get_default_dtype()) * (2 / (self.levels - 1)) - 1, cond)

    def nll(self, k: torch.Tensor, y=None) -> torch.Tensor:
        """-log p(k | y) in nats per example (y: long labels of a conditional model, else None)."""
        return autoregressive_nll(self.logits(k, y), k, self.output, self.levels)

    # -- the contract ---------------------------------------------------------------------------
    def loss(self, x, y=None):
        """Mean -log p(x | y) over the batch in nats (and bits/dim); binarize=true resamples
        x ~ Bernoulli(x) every time a batch is used."""
        y = self.condition(y, len(x))
        if self.conditional and y is None:
            raise ConfigError("this PixelCNN is conditional: pass the labels y")
        k = binarize(x).long() if self.binarize else self.quantize(x)
        nll = self.nll(k, y).mean()
        return {"loss": nll, "bpd": nll.detach() / (self.spec.dim * math.log(2))}

    @torch.no_grad()
    def log_prob(self, x, y=None):
        """Exact log p(k | y) in nats of the discrete image k = round(x (L-1)). A conditional model
        given no labels returns log p(x) = logsumexp_y log p(x | y) - log K (uniform class prior)."""
        k = self.quantize(x.to(self.device))
        y = self.condition(y, len(x))
        if self.conditional and y is None:
            K = self.spec.num_classes
            per_class = [-self.nll(k, torch.full((len(k),), c, device=k.device)) for c in range(K)]
            return torch.logsumexp(torch.stack(per_class), 0) - math.log(K)
        return -self.nll(k, y)

    def anomaly_score(self, x, y=None):
        """-log p(x) in nats (marginal over classes for a conditional model given no labels)."""
        return -self.log_prob(x, y)

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, temperature: float = 1.0):
        """Fill the pixels in raster order, x_i ~ p(x_i | x_<i, y), logits divided by `temperature`
        (logistic_mix: the mixture logits, and the logistic scales multiplied by it). One network pass
        per pixel, all n images at once; a conditional model given no y cycles through the classes."""
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        y = self.condition(y, n, sample=True)
        C, H, W = self.spec.shape
        k = torch.zeros(n, C, H, W, dtype=torch.long, device=self.device)
        for r in range(H):
            for c in range(W):
                out = self.logits(k, y)[:, :, :, r, c]  # [n, C, P]
                if self.output == "bernoulli":
                    p = torch.sigmoid(out[..., 0] / temperature)
                    k[:, :, r, c] = torch.bernoulli(p, generator=generator).long()
                elif self.output == "logistic_mix":
                    k[:, :, r, c] = self._sample_logistic_mix(out, temperature, generator)
                else:
                    probs = (out / temperature).softmax(-1).reshape(n * C, -1)
                    k[:, :, r, c] = torch.multinomial(probs, 1, generator=generator).reshape(n, C)
        return k.to(torch.get_default_dtype()) / (self.levels - 1)

    def _sample_logistic_mix(self, params, temperature, generator):
        """Levels [n, C] from mixture parameters [n, C, 3 n_mix]: a component m ~ softmax(logits / T),
        v = mu_m + T s_m log(u / (1 - u)), u ~ U(0, 1), rounded to the nearest level."""
        logit_pi, mu, log_s = params.chunk(3, -1)
        n, C, M = logit_pi.shape
        m = torch.multinomial((logit_pi / temperature).softmax(-1).reshape(n * C, M), 1, generator=generator)
        m = m.reshape(n, C, 1)
        mu, s = mu.gather(-1, m)[..., 0], log_s.clamp(min=-7.0).gather(-1, m)[..., 0].exp() * temperature
        u = torch.rand(mu.shape, generator=generator, device=mu.device).clamp(1e-5, 1 - 1e-5)
        v = mu + s * (u.log() - (-u).log1p())
        return ((v + 1) * (self.levels - 1) / 2).round().clamp(0, self.levels - 1).long()
