"""Multilayer perceptron, the workhorse for vector data and small images."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import unknown_name

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """in -> [Linear, act] * len(hidden) -> Linear -> out. `hidden=()` is a linear map."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (256, 256),
                 act: str = "relu"):
        layers: list[nn.Module] = []
        widths = [in_features, *hidden]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(widths[-1], out_features))
        super().__init__(*layers)
