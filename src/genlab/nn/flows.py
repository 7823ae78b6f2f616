"""Normalizing-flow layers shared by the `realnvp` and `maf` families (the model they compose
into, with the change-of-variables log_prob, is `genlab.nn.flow_model.FlowModel`).

Convention: every layer maps data towards noise,

    forward(x, context) -> (z, log|det dz/dx|)      log|det| is [N], one value per example
    inverse(z, context) -> x

so that a stack f = f_K o ... o f_1 with base density p(z) gives, by the change of variables,

    log p(x) = log p(f(x)) + sum_k log|det J_{f_k}(x_{k-1})|.

Pieces: affine coupling with a bounded (soft-clamped) scale and vector / checkerboard / channel
masks (Dinh et al. 2017), ActNorm with data-dependent init and the invertible 1x1 convolution
with an LU-parameterised weight (Kingma & Dhariwal 2018), fixed permutations, squeeze, MADE
(Germain et al. 2015) and the masked autoregressive layer (Papamakarios et al. 2017), the
rational-quadratic spline (Durkan et al. 2019), and the image preprocessing (uniform
dequantization, logit transform) with its log-determinant.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .density import sum_except_batch
from .mlp import MLP, activation


def soft_clamp(s: torch.Tensor, bound: float) -> torch.Tensor:
    """bound * tanh(s / bound): ~s near 0, never beyond +-bound (keeps exp(s) finite)."""
    return bound * torch.tanh(s / bound) if bound else s


# -- image preprocessing ---------------------------------------------------------------------
def dequantize(x: torch.Tensor, levels: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """y = (k + u) / levels, u ~ U[0, 1)^D, for x = k / (levels - 1): a point of level k's bin in [0, 1)^D.

    The bin has volume levels^-D, so -log P(k) <= E_u[-log p(y)] + D log levels (see
    `genlab.nn.density.bits_per_dim`)."""
    k = torch.round(x * (levels - 1)).clamp_(0, levels - 1)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (k + u) / levels


def logit_transform(y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """v = logit(alpha + (1 - 2 alpha) y) and log|det dv/dy| = sum log(1 - 2 alpha) - log p - log(1 - p)."""
    p = alpha + (1 - 2 * alpha) * y
    v = torch.log(p) - torch.log1p(-p)
    log_det = sum_except_batch(math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p))
    return v, log_det


def inverse_logit_transform(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """y = (sigmoid(v) - alpha) / (1 - 2 alpha)."""
    return (torch.sigmoid(v) - alpha) / (1 - 2 * alpha)


# -- layers ----------------------------------------------------------------------------------
class FlowSequence(nn.Module):
    """Layers applied in order (forward) and in reverse order (inverse); log-dets add up."""

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, context=None):
        total = x.new_zeros(len(x))
        for layer in self.layers:
            x, ld = layer(x, context)
            total = total + ld
        return x, total

    def inverse(self, z, context=None):
        for layer in reversed(self.layers):
            z = layer.inverse(z, context)
        return z

    @torch.no_grad()
    def data_init(self, x, context=None):
        """Data-dependent initialisation (ActNorm) layer by layer on a batch; returns the output."""
        for layer in self.layers:
            if hasattr(layer, "data_init"):
                layer.data_init(x, context)
            x, _ = layer(x, context)
        return x


class ActNorm(nn.Module):
    """z = (x + b) * exp(s) per feature (vectors) or per channel (images; log-det times H*W).

    `data_init` sets b, s so that the first batch comes out with zero mean and unit variance."""

    def __init__(self, features: int, image: bool = False):
        super().__init__()
        self.image = image
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))

    def _view(self, t):
        return t.view(1, -1, 1, 1) if self.image else t.view(1, -1)

    @torch.no_grad()
    def data_init(self, x, context=None):
        dims = (0, 2, 3) if self.image else (0,)
        self.loc.copy_(-x.mean(dims))
        self.log_scale.copy_(-torch.log(x.std(dims) + 1e-6))

    def forward(self, x, context=None):
        z = (x + self._view(self.loc)) * self._view(self.log_scale.exp())
        pixels = x.shape[2] * x.shape[3] if self.image else 1
        return z, (self.log_scale.sum() * pixels).expand(len(x))

    def inverse(self, z, context=None):
        return z * self._view((-self.log_scale).exp()) - self._view(self.loc)


class InvertibleLinearLU(nn.Module):
    """z = W x per position (the invertible 1x1 convolution for images, a linear map for vectors),

        W = P L (U + diag(sign(s) exp(log|s|)))          log|det W| = sum log|s|

    with P a fixed permutation, L unit lower- and U strictly upper-triangular (Glow's LU form);
    initialised at a random rotation."""

    def __init__(self, features: int, image: bool = False):
        super().__init__()
        self.image = image
        w = torch.linalg.qr(torch.randn(features, features))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(features, features), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(len(self.log_s), device=self.log_s.device, dtype=self.log_s.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * self.log_s.exp())
        return self.perm @ lower @ upper

    def _apply_w(self, x, w):
        if self.image:
            return F.conv2d(x, w[:, :, None, None])
        return x @ w.T

    def forward(self, x, context=None):
        pixels = x.shape[2] * x.shape[3] if self.image else 1
        return self._apply_w(x, self.weight()), (self.log_s.sum() * pixels).expand(len(x))

    def inverse(self, z, context=None):
        return self._apply_w(z, torch.linalg.inv(self.weight()))


class Permutation(nn.Module):
    """A fixed permutation of features (vectors) or channels (images): "reverse" or "random"."""

    def __init__(self, features: int, kind: str = "reverse", image: bool = False):
        super().__init__()
        perm = torch.arange(features - 1, -1, -1) if kind == "reverse" else torch.randperm(features)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))
        self.reverse = kind == "reverse"  # a flip: cheaper than a gather, and its gradient is a flip too

    def forward(self, x, context=None):
        return (x.flip(1) if self.reverse else x[:, self.perm]), x.new_zeros(len(x))

    def inverse(self, z, context=None):
        return z.flip(1) if self.reverse else z[:, self.inv_perm]


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """C x H x W -> 4C x H/2 x W/2 (each 2x2 block of pixels becomes 4 channels); volume-preserving."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


class Squeeze(nn.Module):
    def forward(self, x, context=None):
        return squeeze(x), x.new_zeros(len(x))

    def inverse(self, z, context=None):
        return unsqueeze(z)


# -- coupling ------------------------------------------------------------------------------------
def alternating_mask(features: int, parity: int) -> torch.Tensor:
    """1 on features i with i % 2 == parity (vectors; for D = 2 this keeps one coordinate)."""
    return ((torch.arange(features) % 2) == parity).float()


def checkerboard_mask(channels: int, height: int, width: int, parity: int) -> torch.Tensor:
    """1 on pixels (i, j) with (i + j) % 2 == parity, for every channel: 1 x C x H x W."""
    ij = torch.arange(height)[:, None] + torch.arange(width)[None, :]
    return ((ij % 2) == parity).float().expand(channels, height, width).unsqueeze(0).clone()


def channel_mask(channels: int, parity: int) -> torch.Tensor:
    """1 on the first (parity 0) or second half of the channels: 1 x C x 1 x 1."""
    m = (torch.arange(channels) < channels // 2).float()
    return (m if parity == 0 else 1 - m).view(1, -1, 1, 1)


class MLPConditioner(nn.Module):
    """[x, context] -> MLP -> out (the last layer starts at zero: the coupling starts as the identity)."""

    def __init__(self, features: int, out_features: int, hidden: Sequence[int], act: str, context_dim: int = 0):
        super().__init__()
        self.net = MLP(features + context_dim, out_features, hidden, act)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x, context=None):
        return self.net(x if context is None else torch.cat([x, context], 1))


class ConvConditioner(nn.Module):
    """conv3x3 -> act -> conv1x1 -> act -> conv3x3 (zero init), a label embedding added after the
    first convolution when `context_dim` > 0."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, act: str, context_dim: int = 0):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.mid = nn.Conv2d(hidden, hidden, 1)
        self.out = nn.Conv2d(hidden, out_channels, 3, padding=1)
        self.act = activation(act)
        self.embed = nn.Linear(context_dim, hidden) if context_dim else None
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, context=None):
        h = self.inp(x)
        if self.embed is not None and context is not None:
            h = h + self.embed(context)[:, :, None, None]
        return self.out(self.act(self.mid(self.act(h))))


class AffineCoupling(nn.Module):
    """Affine coupling (RealNVP). With a binary mask m, (s, t) = net(m * x, context) and

        z = m * x + (1 - m) * (x * exp(s) + t),      log|det dz/dx| = sum (1 - m) * s

    s = bound * tanh(s_raw / bound) keeps the scale bounded. Inverse: x = m*z + (1-m)*(z - t) exp(-s)."""

    def __init__(self, mask: torch.Tensor, net: nn.Module, scale_bound: float = 3.0):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.scale_bound = scale_bound

    def _params(self, xa, context):
        s, t = self.net(xa, context).chunk(2, 1)
        free = 1 - self.mask
        return soft_clamp(s, self.scale_bound) * free, t * free

    def forward(self, x, context=None):
        s, t = self._params(x * self.mask, context)
        return x * s.exp() + t, sum_except_batch(s)

    def inverse(self, z, context=None):
        s, t = self._params(z * self.mask, context)
        return (z - t) * (-s).exp()


# -- MADE and autoregressive layers --------------------------------------------------------------
class MaskedLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015).

    Input i has degree i (1..D); hidden units get degrees cycling through 1..D-1 and connect to
    units of degree <= theirs; output d (with `params` values each) connects to hidden units of
    degree < d. So output d depends only on x_<d: the Jacobian of params w.r.t. x is strictly
    triangular. `context` (labels) feeds every first-layer hidden unit without a mask.
    Returns [N, D, params]. With `zero_init` the output layer starts at zero (the transform starts
    as the identity); otherwise it keeps PyTorch's default initialisation.
    """

    def __init__(self, features: int, params: int, hidden: Sequence[int] = (256, 256), act: str = "relu",
                 context_dim: int = 0, zero_init: bool = True):
        super().__init__()
        self.features, self.params = features, params
        deg_prev = torch.arange(1, features + 1)
        layers = []
        for h in hidden:
            deg = torch.arange(h) % max(1, features - 1) + 1
            layers.append(MaskedLinear(len(deg_prev), h, deg[:, None] >= deg_prev[None, :]))
            deg_prev = deg
        self.hidden = nn.ModuleList(layers)
        deg_out = torch.arange(1, features + 1).repeat(params)  # output p * D + d has degree d + 1
        self.out = MaskedLinear(len(deg_prev), params * features, deg_out[:, None] > deg_prev[None, :])
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.context = nn.Linear(context_dim, hidden[0]) if context_dim and hidden else None
        self.act = activation(act)

    def forward(self, x, context=None):
        return self.by_param(x, context).transpose(1, 2)

    def by_param(self, x, context=None) -> torch.Tensor:
        """The outputs as [N, params, D], each parameter's D values contiguous (forward transposes it)."""
        return self._out(x, context).view(len(x), self.params, self.features)

    def split(self, x, context=None) -> tuple[torch.Tensor, ...]:
        """The `params` outputs as separate contiguous [N, D] tensors (forward's [..., k] without
        the strided views, whose gradients cost a zero-filled copy each)."""
        return self._out(x, context).chunk(self.params, 1)

    def _out(self, x, context):
        h = x
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if i == 0 and self.context is not None and context is not None:
                h = h + self.context(context)
            h = self.act(h)
        return self.out(h)


class MaskedAffineAutoregressive(nn.Module):
    """MAF layer: (mu_i, alpha_i) = MADE(x_<i), z_i = (x_i - mu_i) exp(-alpha_i),

        log|det dz/dx| = -sum_i alpha_i

    one MADE pass for the density; the inverse x_i = z_i exp(alpha_i) + mu_i takes D passes.
    alpha is soft-clamped to +-scale_bound. The MADE starts from PyTorch's default initialisation,
    not from the identity: started at zero, affine MAFs diverged on sharp 2-D toys (one seed in
    three on 8gaussians with scale_bound 6.9; bench/flows.py, docs/benchmarks.md)."""

    def __init__(self, features: int, hidden=(256, 256), act: str = "relu", context_dim: int = 0,
                 scale_bound: float = 3.0):
        super().__init__()
        self.made = MADE(features, 2, hidden, act, context_dim, zero_init=False)
        self.scale_bound = scale_bound

    def _params(self, x, context):
        mu, alpha = self.made.split(x, context)
        return mu, soft_clamp(alpha, self.scale_bound)

    def forward(self, x, context=None):
        mu, alpha = self._params(x, context)
        return (x - mu) * (-alpha).exp(), -alpha.sum(1)

    def inverse(self, z, context=None):
        x = torch.zeros_like(z)
        for i in range(z.shape[1]):
            mu, alpha = self._params(x, context)
            x = x.clone()
            x[:, i] = z[:, i] * alpha[:, i].exp() + mu[:, i]
        return x


def rational_quadratic_spline(x, widths, heights, derivatives, bound: float = 4.0, inverse: bool = False,
                              min_width: float = 1e-3, min_height: float = 1e-3, min_derivative: float = 1e-3,
                              dim: int = -1):
    """Monotone rational-quadratic spline on [-B, B], identity outside (Durkan et al. 2019).

    K bins with knots (x^k, y^k) and derivatives d^k (d = 1 at +-B); inside bin k, with
    theta = (x - x^k) / w_k and s_k = h_k / w_k,

        g(x) = y^k + h_k [s_k theta^2 + d^k theta (1 - theta)] / [s_k + (d^{k+1} + d^k - 2 s_k) theta (1 - theta)]

    `widths`, `heights` (K) and `derivatives` (K - 1) are unconstrained and have x's shape with the
    bins inserted at `dim` (last by default; a MADE's outputs have them at dim 1, where the
    per-bin reductions run on contiguous rows: about 25x faster on CPU than a strided last dim).
    Zeros give equal bins and unit derivatives (the identity). Returns (g(x) or g^{-1}(x), log|g'|
    at the input).
    """
    dim = dim % widths.dim()
    k = widths.shape[dim]
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)

    def edge(like, value):
        return torch.full_like(like.narrow(dim, 0, 1), value)

    def knots(u, min_size):
        u = min_size + (1 - min_size * k) * F.softmax(u, dim)
        cum = 2 * bound * torch.cumsum(u, dim) - bound  # the right edges; the last is B up to rounding
        cum = torch.cat([edge(cum, -bound), cum.narrow(dim, 0, k - 1), edge(cum, bound)], dim)
        return cum, cum.narrow(dim, 1, k) - cum.narrow(dim, 0, k)

    cumw, w = knots(widths, min_width)
    cumh, h = knots(heights, min_height)
    one = math.log(math.expm1(1 - min_derivative))  # softplus(one) + min_derivative = 1
    inner = min_derivative + F.softplus(derivatives + one)
    d = torch.cat([edge(inner, 1.0), inner, edge(inner, 1.0)], dim)
    edges = cumh if inverse else cumw
    idx = (xc.unsqueeze(dim) >= edges.narrow(dim, 1, k - 1)).sum(dim, keepdim=True)

    def at(t, j=idx):
        return t.gather(dim, j).squeeze(dim)

    xk, wk, yk, hk = at(cumw), at(w), at(cumh), at(h)
    dk, dk1 = at(d), at(d, idx + 1)
    sk = hk / wk
    if inverse:
        dy = xc - yk
        a = hk * (sk - dk) + dy * (dk1 + dk - 2 * sk)
        b = hk * dk - dy * (dk1 + dk - 2 * sk)
        c = -sk * dy
        disc = (b.pow(2) - 4 * a * c).clamp_min(0)
        theta = (2 * c) / (-b - disc.sqrt())
        out = theta * wk + xk
    else:
        theta = (xc - xk) / wk
    tt = theta * (1 - theta)
    den = sk + (dk1 + dk - 2 * sk) * tt
    if not inverse:
        out = yk + hk * (sk * theta.pow(2) + dk * tt) / den
    dnum = sk.pow(2) * (dk1 * theta.pow(2) + 2 * sk * tt + dk * (1 - theta).pow(2))
    log_grad = torch.log(dnum) - 2 * torch.log(den)
    if inverse:
        log_grad = -log_grad
    return torch.where(inside, out, x), torch.where(inside, log_grad, torch.zeros_like(log_grad))


