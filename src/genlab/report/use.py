"""Figures of the "use" verbs: anomaly scores (histogram + ROC), imputations and denoisings
(image rows side by side). Draws results; computes nothing but what the picture needs."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .figures import _plt, image_grid, save_figure, save_png


def anomaly_figure(scores_normal: Optional[np.ndarray], scores_anomalous: Optional[np.ndarray],
                   scores_unlabelled: Optional[np.ndarray], threshold: Optional[float], roc: Optional[tuple],
                   path, title: str = "") -> object:
    """Left: histogram of scores, normal vs anomalous (or all scores when unlabelled), the
    threshold as a line. Right (with labels): the ROC curve (fpr, tpr, auroc) with the chance line."""
    plt = _plt()
    ncols = 2 if roc is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.6))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    parts = [(s, lab, col) for s, lab, col in ((scores_normal, "normal", "tab:blue"),
                                                (scores_anomalous, "anomalous", "tab:red"),
                                                (scores_unlabelled, "all", "tab:grey")) if s is not None and len(s)]
    lo = min(float(np.min(s)) for s, _, _ in parts)
    hi = max(float(np.max(s)) for s, _, _ in parts)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 50)
    for s, lab, col in parts:
        ax.hist(s, bins=bins, alpha=0.55, density=True, label=f"{lab} ({len(s)})", color=col)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold")
    ax.set_xlabel("anomaly score (higher = more anomalous)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    if roc is not None:
        fpr, tpr, auc = roc
        ax = axes[1]
        ax.plot(fpr, tpr, color="tab:red", label=f"AUROC {auc:.3f}")
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def image_rows(columns: Sequence[torch.Tensor], path, max_rows: int = 32, per_row: int = 4) -> object:
    """A PNG of examples side by side, each as a tuple of cells (one per tensor in `columns`, e.g.
    masked | imputed | truth, or noisy | denoised | clean), `per_row` tuples across. Tensors with 3
    channels (e.g. `show_missing`) make the whole figure colour; grey images are repeated to RGB."""
    n = min(max_rows, *(len(c) for c in columns))
    cols = [c[:n].detach().float().cpu() for c in columns]
    if any(c.shape[1] == 3 for c in cols):
        cols = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in cols]
    cells = torch.stack(cols, 1).flatten(0, 1)
    return save_png(image_grid(cells, nrow=len(columns) * min(per_row, n)), path)


def show_missing(x: torch.Tensor, mask: torch.Tensor, colour=(0.85, 0.15, 0.15)) -> torch.Tensor:
    """Images with their missing pixels (mask == 0) painted in `colour` (red), as RGB, for figures."""
    m = torch.as_tensor(mask).bool().expand_as(x).all(1, keepdim=True)  # known in every channel
    rgb = torch.nan_to_num(x).expand(-1, 3, -1, -1) if x.shape[1] == 1 else torch.nan_to_num(x)
    paint = torch.tensor(colour, dtype=x.dtype).view(1, 3, 1, 1).expand_as(rgb)
    return torch.where(m, rgb, paint)
