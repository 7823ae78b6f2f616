"""Log-transformed table columns (`log_columns=true`, a hyperparameter of every family that models vectors).

Skewed, nonnegative measurements (sizes, areas, counts, prices) are often related multiplicatively
(an area goes as a radius squared), so a Gaussian or a network models their logs better:

    t_j = log(max(x_j + c_j, f_j))   for the columns j whose training values are all >= 0,
    t_j = x_j                         for the others,
    x_j = exp(t_j) - c_j              (the inverse),
    log |det dt/dx| = -sum_j log(max(x_j + c_j, f_j))   over the logged columns.

c_j = 0 where the column's training values are all positive, otherwise half its smallest positive
training value (so a zero maps to the finite log c_j). f_j is half the smallest training value of
x_j + c_j: a new value below the training range (e.g. a negative one) is clamped there rather than sent
to -inf, and the log-determinant takes the clamped value (the density is the model's near the edge of
its support).
"""

from __future__ import annotations

from typing import Iterable

import torch


def fit_log_columns(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(columns [D] bool, offset c [D], floor f [D]) from the training rows, given as batches [n, D]."""
    lo = smallest_positive = None
    for b in batches:
        b = b.double().reshape(len(b), -1)
        pos = torch.where(b > 0, b, torch.full_like(b, float("inf"))).amin(0)
        lo = b.amin(0) if lo is None else torch.minimum(lo, b.amin(0))
        smallest_positive = pos if smallest_positive is None else torch.minimum(smallest_positive, pos)
    if lo is None:
        raise ValueError("fit_log_columns: no training rows")
    columns = (lo >= 0) & torch.isfinite(smallest_positive)          # an all-zero column stays linear
    offset = torch.where(lo > 0, torch.zeros_like(lo), smallest_positive / 2)
    offset = torch.where(columns, offset, torch.zeros_like(lo))
    floor = torch.where(columns, (lo + offset) / 2, torch.ones_like(lo))
    return columns, offset, floor


def _logged(x: torch.Tensor, offset: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """log(max(x + c, f)) for every column (the caller keeps the logged ones)."""
    return torch.log(torch.maximum(x + offset.to(x.dtype), floor.to(x.dtype)))


def log_forward(x: torch.Tensor, columns: torch.Tensor, offset: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """t from x (the module docstring); x [N, D]."""
    return torch.where(columns, _logged(x, offset, floor), x)


def log_inverse(t: torch.Tensor, columns: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """x from t; t [N, D]."""
    return torch.where(columns, torch.exp(t) - offset.to(t.dtype), t)


def log_abs_det(x: torch.Tensor, columns: torch.Tensor, offset: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """log |det dt/dx| per row [N]."""
    return -(_logged(x, offset, floor) * columns).flatten(1).sum(1)
