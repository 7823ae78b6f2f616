"""Built-in image-to-image tasks derived from data genlab already has, so everything runs offline.

Paired (x = the target, c = the input; labels are x's, so the shipped classifier scores outputs):

    mnist-sr        4x super-resolution: 7x7 area-downsampled digit -> 28x28 digit
    mnist-edges     Sobel edge map (binary) -> digit
    mnist-inpaint   digit with its centre 14x14 square masked (set to 0.5) -> digit
    (digits-sr, 4x4 -> 8x8, is in data/images.py)

Unpaired (`DataSpec.unpaired`, for CycleGAN): the training x and c are two collections with no
correspondence, drawn from disjoint halves of the training split; the test split is paired
(c[i] is x[i] in the other domain), so translations can be scored against their targets.

    mnist-inverted    A = inverted MNIST (1 - x), B = MNIST: x from the second half of the
                      training split, c from the (inverted) first half
    digits-inverted   the same on scikit-learn's 8x8 digits (for the test suite)
    mnist-fashion     A = Fashion-MNIST, B = MNIST: two unrelated collections, the test split
                      unpaired too (`paired_test=False`: outputs are scored as a distribution)

Domain A is the condition c, domain B the target x; `domain="mnist"` / `"digits"` says the targets
are digits of that set, so evaluation uses its shipped classifier.
"""

from __future__ import annotations

import numpy as np
import torch

from .images import area_downsample, digits
from .registry import register_dataset
from .spec import DataSpec, Dataset

EDGE_THRESHOLD = 2.0  # Sobel gradient magnitude (of images in [0, 1]) above which a pixel is an edge
MASK_VALUE = 0.5      # what a masked pixel of an inpainting input holds (neither ink nor background)


def _mnist():
    from .idx import load_idx_set

    return load_idx_set("mnist")


def _paired(d: Dataset, name: str, c_train: torch.Tensor, c_test: torch.Tensor) -> Dataset:
    spec = DataSpec("image", d.spec.shape, d.spec.num_classes, d.spec.class_names, name=name, levels=d.spec.levels,
                    condition_shape=tuple(c_train.shape[1:]), condition_type="image", domain=d.spec.name)
    return Dataset(d.train, d.test, spec, d.train_labels, d.test_labels, location=d.location,
                   train_cond=c_train.contiguous(), test_cond=c_test.contiguous())


def sobel_edges(x: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Binary edge maps of images N x C x H x W in [0, 1]: the Sobel gradient magnitude
    sqrt(G_h^2 + G_v^2) (scipy.ndimage, each image on its own, reflected borders) above `threshold`."""
    from scipy import ndimage

    a = x.numpy().astype(np.float64)
    kh = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)[None, None]  # d/dh, smoothed along w
    gh = ndimage.correlate(a, kh, mode="reflect")
    gv = ndimage.correlate(a, kh.transpose(0, 1, 3, 2), mode="reflect")
    return torch.from_numpy((np.hypot(gh, gv) > threshold).astype(np.float32))


def mask_centre(x: torch.Tensor, fraction: float = 0.5, value: float = MASK_VALUE) -> torch.Tensor:
    """x with its centre square (side = fraction of the image side) set to `value`."""
    out = x.clone()
    h, w = x.shape[-2:]
    sh, sw = int(round(h * fraction)), int(round(w * fraction))
    top, left = (h - sh) // 2, (w - sw) // 2
    out[..., top:top + sh, left:left + sw] = value
    return out


@register_dataset("mnist-sr", "paired 4x super-resolution of MNIST: 7x7 area-downsampled input -> 28x28", "image",
                  locate=lambda: "derived from mnist")
def mnist_sr() -> Dataset:
    d = _mnist()
    return _paired(d, "mnist-sr", area_downsample(d.train, 4), area_downsample(d.test, 4))


@register_dataset("mnist-edges", "paired MNIST: binary Sobel edge map -> 28x28 digit", "image",
                  locate=lambda: "derived from mnist")
def mnist_edges() -> Dataset:
    d = _mnist()
    return _paired(d, "mnist-edges", sobel_edges(d.train), sobel_edges(d.test))


@register_dataset("mnist-inpaint", "paired MNIST: digit with its centre 14x14 square masked -> the whole digit",
                  "image", locate=lambda: "derived from mnist")
def mnist_inpaint() -> Dataset:
    d = _mnist()
    return _paired(d, "mnist-inpaint", mask_centre(d.train), mask_centre(d.test))


def unpaired_inverted(d: Dataset, name: str) -> Dataset:
    """Unpaired A = inverted, B = plain from disjoint halves of d's training split; a paired test split."""
    half = len(d.train) // 2
    spec = DataSpec("image", d.spec.shape, d.spec.num_classes, d.spec.class_names, name=name, levels=d.spec.levels,
                    condition_shape=tuple(d.spec.shape), condition_type="image", domain=d.spec.name, unpaired=True)
    return Dataset(d.train[half:2 * half].contiguous(), d.test, spec, d.train_labels[half:2 * half].contiguous(),
                   d.test_labels, location=d.location, train_cond=(1 - d.train[:half]).contiguous(),
                   test_cond=(1 - d.test).contiguous())


@register_dataset("mnist-inverted", "unpaired MNIST: inverted digits (A) <-> digits (B) from disjoint halves of the "
                  "training split (CycleGAN); paired test split", "image", locate=lambda: "derived from mnist")
def mnist_inverted() -> Dataset:
    return unpaired_inverted(_mnist(), "mnist-inverted")


@register_dataset("digits-inverted", "unpaired 8x8 digits: inverted (A) <-> plain (B) from disjoint halves of the "
                  "training split; paired test split; no download", "image",
                  locate=lambda: "embedded in scikit-learn")
def digits_inverted(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    return unpaired_inverted(digits(test_fraction, seed), "digits-inverted")


@register_dataset("mnist-fashion", "unpaired Fashion-MNIST (A) <-> MNIST (B) (CycleGAN): two unrelated collections, "
                  "unpaired test split too", "image", locate=lambda: "derived from mnist and fashion-mnist")
def mnist_fashion() -> Dataset:
    from .idx import load_idx_set

    b, a = _mnist(), load_idx_set("fashion-mnist")
    spec = DataSpec("image", b.spec.shape, b.spec.num_classes, b.spec.class_names, name="mnist-fashion",
                    levels=b.spec.levels, condition_shape=tuple(a.spec.shape), condition_type="image", domain="mnist",
                    unpaired=True, paired_test=False)
    return Dataset(b.train, b.test, spec, b.train_labels, b.test_labels, location=b.location,
                   train_cond=a.train, test_cond=a.test)
