"""A time-conditioned MLP for vector data (diffusion / flow-matching networks on 2-D toys etc.).

    h_0 = SiLU(W_0 x + A_0 e),   h_l = SiLU(W_l h_{l-1} + A_l e),   out = W_L h_L

with e = MLP(sinusoidal(t)) (+ label embedding). The embedding is injected at every layer, so
the network can change its behaviour sharply with t. With cond_dim > 0 the input x carries a
condition vector in its last cond_dim entries (nn/diffusion.py's Denoiser appends it).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .embed import LabelEmbedding, sinusoidal_embedding


class TimeMLP(nn.Module):
    """forward(x [N, dim + cond_dim], t [N] float, y [N] long in 0..num_classes or None) -> [N, dim]."""

    def __init__(self, dim: int, hidden: Sequence[int] = (256, 256, 256), time_dim: int = 64,
                 num_classes: int = 0, cond_dim: int = 0):
        super().__init__()
        self.time_dim, self.num_classes = time_dim, num_classes
        self.time = nn.Sequential(nn.Linear(time_dim, time_dim * 2), nn.SiLU(), nn.Linear(time_dim * 2, time_dim * 2))
        self.label = LabelEmbedding(num_classes, time_dim * 2) if num_classes else None
        widths = [dim + cond_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.inject = nn.ModuleList(nn.Linear(time_dim * 2, b) for b in hidden)
        self.act = nn.SiLU()
        self.out = nn.Linear(widths[-1], dim)

    def embed(self, t: torch.Tensor, y: Optional[torch.Tensor], n: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=self.out.weight.device)
        e = self.time(sinusoidal_embedding(t.expand(n) if t.dim() == 0 else t, self.time_dim))
        if self.label is not None:
            e = e + self.label(self.label.null_labels(n, e.device) if y is None else y.long())
        return self.act(e)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        e = self.embed(t, y, len(x))
        h = x
        for lin, inj in zip(self.layers, self.inject):
            h = self.act(lin(h) + inj(e))
        return self.out(h)