class MaskedSplineAutoregressive(nn.Module):
    """Neural spline flow layer (autoregressive): z_i = g_i(x_i), g_i a rational-quadratic spline with
    K bins whose 3K - 1 parameters come from MADE(x_<i); log|det| = sum_i log g_i'(x_i)."""

    def __init__(self, features: int, hidden=(256, 256), act: str = "relu", context_dim: int = 0,
                 bins: int = 8, bound: float = 4.0):
        super().__init__()
        self.bins, self.bound = bins, bound
        self.made = MADE(features, 3 * bins - 1, hidden, act, context_dim)

    def _spline(self, x, params, inverse):
        """params [N, 3K - 1, ...]: the bins at dim 1, as the MADE lays them out."""
        k = self.bins
        return rational_quadratic_spline(x, params[:, :k], params[:, k:2 * k], params[:, 2 * k:], self.bound,
                                         inverse, dim=1)

    def forward(self, x, context=None):
        z, lg = self._spline(x, self.made.by_param(x, context), False)
        return z, lg.sum(1)

    def inverse(self, z, context=None):
        x = torch.zeros_like(z)
        for i in range(z.shape[1]):
            xi, _ = self._spline(z[:, i], self.made.by_param(x, context)[:, :, i], True)
            x = x.clone()
            x[:, i] = xi
        return x


