"""Training-specific state: the RNG states a checkpoint resumes from, and seeding.

The file helpers once here live in `genlab.io`; they are re-exported for old imports.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from ..io import atomic_write_bytes, atomic_write_json, load_state, load_weights, save_state, save_weights

__all__ = ["rng_state", "set_rng_state", "seed_everything", "atomic_write_bytes", "atomic_write_json",
           "load_state", "load_weights", "save_state", "save_weights"]


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
