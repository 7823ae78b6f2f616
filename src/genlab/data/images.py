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


def area_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean over factor x factor blocks (area interpolation): the low-resolution input of a
    super-resolution pair."""
    return torch.nn.functional.avg_pool2d(x, factor)


@register_dataset("digits-sr", "paired 2x super-resolution of the digits: 4x4 area-downsampled input -> 8x8; "
                  "no download", "image", locate=lambda: "embedded in scikit-learn")
def digits_sr(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The digits (same split) with their 2x area-downsampled 4x4 versions as conditions."""
    d = digits(test_fraction, seed)
    spec = DataSpec("image", d.spec.shape, 10, d.spec.class_names, name="digits-sr", levels=17,
                    condition_shape=(1, 4, 4), condition_type="image", domain="digits")
    return Dataset(d.train, d.test, spec, d.train_labels, d.test_labels, location=d.location,
                   train_cond=area_downsample(d.train, 2), test_cond=area_downsample(d.test, 2))
