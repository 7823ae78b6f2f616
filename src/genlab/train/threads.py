"""How many torch threads a run uses: the cores this process may actually run on.

torch's default is the machine's core count, whatever share of it this process is allowed; on a
shared or container-limited machine more threads than usable cores spin against each other (two
2-thread jobs on 2 cores made 8x slower steps, their CPU time spent waiting). `available_cores()`
reads what the process may use: its CPU affinity mask (`os.sched_getaffinity`, taskset / cpuset)
and a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`: docker --cpus),
the smaller of the two. `use_available_cores()` sets torch to it, unless the user chose a count
(OMP_NUM_THREADS or GENLAB_THREADS in the environment). The CLI calls it before training or
evaluating; library users keep whatever they set.

genlab also makes idle OpenMP threads sleep rather than spin (OMP_WAIT_POLICY=PASSIVE, set in the
package root when torch is not yet loaded and the user has not chosen): a spinning thread burns the
CPU time a `clock="cpu"` budget counts. Measured on 2 cores at load ~8 (ddpm on digits, 2026-12-01):
2 threads spinning 4.6 CPU-s per step (60 steps), 2 threads sleeping 0.84 (20 steps), one thread
0.54-0.78.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> Optional[float]:
    """The cgroup CPU quota in cores (e.g. 1.5), or None when there is none or it cannot be read."""
    try:
        v2 = root / "cpu.max"
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q, p = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if q.exists() and p.exists():
            quota, period = int(q.read_text()), int(p.read_text())
            return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


def available_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may run on: min(affinity mask, ceil(cgroup quota)), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def chosen_threads() -> Optional[int]:
    """The thread count the user chose in the environment (GENLAB_THREADS, else OMP_NUM_THREADS), or None."""
    for var in ("GENLAB_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) >= 1:
            return int(v)
    return None


def use_available_cores() -> tuple[int, int]:
    """Set torch's intra-op threads to the user's choice or the available cores; returns
    (the count now, the count before) so a caller can restore it."""
    import torch

    before = torch.get_num_threads()
    n = chosen_threads() or available_cores()
    if before != n:
        torch.set_num_threads(n)
    return n, before
