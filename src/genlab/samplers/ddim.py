"""Denoising diffusion implicit models (Song, Meng & Ermon 2021): the same trained eps-network,
a non-Markovian reverse process that can skip steps.

    x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps_theta(x_t, t) + sigma z
    x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)
    sigma  = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})

for consecutive visited steps t > t' (abar_{-1} = 1 after the last one). eta = 0 is
deterministic (and is exactly Euler's method on the probability-flow ODE in the variables
x / sqrt(abar), sigma = sqrt((1 - abar) / abar)); eta = 1 over all T steps is ancestral DDPM
with the posterior ("small") variance. The visited steps and their spacing come from
`schedule.timesteps` (default "linspace": from T-1 down to 0 inclusive).

DDIM inversion (`ddim_invert`; Song et al. 2021 section 4.3, Dhariwal & Nichol 2021 appendix F)
runs the deterministic update the other way, from x_0 up to x_T, for consecutive visited steps
t < t'' (t = -1 is the data itself, abar_{-1} = 1):

    x_{t''} = sqrt(abar_{t''}) x0_hat(x_t) + sqrt(1 - abar_{t''}) eps_theta(x_t, t)

with eps evaluated at the point the step starts from (the first step, from x_0, evaluates it at
the first visited step). It is the explicit Euler step of the same probability-flow ODE in
reverse, so decoding its result with eta = 0 DDIM on the same steps returns x_0 up to the
discretisation error (eps changes little between neighbouring steps); with an exact eps-model of
Gaussian data the round trip is exact as the steps grow.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..errors import ConfigError
from .ddpm import _abar, _noise, predict
from .schedule import NoiseSchedule


def ddim_step(eps_fn: Callable, schedule: NoiseSchedule, x: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
              generator: Optional[torch.Generator] = None, clip: Optional[float] = None) -> torch.Tensor:
    """One DDIM update x_t -> x_{t_prev} (t_prev = -1: the final step to x_0)."""
    ab_t, ab_prev = _abar(schedule, t), _abar(schedule, t_prev)
    eps, x0 = predict(eps_fn, schedule, x, t, clip)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
    out = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        out = out + sigma * _noise(x, generator)
    return out


@torch.no_grad()
def sample_ddim(eps_fn: Callable, schedule: NoiseSchedule, x: torch.Tensor, steps: Optional[int] = 50,
                eta: float = 0.0, spacing: str = "linspace", t_start: Optional[int] = None,
                generator: Optional[torch.Generator] = None, clip: Optional[float] = None,
                progress: bool = False) -> torch.Tensor:
    """DDIM from x (= x_{t_start}; pure noise when t_start is None) to x_0 in `steps` network calls."""
    if not 0 <= eta <= 1 or not math.isfinite(eta):
        raise ConfigError(f"eta must be in [0, 1], got {eta}")
    ts = schedule.timesteps(steps, spacing, t_start)
    it = range(len(ts))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="ddim")
    for i in it:
        x = ddim_step(eps_fn, schedule, x, ts[i], ts[i + 1] if i + 1 < len(ts) else -1, eta, generator, clip)
    return x


@torch.no_grad()
def ddim_invert(eps_fn: Callable, schedule: NoiseSchedule, x0: torch.Tensor, steps: Optional[int] = 50,
                spacing: str = "linspace", clip: Optional[float] = None, progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM run backwards: x_0 -> x_{T-1} over the `steps` visited timesteps that
    `sample_ddim` would visit (see the module docstring), so that
    `sample_ddim(eps_fn, schedule, ddim_invert(eps_fn, schedule, x0, k), k, eta=0)` ~ x0."""
    ts = schedule.timesteps(steps, spacing)[::-1]  # increasing, ending at T-1
    chain = [-1] + list(ts)
    it = range(len(ts))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="ddim inversion")
    x = x0
    for i in it:
        t, t_next = chain[i], chain[i + 1]
        ab_next = _abar(schedule, t_next)
        eps, x0_hat = predict(eps_fn, schedule, x, max(t, ts[0]), clip)
        if t < 0:  # the first step starts from the data: x0_hat is x itself
            x0_hat = x
        x = math.sqrt(ab_next) * x0_hat + math.sqrt(1 - ab_next) * eps
    return x
