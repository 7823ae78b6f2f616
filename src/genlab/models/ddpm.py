"""Denoising diffusion probabilistic models (Ho et al. 2020), with the cosine schedule and the
hybrid bound's pieces of Nichol & Dhariwal (2021), v-prediction (Salimans & Ho 2022) and
classifier-free guidance (Ho & Salimans 2022).

    forward   q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)           (samplers/schedule.py)
    reverse   p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I),  mu_theta from eps_theta
    training  `simple_loss`: E_{t, x_0, eps} || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2
    sampling  any sampler of `genlab.samplers` (ddpm ancestral, ddim, euler, heun, dopri5)
    log_prob  the variational bound L_0 + sum_t L_{t-1} + L_T (`variational_bound`)
    encode    deterministic DDIM inversion x_0 -> x_T (samplers/ddim.py `ddim_invert`, eta = 0);
    decode    DDIM with eta = 0 from x_T: decode(encode(x)) ~ x, a latent path for interpolation

Images are modelled on [-1, 1] (`to_working`: x -> 2x - 1) and samples are clamped and mapped
back to [0, 1]; vectors on the standardised scale of the base class. The network is the diffusion
core's `Denoiser` (nn/diffusion.py): a UNet for images, a time-conditioned MLP for vectors (latent
diffusion is this family on vector codes). With conditional=true the model is conditioned on the
data's condition: class labels (an embedding) or a tensor per example (an image joins the UNet's
input channels, SR3-style; a vector joins the MLP's input). The condition is dropped to the null
condition (null label / zeros) with probability p_uncond during training, so one network gives
both eps(x, t, y) and eps(x, t); sampling with guidance w uses

    eps_hat = eps(x, t) + w (eps(x, t, y) - eps(x, t))        (w = 1: plain conditional; w = 0: unconditional)

With ot=true each training batch's noise is assigned to its images by minibatch optimal
transport (squared Euclidean cost; `ot_coupling`, needs POT; exact, or entropic with ot_reg > 0
as in fm) before q_sample, "immiscible diffusion" (Li et al. 2024): every image is noised towards a
nearby noise draw, so the network's regression targets are less ambiguous. The noise is still N(0, I) marginally; sampling is unchanged.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

from ..params import Int, Float, Ints, OneOf, Bool, Either, Anything
from ..errors import ConfigError
from ..nn.diffusion import Denoiser, check_ot, drop_condition, guided, ot_coupling, small_image_defaults
from ..nn.imputation import fill_missing, keep_known
from ..samplers import DIFFUSION_SAMPLERS, NoiseSchedule, check_sampler, diffusion_sample
from ..samplers.ddim import ddim_invert
from ..samplers.ddpm import ddpm_step
from ..samplers.schedule import PREDICTIONS, SPACINGS
from .base import GenerativeModel, register_model

LOG_2PI = math.log(2 * math.pi)
#: the variances of p_theta(x_{t-1} | x_t) the bound can use (`DDPM.variational_bound`)
BOUND_VARIANCES = ("fitted", "large", "small")


def simple_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The simple objective of Ho et al. (Algorithm 1), the mean over pixels and batch of

        L_simple = E_{t ~ U{1..T}, x_0, eps ~ N(0, I)} || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2

    (the bound's L_{t-1} terms with their weights dropped). For prediction="x0" or "v" the
    target is x_0 or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 instead of eps."""
    return F.mse_loss(pred, target)


