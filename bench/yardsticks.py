"""Yardsticks for the diffusion pairs on digits: the same samples scored in more than one feature space,
so that a lead is not one classifier's opinion.

- `classifier-seed0`: the shipped digits classifier (genlab's evaluation protocol);
- `classifier-seed1`: the same recipe trained independently from seed 1 by
  `scripts/train_classifiers.py --data digits --seed 1` (about a CPU-minute; cached in
  bench/results/extractors/seed1/, made on first use);
- `pixels`: the raw 64 pixel values (genlab's default extractor for data of at most 64 dims).

`fd_by_yardstick(x, sticks)` scores samples against each yardstick's test-set statistics.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from genlab.metrics import frechet_distance, gaussian_stats
from genlab.metrics.features import (SHIPPED, FeatureExtractor, build_classifier, default_extractor,
                                     load_classifier_state, shipped_extractor)

ROOT = Path(__file__).resolve().parents[1]
EXTRACTORS = Path(__file__).resolve().parent / "results" / "extractors"


def independent_classifier(seed: int = 1, data: str = "digits") -> FeatureExtractor:
    """The shipped classifier's recipe for `data` (digits, mnist, fashion-mnist) trained from `seed` by the
    repo's script (trained here on first use: about a CPU-minute for digits, ten for MNIST)."""
    out = EXTRACTORS / f"seed{seed}"
    path = out / f"{data}.safetensors"
    if not path.is_file():
        print(f"training the {data} classifier from seed {seed} (scripts/train_classifiers.py) ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "train_classifiers.py"), "--data", data,
                        "--seed", str(seed), "--threads", "1", "--out", str(out)], check=True)
    net = build_classifier(data, load_classifier_state(path))
    return FeatureExtractor(net, f"genlab-classifier-{data}-seed{seed}", dim=net.feature_dim,
                            input_shape=SHIPPED[data])


def yardsticks(data) -> dict:
    """name -> (extractor, Gaussian statistics of the test split's features)."""
    sticks = {"classifier-seed0": shipped_extractor("digits"), "classifier-seed1": independent_classifier(1),
              "pixels": default_extractor(data.spec)}
    return {name: (ext, gaussian_stats(ext.features(data.test))) for name, ext in sticks.items()}


@torch.no_grad()
def fd_by_yardstick(x: torch.Tensor, sticks: dict) -> dict:
    """Fréchet distance of samples `x` (in [0, 1]) to the test split, per yardstick."""
    return {name: frechet_distance(*gaussian_stats(ext.features(x)), *stats) for name, (ext, stats) in sticks.items()}
