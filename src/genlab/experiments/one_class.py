"""one-class: anomaly detection with a generative model of one class (the one-class protocol).

For each class k: train on the training examples of class k only, score the whole test split with
the model's `anomaly_score` (higher = more anomalous: -log p(x) for pca and gmm, reconstruction
error for ae, -L_k for vae), and report the AUROC of separating the other classes (anomalies,
label 1) from class k (normal, label 0), scikit-learn's `roc_auc_score`. Chance is 0.5. The figure
shows AUROC per class and family, and each family's mean over classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import register_experiment


@torch.no_grad()
def auroc_for_class(model, data, k: int) -> float:
    """AUROC of model.anomaly_score on the test split, class k normal (0), the rest anomalous (1)."""
    from sklearn.metrics import roc_auc_score

    s = torch.cat([model.anomaly_score(b).float().cpu() for b in data.test.split(500)]).numpy()
    return float(roc_auc_score((data.test_labels != k).numpy().astype(int), s))


@register_experiment("one-class", "AUROC per class: train on one digit, score all test digits by anomaly_score")
def one_class(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    classes = [0, 1, 2] if quick else list(range(10))
    families = {"pca": {"latent_dim": 8}} if quick else {
        "pca": {"latent_dim": 8}, "gmm": {"n_components": 4}, "ae": {"latent_dim": 8, "steps": 800},
        "vae": {"latent_dim": 8, "steps": 800}}
    results = {f: {} for f in families}
    for fam, hp in families.items():
        hp = dict(hp)
        steps = hp.pop("steps", None)
        for k in classes:
            run = train(fam, data.select_classes([k]), steps=steps, seed=seed, save=False, progress=False, **hp)
            results[fam][k] = auroc_for_class(run.model.eval(), data, k)
    means = {f: float(np.mean(list(r.values()))) for f, r in results.items()}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    w = 0.8 / len(families)
    for i, fam in enumerate(families):
        ax.bar(np.arange(len(classes)) + i * w, [results[fam][k] for k in classes], w,
               label=f"{fam} (mean {means[fam]:.3f})")
    ax.set_xticks(np.arange(len(classes)) + 0.4 - w / 2)
    ax.set_xticklabels([str(k) for k in classes])
    ax.set_xlabel("normal class")
    ax.set_ylabel("AUROC")
    ax.set_ylim(0.4, 1.0)
    ax.axhline(0.5, c="k", lw=0.8, ls=":")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("one-class anomaly detection on digits (train on one class, score all)", fontsize=9)
    save_figure(fig, out / "one-class.png")
    summary = {"experiment": "one-class", "seed": seed, "quick": quick, "families": families,
               "auroc": {f: {str(k): v for k, v in r.items()} for f, r in results.items()}, "mean_auroc": means,
               "figure": str(out / "one-class.png")}
    atomic_write_json(out / "one-class.json", summary)
    return summary
