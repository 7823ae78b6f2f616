"""Conditional flow matching (Lipman et al. 2023; Tong et al. 2024) with the linear path of
rectified flow (Liu et al. 2023), minibatch optimal-transport coupling, and classifier-free
guidance (Ho & Salimans 2022).

    x0 ~ N(0, I) (noise),  x1 ~ data (working scale),  t ~ U[0, 1],  eps ~ N(0, I)
    x_t = (1 - t) x0 + t x1 + sigma eps,          u_t(x_t | x0, x1) = x1 - x0
    L_CFM(theta) = E_{t, x0, x1, eps} || v_theta(t, x_t) - (x1 - x0) ||^2

The minimiser is the marginal velocity v(t, x) = E[x1 - x0 | x_t = x], whose ODE
dx/dt = v(t, x) carries N(0, I) at t = 0 to the data at t = 1 (sigma = 0: rectified flow).
With ot=true the pairs (x0, x1) of each minibatch are coupled by optimal transport
(squared Euclidean cost; `ot_plan` / `ot_coupling` in nn/diffusion.py) instead of
independently, which straightens the paths: exact (POT's `ot.emd`) with ot_reg = 0, or entropic
(Sinkhorn, eps = ot_reg x the batch's mean cost; each image draws its noise from its row of the
plan) with ot_reg > 0, between exact OT and independent pairs (ot_reg -> infinity).
The network is the diffusion core's `Denoiser`; with conditional=true it takes the data's condition (class labels, or a tensor per example:
an image joins the UNet's input channels, a vector the MLP's input), dropped to the null
condition with probability p_uncond in training, and guidance w samples with
v_null + w (v_y - v_null).
With prediction="x" the network outputs the clean x1 and v_theta = (x1_theta - x_t) / (1 - t)
(1 - t clamped at 0.05; Li & He 2025), trained by the same loss on v.

Sampling integrates the ODE from t = 0 to 1 (samplers/ode.py: euler, heun, dopri5). `log_prob`
uses the instantaneous change of variables, integrated from the data (t = 1) back to noise:

    log p_1(x1) = log N(x(0); 0, I) - int_0^1 div v(t, x(t)) dt

with the exact divergence (autograd, D backward passes) for data of dimension <= exact_max and
Hutchinson's estimator E[eps^T (dv/dx) eps] otherwise. Images are modelled on [-1, 1] with
uniform dequantisation over `spec.levels` (y = (k + u) / levels; `to_working`), so log_prob is
the density of y on [0, 1)^D and bits/dim follows metrics/likelihood.py.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..params import Int, Float, Ints, Text, Bool, Either, Anything, OneOf
from ..errors import ConfigError, unknown_name
from ..nn.diffusion import Denoiser, check_ot, drop_condition, guided, ot_coupling, small_image_defaults
from ..nn.imputation import fill_missing, keep_known
from ..samplers import check_sampler
from ..samplers.ode import (ODE_METHODS, integrate, integrate_with_divergence, make_probes, time_grid)
from .base import GenerativeModel, register_model

LOG_2PI = math.log(2 * math.pi)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma: float = 0.0,
                eps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The linear probability path:  x_t = (1 - t) x0 + t x1 + sigma eps  (t broadcast per example)."""
    t = t.reshape(-1, *[1] * (x1.dim() - 1))
    xt = (1 - t) * x0 + t * x1
    if sigma > 0:
        xt = xt + sigma * (torch.randn_like(x1) if eps is None else eps)
    return xt


