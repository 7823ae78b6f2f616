"""Pictures people would rather look at: sample grids, reconstructions, 2-D scatters, loss curves."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..io import atomic_write_bytes


def image_grid(x: torch.Tensor, nrow: Optional[int] = None, pad: Optional[int] = None, min_cell: int = 28,
               background: float = 0.85) -> np.ndarray:
    """N x C x H x W in [0, 1] -> one H' x W' x C uint8 array, cells upscaled to >= min_cell px.

    Cells are separated (and framed) by `pad` px of a light `background` (grey level in [0, 1]);
    pad=None: a quarter of the upscaled cell (at least 2 px), so small images read as separate
    images rather than as strips."""
    x = x.detach().float().cpu().clamp(0, 1)
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    scale = max(1, math.ceil(min_cell / max(h, w)))
    x = x.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    h, w = h * scale, w * scale
    if pad is None:
        pad = max(2, round(max(h, w) / 4))
    grid = torch.full((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad), float(background))
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(array: np.ndarray, path) -> Path:
    from PIL import Image

    if array.shape[-1] == 1:
        array = array[..., 0]
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def save_figure(fig, path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_2d(x: torch.Tensor, path, reference: Optional[torch.Tensor] = None, title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    if reference is not None:
        r = reference.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="#999999", alpha=0.4, label="data")
    p = x.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, c="#1f5fa8", alpha=0.6, label="samples")
    ax.set_aspect("equal")
    ax.set_title(title)
    if reference is not None:
        ax.legend(loc="upper right", markerscale=4, fontsize=8)
    return save_figure(fig, path)


def save_samples(x: torch.Tensor, spec, path, title: str = "", reference=None) -> Optional[Path]:
    """A grid for images, a scatter for 2-D vectors; other vectors get a .npy beside the path."""
    if spec.kind == "image":
        return save_png(image_grid(x), path)
    if spec.shape == (2,):
        return scatter_2d(x, path, reference, title)
    path = Path(path).with_suffix(".npy")
    buf = io.BytesIO()
    np.save(buf, x.detach().cpu().numpy())
    return atomic_write_bytes(path, buf.getvalue())


def save_reconstructions(x: torch.Tensor, x_hat: torch.Tensor, path) -> Path:
    """Originals in odd rows, reconstructions in the row beneath."""
    n = len(x)
    nrow = min(n, 16)
    rows = []
    for i in range(0, n, nrow):
        rows += [x[i:i + nrow], x_hat[i:i + nrow]]
    return save_png(image_grid(torch.cat(rows), nrow=nrow), path)


def resized_like(inputs: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Input images shown at the outputs' size (nearest neighbours, so low-resolution pixels stay
    visible) and channel count (grey <-> colour by the channel mean)."""
    from torch.nn import functional as F

    x = F.interpolate(inputs.detach().float().cpu(), size=tuple(like.shape[-2:]), mode="nearest")
    if x.shape[1] != like.shape[1]:
        x = x.mean(1, keepdim=True).expand(-1, like.shape[1], -1, -1)
    return x


def save_translations(inputs: torch.Tensor, outputs: torch.Tensor, targets: Optional[torch.Tensor], path) -> Path:
    """Image-to-image at a glance: inputs (top row), outputs (middle), targets (bottom), one column each."""
    rows = [resized_like(inputs, outputs), outputs.detach().float().cpu()]
    if targets is not None:
        rows.append(targets.detach().float().cpu())
    return save_png(image_grid(torch.cat(rows), nrow=len(outputs)), path)


def read_metrics(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():  # a line cut by a kill, or not JSON: skipped
        try:
            rec = json.loads(line) if line.strip() else None
        except (json.JSONDecodeError, RecursionError):
            rec = None
        if isinstance(rec, dict):
            out.append(rec)
    return out


def save_loss_curve(records: list[dict], path, title: str = "") -> Optional[Path]:
    """Every logged loss part against step (one panel per player for multi-player runs)."""
    keys = [k for k in records[0] if k not in ("step", "epoch", "time", "lr")] if records else []
    if len(records) < 2 or not keys:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in records]
    for k in keys:
        ax.plot(steps, [r.get(k, float("nan")) for r in records], label=k, lw=1.3)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
