"""What a training step costs besides its speed: model-FLOP utilisation against this machine's matmul
peak, cost per epoch at three data sizes, peak memory, and 2 processes x 1 thread against 1 process x
2 threads under torchrun. Called by bench/throughput.py (--mfu, --epoch-cost, --memory, --ddp); each
part prints its table and returns rows for the JSON.

- MFU = (matmul/conv FLOPs of one training step, counted by torch's FlopCounterMode: forward and
  backward, the optimizer excluded) x (steps per CPU-second) / (fp32 torch.mm GFLOP/s per CPU-second
  at the same thread count). The FLOPs of one step are F(3 steps) - F(1 step), halved, so the set-up
  and finalize work of a run (a data-dependent init, ddpm's variance fit) drops out.
- Cost per epoch: one epoch of `genlab.train` on the first n MNIST training images at three n, in
  memory and streamed from a memory-mapped .npy (DataLoader workers, so wall time, on a quiet machine).
- Peak memory: each family's run in a fresh process; its peak resident set (VmHWM, Linux) and the
  increase over a process that imported genlab and loaded the same data.
- DDP: the same global batch and steps of ddpm's UNet on digits, `torchrun --nproc_per_node 2`
  (one thread per process, gloo) against one process with two threads; the Trainer's own clock
  (training steps only, start-up excluded).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import genlab


def matmul_peak(n: int = 1024, seconds: float = 2.0, clock=time.process_time) -> float:
    """fp32 torch.mm GFLOP per second of `clock` (process CPU time by default) at the current thread
    count, the best of half-second rounds."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, t_end = 0.0, clock() + seconds
    while clock() < t_end:
        t0, reps = clock(), 0
        while clock() - t0 < 0.5:
            a @ b
            reps += 1
        best = max(best, 2 * n ** 3 * reps / (clock() - t0) / 1e9)
    return best


def train_flops(family: str, data, batch: int, **hp) -> float:
    """Matmul/conv FLOPs of one genlab training step (forward + backward): (F(3) - F(1)) / 2."""
    kw = dict(save=False, progress=False, batch_size=batch, log_every=10**9, checkpoint_every=0, seed=0)
    counts = []
    for steps in (1, 3):
        with FlopCounterMode(display=False) as fc:
            genlab.train(family, data, steps=steps, **kw, **hp)
        counts.append(fc.get_total_flops())
    return (counts[1] - counts[0]) / 2


def step_flops(step) -> float:
    """Matmul/conv FLOPs of one call of `step()` (a peer's forward + backward + optimizer step)."""
    with FlopCounterMode(display=False) as fc:
        step()
    return float(fc.get_total_flops())


def mfu_rows(families: dict, rate, batch: int, peak: float) -> list[dict]:
    """One row per genlab family on digits at `batch`: GFLOP per step, steps per CPU-s, MFU."""
    rows = []
    for fam, hp in families.items():
        flops, steps_per_s = train_flops(fam, "digits", batch, **hp), rate(fam, "digits", batch, **hp)
        rows.append(_mfu_row(f"genlab {fam} (digits)", flops, steps_per_s, peak))
    return rows


def _mfu_row(name: str, flops: float, steps_per_s: float, peak: float) -> dict:
    gflops = flops * steps_per_s / 1e9
    row = {"model": name, "gflop_per_step": flops / 1e9, "steps_per_cpu_s": steps_per_s,
           "gflops_per_cpu_s": gflops, "mfu": gflops / peak}
    print(f"{name:42s} {row['gflop_per_step']:8.3f} GFLOP/step {steps_per_s:8.1f} steps/CPU-s "
          f"{gflops:7.1f} GFLOP/CPU-s  MFU {100 * row['mfu']:5.1f}%", flush=True)
    return row


