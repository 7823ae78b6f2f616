"""gan-batchnorm: the DCGAN generator with and without batch normalisation.

Radford et al. (2016) put batch norm after every transposed convolution of the generator
("crucial to get deep generators to begin learning, preventing the generator from collapsing all
samples to a single point"):

    BN(h) = gamma * (h - mu_B) / sqrt(sigma_B^2 + eps) + beta,   mu_B, sigma_B^2 over the batch

so every layer's activations start centred and scaled whatever the initialisation. Its price: in
training mode a sample depends on the others in its batch (the batch's mean and variance), which
is why the generator samples in eval mode with running statistics. Variants here: "batch" (DCGAN),
"none" (the same generator without normalisation) and "group" (GroupNorm, batch-independent).
Same discriminator, losses, optimiser, steps and seeds.

Numbers per variant and seed: the Frechet distance of 1000 samples to the test digits in the
shipped classifier's features (with the real-data floor), the classifier's class histogram (classes
dropped), and the batch dependence of the generator in training mode (how much sample 0 moves when
the rest of its batch is redrawn; 0 without batch norm). Figure: samples per variant and the FD.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment

VARIANTS = ("batch", "none", "group")
SETTING = {"net": "conv", "latent_dim": 32, "channels": (32, 64), "batch_size": 64}


@torch.no_grad()
def batch_dependence(model, seed: int = 0, n: int = 32) -> float:
    """|G(z_0 | batch 1) - G(z_0 | batch 2)| (mean over pixels) with the generator in training
    mode: the same code z_0, the rest of its batch redrawn."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=g)
    z2 = torch.cat([z[:1], torch.randn(n - 1, model.latent_dim, generator=g)])
    gen = model.generator
    mode = gen.training
    gen.train()
    try:
        a, b = gen(z)[0], gen(z2)[0]
    finally:
        gen.train(mode)
    return float((a - b).abs().mean())


@register_experiment("gan-batchnorm", "the DCGAN generator with batch norm, without it and with group norm, "
                                      "over seeds: FD, classes dropped, batch dependence")
def gan_batchnorm(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..metrics.evaluate import evaluate
    from ..report.figures import _plt, image_grid, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    steps = 40 if quick else 3000
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    n = 200 if quick else 360
    results, grids = {}, {}
    for variant in VARIANTS:
        per_seed = []
        for s in seeds:
            model = train("gan", data, steps=steps, seed=s, save=False, progress=False, norm=variant,
                          **SETTING).model.eval()
            ev = evaluate(model, data, ["fid", "balance"], n=n, seed=s)
            per_seed.append({"seed": s, "fid": ev["metrics"]["fid"], "fid_real": ev["reference"]["fid"],
                             "classes_dropped": ev["metrics"]["classes_dropped"],
                             "batch_dependence": batch_dependence(model, s)})
            if s == seeds[0]:
                grids[variant] = model.sample(64, generator=torch.Generator().manual_seed(s)).cpu()
        results[variant] = {"per_seed": per_seed,
                            "fid_mean": sum(r["fid"] for r in per_seed) / len(per_seed),
                            "classes_dropped_mean": sum(r["classes_dropped"] for r in per_seed) / len(per_seed),
                            "batch_dependence": per_seed[0]["batch_dependence"]}

    plt = _plt()
    fig, axes = plt.subplots(1, len(VARIANTS) + 1, figsize=(3.4 * (len(VARIANTS) + 1), 3.8))
    for ax, v in zip(axes, VARIANTS):
        ax.imshow(image_grid(grids[v], nrow=8).squeeze(-1), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"norm={v}: FD {results[v]['fid_mean']:.2f}", fontsize=9)
        ax.set_axis_off()
    ax = axes[-1]
    for i, v in enumerate(VARIANTS):
        fids = [r["fid"] for r in results[v]["per_seed"]]
        ax.scatter([i] * len(fids), fids, color="#4a78b5")
        ax.plot([i - 0.2, i + 0.2], [results[v]["fid_mean"]] * 2, color="#222")
    ax.axhline(results[VARIANTS[0]]["per_seed"][0]["fid_real"], color="#b33", ls="--", lw=1, label="real data")
    ax.set_xticks(range(len(VARIANTS)), VARIANTS)
    ax.set_ylabel("FD to test digits (lower is better)")
    ax.legend(fontsize=8)
    fig.suptitle(f"DCGAN generator normalisation on digits ({steps} steps, {len(seeds)} seed(s))", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "gan-batchnorm.png")
    summary = {"experiment": "gan-batchnorm", "seed": seed, "quick": quick, "steps": steps, "seeds": seeds,
               "setting": {k: list(v) if isinstance(v, tuple) else v for k, v in SETTING.items()}, "n": n,
               "results": results, "figure": str(out / "gan-batchnorm.png")}
    atomic_write_json(out / "gan-batchnorm.json", summary)
    return summary
