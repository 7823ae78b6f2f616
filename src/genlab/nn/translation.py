"""Image-to-image parts (pix2pix, CycleGAN): a U-Net generator, a PatchGAN discriminator and an
image pool. The adversarial losses and two-player steps are in nn/gan.py.

    UNetGenerator        c [N, C_in, h, w] -> x [N, C_out, H, W] in [-1, 1]: the input resized to
                         H x W, an encoder-decoder with skip connections (Ronneberger et al. 2015,
                         Isola et al. 2017); dropout in the innermost decoder layers is its noise
    PatchDiscriminator   (x [, c]) -> a map of logits, one per overlapping patch (PatchGAN): the
                         losses average over patches, so D judges local texture and leaves the
                         global structure to the L1 term
    ImagePool            the last `size` generated images (Shrivastava et al. 2017); D is shown a
                         mix of new and old fakes, which damps oscillation (CycleGAN: 50)
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

NORMS = ("batch", "instance", "none")


def match_size(c: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """c resized to H x W = size: bilinear when it is smaller (a low-resolution input upsampled),
    area averaging when larger, unchanged when equal."""
    size = tuple(int(s) for s in size)
    if tuple(c.shape[-2:]) == size:
        return c
    if c.shape[-2] <= size[0] and c.shape[-1] <= size[1]:
        return F.interpolate(c, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(c, size=size, mode="area")


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    return nn.Identity()


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
    return norm


def unet_depth(size: Sequence[int]) -> int:
    """Halvings of the U-Net: down to a 2 x 2 bottleneck (8 -> 2 levels... 28 (padded to 32) -> 4)."""
    return max(1, min(8, math.ceil(math.log2(max(size))) - 1))


class UNetGenerator(nn.Module):
    """pix2pix's U-Net: forward(c) -> x, any input and output sizes (odd ones too).

        c -> resized to H x W -> padded (replicate) to a multiple of 2^depth
          -> encoder: depth x [LeakyReLU(0.2) -> conv 4x4 stride 2 -> norm]     (no norm on the first)
          -> decoder: depth x [ReLU -> transposed conv 4x4 stride 2 on concat(h, skip) -> norm
                               (-> dropout in the 3 innermost)]                (tanh after the last)
          -> cropped back to H x W

    Widths double per level from `base` up to 8 x base. The dropout (p = `dropout`) stays on when
    sampling (`noise_on`), as in pix2pix: it is the generator's only source of randomness. As in
    pix2pix (8 levels at 256 px) it sits in the innermost decoder layers only, never in the two that
    produce the half- and full-resolution maps: a shallow U-Net (8 px: 2 levels) has none, and is
    deterministic.
    """

    def __init__(self, in_channels: int, out_channels: int, size: Sequence[int], base: int = 32,
                 depth: Optional[int] = None, dropout: float = 0.5, norm: str = "batch"):
        super().__init__()
        self.size = tuple(int(s) for s in size)
        depth = unet_depth(self.size) if depth is None else int(depth)
        if depth < 1 or base < 1 or not 0 <= dropout < 1:
            raise ConfigError(f"the U-Net needs depth >= 1, base >= 1 and 0 <= dropout < 1 "
                              f"(got {depth}, {base}, {dropout})")
        check_norm(norm)
        self.depth, self.multiple = depth, 2 ** depth
        chans = [min(base * 2 ** i, base * 8) for i in range(depth)]
        self.down = nn.ModuleList()
        for i in range(depth):
            conv = nn.Conv2d(in_channels if i == 0 else chans[i - 1], chans[i], 4, 2, 1, bias=norm != "batch" or i == 0)
            self.down.append(nn.Sequential(conv) if i == 0 else
                             nn.Sequential(nn.LeakyReLU(0.2), conv, _norm(norm, chans[i])))
        self.up = nn.ModuleList()
        for j in reversed(range(depth)):
            c_in = chans[j] if j == depth - 1 else 2 * chans[j]
            if j == 0:
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()))
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, chans[j - 1], 4, 2, 1, bias=norm != "batch"),
                          _norm(norm, chans[j - 1])]
                if dropout and j >= max(2, depth - 3):
                    layers.append(nn.Dropout(dropout))
                self.up.append(nn.Sequential(*layers))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        H, W = self.size
        h = match_size(c, self.size)
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph or pw:
            h = F.pad(h, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
        skips = []
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        skips.pop()  # the bottleneck is h itself
        for k, layer in enumerate(self.up):
            h = layer(h if k == 0 else torch.cat([h, skips.pop()], 1))
        return h[:, :, ph // 2: ph // 2 + H, pw // 2: pw // 2 + W] if ph or pw else h


@contextlib.contextmanager
def noise_on(module: nn.Module, on: bool = True):
    """Inside: the module's Dropout layers are active (train mode) while the rest stays as it is,
    e.g. batch norm with its running statistics at sampling."""
    drops = [m for m in module.modules() if isinstance(m, nn.Dropout)]
    was = [m.training for m in drops]
    for m in drops:
        m.train(on)
    try:
        yield module
    finally:
        for m, w in zip(drops, was):
            m.train(w)


def patch_layers(size: Sequence[int]) -> int:
    """Stride-2 layers of the PatchGAN for images of this size: the most (up to 3, the 70 x 70
    PatchGAN of 256 px images) that leave at least 4 x 4 before the two stride-1 layers."""
    s = min(size)
    return max(n for n in range(4) if n == 0 or s // 2 ** n >= 4)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): forward(x, c=None) -> logits [N, 1, h', w'], one per patch.

        concat(x, c resized to x's size)   (conditional: D judges the pair (input, output))
          -> conv 4x4 stride 2 -> LeakyReLU(0.2)
          -> (n_layers - 1) x [conv 4x4 stride 2 -> norm -> LeakyReLU]
          -> conv 4x4 stride 1 -> norm -> LeakyReLU -> conv 4x4 stride 1 -> 1 channel

    `cond_channels = 0` is an unconditional D (CycleGAN). The losses of nn/gan.py take the map
    and average over patches and examples.
    """

    def __init__(self, channels: int, size: Sequence[int], cond_channels: int = 0, base: int = 64,
                 n_layers: Optional[int] = None, norm: str = "batch"):
        super().__init__()
        check_norm(norm)
        n = patch_layers(size) if n_layers is None else int(n_layers)
        if min(size) // 2 ** n < 3:
            raise ConfigError(f"a PatchGAN with {n} stride-2 layers needs images of at least {3 * 2 ** n} px, "
                              f"not {tuple(size)}")
        self.cond_channels = cond_channels
        layers: list[nn.Module] = []
        ch = channels + cond_channels
        for i in range(n):
            out = min(base * 2 ** i, base * 8)
            layers += [nn.Conv2d(ch, out, 4, 2, 1, bias=i == 0 or norm != "batch")]
            layers += ([] if i == 0 else [_norm(norm, out)]) + [nn.LeakyReLU(0.2)]
            ch = out
        out = min(base * 2 ** n, base * 8)
        layers += [nn.Conv2d(ch, out, 4, 1, 1, bias=norm != "batch"), _norm(norm, out), nn.LeakyReLU(0.2),
                   nn.Conv2d(out, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.cond_channels:
            if c is None:
                raise ConfigError("this PatchGAN judges (input, output) pairs: pass the input c")
            x = torch.cat([x, match_size(c, x.shape[-2:]).to(x.dtype)], 1)
        return self.net(x)


class ImagePool(nn.Module):
    """A history of generated images (Shrivastava et al. 2017; CycleGAN keeps 50).

    `query(fakes)` returns what the discriminator is shown: while the pool fills, the new images
    (which are stored); afterwards each new image is, with probability 1/2, swapped for a stored one
    drawn at random (the new image takes its place), else shown itself. The pool is a buffer, so a
    checkpoint resumes it exactly; draws use torch's global generator (saved by checkpoints).
    """

    def __init__(self, size: int, shape: Sequence[int]):
        super().__init__()
        if size < 0:
            raise ConfigError(f"pool_size must be >= 0, got {size}")
        self.size = int(size)
        self.register_buffer("images", torch.zeros(self.size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes.detach()
        out = fakes.detach().clone()
        for i in range(len(out)):
            k = int(self.count)
            if k < self.size:
                self.images[k] = out[i]
                self.count += 1
            elif torch.rand(()) < 0.5:
                j = int(torch.randint(self.size, ()))
                old = self.images[j].clone()
                self.images[j] = out[i]
                out[i] = old
        return out
