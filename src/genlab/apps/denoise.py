"""Denoising from an intermediate time (SDEdit, Meng et al. 2022): push x part-way into the
forward process, x_t ~ q(x_t | x_0) at t = t_star, then run the reverse sampler from t_star.

    noisy, clean = denoise(model, x, t_star, sampler="ddim", steps=50)

Small t_star returns x almost unchanged; t_star near T forgets x and is plain sampling. The
family provides `model.denoise(x, t_star, ...)`; this module only dispatches.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError


def denoise(model, x: torch.Tensor, t_star, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """(x noised to t_star, its reconstruction by the reverse process), both in data space."""
    if not hasattr(model, "denoise"):
        raise ConfigError(f"'{model.family}' cannot denoise from an intermediate time (no denoise method)")
    return model.denoise(x, t_star, **options)


def denoise_strip(model, x: torch.Tensor, times, generator=None, **options) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """denoise at each t in `times` from the same x: [(t, noisy, clean), ...] for a figure."""
    out = []
    for t in times:
        noisy, clean = denoise(model, x, t, generator=generator, **options)
        out.append((t, noisy, clean))
    return out


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all entries, 10 log10(peak^2 / MSE(a, b))."""
    mse = float((a.double() - b.double()).pow(2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def denoise_data(model, data=None, *, noise: float = 0.3, n: int = 256, split: str = "test", label_column=None,
                 out=None, seed: int = 0, batch_size: int = 128, progress: bool = False, **options) -> dict:
    """Add Gaussian noise of std `noise` to `n` clean examples of `data` (default: the run's data),
    x~ = x + noise * eps (not clipped, so the noise is exactly Gaussian), and restore them with the
    family's `denoise_gaussian(x~, noise)` (a denoising autoencoder's reconstruction, PCA's Wiener
    filter, diffusion / flow matching started at the matching noise level). Reports PSNR (peak 1
    for images, the standardised scale for vectors) of the noisy and the denoised examples against
    the clean ones; `out` gets denoise.json and, for images, denoise.png (noisy | denoised | clean)."""
    from .anomaly import require, scoring_data

    require(model, "denoise", "denoise noisy data")
    if not noise > 0:
        raise ConfigError(f"--noise must be positive, got {noise}")
    ds = scoring_data(model, data, label_column=label_column)
    x = (ds.test if split == "test" else ds.train)[:n]
    g = torch.Generator().manual_seed(seed)
    std = torch.ones(()) if ds.spec.kind == "image" else ds.train.std(0).clamp_min(1e-12)
    noisy = x + noise * std * torch.randn(x.shape, generator=g)  # vectors: noise on the standardised scale
    torch.manual_seed(seed)
    was = model.training
    model.eval()
    outs = []
    try:
        for i in range(0, len(x), batch_size):
            outs.append(model.denoise_gaussian(noisy[i:i + batch_size].to(model.device), noise,
                                               **options).detach().cpu())
    finally:
        model.train(was)
    clean = torch.cat(outs)
    scale = (lambda t: t) if ds.spec.kind == "image" else (lambda t: t / std)
    result = {"family": model.family, "data": ds.spec.name, "n": len(x), "noise": noise,
              "psnr_noisy": psnr(scale(noisy), scale(x)), "psnr_denoised": psnr(scale(clean), scale(x)),
              "psnr_peak": 1.0 if ds.spec.kind == "image" else "1 standard deviation (standardised features)"}
    if out is not None:
        from pathlib import Path

        from ..io import atomic_write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if ds.spec.kind == "image":
            from ..report.use import image_rows

            result["figure"] = str(image_rows([noisy.clamp(0, 1), clean, x], out / "denoise.png"))
        atomic_write_json(out / "denoise.json", result)
    return result
