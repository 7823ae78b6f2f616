"""Ancestral sampling of a denoising diffusion model (Ho et al. 2020, Algorithm 2).

    x_T ~ N(0, I);   for t = T, ..., 1:   x_{t-1} = mu_theta(x_t, t) + sigma_t z,   z ~ N(0, I)  (z = 0 at t = 1)
    mu_theta(x_t, t) = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t))
                     = c0_t x0_hat + ct_t x_t       (the posterior mean at the predicted x_0)

variance="small":  sigma_t^2 = betatilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t  (the posterior's)
variance="large":  sigma_t^2 = beta_t
variance=m (a tensor [T]: the model's x_0 error per step, E||x_0 - x0_hat(x_t)||^2 / D, measured on data):
                   sigma_t^2 = betatilde_t + c0_t^2 m_t, the variance that fits the model's own error
                   (Bao et al. 2022; `DDPM.fit_variance`, where it is derived)
(Ho et al. found both give similar samples; they are the lower and upper bounds on the optimal
isotropic variance for data that is a point mass and N(0, I) respectively.)

With steps < T the chain visits a subsequence t_1 > ... > t_K and uses the respaced betas
beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}} (Nichol & Dhariwal 2021, section 4), so the same
formulas apply; steps = T is the original algorithm.

`eps_fn(x, t)` takes x and a float tensor [N] of steps and returns the noise prediction eps.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..errors import unknown_name
from .schedule import NoiseSchedule

VARIANCES = ("small", "large")


def predict(eps_fn: Callable, schedule: NoiseSchedule, x: torch.Tensor, t: int, clip: Optional[float] = None):
    """(eps, x0_hat) at integer step t; with `clip`, x0_hat is clamped to [-clip, clip] and eps
    recomputed from it so the two stay consistent (Ho et al.'s clip_denoised)."""
    tt = torch.full((len(x),), float(t), device=x.device)
    eps = eps_fn(x, tt)
    x0 = schedule.x0_from_eps(x, tt, eps)
    if clip:
        x0 = x0.clamp(-clip, clip)
        eps = schedule.eps_from_x0(x, tt, x0)
    return eps, x0


def _abar(schedule: NoiseSchedule, t: int) -> float:
    return float(schedule.alpha_bar[t]) if t >= 0 else 1.0


def _noise(x, generator):
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _check_variance(variance) -> None:
    if not isinstance(variance, torch.Tensor) and variance not in VARIANCES:
        raise unknown_name("DDPM variance", variance, VARIANCES)


def ddpm_step(eps_fn: Callable, schedule: NoiseSchedule, x: torch.Tensor, t: int, t_prev: int,
              variance="small", generator: Optional[torch.Generator] = None,
              clip: Optional[float] = None) -> torch.Tensor:
    """One ancestral step x_t -> x_{t_prev} (t_prev < t; t_prev = -1 returns the mean, i.e. x0_hat).
    `variance`: "small", "large" or the x_0 error per step m [T] (see the module docstring)."""
    _check_variance(variance)
    ab_t, ab_prev = _abar(schedule, t), _abar(schedule, t_prev)
    beta = 1 - ab_t / ab_prev
    eps, x0 = predict(eps_fn, schedule, x, t, clip)
    mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)) * x
    if t_prev < 0:
        return mean
    if isinstance(variance, torch.Tensor):
        c0 = math.sqrt(ab_prev) * beta / (1 - ab_t)
        var = beta * (1 - ab_prev) / (1 - ab_t) + c0 ** 2 * float(variance[t])
    else:
        var = beta * (1 - ab_prev) / (1 - ab_t) if variance == "small" else beta
    return mean + math.sqrt(var) * _noise(x, generator)


@torch.no_grad()
def sample_ddpm(eps_fn: Callable, schedule: NoiseSchedule, x: torch.Tensor, steps: Optional[int] = None,
                variance="small", spacing: str = "linspace", t_start: Optional[int] = None,
                generator: Optional[torch.Generator] = None, clip: Optional[float] = None,
                progress: bool = False) -> torch.Tensor:
    """Run the chain from x (= x_{t_start}, pure noise when t_start is None = T-1) to x_0.

    steps=None visits all t_start + 1 steps; fewer uses respaced betas (`schedule.timesteps`)."""
    _check_variance(variance)
    ts = schedule.timesteps(steps, spacing, t_start)
    it = range(len(ts))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="ddpm")
    for i in it:
        x = ddpm_step(eps_fn, schedule, x, ts[i], ts[i + 1] if i + 1 < len(ts) else -1, variance, generator, clip)
    return x
