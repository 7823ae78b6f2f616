"""Figures the comparison page adds to each run's own: a 2-D map of latent codes, and density
panels for 2-D data (the model's exp(log p) on a grid where it has log_prob, else a histogram
of its samples), beside the same panels for the data.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .figures import _plt, image_grid, save_figure, save_png

GRID = 120            # density panels: GRID x GRID points
HIST_SAMPLES = 20000  # samples histogrammed for families without log_prob
MIN_GRID = 40         # coarsest grid drawn; a slower log_prob gets the sample histogram instead


@torch.no_grad()
def encode_codes(model, x: torch.Tensor, y: Optional[torch.Tensor] = None, batch: int = 500) -> torch.Tensor:
    """model.encode(x, y) over x in batches, flattened to N x d (the first element if encode returns a tuple)."""
    out = []
    for i in range(0, len(x), batch):
        b, yb = x[i:i + batch], None if y is None else y[i:i + batch].to(model.device)
        z = model.encode(b.to(model.device), yb)
        if isinstance(z, (tuple, list)):
            z = z[0]
        out.append(z.detach().float().cpu().reshape(len(b), -1))
    return torch.cat(out)


def latent_map(model, data, path, n: int = 2000, seed: int = 0, seconds: Optional[float] = None) -> Optional[dict]:
    """Scatter of the test set's codes in 2-D (PCA of the codes when they have more than 2
    dimensions), coloured by class. None when the model does not encode. With `seconds`, fewer
    test examples (at least 100) are encoded when encoding them all would take longer."""
    if not hasattr(model, "encode"):
        return None
    n = min(n, len(data.test))
    cond = data.conditions("test", model.condition_kind) if model.condition_kind != "none" else None
    c = (lambda i, j: None) if cond is None else (lambda i, j: cond[i:j])
    if seconds:
        encode_codes(model, data.test[:8], c(0, 8))  # warm-up: the first call pays one-off costs
        t = time.perf_counter()
        encode_codes(model, data.test[8:16], c(8, 16))
        per = (time.perf_counter() - t) / 8
        n = min(n, max(100, int(seconds / max(per, 1e-12))))
    x, y = data.test[:n], (None if data.test_labels is None else data.test_labels[:n])
    z = encode_codes(model, x, c(0, n)).numpy().astype(np.float64)
    d = z.shape[1]
    if d > 2:
        from sklearn.decomposition import PCA

        pca = PCA(2, random_state=seed).fit(z)
        z2 = pca.transform(z)
        how = f"PCA of the {d}-D codes ({100 * pca.explained_variance_ratio_.sum():.0f}% of their variance)"
        axes = ("PC 1", "PC 2")
    elif d == 2:
        z2, how, axes = z, "2-D codes", ("z1", "z2")
    else:
        z2 = np.stack([z[:, 0], np.random.default_rng(seed).uniform(-0.5, 0.5, len(z))], 1)
        how, axes = "1-D codes (vertical jitter)", ("z", "jitter")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4))
    if y is None:
        ax.scatter(z2[:, 0], z2[:, 1], s=4, c="#1f5fa8", alpha=0.7)
    else:
        k = data.spec.num_classes
        cmap = plt.get_cmap("tab10" if k <= 10 else "tab20" if k <= 20 else "viridis")
        yn = y.numpy()
        if k <= 10:
            for c in range(k):
                m = yn == c
                ax.scatter(z2[m, 0], z2[m, 1], s=4, color=cmap(c), alpha=0.8, label=data.spec.class_names[c])
            ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        else:
            sc = ax.scatter(z2[:, 0], z2[:, 1], s=4, c=yn, cmap=cmap, alpha=0.8)
            fig.colorbar(sc, ax=ax, label="class")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"{model.family}: codes of {len(z)} test examples", fontsize=9)
    return {"path": save_figure(fig, path), "how": how, "dim": d}


def plot_limits(data, pad: float = 0.1) -> tuple[float, float, float, float]:
    """A square window around the 2-D data (0.5% to 99.5% quantiles, padded)."""
    x = data.train.double()
    lo, hi = torch.quantile(x, 0.005, dim=0), torch.quantile(x, 0.995, dim=0)
    c, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + pad)
    return (float(c[0] - half), float(c[0] + half), float(c[1] - half), float(c[1] + half))


def _grid(lims, size=GRID):
    xs = torch.linspace(lims[0], lims[1], size)
    ys = torch.linspace(lims[2], lims[3], size)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def _heatmap(values: np.ndarray, lims, path, title: str) -> Path:
    from matplotlib.colors import PowerNorm

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    v = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    ax.imshow(v, origin="lower", extent=lims, cmap="magma", norm=PowerNorm(0.5, vmin=0, vmax=max(v.max(), 1e-12)),
              interpolation="nearest", aspect="equal")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


@torch.no_grad()
def grid_size(model, lims, seconds: Optional[float], probe: int = 64) -> int:
    """The largest grid (<= GRID a side) whose log_prob fits in `seconds`, from timing `probe` points."""
    if not seconds:
        return GRID
    pts = _grid(lims, 8)[:probe].to(model.device)
    t = time.perf_counter()
    model.log_prob(pts, **model.preview_log_prob_options)
    per = (time.perf_counter() - t) / len(pts)
    return int(min(GRID, math.sqrt(seconds / max(per, 1e-12))))


@torch.no_grad()
def model_density(model, lims, size=GRID, batch: int = 2048) -> np.ndarray:
    """exp(log_prob) on a size x size grid (rows = y)."""
    pts = _grid(lims, size)
    kw = model.preview_log_prob_options
    lp = torch.cat([model.log_prob(b.to(model.device), **kw).float().cpu() for b in pts.split(batch)])
    return lp.exp().reshape(size, size).numpy()


def histogram_density(x: torch.Tensor, lims, size=GRID) -> np.ndarray:
    """Normalised 2-D histogram of points (rows = y), a density estimate in the plot's units."""
    p = x.detach().float().cpu().numpy()
    h, _, _ = np.histogram2d(p[:, 1], p[:, 0], bins=size, range=[lims[2:], lims[:2]], density=True)
    return h


