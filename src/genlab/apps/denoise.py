"""Denoising from an intermediate time (SDEdit, Meng et al. 2022): push x part-way into the
forward process, x_t ~ q(x_t | x_0) at t = t_star, then run the reverse sampler from t_star.

    noisy, clean = denoise(model, x, t_star, sampler="ddim", steps=50)

Small t_star returns x almost unchanged; t_star near T forgets x and is plain sampling. The
family provides `model.denoise(x, t_star, ...)`; this module only dispatches.
"""

from __future__ import annotations

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
