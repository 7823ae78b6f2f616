"""Masked and gated convolutions for autoregressive image models (PixelCNN).

Pixels are ordered in raster order, i = (row, col) -> row * W + col. A network is causal
when its output at pixel i depends only on input pixels j < i, so it can parameterise
p(x_i | x_<i) for every i in one pass (van den Oord et al. 2016a, "Pixel Recurrent Neural
Networks"):

    MaskedConv2d      a k x k convolution whose kernel is zeroed at and after the centre in
                      raster order: type "A" (first layer) also zeroes the centre, type "B"
                      (later layers) keeps it. A stack of them is causal but has a blind spot:
                      pixels up and to the right beyond the kernel's half-width are never seen.

    GatedBlock        the gated PixelCNN layer (van den Oord et al. 2016b, "Conditional Image
                      Generation with PixelCNN Decoders"), two stacks and no blind spot:
                        vertical   a k x k kernel masked below the centre row: all rows above;
                        horizontal a 1 x k kernel masked right of the centre: the row so far;
                      the vertical features feed the horizontal stack through a 1 x 1 conv,
                      and the gated activation with a class-conditional bias h is

                        y = tanh(W_f * x + V_f h) . sigmoid(W_g * x + V_g h)

                      with a residual connection on the horizontal stack (type "B" blocks).

Causality of the vertical->horizontal link: the paper shifts the vertical stack down by one
row before adding it to the horizontal stack. Here the shift is made once, at the input: the
first (type "A") vertical convolution also masks its centre row, so vertical features at row r
depend only on rows < r in every layer, and the link can add them at the same position.

Channels: all channels of a pixel are predicted together from the past pixels and are
conditionally independent given them (no R -> G -> B ordering inside a pixel); the image is
autoregressive in raster order over (row, col). For grayscale data the two coincide.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


def raster_mask(k: int, mask_type: str) -> torch.Tensor:
    """k x k mask of the original PixelCNN: ones strictly before the centre in raster order,
    and at the centre for type "B"."""
    m = torch.zeros(k, k)
    m[: k // 2] = 1
    m[k // 2, : k // 2 + (mask_type == "B")] = 1
    return m


def vertical_mask(k: int, mask_type: str) -> torch.Tensor:
    """k x k mask of the vertical stack: the rows above the centre, and the centre row for type "B"."""
    m = torch.zeros(k, k)
    m[: k // 2 + (mask_type == "B")] = 1
    return m


def horizontal_mask(k: int, mask_type: str) -> torch.Tensor:
    """1 x k mask of the horizontal stack: the pixels left of the centre, and the centre for type "B"."""
    m = torch.zeros(1, k)
    m[0, : k // 2 + (mask_type == "B")] = 1
    return m


def _check_type(mask_type: str, k: int) -> None:
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', not {mask_type!r}")
    if k < 1 or k % 2 == 0 or (mask_type == "A" and k < 3):
        raise ValueError(f"kernel size must be odd and >= 1 (>= 3 for type A), got {k}")


class MaskedConv2d(nn.Conv2d):
    """Convolution with a fixed 0/1 mask on a kh x kw kernel centred on the output pixel, same-size
    output (stride 1).

    `mask` is a kh x kw tensor, or "A" / "B" for the k x k raster masks of the original PixelCNN.
    Only the bounding box of the mask's ones is stored and computed (the vertical stack's kernel
    is (k//2 + 1) x k, not k x k), with the input padded so that the box stays where the mask puts it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, mask="B", bias: bool = True):
        if isinstance(mask, str):
            _check_type(mask, kernel_size)
            mask = raster_mask(kernel_size, mask)
        rows, cols = mask.nonzero(as_tuple=True)
        if len(rows) == 0:
            raise ValueError("a mask with no ones sees nothing")
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        box = mask[r0:r1 + 1, c0:c1 + 1]
        super().__init__(in_channels, out_channels, tuple(box.shape), bias=bias)
        ch, cw = mask.shape[0] // 2, mask.shape[1] // 2  # the centre
        self.pads = (cw - c0, c1 - cw, ch - r0, r1 - ch)  # left, right, top, bottom (negative: crop)
        self.register_buffer("mask", box.to(self.weight.dtype)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.pads), self.weight * self.mask, self.bias)


class GatedBlock(nn.Module):
    """One gated PixelCNN layer over a (vertical, horizontal) pair of feature maps.

        v' = gate(Wv * v + V h)
        h' = h + W_1x1 dropout(gate(Wh * h + W_link (Wv * v) + V h))     (residual: type "B" only)
        gate(a) = tanh(a_f) . sigmoid(a_g)     (a split in two halves along channels)

    `cond_dim` > 0 adds the class-conditional bias V h for a condition vector h [N, cond_dim]
    (e.g. a one-hot label): one bias per feature map, the same at every pixel.
    Type "A" (first layer: v = h = the image) excludes the centre row from the vertical stack
    and the centre pixel from the horizontal one, and has no residual (it would pass x_i to i).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3, mask_type: str = "B",
                 cond_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        _check_type(mask_type, kernel_size)
        self.residual = mask_type == "B" and in_channels == channels
        k = kernel_size
        self.vertical = MaskedConv2d(in_channels, 2 * channels, mask=vertical_mask(k, mask_type))
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, mask=horizontal_mask(k, mask_type))
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)  # vertical -> horizontal (same position)
        self.out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Linear(cond_dim, 4 * channels, bias=False) if cond_dim else None
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def gate(a: torch.Tensor) -> torch.Tensor:
        f, g = a.chunk(2, 1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: Optional[torch.Tensor] = None):
        fv = self.vertical(v)
        fh = self.horizontal(h) + self.link(fv)
        if self.cond is not None and cond is not None:
            bv, bh = self.cond(cond)[:, :, None, None].chunk(2, 1)
            fv, fh = fv + bv, fh + bh
        h_out = self.out(self.dropout(self.gate(fh)))
        return self.gate(fv), (h + h_out if self.residual else h_out)


class GatedPixelCNN(nn.Module):
    """A causal network: image [N, C, H, W] -> logits [N, C, out_per_channel, H, W], where the
    outputs at pixel (r, c) depend only on the pixels before it in raster order (and on `cond`).

    One type "A" gated block (kernel `first_kernel`), `n_layers` type "B" blocks (kernel
    `kernel_size`), then ReLU, 1 x 1 conv, ReLU, 1 x 1 conv on the horizontal stack.
    """

    def __init__(self, in_channels: int, out_per_channel: int, channels: int = 64, n_layers: int = 6,
                 kernel_size: int = 3, first_kernel: int = 7, cond_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.out_per_channel = in_channels, out_per_channel
        self.first = GatedBlock(in_channels, channels, first_kernel, "A", cond_dim)
        self.blocks = nn.ModuleList(GatedBlock(channels, channels, kernel_size, "B", cond_dim, dropout)
                                    for _ in range(n_layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, in_channels * out_per_channel, 1))

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        v, h = self.first(x, x, cond)
        for block in self.blocks:
            v, h = block(v, h, cond)
        out = self.head(h)
        n, _, H, W = out.shape
        return out.reshape(n, self.in_channels, self.out_per_channel, H, W)
