"""A small UNet for diffusion and flow matching on 8x8, 28x28 and 32x32 images (any size works).

    x -> conv -> [ResBlock x num_res_blocks (+ attention) -> downsample] per level
      -> ResBlock, attention, ResBlock
      -> [ResBlock x (num_res_blocks + 1) on concat(h, skip) (+ attention) -> upsample] per level
      -> GroupNorm, SiLU, conv -> same shape as x

Every ResBlock (GroupNorm + SiLU + 3x3 conv, twice) adds a projection of the embedding
e = MLP(sinusoidal(t)) + label_embedding(y) between its convolutions (Ho et al. 2020, built
on the Wide-ResNet / PixelCNN++ UNet). Self-attention runs at the lowest resolution (and in the
middle). Inputs whose side is not divisible by 2^(levels-1) are zero-padded and the output is
cropped back, so 28 px works with any depth.

The time t is a float tensor [N] at whatever scale the family chooses (DDPM: the integer step
0..T-1; flow matching: 1000 t). y is a LongTensor [N] in 0..num_classes, where num_classes is
the "null" label of classifier-free guidance; y=None means null. With cond_channels > 0 the
input carries a condition image in its last cond_channels channels (SR3-style conditioning;
nn/diffusion.py's Denoiser concatenates it) and the output has in_channels channels.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from .embed import LabelEmbedding, sinusoidal_embedding


def _norm(ch: int) -> nn.GroupNorm:
    groups = next(g for g in (8, 4, 2, 1) if ch % g == 0)
    return nn.GroupNorm(groups, ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))) + W e;  out = skip(x) + conv(dropout(SiLU(GN(h))))."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, output projection zero-initialised."""

    def __init__(self, ch: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, ch // head_dim)
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # n, heads, hw, c/heads
        return x + self.proj(a.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    """forward(x [N, C + cond_channels, H, W], t [N] float, y [N] long or None) -> [N, C, H, W].

    `mults` gives the width of each level as a multiple of `base` (one level per entry; all but
    the last halve the resolution). `attention=True` puts self-attention at the lowest
    resolution and in the middle block; a sequence of level indices chooses the levels; False
    turns it off. The defaults (~0.9M parameters) suit 8x8 digits on a CPU; they also run at
    28 and 32 px (28 -> 14 -> 7, 32 -> 16 -> 8).
    """

    def __init__(self, in_channels: int = 1, size: int = 8, base: int = 32, mults: Sequence[int] = (1, 2, 2),
                 num_res_blocks: int = 1, attention: Union[bool, Sequence[int]] = True, num_classes: int = 0,
                 dropout: float = 0.0, cond_channels: int = 0):
        super().__init__()
        if not mults or base < 1 or num_res_blocks < 1:
            raise ValueError("UNet needs base >= 1, num_res_blocks >= 1 and at least one level in mults")
        levels = len(mults)
        if attention is True:
            attn_levels = {levels - 1}
        elif attention is False or attention is None:
            attn_levels = set()
        else:
            attn_levels = {int(i) % levels for i in attention}
        self.in_channels, self.size, self.base, self.num_classes = in_channels, size, base, num_classes
        self.multiple = 2 ** (levels - 1)
        emb = 4 * base
        self.time = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = LabelEmbedding(num_classes, emb) if num_classes else None
        self.conv_in = nn.Conv2d(in_channels + cond_channels, base, 3, padding=1)

        chans = [base * m for m in mults]
        self.down = nn.ModuleList()
        skips, ch = [base], base
        for i, c in enumerate(chans):
            for _ in range(num_res_blocks):
                self.down.append(nn.ModuleList([ResBlock(ch, c, emb, dropout),
                                                Attention(c) if i in attn_levels else nn.Identity()]))
                ch = c
                skips.append(ch)
            if i < levels - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1, self.mid2 = ResBlock(ch, ch, emb, dropout), ResBlock(ch, ch, emb, dropout)
        self.mid_attn = Attention(ch) if attn_levels else nn.Identity()

        self.up = nn.ModuleList()
        for i in reversed(range(levels)):
            c = chans[i]
            for _ in range(num_res_blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(ch + skips.pop(), c, emb, dropout),
                                              Attention(c) if i in attn_levels else nn.Identity()]))
                ch = c
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        self.norm_out = _norm(ch)
        self.conv_out = _zero(nn.Conv2d(ch, in_channels, 3, padding=1))

    def embed(self, t: torch.Tensor, y: Optional[torch.Tensor], n: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=self.conv_in.weight.device)
        e = self.time(sinusoidal_embedding(t.expand(n) if t.dim() == 0 else t, self.base))
        if self.label is not None:
            e = e + self.label(self.label.null_labels(n, e.device) if y is None else y.long())
        return F.silu(e)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        n, _, H, W = x.shape
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        e = self.embed(t, y, n)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](h, e))
            else:
                h = layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, e)), e)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, hs.pop()], 1), e))
            else:
                h = layer(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        if ph or pw:
            out = out[:, :, ph // 2: ph // 2 + H, pw // 2: pw // 2 + W]
        return out
