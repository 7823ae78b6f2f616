"""gan-saturation: why the -log D trick exists.

For D(G(z)) = sigmoid(l), the generator's losses and their slopes in the logit l:

    minimax          L = log(1 - D)    dL/dl = -D          -> 0 where D rejects the fakes (D -> 0)
    non-saturating   L = -log D        dL/dl = -(1 - D)    -> -1 there: a strong signal

Left panel: these curves. Right panel: measured on a GAN learning the 8-Gaussian ring,
the norm of the generator's parameter gradient under each loss (same weights, same batch)
against the mean D(G(z)) at that moment of training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment


def _grad_norm(model, loss_fn, z) -> float:
    model.generator.zero_grad(set_to_none=True)
    loss_fn(model.discriminator(model.generator(z))).backward()
    g = torch.cat([p.grad.flatten() for p in model.generator.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return float(g.norm())


@register_experiment("gan-saturation", "generator gradient norm vs D(G(z)): minimax vs non-saturating loss")
def gan_saturation(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..nn.gan import generator_loss_minimax, generator_loss_non_saturating
    from ..report.figures import _plt, save_figure
    from ..train import Callback, train

    out = Path(out)
    data = load_dataset("8gaussians", n_train=4000, n_test=1000)
    records = []

    class Probe(Callback):
        def on_step_end(self, trainer):
            if trainer.step % 10 and trainer.step > 20:  # every step early on, then every 10th
                return
            m = trainer.model
            g = torch.Generator().manual_seed(seed + trainer.step)
            z = torch.randn(256, m.latent_dim, generator=g)
            with torch.no_grad():
                d = torch.sigmoid(m.discriminator(m.generator(z))).mean().item()
            records.append({"step": trainer.step, "d_of_fake": d,
                            "minimax": _grad_norm(m, generator_loss_minimax, z),
                            "non_saturating": _grad_norm(m, generator_loss_non_saturating, z)})

    # a strong discriminator early on (5 critic steps, higher lr) shows the saturated regime
    train("gan", data, steps=60 if quick else 300, seed=seed, save=False, progress=False,
          callbacks=[Probe()], latent_dim=2, hidden=(128, 128), n_critic=5, d_lr=2e-3, lr=2e-4,
          minibatch_std=False)

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    d = torch.linspace(1e-3, 1 - 1e-3, 400)
    a.plot(d, (1 - d).log(), label="minimax  log(1 - D)", color="#b2182b")
    a.plot(d, -d.log(), label="non-saturating  -log D", color="#2166ac")
    a.plot(d, -d, ls="--", color="#b2182b", label="slope dL/dl, minimax: -D")
    a.plot(d, -(1 - d), ls="--", color="#2166ac", label="slope dL/dl, non-sat.: -(1 - D)")
    a.set_xlabel("D(G(z))")
    a.set_title("generator losses and their slopes in the logit")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    xs = [r["d_of_fake"] for r in records]
    b.scatter(xs, [r["minimax"] for r in records], s=12, color="#b2182b", label="minimax")
    b.scatter(xs, [r["non_saturating"] for r in records], s=12, color="#2166ac", label="non-saturating")
    b.set_xscale("log")
    b.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    b.xaxis.set_minor_formatter(NullFormatter())
    b.set_xlabel("mean D(G(z)) during training")
    b.set_ylabel("||grad of L_G wrt generator parameters||")
    b.set_title("measured on the 8-Gaussian ring")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    save_figure(fig, out / "gan-saturation.png")
    low = [r for r in records if r["d_of_fake"] < 0.1]
    summary = {"experiment": "gan-saturation", "seed": seed, "records": records,
               "low_d_ratio_non_saturating_over_minimax":
                   (sum(r["non_saturating"] for r in low) / max(sum(r["minimax"] for r in low), 1e-12)) if low else None,
               "figure": str(out / "gan-saturation.png")}
    atomic_write_json(out / "gan-saturation.json", summary)
    return summary
