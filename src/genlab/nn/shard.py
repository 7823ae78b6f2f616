"""Data parallelism that computes what one process would: the global batch's randomness and
batch statistics, whatever the family.

Under torchrun each of W ranks holds a slice x[o : o + n] of the global batch of N = W n
examples (`genlab.train.stream.BatchStream`). DDP averages the ranks' gradients, which is the
gradient of the global batch's mean loss, provided every per-example quantity is the one a
single process would have computed for that example. Two things break that in general:

  randomness    a rank that draws torch.randn(n, d) gets the first n rows of what one process
                draws for N examples, on every rank alike. So inside `GlobalBatch` every random
                draw whose leading dimension is the local batch n is made for the whole global
                batch from the shared generator state (all ranks are seeded alike) and this
                rank keeps its rows o : o + n:

                    draw(n, ...)  ->  draw(N, ...)[o : o + n]

                (randn, rand, randint, their *_like forms, bernoulli, the in-place normal_,
                uniform_, bernoulli_, exponential_, random_, and dropout / dropout1d/2d/3d).
                The generator then advances exactly as in the one-process run, so noise draws,
                diffusion times t ~ U, dropout masks and condition dropout are the same per
                example, and the next step's state is the same too.
  batch stats   BatchNorm in training normalises with the statistics of the batch it sees.
                Inside `GlobalBatch` F.batch_norm uses the global batch's mean and variance,
                summed over ranks with a differentiable all-reduce (as torch's SyncBatchNorm
                does on GPUs; it refuses CPU tensors), and updates the running statistics with
                them, so every rank keeps the same buffers. Other batch statistics call
                `global_batch(t)` (the minibatch standard deviation of GAN critics does).

The rule is by shape: a draw whose leading dimension happens to equal n without being one row
per example (a [n]-vector of something else) is also drawn globally and sliced. Draws of any
other shape are left alone (and are the same on every rank). The minibatch OT pairing of
ddpm/fm (ot=true) pairs within each rank's slice, as torchcfm does.

On one process nothing here is active and nothing costs anything.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_active: Optional["GlobalBatch"] = None

_CREATE = {torch.randn, torch.rand}
_LIKE = {torch.randn_like, torch.rand_like, torch.randint_like}
_INPLACE = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.bernoulli_, torch.Tensor.exponential_,
            torch.Tensor.random_, torch.Tensor.cauchy_, torch.Tensor.log_normal_, torch.Tensor.geometric_}
#: dropout function -> number of trailing dimensions its mask broadcasts over
_DROPOUT = {F.dropout: 0, F.dropout1d: 1, F.dropout2d: 2, F.dropout3d: 3}
_HANDLED = frozenset({*_CREATE, *_LIKE, *_INPLACE, *_DROPOUT, torch.randint, torch.bernoulli, F.batch_norm})


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


class GlobalBatch(TorchFunctionMode):
    """Context: this process holds rows [offset, offset + n) of a global batch of `total` rows."""

    def __init__(self, n: int, total: int, offset: int):
        super().__init__()
        self.n, self.total, self.offset = int(n), int(total), int(offset)

    def __enter__(self):
        global _active
        self._outer, _active = _active, self
        return super().__enter__()

    def __exit__(self, *exc):
        global _active
        _active = self._outer
        return super().__exit__(*exc)

    # -- helpers -----------------------------------------------------------------------------------
    def _mine(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.offset: self.offset + self.n]

    def _padded(self, t: torch.Tensor) -> torch.Tensor:
        """t [n, ...] placed at this rank's rows of a zero [N, ...] tensor."""
        full = t.new_zeros((self.total, *t.shape[1:]))
        full[self.offset: self.offset + self.n] = t
        return full

    def _local(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == self.n

    # -- the dispatch ------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func not in _HANDLED:  # nearly every op: straight through, one set lookup
            return func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        if "out" in kwargs:
            return func(*args, **kwargs)
        if func in _CREATE:
            size = kwargs.pop("size", None)
            if size is None:
                size = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
                args = ()
            size = tuple(int(s) for s in size)
            if size and size[0] == self.n:
                return self._mine(func((self.total, *size[1:]), *args, **kwargs))
            return func(size, *args, **kwargs)
        if func is torch.randint:
            size = kwargs.pop("size", None)
            if size is None:
                *bounds, size = args
            else:
                bounds = list(args)
            size = tuple(int(s) for s in size)
            if size and size[0] == self.n:
                return self._mine(func(*bounds, (self.total, *size[1:]), **kwargs))
            return func(*bounds, size, **kwargs)
        if func in _LIKE and self._local(args[0]):
            x = args[0]
            kwargs.setdefault("dtype", x.dtype)
            kwargs.setdefault("device", x.device)
            return self._mine(func(x.new_empty((self.total, *x.shape[1:])), *args[1:], **kwargs))
        if func is torch.bernoulli and self._local(args[0]):
            return self._mine(func(self._padded(args[0]), *args[1:], **kwargs))
        if func in _INPLACE and self._local(args[0]):
            x, rest = args[0], list(args[1:])
            if func is torch.Tensor.bernoulli_:
                for i, a in enumerate(rest):
                    if self._local(a):
                        rest[i] = self._padded(a)
                if self._local(kwargs.get("p")):
                    kwargs["p"] = self._padded(kwargs["p"])
            full = x.new_empty((self.total, *x.shape[1:]))
            func(full, *rest, **kwargs)
            with torch.no_grad():
                x.copy_(self._mine(full))
            return x
        if func in _DROPOUT:
            return self._dropout(func, _DROPOUT[func], *args, **kwargs)
        if func is F.batch_norm:
            return self._batch_norm(*args, **kwargs)
        return func(*args, **kwargs)

    def _dropout(self, func, feature_dims, input, p=0.5, training=True, inplace=False):
        batched = input.dim() >= 2 + feature_dims if feature_dims else True
        if not (training and 0 < p and self._local(input) and batched):
            return func(input, p, training, inplace)
        mask_shape = input.shape[1:input.dim() - feature_dims] + (1,) * feature_dims
        mask = self._mine(func(input.new_ones((self.total, *mask_shape)), p, True))
        return input.mul_(mask) if inplace else input * mask

    def _batch_norm(self, input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
        if not (training and self._local(input)):
            return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
        dims = [0, *range(2, input.dim())]
        shape = (1, -1, *[1] * (input.dim() - 2))
        count = self.total * math.prod(input.shape[2:])
        mean = _all_reduce(input.sum(dims)) / count
        centred = input - mean.reshape(shape)
        var = _all_reduce(centred.square().sum(dims)) / count
        out = centred * torch.rsqrt(var + eps).reshape(shape)
        if weight is not None:
            out = out * weight.reshape(shape)
        if bias is not None:
            out = out + bias.reshape(shape)
        if running_mean is not None and momentum is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                running_var.mul_(1 - momentum).add_(var.detach() * count / max(count - 1, 1), alpha=momentum)
        return out


def active() -> Optional[GlobalBatch]:
    """The `GlobalBatch` in force, or None (one process, or outside a training step)."""
    return _active


def global_batch(t: torch.Tensor) -> torch.Tensor:
    """The whole global batch of a per-example tensor t [n, ...] (differentiably gathered from
    every rank) inside a data-parallel step; t itself otherwise. For batch statistics."""
    g = _active
    if g is None or not g._local(t) or g.total == g.n:
        return t
    return _all_reduce(g._padded(t))  # each rank fills its rows; the sum is the whole batch
