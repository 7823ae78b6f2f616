"""Exponential moving average of weights: theta_ema <- d * theta_ema + (1 - d) * theta."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """Shadow copies of the named parameters; `swapped(model)` samples with them.

    The decay warms up as min(decay, (1 + step) / (10 + step)), so early averages
    are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float, names=None):
        params = dict(model.named_parameters())
        self.names = list(names) if names is not None else list(params)
        self.decay = decay
        self.shadow = {n: params[n].detach().clone() for n in self.names}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        if getattr(self, "_pairs_of", None) is not model:  # the parameter lists, built once per model
            params = dict(model.named_parameters())
            self._pairs_of = model
            self._targets = [self.shadow[n] for n in self.names]
            self._sources = [params[n].detach() for n in self.names]
        torch._foreach_lerp_(self._targets, self._sources, 1 - d)  # one fused pass, not a loop per tensor

    @contextmanager
    def swapped(self, model: nn.Module):
        """Temporarily load the averaged weights into `model`."""
        params = dict(model.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.names}
        with torch.no_grad():
            for n in self.names:
                params[n].copy_(self.shadow[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n in self.names:
                    params[n].copy_(backup[n])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into `model` for good (end of training)."""
        params = dict(model.named_parameters())
        for n in self.names:
            params[n].copy_(self.shadow[n])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict, model: nn.Module | None = None) -> None:
        """Load saved averages; with `model`, names saved under an older layout are renamed by
        the model's own load hooks first (as `model.load_state_dict` renames its weights)."""
        self.decay = state["decay"]
        shadow = dict(state["shadow"])
        if model is not None and any(n not in shadow for n in self.names):
            for prefix, module in model.named_modules():
                for hook in module._load_state_dict_pre_hooks.values():
                    hook(shadow, prefix + "." if prefix else "", {}, True, [], [], [])
        for n, v in shadow.items():
            self.shadow[n].copy_(v)
        self._pairs_of = None
