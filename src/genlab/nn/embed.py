"""Label (and later time) embeddings shared by conditional families."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def one_hot(y: torch.Tensor | None, num_classes: int, n: int, device=None) -> torch.Tensor:
    """N x K one-hot codes; an empty N x 0 tensor when the model is unconditional."""
    if num_classes == 0 or y is None:
        return torch.zeros(n, 0, device=device)
    return F.one_hot(y.long(), num_classes).float()
