"""MetricError and the input checks every metric shares."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GenlabError


class MetricError(GenlabError, ValueError):
    """A metric cannot be computed from what it was given (shapes, too few samples,
    non-finite values) or its numerics failed (e.g. a complex Fréchet distance)."""


def as_tensor(x) -> torch.Tensor:
    """`x` (tensor, array or list) as a tensor on its own device; numpy arrays are not copied."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def check_features(x, name: str, min_rows: int = 1) -> torch.Tensor:
    """A finite float [N, D] tensor with N >= min_rows (1-D input is one feature per row)."""
    x = as_tensor(x)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise MetricError(f"{name}: expected features of shape [N, D], got {tuple(x.shape)}")
    if len(x) < min_rows:
        raise MetricError(f"{name}: needs at least {min_rows} samples, got {len(x)}")
    if not x.is_floating_point():
        x = x.double()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(1).sum())
        raise MetricError(f"{name}: {bad} rows contain NaN or Inf")
    return x


def same_dim(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise MetricError(f"{names}: feature dimensions differ ({a.shape[1]} vs {b.shape[1]})")
