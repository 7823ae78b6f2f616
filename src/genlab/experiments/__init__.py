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


def _discover() -> None:
    """Import every module of this package: each registers its experiments."""
    import importlib
    import pkgutil

    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")


def run_experiment(name: str, out, seed: int = 0, quick: bool = False) -> dict:
    _discover()
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name][0](out, seed=seed, quick=quick)


def list_experiments() -> dict[str, str]:
    _discover()
    return {k: d for k, (_, d) in EXPERIMENTS.items()}
