"""mode-collapse: a GAN that covers few modes of a ring of Gaussians, and what two remedies change.

A GAN's generator is only pushed towards regions the discriminator currently rejects, so it can
cover a few modes well and never discover the rest (mode collapse). Two remedies change what
the discriminator sees:

    minibatch std (Karras et al. 2018)   D gets the batch's mean feature standard deviation:
                                         a collapsed batch has a tell-tale low spread
    PacGAN, pac = m (Lin et al. 2018)    D judges m samples at once, D(x_1, ..., x_m): the
                                         packed real distribution p^m and fake q^m are further
                                         apart in total variation when q drops mass

The setting is chosen so that the plain GAN collapses (SETTING, after Metz et al. 2017's ring
experiment): the ring of 8 Gaussians (sigma 0.01), a generator with a wide latent and a
discriminator that learns ten times faster than the generator, large batches, no EMA of the
generator (an average of the weights would blur a generator that hops between modes). Same
networks, optimiser and steps for every variant, several seeds. Numbers (PacGAN's protocol,
metrics/modes.py): modes captured (a mode with at least one sample within 3 sigma), the share of
high-quality samples, and the reverse KL of the mode histogram to uniform, per seed and averaged.
Figure: the final samples of every variant (rows) and seed (columns) over the data.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment

DATA = "8gaussians"
VARIANTS = {
    "vanilla": {},
    "minibatch-std": {"minibatch_std": True},
    "pacgan-4": {"pac": 4},
}
#: the shared setting (gan hyperparameters and trainer settings); minibatch_std and sampling are explicit:
#: the gan's data-aware defaults on 2-D points turn the first on and sample by discriminator rejection
SETTING = {"latent_dim": 256, "hidden": (128, 128), "lr": 1e-4, "d_lr": 1e-3, "batch_size": 256, "ema_decay": None,
           "minibatch_std": False, "sampling": "plain"}


@register_experiment("mode-collapse", "ring of 8 Gaussians: a collapsing vanilla GAN vs minibatch std vs PacGAN, "
                                      "over seeds")
def mode_collapse(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..data.toy2d import mode_centers
    from ..io import atomic_write_json
    from ..metrics.modes import N_SAMPLES, mode_coverage
    from ..report.figures import _plt, save_figure
    from ..train import train

    out = Path(out)
    data = load_dataset(DATA)
    centers, sigma = mode_centers(DATA), data.spec.source["options"]["sigma"]
    steps = 30 if quick else 1500
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    setting = {**SETTING, "batch_size": 64} if quick else SETTING
    results, finals = {}, {}
    for name, options in VARIANTS.items():
        per_seed = []
        for s in seeds:
            run = train("gan", data, steps=steps, seed=s, save=False, progress=False, **{**setting, **options})
            x = run.model.sample(N_SAMPLES, generator=torch.Generator().manual_seed(s + 1))
            rep = mode_coverage(x, centers, sigma)
            per_seed.append({"seed": s, "modes": rep["modes"], "high_quality": rep["high_quality"],
                             "reverse_kl": rep["reverse_kl"], "counts": rep["counts"]})
            finals[(name, s)] = x[:1000]
        results[name] = {"options": options, "per_seed": per_seed,
                         "modes_mean": sum(r["modes"] for r in per_seed) / len(per_seed),
                         "high_quality_mean": sum(r["high_quality"] for r in per_seed) / len(per_seed),
                         "reverse_kl_mean": sum(r["reverse_kl"] for r in per_seed) / len(per_seed)}
    plt = _plt()
    fig, axes = plt.subplots(len(VARIANTS), len(seeds), figsize=(2.7 * len(seeds) + 0.6, 2.6 * len(VARIANTS)),
                             squeeze=False)
    ref = data.test[:1000].numpy()
    for i, name in enumerate(VARIANTS):
        for j, s in enumerate(seeds):
            ax = axes[i][j]
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="#bbbbbb")
            p = finals[(name, s)].numpy()
            ax.scatter(p[:, 0], p[:, 1], s=1, c="#1f5fa8")
            ax.set_xlim(-1.6, 1.6)
            ax.set_ylim(-1.6, 1.6)
            ax.set_xticks([])
            ax.set_yticks([])
            r = results[name]["per_seed"][j]
            ax.set_title(f"seed {s}: {r['modes']}/{len(centers)} modes, {100 * r['high_quality']:.0f}% HQ", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{name}\nmean {results[name]['modes_mean']:.1f} modes", fontsize=9)
    fig.suptitle(f"ring of 8 Gaussians after {steps} steps: generated (blue) vs data (grey)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "mode-collapse.png")
    summary = {"experiment": "mode-collapse", "steps": steps, "seeds": seeds, "quick": quick, "data": DATA,
               "n_modes": len(centers), "setting": {k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in setting.items()},
               "results": results, "figure": str(out / "mode-collapse.png")}
    atomic_write_json(out / "mode-collapse.json", summary)
    return summary
