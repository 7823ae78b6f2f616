"""Iterative samplers, kept apart from the networks they drive (as diffusers keeps schedulers
apart from models) and chosen at sampling time by name:

    model.sample(n, sampler="ddim", steps=50)           genlab sample RUN --sampler ddim --steps 50

A family says which names it supports; `check_sampler` raises a ConfigError for any other.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch

from ..errors import ConfigError, unknown_name
from .ddim import ddim_invert, ddim_step, sample_ddim
from .ddpm import ddpm_step, predict, sample_ddpm
from .probability_flow import sample_probability_flow
from .schedule import NoiseSchedule, timesteps

#: every sampler name genlab knows, with a one-line description
SAMPLERS: dict[str, str] = {
    "ddpm": "ancestral sampling (Ho et al. 2020, Algorithm 2); variance small|large|fitted (ddpm); steps < T respaces the betas",
    "ddim": "DDIM (Song et al. 2021): eta=0 deterministic, eta=1 ancestral; any number of steps",
    "euler": "Euler's method on the probability-flow (ddpm) or flow-matching (fm) ODE",
    "heun": "Heun's second-order method on the same ODE (Karras et al. 2022)",
    "dopri5": "adaptive Dormand-Prince 5(4) on the same ODE, through torchdiffeq (rtol, atol)",
}

DIFFUSION_SAMPLERS = ("ddpm", "ddim", "euler", "heun", "dopri5")


def check_sampler(name: str, supported: Iterable[str]) -> str:
    """`name` if the family supports it; else a ConfigError naming the choices."""
    supported = tuple(supported)
    if name not in supported:
        if name in SAMPLERS:
            raise ConfigError(f"sampler '{name}' does not apply to this model (choose from: {', '.join(supported)})")
        raise unknown_name("sampler", name, supported)
    return name


def diffusion_sample(sampler: str, eps_fn: Callable, schedule: NoiseSchedule, x: torch.Tensor,
                     steps: Optional[int] = 50, eta: float = 0.0, variance: str = "small",
                     spacing: str = "linspace", t_start: Optional[int] = None,
                     generator: Optional[torch.Generator] = None, clip: Optional[float] = None,
                     rtol: float = 1e-4, atol: float = 1e-4, progress: bool = False) -> torch.Tensor:
    """Run diffusion sampler `sampler` from x = x_{t_start} (noise at T-1 by default) to x_0.

    `eps_fn(x, t)` returns the noise prediction for a float tensor of steps t [N]. `steps`
    is the number of visited timesteps (None: all of them)."""
    check_sampler(sampler, DIFFUSION_SAMPLERS)
    if steps is not None and int(steps) < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if sampler == "ddpm":
        return sample_ddpm(eps_fn, schedule, x, steps, variance, spacing, t_start, generator, clip, progress)
    if sampler == "ddim":
        return sample_ddim(eps_fn, schedule, x, steps, eta, spacing, t_start, generator, clip, progress)
    return sample_probability_flow(eps_fn, schedule, x, sampler, steps, spacing, t_start, rtol, atol, clip, progress)


__all__ = ["SAMPLERS", "DIFFUSION_SAMPLERS", "NoiseSchedule", "timesteps", "check_sampler", "diffusion_sample",
           "sample_ddpm", "sample_ddim", "ddim_invert", "sample_probability_flow", "ddpm_step", "ddim_step", "predict"]
