"""Reproducible experiments, one per concept of the field: `genlab experiment NAME`.

Each writes a figure and a JSON of its numbers into an output directory and
returns the numbers. Small enough for a CPU in minutes.
"""

from __future__ import annotations

from typing import Callable

from ..errors import unknown_name

EXPERIMENTS: dict[str, tuple[Callable, str]] = {}


def register_experiment(name: str, description: str):
    def wrap(fn):
        EXPERIMENTS[name] = (fn, description)
        return fn
    return wrap


def run_experiment(name: str, out, seed: int = 0, quick: bool = False) -> dict:
    from . import gan_saturation  # noqa: F401  (register)

    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name][0](out, seed=seed, quick=quick)


def list_experiments() -> dict[str, str]:
    from . import gan_saturation  # noqa: F401

    return {k: d for k, (_, d) in EXPERIMENTS.items()}
