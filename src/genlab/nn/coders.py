"""Encoder and decoder networks for latent-variable families (AE, VAE), MLP or conv,
optionally conditioned on a label (one-hot appended to the input; for conv encoders
as constant feature maps)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .conv import ConvDecoder, ConvEncoder
from .embed import one_hot
from .mlp import MLP


def resolve_net(net: str, spec) -> str:
    """'auto' -> conv for images of at least 16 px a side, mlp otherwise."""
    if net == "auto":
        return "conv" if spec.kind == "image" and min(spec.shape[1:]) >= 16 else "mlp"
    if net == "conv" and spec.kind != "image":
        raise ValueError(f"net='conv' needs image data, and '{spec.name}' holds vectors of {spec.dim} values: "
                         "use net='mlp' (or net='auto')")
    if net not in ("mlp", "conv"):
        raise ValueError(f"net must be auto, mlp or conv, not {net!r}")
    return net


class Encoder(nn.Module):
    """x (, y) -> out_features."""

    def __init__(self, spec, out_features: int, net: str, hidden: Sequence[int], channels: Sequence[int],
                 act: str, num_classes: int = 0):
        super().__init__()
        self.net, self.k = resolve_net(net, spec), num_classes
        if self.net == "conv":
            c, h, w = spec.shape
            self.body = ConvEncoder((c + num_classes, h, w), out_features, channels, "leaky_relu")
        else:
            self.body = MLP(spec.dim + num_classes, out_features, hidden, act)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        c = one_hot(y, self.k, len(x), x.device)
        if self.net == "conv":
            c = c[:, :, None, None].expand(-1, -1, *x.shape[2:])
            return self.body(torch.cat([x, c], 1))
        return self.body(torch.cat([x.flatten(1), c], 1))


class Decoder(nn.Module):
    """z (, y) -> tensor of `spec.shape` (unbounded: logits or means)."""

    def __init__(self, spec, in_features: int, net: str, hidden: Sequence[int], channels: Sequence[int],
                 act: str, num_classes: int = 0):
        super().__init__()
        self.net, self.k, self.shape = resolve_net(net, spec), num_classes, tuple(spec.shape)
        if self.net == "conv":
            self.body = ConvDecoder(in_features + num_classes, spec.shape, tuple(reversed(channels)), "relu")
        else:
            self.body = MLP(in_features + num_classes, spec.dim, tuple(reversed(hidden)), act)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.body(torch.cat([z, one_hot(y, self.k, len(z), z.device)], 1))
        return h.reshape(len(z), *self.shape)
