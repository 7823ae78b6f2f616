"""Batches read by DataLoader workers in the BatchStream's order (data larger than memory).

The stream is authoritative: the loader iterates a copy of it taken when the loader starts, in
lockstep with the Trainer's own stream, so the batches are exactly the in-memory run's (and a
resumed run's loader starts where the checkpoint's stream stands). Under torchrun the copy
carries the rank and world size, so each rank's workers read only that rank's batches: the
sharding DistributedSampler would do, at batch granularity and in the one shared order.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DataLoader, Sampler

from .stream import BatchStream


class _Rows(torch.utils.data.Dataset):
    """dataset[indices] -> (indices, x[indices], y[indices] or None): one whole batch per read."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return idx, self.x[idx], (None if self.y is None else self.y[idx])


class _StreamBatches(Sampler):
    def __init__(self, stream: BatchStream):
        self.stream = stream

    def __iter__(self):
        while True:
            yield self.stream.next()


def stream_batches(x, y: Optional[torch.Tensor], stream: BatchStream, workers: int, pin: bool = False):
    """An endless iterator of (indices, x, y) batches following a copy of `stream`."""
    loader = DataLoader(_Rows(x, y), batch_size=None, sampler=_StreamBatches(stream.copy()), num_workers=workers,
                        pin_memory=pin, prefetch_factor=4 if workers else None, persistent_workers=False,
                        generator=torch.Generator().manual_seed(stream.seed))  # not the global RNG: the
    # model's noise draws must not depend on whether batches come from memory or from workers
    return iter(loader)
