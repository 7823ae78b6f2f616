"""prior-sampling: decode codes drawn from a prior, for an autoencoder and a VAE.

An autoencoder is trained only to reconstruct: nothing ties its codes to any distribution, so
decoding z ~ N(0, I) lands wherever the encoder never put a digit. A VAE's KL term pulls its
aggregate posterior towards the prior p(z) = N(0, I), so decoding prior draws gives digits (the
lectures' "AE vs VAE samples"). Both have the same encoder/decoder and code size; both decode
z ~ N(0, I); the AE also decodes z from a Gaussian fitted to its training codes (its `sample`).

Score: the shipped digits classifier's confidence max_k p(k | x) on the decoded images (mean, and
the share above 0.9), and the spread of the predicted classes (entropy of their histogram, in
nats; log 10 = 2.30 when every class is equally frequent), beside the same numbers on real test
digits.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from . import register_experiment


def classifier_scores(extractor, x: torch.Tensor) -> dict:
    p = extractor.probs(x)
    conf, pred = p.max(1)
    hist = torch.bincount(pred, minlength=p.shape[1]).double() / len(pred)
    nz = hist[hist > 0]
    return {"mean_confidence": float(conf.mean()), "confident_share": float((conf > 0.9).double().mean()),
            "class_entropy": float(-(nz * nz.log()).sum()), "max_entropy": math.log(p.shape[1])}


@register_experiment("prior-sampling", "AE vs VAE: decoded N(0, I) samples scored by the digits classifier")
def prior_sampling(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..metrics.features import extractor_for
    from ..report.figures import _plt, image_grid, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    ex = extractor_for(data.spec)
    steps = 150 if quick else 3000
    d = 16
    n = 100 if quick else 1000
    ae = train("ae", data, steps=steps, seed=seed, save=False, progress=False, latent_dim=d).model.eval()
    vae = train("vae", data, steps=steps, seed=seed, save=False, progress=False, latent_dim=d).model.eval()
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        panels = {"AE, z ~ N(0, I)": ae.decode(z),
                  "AE, z ~ Gaussian fit to its codes": ae.sample(n, generator=torch.Generator().manual_seed(seed)),
                  "VAE, z ~ N(0, I)": vae.decode(z)}
    scores = {name: classifier_scores(ex, x) for name, x in panels.items()}
    scores["real test digits"] = classifier_scores(ex, data.test)
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (name, x) in zip(axes, panels.items()):
        g = image_grid(x[:36], nrow=6)
        ax.imshow(g.squeeze(-1), cmap="gray", vmin=0, vmax=255)
        s = scores[name]
        ax.set_title(f"{name}\nconfidence {s['mean_confidence']:.2f}, {100 * s['confident_share']:.0f}% > 0.9",
                     fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"decoded prior samples (code size {d}, {steps} steps; real digits: confidence "
                 f"{scores['real test digits']['mean_confidence']:.2f})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))  # room for the suptitle above the panel titles
    save_figure(fig, out / "prior-sampling.png")
    summary = {"experiment": "prior-sampling", "seed": seed, "quick": quick, "steps": steps, "latent_dim": d,
               "n": n, "classifier": ex.name, "scores": scores, "figure": str(out / "prior-sampling.png")}
    atomic_write_json(out / "prior-sampling.json", summary)
    return summary
