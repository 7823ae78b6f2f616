"""2-D toy distributions with exact samplers and, where known, exact log densities.

Every set is float32 N x 2 with `sampler(n, generator=None)`; train and test are
drawn from the same sampler with seeds `2 * seed` and `2 * seed + 1`. `sigma` is
the standard deviation of the Gaussian noise, in the output coordinates.

- `8gaussians`: 8 Gaussians, means on the unit circle, sigma 0.01 (PacGAN's ring).
- `25gaussians`: 25 Gaussians, means {-4, -2, 0, 2, 4}^2, sigma 0.05 (PacGAN's grid).
- `checkerboard`: uniform on the 8 "black" 2 x 2 squares of a 4 x 4 board on
  [-4, 4)^2 (square (i, j) = [2i, 2i+2) x [2j, 2j+2) is filled when i + j is even),
  as in FFJORD; density 1/32 there, 0 elsewhere.
- `moons`, `circles`, `swissroll`, `spirals`: FFJORD's shapes (no closed-form density).

The mixtures label each point with its component (8 / 25 classes); `mode_centers`
gives the means.
"""

from __future__ import annotations

import math

import torch

from ..errors import unknown_name
from .registry import register_dataset
from .spec import DataSpec, Dataset

_ANGLES = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
_CENTERS = {
    "8gaussians": torch.stack([_ANGLES.cos(), _ANGLES.sin()], 1).float(),
    "25gaussians": torch.cartesian_prod(torch.arange(-4.0, 5.0, 2.0), torch.arange(-4.0, 5.0, 2.0)),
}
# lower-left corners of the filled checkerboard squares
_CELLS = torch.tensor([[2.0 * i, 2.0 * j] for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0])


def mode_centers(name: str) -> torch.Tensor:
    """Means of the Gaussian mixture `name` ('8gaussians' or '25gaussians'), K x 2."""
    if name not in _CENTERS:
        raise unknown_name("Gaussian-mixture data set", name, _CENTERS)
    return _CENTERS[name].clone()


def _build(name, sample, n_train, n_test, seed, options, log_density=None, num_classes=0) -> Dataset:
    """Draw train/test from `sample(n, generator) -> (x, labels or None)` and wrap them."""
    xtr, ytr = sample(n_train, torch.Generator().manual_seed(2 * seed))
    xte, yte = sample(n_test, torch.Generator().manual_seed(2 * seed + 1))
    spec = DataSpec("vector", (2,), num_classes, [str(i) for i in range(num_classes)], name=name,
                    source={"name": name, "options": {"n_train": n_train, "n_test": n_test, **options,
                                                      "seed": seed}})
    return Dataset(xtr, xte, spec, ytr, yte, location="generated",
                   sampler=lambda n, generator=None: sample(n, generator)[0], log_density=log_density)


def _mixture(name, sigma, n_train, n_test, seed) -> Dataset:
    centers = _CENTERS[name]
    k_modes = len(centers)

    def sample(n, generator=None):
        k = torch.randint(k_modes, (n,), generator=generator)
        return centers[k] + sigma * torch.randn(n, 2, generator=generator), k

    def log_density(x):
        """Exact log p(x) in nats (logsumexp over the components)."""
        x64 = torch.as_tensor(x).reshape(-1, 2).double()
        d2 = (x64[:, None, :] - centers.double()[None]).pow(2).sum(-1)
        lp = torch.logsumexp(-d2 / (2 * sigma ** 2), 1) - math.log(k_modes) - math.log(2 * math.pi * sigma ** 2)
        return lp.float()

    return _build(name, sample, n_train, n_test, seed, {"sigma": sigma}, log_density, k_modes)


def _noisy(name, shape_fn, sigma, n_train, n_test, seed) -> Dataset:
    """A shape `shape_fn(n, generator) -> n x 2` plus isotropic Gaussian noise."""
    def sample(n, generator=None):
        return shape_fn(n, generator) + sigma * torch.randn(n, 2, generator=generator), None

    return _build(name, sample, n_train, n_test, seed, {"sigma": sigma})


@register_dataset("8gaussians", "ring of 8 Gaussians on the unit circle (sigma 0.01, PacGAN); exact density",
                  "vector", locate=lambda: "generated")
def ring(n_train: int = 10000, n_test: int = 5000, sigma: float = 0.01, seed: int = 0) -> Dataset:
    """8 equal Gaussians with means (cos 2 pi k/8, sin 2 pi k/8); labels = component."""
    return _mixture("8gaussians", sigma, n_train, n_test, seed)


