"""sampler-steps: sample quality against the number of steps for DDPM, DDIM, Euler and Heun.

One `ddpm` trained briefly on digits (EMA weights), sampled from the same noise by
    ddpm   ancestral (Algorithm 2, posterior variance; fewer steps respace the betas)
    ddim   deterministic DDIM (eta = 0)
    euler  Euler on the probability-flow ODE in x / sqrt(abar), sigma (= DDIM eta = 0 up to clipping)
    heun   Heun on the same ODE (up to 2K - 1 network evaluations for K steps; counted)
scored by the Fréchet distance of the shipped digits classifier's features to the test set,
beside its real-data floor (an equally sized sample of training images against the test set).
Expected shape: ancestral sampling needs hundreds of steps; the deterministic samplers are good
at tens; Heun reaches a given distance with fewer evaluations than Euler.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from . import register_experiment

SAMPLERS = ("ddpm", "ddim", "euler", "heun")


def _fd(ext, x, ref_stats):
    from ..metrics import frechet_distance, gaussian_stats

    return frechet_distance(*gaussian_stats(ext.features(x)), *ref_stats)


@register_experiment("sampler-steps", "Fréchet distance to test vs number of steps: DDPM, DDIM, Euler, Heun")
def sampler_steps(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..metrics import gaussian_stats
    from ..metrics.features import extractor_for
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    data = load_dataset("digits")
    budget = {"steps": 30, "base": 16, "mults": (1, 2)} if quick else {"minutes": 4.0}
    run = train("ddpm", data, save=False, progress=False, seed=seed, clock="cpu", **budget)
    model = run.model.eval()
    ext = extractor_for(data.spec)
    n = 64 if quick else len(data.test)
    ref = gaussian_stats(ext.features(data.test))
    real = data.train[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed + 1))[:n]]
    floor = _fd(ext, real, ref)
    grid = (2, 5) if quick else (5, 10, 20, 50, 100)
    records, calls = [], [0]
    model.net.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))  # network evaluations
    for name in SAMPLERS:
        steps_list = list(grid) + ([1000] if name == "ddpm" and not quick else [])
        for k in steps_list:
            g = torch.Generator().manual_seed(seed)
            t0, calls[0] = time.process_time(), 0
            x = model.sample(n, generator=g, sampler=name, steps=k)
            secs, nfe = time.process_time() - t0, calls[0]
            fd = _fd(ext, x, ref)
            records.append({"sampler": name, "steps": k, "nfe": nfe, "fd": fd, "excess": fd - floor,
                            "cpu_seconds": round(secs, 2)})
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"ddpm": "#b2182b", "ddim": "#2166ac", "euler": "#4daf4a", "heun": "#984ea3"}
    for name in SAMPLERS:
        rs = [r for r in records if r["sampler"] == name]
        a.plot([r["steps"] for r in rs], [r["fd"] for r in rs], "o-", color=colors[name], label=name)
        b.plot([r["nfe"] for r in rs], [r["fd"] for r in rs], "o-", color=colors[name], label=name)
    for ax, xl in ((a, "steps (timesteps visited)"), (b, "network evaluations")):
        ax.axhline(floor, color="gray", ls="--", label="real-data floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("Fréchet distance to test (classifier features)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a.set_title(f"ddpm on digits ({run.history[-1]['step'] if run.history else '?'} training steps, EMA)")
    save_figure(fig, out / "sampler-steps.png")
    summary = {"experiment": "sampler-steps", "seed": seed, "quick": quick, "n": n, "floor": floor,
               "training_steps": run.history[-1]["step"] if run.history else None, "records": records,
               "figure": str(out / "sampler-steps.png")}
    atomic_write_json(out / "sampler-steps.json", summary)
    return summary
