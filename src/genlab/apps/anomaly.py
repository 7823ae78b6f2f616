"""Outlier detection with a trained model: per-example anomaly scores, AUROC / AUPRC where labels
say which examples are normal, and a threshold calibrated at a chosen false-positive rate.

    result = anomaly(model, data, normal_class="3", fpr=0.05, out="scores.csv")

The score is the family's own `anomaly_score(x)` (higher = more anomalous; `genlab models` says
which families have one and each family's docstring what it is): reconstruction error (ae),
-log p(x) (pca, gmm, flows, pixelcnn, fm), -L_k (vae), minus the discriminator's logit (gan),
diffusion reconstruction error (ddpm). Nothing here names a family.

With `ratio="local"` the score is instead the log-likelihood ratio against a local image model fitted
to the run's own training data (nn/local_density.py: a stationary Gaussian over p x p tiles),

    score(x) = log p_local(x) - log p_model(x),

for families with a likelihood, on images. A model's likelihood is dominated by local pixel statistics,
so images simpler than the training data (a "1" under a model of "8"s) can score as more normal than
the data itself; the ratio cancels what the local model also knows (Ren et al. 2019; Serrà et al. 2020).
It works where the model's grasp of local statistics is the tile Gaussian's (pca: one-class AUROC on
MNIST 95.5 -> 97.7); a flow knows far more about blank background, and the ratio does not rescue it
(`genlab experiment flows-ood`).

Protocol, on the scored split (the test split by default) with labels and a normal class:
  - the normal examples are split at random (seeded) into a calibration part (`calibration`,
    half by default) and the rest; the threshold is the (1 - fpr) quantile of the calibration
    part's scores, so about a fraction fpr of unseen normal examples is flagged;
  - AUROC, AUPRC, precision, recall and the observed false-positive rate are measured on the rest
    (the other normals and every anomalous example), never on the calibration part;
  - `auroc_full` is the AUROC over the whole split (the one-class protocol's number, bench/anomaly.py).
Without labels, the threshold is calibrated on the data's training split (assumed normal) and
only the scores, flags and the histogram are produced.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from ..data.registry import dataset_from_spec, load_dataset
from ..data.spec import Dataset
from ..errors import ConfigError, DataError


def families_with(capability: str) -> list[str]:
    """The registered families that define the method behind `capability`."""
    from ..models.base import CAPABILITY_METHODS, MODELS

    return sorted(n for n, c in MODELS.items() if hasattr(c, CAPABILITY_METHODS.get(capability, capability)))


def require(model, capability: str, what: str) -> None:
    """A one-line error when `model` lacks `capability`, naming the families that have it."""
    from ..models.base import CAPABILITY_METHODS

    if not hasattr(model, CAPABILITY_METHODS.get(capability, capability)):
        raise ConfigError(f"'{model.family}' cannot {what} (families that can: {', '.join(families_with(capability))})")


def scoring_data(model, data=None, *, label_column=None) -> Dataset:
    """The data to score: `data` (a Dataset, a name or a path; `label_column` for a CSV) or, by
    default, the run's own data set with every class (a one-class run's --classes undone).
    Its examples must have the shape the model was trained on."""
    if data is None:
        src = dict(model.spec.source or {})
        src.pop("classes", None)
        ds = dataset_from_spec({**model.spec.to_dict(), "source": src})
    elif isinstance(data, Dataset):
        ds = data
    else:
        options = {} if label_column is None else {"label_column": label_column}
        ds = load_dataset(data, **options)
    if ds.spec.kind != model.spec.kind or tuple(ds.spec.shape) != tuple(model.spec.shape):
        raise DataError(f"'{ds.spec.name}' holds {ds.spec.kind} data of shape {tuple(ds.spec.shape)}, but this "
                        f"{model.family} run models {model.spec.kind} data of shape {tuple(model.spec.shape)}")
    return ds


def resolve_classes(values, spec, what: str = "--normal-class") -> list[int]:
    """Label values (class names such as "setosa", or indices 0..K-1) -> class indices."""
    if spec.num_classes < 2:
        raise ConfigError(f"{what} needs labelled data; '{spec.name}' has no labels"
                          + (" (CSV: name the label column with --label-column)" if spec.kind == "vector" else ""))
    names = [str(n) for n in spec.class_names] or [str(i) for i in range(spec.num_classes)]
    out = []
    for v in ([values] if isinstance(values, (str, int)) else list(values)):
        s = str(v).strip()
        if s in names:
            out.append(names.index(s))
        elif s.lstrip("-").isdigit() and 0 <= int(s) < spec.num_classes:
            out.append(int(s))
        else:
            raise ConfigError(f"{what} {s!r} is not among the labels of '{spec.name}' ({', '.join(names)})")
    return sorted(set(out))


RATIOS = ("local",)


def _describe(model, background=None) -> str:
    if background is None:
        doc = model.anomaly_score.__doc__
        return doc.strip().splitlines()[0] if doc else ""
    return (f"log p_local(x) - log p_model(x): the likelihood ratio against a stationary Gaussian over "
            f"{background.patch}x{background.patch} tiles fitted to the run's training data")


def local_ratio(model, patch=None):
    """The likelihood-ratio score of `ratio="local"`: x -> log p_local(x) - log p_model(x), with the local
    density fitted to the run's training data; returns (score function, the fitted LocalGaussian)."""
    from ..nn.local_density import LocalGaussian

    require(model, "log_prob", "score by a likelihood ratio")
    if model.spec.kind != "image":
        raise ConfigError(f"--ratio local needs image data; '{model.spec.name}' holds {model.spec.kind}s")
    background = LocalGaussian(patch).fit(dataset_from_spec(model.spec.to_dict()).train)

    def fn(x):
        return background.log_prob(x) - model.log_prob(x).double().cpu()

    return fn, background


