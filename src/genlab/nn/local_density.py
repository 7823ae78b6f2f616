"""A local image density: the background model of the likelihood-ratio outlier score.

The image is cut into non-overlapping p x p tiles (all channels together) and every tile is an
independent draw from one Gaussian, wherever it sits:

    log p_local(x) = sum_tiles log N(x_tile; mu, Sigma + reg I)

with mu and Sigma the maximum-likelihood mean and covariance of all the training images' tiles.
It is a proper density on the whole image, and it knows only local pixel statistics (stroke width,
edges, how much background), nothing of where things are. A model's likelihood is dominated by those
same local statistics, which is why simple images (a "1" under a model of "8"s) can score higher than
the model's own data. The ratio log p_model(x) - log p_local(x) cancels them and keeps the global
structure only the model knows: the background-model ratio of Ren et al. (2019) and Schirrmeister et
al. (2020), the complexity correction of Serrà et al. (2020).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from .density import mvn_log_prob


def tile_size(height: int, width: int, patch: Optional[int] = None) -> int:
    """`patch`, checked to divide the image; by default the largest of 4, 2, 1 that does."""
    if patch is None:
        return next(p for p in (4, 2, 1) if height % p == 0 and width % p == 0)
    if patch < 1 or height % patch or width % patch:
        raise ConfigError(f"the patch size must divide the {height}x{width} images, got {patch}")
    return patch


def tiles(x: torch.Tensor, p: int) -> torch.Tensor:
    """N x C x H x W -> N x (H/p)(W/p) x C p p: the non-overlapping p x p tiles, channels included."""
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(n, (h // p) * (w // p), c * p * p)


class LocalGaussian:
    """The stationary tile Gaussian above; `fit(x)` then `log_prob(x)` (nats, float64, [N])."""

    def __init__(self, patch: Optional[int] = None, reg: float = 1e-4):
        if reg < 0:
            raise ConfigError(f"reg must be >= 0, got {reg}")
        self.patch, self.reg = patch, float(reg)
        self.mean: Optional[torch.Tensor] = None

    def fit(self, x: torch.Tensor, batch_size: int = 4096) -> "LocalGaussian":
        """Maximum-likelihood mean and covariance of every tile of the images `x` (N x C x H x W)."""
        if x.dim() != 4:
            raise ConfigError(f"the local density models images (N x C x H x W), got shape {tuple(x.shape)}")
        self.patch = tile_size(x.shape[2], x.shape[3], self.patch)
        d = x.shape[1] * self.patch ** 2
        s1, s2, n = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0
        for b in x.split(batch_size):  # sums in float64, a batch at a time
            t = tiles(b.double().cpu(), self.patch).reshape(-1, d)
            s1 += t.sum(0)
            s2 += t.T @ t
            n += len(t)
        self.mean = s1 / n
        cov = s2 / n - torch.outer(self.mean, self.mean) + self.reg * torch.eye(d, dtype=torch.float64)
        self.chol = torch.linalg.cholesky(cov)
        return self

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_local(x) for images x (N x C x H x W) of the fitted shape: [N] nats, float64."""
        if self.mean is None:
            raise ConfigError("the local density is not fitted yet (call fit first)")
        return mvn_log_prob(tiles(x.double().cpu(), self.patch) - self.mean, self.chol).sum(1)
