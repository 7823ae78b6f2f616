"""Data larger than memory: splits read on demand, from a memory-mapped `.npy` or image files.

A `LazySplit` stands where a Dataset's `train` / `test` tensor would: it has a length and a
shape, and indexing it (an int, a slice, a list or tensor of indices) reads and decodes just
those examples into a float tensor. The Trainer streams a lazy split through a
`torch.utils.data.DataLoader` with worker processes in the BatchStream's seeded order
(`genlab.train.stream`), so a streamed run sees exactly the batches the in-memory run sees.

Loaders choose it with `stream=True`, or by themselves when the decoded float32 data would
exceed `stream_threshold()` bytes (GENLAB_STREAM_BYTES, default 2 GiB).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

DEFAULT_STREAM_BYTES = 2 * 2**30


def stream_threshold() -> int:
    """Decoded size (bytes, float32) above which data is streamed rather than loaded."""
    return int(float(os.environ.get("GENLAB_STREAM_BYTES", DEFAULT_STREAM_BYTES)))


def should_stream(stream: Optional[bool], n: int, example_shape: Sequence[int]) -> bool:
    if stream is not None:
        return bool(stream)
    return n * int(np.prod(example_shape)) * 4 > stream_threshold()


class LazySplit:
    """Examples `rows` of a source, read on demand. Subclasses implement `_read(rows)` -> float32
    array [k, *shape] for sorted source rows."""

    is_lazy = True

    def __init__(self, rows: np.ndarray, example_shape: Sequence[int]):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.example_shape = tuple(int(s) for s in example_shape)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.example_shape))

    @property
    def dtype(self):
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def is_floating_point(self) -> bool:
        return True

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            return self[[int(key)]][0]
        if isinstance(key, slice):
            idx = np.arange(len(self))[key]
        else:
            idx = np.asarray(torch.as_tensor(key).cpu()).reshape(-1)
            idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")  # read the source in order (memory maps like it)
        out = np.empty((len(rows), *self.example_shape), np.float32)
        if len(rows):
            out[order] = self._read(rows[order])
        return torch.from_numpy(out)

    def take(self, idx) -> "LazySplit":
        """The examples at positions `idx` (a boolean mask or indices), still lazy."""
        idx = np.asarray(torch.as_tensor(idx).cpu())
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
        out = copy.copy(self)
        out.rows = self.rows[idx]
        return out

    def to(self, *args, **kwargs) -> torch.Tensor:
        """The whole split as a tensor (only for splits that fit in memory)."""
        return self[:].to(*args, **kwargs)

    def batches(self, size: int = 1024):
        """The split in order, `size` examples at a time."""
        for i in range(0, len(self), size):
            yield self[i:i + size]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NpyRows(LazySplit):
    """Rows of a `.npy` file opened with np.load(mmap_mode='r'); each read is converted as the
    in-memory loader converts the whole array (channels first, uint8 / 255, checked)."""

    def __init__(self, path, rows, kind: str):
        self.path, self.kind = Path(path), kind
        from .arrays import _examples, _np_load

        probe, _ = _examples(_np_load(self.path, mmap_mode="r")[:1], self.path, kind)
        super().__init__(rows, probe.shape[1:])
        self._array = None

    def _read(self, rows):
        from .arrays import _examples, _np_load

        if self._array is None:  # opened lazily: in each DataLoader worker after the fork
            self._array = _np_load(self.path, mmap_mode="r")
        return _examples(self._array[rows], self.path, self.kind)[0]

    def __getstate__(self):
        return {**self.__dict__, "_array": None}


class ImageFiles(LazySplit):
    """Image files decoded on read (mode 'L' or 'RGB', resized to hw where given)."""

    def __init__(self, files: Sequence[Path], root: Path, mode: str, hw, example_shape):
        self.files, self.root, self.mode, self.hw = list(files), Path(root), mode, hw
        super().__init__(np.arange(len(self.files)), example_shape)

    def _read(self, rows):
        from .folder import read_images

        x, _ = read_images([self.files[i] for i in rows], self.root, self.mode, self.hw or self.example_shape[1:])
        return x


def is_lazy(x) -> bool:
    return getattr(x, "is_lazy", False)