@torch.no_grad()
def score(model, x: torch.Tensor, *, batch_size: int = 256, progress: bool = False, desc: str = "scoring",
          fn=None) -> torch.Tensor:
    """model.anomaly_score (or `fn`) over x in batches (eval mode), as a float64 CPU tensor."""
    if fn is None:
        require(model, "anomaly_score", "score anomalies")
        fn = model.anomaly_score
    was = model.training
    model.eval()
    batches = x.split(batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc, leave=False)
    try:
        s = torch.cat([fn(b.to(model.device)).detach().double().flatten().cpu() for b in batches])
    finally:
        model.train(was)
    if not torch.isfinite(s).all():
        raise DataError(f"{int((~torch.isfinite(s)).sum())} anomaly scores are NaN or Inf")
    return s


def calibrate(scores_normal: np.ndarray, fpr: float) -> float:
    """The threshold t with a fraction at most `fpr` of the given normal scores above it: their
    (1 - fpr) quantile (the next-higher observed score)."""
    return float(np.quantile(scores_normal, 1 - fpr, method="higher"))


def threshold_metrics(scores: np.ndarray, anomalous: np.ndarray, threshold: float) -> dict:
    """Precision, recall and false-positive rate of flagging `scores > threshold`."""
    flag = scores > threshold
    tp, fp = int((flag & anomalous).sum()), int((flag & ~anomalous).sum())
    n_pos, n_neg = int(anomalous.sum()), int((~anomalous).sum())
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(n_pos, 1), "fpr": fp / max(n_neg, 1),
            "flagged": int(flag.sum())}


