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

`log_prob` is the exact log-probability, in nats, of the discrete image k = round(x (L-1)):
bits/dim = nll / (D log 2), with no dequantisation term. Sampling fills the pixels in raster
order, one network pass per pixel for the whole batch.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from ..nn.embed import one_hot
from ..nn.pixelcnn import GatedPixelCNN
from .base import GenerativeModel, register_model


def autoregressive_nll(logits: torch.Tensor, k: torch.Tensor, output: str) -> torch.Tensor:
    """-log p(x) = -sum_i log p(x_i | x_<i) per example, from the causal network's outputs.

    logits [N, C, L, H, W] (categorical) or [N, C, 1, H, W] (bernoulli, the logit of 1);
    k [N, C, H, W] the level of every pixel.
    """
    if output == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits[:, :, 0], k.to(logits.dtype), reduction="none")
    else:
        nll = -logits.log_softmax(2).gather(2, k.unsqueeze(2)).squeeze(2)
    return nll.flatten(1).sum(1)


@register_model("pixelcnn")
class PixelCNN(GenerativeModel):
    description = "gated PixelCNN: autoregressive pixels (categorical or Bernoulli), no blind spot, conditional"
    kinds = ("image",)
    likelihood_kind = "exact"
    discrete_likelihood = True
    likelihood_support = "discrete"
    train_defaults = {"lr": 1e-3, "batch_size": 64, "grad_clip": 100.0}

    def __init__(self, spec, channels: int = 64, n_layers: int = 6, kernel_size: int = 3, first_kernel: int = 7,
                 levels: int | None = None, binarize: bool = False, output: str = "auto",
                 conditional: bool = False, dropout: float = 0.0):
        super().__init__(spec)
        if output not in ("auto", "categorical", "bernoulli"):
            raise ConfigError(f"output must be auto, categorical or bernoulli, not {output!r}")
        if binarize and (levels is not None or output == "categorical"):
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
        self.net = GatedPixelCNN(spec.shape[0], 1 if output == "bernoulli" else self.levels, channels, n_layers,
                                 kernel_size, first_kernel, spec.num_classes if conditional else 0, dropout)

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
        return autoregressive_nll(self.logits(k, y), k, self.output)

    # -- the contract ---------------------------------------------------------------------------
    def loss(self, x, y=None):
        """Mean -log p(x | y) over the batch in nats (and bits/dim); binarize=true resamples
        x ~ Bernoulli(x) every time a batch is used."""
        y = self.condition(y, len(x))
        if self.conditional and y is None:
            raise ConfigError("this PixelCNN is conditional: pass the labels y")
        k = torch.bernoulli(x).long() if self.binarize else self.quantize(x)
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
        """Fill the pixels in raster order, x_i ~ p(x_i | x_<i, y), logits divided by `temperature`.
        One network pass per pixel, all n images at once; a conditional model given no y cycles
        through the classes."""
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        y = self.condition(y, n, sample=True)
        C, H, W = self.spec.shape
        k = torch.zeros(n, C, H, W, dtype=torch.long, device=self.device)
        for r in range(H):
            for c in range(W):
                logits = self.logits(k, y)[:, :, :, r, c] / temperature  # [n, C, L or 1]
                if self.output == "bernoulli":
                    k[:, :, r, c] = torch.bernoulli(torch.sigmoid(logits[..., 0]), generator=generator).long()
                else:
                    probs = logits.softmax(-1).reshape(n * C, -1)
                    k[:, :, r, c] = torch.multinomial(probs, 1, generator=generator).reshape(n, C)
        return k.to(torch.get_default_dtype()) / (self.levels - 1)
