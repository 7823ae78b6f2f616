"""The probability-flow ODE of a discrete-time diffusion model, solved with `samplers.ode`.

In the variance-exploding variables y = x / sqrt(abar) and sigma = sqrt((1 - abar) / abar)
the forward process is y = x_0 + sigma eps, and the probability-flow ODE is simply
(Song et al. 2021; Karras et al. 2022, eq. 4 with s = 1)

    dy / dsigma = eps_theta(x, t(sigma)),     x = y / sqrt(1 + sigma^2)

where t(sigma) interpolates the discrete schedule (log sigma_t linear between integer steps).
Starting from x_{T-1} ~ N(0, I) at sigma_max = sigma_{T-1}, the solver visits the noise levels
of the chosen timesteps (`schedule.timesteps`) down to sigma_min = sigma_{t_K}, then takes one
Euler step to sigma = 0, which returns x0_hat = y - sigma_min eps. With method="euler" this is
exactly deterministic DDIM (eta = 0) on the same steps. Network evaluations: euler K,
heun 2K - 1 (Karras' Heun: the final step is Euler), dopri5 adaptive (integrated in log sigma,
where the field is smooth; `steps` only sets the end point sigma_min).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .ode import integrate
from .schedule import NoiseSchedule


@torch.no_grad()
def sample_probability_flow(eps_fn: Callable, schedule: NoiseSchedule, x: torch.Tensor, method: str = "euler",
                            steps: Optional[int] = 50, spacing: str = "linspace", t_start: Optional[int] = None,
                            rtol: float = 1e-4, atol: float = 1e-4, clip: Optional[float] = None,
                            progress: bool = False, stats: Optional[dict] = None) -> torch.Tensor:
    """Solve the probability-flow ODE from x = x_{t_start} (noise when t_start is None) to x_0."""
    ts = schedule.timesteps(steps, spacing, t_start)
    sig = schedule.sigmas[ts].to(device=x.device, dtype=x.dtype)
    n = len(x)
    nfe = [0]

    def eps_at(s, y):
        nfe[0] += 1
        s = s.to(x.dtype)
        t = schedule.sigma_to_t(s.reshape(1)).to(x.device).expand(n)
        return eps_fn(y / torch.sqrt(1 + s * s), t)

    y = x * torch.sqrt(1 + sig[0] ** 2)
    if len(ts) > 1:
        if method == "dopri5":
            def f(u, yy):  # u = log sigma:  dy/du = sigma eps
                s = u.exp()
                return s * eps_at(s, yy)

            y = integrate(f, y, sig[0].log(), sig[-1].log(), method="dopri5", rtol=rtol, atol=atol,
                          progress=progress)
        else:
            y = integrate(eps_at, y, method=method, grid=sig, progress=progress)
    s = sig[-1]
    x0 = y - s * eps_at(s, y)
    if clip:
        x0 = x0.clamp(-clip, clip)
    if stats is not None:
        stats["nfe"] = nfe[0]
    return x0