@register_dataset("25gaussians", "5 x 5 grid of Gaussians at {-4..4 step 2}^2 (sigma 0.05, PacGAN); exact density",
                  "vector", locate=lambda: "generated")
def grid(n_train: int = 10000, n_test: int = 5000, sigma: float = 0.05, seed: int = 0) -> Dataset:
    """25 equal Gaussians with means {-4, -2, 0, 2, 4}^2; labels = component."""
    return _mixture("25gaussians", sigma, n_train, n_test, seed)


@register_dataset("checkerboard", "uniform on the 8 black squares of a 4 x 4 board on [-4, 4]^2; exact density",
                  "vector", locate=lambda: "generated")
def checkerboard(n_train: int = 10000, n_test: int = 5000, seed: int = 0) -> Dataset:
    """Uniform on squares [2i, 2i+2) x [2j, 2j+2), i, j in -2..1, i + j even (density 1/32)."""
    def sample(n, generator=None):
        cell = _CELLS[torch.randint(len(_CELLS), (n,), generator=generator)]
        return cell + 2 * torch.rand(n, 2, generator=generator), None

    def log_density(x):
        """log(1/32) on the filled squares, -inf elsewhere."""
        x = torch.as_tensor(x).reshape(-1, 2).float()
        inside = ((x >= -4) & (x < 4)).all(1)
        filled = torch.remainder(torch.floor(x / 2).sum(1), 2) == 0
        return torch.where(inside & filled, torch.tensor(-math.log(32.0)), torch.tensor(-math.inf))

    return _build("checkerboard", sample, n_train, n_test, seed, {}, log_density)


@register_dataset("moons", "two interleaving half circles (FFJORD's moons); no closed-form density",
                  "vector", locate=lambda: "generated")
def moons(n_train: int = 10000, n_test: int = 5000, sigma: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's moons scaled by 2 and shifted by (-1, -0.2), as in FFJORD."""
    def shape(n, g):
        t = math.pi * torch.rand(n, generator=g)
        upper = torch.randint(2, (n,), generator=g).bool()
        x = torch.where(upper, t.cos(), 1 - t.cos())
        y = torch.where(upper, t.sin(), 0.5 - t.sin())
        return torch.stack([2 * x - 1, 2 * y - 0.2], 1)

    return _noisy("moons", shape, sigma, n_train, n_test, seed)


@register_dataset("circles", "two concentric circles, radii 3 and 1.5 (FFJORD's circles); no closed-form density",
                  "vector", locate=lambda: "generated")
def circles(n_train: int = 10000, n_test: int = 5000, sigma: float = 0.24, seed: int = 0) -> Dataset:
    """Half the points on the circle of radius 3, half on radius 1.5."""
    def shape(n, g):
        t = 2 * math.pi * torch.rand(n, generator=g)
        r = torch.where(torch.randint(2, (n,), generator=g).bool(), 3.0, 1.5)
        return torch.stack([r * t.cos(), r * t.sin()], 1)

    return _noisy("circles", shape, sigma, n_train, n_test, seed)


@register_dataset("swissroll", "2-D swiss roll (FFJORD's); no closed-form density",
                  "vector", locate=lambda: "generated")
def swissroll(n_train: int = 10000, n_test: int = 5000, sigma: float = 0.2, seed: int = 0) -> Dataset:
    """(t cos t, t sin t) / 5 for t uniform in [1.5 pi, 4.5 pi]."""
    def shape(n, g):
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
        return torch.stack([t * t.cos(), t * t.sin()], 1) / 5

    return _noisy("swissroll", shape, sigma, n_train, n_test, seed)


@register_dataset("spirals", "two interleaved spirals (FFJORD's 2spirals); no closed-form density",
                  "vector", locate=lambda: "generated")
def spirals(n_train: int = 10000, n_test: int = 5000, sigma: float = 0.1, seed: int = 0) -> Dataset:
    """±(-t cos t, t sin t) / 3 with t = 3 pi sqrt(u) (FFJORD's, without its uniform jitter)."""
    def shape(n, g):
        t = 3 * math.pi * torch.rand(n, generator=g).sqrt()
        arm = torch.where(torch.randint(2, (n,), generator=g).bool(), 1.0, -1.0)
        return arm[:, None] * torch.stack([-t * t.cos(), t * t.sin()], 1) / 3

    return _noisy("spirals", shape, sigma, n_train, n_test, seed)