def min_snr_loss(pred, target, alpha_bar, prediction: str, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weighting (Hang et al. 2023): the x_0-space error weighted by min(SNR_t, gamma),
    SNR_t = abar_t / (1 - abar_t). Since ||eps - eps_hat||^2 = SNR ||x_0 - x0_hat||^2 and the v error
    is (SNR + 1) times the x_0 error, the weight on the chosen target's squared error is

        eps: min(SNR, gamma) / SNR,     v: min(SNR, gamma) / (SNR + 1),     x0: min(SNR, gamma)

    It stops the many low-noise steps from dominating the gradient; the simple loss is the
    unweighted eps case."""
    snr = alpha_bar / (1 - alpha_bar)
    w = snr.clamp(max=gamma)
    w = w / snr if prediction == "eps" else w / (snr + 1) if prediction == "v" else w
    per = (pred - target).pow(2)
    return (w * per).mean()


def gaussian_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element
    = 1/2 (logvar2 - logvar1 + e^(logvar1 - logvar2) + (mean1 - mean2)^2 e^-logvar2 - 1)."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2).pow(2) * torch.exp(-logvar2) - 1)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor,
                                        levels: int) -> torch.Tensor:
    """log P(x) per element for x on the grid of `levels` values in [-1, 1] under a Gaussian
    discretised into bins of half-width 1 / (levels - 1), the end bins extended to -inf / +inf
    (Ho et al.'s decoder L_0):

        P(x) = Phi((x + h - mean) / std) - Phi((x - h - mean) / std),   h = 1 / (levels - 1)
    """
    h = 1.0 / (levels - 1)
    inv = torch.exp(-log_std)
    upper = torch.special.ndtr((x + h - mean) * inv)
    lower = torch.special.ndtr((x - h - mean) * inv)
    upper = torch.where(x > 1 - 1e-3, torch.ones_like(upper), upper)
    lower = torch.where(x < -1 + 1e-3, torch.zeros_like(lower), lower)
    # log of a difference of CDFs, with the log-density at the bin centre times its width as
    # a floor where the difference underflows in float32
    centre = -0.5 * ((x - mean) * inv).pow(2) - log_std - 0.5 * LOG_2PI + math.log(2 * h)
    return torch.where(upper - lower > 1e-12, torch.log((upper - lower).clamp_min(1e-12)), centre)


def repaint_path(K: int, jump: int = 1, resample: int = 1) -> list[int]:
    """RePaint's schedule over positions 0..K of K visited steps (0 = noisiest, K = x_0): go down
    one position at a time; after every `jump` positions go back up `jump`, `resample - 1`
    times per position, then continue. resample=1 is the plain chain 0, 1, ..., K."""
    path, i, done = [0], 0, {}
    while i < K:
        i += 1
        path.append(i)
        if resample > 1 and i < K and i % jump == 0 and done.get(i, 0) < resample - 1:
            done[i] = done.get(i, 0) + 1
            for _ in range(min(jump, i)):
                i -= 1
                path.append(i)
    return path


@register_model("ddpm")
class DDPM(GenerativeModel):
    description = "denoising diffusion: linear/cosine schedule, eps/x0/v targets, DDPM/DDIM/ODE samplers, CFG"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"schedule": OneOf("linear", "cosine"), "timesteps": Int(2), "prediction": OneOf("eps", "x0", "v"), "net": Anything("auto, unet, mlp or an nn.Module"),
                     "base": Int(1), "mults": Ints(1, min_len=1), "num_res_blocks": Int(1),
                     "attention": Either(Bool(), Ints(1)), "dropout": Float(0, 1, high_open=True),
                     "hidden": Ints(1), "time_dim": Int(1), "conditional": Bool(),
                     "p_uncond": Float(0, 1, high_open=True), "clip": Bool(), "min_snr": Float(0), "ot": Bool(),
                     "ot_reg": Float(0)}
    likelihood_kind = "bound"
    sample_ranges = {"sampler": OneOf(*DIFFUSION_SAMPLERS), "steps": Int(1, none=True), "eta": Float(0, 1),
                     "guidance": Float(0), "variance": OneOf("small", "large", "fitted"), "spacing": OneOf(*SPACINGS),
                     "rtol": Float(0, low_open=True), "atol": Float(0, low_open=True)}
    condition_kinds = ("class", "tensor")  # labels, or an image / vector per example (nn/diffusion.py)
    train_defaults = {"lr": 2e-3, "batch_size": 128, "ema_decay": 0.999, "warmup_steps": 100, "grad_clip": 1.0}
    min_train_steps = 200  # ddpm: 49 steps on digits (lr still warming up) give noise
    compare_weight = 2.0  # a UNet step on images: twice an MLP family's share of a comparison
    samplers = DIFFUSION_SAMPLERS

    #: ddpm's own addition to the small-image defaults: T = 250 (the linear schedule rescaled, so the
    #: first noise level is 4x larger). At 1 CPU-minute on digits, seeds 0 / 1 / 2 (`bench/defaults.py
    #: --data digits --families ddpm --set timesteps=250`, 2026-12-02; docs/benchmarks.md): bound 2.495 /
    #: 2.470 / 2.438 bits/dim against 3.071 / 3.032 / 3.029 at T = 1000 (the fitted Gaussian: 2.935), FD
    #: 3.80 / 3.38 / 3.36 against 3.30 / 3.31 / 3.11 on 360 samples. An undertrained model pays every
    #: tiny-noise step of the chain in the bound (our reading); fewer, larger steps leave fewer of them,
    #: and the bound takes a quarter of the network calls.
    SMALL_IMAGE_TIMESTEPS = 250

    @classmethod
    def data_defaults(cls, spec, n_train=None):
        """Images of at most 16 x 16 pixels (the digits): a smaller UNet and batch 64
        (nn/diffusion.py SMALL_IMAGE_UNET, where its measurement is) and T = SMALL_IMAGE_TIMESTEPS."""
        small = small_image_defaults(spec)
        return {**small, "timesteps": cls.SMALL_IMAGE_TIMESTEPS} if small else {}

    def __init__(self, spec, schedule: str = "linear", timesteps: int = 1000, prediction: str = "eps",
                 net: str = "auto", base: int = 32, mults: tuple = (1, 2, 2), num_res_blocks: int = 1,
                 attention: bool = True, dropout: float = 0.0, hidden: tuple = (256, 256, 256), time_dim: int = 64,
                 conditional: bool = False, p_uncond: float = 0.1, clip: bool = True, min_snr: float = 0.0,
                 ot: bool = False, ot_reg: float = 0.0):
        super().__init__(spec)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, not {prediction!r}")
        if not 0 <= p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
        self.schedule = NoiseSchedule(schedule, timesteps)
        if min_snr < 0:
            raise ValueError(f"min_snr must be >= 0 (0: the simple loss), got {min_snr}")
        self.ot_reg = check_ot(ot, ot_reg)
        self.prediction, self.p_uncond, self.min_snr, self.ot = prediction, p_uncond, min_snr, bool(ot)
        self.clip = 1.0 if (clip and spec.kind == "image") else None
        self.net = Denoiser(spec, net, "none" if not conditional else spec.condition_kind, base=base, mults=mults,
                            num_res_blocks=num_res_blocks, attention=attention, dropout=dropout, hidden=hidden,
                            time_dim=time_dim)
        # E||x_0 - x0_hat(x_t, t)||^2 / D per step, measured after training (`fit_variance`); 0: not yet
        self.register_buffer("x0_mse", torch.zeros(self.schedule.T))

    # -- scales -----------------------------------------------------------------------------------
    def to_working(self, x):
        """Data -> the space diffusion runs in: images 2x - 1 in [-1, 1], vectors standardised."""
        return 2 * x - 1 if self.spec.kind == "image" else super().to_working(x)

    def from_working(self, u):
        """The inverse of `to_working`, images clamped to [0, 1]."""
        return ((u + 1) / 2).clamp(0, 1) if self.spec.kind == "image" else super().from_working(u)

    # -- the network as eps / x0 / v ---------------------------------------------------------------
    def eps(self, x, t, y=None, guidance: float = 1.0):
        """eps_theta(x_t, t, y) on the model scale, with classifier-free guidance when w != 1:
        eps_hat = eps(x, t, null) + w (eps(x, t, y) - eps(x, t, null)). y=None is the null condition."""
        def eps_of(x, t, y):
            return self.schedule.to_eps(self.prediction, self.net(x, t, y), x, t)

        if not self.conditional:
            return eps_of(x, t, None)
        if y is not None and guidance != 1.0:
            return guided(eps_of, x, t, y, guidance, self.null_label)
        return eps_of(x, t, y)

    # -- the contract -----------------------------------------------------------------------------
    def loss(self, x, y=None):
        """Algorithm 1: t ~ U{0..T-1}, eps ~ N(0, I), x_t = q_sample(x_0, t, eps), and
        `simple_loss` between the network output and its target (eps, x0 or v).
        Conditional models replace the condition by the null condition with probability p_uncond
        (`drop_condition`); with ot=true the batch's noise draws are first assigned to its images
        by minibatch OT."""
        x0 = self.to_working(x)
        n = len(x0)
        t = torch.randint(0, self.schedule.T, (n,), device=x0.device)
        noise = torch.randn_like(x0)
        if self.ot:
            noise = noise[ot_coupling(noise, x0, self.ot_reg)]
        xt = self.schedule.q_sample(x0, t, noise)
        y = self.condition(y, n)
        if self.conditional:
            if y is None:
                raise ConfigError("this DDPM is conditional: pass the condition y")
            y = drop_condition(y, self.p_uncond, self.null_label)
        pred = self.net(xt, t.float(), y)
        target = self.schedule.target(self.prediction, x0, t, noise)
        if self.min_snr:
            return {"loss": min_snr_loss(pred, target, self.schedule.at(self.schedule.alpha_bar, t, x0),
                                         self.prediction, self.min_snr)}
        return {"loss": simple_loss(pred, target)}

    def _check_options(self, sampler, guidance):
        check_sampler(sampler, self.samplers)
        if not math.isfinite(guidance):
            raise ConfigError(f"guidance must be a finite number, got {guidance}")
        if guidance != 1.0 and not self.conditional:
            raise ConfigError("guidance needs a model trained with conditional=true")

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, sampler: str = "ddim", steps: Optional[int] = 50,
               eta: float = 0.0, guidance: float = 1.0, variance: str = "small", spacing: str = "linspace",
               rtol: float = 1e-4, atol: float = 1e-4, progress: bool = False):
        """n samples in data space. `sampler`: ddpm | ddim | euler | heun | dopri5 (genlab.samplers);
        `steps`: visited timesteps (None, or more than T: all T); `eta` for ddim; `variance` small|large|fitted
        (`fit_variance`) for ddpm;
        `guidance` w for classifier-free guidance (conditional models; y: labels, an int, or a
        class cycle when None; a tensor condition, required, for paired data)."""
        self._check_options(sampler, guidance)
        y = self.condition(y, n, sample=True)
        x = torch.randn(n, *self.spec.shape, generator=generator, device=self.device)
        u = self.denoise_from(x, None, y, generator=generator, sampler=sampler, steps=steps, eta=eta,
                              guidance=guidance, variance=variance, spacing=spacing, rtol=rtol, atol=atol,
                              progress=progress)
        return self.from_working(u)

    def denoise_from(self, xt, t_start, y=None, *, generator=None, sampler="ddim", steps=50, eta=0.0, guidance=1.0,
                     variance="small", spacing="linspace", rtol=1e-4, atol=1e-4, progress=False):
        """Run a sampler from x_{t_start} (model scale; t_start=None: T-1, pure noise) to x_0 (model scale)."""
        if steps is not None:  # more steps than there are timesteps: all of them
            steps = min(int(steps), (self.schedule.T if t_start is None else int(t_start) + 1)) if int(steps) >= 1 else steps
        return diffusion_sample(sampler, lambda x, t: self.eps(x, t, y, guidance), self.schedule, xt, steps=steps,
                                eta=eta, variance=self._sampler_variance(variance), spacing=spacing, t_start=t_start,
                                generator=generator, clip=self.clip, rtol=rtol, atol=atol, progress=progress)

    # -- the latent path: deterministic DDIM both ways ---------------------------------------------
    @torch.no_grad()
    def encode(self, x, y=None, *, steps: Optional[int] = 50, spacing: str = "linspace"):
        """The noise x_T that deterministic DDIM (eta = 0) decodes to x: DDIM inversion
        (`ddim_invert`) of to_working(x) over `steps` visited steps, on the model scale. A
        conditional model inverts under its condition y (None: the null condition)."""
        y = self.condition(y, len(x))
        steps = None if steps is None else min(int(steps), self.schedule.T)
        return ddim_invert(lambda u, t: self.eps(u, t, y), self.schedule, self.to_working(x.to(self.device)),
                           steps, spacing, self.clip)

    @torch.no_grad()
    def decode(self, z, y=None, *, steps: Optional[int] = 50, spacing: str = "linspace", guidance: float = 1.0):
        """Deterministic DDIM (eta = 0) from the noise z = x_T to data space: `encode`'s inverse."""
        self._check_options("ddim", guidance)
        y = self.condition(y, len(z), sample=True)
        return self.from_working(self.denoise_from(z.to(self.device), None, y, sampler="ddim", steps=steps, eta=0.0,
                                                   guidance=guidance, spacing=spacing))

    # -- applications -----------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, x, t_star: int, y=None, generator=None, *, sampler: str = "ddim", steps: Optional[int] = 50,
                **options):
        """SDEdit-style denoising: noise x (data space) to step t_star with q(x_t | x_0), then run
        the sampler from t_star back to 0. Returns (noisy x in data space, denoised x)."""
        if not 0 <= int(t_star) < self.schedule.T:
            raise ConfigError(f"t must be in 0..{self.schedule.T - 1}, got {t_star}")
        self._check_options(sampler, options.get("guidance", 1.0))
        y = self.condition(y, len(x), sample=True)
        x0 = self.to_working(x.to(self.device))
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        xt = self.schedule.q_sample(x0, torch.full((len(x0),), int(t_star), device=x0.device), noise)
        out = self.denoise_from(xt, int(t_star), y, generator=generator, sampler=sampler, steps=steps, **options)
        return self.from_working(xt), self.from_working(out)

    @torch.no_grad()
    def inpaint(self, x, mask, y=None, generator=None, *, steps: Optional[int] = None, jump: int = 1,
                resample: int = 1, variance: str = "small", guidance: float = 1.0, progress: bool = False):
        """RePaint (Lugmayr et al. 2022): fill the region where mask == 0, keep x where mask == 1.

        At every ancestral step the known region of x_{t-1} is replaced by a fresh draw from
        q(x_{t-1} | x_0) and the unknown region by the model's step:
            x_{t-1} = m * q_sample(x_0, t-1) + (1 - m) * p_theta-step(x_t)
        With resample r > 1, every `jump` steps the chain goes forward again `jump` steps with
        q(x_t | x_{t-1}) and repeats, r times in all, so the generated part harmonises with the
        known part. `steps` < T respaces the chain as in samplers/ddpm.py. Returns data space."""
        self._check_options("ddpm", guidance)
        if jump < 1 or resample < 1:
            raise ConfigError("jump and resample must be >= 1")
        y = self.condition(y, len(x), sample=True)
        x0 = self.to_working(x.to(self.device))
        m = mask.to(self.device, x0.dtype).expand_as(x0)
        ts = self.schedule.timesteps(steps)
        ab = [float(self.schedule.alpha_bar[t]) for t in ts] + [1.0]

        def eps_fn(xx, tt):
            return self.eps(xx, tt, y, guidance)

        def noise():
            return torch.randn(x0.shape, generator=generator, device=x0.device)

        def known(i):  # q(x_{ts[i]} | x_0); i = len(ts) means x_0 itself
            return x0 if i == len(ts) else math.sqrt(ab[i]) * x0 + math.sqrt(1 - ab[i]) * noise()

        var = self._sampler_variance(variance)
        path = repaint_path(len(ts), jump, resample)
        pairs = list(zip(path[:-1], path[1:]))
        if progress:
            from tqdm.auto import tqdm

            pairs = tqdm(pairs, desc="repaint")
        xt = noise()
        for i, j in pairs:
            if j > i:  # a reverse step: model for the unknown part, q(x_{t'} | x_0) for the known part
                t_prev = ts[j] if j < len(ts) else -1
                xt = ddpm_step(eps_fn, self.schedule, xt, ts[i], t_prev, var, generator, self.clip)
                xt = m * known(j) + (1 - m) * xt
            else:  # a forward step back up: q(x_a | x_b) = N(sqrt(abar_a / abar_b) x_b, (1 - abar_a / abar_b) I)
                r = ab[j] / ab[i]
                xt = math.sqrt(r) * xt + math.sqrt(1 - r) * noise()
        return self.from_working(m * x0 + (1 - m) * xt)

    @torch.no_grad()
    def impute(self, x, mask, y=None, *, generator=None, steps: Optional[int] = 100, jump: int = 1,
               resample: int = 1):
        """Fill the missing entries (mask: 1 = known) by RePaint (`inpaint`, the equation there) over
        `steps` respaced ancestral steps; images and vectors alike. Known entries come back unchanged."""
        x = x.to(self.device)
        m = torch.as_tensor(mask, device=self.device).bool().expand_as(x)
        out = self.inpaint(fill_missing(x, m), m.to(x.dtype), y, generator, steps=steps, jump=jump,
                           resample=resample)
        return keep_known(x, m, out)

    @torch.no_grad()
    def denoise_gaussian(self, x, sigma: float, y=None, *, generator=None, sampler: str = "ddim",
                         steps: Optional[int] = 50):
        """Estimate the clean x from x~ = x + sigma eps (eps ~ N(0, I); sigma on the data scale for
        images, on the standardised scale for vectors). On the working scale (images: 2x - 1, so
        s = 2 sigma) x~ / sqrt(abar_t) = x_0 + s eps matches q(x_t | x_0) rescaled when

            (1 - abar_t*) / abar_t* = s^2,     x_t* = sqrt(abar_t*) x~,

        so the reverse sampler is started from x_t* at the step t* closest to that noise level."""
        self.require_linear_scale()
        s = 2 * sigma if self.spec.kind == "image" else sigma
        ab = self.schedule.alpha_bar
        t_star = int(((1 - ab) / ab).sqrt().sub(s).abs().argmin())
        yy = self.condition(y, len(x), sample=True)
        xt = ab[t_star].sqrt() * self.to_working(x.to(self.device))
        return self.from_working(self.denoise_from(xt, t_star, yy, generator=generator, sampler=sampler,
                                                   steps=steps))

    @torch.no_grad()
    def anomaly_score(self, x, y=None, *, t_star: Optional[int] = None, steps: int = 10, repeats: int = 1,
                      generator=None):
        """Diffusion reconstruction error: noise x to step t* (default T / 4) with q(x_t* | x_0),
        denoise back with `steps` deterministic DDIM steps, and score the squared error on the working
        scale, sum_i (x_0 - x0_hat)_i^2, averaged over `repeats` noise draws. Typical x are
        restored; an outlier is pulled towards the training data and changes more. (The
        likelihood bound, -log_prob, is the other choice: T network calls per example.)"""
        t_star = self.schedule.T // 4 if t_star is None else int(t_star)
        yy = self.condition(y, len(x))
        x0 = self.to_working(x.to(self.device))
        total = torch.zeros(len(x0), device=x0.device)
        for _ in range(repeats):
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
            xt = self.schedule.q_sample(x0, torch.full((len(x0),), t_star, device=x0.device), noise)
            rec = self.denoise_from(xt, t_star, yy, generator=generator, sampler="ddim", steps=steps)
            total += (rec - x0).pow(2).flatten(1).sum(1)
        return total / repeats

    # -- the reverse variance fitted to the model's own error ---------------------------------------
    FIT_STEPS = 64  # timesteps at which fit_variance measures the x_0 error (the rest interpolated)
    FIT_NUMBERS = 4096  # numbers per measured step: examples x dimensions, 32 to 1024 examples

    @property
    def has_fitted_variance(self) -> bool:
        return bool((self.x0_mse > 0).all())

    def _x0_hat(self, xt, t, y):
        x0 = self.schedule.x0_from_eps(xt, t, self.eps(xt, t.float(), y))
        return x0.clamp(-self.clip, self.clip) if self.clip else x0

    @torch.no_grad()
    def fit_variance(self, x, y=None, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Measure the model's x_0 error per step on data x (the training split), for variance="fitted":

            m_t = E_{x_0, eps} ||x_0 - x0_hat(x_t, t)||^2 / D,     x_t = q_sample(x_0, t, eps),
            sigma_t^2 = betatilde_t + c_t^2 m_t,     c_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t),

        c_t being the x_0 coefficient of the posterior mean. sigma_t^2 is the isotropic variance of
        p(x_{t-1} | x_t) that minimises the bound's expected L_{t-1} given the model's mean (the KL
        between N(mu_q, betatilde_t) and N(mu_p, sigma^2) with mu_q - mu_p = c_t (x_0 - x0_hat)):
        the "optimal covariance with imperfect mean" of Bao et al. (ICML 2022, NPR-DPM); for a
        perfect model m_t = Var[x_0 | x_t] and it is Analytic-DPM's (Bao et al., ICLR 2022). At t = 0
        it is the decoder's variance, m_0. m_t is measured at FIT_STEPS steps (quadratic spacing, dense
        near t = 0, where it changes fastest) on FIT_NUMBERS / D examples each (32 to 1024), and
        log m_t interpolated between them. Any variance gives a valid bound; this one tightens it.
        Stored in the buffer x0_mse (saved with the weights); returns it."""
        s, T = self.schedule, self.schedule.T
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        k = min(self.FIT_STEPS, T)
        steps = torch.unique((torch.linspace(0, 1, k, dtype=torch.float64) ** 2 * (T - 1)).round().long())
        m = int(min(max(self.FIT_NUMBERS // max(self.spec.dim, 1), 32), 1024))
        per_call = max(1, 4096 // m) if self.spec.kind == "vector" else max(1, 256 // m)
        mse = torch.empty(len(steps), dtype=torch.float64)
        for i in range(0, len(steps), per_call):
            ts = steps[i:i + per_call]
            idx = torch.randint(0, len(x), (len(ts) * m,), generator=g)
            x0 = self.to_working(x[idx].to(self.device))
            yy = None if y is None else self.condition(y[idx].to(self.device), len(idx))
            tt = ts.repeat_interleave(m).to(self.device)
            noise = torch.randn(x0.shape, generator=g).to(x0)
            err = (self._x0_hat(s.q_sample(x0, tt, noise), tt, yy) - x0).pow(2).flatten(1).mean(1)
            mse[i:i + len(ts)] = err.reshape(len(ts), m).mean(1).double().cpu()
        log_mse = torch.from_numpy(np.interp(np.arange(T), steps.numpy(), mse.clamp_min(1e-12).log().numpy()))
        self.x0_mse.copy_(log_mse.exp().to(self.x0_mse))
        return self.x0_mse

    def finalize(self, data) -> None:
        """After training (with the EMA weights): measure the x_0 error for variance="fitted"."""
        self.fit_variance(data.train, data.conditions("train", self.condition_kind) if self.conditional else None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved before x0_mse existed load without it (variance "auto" then means "large")
        state_dict.setdefault(prefix + "x0_mse", torch.zeros(self.schedule.T))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- the variational bound --------------------------------------------------------------------
    def _sampler_variance(self, variance: str):
        """The ancestral sampler's variance: a name, or for "fitted" the measured x_0 error table
        (on the CPU: the sampler reads one entry per step as a Python number)."""
        if variance != "fitted":
            return variance
        self._require_fitted()
        return self.x0_mse.cpu()

    def _require_fitted(self) -> None:
        if not self.has_fitted_variance:
            raise ConfigError("variance='fitted' needs the x_0 error measured after training "
                              "(model.fit_variance(train_x)); this model has none")

    def _variance_kind(self, variance: str) -> str:
        if variance == "auto":
            return "fitted" if self.has_fitted_variance else "large"
        if variance not in BOUND_VARIANCES:
            raise ConfigError(f"the bound's variance must be one of auto, {', '.join(BOUND_VARIANCES)}; "
                              f"got {variance!r}")
        if variance == "fitted":
            self._require_fitted()
        return variance

    def _p_mean_logvar(self, xt, t, y, variance):
        """Mean and log-variance of p_theta(x_{t-1} | x_t) for integer steps t [N]; variance small
        (betatilde_t), large (beta_t) or fitted (`fit_variance`)."""
        s = self.schedule
        x0 = self._x0_hat(xt, t, y)
        mean, _, post_logvar = s.q_posterior(x0, xt, t)
        if variance == "small":
            return mean, post_logvar
        if variance == "fitted":
            var = s.posterior_variance.to(self.x0_mse) + s.posterior_mean_coef_x0.to(self.x0_mse) ** 2 * self.x0_mse
            return mean, s.at(var.log(), t, xt)
        # "large": beta_t, except at t = 0 where Ho et al. use betatilde_1 (beta_0 is tiny)
        large = torch.log(torch.cat([s.posterior_variance[1:2], s.betas[1:]]))
        return mean, s.at(large, t, xt)

    @torch.no_grad()
    def variational_bound(self, x, y=None, *, variance: str = "auto", batch_t: int = 100, per_step: bool = False):
        """Per example, in nats, on the model scale, the terms of (Ho et al. eq. 5)

            L = L_T + sum_{t>1} L_{t-1} + L_0
            L_T     = KL(q(x_T | x_0) || N(0, I))
            L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)),   x_t ~ q(x_t | x_0) (one draw each)
            L_0     = -log p_theta(x_0 | x_1)   (discretised Gaussian over the data's levels for images,
                                                 a Gaussian density for vectors)

        p_theta's variance: "fitted" (`fit_variance`, the tightest, measured after training), "large"
        (beta_t) or "small" (betatilde_t); "auto" is fitted when the model has it, else large.
        -L <= log p(x_0) in expectation over the x_t draws for any of them. Returns a dict of [N] tensors
        ("total", "prior", "terms", "decoder"); with per_step=True also "per_step" [T, N]: row 0 is
        L_0 (the decoder) and row t >= 1 is L_{t-1}'s KL at 0-based step t, so rows 1.. sum to "terms"."""
        s = self.schedule
        variance = self._variance_kind(variance)
        x0 = self.to_working(x.to(self.device))
        n, T = len(x0), s.T
        dims = tuple(range(1, x0.dim()))
        y = self.condition(y, n)
        ab_last = s.at(s.alpha_bar, torch.full((n,), T - 1), x0)
        prior = gaussian_kl(ab_last.sqrt() * x0, torch.log(1 - ab_last), torch.zeros_like(x0),
                            torch.zeros_like(x0)).sum(dims)
        terms = torch.zeros(n, device=x0.device)
        decoder = None
        rows = []
        for t0 in range(0, T, batch_t):  # batch_t steps at a time, all examples
            tb = torch.arange(t0, min(T, t0 + batch_t), device=x0.device)
            k = len(tb)
            xr = x0.repeat(k, *([1] * (x0.dim() - 1)))
            tt = tb.repeat_interleave(n)
            yr = None if y is None else y.repeat(k, *([1] * (y.dim() - 1)))
            xt = s.q_sample(xr, tt)
            mean, logvar = self._p_mean_logvar(xt, tt, yr, variance)
            true_mean, _, true_logvar = s.q_posterior(xr, xt, tt)
            kl = gaussian_kl(true_mean, true_logvar, mean, logvar).sum(dims).reshape(k, n)
            if t0 == 0:  # step 0 is the decoder term instead of a KL
                m0, lv0 = mean[:n], logvar[:n]
                if self.spec.kind == "image":
                    ll = discretized_gaussian_log_likelihood(x0, m0, 0.5 * lv0, self.spec.levels or 256)
                else:
                    ll = -0.5 * ((x0 - m0).pow(2) * torch.exp(-lv0) + lv0 + LOG_2PI)
                decoder = -ll.sum(dims)
                kl = kl[1:]
                if per_step:
                    rows.append(decoder.unsqueeze(0))
            if per_step:
                rows.append(kl)
            terms = terms + kl.sum(0)
        out = {"total": prior + terms + decoder, "prior": prior, "terms": terms, "decoder": decoder}
        if per_step:
            out["per_step"] = torch.cat(rows)
        return out

    @torch.no_grad()
    def log_prob(self, x, y=None, *, variance: str = "auto", batch_t: int = 100):
        """A lower bound on log p(x) in nats (the negative variational bound, `variational_bound`),
        one draw of x_t per step; all T network evaluations per example; `variance` as there.

        Images: the bound is on the probability P(x) of the quantised image (levels of
        spec.levels). It is returned as the log-density of the piecewise-constant density on
        [0, 1]^D that spreads P(x) over its bin, log P(x) + D log(levels), so that genlab's
        bits/dim, (-log_prob + D log levels) / (D log 2), equals -log2 P(x) / D: the discrete
        code length of Ho et al.'s Table 2. Vectors: a bound on the density in data space.
        Conditional models: log p(x | y) with y, and the null-condition (unconditional) model without."""
        vb = self.variational_bound(x, y, variance=variance, batch_t=batch_t)["total"]
        if self.spec.kind == "image":
            return -vb + self.spec.dim * math.log(self.spec.levels or 256)
        return -vb + self.working_log_det(x)
