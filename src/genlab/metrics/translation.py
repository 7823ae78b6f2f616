"""Image-to-image evaluation: outputs against their targets, diversity, and the no-learning baseline.

    psnr_ssim(outputs, targets)   mean over examples of scikit-image's PSNR and SSIM (data range 1)
    diversity(features, k)        mean pairwise feature distance of k outputs for one input
    Upsample                      the bicubic baseline: the input upsampled, no learning; it has the
                                  model contract's sampling face, so `evaluate` scores it unchanged

The metrics that use them are registered in metrics/evaluate.py (psnr, ssim, diversity); they apply
to a model conditioned on an image (`condition_kind == "tensor"`) whose sample i answers the
reference example i's input.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError


def _ssim_window(h: int, w: int) -> int:
    """scikit-image's default 7 x 7 window, or the largest odd side that fits a smaller image."""
    side = min(7, h, w)
    return side if side % 2 else side - 1


def psnr_ssim(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """{"psnr": mean PSNR in dB, "ssim": mean SSIM} of images N x C x H x W in [0, 1], per example
    with `skimage.metrics.peak_signal_noise_ratio` and `structural_similarity` (data_range 1,
    channels on axis 0; a 7 x 7 uniform window, smaller for images under 7 px). An output equal to its
    target has PSNR inf; the mean is then inf as well."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if outputs.shape != targets.shape:
        raise ConfigError(f"outputs of shape {tuple(outputs.shape)} cannot be scored against targets of shape "
                          f"{tuple(targets.shape)}")
    out = outputs.detach().cpu().double().numpy()
    ref = targets.detach().cpu().double().numpy()
    _, c, h, w = out.shape
    win = _ssim_window(h, w)
    if win < 3:
        raise ConfigError(f"SSIM needs images of at least 3 x 3 pixels, not {h} x {w}")
    psnr, ssim = [], []
    with np.errstate(divide="ignore"):
        for o, r in zip(out, ref):
            psnr.append(peak_signal_noise_ratio(r, o, data_range=1.0))
            ssim.append(structural_similarity(r[0], o[0], data_range=1.0, win_size=win) if c == 1 else
                        structural_similarity(r, o, data_range=1.0, win_size=win, channel_axis=0))
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}


def diversity(features: torch.Tensor, k: int) -> float:
    """Mean pairwise Euclidean distance between the k outputs of each input, averaged over inputs.
    `features` is [m * k, d], the k outputs of input i in rows i*k .. i*k + k - 1. Zero for a
    deterministic translator (pix2pix is known to learn to ignore its dropout noise)."""
    f = features.double().reshape(-1, k, features.shape[-1])
    d = torch.cdist(f, f)                                   # [m, k, k]
    return float(d.sum((1, 2)).mean() / (k * (k - 1)))


def is_super_resolution(spec) -> bool:
    """Image data whose input is a smaller image with the target's channels (a low-resolution version)."""
    cs = spec.condition_shape
    if spec.kind != "image" or cs is None or len(cs) != 3:
        return False
    c, h, w = spec.shape
    return cs[0] == c and cs[1] <= h and cs[2] <= w and (cs[1], cs[2]) != (h, w)


class Upsample(nn.Module):
    """The baseline of super-resolution: the input upsampled (bicubic, clamped to [0, 1]), no learning.

    It answers `sample(n, y)` as a translation model does, so `evaluate(Upsample(spec), data)` scores
    it under the same protocol as the families (and `family` names it on the page)."""

    likelihood_kind = None
    condition_kind = "tensor"
    conditional = True

    def __init__(self, spec, mode: str = "bicubic"):
        super().__init__()
        if not is_super_resolution(spec):
            raise ConfigError(f"the {mode} baseline needs a super-resolution task (a smaller input image with the "
                              f"target's channels); '{spec.name}' is not one")
        self.spec, self.mode, self.family = spec, mode, mode
        self.register_buffer("_anchor", torch.zeros(()))  # gives the baseline a device

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def capabilities(self) -> list:
        return []

    @torch.no_grad()
    def sample(self, n: int, y: Optional[torch.Tensor] = None, generator=None) -> torch.Tensor:
        if y is None or len(y) != n:
            raise ConfigError(f"the {self.mode} baseline upsamples its inputs: pass {n} of them")
        size = tuple(self.spec.shape[1:])
        up = F.interpolate(y.float(), size=size, mode=self.mode, align_corners=False if self.mode != "area" else None)
        return up.clamp(0, 1)


def baseline_result(data, n: Optional[int] = None, seed: int = 0, mode: str = "bicubic",
                    metrics=None) -> Optional[dict]:
    """The baseline row of a super-resolution task (None for other data): `evaluate` of `Upsample`
    (every metric that applies, or those named)."""
    from .evaluate import evaluate

    if not is_super_resolution(data.spec) or data.spec.unpaired:
        return None
    result = evaluate(Upsample(data.spec, mode), data, metrics, n=n, seed=seed, reference=False)
    result["name"] = mode
    return result
