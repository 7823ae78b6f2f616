"""RealNVP (Dinh et al. 2017) with Glow's ActNorm and invertible 1x1 convolution (Kingma & Dhariwal 2018).

An invertible f built from affine couplings maps data to z ~ N(0, I); by the change of variables

    log p(x) = log N(f(x); 0, I) + sum_k log|det J_{f_k}|,

and each coupling z = m * x + (1 - m) * (x * exp(s(m * x)) + t(m * x)) has the triangular
Jacobian log|det| = sum (1 - m) * s, so the likelihood is exact and one pass; sampling is
x = f^-1(z), also one pass.

Vectors: `n_layers` x [ActNorm, mixing (LU linear map or a fixed permutation), coupling with
alternating masks, MLP conditioner].
Images (multi-scale): per scale, `n_checkerboard` checkerboard couplings, squeeze
(C x H x W -> 4C x H/2 x W/2), `steps_per_scale` x [ActNorm, invertible 1x1 conv (LU) or
permutation, channel-mask coupling with a conv conditioner], then half the channels are
factored out (all scales but the last). The rest of the model is `genlab.nn.flow_model.FlowModel`:
images are dequantised and logit-transformed to v first, every Jacobian term counted,

    log p(x) = log N(f(v); 0, I) + log|det df/dv| + log|det dv/dx|.

Hyperparameters: `n_layers`, `hidden` shape the vector flow; `channels`, `n_scales`,
`steps_per_scale`, `n_checkerboard`, `alpha` the image flow; `mixing`, `actnorm`,
`scale_bound` (the tanh bound on s), `activation`, `conditional` both. The MNIST
benchmark uses channels=64, n_checkerboard=2 (bench/flows.py).

Likelihood stamp "exact": for vectors `log_prob` is the exact log-density. For images it is the
exact log-density of the dequantised image y = (k + u)/L for the u drawn; averaged over u it
bounds the discrete log-likelihood from below (log P(k) >= E_u log p(y) - D log L), so
evaluate's bits/dim is an upper bound on the discrete code length, the quantity the RealNVP,
Glow and MAF papers report.
"""

from __future__ import annotations

from ..params import Int, Float, OneOf, Ints, Text, Bool
from ..errors import ConfigError
from ..nn.flow_model import FlowModel
from ..nn.flows import (ActNorm, AffineCoupling, ConvConditioner, FlowSequence, InvertibleLinearLU, MLPConditioner,
                        MultiScale, Permutation, Squeeze, alternating_mask, channel_mask, checkerboard_mask)
from .base import GenerativeModel, register_model

MIXINGS = ("lu", "reverse", "random", "none")


def _mixing(kind: str, features: int, image: bool):
    if kind == "lu":
        return [InvertibleLinearLU(features, image)]
    if kind in ("reverse", "random"):
        return [Permutation(features, kind, image)]
    return []


@register_model("realnvp")
class RealNVP(FlowModel, GenerativeModel):
    description = "RealNVP/Glow: affine couplings, ActNorm, LU 1x1 conv, multi-scale; exact log-likelihood"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"n_layers": Int(1), "hidden": Ints(1, min_len=1), "activation": Text(),
                     "mixing": OneOf("lu", "reverse", "random", "none"), "actnorm": Bool(),
                     "scale_bound": Float(0, low_open=True), "channels": Int(1), "n_scales": Int(1),
                     "steps_per_scale": Int(1), "n_checkerboard": Int(0),
                     "alpha": Float(0, 0.5, low_open=True, high_open=True), "conditional": Bool()}
    likelihood_kind = "exact"
    train_defaults = {"lr": 1e-3, "batch_size": 256, "grad_clip": 50.0}

    def __init__(self, spec, n_layers: int = 8, hidden: tuple = (128, 128), activation: str = "relu",
                 mixing: str = "lu", actnorm: bool = True, scale_bound: float = 3.0, channels: int = 32,
                 n_scales: int = 2, steps_per_scale: int = 4, n_checkerboard: int = 0, alpha: float = 0.05,
                 conditional: bool = False):
        super().__init__(spec)
        if mixing not in MIXINGS:
            raise ConfigError(f"mixing must be one of {', '.join(MIXINGS)}, not {mixing!r}")
        if not 0 < alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        if scale_bound <= 0:
            raise ValueError("scale_bound must be positive")
        self.alpha = alpha
        k = spec.num_classes if conditional else 0
        if spec.kind == "vector":
            d = spec.dim
            if n_layers < 1:
                raise ValueError("n_layers must be >= 1")
            layers = []
            for i in range(n_layers):
                layers += [ActNorm(d)] if actnorm else []
                layers += _mixing(mixing, d, False)
                mask = alternating_mask(d, i % 2)
                layers.append(AffineCoupling(mask, MLPConditioner(d, 2 * d, hidden, activation, k), scale_bound))
            self.flow = FlowSequence(layers)
            return
        c, h, w = spec.shape
        if n_scales < 1 or h % 2 ** n_scales or w % 2 ** n_scales:
            raise ValueError(f"n_scales={n_scales}: the image size {h}x{w} must be divisible by 2^n_scales")
        if steps_per_scale < 1 or n_checkerboard < 0:
            raise ValueError("steps_per_scale must be >= 1 and n_checkerboard >= 0")
        blocks = []
        for s in range(n_scales):
            layers = []
            for j in range(n_checkerboard):
                layers += [ActNorm(c, image=True)] if actnorm else []
                mask = checkerboard_mask(c, h, w, j % 2)
                layers.append(AffineCoupling(mask, ConvConditioner(c, 2 * c, channels, activation, k), scale_bound))
            layers.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
            for j in range(steps_per_scale):
                layers += [ActNorm(c, image=True)] if actnorm else []
                layers += _mixing(mixing, c, True)
                mask = channel_mask(c, j % 2)
                layers.append(AffineCoupling(mask, ConvConditioner(c, 2 * c, channels, activation, k), scale_bound))
            blocks.append(FlowSequence(layers))
            if s < n_scales - 1:
                c //= 2  # half the channels are factored out
        self.flow = MultiScale(spec.shape, blocks)

