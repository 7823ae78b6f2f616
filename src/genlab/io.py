"""Atomic files: JSON, weights through safetensors, state through torch.load(weights_only=True).

Every write goes to a temporary file in the same directory and is renamed over
the target, so a crash leaves the previous file intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import GenlabError

def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path, obj) -> Path:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
    return _atomic(path, write)


def atomic_write_bytes(path, data: bytes) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def save_weights(state: dict, path) -> Path:
    """safetensors file of a state dict (tensors made contiguous and unshared)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return _atomic(path, lambda tmp: save_file(tensors, tmp))


def load_weights(path) -> dict:
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise GenlabError(f"{path}: cannot read weights ({e})") from e


def save_state(state: dict, path) -> Path:
    return _atomic(path, lambda tmp: torch.save(state, tmp))


def load_state(path) -> dict:
    """Training state; `weights_only=True`, so no pickled code is ever executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GenlabError(f"{path}: no checkpoint to resume from") from None
    except Exception as e:
        raise GenlabError(f"{path}: unreadable checkpoint ({e})") from e
