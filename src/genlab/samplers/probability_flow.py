"""The probability-flow ODE of a discrete-time diffusion model, solved with `samplers.ode`.

In the variance-exploding variables y = x / sqrt(abar) and sigma = sqrt((1 - abar) / abar)
the forward process is y = x_0 + sigma eps, and the probability-flow ODE is simply
(Song et al. 2021; Karras et al. 2022, eq. 4 with s = 1)

    dy / dsigma = eps_theta(x, t(sigma)),     x = y / sqrt(1 + sigma^2)

where t(sigma) interpolates the discrete schedule (log sigma_t linear between integer steps).
Written with the denoiser D = y - sigma eps_theta (= x0_hat), the field is (y - D) / sigma; with
`clip` D is clamped to [-clip, clip] at every evaluation, as DDIM and ancestral sampling clamp x0_hat
at every step (Ho et al.'s clip_denoised). The data lie in that box, so the clamp only removes error;
it matters at the top of the cosine schedule, where sigma_{T-1} ~ 2e4 and an unclamped first step
multiplies the network's error in eps by hundreds.
Starting from x_{T-1} ~ N(0, I) at sigma_max = sigma_{T-1}, the solver visits the noise levels
of the chosen timesteps (`schedule.timesteps`) down to sigma_min = sigma_{t_K}, then takes one
Euler step to sigma = 0, which returns x0_hat = D(y, sigma_min). With method="euler" this is
exactly deterministic DDIM (eta = 0) on the same steps, with or without clipping. Network
evaluations: euler K; heun 2K - 1 (Karras' Heun: the final step is Euler), one less for each step
it takes by Euler (below); dopri5 adaptive (integrated in log sigma, where the field is smooth;
`steps` only sets the end point sigma_min).

Heun's trapezoid weighs the slopes at both ends of a step equally, which is wrong by O(h * change of
slope) when one step spans decades of sigma: the cosine schedule's top level is sigma ~ 2e4, and the
first linspace step goes from there to ~15 (a 25% error in the sample spread for exactly known
Gaussian data). Karras et al. start their samplers for such models at sigma_max = 80; genlab keeps
the grid but takes every step that starts above HEUN_SIGMA_MAX = 80 as an Euler (DDIM) step, which is
exact while the denoiser is constant, as it is at those noise levels (one network evaluation less each).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .ode import integrate
from .schedule import NoiseSchedule

#: steps of `heun` that start above this noise level are Euler steps (Karras et al.'s sigma_max)
HEUN_SIGMA_MAX = 80.0


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

    def eps_at(s, y):  # eps_theta, or (y - D) / sigma with the clamped denoiser D
        nfe[0] += 1
        s = s.to(x.dtype)
        t = schedule.sigma_to_t(s.reshape(1)).to(x.device).expand(n)
        eps = eps_fn(y / torch.sqrt(1 + s * s), t)
        if clip:
            eps = (y - (y - s * eps).clamp(-clip, clip)) / s
        return eps

    y = x * torch.sqrt(1 + sig[0] ** 2)
    if len(ts) > 1:
        if method == "dopri5":
            def f(u, yy):  # u = log sigma:  dy/du = sigma eps
                s = u.exp()
                return s * eps_at(s, yy)

            y = integrate(f, y, sig[0].log(), sig[-1].log(), method="dopri5", rtol=rtol, atol=atol,
                          progress=progress)
        else:
            k = int((sig > HEUN_SIGMA_MAX).sum()) if method == "heun" else 0  # leading steps taken by Euler
            k = min(k, len(sig) - 1)
            if k:
                y = integrate(eps_at, y, method="euler", grid=sig[:k + 1])
            if k < len(sig) - 1:
                y = integrate(eps_at, y, method=method, grid=sig[k:], progress=progress)
    s = sig[-1]
    x0 = y - s * eps_at(s, y)
    if stats is not None:
        stats["nfe"] = nfe[0]
    return x0
