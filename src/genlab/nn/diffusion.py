"""The diffusion core: what denoising diffusion (models/ddpm.py) and flow matching (models/fm.py)
share, below the families.

    Denoiser          the network with its condition: denoiser(x, t, y) -> same shape as x
    drop_condition    condition dropout for classifier-free guidance (training)
    guided            the classifier-free guidance combination (sampling)
    ot_plan           the minibatch optimal-transport plan, exact or entropic (needs POT)
    ot_coupling       noise-data pairs drawn from it

A condition y is None, class labels (LongTensor [N] in 0..K, K the null label) or a tensor per
example ([N, *condition_shape]: an image, a vector, a mask). The "no condition" of classifier-free
guidance is the null label K for labels and zeros for a tensor condition (`null_condition`).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, unknown_name
from .timemlp import TimeMLP
from .unet import UNet


# -- classifier-free guidance ---------------------------------------------------------------------
def null_condition(y: torch.Tensor, null_label: int) -> torch.Tensor:
    """The "no condition" of the same type as y: the null label for labels, zeros for a tensor."""
    return torch.zeros_like(y) if y.is_floating_point() else torch.full_like(y, null_label)


def drop_condition(y: torch.Tensor, p: float, null_label: int) -> torch.Tensor:
    """Condition dropout (Ho & Salimans 2022): each example's condition becomes the null condition
    with probability p, so one network learns both out(x, t, y) and out(x, t, null):

        y'_i = null   if u_i < p,   u_i ~ U[0, 1)   (one draw per example)
        y'_i = y_i    otherwise
    """
    drop = torch.rand(len(y), device=y.device) < p
    y = y if y.is_floating_point() else y.long()
    return torch.where(drop.reshape(-1, *[1] * (y.dim() - 1)), null_condition(y, null_label), y)


def guided(fn: Callable, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: float,
           null_label: int) -> torch.Tensor:
    """Classifier-free guidance, both predictions in one batched call of fn(x, t, y):

        out = out(x, t, null) + w (out(x, t, y) - out(x, t, null))

    w = 1 is the plain conditional prediction, w = 0 the unconditional one; w > 1 trades
    diversity for fidelity to the condition."""
    n = len(x)
    out = fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null_condition(y, null_label)]))
    cond, null = out[:n], out[n:]
    return null + w * (cond - null)


# -- minibatch optimal transport -------------------------------------------------------------------
def ot_plan(x0: torch.Tensor, x1: torch.Tensor, reg: float = 0.0) -> torch.Tensor:
    """The minibatch transport plan between the noise batch x0 and the data batch x1, C_ji = ||x1_j - x0_i||^2:

        pi* = argmin_{pi in Pi(1/n, 1/m)} sum_ij pi_ji C_ji                    (reg = 0: exact, POT's ot.emd)
        pi* = argmin_{pi in Pi(1/n, 1/m)} sum_ij pi_ji C_ji - eps H(pi),  eps = reg * mean(C)
                                                                            (reg > 0: entropic, ot.sinkhorn)

    Returns pi* as a float64 [n data, m noise] tensor on the CPU. For equal uniform weights the exact plan
    is a permutation matrix / n (Birkhoff); the entropic one (Cuturi 2013) spreads each row, and
    reg -> infinity gives the independent coupling 1 / (n m)."""
    import numpy as np
    import ot

    cost = torch.cdist(x1.flatten(1).double(), x0.flatten(1).double()).pow(2).cpu().numpy()
    n, m = cost.shape
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    if reg == 0:
        return torch.from_numpy(ot.emd(a, b, cost))
    # a constant per row leaves the plan unchanged; less it, each row's kernel peaks at 1 (no underflow)
    cost = cost / cost.mean()
    cost = cost - cost.min(1, keepdims=True)
    options = dict(numItermax=1000, stopThr=1e-6, warn=False)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        plan = ot.sinkhorn(a, b, cost, reg, **options)
    if not np.isfinite(plan).all():  # a column underflowed (tiny reg): the log-domain iteration, slower
        plan = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", **options)
    return torch.from_numpy(plan)


def ot_coupling(x0: torch.Tensor, x1: torch.Tensor, reg: float = 0.0) -> torch.Tensor:
    """Minibatch optimal-transport pairs of noise and data (the plan `ot_plan`): returns `idx` such that
    (x0[idx[j]], x1[j]) are the coupled pairs. reg = 0: the exact plan's permutation. reg > 0: each data
    point j draws its partner from the plan's row, pi*(i | j) = n pi*_ji, so every image is used once and
    each noise draw once in expectation."""
    plan = ot_plan(x0, x1, reg)
    idx = plan.argmax(1) if reg == 0 else torch.multinomial(plan.clamp_min(0).float(), 1).squeeze(1)
    return idx.to(x0.device)


def _has_pot() -> bool:
    return importlib.util.find_spec("ot") is not None


def require_pot() -> None:
    """`ot=true` needs POT; a missing package is a configuration error."""
    if not _has_pot():
        raise ConfigError("ot=true needs the POT package for exact minibatch optimal transport: pip install pot")


def check_ot(ot: bool, ot_reg: float) -> float:
    """The `ot` / `ot_reg` hyperparameters of ddpm and fm: POT present when ot=true; ot_reg >= 0 (0: the
    exact plan, > 0: the entropic one, `ot_plan`), and only with ot=true. Returns ot_reg."""
    if ot:
        require_pot()
    if ot_reg < 0:
        raise ConfigError(f"ot_reg must be >= 0 (0: exact optimal transport), got {ot_reg}")
    if ot_reg > 0 and not ot:
        raise ConfigError("ot_reg (the entropic coupling's strength) needs ot=true")
    return float(ot_reg)


# -- the network with its condition ----------------------------------------------------------------
def _unet(spec, num_classes, cond_size, *, base, mults, num_res_blocks, attention, dropout, **_):
    c, h, w = spec.shape
    return UNet(c, max(h, w), base, tuple(mults), num_res_blocks, attention, num_classes, dropout,
                cond_channels=cond_size)


def _mlp(spec, num_classes, cond_size, *, hidden, time_dim, **_):
    return TimeMLP(spec.dim, tuple(hidden), time_dim, num_classes, cond_dim=cond_size)


#: the UNet for small images (DataSpec.small_image: at most 16 pixels a side, e.g. the 8 x 8 digits):
#: two resolutions, 16 base channels, no attention, batch 64. On digits at 0.5 and 1.5 CPU-minutes (one
#: thread, 2026-12-02) it makes 3x the steps of the (32; 1, 2, 2; attention) UNet and reaches a lower
#: FD: ddpm 5.42 vs 10.81 and 3.02 vs 5.40, fm 4.57 vs 7.59 at 0.5; sampling is 3x cheaper
#: (bench/small_images.py --family ddpm|fm --minutes 0.5|1.5 --batch-size 64).
SMALL_IMAGE_UNET = {"base": 16, "mults": (1, 2), "attention": False, "batch_size": 64}


def small_image_defaults(spec) -> dict:
    """A diffusion family's data-aware defaults: SMALL_IMAGE_UNET for small images, nothing otherwise
    (vectors, or larger images)."""
    return dict(SMALL_IMAGE_UNET) if spec.small_image else {}


#: networks a Denoiser can build by name: builder(spec, num_classes, condition size, **options)
NETWORKS = {"unet": _unet, "mlp": _mlp}


class Denoiser(nn.Module):
    """Any time-conditioned network, given its condition:  denoiser(x, t, y) -> shape of x.

    `net` is a registered name ("unet", "mlp"; "auto": unet for images, mlp for vectors) or an
    nn.Module called as module(input, t, labels). `condition` is "none", "class" or "tensor":

        none    y is ignored
        class   labels go to the network's label embedding (K + 1 rows, row K the null label);
                y = None is the null label
        tensor  the condition joins the input (y = None: zeros, the null condition):
                image data: x' = concat_channels(x, c), so the UNet takes C + C_cond channels
                (SR3, Saharia et al. 2021); a condition image of another size is resized
                bilinearly to H x W (super-resolution). An MLP (and vector data) takes the
                flattened x' = concat(x, c).

    The wrapped network is `self.net`. The time t is passed on unchanged (families choose its scale).
    """

    def __init__(self, spec, net: Union[str, nn.Module] = "auto", condition: str = "none", *,
                 base: int = 32, mults: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1,
                 attention: Union[bool, Sequence[int]] = True, dropout: float = 0.0,
                 hidden: Sequence[int] = (256, 256, 256), time_dim: int = 64):
        super().__init__()
        if condition not in ("none", "class", "tensor"):
            raise unknown_name("condition", condition, ("none", "class", "tensor"))
        self.condition, self.shape = condition, tuple(spec.shape)
        self.condition_shape = tuple(spec.condition_shape) if condition == "tensor" else None
        if isinstance(net, nn.Module):
            self.kind, self.net = "module", net
        else:
            kind = ("unet" if spec.kind == "image" else "mlp") if net == "auto" else net
            if kind not in NETWORKS:
                raise unknown_name("net", net, ("auto", *NETWORKS))
            if kind == "unet" and spec.kind != "image":
                raise ConfigError("net='unet' needs image data (use net='mlp' for vectors)")
            self.kind = kind
            num_classes = spec.num_classes if condition == "class" else 0
            self.net = NETWORKS[kind](spec, num_classes, self._condition_size(spec), base=base, mults=mults,
                                      num_res_blocks=num_res_blocks, attention=attention, dropout=dropout,
                                      hidden=hidden, time_dim=time_dim)
        self.flat = self.kind == "mlp" or spec.kind != "image"  # the input is one vector per example
        self._register_load_state_dict_pre_hook(_unwrapped_keys)

    def _condition_size(self, spec) -> int:
        """Extra input the condition adds: channels for the UNet, numbers for the MLP."""
        if self.condition_shape is None:
            return 0
        if self.kind == "mlp":
            return math.prod(self.condition_shape)
        if len(self.condition_shape) != 3:
            raise ConfigError(f"the UNet takes image conditions (C x H x W); for a condition of shape "
                              f"{self.condition_shape} use net='mlp'")
        return self.condition_shape[0]

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        labels = y if self.condition == "class" else None
        inp = x.flatten(1) if self.flat else x
        if self.condition == "tensor":
            c = torch.zeros(len(x), *self.condition_shape, device=x.device, dtype=x.dtype) if y is None else y
            c = c.to(x.dtype)
            if self.flat:
                c = c.flatten(1)
            elif c.dim() == 4 and c.shape[-2:] != x.shape[-2:]:
                c = F.interpolate(c, size=x.shape[-2:], mode="bilinear", align_corners=False)
            inp = torch.cat([inp, c], 1)
        return self.net(inp, t, labels).reshape(x.shape)


def _unwrapped_keys(state_dict, prefix, *_):
    """Runs saved before the Denoiser held the network as `net` directly under the family's `net`
    (keys `net.conv_in.weight`, now `net.net.conv_in.weight`): load them under the new names."""
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "net.")]:
        state_dict[prefix + "net." + key[len(prefix):]] = state_dict.pop(key)
