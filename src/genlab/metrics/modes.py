"""Mode coverage on the 2-D Gaussian mixtures, PacGAN's protocol (Lin et al. 2018, after VEEGAN):

    2500 generated samples; a sample is high quality if it lies within 3 sigma of its nearest
    mode; a mode is captured if it has at least one high-quality sample. Reported: modes
    captured, % high-quality samples, and the reverse KL  KL(p_gen || uniform) of the
    histogram of high-quality samples over modes (0 when every mode gets an equal share).
"""

from __future__ import annotations

import math

import torch

from .errors import check_features

N_SAMPLES = 2500


def mode_coverage(samples, centers, sigma: float, threshold: float = 3.0) -> dict:
    """{"modes": captured, "high_quality": fraction in [0, 1], "reverse_kl": nats, "counts": per mode}."""
    x = check_features(samples, "samples").double()
    c = torch.as_tensor(centers, dtype=torch.float64, device=x.device)
    dist, nearest = torch.cdist(x, c).min(1)
    hq = dist <= threshold * sigma
    counts = torch.bincount(nearest[hq], minlength=len(c)).double()
    if counts.sum() > 0:
        p = counts / counts.sum()
        nz = p > 0
        reverse_kl = float((p[nz] * (p[nz] * len(c)).log()).sum())
    else:
        reverse_kl = math.inf
    return {"modes": int((counts > 0).sum()), "high_quality": float(hq.double().mean()),
            "reverse_kl": reverse_kl, "counts": counts.long().tolist()}
