"""A seeded, resumable stream of minibatch indices over an in-memory data set.

Epoch e visits the examples in the order randperm(N, seed + e); the position in
that order is all the state there is, so a resumed run sees the same batches.
Under data-parallel training, rank r takes every world-th batch of the same order.
"""

from __future__ import annotations

import torch


class BatchStream:
    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.batch_size = min(batch_size, n)
        self.batches_per_epoch = max(n // (self.batch_size * world), 1)
        self.epoch, self.pos = 0, 0
        self._order = None

    def _perm(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def next(self) -> torch.Tensor:
        if self.pos >= self.batches_per_epoch:
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = None
        if self._order is None:
            self._order = self._perm()
        b = (self.pos * self.world + self.rank) * self.batch_size
        self.pos += 1
        return self._order[b: b + self.batch_size]

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.pos / self.batches_per_epoch

    def copy(self) -> "BatchStream":
        twin = BatchStream(self.n, self.batch_size, self.seed, self.rank, self.world)
        twin.load_state_dict(self.state_dict())
        return twin

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "examples": self.pos * self.world * self.batch_size}

    def load_state_dict(self, s: dict) -> None:
        """Resume at the same point of the order; with another number of processes or batch size,
        at the last whole global batch before it (`examples` counts what the epoch has used)."""
        pos = s["pos"]
        if "examples" in s and s["examples"] != pos * self.world * self.batch_size:
            pos = s["examples"] // (self.world * self.batch_size)
        self.epoch, self.pos, self._order = s["epoch"], pos, None
