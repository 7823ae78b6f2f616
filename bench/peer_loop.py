"""The training loop both diffusion benchmarks give their peer library (diffusers, torchcfm).

Written the way those libraries' own examples train: Adam, optional linear warm-up, gradient clipping,
EMA, shuffled batches (ragged last batch dropped), until `minutes` of process CPU time have been spent.
`loss_fn(net, x)` is the peer's objective on a batch x in [-1, 1].
"""

from __future__ import annotations

import time

import torch

import genlab
from genlab.train.ema import EMA


#: the budgets' protocol, both sides alike: torch threads per process and what a budget counts
#: ("cpu": process CPU time, the default; "wall": wall time, for equal wall time on several threads)
THREADS, CLOCK = 1, "cpu"
#: the digits split both sides train on (its stratified split's seed; 0 is genlab's own split)
SPLIT_SEED = 0


def digits():
    """The digits with the split of SPLIT_SEED (bench/diffusion_yardsticks.py --split-seed)."""
    return genlab.load_dataset("digits", seed=SPLIT_SEED)


def _clock():
    return time.process_time if CLOCK == "cpu" else time.perf_counter


def train_peer(net, loss_fn, x_all, minutes: float, seed: int, lr: float, batch: int, clip: float,
               ema_decay: float, warmup: int = 0, steps: int | None = None) -> dict:
    """The peer's loop for `minutes` of the clock, or for `steps` steps when given."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup)) if warmup else None
    ema = EMA(net, ema_decay)
    g = torch.Generator().manual_seed(seed)
    perm, pos, step, losses = torch.randperm(len(x_all), generator=g), 0, 0, []
    budget, elapsed = minutes * 60, 0.0
    net.train()
    clock = _clock()
    t_last = clock()
    while (elapsed < budget) if steps is None else (step < steps):
        if pos + batch > len(perm):  # reshuffle each epoch, drop the ragged last batch
            perm, pos = torch.randperm(len(x_all), generator=g), 0
        loss = loss_fn(net, x_all[perm[pos:pos + batch]])
        pos += batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        if warm is not None:
            warm.step()
        step += 1
        ema.update(net, step)
        losses.append(loss.detach())
        now = clock()
        elapsed += now - t_last
        t_last = now
    ema.copy_to(net)
    return {"state": {k: v.clone() for k, v in net.state_dict().items()}, "steps": step, "cpu_seconds": elapsed,
            "final_loss": float(torch.stack(losses[-25:]).mean())}
