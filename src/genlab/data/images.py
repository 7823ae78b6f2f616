"""Image data sets: scikit-learn's embedded digits (no download)."""

from __future__ import annotations

import numpy as np
import torch

from .registry import register_dataset
from .spec import DataSpec, Dataset


@register_dataset("digits", "scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes); no download",
                  "image", locate=lambda: "embedded in scikit-learn")
def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """8x8 digits scaled from 0..16 to [0, 1]; a fixed, seeded, stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    spec = DataSpec("image", (1, 8, 8), 10, [str(i) for i in range(10)], name="digits", levels=17)
    return Dataset(torch.from_numpy(xtr), torch.from_numpy(xte), spec,
                   torch.from_numpy(ytr), torch.from_numpy(yte), location="embedded in scikit-learn")
