"""flow-density: what a normalizing flow's exact density looks like, and how far it is from the truth.

A flow gives log p(x) = log N(f(x); 0, I) + log|det df/dx| exactly, so its density can be drawn
on a grid and, where the toy's true density p* is known, compared with it by

    KL(p* || p) = E_{p*}[log p* - log p] = test NLL - H(p*)          (nats, >= 0)

estimated on the test split. Figure: one row per toy; the true density (or a histogram of the
data where it has no closed form), then `realnvp` (affine couplings) and `maf` with spline
transforms (neural spline flow), each with its KL estimate. The grid sum of the learned density
times the cell area checks that it integrates to ~1.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from . import register_experiment

TOYS = {"8gaussians": 1.6, "checkerboard": 4.2, "moons": 3.5}  # name -> half-width of the plotted square
MODELS = [("realnvp", {}), ("maf", {"transform": "spline"})]


@torch.no_grad()
def _grid_log_density(fn, half: float, n: int):
    g = torch.linspace(-half, half, n)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    lp = torch.cat([fn(b) for b in pts.split(20_000)])
    return lp.view(n, n), float(g[1] - g[0]) ** 2


@register_experiment("flow-density", "2-D toys: learned flow densities (realnvp, maf-spline) beside the true one, KL")
def flow_density(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..metrics.toy import kl_estimate
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    steps = 150 if quick else 2000
    toys = ["checkerboard", "moons"] if quick else list(TOYS)
    n_grid = 120 if quick else 300
    plt = _plt()
    fig, axes = plt.subplots(len(toys), 1 + len(MODELS), figsize=(3.2 * (1 + len(MODELS)), 3.2 * len(toys)),
                             squeeze=False)
    results = {}
    for row, name in enumerate(toys):
        data = load_dataset(name, n_train=10000, n_test=5000, seed=seed)
        half = TOYS[name]
        extent = (-half, half, -half, half)
        ax = axes[row, 0]
        if data.log_density is not None:
            lp_true, _ = _grid_log_density(data.log_density, half, n_grid)
            ax.imshow(lp_true.exp().numpy(), origin="lower", extent=extent, cmap="viridis")
            ax.set_title(f"{name}: true density")
            true_h = float(-data.log_density(data.test).mean())
        else:
            ax.hist2d(data.train[:, 0].numpy(), data.train[:, 1].numpy(), bins=n_grid // 2,
                      range=[[-half, half], [-half, half]], cmap="viridis")
            ax.set_title(f"{name}: data (no closed form)")
            true_h = None
        results[name] = {"true_entropy": true_h}
        for col, (family, hp) in enumerate(MODELS, start=1):
            run = train(family, data, steps=steps, seed=seed, save=False, progress=False, **hp)
            model = run.model
            with torch.no_grad():
                lp = torch.cat([model.log_prob(b) for b in data.test.split(5000)])
            lp_grid, cell = _grid_log_density(model.log_prob, half, n_grid)
            rec = {"test_nll": float(-lp.mean()), "grid_mass": float(lp_grid.exp().sum() * cell),
                   "steps": steps, "hparams": model.config}
            if data.log_density is not None:
                rec["kl"] = kl_estimate(lp, data.log_density(data.test))
            results[name][f"{family}{'-' + hp['transform'] if 'transform' in hp else ''}"] = rec
            ax = axes[row, col]
            ax.imshow(lp_grid.exp().numpy(), origin="lower", extent=extent, cmap="viridis")
            label = family + (f" ({hp['transform']})" if hp else "")
            kl = f"KL {rec['kl']:.3f} nats" if "kl" in rec else f"NLL {rec['test_nll']:.3f}"
            ax.set_title(f"{label}: {kl}", fontsize=9)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"learned flow densities after {steps} steps (KL = test NLL - true entropy)")
    save_figure(fig, out / "flow-density.png")
    summary = {"experiment": "flow-density", "seed": seed, "quick": quick, "results": results,
               "figure": str(out / "flow-density.png")}
    bad = [k for k, v in results.items() for m, r in v.items() if isinstance(r, dict) and not math.isfinite(r["test_nll"])]
    if bad:
        summary["warning"] = f"non-finite NLL on {bad}"
    atomic_write_json(out / "flow-density.json", summary)
    return summary
