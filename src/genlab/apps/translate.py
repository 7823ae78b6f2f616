"""Translate images with a trained image-to-image run (pix2pix, cyclegan, a conditional ddpm / fm on
paired data): inputs in, outputs out, files written.

    result = translate("runs/p2p", ["a.png", "b.png"], out="translated")   # or one .npy of N inputs

DIR/ gets one PNG per input (`<name>.png`, the output), `grid.png` (rows of input | output, the input
upsampled to the output's size with nearest neighbours so its pixels stay visible) and
`outputs.npy` (N x C x H x W floats in [0, 1]). Everything is checked before anything is written.
No family is named here: any model conditioned on a tensor (`condition_kind == "tensor"`) works;
one whose inputs depend on a sampling option (cyclegan's direction="BA") says so through
`translation_input_shape(**options)`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError


def input_shape(model, options: dict) -> tuple:
    """The shape of one input the model translates under these sampling options."""
    if hasattr(model, "translation_input_shape"):
        keys = [k for k in ("direction",) if k in options]
        return tuple(model.translation_input_shape(**{k: options[k] for k in keys}))
    return tuple(model.spec.condition_shape)


def load_inputs(paths: Sequence, shape: tuple) -> tuple[torch.Tensor, list[str]]:
    """Inputs [N, *shape] and a name per input, from image files and / or .npy files (a .npy may hold
    one input or N). Every file is checked against `shape` (one-line errors)."""
    from ..data.paired import load_conditions

    if not paths:
        raise ConfigError("give at least one input (an image file or a .npy)")
    xs, names = [], []
    for p in paths:
        p = Path(p)
        c = load_conditions(p, shape)
        xs.append(c)
        names += [p.stem] if len(c) == 1 else [f"{p.stem}-{i:04d}" for i in range(len(c))]
    seen: dict = {}
    for i, n in enumerate(names):  # two inputs called the same get distinct files
        k = seen.get(n, 0)
        seen[n] = k + 1
        if k:
            names[i] = f"{n}-{k}"
    return torch.cat(xs), names


def side_by_side(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Rows for a grid: the input (at the output's size and channels, nearest neighbours) | the output."""
    from ..report.figures import resized_like

    x = resized_like(inputs, outputs)
    gap = torch.ones(len(x), outputs.shape[1], outputs.shape[2], max(1, outputs.shape[3] // 8))
    return torch.cat([x, gap, outputs.float()], 3)


def translate(run, inputs: Sequence, out, *, seed: int = 0, model=None, **options) -> dict:
    """Translate `inputs` (paths) with the run's model into directory `out`; returns
    {"outputs": tensor, "files": [...], "grid": path, "npy": path}."""
    from ..io import atomic_write_bytes
    from ..models.base import load
    from ..report.figures import image_grid, save_png

    model = load(run) if model is None else model
    if model.condition_kind != "tensor" or model.spec.kind != "image":
        raise ConfigError(f"{run} is not an image-to-image run: its '{model.family}' model is conditioned on "
                          f"{model.condition_kind if model.condition_kind != 'none' else 'nothing'} "
                          "(train pix2pix, cyclegan, or ddpm / fm with conditional=true on paired data)")
    model.check_sample_options(options, "translates")
    shape = input_shape(model, options)
    if len(shape) != 3:
        raise ConfigError(f"this run's inputs are not images (shape {shape})")
    x, names = load_inputs(inputs, shape)
    g = torch.Generator(device=model.device).manual_seed(seed)
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), 500):
            b = x[i:i + 500].to(model.device)
            outs.append(model.sample(len(b), b, generator=g, **options).cpu())
    y = torch.cat(outs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, img in zip(names, y):
        files.append(save_png(image_grid(img[None], nrow=1, pad=0, min_cell=1), out / f"{name}.png"))
    grid = save_png(image_grid(side_by_side(x, y), nrow=1), out / "grid.png")
    buf = io.BytesIO()
    np.save(buf, y.numpy())
    npy = atomic_write_bytes(out / "outputs.npy", buf.getvalue())
    return {"outputs": y, "files": files, "grid": grid, "npy": npy, "names": names}


__all__ = ["translate", "load_inputs", "side_by_side", "input_shape", "DataError"]
