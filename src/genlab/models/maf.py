"""Masked autoregressive flow (Papamakarios et al. 2017), optionally with rational-quadratic
spline transforms (neural spline flow, Durkan et al. 2019).

Each layer is autoregressive in a fixed order: the parameters of the transform of x_i come
from a MADE network of x_<i (and the label, if conditional), so the Jacobian is triangular:

    affine:  z_i = (x_i - mu_i(x_<i)) exp(-alpha_i(x_<i)),     log|det| = -sum_i alpha_i
    spline:  z_i = g_i(x_i; theta(x_<i)),                       log|det| = sum_i log g_i'(x_i)

Layers alternate with permutations (reverse or random), and by the change of variables

    log p(x) = log N(f(x); 0, I) + sum_layers log|det J|,

one network pass for the density (exact); sampling inverts the layers one dimension at a time
(D passes per layer). MADE's activation defaults by data kind: ReLU for vectors, ELU for
images — over three seeds at equal CPU time ELU was 9 nats better on digits and 0.3 nats worse
on the checkerboard toy (bench/flows.py, docs/benchmarks.md). alpha is soft-clamped to
+-scale_bound = 6.9 (about log 1000, zuko's bound). The rest of the model is
`genlab.nn.flow_model.FlowModel`: images are dequantised, logit-transformed to v and flattened,

    log p(x) = log N(f(v); 0, I) + log|det df/dv| + log|det dv/dx|;

"exact" refers, as for `realnvp`, to the density of the dequantised image, whose bits/dim
bounds the discrete code length from above.
"""

from __future__ import annotations

from ..params import Int, Float, OneOf, Ints, Text, Bool
from ..errors import ConfigError
from ..nn.flow_model import FlowModel
from ..nn.flows import (ActNorm, Flatten, FlowSequence, MaskedAffineAutoregressive, MaskedSplineAutoregressive,
                        Permutation)
from .base import GenerativeModel, register_model

TRANSFORMS = ("affine", "spline")


@register_model("maf")
class MAF(FlowModel, GenerativeModel):
    description = "masked autoregressive flow (MADE), affine or rational-quadratic spline; exact log-likelihood"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"n_layers": Int(1), "hidden": Ints(1, min_len=1), "activation": Text(none=True),
                     "transform": Text(), "bins": Int(2), "tail_bound": Float(0, low_open=True),
                     "permutation": OneOf("reverse", "random"), "actnorm": Bool(), "scale_bound": Float(0, low_open=True),
                     "alpha": Float(0, 0.5, low_open=True, high_open=True), "conditional": Bool()}
    likelihood_kind = "exact"
    train_defaults = {"lr": 1e-3, "batch_size": 256, "grad_clip": 50.0}

    def __init__(self, spec, n_layers: int = 5, hidden: tuple = (128, 128), activation: str | None = None,
                 transform: str = "affine", bins: int = 8, tail_bound: float = 4.0, permutation: str = "reverse",
                 actnorm: bool = False, scale_bound: float = 6.9, alpha: float = 0.05, conditional: bool = False):
        super().__init__(spec)
        if transform not in TRANSFORMS:
            raise ConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, not {transform!r}")
        if permutation not in ("reverse", "random"):
            raise ConfigError(f"permutation must be reverse or random, not {permutation!r}")
        if n_layers < 1 or bins < 2 or tail_bound <= 0 or not hidden:
            raise ValueError("need n_layers >= 1, bins >= 2, tail_bound > 0 and at least one hidden layer")
        if not 0 < alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        self.alpha = alpha
        activation = activation or ("elu" if spec.kind == "image" else "relu")
        d, k = spec.dim, (spec.num_classes if conditional else 0)
        layers = [Flatten(spec.shape)] if spec.kind == "image" else []
        for i in range(n_layers):
            if i > 0:
                layers.append(Permutation(d, permutation))
            if actnorm:
                layers.append(ActNorm(d))
            if transform == "affine":
                layers.append(MaskedAffineAutoregressive(d, hidden, activation, k, scale_bound))
            else:
                layers.append(MaskedSplineAutoregressive(d, hidden, activation, k, bins, tail_bound))
        self.flow = FlowSequence(layers)