def vae_mfu_rows(batch: int, peak: float, repeats: int = 3, steps: int = 20) -> list[dict]:
    """The IWAE-paper MLP VAE (784-200-200-50) on MNIST, genlab's model and pythae's, one loop."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import vae_mnist

    data = genlab.load_dataset("mnist")
    names = ["genlab-vae"] + (["pythae-vae"] if importlib.util.find_spec("pythae") else [])
    ms = vae_mnist.step_times(data, names, seed=0, repeats=repeats, steps=steps, batch=batch)
    rows = []
    for name in names:
        model = vae_mnist.build(name, data, 0)
        loss_of, x = vae_mnist.loss_fn(model), data.train[:batch]
        flops = step_flops(lambda: loss_of(x).backward())
        rows.append(_mfu_row(f"{name} (IWAE MLP, MNIST)", flops, 1e3 / ms[name], peak))
    return rows


def epoch_costs(family: str = "vae", sizes=(7500, 15000, 30000), batch: int = 128, workers: int = 2) -> list[dict]:
    """Seconds per epoch of `family` on the first n MNIST training images, in memory (CPU time) and
    streamed from a memory-mapped .npy (wall time: the DataLoader's workers are other processes)."""
    mnist = genlab.load_dataset("mnist")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            x = mnist.train[:n]
            path = Path(tmp) / f"mnist{n}.npy"
            np.save(path, (x.numpy() * 255).round().astype(np.uint8))
            for mode in ("memory", "stream"):
                kw = dict(save=False, progress=False, batch_size=batch, log_every=10**9, checkpoint_every=0,
                          seed=0, epochs=1, clock="cpu" if mode == "memory" else "wall")
                if mode == "stream":
                    kw.update(stream=True, workers=workers)
                t0 = time.perf_counter()
                run = genlab.train(family, str(path), **kw)
                seconds = run.history[-1]["time"]
                rows.append({"family": family, "n": n, "mode": mode, "steps": run.history[-1]["step"],
                             "seconds": seconds, "ms_per_100_examples": 1e5 * seconds / n,
                             "call_wall_seconds": time.perf_counter() - t0})
                print(f"{family} n={n:6d} {mode:6s}: {seconds:7.2f} s/epoch ({rows[-1]['steps']} steps), "
                      f"{rows[-1]['ms_per_100_examples']:.2f} ms per 100 examples", flush=True)
    return rows


_MEMORY_CHILD = """
import json, sys, torch, genlab
torch.set_num_threads(1)
fam, hp, batch, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
genlab.load_dataset("digits")
if steps:
    genlab.train(fam, "digits", steps=steps, batch_size=batch, save=False, progress=False, seed=0, **hp)
print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
"""


def peak_memory(families: dict, batch: int, steps: int = 20) -> list[dict]:
    """Peak resident set (MiB) of a fresh process training each family on digits, and its increase
    over a process that only imported genlab and loaded digits."""
    def child(fam, hp, n):
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, fam, json.dumps(hp), str(batch), str(n)],
                             capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1]) / 1024  # VmHWM in KiB (ru_maxrss would include the parent's at fork)

    base = child("ae", {}, 0)
    print(f"baseline (import genlab, load digits): {base:.0f} MiB", flush=True)
    rows = []
    for fam, hp in families.items():
        peak = child(fam, {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()}, steps)
        rows.append({"family": fam, "peak_mib": peak, "over_baseline_mib": peak - base, "baseline_mib": base,
                     "batch": batch})
        print(f"{fam:10s} peak {peak:7.0f} MiB  (+{peak - base:.0f} over the baseline)", flush=True)
    return rows


def ddp_pair(steps: int = 60, global_batch: int = 128, hp: dict | None = None) -> dict:
    """ddpm's UNet on digits: 2 processes x 1 thread (torchrun, gloo) vs 1 process x 2 threads, the
    same global batch, seed and steps; steps per second of the Trainer's wall clock (clock=wall) of rank 0."""
    hp = hp or {"base": 16, "mults": [1, 2], "attention": False}
    sets = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in hp.items()]
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, nproc, threads in (("1 process x 2 threads", 1, 2), ("2 processes x 1 thread", 2, 1),
                                     ("1 process x 1 thread", 1, 1)):  # the last: what the second core adds
            out = Path(tmp) / name.replace(" ", "_")
            args = ["-m", "genlab", "train", "ddpm", "--data", "digits", "--steps", str(steps), "--out", str(out),
                    "--quiet", "--set", f"batch_size={global_batch // nproc}", "--set", "log_every=10", "--set", "clock=wall",
                    "--set", "sample_every=0", "--set", "checkpoint_every=0"]
            for s in sets:
                args += ["--set", s]
            cmd = ([sys.executable] + args if nproc == 1 else
                   [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] + args)
            env = dict(os.environ, GENLAB_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
            subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
            hist = [h for h in hist if "time" in h and "step" in h]
            first, last = hist[0], hist[-1]  # from the first log on: start-up and the first steps excluded
            rates[name] = (last["step"] - first["step"]) / (last["time"] - first["time"])
            print(f"ddpm UNet, global batch {global_batch}, {name}: {rates[name]:.2f} steps/s", flush=True)
    ratio = rates["2 processes x 1 thread"] / rates["1 process x 2 threads"]
    print(f"2 x 1 / 1 x 2 = {ratio:.2f}x; 1 x 1 / 1 x 2 = "
          f"{rates['1 process x 1 thread'] / rates['1 process x 2 threads']:.2f}x", flush=True)
    return {"steps": steps, "global_batch": global_batch, "hp": hp, "steps_per_s": rates, "ratio": ratio}
