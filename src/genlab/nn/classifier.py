"""The small CNN classifier genlab ships for digits, MNIST and Fashion-MNIST, and its weights.

Evaluation uses it as a feature extractor (metrics/features.py: FID-style distances, class
accuracy); a family may use its features as a perceptual loss (pix2pix's SRGAN-style option,
since no pretrained VGG can be downloaded). It lives here, below both, so that neither imports
the other. The weights are package data in `genlab/metrics/weights/<name>.safetensors` (trained
by `scripts/train_classifiers.py`); `shipped_classifier` reads them (a file, not a module).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import GenlabError

FEATURE_DIM = 128
#: where the shipped weights are (package data)
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "metrics" / "weights"
# data set -> input shape of its shipped classifier (the architecture is Classifier's defaults)
SHIPPED: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
}


def _conv(ci: int, co: int) -> list[nn.Module]:
    return [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True)]


class Classifier(nn.Module):
    """Small CNN for C x H x W images (8x8, 28x28, any size >= 4x4); ~100k parameters.

        conv(c0) pool | conv(c1) conv(c2) pool | conv(c3) conv(c4) | adaptive-avg-pool to grid x grid
        -> Linear(c4 * grid^2, 128) -> ReLU  = features (penultimate layer, >= 0)
        -> Dropout -> Linear(128, K)          = logits

    Each conv is 3x3 -> BatchNorm -> ReLU; pools are 2x2 max pools. The first
    convolution runs at full resolution with few channels, the wider ones at 1/2
    and 1/4 resolution, which keeps it cheap on a CPU.
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 channels: Sequence[int] = (16, 32, 32, 64, 64), feature_dim: int = FEATURE_DIM,
                 dropout: float = 0.3, grid: int = 2):
        super().__init__()
        c, h, w = in_shape
        if h < 4 or w < 4:
            raise GenlabError(f"Classifier needs images of at least 4x4 pixels, got {h}x{w}")
        c0, c1, c2, c3, c4 = channels
        self.in_shape = (int(c), int(h), int(w))
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.config = dict(in_shape=list(self.in_shape), num_classes=self.num_classes, channels=list(channels),
                           feature_dim=self.feature_dim, dropout=float(dropout), grid=int(grid))
        self.trunk = nn.Sequential(
            *_conv(c, c0), nn.MaxPool2d(2),
            *_conv(c0, c1), *_conv(c1, c2), nn.MaxPool2d(2),
            *_conv(c2, c3), *_conv(c3, c4),
            nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
            nn.Linear(c4 * grid * grid, feature_dim), nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, feature_dim], the penultimate activations (after ReLU)."""
        return self.trunk(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


def load_classifier_state(path) -> dict:
    """A shipped classifier's state dict (float32) from its safetensors file; a clear error when missing."""
    from ..io import load_weights

    path = Path(path)
    if not path.is_file():
        name = path.stem
        raise GenlabError(f"no shipped classifier weights for '{name}': {path} is missing; "
                          f"train them with `python scripts/train_classifiers.py --data {name}` "
                          f"or reinstall genlab")
    return {k: v.float() if v.is_floating_point() else v for k, v in load_weights(path).items()}


def build_classifier(name: str, state: dict) -> Classifier:
    """The shipped architecture for data set `name` with `state` loaded, in eval mode."""
    net = Classifier(SHIPPED[name])
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise GenlabError(f"the weights for '{name}' do not fit genlab's Classifier ({e})") from None
    return net.eval()


@functools.lru_cache(maxsize=None)
def _shipped_state(name: str) -> dict:
    return load_classifier_state(WEIGHTS_DIR / f"{name}.safetensors")


def shipped_classifier(name: str) -> Classifier:
    """A fresh, frozen (requires_grad False), eval-mode copy of the classifier shipped for `name`."""
    if name not in SHIPPED:
        from ..errors import unknown_name
        raise unknown_name("data set with a shipped classifier", name, SHIPPED)
    net = build_classifier(name, _shipped_state(name))
    for p in net.parameters():
        p.requires_grad_(False)
    return net
