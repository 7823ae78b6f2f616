"""Autoencoders against PCA, and what the size of the code buys.

ae-vs-pca: PCA is the best *linear* 2-D code: its reconstruction U_2 U_2^T (x - mu) + mu has the
smallest squared error of any rank-2 linear map, (trace S - lambda_1 - lambda_2) / D per pixel on the
training data (S the covariance, lambda its eigenvalues). An autoencoder with a 2-D bottleneck and
nonlinear encoder/decoder can do better, and its codes separate the classes differently (the
lectures' AE-vs-PCA figure: Hinton & Salakhutdinov 2006). Figure: the two families' 2-D codes of the
test digits coloured by class, with test reconstruction error and 5-NN class accuracy of the codes.

latent-dim-sweep: PCA, AE and VAE with d = 2 .. 32: test reconstruction error (mean squared error
per pixel of the mean reconstruction) against d. PCA's error falls monotonically with d for every
example (nested subspaces); the AE's follows below it; the VAE trades reconstruction for a prior
it can sample from (its KL term grows with d as more dimensions carry information).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import register_experiment


@torch.no_grad()
def reconstruction_mse(model, x: torch.Tensor) -> float:
    """Mean squared error per pixel of model.reconstruct(x)."""
    return float(torch.cat([(model.reconstruct(b) - b).pow(2).flatten(1).mean(1) for b in x.split(500)]).mean())


def _knn(z: np.ndarray, y: np.ndarray) -> float:
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return float(cross_val_score(KNeighborsClassifier(5), z, y, cv=5).mean())


@register_experiment("ae-vs-pca", "2-D codes of digits: PCA vs a nonlinear autoencoder, reconstruction error")
def ae_vs_pca(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    steps = 80 if quick else 3000
    pca = train("pca", data, save=False, progress=False, seed=seed, latent_dim=2).model.eval()
    ae = train("ae", data, steps=steps, save=False, progress=False, seed=seed, latent_dim=2).model.eval()
    xtr = data.train.reshape(len(data.train), -1).double()
    lam = torch.linalg.eigvalsh(torch.cov(xtr.T)).flip(0)
    # the closed form uses the ML covariance (1/N), as the projection's mean squared error does
    lam = lam * (len(xtr) - 1) / len(xtr)
    closed = float((lam.sum() - lam[:2].sum()) / xtr.shape[1])
    results = {"pca_train_mse_closed_form": closed}
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4))
    y = data.test_labels.numpy()
    for ax, (name, model) in zip(axes, [("pca", pca), ("ae", ae)]):
        with torch.no_grad():
            z = model.encode(data.test).double().numpy()
        rec = {"test_mse": reconstruction_mse(model, data.test), "train_mse": reconstruction_mse(model, data.train),
               "knn5_accuracy": _knn(z, y)}
        results[name] = rec
        cmap = plt.get_cmap("tab10")
        for k in range(10):
            ax.scatter(z[y == k, 0], z[y == k, 1], s=5, color=cmap(k), label=str(k), alpha=0.8)
        ax.set_title(f"{name}: test MSE {rec['test_mse']:.4f}/pixel, 5-NN acc {100 * rec['knn5_accuracy']:.0f}%",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"2-D codes of the test digits (AE: {steps} steps)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "ae-vs-pca.png")
    summary = {"experiment": "ae-vs-pca", "seed": seed, "quick": quick, "ae_steps": steps, "results": results,
               "figure": str(out / "ae-vs-pca.png")}
    atomic_write_json(out / "ae-vs-pca.json", summary)
    return summary


@register_experiment("latent-dim-sweep", "PCA / AE / VAE reconstruction error (and VAE KL) against the code size")
def latent_dim_sweep(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    dims = [2, 8] if quick else [2, 4, 8, 16, 32]
    families = ["pca", "ae"] if quick else ["pca", "ae", "vae"]
    steps = 60 if quick else 1500
    results: dict = {f: [] for f in families}
    per_example_pca = []
    for d in dims:
        for fam in families:
            run = train(fam, data, steps=None if fam == "pca" else steps, save=False, progress=False, seed=seed,
                        latent_dim=d)
            model = run.model.eval()
            rec = {"latent_dim": d, "test_mse": reconstruction_mse(model, data.test)}
            if fam == "vae":
                with torch.no_grad():
                    parts = model.loss(data.test)
                rec.update({"test_kl": float(parts["kl"]), "test_neg_elbo": float(parts["loss"])})
            if fam == "pca":
                with torch.no_grad():
                    per_example_pca.append((model.reconstruct(data.test) - data.test).pow(2).flatten(1).sum(1))
            results[fam].append(rec)
    pe = torch.stack(per_example_pca)
    monotone_share = float(((pe[1:] <= pe[:-1] + 1e-6).all(0)).double().mean())
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if "vae" in families else 1, figsize=(5.4 * (2 if "vae" in families else 1), 4),
                             squeeze=False)
    ax = axes[0, 0]
    for fam in families:
        ax.plot(dims, [r["test_mse"] for r in results[fam]], "o-", label=fam)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("code dimension d")
    ax.set_ylabel("test reconstruction MSE per pixel")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"reconstruction vs code size (AE/VAE {steps} steps)", fontsize=9)
    if "vae" in families:
        ax = axes[0, 1]
        ax.plot(dims, [r["test_kl"] for r in results["vae"]], "o-", c="#b2182b", label="KL(q(z|x) || p(z))")
        ax.plot(dims, [r["test_neg_elbo"] for r in results["vae"]], "s-", c="#333333", label="-ELBO")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("code dimension d")
        ax.set_ylabel("nats per test digit")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_title("VAE: the rate (KL) grows with d", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "latent-dim-sweep.png")
    summary = {"experiment": "latent-dim-sweep", "seed": seed, "quick": quick, "dims": dims, "steps": steps,
               "results": results, "pca_per_example_monotone_share": monotone_share,
               "figure": str(out / "latent-dim-sweep.png")}
    atomic_write_json(out / "latent-dim-sweep.json", summary)
    return summary
