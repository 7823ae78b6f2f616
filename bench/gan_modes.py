"""GAN mode coverage on PacGAN's 2-D mixtures: 10 seeds on the ring and on the grid.

    .venv/bin/python bench/gan_modes.py                 # 10 seeds x 2 data sets, the settings below
    .venv/bin/python bench/gan_modes.py --quick         # 2 seeds, 10 CPU-seconds each (a smoke run)

Protocol (PacGAN, Lin et al. 2018, Table 1 / 2 after VEEGAN): each run trains from its own seed,
then draws 2500 samples; a sample is high quality if within 3 sigma of its nearest mode, a mode is
captured if it has at least one high-quality sample. Each trained generator is sampled plainly,
with discriminator rejection sampling (DRS, Azadi et al. 2019; `sample(..., rejection=True)`) and
with discriminator-driven latent refinement (20 noise-free DDLS steps, Che et al. 2020;
`sample(..., refine=20)`), which moves samples off the bridges between modes and also narrows
each mode: the high-quality share rewards that, a density metric would not.
Reported per sampling: mean +- standard error over seeds of modes captured and % high-quality samples, reverse KL of the mode histogram to uniform, and time
per run. The budget is process CPU time on one thread (`clock="cpu"`), so a busy machine does not
shorten a run; wall time is printed too.

Anchors (PacGAN's tables; their runs, not re-measured here):
    ring (8 modes):  vanilla GAN 6.3 / 98.2%,  PacGAN4 7.8 / 95.9%
    grid (25 modes): vanilla GAN 17.3 / 94.8%, PacGAN4 24.8 / 93.6%, VEEGAN 24.6 / 40%
Target: 8.0 modes with >= 98% high quality on the ring, 25.0 with >= 97% on the grid, each run
<= 2 minutes on this CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

import genlab
from genlab.data.toy2d import mode_centers
from genlab.metrics.modes import N_SAMPLES, mode_coverage

# genlab's settings for each data set (everything else: the `gan` family's defaults)
SETTINGS = {
    "8gaussians": {"latent_dim": 2, "minibatch_std": True},
    "25gaussians": {"latent_dim": 2, "minibatch_std": True},
}
# each trained generator is sampled three ways: plainly, with discriminator rejection sampling, and
# with 20 steps of discriminator-driven latent refinement (noise-free DDLS, step 0.01)
SAMPLING = {"plain": {"rejection": False}, "drs": {"rejection": True}, "refined": {"refine": 20, "refine_step": 0.01}}
TARGETS = {"8gaussians": (8, 0.98), "25gaussians": (25, 0.97)}
ANCHORS = {"8gaussians": "vanilla 6.3 / 98.2%, PacGAN4 7.8 / 95.9%",
           "25gaussians": "vanilla 17.3 / 94.8%, PacGAN4 24.8 / 93.6%, VEEGAN 24.6 / 40%"}


def one_run(name: str, seed: int, minutes: float, settings: dict) -> dict:
    data = genlab.load_dataset(name)
    sigma = data.spec.source["options"]["sigma"]
    wall, cpu = time.perf_counter(), time.process_time()
    run = genlab.train("gan", data, minutes=minutes, seed=seed, save=False, progress=False, clock="cpu",
                       **settings)
    out = {"seed": seed, "steps": run.history[-1]["step"] if run.history else None,
           "wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
    for how, options in SAMPLING.items():
        x = run.model.sample(N_SAMPLES, generator=torch.Generator().manual_seed(10_000 + seed), **options)
        rep = mode_coverage(x, mode_centers(name), sigma)
        out[how] = {"modes": rep["modes"], "high_quality": rep["high_quality"], "reverse_kl": rep["reverse_kl"]}
    return out


def mean_se(values) -> tuple[float, float]:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return m, se


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out, do the missing seeds")
    ap.add_argument("--minutes", type=float, default=2.0, help="CPU minutes of training per run")
    ap.add_argument("--data", default="8gaussians,25gaussians")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 10 CPU-seconds each")
    ap.add_argument("--out", default="bench/results/gan_modes.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    seeds, minutes = (2, 10 / 60) if a.quick else (a.seeds, a.minutes)
    summary = {"date": time.strftime("%Y-%m-%d"), "torch_threads": 1, "cpu_minutes_per_run": minutes,
               "n_samples": N_SAMPLES, "results": {}}
    rows = []
    for name in a.data.split(","):
        runs = []
        if a.resume and Path(a.out).exists():
            runs = json.loads(Path(a.out).read_text())["results"].get(name, {}).get("runs", [])
        for seed in range(len(runs), seeds):
            r = one_run(name, seed, minutes, SETTINGS[name])
            runs.append(r)
            print(f"{name:12s} seed {seed}: " + ", ".join(
                f"{how} {r[how]['modes']:2d} modes {100 * r[how]['high_quality']:5.1f}% HQ" for how in SAMPLING)
                + f"; {r['steps']} steps, {r['cpu_seconds']:.0f} CPU-s, {r['wall_seconds']:.0f} s wall", flush=True)
            summary["results"][name] = {"settings": SETTINGS[name], "runs": runs}  # partial, kept if stopped
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(summary, indent=1))
        cpu = statistics.fmean(r["cpu_seconds"] for r in runs)
        target_modes, target_hq = TARGETS[name]
        for how in SAMPLING:
            modes = mean_se([r[how]["modes"] for r in runs])
            hq = mean_se([100 * r[how]["high_quality"] for r in runs])
            met = modes[0] >= target_modes and hq[0] >= 100 * target_hq and cpu <= 120
            summary["results"][name][how] = {"modes_mean": modes[0], "modes_se": modes[1], "hq_mean": hq[0],
                                             "hq_se": hq[1], "cpu_seconds_mean": cpu, "target_met": met}
            rows.append((name, how, modes, hq, cpu, met))
    print(f"\n{'data':12s} {'sampling':8s} {'modes':>12s} {'% high quality':>16s} {'CPU s/run':>9s}  target  "
          "anchors (PacGAN)")
    for name, how, modes, hq, cpu, met in rows:
        print(f"{name:12s} {how:8s} {modes[0]:6.2f} ± {modes[1]:.2f} {hq[0]:9.2f} ± {hq[1]:.2f} {cpu:9.0f}  "
              f"{'met' if met else 'MISSED':6s}  {ANCHORS[name]}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(summary, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
