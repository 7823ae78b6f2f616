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


_PICKLE = "a Python pickle"
_MAGIC = ((b"\x80", _PICKLE), (b"PK\x03\x04", "a PyTorch/zip file"), (b"\x93NUMPY", "a NumPy .npy file"))


def _magic(head: bytes) -> str | None:
    """What a file that should hold JSON or safetensors is instead, by its first bytes (None: no idea)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    return None


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (the user-facing errors are one line)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def read_json(path, what: str = "JSON") -> object:
    """A JSON file (parsed with json, never anything that runs code), or a one-line GenlabError saying why not:
    missing, not text (e.g. a pickle put in its place), or not valid JSON."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GenlabError(f"{path}: no such file") from None
    except OSError as e:
        raise GenlabError(f"{path}: cannot read ({e.strerror})") from None
    other = _magic(raw[:8])
    if other is not None:
        raise GenlabError(f"{path}: refused: it is {other}, not {what} (genlab never unpickles a file: it could "
                          "run code)")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise GenlabError(f"{path}: not {what} (binary content)") from None
    except json.JSONDecodeError as e:
        raise GenlabError(f"{path}: not valid {what} ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise GenlabError(f"{path}: not valid {what} (nested too deeply)") from None


def load_weights(path) -> dict:
    """Weights from a safetensors file (tensors only: the format cannot hold code)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise GenlabError(f"{path}: cannot read weights ({e.strerror})") from None
    other = _magic(head) if head[8:9] != b"{" else None  # safetensors: 8 bytes of header length, then '{'
    if other is not None:
        raise GenlabError(f"{path}: refused: it is {other}, not safetensors (genlab loads weights only from "
                          "safetensors, which cannot hold code)")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise GenlabError(f"{path}: cannot read weights, the file is truncated or corrupt ({first_line(e)})") from None


def save_state(state: dict, path) -> Path:
    return _atomic(path, lambda tmp: torch.save(state, tmp))


def load_state(path) -> dict:
    """Training state; `weights_only=True`, so no pickled code is ever executed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GenlabError(f"{path}: no checkpoint to resume from") from None
    except Exception as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise GenlabError(f"{path}: refused: it holds Python objects other than tensors and numbers (a pickle "
                              "that could run code; genlab loads checkpoints with torch.load(weights_only=True))") from None
        raise GenlabError(f"{path}: unreadable checkpoint, truncated or corrupt ({first_line(e)})") from None
    if not isinstance(state, dict):
        raise GenlabError(f"{path}: not a genlab checkpoint (holds {type(state).__name__}, not a mapping)")
    return state
