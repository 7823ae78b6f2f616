"""The noise schedule of a denoising diffusion model and the closed forms built on it
(Ho et al. 2020; Nichol & Dhariwal 2021).

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),     alpha_t = 1 - beta_t
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I),        abar_t = prod_{s<=t} alpha_s
    q(x_{t-1} | x_t, x_0) = N(c0_t x_0 + ct_t x_t, betatilde_t I)
        c0_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t),   ct_t = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)
        betatilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t

Timesteps are 0-based here: index t = 0..T-1 is the paper's step t + 1, and abar_{-1} = 1.

Schedules:
  linear  beta from 1e-4 to 0.02 in T = 1000 steps (Ho et al.); for another T both ends are
          scaled by 1000 / T so that abar_T stays near zero (Nichol & Dhariwal's rescaling).
  cosine  abar(t) = f(t) / f(0),  f(t) = cos^2(pi/2 (t/T + s) / (1 + s)),  s = 0.008,
          beta_t = 1 - abar(t+1) / abar(t) capped at 0.999 (Nichol & Dhariwal 2021).

Prediction targets, and their conversions (all exact, given x_t and t):
  eps  the noise:          x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
  x0   the clean data:     eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)
  v    sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022):
       x_0 = sqrt(abar) x_t - sqrt(1 - abar) v,   eps = sqrt(1 - abar) x_t + sqrt(abar) v
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import ConfigError, unknown_name

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "x0", "v")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    scale = 1000.0 / T
    return torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


class NoiseSchedule:
    """Betas and every derived quantity, as float64 vectors of length T (index = 0-based step).

    `at(a, t, x)` gathers a[t] for a batch of integer steps t and shapes it to broadcast
    against x (in x's dtype and device).
    """

    def __init__(self, kind: str = "linear", T: int = 1000):
        if kind not in SCHEDULES:
            raise unknown_name("noise schedule", kind, SCHEDULES)
        if int(T) < 2:
            raise ConfigError(f"the number of diffusion steps T must be >= 2, got {T}")
        self.kind, self.T = kind, int(T)
        b = linear_betas(self.T) if kind == "linear" else cosine_betas(self.T)
        if not bool(((b > 0) & (b < 1)).all()):
            raise ConfigError(f"T={T} gives betas outside (0, 1) for the {kind} schedule")
        self.betas = b
        self.alphas = 1 - b
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.sqrt_alpha_bar = self.alpha_bar.sqrt()
        self.sqrt_one_minus_alpha_bar = (1 - self.alpha_bar).sqrt()
        self.posterior_variance = b * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        # betatilde_0 = 0; the log is clipped to betatilde_1 there, as in Ho et al.'s code
        self.posterior_log_variance = torch.log(torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))
        self.posterior_mean_coef_x0 = self.alpha_bar_prev.sqrt() * b / (1 - self.alpha_bar)
        self.posterior_mean_coef_xt = self.alphas.sqrt() * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        #: noise level of the variance-exploding form x / sqrt(abar): sigma_t = sqrt((1 - abar_t) / abar_t)
        self.sigmas = ((1 - self.alpha_bar) / self.alpha_bar).sqrt()

    def __repr__(self):
        return f"NoiseSchedule({self.kind!r}, T={self.T})"

    @staticmethod
    def at(a: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """a[t] shaped to broadcast against x; a floating-point t between integer steps (ODE
        samplers) interpolates linearly, an integer-valued one gives a[t] exactly."""
        t = torch.as_tensor(t, device=a.device).reshape(-1)
        if t.is_floating_point():
            lo = t.floor().long().clamp(0, len(a) - 1)
            hi = (lo + 1).clamp(max=len(a) - 1)
            w = (t.double() - lo.double()).clamp(0, 1)
            v = ((1 - w) * a[lo] + w * a[hi]).to(device=x.device, dtype=x.dtype)
        else:
            v = a[t.long()].to(device=x.device, dtype=x.dtype)
        if len(v) == 1 and len(x) != 1:
            v = v.expand(len(x))
        return v.reshape(len(x), *([1] * (x.dim() - 1)))

    # -- the forward process --------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I): a draw from q(x_t | x_0)."""
        if noise is None:
            noise = torch.randn_like(x0)
        return self.at(self.sqrt_alpha_bar, t, x0) * x0 + self.at(self.sqrt_one_minus_alpha_bar, t, x0) * noise

    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One forward step x_t ~ q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)."""
        if noise is None:
            noise = torch.randn_like(x_prev)
        return self.at(self.alphas.sqrt(), t, x_prev) * x_prev + self.at(self.betas.sqrt(), t, x_prev) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean, variance and log-variance of q(x_{t-1} | x_t, x_0) (see the module docstring)."""
        mean = self.at(self.posterior_mean_coef_x0, t, xt) * x0 + self.at(self.posterior_mean_coef_xt, t, xt) * xt
        return mean, self.at(self.posterior_variance, t, xt), self.at(self.posterior_log_variance, t, xt)

    # -- conversions between prediction targets ----------------------------------------------------
    def x0_from_eps(self, xt, t, eps):
        return (xt - self.at(self.sqrt_one_minus_alpha_bar, t, xt) * eps) / self.at(self.sqrt_alpha_bar, t, xt)

    def eps_from_x0(self, xt, t, x0):
        return (xt - self.at(self.sqrt_alpha_bar, t, xt) * x0) / self.at(self.sqrt_one_minus_alpha_bar, t, xt)

    def v_target(self, x0, t, eps):
        """v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
        return self.at(self.sqrt_alpha_bar, t, x0) * eps - self.at(self.sqrt_one_minus_alpha_bar, t, x0) * x0

    def target(self, prediction: str, x0, t, eps):
        """What a network with this prediction type is trained to output."""
        if prediction == "eps":
            return eps
        if prediction == "x0":
            return x0
        if prediction == "v":
            return self.v_target(x0, t, eps)
        raise unknown_name("prediction", prediction, PREDICTIONS)

    def to_eps(self, prediction: str, out, xt, t):
        """The network output `out` of the given prediction type, as a noise prediction eps."""
        if prediction == "eps":
            return out
        if prediction == "x0":
            return self.eps_from_x0(xt, t, out)
        if prediction == "v":
            return self.at(self.sqrt_one_minus_alpha_bar, t, xt) * xt + self.at(self.sqrt_alpha_bar, t, xt) * out
        raise unknown_name("prediction", prediction, PREDICTIONS)

    def to_x0(self, prediction: str, out, xt, t):
        """The network output as a prediction of x_0."""
        return self.x0_from_eps(xt, t, self.to_eps(prediction, out, xt, t)) if prediction != "x0" else out

    # -- timesteps for samplers that skip steps ---------------------------------------------------
    def timesteps(self, steps: Optional[int] = None, spacing: str = "linspace",
                  t_start: Optional[int] = None) -> list[int]:
        """Decreasing 0-based steps a sampler visits (see `timesteps` in this module)."""
        return timesteps(self.T, steps, spacing, t_start)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional step t for a VE noise level sigma, interpolating log sigma_t linearly
        between integer steps (clamped to [0, T-1])."""
        log_s = self.sigmas.log().to(sigma.device)
        ls = torch.as_tensor(sigma, dtype=torch.float64, device=log_s.device).log().clamp(log_s[0], log_s[-1])
        i = torch.searchsorted(log_s, ls.reshape(-1)).clamp(1, self.T - 1)
        lo, hi = log_s[i - 1], log_s[i]
        w = (ls.reshape(-1) - lo) / (hi - lo)
        return (i - 1 + w).reshape(ls.shape).float()


