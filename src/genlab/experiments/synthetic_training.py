"""synthetic-training: do a conditional model's samples teach a classifier? (the lectures' "enhance
discriminative models"; the Classification Accuracy Score of Ravuri & Vinyals 2019)

    CAS(model) = accuracy on the REAL test split of a classifier trained ONLY on the model's
                 samples x ~ p_model(x | y), with the labels y it was asked for

A model that captures each class's variety scores near the real-data row (the same classifier
trained on the real training split); one whose samples look right but cover little of a class, or
ignore its label, scores lower — FD does not see the second failure at all. Control row: the best
family's samples with their labels shuffled, which must fall to chance (1 / K): the score measures
class-conditional data, not pretty images.

Augmentation with few real labels: a classifier trained on k real examples per class, against the
same k per class plus the samples of a conditional model trained on those k per class only (no
other labels are seen anywhere, so nothing leaks from the full training split).

Classifier: scikit-learn's multinomial logistic regression on standardised pixels (a fixed,
well-known learner, so the rows differ only in their training data). Data: scikit-learn's digits.
Synthetic sets have as many examples per class as the real training split.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment

#: families and their conditional settings; quick mode keeps the closed-form fits
FAMILIES = {"gmm": {"n_components": 5}, "vae": {"latent_dim": 16}, "gan": {}, "ddpm": {}, "fm": {}}
QUICK = ("gmm",)
FEW_PER_CLASS = 20


def accuracy_of_classifier(x_train, y_train, x_test, y_test, seed: int = 0) -> float:
    """Multinomial logistic regression on standardised pixels, trained on (x_train, y_train),
    accuracy on (x_test, y_test)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5, random_state=seed))
    clf.fit(x_train.reshape(len(x_train), -1).numpy(), y_train.numpy())
    return float((clf.predict(x_test.reshape(len(x_test), -1).numpy()) == y_test.numpy()).mean())


def few_per_class(data, k: int, seed: int):
    """k training examples of each class (seeded)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat([torch.nonzero(data.train_labels == c).flatten()[torch.randperm(
        int((data.train_labels == c).sum()), generator=g)[:k]] for c in range(data.spec.num_classes)])
    return idx


@torch.no_grad()
def class_samples(model, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """One sample per requested label, in batches, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(len(y), y, generator=g).cpu() for y in labels.split(500)]).clamp(0, 1)


@register_experiment("synthetic-training", "Classification Accuracy Score: a classifier trained only on each "
                                           "conditional family's samples, tested on real digits; augmentation "
                                           "with few real labels")
def synthetic_training(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..report.figures import _plt, image_grid, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    k = data.spec.num_classes
    families = QUICK if quick else tuple(FAMILIES)
    steps = 200 if quick else 3000
    xt, yt = data.test, data.test_labels
    real = accuracy_of_classifier(data.train, data.train_labels, xt, yt, seed)
    few = few_per_class(data, FEW_PER_CLASS, seed)
    real_few = accuracy_of_classifier(data.train[few], data.train_labels[few], xt, yt, seed)
    rows, grids, samples = {}, {}, {}
    for fam in families:
        settings = {**FAMILIES[fam], "conditional": True}
        model = train(fam, data, steps=steps, seed=seed, save=False, progress=False, **settings).model.eval()
        synth = samples[fam] = class_samples(model, data.train_labels, seed + 1)
        rows[fam] = {"cas": accuracy_of_classifier(synth, data.train_labels, xt, yt, seed)}
        grids[fam] = synth[torch.argsort(data.train_labels, stable=True)][::max(1, len(synth) // 60)][:60]
        # augmentation: a model of the few labelled examples only, its samples added to them
        small = train(fam, _few_labelled(data, few), steps=steps, seed=seed, save=False, progress=False,
                      **settings).model.eval()
        extra_y = data.train_labels                       # as many synthetic examples as the real split has
        extra = class_samples(small, extra_y, seed + 2)
        rows[fam]["few_plus_synthetic"] = accuracy_of_classifier(
            torch.cat([data.train[few], extra]), torch.cat([data.train_labels[few], extra_y]), xt, yt, seed)
    best = max(rows, key=lambda f: rows[f]["cas"])
    shuffled = data.train_labels[torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(seed))]
    control = accuracy_of_classifier(samples[best], shuffled, xt, yt, seed)

    plt = _plt()
    fig, axes = plt.subplots(1, len(families) + 1, figsize=(3.2 * (len(families) + 1), 4.2))
    names = list(families)
    bars = [rows[f]["cas"] for f in names]
    axes[0].barh(["real data"] + names + ["shuffled labels"], [real] + bars + [control], color="#4a78b5")
    axes[0].axvline(1 / k, color="#b33", lw=1, ls="--", label="chance")
    axes[0].set_xlim(0, 1)
    axes[0].set_xlabel("accuracy on real test digits")
    axes[0].set_title("trained on samples only (CAS)", fontsize=9)
    axes[0].legend(fontsize=8)
    for ax, fam in zip(axes[1:], names):
        ax.imshow(image_grid(grids[fam], nrow=10).squeeze(-1), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{fam}: CAS {rows[fam]['cas']:.3f}\n{FEW_PER_CLASS}/class + samples: "
                     f"{rows[fam]['few_plus_synthetic']:.3f}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"synthetic training on digits ({steps} steps per family; real data {real:.3f}, "
                 f"{FEW_PER_CLASS} real per class {real_few:.3f})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "synthetic-training.png")
    summary = {"experiment": "synthetic-training", "seed": seed, "quick": quick, "steps": steps,
               "classifier": "StandardScaler + multinomial LogisticRegression (C=0.5), scikit-learn",
               "real_data": real, "few_per_class": FEW_PER_CLASS, "real_few": real_few, "families": rows,
               "shuffled_labels_control": {"family": best, "cas": control}, "chance": 1 / k,
               "figure": str(out / "synthetic-training.png")}
    atomic_write_json(out / "synthetic-training.json", summary)
    return summary


def _few_labelled(data, idx):
    """A Dataset of the training examples `idx` only (the test split unchanged)."""
    from ..data.spec import Dataset

    return Dataset(data.train[idx], data.test, data.spec, data.train_labels[idx], data.test_labels,
                   location=data.location)
