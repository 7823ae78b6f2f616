"""mode-collapse: the 25-Gaussian grid (PacGAN's benchmark) with a vanilla GAN and with remedies.

A GAN's generator is only pushed towards regions the discriminator currently rejects, so it can
cover a few modes well and never discover the rest (mode collapse). Two remedies change what
the discriminator sees:

    minibatch std (Karras et al. 2018)   D gets the batch's mean feature standard deviation:
                                         a collapsed batch has a tell-tale low spread
    PacGAN, pac = m (Lin et al. 2018)    D judges m samples at once, D(x_1, ..., x_m): the
                                         packed real distribution p^m and fake q^m are further
                                         apart in total variation when q drops mass

Same generator, discriminator body, optimiser and number of steps for every variant; the
figure shows generated samples at four moments of training (EMA generator), the table PacGAN's
metrics: modes captured (of 25), % high-quality samples (within 3 sigma), reverse KL to uniform.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment

VARIANTS = {
    "vanilla": {},
    "minibatch-std": {"minibatch_std": True},
    "pacgan-4": {"pac": 4},
}
# the gan family's defaults (MLP 256-256, Adam 2e-4 / betas 0.5, 0.999, batch 64, generator EMA 0.999)
COMMON = {"latent_dim": 2}


@register_experiment("mode-collapse", "25-Gaussian grid: vanilla GAN vs minibatch std vs PacGAN, samples over training")
def mode_collapse(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..data.toy2d import mode_centers
    from ..io import atomic_write_json
    from ..metrics.modes import N_SAMPLES, mode_coverage
    from ..report.figures import _plt, save_figure
    from ..train import Callback, train

    out = Path(out)
    data = load_dataset("25gaussians")
    centers, sigma = mode_centers("25gaussians"), data.spec.source["options"]["sigma"]
    steps = 60 if quick else 15000
    moments = [steps // 8, steps // 4, steps // 2, steps]

    class Snapshots(Callback):
        def __init__(self):
            self.samples = {}

        def on_step_end(self, trainer):
            if trainer.step in moments:
                with trainer.sampling_weights() as m:
                    self.samples[trainer.step] = m.sample(1000, generator=torch.Generator().manual_seed(seed))

    results, shots = {}, {}
    for name, options in VARIANTS.items():
        snap = Snapshots()
        run = train("gan", data, steps=steps, seed=seed, save=False, progress=False,
                    callbacks=[snap], **{**COMMON, **options})
        x = run.model.sample(N_SAMPLES, generator=torch.Generator().manual_seed(seed + 1))
        rep = mode_coverage(x, centers, sigma)
        results[name] = {"modes": rep["modes"], "high_quality": rep["high_quality"],
                         "reverse_kl": rep["reverse_kl"], "options": options}
        shots[name] = snap.samples

    plt = _plt()
    fig, axes = plt.subplots(len(VARIANTS), len(moments), figsize=(2.6 * len(moments), 2.6 * len(VARIANTS)),
                             squeeze=False)
    ref = data.test[:1000].numpy()
    for i, name in enumerate(VARIANTS):
        for j, step in enumerate(moments):
            ax = axes[i][j]
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="#bbbbbb")
            if step in shots[name]:
                p = shots[name][step].numpy()
                ax.scatter(p[:, 0], p[:, 1], s=1, c="#1f5fa8")
            ax.set_xlim(-5.5, 5.5)
            ax.set_ylim(-5.5, 5.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"step {step}")
            if j == 0:
                r = results[name]
                ax.set_ylabel(f"{name}\n{r['modes']}/25 modes, {100 * r['high_quality']:.0f}% HQ", fontsize=9)
    fig.suptitle("25-Gaussian grid: generated (blue) vs data (grey)")
    fig.tight_layout()
    save_figure(fig, out / "mode-collapse.png")
    summary = {"steps": steps, "seed": seed, "common": COMMON, "results": results,
               "figure": str(out / "mode-collapse.png")}
    atomic_write_json(out / "mode-collapse.json", summary)
    return summary