SPACINGS = ("linspace", "leading", "trailing")


def timesteps(T: int, steps: Optional[int] = None, spacing: str = "linspace", t_start: Optional[int] = None) -> list[int]:
    """`steps` distinct 0-based steps in [0, t_start] (t_start = T-1 by default), decreasing.

    spacing (the names are diffusers'; Lin et al. 2024 discuss the choice):
      linspace  round(linspace(0, t_start, steps)): the first step is t_start (pure noise when
                t_start = T-1) and the last is 0. The default: it uses both ends of the schedule.
      leading   0, k, 2k, ... with k = (t_start+1) // steps (DDIM's original choice): ends at 0
                but never starts at T-1, so the sampler starts from noise that was never pure.
      trailing  t_start, t_start - k, t_start - 2k, ... (rounded), k = (t_start+1) / steps: starts at
                t_start, the last step is k - 1 (> 0 for few steps; the final jump to x_0 is longer).
    steps=None or steps = t_start + 1 visits every step, and then all three agree.
    """
    if spacing not in SPACINGS:
        raise unknown_name("timestep spacing", spacing, SPACINGS)
    top = T - 1 if t_start is None else int(t_start)
    if not 0 <= top <= T - 1:
        raise ConfigError(f"t_start must be in 0..{T - 1}, got {t_start}")
    n = top + 1
    if steps is None:
        steps = n
    steps = int(steps)
    if not 1 <= steps <= n:
        raise ConfigError(f"steps must be in 1..{n} (the diffusion steps available), got {steps}")
    if steps == 1:
        return [top]
    if spacing == "linspace":
        ts = torch.linspace(0, top, steps, dtype=torch.float64).round().long().tolist()
    elif spacing == "leading":
        k = n // steps
        ts = [i * k for i in range(steps)]
    else:
        k = n / steps
        ts = [int(round(n - i * k)) - 1 for i in range(steps)]
    return sorted(set(ts), reverse=True)
