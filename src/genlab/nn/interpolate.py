"""Paths between two latent codes: linear and spherical interpolation.

    lerp(a, b, t)  = (1 - t) a + t b
    slerp(a, b, t) = sin((1 - t) omega) / sin(omega) a + sin(t omega) / sin(omega) b,
                     cos(omega) = <a, b> / (|a| |b|)                       (Shoemake 1985)

A draw from N(0, I) in d dimensions has norm close to sqrt(d) (the Gaussian annulus). lerp cuts
through the middle of the ball: at t = 1/2 between two independent codes the norm is about
sqrt(d / 2), a point the prior almost never produces. slerp follows the great circle; for two
codes of the same norm every point of its path has that norm (in general, for unit directions,
the norm moves from |a| to |b| as the same formula applied to the norms would), so its codes
look like prior samples. Parallel codes (omega = 0) have no circle: slerp is lerp there. Nearly
opposite codes (omega -> pi) have no unique circle either, and codes of different norms then swing
wide (the weights grow like 1 / sin omega): common in a 2-D code, rare in many dimensions.

These work on rows: a and b are [..., d] (images flattened by the caller or not: the last
dimensions after the first are treated as one vector per example).
"""

from __future__ import annotations

import torch

#: below this angle (radians) slerp falls back to lerp, whose formula it tends to as omega -> 0
PARALLEL = 1e-4


def lerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """(1 - t) a + t b; t a float or a tensor broadcastable against a."""
    return (1 - t) * a + t * b


def _expand(t, a):
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    return t.reshape(-1, *[1] * (a.dim() - 1)) if t.dim() == 1 else t


def slerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (see the module docstring).

    a, b: [N, ...] (one code per row, any trailing shape; the angle is taken over all of a
    row's entries); t: a float, or a tensor [N] (one t per row). The norm along the path
    interpolates |a| and |b| as the great-circle arc does (constant when |a| = |b|)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    single = a.dim() == 1
    if single:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    fa, fb = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    cos = ((fa * fb).sum(1, keepdim=True) / (na * nb).clamp_min(1e-300)).clamp(-1, 1)
    omega = torch.arccos(cos)
    tt = torch.as_tensor(t, dtype=torch.float64, device=a.device)
    tt = tt.reshape(-1, 1) if tt.dim() == 1 else tt
    so = torch.sin(omega)
    par = omega < PARALLEL
    so_safe = torch.where(par, torch.ones_like(so), so)
    wa = torch.where(par, 1 - tt, torch.sin((1 - tt) * omega) / so_safe)
    wb = torch.where(par, tt + 0 * omega, torch.sin(tt * omega) / so_safe)
    out = (wa * fa + wb * fb).to(a.dtype).reshape(a.shape)
    return out[0] if single else out


def path(a: torch.Tensor, b: torch.Tensor, steps: int, kind: str = "slerp") -> torch.Tensor:
    """`steps` codes from a to b inclusive (t = 0, 1/(steps-1), ..., 1), [steps, ...] for single codes
    a, b of shape [...]: the interpolation a figure row shows."""
    from ..errors import unknown_name

    if kind not in ("slerp", "lerp"):
        raise unknown_name("interpolation", kind, ("slerp", "lerp"))
    ts = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)
    aa, bb = a.unsqueeze(0).expand(steps, *a.shape), b.unsqueeze(0).expand(steps, *b.shape)
    if kind == "lerp":
        return lerp(aa, bb, _expand(ts, aa))
    return slerp(aa, bb, ts)
