"""Negative log-likelihoods in nats, bits, and bits per dimension (bpd) of 8-bit data.

genlab images are x = k / 255 with k in {0, ..., 255}^D. A continuous density model (flow,
diffusion ODE, VAE with a Gaussian decoder, ...) is trained on uniformly dequantized data

    y = (k + u) / 256,   u ~ U[0, 1)^D,

a density p(y) on [0, 1)^D in which level k owns the bin [k/256, (k+1)/256) of volume 256^-D.
The discrete model it defines, P(k) = int_bin(k) p(y) dy, satisfies by Jensen

    -log P(k)  <=  E_u[-log p((k + u) / 256)] + D log 256

(Theis et al. 2016; Ho et al. 2019). The right side is the NLL of the density of k + u on
[0, 256)^D, p(z / 256) / 256^D, so

    bpd = (nll_y + D log 256) / (D log 2)     an upper bound on the discrete code length per dim.

`n_levels` = number of bins per unit of y (256 above). Use n_levels=None when the NLL is
already that of discrete values (a discretized-Gaussian decoder as in DDPM, a Bernoulli
likelihood of binary images) or of genuinely continuous vector data; bpd is then nll / (D log 2).

`scale_log_det` covers a model whose density lives on another scale v = f(y), e.g.
v = 2y - 1 in [-1, 1]: by change of variables log p_y(y) = log p_v(f(y)) + log|det df/dy|,
so nll_y = nll_v - scale_log_det with scale_log_det = log|det df/dy|: D log 2 for v = 2y - 1;
D log 256 for v = 256 y = k + u, which gives bpd = nll_v / (D log 2), as it should.
"""

from __future__ import annotations

import math

import torch

from .errors import MetricError

LOG2 = math.log(2.0)


def nats_to_bits(x):
    """x / log 2 (tensor or float)."""
    return x / LOG2


def bits_per_dim(nll_nats, dims: int, n_levels: int | None = 256, scale_log_det: float = 0.0):
    """Bits per dimension from a negative log-likelihood in nats (per example, float or tensor):

        bpd = (nll - scale_log_det + dims * log n_levels) / (dims * log 2)

    nll is over the model's scale; scale_log_det = log|det d(model scale)/dy| for y in [0, 1]
    (0 when the model works on [0, 1] data directly); n_levels=None for no discretisation
    term. See the module docstring. Returns the same kind as `nll_nats`.
    """
    if dims < 1:
        raise MetricError(f"bits_per_dim: dims must be >= 1, got {dims}")
    if n_levels is not None and n_levels < 1:
        raise MetricError(f"bits_per_dim: n_levels must be >= 1 or None, got {n_levels}")
    shift = dims * math.log(n_levels) if n_levels is not None else 0.0
    out = (nll_nats - scale_log_det + shift) / (dims * LOG2)
    return out if isinstance(out, torch.Tensor) else float(out)