class Flatten(nn.Module):
    """Images [N, C, H, W] <-> vectors [N, C*H*W] (log-det 0)."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x, context=None):
        return x.reshape(len(x), -1), x.new_zeros(len(x))

    def inverse(self, z, context=None):
        return z.reshape(len(z), *self.shape)


class MultiScale(nn.Module):
    """Multi-scale architecture (RealNVP, Glow): blocks[i] runs at scale i, then half of its output
    channels are factored out as latent variables and the rest go on to the next scale.

    forward(x) -> (z, log|det|) with z the factored-out parts and the last block's output,
    flattened and concatenated ([N, D]); inverse(z) rebuilds x from that flat vector."""

    def __init__(self, shape: Sequence[int], blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        with torch.no_grad():  # the shapes of the factored-out parts, from a dummy pass
            _, self.shapes = self._run(torch.zeros(1, *shape), None, init=False, shapes=True)

    def _run(self, x, context, init: bool, shapes: bool = False):
        zs, total = [], x.new_zeros(len(x))
        for i, block in enumerate(self.blocks):
            if init:
                block.data_init(x, context)
            x, ld = block(x, context)
            total = total + ld
            if i < len(self.blocks) - 1:
                c = x.shape[1] // 2
                zs.append(x[:, :c])
                x = x[:, c:]
        zs.append(x)
        if shapes:
            return None, [tuple(z.shape[1:]) for z in zs]
        return torch.cat([z.reshape(len(z), -1) for z in zs], 1), total

    def forward(self, x, context=None):
        return self._run(x, context, init=False)

    @torch.no_grad()
    def data_init(self, x, context=None):
        return self._run(x, context, init=True)[0]

    def inverse(self, z, context=None):
        sizes = [math.prod(s) for s in self.shapes]
        parts = [p.reshape(len(z), *s) for p, s in zip(z.split(sizes, 1), self.shapes)]
        x = parts[-1]
        for i in range(len(self.blocks) - 1, -1, -1):
            if i < len(self.blocks) - 1:
                x = torch.cat([parts[i], x], 1)
            x = self.blocks[i].inverse(x, context)
        return x
