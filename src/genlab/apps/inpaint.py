"""Inpainting: fill the unknown part of images with a trained model, keep the known part.

    out = inpaint(model, x, mask, **options)      mask: 1 = known pixel, 0 = to fill

Each family that can do it exposes `model.inpaint(x, mask, ...)` (ddpm: RePaint, Lugmayr et
al. 2022, with `jump` / `resample`; fm: guided integration) and this module only dispatches
and builds masks. No family names here.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError, unknown_name

MASKS = ("left", "right", "top", "bottom", "center", "random")


def make_mask(shape, kind: str = "right", fraction: float = 0.5, generator: Optional[torch.Generator] = None):
    """A 1 x C x H x W (or N x ... for "random") mask with 1 = known: `kind` names the part that is
    *missing* ("right": the right `fraction` of columns is to be filled; "center": a centred box
    of `fraction` of each side; "random": each pixel missing with probability `fraction`)."""
    if kind not in MASKS:
        raise unknown_name("mask", kind, MASKS)
    if not 0 < fraction < 1:
        raise ConfigError(f"mask fraction must be in (0, 1), got {fraction}")
    c, h, w = shape[-3:]
    m = torch.ones(1, c, h, w)
    kh, kw = max(1, round(h * fraction)), max(1, round(w * fraction))
    if kind == "right":
        m[..., w - kw:] = 0
    elif kind == "left":
        m[..., :kw] = 0
    elif kind == "bottom":
        m[..., h - kh:, :] = 0
    elif kind == "top":
        m[..., :kh, :] = 0
    elif kind == "center":
        t, left = (h - kh) // 2, (w - kw) // 2
        m[..., t:t + kh, left:left + kw] = 0
    else:
        n = shape[0] if len(shape) == 4 else 1
        m = (torch.rand(n, 1, h, w, generator=generator) >= fraction).float().expand(n, c, h, w)
    return m


def inpaint(model, x: torch.Tensor, mask: torch.Tensor, **options) -> torch.Tensor:
    """Fill x where mask == 0 (data space in, data space out) with the model's own method."""
    if not hasattr(model, "inpaint"):
        raise ConfigError(f"'{model.family}' cannot inpaint (no inpaint method)")
    if model.spec.kind != "image":
        raise ConfigError("inpainting is for image data")
    mask = torch.as_tensor(mask, dtype=x.dtype)
    try:
        torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError as e:
        raise ConfigError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}") from e
    out = model.inpaint(x, mask, **options)
    return out