def anomaly(model, data=None, *, normal_class=None, fpr: float = 0.05, split: str = "test",
            calibration: float = 0.5, label_column=None, out=None, seed: int = 0, batch_size: int = 256,
            progress: bool = False, ratio=None, patch=None) -> dict:
    """Score `split` of `data` (default: the run's data) with `model.anomaly_score`; see the module
    docstring for the protocol. `normal_class`: a label value or index (or a list); default: the
    classes a one-class run was trained on (its --classes), if any. `out`: a .csv path for the
    per-example scores; `<stem>.json` (numbers) and `<stem>.png` (histogram + ROC) go beside it.
    `ratio="local"`: score by the likelihood ratio against a local image model (module docstring;
    `patch`: its tile size, default the largest of 4, 2, 1 dividing the image).
    Returns the numbers (also in the JSON)."""
    from ..metrics.anomaly import auprc, auroc

    if not 0 < fpr < 1:
        raise ConfigError(f"--fpr must lie strictly between 0 and 1, got {fpr}")
    if not 0 < calibration < 1:
        raise ConfigError(f"calibration fraction must lie strictly between 0 and 1, got {calibration}")
    if split not in ("test", "train"):
        raise ConfigError(f"split must be test or train, got {split!r}")
    if ratio is not None and ratio not in RATIOS:
        raise ConfigError(f"--ratio must be one of {', '.join(RATIOS)}, got {ratio!r}")
    if patch is not None and ratio is None:
        raise ConfigError("--patch is the tile size of --ratio local; give --ratio local too")
    fn, background = local_ratio(model, patch) if ratio else (None, None)
    if fn is None:
        require(model, "anomaly_score", "score anomalies")
    ds = scoring_data(model, data, label_column=label_column)
    x = ds.test if split == "test" else ds.train
    labels = ds.test_labels if split == "test" else ds.train_labels
    if normal_class is None and labels is not None and data is None:
        normal_class = (model.spec.source or {}).get("classes")
    normal = None
    if normal_class is not None:
        if labels is None:
            raise ConfigError(f"--normal-class needs labelled data; '{ds.spec.name}' has no labels"
                              + (" (CSV: name the label column with --label-column)" if ds.spec.kind == "vector" else ""))
        normal = resolve_classes(normal_class, ds.spec)
    s = score(model, x, batch_size=batch_size, progress=progress, fn=fn).numpy()
    names = [str(n) for n in ds.spec.class_names] or [str(i) for i in range(ds.spec.num_classes)]
    result = {"family": model.family, "data": ds.spec.name, "split": split, "n": len(s), "fpr_target": fpr,
              "score": _describe(model, background), "score_mean": float(s.mean()), "score_std": float(s.std())}
    role = np.array(["scored"] * len(s), dtype=object)
    hist = (None, None, s)
    roc = None
    if normal is not None:
        y = labels.numpy()
        is_anom = ~np.isin(y, normal)
        if is_anom.all() or not is_anom.any():
            raise ConfigError(f"the {split} split of '{ds.spec.name}' has "
                              f"{'no normal' if is_anom.all() else 'no anomalous'} examples for normal class(es) "
                              f"{', '.join(names[k] for k in normal)}")
        normal_idx = np.flatnonzero(~is_anom)
        rng = np.random.default_rng(seed)
        n_cal = min(max(1, round(calibration * len(normal_idx))), len(normal_idx) - 1)
        cal = rng.permutation(normal_idx)[:n_cal]
        held = np.ones(len(s), bool)
        held[cal] = False
        role[:] = "evaluation"
        role[cal] = "calibration"
        threshold = calibrate(s[cal], fpr)
        se, ae = s[held], is_anom[held]
        from sklearn.metrics import roc_curve

        fpr_c, tpr_c, _ = roc_curve(ae, se)
        a = auroc(se[~ae], se[ae])
        roc = (fpr_c, tpr_c, a)
        result.update({"normal_classes": [names[k] for k in normal], "auroc": a, "auprc": auprc(se[~ae], se[ae]),
                       "auprc_chance": float(ae.mean()), "auroc_full": auroc(s[~is_anom], s[is_anom]),
                       "threshold": threshold, **threshold_metrics(se, ae, threshold),
                       "n_calibration": int(n_cal), "n_evaluation": int(held.sum()),
                       "n_anomalous": int(is_anom.sum()),
                       "calibrated_on": f"a seeded random {calibration:g} of the {split} split's normal examples "
                                        f"(seed {seed}), left out of auroc, auprc, precision, recall and fpr; "
                                        f"auroc_full: the whole {split} split"})
        hist = (se[~ae], se[ae], None)
    else:
        cal_x = ds.train if split == "test" else ds.test
        g = torch.Generator().manual_seed(seed)
        cal_x = cal_x[torch.randperm(len(cal_x), generator=g)[:2000]]
        threshold = calibrate(score(model, cal_x, batch_size=batch_size, fn=fn).numpy(), fpr)
        result.update({"threshold": threshold, "flagged": int((s > threshold).sum()),
                       "calibrated_on": f"up to 2000 examples of the {'train' if split == 'test' else 'test'} split, "
                                        "assumed normal (no normal class given)"})
    if out is not None:
        out = Path(out)
        if out.suffix.lower() != ".csv":
            raise ConfigError(f"--out names the scores' .csv file, got '{out.name}'")
        from ..io import atomic_write_bytes, atomic_write_json
        from ..report.use import anomaly_figure

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["index", "label", "normal", "role", "score", "flagged"])
        for i in range(len(s)):
            lab = "" if labels is None else names[int(labels[i])]
            nor = "" if normal is None else int(int(labels[i]) in normal)
            w.writerow([i, lab, nor, role[i], f"{s[i]:.8g}", int(s[i] > threshold)])
        out.parent.mkdir(parents=True, exist_ok=True)
        fig = anomaly_figure(*hist, threshold, roc, out.with_suffix(".png"),
                             title=f"{model.family} on {ds.spec.name} ({split})")
        result.update({"scores": str(out), "figure": str(fig), "json": str(out.with_suffix(".json"))})
        atomic_write_bytes(out, buf.getvalue().encode())
        atomic_write_json(out.with_suffix(".json"), result)
    return result
