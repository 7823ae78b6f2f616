"""forward-diffusion: the lecture's strip of an image at increasing t.

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps          (q(x_t | x_0), samplers/schedule.py)

Rows: a few test digits (on the model scale [-1, 1], shown mapped back to [0, 1]) under the
linear and the cosine schedule at the same t, with the same eps. Right panel: abar_t and the
signal-to-noise ratio abar_t / (1 - abar_t) of both schedules; the cosine schedule destroys
information more evenly (Nichol & Dhariwal 2021), the linear one is mostly noise well before T.
Numbers: abar_t at the strip's times and the correlation between x_t and x_0 (= sqrt(abar_t)
for unit-variance data; measured on the digits).
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment

TIMES = (0, 50, 100, 200, 300, 400, 500, 600, 800, 999)


@register_experiment("forward-diffusion", "a digit under q(x_t | x_0) at increasing t: linear vs cosine schedule")
def forward_diffusion(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..report.figures import _plt, save_figure
    from ..samplers import NoiseSchedule

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    g = torch.Generator().manual_seed(seed)
    rows = 2 if quick else 4
    x0 = data.test[torch.randperm(len(data.test), generator=g)[:rows]] * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    # correlation between x_t and x_0 over pixels of many images (standardised x_0)
    ref = data.test * 2 - 1
    ref = (ref - ref.mean()) / ref.std()
    noise_ref = torch.randn(ref.shape, generator=g)
    records = {}
    plt = _plt()
    fig = plt.figure(figsize=(13, 1.2 * 2 * rows + 1.5))
    grid = fig.add_gridspec(2 * rows, len(TIMES) + 4)
    for k, kind in enumerate(("linear", "cosine")):
        s = NoiseSchedule(kind, 1000)
        recs = []
        for j, t in enumerate(TIMES):
            tt = torch.full((rows,), t)
            xt = s.q_sample(x0, tt, eps)
            for i in range(rows):
                ax = fig.add_subplot(grid[k * rows + i, j])
                ax.imshow(((xt[i, 0] + 1) / 2).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"t={t}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(kind if i == 0 else "", fontsize=8)
            xr = s.q_sample(ref, torch.full((len(ref),), t), noise_ref)
            corr = float(torch.corrcoef(torch.stack([xr.flatten(), ref.flatten()]))[0, 1])
            recs.append({"t": t, "alpha_bar": float(s.alpha_bar[t]), "sqrt_alpha_bar": float(s.alpha_bar[t].sqrt()),
                         "corr_xt_x0": corr})
        records[kind] = recs
    ax = fig.add_subplot(grid[:, len(TIMES) + 1:])
    for kind, color in (("linear", "#b2182b"), ("cosine", "#2166ac")):
        s = NoiseSchedule(kind, 1000)
        ax.plot(s.alpha_bar.numpy(), color=color, label=f"{kind}: abar_t")
        ax.plot((s.alpha_bar / (1 - s.alpha_bar)).log10().clamp(-6, 6).numpy() / 6 * 0.5 + 0.5, color=color, ls="--",
                label=f"{kind}: log10 SNR (scaled)")
    ax.set_xlabel("t")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("abar_t and SNR = abar/(1-abar)", fontsize=9)
    save_figure(fig, out / "forward-diffusion.png")
    summary = {"experiment": "forward-diffusion", "seed": seed, "times": list(TIMES), "schedules": records,
               "figure": str(out / "forward-diffusion.png")}
    atomic_write_json(out / "forward-diffusion.json", summary)
    return summary
