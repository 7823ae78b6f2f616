"""Label (and later time) embeddings shared by conditional families."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def one_hot(y: torch.Tensor | None, num_classes: int, n: int, device=None) -> torch.Tensor:
    """N x K one-hot codes; an empty N x 0 tensor when the model is unconditional."""
    if num_classes == 0 or y is None:
        return torch.zeros(n, 0, device=device)
    return F.one_hot(y.long(), num_classes).float()


def default_labels(n: int, num_classes: int, device=None) -> torch.Tensor:
    """Labels 0, 1, ..., K-1, 0, 1, ...: one row per class in a sample grid."""
    return torch.arange(n, device=device) % num_classes
