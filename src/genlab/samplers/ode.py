"""ODE integrators for probability-flow and flow-matching samplers, and the log-density ODE.

    dx/dt = f(t, x),   x(t0) given,   solve for x(t1)          (t1 < t0 integrates backwards)

    euler    x_{k+1} = x_k + h f(t_k, x_k)                                  1 evaluation / step, order 1
    heun     x~ = x_k + h f(t_k, x_k)
             x_{k+1} = x_k + h/2 [f(t_k, x_k) + f(t_{k+1}, x~)]             2 evaluations / step, order 2
    dopri5   Dormand-Prince 5(4), adaptive step size (torchdiffeq), error per step <= atol + rtol |x|

The state may be one tensor or a tuple of tensors (an augmented state such as (x, log-det));
f returns the same structure. `t` is passed to f as a 0-dim float tensor.

Instantaneous change of variables (Chen et al. 2018, FFJORD: Grathwohl et al. 2019): along
dx/dt = v(t, x),

    d log p_t(x(t)) / dt = -div v(t, x(t)) = -tr(dv/dx)

`integrate_with_divergence` integrates the augmented state (x, l) with dl/dt = div v, so that
log p_{t1}(x(t1)) = log p_{t0}(x(t0)) - l(t1) with l(t0) = 0. The divergence is exact (autograd,
one backward pass per dimension: for small D) or Hutchinson's unbiased estimate

    tr(A) = E_eps[eps^T A eps],   E[eps eps^T] = I  (Rademacher or Gaussian eps)

with the probes eps drawn once per solve and held fixed along it (as FFJORD does), so the
integrand is a smooth function of t that an adaptive solver can integrate.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import ConfigError, unknown_name

State = Union[torch.Tensor, tuple]

ODE_METHODS = {
    "euler": "Euler's method for the probability-flow / flow-matching ODE (order 1, 1 evaluation per step)",
    "heun": "Heun's method (explicit trapezoid, order 2, 2 evaluations per step)",
    "dopri5": "adaptive Dormand-Prince 5(4) through torchdiffeq (rtol, atol; steps ignored)",
}


def _axpy(x: State, h, k: State) -> State:
    """x + h * k on a tensor or tuple state."""
    if isinstance(x, tuple):
        return tuple(a + h * b for a, b in zip(x, k))
    return x + h * k


def _mean2(a: State, b: State) -> State:
    if isinstance(a, tuple):
        return tuple(0.5 * (u + v) for u, v in zip(a, b))
    return 0.5 * (a + b)


def time_grid(t0: float, t1: float, steps: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """steps + 1 equally spaced times from t0 to t1 (both included)."""
    return torch.linspace(float(t0), float(t1), int(steps) + 1, device=device, dtype=dtype)


def _ref(x: State) -> torch.Tensor:
    return x[0] if isinstance(x, tuple) else x


def integrate(f: Callable, x: State, t0: float = 0.0, t1: float = 1.0, method: str = "euler", steps: int = 50,
              rtol: float = 1e-5, atol: float = 1e-5, progress: bool = False, grid: Optional[Sequence] = None,
              stats: Optional[dict] = None) -> State:
    """Solve dx/dt = f(t, x) from x(t0) = x to t1 and return x(t1).

    `method`: euler, heun (fixed grid of `steps` equal steps, or the explicit times `grid`,
    which then override t0, t1 and steps) or dopri5 (adaptive; `rtol`, `atol`). `stats`, if a
    dict, receives "nfe", the number of evaluations of f. Errors: ConfigError for an unknown
    method or steps < 1.
    """
    if method not in ODE_METHODS:
        raise unknown_name("ODE sampler", method, ODE_METHODS)
    ref = _ref(x)
    nfe = [0]

    def fc(t, s):
        nfe[0] += 1
        return f(t, s)

    if method == "dopri5":
        from torchdiffeq import odeint

        if rtol <= 0 or atol <= 0:
            raise ConfigError(f"rtol and atol must be positive (got rtol={rtol}, atol={atol})")
        ts = torch.tensor([float(t0), float(t1)] if grid is None else [float(grid[0]), float(grid[-1])],
                          device=ref.device, dtype=ref.dtype)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="dopri5", unit="nfe")

        def fb(t, s):
            if bar is not None:
                bar.update(1)
            return fc(t, s)

        try:
            out = odeint(fb, x, ts, rtol=rtol, atol=atol, method="dopri5")
        finally:
            if bar is not None:
                bar.close()
        result = tuple(o[-1] for o in out) if isinstance(x, tuple) else out[-1]
    else:
        if grid is not None:
            ts = (grid if isinstance(grid, torch.Tensor) else torch.tensor([float(g) for g in grid]))
            ts = ts.to(device=ref.device, dtype=ref.dtype)
            if ts.dim() != 1 or len(ts) < 2:
                raise ConfigError("grid must be a 1-D sequence of at least two times")
        else:
            if int(steps) < 1:
                raise ConfigError(f"steps must be >= 1, got {steps}")
            ts = time_grid(t0, t1, steps, ref.device, ref.dtype)
        it = range(len(ts) - 1)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=method)
        for i in it:
            t, t_next = ts[i], ts[i + 1]
            h = t_next - t
            k1 = fc(t, x)
            if method == "euler":
                x = _axpy(x, h, k1)
            else:  # heun
                k2 = fc(t_next, _axpy(x, h, k1))
                x = _axpy(x, h, _mean2(k1, k2))
        result = x
    if stats is not None:
        stats["nfe"] = nfe[0]
    return result


# -- divergence and the log-density ODE ------------------------------------------------------------
def divergence_exact(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """tr(dv/dx) per example by autograd, one backward pass per dimension (v computed from x
    with the graph kept). Cost D backward passes: for small D."""
    flat_v = v.flatten(1)
    div = torch.zeros(len(x), dtype=v.dtype, device=v.device)
    for i in range(flat_v.shape[1]):
        (g,) = torch.autograd.grad(flat_v[:, i].sum(), x, retain_graph=True)
        div = div + g.flatten(1)[:, i]
    return div


def divergence_hutchinson(v: torch.Tensor, x: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """Hutchinson's estimate of tr(dv/dx): mean over probes eps of eps^T (dv/dx) eps, one
    vector-Jacobian product per probe. `probes` has shape [K, *x.shape] with E[eps eps^T] = I."""
    est = torch.zeros(len(x), dtype=v.dtype, device=v.device)
    for k in range(len(probes)):
        (g,) = torch.autograd.grad(v, x, probes[k], retain_graph=True)
        est = est + (g * probes[k]).flatten(1).sum(1)
    return est / len(probes)


def make_probes(shape, k: int = 1, kind: str = "rademacher", generator=None, device=None,
                dtype=torch.float32) -> torch.Tensor:
    """k probe tensors of `shape` for Hutchinson's estimator: Rademacher (+-1) or Gaussian N(0, I)."""
    if kind == "rademacher":
        return torch.randint(0, 2, (k, *shape), generator=generator, device=device).to(dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn((k, *shape), generator=generator, device=device, dtype=dtype)
    raise unknown_name("Hutchinson probe", kind, ("rademacher", "gaussian"))


def integrate_with_divergence(v_fn: Callable, x: torch.Tensor, t0: float, t1: float, method: str = "dopri5",
                              steps: int = 50, rtol: float = 1e-5, atol: float = 1e-5,
                              probes: Optional[torch.Tensor] = None, progress: bool = False,
                              stats: Optional[dict] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the augmented state (x, l), dx/dt = v(t, x), dl/dt = div v(t, x), l(t0) = 0.

    Returns (x(t1), l(t1)); then log p_{t1}(x(t1)) = log p_{t0}(x(t0)) - l(t1). The divergence
    is exact when `probes` is None, else Hutchinson's estimate with those fixed probes.
    Works under torch.no_grad() (it turns gradients on for the Jacobian terms only).
    """

    def aug(t, state):
        xt = state[0].detach().requires_grad_(True)
        with torch.enable_grad():
            v = v_fn(t, xt)
            div = divergence_exact(v, xt) if probes is None else divergence_hutchinson(v, xt, probes)
        return v.detach(), div.detach()

    l0 = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    xt, lt = integrate(aug, (x, l0), t0, t1, method=method, steps=steps, rtol=rtol, atol=atol,
                       progress=progress, stats=stats)
    return xt, lt