def cfm_loss(v_pred: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Conditional flow-matching loss per example, mean over dimensions:

        L_CFM = || v_theta(t, x_t) - (x1 - x0) ||^2 / D

    (the target x1 - x0 is the velocity of the straight path from x0 to x1)."""
    return (v_pred - (x1 - x0)).pow(2).flatten(1).mean(1)


TIME_SAMPLINGS = ("uniform", "logit-normal")
PREDICTIONS = ("v", "x")
X_PRED_MIN_GAP = 0.05  # 1 - t is clamped at this when x-prediction is turned into a velocity (JiT)


def sample_time(n: int, kind: str = "uniform", mean: float = 0.0, std: float = 1.0, device=None,
                dtype=None) -> torch.Tensor:
    """Training times on the path. "uniform": t ~ U[0, 1]. "logit-normal" (Esser et al. 2024, SD3):

        t = sigmoid(m + s n),   n ~ N(0, 1),

    which weights the middle of the path, where the velocity is hardest to predict, over its ends."""
    if kind == "uniform":
        return torch.rand(n, device=device, dtype=dtype)
    return torch.sigmoid(mean + std * torch.randn(n, device=device, dtype=dtype))


@register_model("fm")
class FlowMatching(GenerativeModel):
    description = ("flow matching / rectified flow: linear path (+ sigma), minibatch OT coupling, "
                   "guidance, ODE sampling (euler, heun, dopri5), log_prob by the change of variables")
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"sigma": Float(0), "ot": Bool(), "ot_reg": Float(0), "net": Anything("auto, unet, mlp or an nn.Module"), "base": Int(1), "mults": Ints(1, min_len=1),
                     "num_res_blocks": Int(1), "attention": Either(Bool(), Ints(1)),
                     "dropout": Float(0, 1, high_open=True), "hidden": Ints(1), "time_dim": Int(1),
                     "conditional": Bool(), "p_uncond": Float(0, 1, high_open=True),
                     "time_scale": Float(0, low_open=True), "dequantize": Bool(), "exact_max": Int(0),
                     "sampler": Text(), "sample_steps": Int(1), "time_sampling": OneOf("uniform", "logit-normal"),
                     "t_mean": Float(), "t_std": Float(0, low_open=True), "prediction": OneOf("v", "x")}
    train_defaults = {"lr": 1e-3, "batch_size": 128, "ema_decay": 0.999, "grad_clip": 1.0}
    min_train_steps = 200  # fm: 47 steps on digits give noise
    compare_weight = 2.0  # a UNet step on images: twice an MLP family's share of a comparison
    condition_kinds = ("class", "tensor")  # labels, or an image / vector per example (nn/diffusion.py)
    sample_ranges = {"sampler": OneOf(*ODE_METHODS, none=True), "steps": Int(1, none=True), "guidance": Float(0),
                     "rtol": Float(0, low_open=True), "atol": Float(0, low_open=True)}

    @classmethod
    def data_defaults(cls, spec, n_train=None):
        """Images of at most 16 x 16 pixels (the digits): a smaller UNet and batch 64
        (nn/diffusion.py SMALL_IMAGE_UNET, where its measurement is)."""
        return small_image_defaults(spec)

    def __init__(self, spec, sigma: float = 0.0, ot: bool = False, ot_reg: float = 0.0, net: str = "auto",
                 base: int = 32, mults: tuple = (1, 2, 2), num_res_blocks: int = 1, attention: bool = True,
                 dropout: float = 0.0, hidden: tuple = (256, 256, 256), time_dim: int = 64,
                 conditional: bool = False, p_uncond: float = 0.1, time_scale: float = 1000.0,
                 dequantize: bool = True, exact_max: int = 16, sampler: str = "heun", sample_steps: int = 25,
                 time_sampling: str = "uniform", t_mean: float = 0.0, t_std: float = 1.0,
                 prediction: str = "v"):
        super().__init__(spec)
        if prediction not in PREDICTIONS:
            raise unknown_name("prediction", prediction, PREDICTIONS)
        self.prediction = prediction
        if time_sampling not in TIME_SAMPLINGS:
            raise unknown_name("time_sampling", time_sampling, TIME_SAMPLINGS)
        if t_std <= 0:
            raise ValueError(f"t_std must be positive, got {t_std}")
        self.time_sampling, self.t_mean, self.t_std = time_sampling, float(t_mean), float(t_std)
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if not 0 <= p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
        self.ot_reg = check_ot(ot, ot_reg)
        check_sampler(sampler, ODE_METHODS)
        if sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {sample_steps}")
        self.sigma, self.ot, self.p_uncond, self.time_scale = float(sigma), bool(ot), float(p_uncond), float(time_scale)
        self.dequantize, self.exact_max = bool(dequantize), int(exact_max)
        self.default_sampler, self.default_steps = sampler, int(sample_steps)
        self.net = Denoiser(spec, net, "none" if not conditional else spec.condition_kind, base=base, mults=mults,
                            num_res_blocks=num_res_blocks, attention=attention, dropout=dropout, hidden=hidden,
                            time_dim=time_dim)

    # -- scales ---------------------------------------------------------------------------------
    @property
    def likelihood_kind(self) -> str:
        """"exact" where log_prob has no stochastic term (vectors of dimension <= exact_max: exact
        divergence; accurate to the ODE solver's tolerance), else "estimate" (Hutchinson's
        divergence and/or dequantisation noise: unbiased for the log-density of the dequantised
        data, whose expectation bounds the discrete log-likelihood from below)."""
        return "exact" if self.spec.kind == "vector" and self.spec.dim <= self.exact_max else "estimate"

    @property
    def _levels(self) -> Optional[int]:
        return self.spec.levels if self.spec.kind == "image" and self.spec.levels and self.dequantize else None

    def to_working(self, x: torch.Tensor, *, u: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Data -> working scale. Images: y = (k + u) / levels (u = 1/2 when not given; no
        dequantisation for continuous images), v = 2 y - 1 in [-1, 1]. Vectors: standardised."""
        if self.spec.kind != "image":
            return super().to_working(x)
        L = self._levels
        if L is None:
            return 2 * x - 1
        k = torch.round(x * (L - 1))
        y = (k + (0.5 if u is None else u)) / L
        return 2 * y - 1

    def from_working(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_working` with u = 1/2, clamped to [0, 1] for images."""
        if self.spec.kind != "image":
            return super().from_working(v)
        y = (v + 1) / 2
        L = self._levels
        x = y if L is None else (L * y - 0.5) / (L - 1)
        return x.clamp(0, 1)

    def velocity(self, t: torch.Tensor, x: torch.Tensor, y: Optional[torch.Tensor] = None,
                 guidance: float = 1.0) -> torch.Tensor:
        """v_theta(t, x | y) on the working scale; t a scalar or [N] in [0, 1]. With guidance w != 1
        (conditional models): v_null + w (v_y - v_null), both in one batched call (`guided`).
        y=None is the null condition."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(len(x)) if t.dim() == 0 else t
        if not self.conditional:
            return self._net_velocity(x, t)
        if y is None or guidance == 1.0 or (not y.is_floating_point() and (y == self.null_label).all()):
            return self._net_velocity(x, t, y)
        return guided(self._net_velocity, x, t, y, guidance, self.null_label)

    def _net_velocity(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The network's output as a velocity. prediction="v": the output is v. prediction="x" (Li & He
        2025, JiT): the output is the clean x1, and v = (x1_hat - x_t) / max(1 - t, 0.05)."""
        out = self.net(x, t * self.time_scale, y)
        if self.prediction == "v":
            return out
        gap = (1 - t).clamp_min(X_PRED_MIN_GAP).reshape(-1, *[1] * (x.dim() - 1))
        return (out - x) / gap

    # -- the contract -------------------------------------------------------------------------
    def loss(self, x, y=None):
        """The CFM objective  E || v_theta(t, x_t) - (x1 - x0) ||^2  (mean over dimensions) with
        x1 the (dequantised) data, x0 ~ N(0, I) (OT-coupled to x1 when ot=true), t ~ U[0, 1] or
        logit-normal (`time_sampling`, see `sample_time`)."""
        n = len(x)
        u = torch.rand_like(x) if self._levels is not None else None
        x1 = self.to_working(x, u=u)
        x0 = torch.randn_like(x1)
        if self.ot:
            x0 = x0[ot_coupling(x0, x1, self.ot_reg)]
        t = sample_time(n, self.time_sampling, self.t_mean, self.t_std, x1.device, x1.dtype)
        xt = interpolate(x0, x1, t, self.sigma)
        y = self.condition(y, n)  # None: the null condition
        if y is not None and self.training and self.p_uncond > 0:
            y = drop_condition(y, self.p_uncond, self.null_label)
        v = self._net_velocity(xt, t, y)
        return {"loss": cfm_loss(v, x0, x1).mean()}

    def _check_sampler(self, sampler, steps):
        sampler = check_sampler(sampler or self.default_sampler, ODE_METHODS)
        steps = self.default_steps if steps is None else int(steps)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        return sampler, steps

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None, *, sampler: Optional[str] = None, steps: Optional[int] = None,
               guidance: float = 1.0, rtol: float = 1e-5, atol: float = 1e-5, progress: bool = False,
               stats: Optional[dict] = None) -> torch.Tensor:
        """Integrate dx/dt = v(t, x) from noise z at t = 0 to t = 1; data space and scale."""
        sampler, steps = self._check_sampler(sampler, steps)
        y = self.condition(y, len(z), sample=True)
        z = z.to(self.device)
        x1 = integrate(lambda t, x: self.velocity(t, x, y, guidance), z, 0.0, 1.0, method=sampler, steps=steps,
                       rtol=rtol, atol=atol, progress=progress, stats=stats)
        return self.from_working(x1)

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, sampler: Optional[str] = None, steps: Optional[int] = None,
               guidance: float = 1.0, rtol: float = 1e-5, atol: float = 1e-5, progress: bool = False):
        """x0 ~ N(0, I), then the ODE from t = 0 to 1 with `sampler` (euler, heun, dopri5; default
        the model's `sampler` / `sample_steps` hyperparameters). Conditional models: labels y (default: a
        class cycle) or a tensor condition (required), with classifier-free guidance scale `guidance`
        (1 = plain conditional)."""
        z = torch.randn(n, *self.spec.shape, generator=generator, device=self.device)
        return self.decode(z, y, sampler=sampler, steps=steps, guidance=guidance, rtol=rtol, atol=atol,
                           progress=progress)

    @torch.no_grad()
    def encode(self, x, y=None, *, sampler: Optional[str] = None, steps: Optional[int] = None,
               rtol: float = 1e-5, atol: float = 1e-5) -> torch.Tensor:
        """The ODE run backwards, from data (t = 1) to noise (t = 0): the latent z with decode(z) ~ x.
        Images use the centre of each dequantisation bin."""
        sampler, steps = self._check_sampler(sampler, steps)
        y = None if y is None else self.condition(y, len(x), sample=True)
        v1 = self.to_working(x.to(self.device))
        return integrate(lambda t, u: self.velocity(t, u, y), v1, 1.0, 0.0, method=sampler, steps=steps,
                         rtol=rtol, atol=atol)

    @torch.no_grad()
    def log_prob(self, x, y=None, *, exact: Optional[bool] = None, hutchinson_samples: int = 1,
                 probe: str = "rademacher", sampler: str = "dopri5", steps: int = 100, rtol: float = 1e-5,
                 atol: float = 1e-5, generator: Optional[torch.Generator] = None, stats: Optional[dict] = None):
        """log p(x | y) in nats by the instantaneous change of variables (see module docstring),
        integrated from t = 1 to 0 with `sampler` (dopri5 by default; rtol, atol).

        exact=None uses the exact divergence for dimension <= exact_max, Hutchinson's estimator
        with `hutchinson_samples` probes (rademacher or gaussian, fixed for the whole solve)
        otherwise. Vectors: density of the data (standardisation's log-det included). Images:
        density of y = (k + u) / levels on [0, 1)^D with one uniform draw u per image (an
        unbiased estimate of E_u log p(y), which lower-bounds the discrete log P(k) after
        the D log(levels) shift of bits_per_dim). A conditional model given no condition scores
        with the null condition, i.e. its unconditional model of p(x) (trained by condition dropout).
        """
        sampler, steps = self._check_sampler(sampler, steps)
        if hutchinson_samples < 1:
            raise ConfigError(f"hutchinson_samples must be >= 1, got {hutchinson_samples}")
        x = x.to(self.device)
        D = self.spec.dim
        exact = D <= self.exact_max if exact is None else bool(exact)
        if self._levels is not None:
            u = torch.rand(x.shape, generator=generator, device=self.device)
            v1, log_det = self.to_working(x, u=u), D * math.log(2.0)
        elif self.spec.kind == "image":
            v1, log_det = self.to_working(x), D * math.log(2.0)
        else:
            v1, log_det = self.to_working(x), self.working_log_det(x)
        yy = None if y is None else self.condition(y, len(x), sample=True)
        probes = None if exact else make_probes(v1.shape, hutchinson_samples, probe, generator, self.device, v1.dtype)
        z, l0 = integrate_with_divergence(lambda t, u: self.velocity(t, u, yy), v1, 1.0, 0.0, method=sampler,
                                          steps=steps, rtol=rtol, atol=atol, probes=probes, stats=stats)
        # l0 = int_1^0 div v dt = -int_0^1 div v dt, so log p_1(v1) = log N(z) + l0
        log_pz = -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)
        return log_pz + l0 + log_det

    def anomaly_score(self, x, y=None, **options):
        """-log p(x | y) (Hutchinson with one probe above exact_max dimensions); `options` go to log_prob."""
        return -self.log_prob(x, y, **options)

    @torch.no_grad()
    def denoise(self, x, t_star: float, y=None, generator=None, *, sampler: Optional[str] = None,
                steps: Optional[int] = None, guidance: float = 1.0):
        """SDEdit for flow matching: go a fraction t_star in (0, 1] of the way back to noise along the
        path, x_s = (1 - s) z + s x1 with s = 1 - t_star and z ~ N(0, I), then integrate the ODE from s
        to 1 (with int(steps * t_star) steps, at least 1). Returns (noisy, clean) in data space;
        t_star = 1 is plain sampling. (ddpm's t_star is a step index; here it is a time in [0, 1].)"""
        sampler, steps = self._check_sampler(sampler, steps)
        t_star = float(t_star)
        if not 0 < t_star <= 1:
            raise ConfigError(f"t_star for 'fm' is a time in (0, 1], got {t_star}")
        x = x.to(self.device)
        yy = self.condition(y, len(x), sample=True)
        s = 1.0 - t_star
        z = torch.randn(x.shape, generator=generator, device=self.device)
        xs = interpolate(z, self.to_working(x), torch.full((len(x),), s, device=self.device))
        out = integrate(lambda t, u: self.velocity(t, u, yy, guidance), xs, s, 1.0, method=sampler,
                        steps=max(1, round(steps * t_star)))
        return self.from_working(xs), self.from_working(out)

    @torch.no_grad()
    def impute(self, x, mask, y=None, *, generator=None, sampler: str = "euler", steps: Optional[int] = None):
        """Fill the missing entries (mask: 1 = known) by guided integration (`inpaint`, the equation
        there); images and vectors alike. Known entries come back unchanged."""
        x = x.to(self.device)
        m = torch.as_tensor(mask, device=self.device).bool().expand_as(x)
        out = self.inpaint(fill_missing(x, m), m.to(x.dtype), y, generator, sampler=sampler, steps=steps)
        return keep_known(x, m, out)

    @torch.no_grad()
    def denoise_gaussian(self, x, sigma: float, y=None, *, generator=None, sampler: Optional[str] = None,
                         steps: Optional[int] = None):
        """Estimate the clean x from x~ = x + sigma eps (sigma on the data scale for images, the
        standardised scale for vectors). On the working scale (s = 2 sigma for images) the path
        x_t = (1 - t) z + t x1 rescaled by 1 / t is x1 + ((1 - t) / t) z, which matches x~ when

            (1 - t*) / t* = s,  t* = 1 / (1 + s),   x_t* = t* x~,

        and the ODE is integrated from t* to 1 (round(steps (1 - t*)) steps, at least 1)."""
        self.require_linear_scale()
        sampler, steps = self._check_sampler(sampler, steps)
        s = 2 * sigma if self.spec.kind == "image" else sigma
        t0 = 1.0 / (1.0 + s)
        yy = self.condition(y, len(x), sample=True)
        x = x.to(self.device)
        xs = t0 * (2 * x - 1 if self.spec.kind == "image" else self.to_working(x))  # unquantised noisy x
        out = integrate(lambda t, u: self.velocity(t, u, yy), xs, t0, 1.0, method=sampler,
                        steps=max(1, round(steps * (1 - t0))))
        return self.from_working(out)

    # -- inpainting ------------------------------------------------------------------------------
    @torch.no_grad()
    def inpaint(self, x, mask, y=None, generator=None, *, sampler: Optional[str] = None,
                steps: Optional[int] = None, guidance: float = 1.0):
        """Fill the unknown region (mask == 0) of x given the known one (mask == 1), data space.

        Guided by replacement along the conditional path: draw x0 ~ N(0, I) once; at every grid
        time t_k the known region of the state is set to its interpolant (1 - t_k) x0 + t_k x1
        (the point the straight path from that same x0 to the known pixels passes through), then
        one Euler or Heun step advances the whole state; at t = 1 the known pixels are exact.
        """
        sampler, steps = self._check_sampler(sampler, steps)
        if sampler == "dopri5":
            raise ConfigError("inpaint steps on a fixed grid: use sampler='euler' or 'heun'")
        x = x.to(self.device)
        mask = torch.as_tensor(mask, dtype=x.dtype, device=self.device).expand_as(x)
        yy = self.condition(y, len(x), sample=True)
        x1 = self.to_working(x)
        x0 = torch.randn(x.shape, generator=generator, device=self.device)
        state = x0.clone()
        ts = time_grid(0.0, 1.0, steps, self.device, x1.dtype)
        for i in range(steps):
            t = ts[i]
            state = mask * ((1 - t) * x0 + t * x1) + (1 - mask) * state
            state = integrate(lambda s, u: self.velocity(s, u, yy, guidance), state, method=sampler,
                              grid=ts[i:i + 2])
        state = mask * x1 + (1 - mask) * state
        return self.from_working(state)
