"""Label and time embeddings shared by conditional and time-dependent families."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def one_hot(y: torch.Tensor | None, num_classes: int, n: int, device=None) -> torch.Tensor:
    """N x K one-hot codes; an empty N x 0 tensor when the model is unconditional."""
    if num_classes == 0 or y is None:
        return torch.zeros(n, 0, device=device)
    return F.one_hot(y.long(), num_classes).float()


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style embedding of a float time t [N] (any scale) -> N x dim.

        emb(t)_i = cos(t * w_i),  emb(t)_{i + dim/2} = sin(t * w_i),  w_i = max_period^(-i / (dim/2))

    The frequencies span 1 .. 1/max_period, so integer timesteps 0..999 (DDPM) and, after the
    caller scales them, times in [0, 1] (flow matching: pass 1000 t) are both well resolved.
    An odd `dim` gets a zero column at the end.
    """
    t = t.float().reshape(-1)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class LabelEmbedding(nn.Embedding):
    """num_classes + 1 learned vectors: rows 0..K-1 for the classes and row K for the "null"
    label, which classifier-free guidance uses for the unconditional prediction. `forward(None)`
    is not defined here; callers pass `null_labels(n)` instead."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__(num_classes + 1, dim)
        self.num_classes = num_classes
        nn.init.normal_(self.weight, std=0.02)

    def null_labels(self, n: int, device=None) -> torch.Tensor:
        return torch.full((n,), self.num_classes, dtype=torch.long, device=device)