SCATTER_SAMPLES = 2000


def scatter_panel(x: torch.Tensor, lims, path, title: str, reference: Optional[torch.Tensor] = None) -> Path:
    """Points (blue) over reference points (grey) on the fixed plot window."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    if reference is not None:
        r = reference.detach().float().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="#8c8c8c", alpha=0.35, linewidths=0)
    p = x.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, c="#1f5fa8", alpha=0.6, linewidths=0)
    ax.set_xlim(lims[0], lims[1])
    ax.set_ylim(lims[2], lims[3])
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


@torch.no_grad()
def sample_scatter(model, data, lims, path, seed: int = 0) -> dict:
    """SCATTER_SAMPLES samples over as many test points, on the plot window."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    x = model.sample(SCATTER_SAMPLES, generator=g)
    n_out = int(((x[:, 0] < lims[0]) | (x[:, 0] > lims[1]) | (x[:, 1] < lims[2]) | (x[:, 1] > lims[3])).sum())
    how = f"{SCATTER_SAMPLES:,} samples (blue) over test points (grey)"
    if n_out:
        how += f"; {n_out} outside the window"
    return {"path": scatter_panel(x, lims, path, f"{model.family}: samples", data.test[:SCATTER_SAMPLES]),
            "how": how}


@torch.no_grad()
def density_panel(model, lims, path, seed: int = 0, seconds: Optional[float] = None) -> dict:
    """The model's density on the plot window: exp(log p) where it has log_prob, else a
    histogram of HIST_SAMPLES samples. With `seconds`, the grid is made coarser so that
    log_prob fits in that time; below MIN_GRID points a side, the histogram is drawn instead."""
    size = grid_size(model, lims, seconds) if hasattr(model, "log_prob") else 0
    if size >= MIN_GRID:
        kind = f"exp(log p), {model.likelihood_kind or 'exact'}"
        if size < GRID:
            kind += f", {size}x{size} grid (time limit)"
        values = model_density(model, lims, size)
    else:
        g = torch.Generator(device=model.device).manual_seed(seed)
        values = histogram_density(model.sample(HIST_SAMPLES, generator=g), lims)
        why = "log_prob too slow for a grid" if hasattr(model, "log_prob") else "no log_prob"
        kind = f"histogram of {HIST_SAMPLES:,} samples ({why})"
    return {"path": _heatmap(values, lims, path, f"{model.family}: {kind}"), "how": kind}


def data_panels(data, out_dir, lims=None) -> dict:
    """Reference figures for the data itself: a grid of test images, or for 2-D data a scatter
    of the test split and its density (the true one where known, else a histogram)."""
    out_dir = Path(out_dir)
    figs = {}
    if data.spec.kind == "image":
        figs["samples"] = {"path": save_png(image_grid(data.test[:64]), out_dir / "data-samples.png"),
                           "how": "64 test examples"}
    elif data.spec.shape == (2,):
        lims = lims or plot_limits(data)
        figs["samples"] = {"path": scatter_panel(data.test[:SCATTER_SAMPLES], lims, out_dir / "data-samples.png",
                                                 f"{data.spec.name}: test points"),
                           "how": f"{min(SCATTER_SAMPLES, len(data.test)):,} test points"}
        if data.log_density is not None:
            values = data.log_density(_grid(lims)).exp().reshape(GRID, GRID).numpy()
            how = "true density"
        else:
            values, how = histogram_density(data.train, lims), f"histogram of {len(data.train):,} training points"
        figs["density"] = {"path": _heatmap(values, lims, out_dir / "data-density.png", f"data: {how}"),
                           "how": how}
    return figs
