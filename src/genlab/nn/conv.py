"""Convolutional encoder and decoder for small images (8x8, 28x28, 32x32, any size).

Each stage halves (encoder) or doubles (decoder) the resolution with a stride-2
convolution; the decoder crops to the exact output size, so odd sizes work too.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .mlp import activation


def norm_layer(kind, channels: int) -> list[nn.Module]:
    """[] for None/False, BatchNorm2d for "batch", GroupNorm (8 groups) for "group" or True."""
    if not kind:
        return []
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    return [nn.GroupNorm(min(8, channels), channels)]


class ConvEncoder(nn.Module):
    """C x H x W -> features: [Conv(4, s2) -> act] per channel width, flatten, Linear."""

    def __init__(self, shape: Sequence[int], out_features: int, channels: Sequence[int] = (32, 64),
                 act: str = "leaky_relu", norm=None):
        super().__init__()
        c, h, w = shape
        least = 2 ** len(channels)  # every stride-2 stage needs a side of 2 or more
        if min(h, w) < least:
            raise ConfigError(f"net='conv' ({len(channels)} stride-2 stages) needs images of at least {least}x{least} "
                              f"pixels, these are {h}x{w}: use net='mlp' (net='auto' picks it for images under "
                              "16 pixels a side)")
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 4, stride=2, padding=1), *norm_layer(norm, ch), activation(act)]
            c, h, w = ch, (h - 2) // 2 + 1, (w - 2) // 2 + 1
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w, out_features)
        self.flat_features = c * h * w

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """features -> Linear -> [ConvTranspose(4, s2) -> act] per width -> Conv3x3 -> C x H x W."""

    def __init__(self, in_features: int, shape: Sequence[int], channels: Sequence[int] = (64, 32),
                 act: str = "relu", norm=None):
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        n = len(channels)
        self.h0, self.w0 = math.ceil(h / 2 ** n), math.ceil(w / 2 ** n)
        self.c0 = channels[0]
        self.head = nn.Linear(in_features, self.c0 * self.h0 * self.w0)
        layers: list[nn.Module] = [activation(act)]
        widths = [*channels, channels[-1]]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), *norm_layer(norm, b), activation(act)]
        layers.append(nn.Conv2d(widths[-1], c, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.head(z).reshape(len(z), self.c0, self.h0, self.w0)
        x = self.body(x)
        return x[:, :, : self.shape[1], : self.shape[2]]
