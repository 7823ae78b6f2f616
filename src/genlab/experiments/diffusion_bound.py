"""diffusion-bound: where a DDPM's variational bound comes from, step by step (Ho et al. 2020, eq. 5).

    L = L_T + sum_{t=2..T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                         (no parameters: ~0 for a good schedule)
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))
    L_0     = -log p_theta(x_0 | x_1)                              (discretised Gaussian decoder for images)

`DDPM.variational_bound(x, per_step=True)` gives every term per test example, with p_theta's variance
fitted to the model's own x_0 error after training (`DDPM.fit_variance`). The figure shows the
mean L_{t-1} against t (log scale) for two noise schedules and the cumulative share of the bound
reached by step t: nearly all of it sits in the first few steps (small t, fine detail), which is why
the simple loss, which weighs all steps alike, gives good samples and a poor likelihood, and why
Nichol & Dhariwal's cosine schedule and learned variances move the bound. Numbers: the three parts
in nats per example and bits/dim, per schedule.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from . import register_experiment


@register_experiment("diffusion-bound", "the DDPM bound split into L_T, L_t-1 (per step) and L_0, two schedules")
def diffusion_bound(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        data = load_dataset("moons", n_train=1000, n_test=200, seed=seed)
        common = {"steps": 80, "timesteps": 50, "hidden": (64, 64)}
        n_eval = 50
    else:
        data = load_dataset("digits")
        common = {"minutes": 2.0, "clock": "cpu", "timesteps": 1000, "base": 32}
        n_eval = 100
    x = data.test[:n_eval]
    results, curves = {}, {}
    for schedule in ("linear", "cosine"):
        run = train("ddpm", data, seed=seed, save=False, progress=False, schedule=schedule, **common)
        model = run.model.eval()
        torch.manual_seed(seed)
        vb = model.variational_bound(x, per_step=True, batch_t=50)
        per = vb["per_step"].mean(1).double()  # [T]: L_0, then L_{t-1} at t = 1..T-1
        total = float(vb["total"].mean())
        D = data.spec.dim
        rec = {"L_T": float(vb["prior"].mean()), "L_0": float(vb["decoder"].mean()),
               "sum_L_t-1": float(vb["terms"].mean()), "total": total,
               "identity_error": float((vb["prior"] + vb["per_step"].sum(0) - vb["total"]).abs().max()),
               "min_step_term": float(vb["per_step"][1:].min()),
               "training_steps": run.history[-1]["step"] if run.history else None}
        if data.spec.kind == "image":
            rec["bits_per_dim"] = total / (D * math.log(2))
        cum = per[1:].cumsum(0) / per[1:].sum()  # share of sum_t L_{t-1} reached by step t (KLs >= 0)
        for frac in (0.5, 0.9, 0.99):
            rec[f"steps_to_{int(frac * 100)}pct"] = int((cum < frac).sum()) + 2  # 1-based t of L_{t-1}
        results[schedule] = rec
        curves[schedule] = (per.numpy(), cum.numpy())
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for schedule, (per, cum) in curves.items():
        r = results[schedule]
        t = range(1, len(per) + 1)
        axes[0].semilogy(list(t)[1:], per[1:], lw=1.2, label=f"{schedule}: L_(t-1)")
        axes[0].scatter([1], [per[0]], marker="s", s=25, label=f"{schedule}: L_0 = {r['L_0']:.2f}")
        axes[1].semilogx(list(t)[1:], cum, lw=1.2, label=f"{schedule} (L_T = {r['L_T']:.1e})")
    axes[0].set_xlabel("step t (1-based)")
    axes[0].set_ylabel("nats per example")
    axes[0].set_title(f"the bound's terms, mean over {n_eval} test examples", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("step t")
    axes[1].set_ylabel("share of sum L_(t-1) reached by step t")
    axes[1].set_title("where the KL terms sit", fontsize=9)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"DDPM variational bound on {data.spec.name}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "diffusion-bound.png")
    summary = {"experiment": "diffusion-bound", "seed": seed, "quick": quick, "data": data.spec.name,
               "test_examples": n_eval, "settings": {k: v for k, v in common.items()}, "results": results,
               "figure": str(out / "diffusion-bound.png")}
    atomic_write_json(out / "diffusion-bound.json", summary)
    return summary
