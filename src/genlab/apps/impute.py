"""Missing data: fill in missing pixels or table cells with a trained model, next to the baselines a
data person tries first.

    result = impute(model, "digits", mask="center", out="imputed/")

Each family that can do it has `model.impute(x, mask, y=None, *, generator=None)` (mask: 1 = known),
with its method and equation in its docstring: pca and gmm exactly (the conditional Gaussian /
mixture), ae and vae by latent optimisation (vae also pseudo-Gibbs), flows by gradient ascent on
log p over the missing entries, ddpm by RePaint, fm by guided integration. This module builds
masks, calls the contract (it never names a family), checks that known entries come back
unchanged, and scores.

Two inputs:
  - complete data (a registered set, or a file): `n` examples of the split get entries removed by
    `mask` (center | half | random:P | FILE), so the truth is known: RMSE on the removed entries
    (data scale; vectors also on the training split's standardised scale), and for image sets with
    a shipped classifier its accuracy on the imputed images, beside mean imputation, scikit-learn's
    KNNImputer (fit on the training split) and IterativeImputer (fit on the training split
    together with the masked rows, so its rounds of chained regressions see the missing pattern;
    fitted on complete rows alone it stops after one round);
  - a CSV whose missing cells are empty or NA/NaN/?: every row is filled, written as a CSV like the
    input (no truth, so no RMSE).
"""

from __future__ import annotations

import csv
import importlib
import io
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .anomaly import require, scoring_data
from .inpaint import make_mask

BASELINES = ("mean", "knn", "iterative")


def parse_mask(kind, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A known-mask (1 = known, 0 = missing) for the examples x [N, ...]:
    "center" (images: a centred box of half the height and width), "half" (images: the bottom half;
    vectors: the last half of the features), "random:P" (each entry missing with probability P; for
    images each pixel, across channels), or a path to a .npy of 0/1 with 1 = MISSING, of one
    example's shape or one per example."""
    kind = str(kind)
    image = x.dim() == 4
    if kind.startswith("random"):
        try:
            p = float(kind.split(":", 1)[1]) if ":" in kind else 0.3
        except ValueError:
            raise ConfigError(f"--mask random:P needs a number P, got '{kind}'") from None
        if not 0 < p < 1:
            raise ConfigError(f"--mask random:P needs 0 < P < 1, got {p}")
        if image:
            return make_mask(x.shape, "random", p, generator)
        return (torch.rand(x.shape, generator=generator) >= p).float()
    if kind == "center":
        if not image:
            raise ConfigError("--mask center is for images; for tables use random:P, half or a FILE")
        return make_mask(x.shape, "center", 0.5).expand_as(x).clone()
    if kind == "half":
        if image:
            return make_mask(x.shape, "bottom", 0.5).expand_as(x).clone()
        m = torch.ones_like(x)
        m[:, x.shape[1] - x.shape[1] // 2:] = 0
        return m
    path = Path(kind)
    if path.suffix.lower() != ".npy":
        raise ConfigError(f"--mask must be center, half, random:P or a .npy file (1 = missing), got '{kind}'")
    if not path.is_file():
        raise ConfigError(f"no such mask file: {path}")
    from ..data.arrays import load_npy

    arr = load_npy(path, "mask")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: a mask of {arr.dtype}; give numbers (1 = missing, 0 = known)")
    missing = torch.as_tensor(np.asarray(arr) != 0)
    shape = tuple(x.shape[1:])
    if tuple(missing.shape) == shape or tuple(missing.shape) == shape[1:]:
        missing = missing.expand(x.shape[1:]).unsqueeze(0)
    if missing.dim() == len(shape) and missing.shape[0] == len(x) and image and tuple(missing.shape[1:]) == shape[1:]:
        missing = missing.unsqueeze(1)  # N x H x W for N x C x H x W images
    try:
        return (~missing).float().expand_as(x).clone()
    except RuntimeError:
        raise ConfigError(f"{path}: mask of shape {tuple(arr.shape)} does not fit examples of shape {shape} "
                          f"({len(x)} of them)") from None


def impute_batched(model, x: torch.Tensor, mask: torch.Tensor, y=None, *, batch_size: int = 100, seed: int = 0,
                   progress: bool = False, **options) -> torch.Tensor:
    """model.impute over x in batches (eval mode), checking that known entries come back unchanged."""
    require(model, "impute", "impute missing entries")
    was = model.training
    model.eval()
    g = torch.Generator(device=model.device).manual_seed(seed)
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"impute ({model.family})", leave=False)
    outs = []
    try:
        for i in starts:
            xb, mb = x[i:i + batch_size].to(model.device), mask[i:i + batch_size].to(model.device)
            yb = None if y is None else y[i:i + batch_size]
            outs.append(model.impute(xb, mb, yb, generator=g, **options).detach().cpu())
    finally:
        model.train(was)
    out = torch.cat(outs)
    known = mask.bool().expand_as(x)
    if out.shape != x.shape or not torch.equal(out[known], x[known]):
        raise RuntimeError(f"'{model.family}'.impute changed known entries (a bug in the family)")
    if not torch.isfinite(out).all():
        raise RuntimeError(f"'{model.family}'.impute returned NaN or Inf for missing entries")
    return out


def run_baselines(train: torch.Tensor, x_masked: torch.Tensor, known: torch.Tensor, *, seed: int = 0,
              image: bool = False, max_train: int = 2000, which=("mean", "knn", "iterative")) -> dict:
    """The first things a data person tries, on flattened features [N, D]: mean imputation (training
    split means), KNNImputer(5) fit on the training split, IterativeImputer (BayesianRidge, 10 rounds,
    at most 50 nearest features) fit on the training split plus the masked rows. Each: (filled, seconds)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    importlib.import_module("sklearn.experimental.enable_iterative_imputer")  # registers IterativeImputer
    from sklearn.impute import IterativeImputer, KNNImputer
    from threadpoolctl import threadpool_limits

    n = len(x_masked)
    g = torch.Generator().manual_seed(seed)
    tr = train.reshape(len(train), -1)[torch.randperm(len(train), generator=g)[:max_train]].double().numpy()
    xm = x_masked.reshape(n, -1).double().numpy().copy()
    km = known.reshape(n, -1).bool().numpy()
    xm[~km] = np.nan
    out = {}
    for name in which:
        t = time.process_time()
        if name not in ("mean", "knn", "iterative"):
            raise ConfigError(f"unknown baseline {name!r} (mean, knn, iterative)")
        with threadpool_limits(1), warnings.catch_warnings():  # many small BLAS calls: threads only spin
            warnings.simplefilter("ignore", ConvergenceWarning)
            filled = _baseline(name, tr, xm, image, seed, IterativeImputer, KNNImputer)
        filled = np.where(km, xm, filled)  # sklearn drops all-missing columns: keep the shape
        out[name] = (torch.as_tensor(filled, dtype=x_masked.dtype).reshape(x_masked.shape), time.process_time() - t)
    return out


def _baseline(name, tr, xm, image, seed, IterativeImputer, KNNImputer):
    if name == "mean":
        filled = np.where(np.isnan(xm), tr.mean(0), xm)
    elif name == "knn":
        filled = KNNImputer(n_neighbors=5).fit(tr).transform(xm)
    else:
        d = tr.shape[1]
        imp = IterativeImputer(max_iter=10, random_state=seed, n_nearest_features=min(50, d - 1) if d > 50 else None,
                               min_value=0.0 if image else -np.inf, max_value=1.0 if image else np.inf)
        filled = imp.fit_transform(np.vstack([tr, xm]))[len(tr):]
    return filled


def _rmse(a: torch.Tensor, b: torch.Tensor, missing: torch.Tensor, scale: Optional[torch.Tensor] = None) -> float:
    d = (a - b).double()
    if scale is not None:
        d = d / scale.double()
    return float(d[missing].pow(2).mean().sqrt())


def _classifier(spec):
    from ..metrics.features import SHIPPED, shipped_extractor

    for name in (getattr(spec, "domain", None), (spec.source or {}).get("name"), spec.name):
        if name in SHIPPED and SHIPPED[name] == tuple(spec.shape):
            return shipped_extractor(name)
    return None


#: what `choose_imputer` tries on a table by default: full-covariance mixtures of 1-4 components at four
#: ridges, and probabilistic PCA at four ranks ("D/4" ... "D-1": of the table's width D) on the raw and on
#: the standardised columns, each on the columns as they are and with the nonnegative columns
#: log-transformed (log_columns=true; tried where the table has such columns)
_MODELS = ([("gmm", {"n_components": k, "reg_covar": r}) for k in (1, 2, 3, 4) for r in (1e-3, 1e-2, 3e-2, 1e-1)]
           + [("pca", {"latent_dim": f, "standardise": s}) for s in (False, True)
              for f in ("D/4", "D/2", "3D/4", "D-1")])
TABLE_CANDIDATES = tuple((family, {**settings, "log_columns": logs}) for logs in (False, True)
                         for family, settings in _MODELS)
RANKS = {"D/4": lambda d: d // 4, "D/2": lambda d: d // 2, "3D/4": lambda d: 3 * d // 4, "D-1": lambda d: d - 1}


def choose_imputer(data, candidates=TABLE_CANDIDATES, *, mask="random:0.2", validation: float = 0.2,
                   masks: int = 3, seed: int = 0, em: bool = False, progress: bool = False) -> dict:
    """Choose a family and its settings for imputation the way a data person tunes an imputer: each
    candidate (family, settings) is fitted on the training split without a random `validation` share of
    its rows (seeded), and scored by the RMSE of imputing those held-out rows under `masks` random draws of
    `mask` (on the training split's standardised scale for tables). The test split takes no part.
    `em=True` imputes as `impute(..., em=True)` does (each candidate refined by EM on its training rows
    plus the masked held-out rows).

    Returns {"family", "settings" (ranks resolved), "rmse", "scores": [{family, settings, rmse}, ...]};
    refit the winner on the whole training split (`genlab.train(family, data, **settings)`) to use it."""
    from tqdm.auto import tqdm

    from ..data.spec import Dataset
    from ..train.run import train

    if not 0 < validation < 1:
        raise ConfigError(f"validation must be a share between 0 and 1, got {validation}")
    n_val = int(len(data.train) * validation)
    if n_val < 1 or n_val >= len(data.train):
        raise ConfigError(f"{len(data.train)} training rows are too few to hold out {validation:.0%} for validation")
    rows = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))  # tables come sorted
    labels = data.train_labels
    inner = Dataset(data.train[rows[n_val:]], data.train[rows[:n_val]], data.spec,
                    None if labels is None else labels[rows[n_val:]], None if labels is None else labels[rows[:n_val]])
    scores = []
    nonnegative = (data.train.reshape(len(data.train), -1) >= 0).all(0)
    for family, settings in tqdm(candidates, desc="choosing an imputer", unit="candidate", disable=not progress,
                                 leave=False):
        settings = {k: (RANKS[v](data.spec.dim) if k == "latent_dim" and v in RANKS else v)
                    for k, v in settings.items()}
        if settings.get("latent_dim", 1) < 1 or any(r["family"] == family and r["settings"] == settings
                                                    for r in scores):
            continue  # a rank below 1 on a narrow table, or one two rank rules name
        if settings.get("log_columns") and not nonnegative.any():
            continue  # no column to take the log of: the same model as without
        model = train(family, inner, seed=seed, save=False, progress=False, **settings).model
        runs = [impute(model, inner, mask=mask, n=n_val, seed=seed + i, baselines=(), em=em)["methods"][family]
                for i in range(masks)]
        col = "rmse_standardised" if "rmse_standardised" in runs[0] else "rmse"
        scores.append({"family": family, "settings": settings, "rmse": sum(r[col] for r in runs) / masks})
    if not scores:
        raise ConfigError("choose_imputer: no candidate could be fitted")
    best = min(scores, key=lambda r: r["rmse"])
    return {**best, "scores": scores}


#: the fewest complete rows `choose_and_impute` fits its candidates on
MIN_COMPLETE_ROWS = 20


def choose_and_impute(data, out, *, label_column=None, mask=None, n: int = 500, seed: int = 0,
                      candidates=TABLE_CANDIDATES, progress: bool = False) -> dict:
    """Impute a table without training anything first: choose the model (`choose_imputer`), train it
    into `out/run`, and use it.

    - A CSV with missing cells: the candidates are fitted on its complete rows (written to
      `out/complete-rows.csv`, the run's data: its seeded 20% test split is held out), chosen with the
      table's own share of missing cells per incomplete row as the mask (`random:P`), and the winner
      fills every missing cell (`out/imputed.csv`).
    - Complete data (a CSV, .npy or registered vector set): chosen on its training split and scored on
      its test split, as `impute` scores any run.
    The winner is then validated once more with EM (`impute(..., em=True)`: refined on the rows being
    imputed, holes included), and imputes with EM if that scored lower (`em` in the result; a table's
    holes are then filled after EM on the table's own rows). Either way the winner is also scored against
    mean, KNN and iterative imputation on held-out complete rows under the same mask (`held_out`), and
    `out/choice.json` records every candidate's score."""
    from ..data.arrays import read_table
    from ..data.registry import load_dataset
    from ..io import atomic_write_json
    from ..train.run import train

    out = Path(out)
    if (out / "run").exists():
        raise ConfigError(f"{out} already holds a chosen imputer ({out / 'run'}); use it with `genlab impute "
                          f"{out / 'run'}`, or choose another --out")
    options = {} if label_column is None else {"label_column": label_column}
    table = None
    if isinstance(data, (str, Path)) and Path(data).suffix.lower() == ".csv" and Path(data).is_file():
        table = read_table(data, label_column)
        if not np.isnan(table["x"]).any():
            table = None  # complete: the truth is known, so choose and score like any data
    if table is not None:
        if mask is not None:
            raise ConfigError("this table already has missing cells; they are what is imputed (drop --mask)")
        x = table["x"]
        gaps = np.isnan(x)
        complete = ~gaps.any(1)
        if complete.sum() < MIN_COMPLETE_ROWS:
            raise DataError(f"{data}: only {int(complete.sum())} of {len(x)} rows are complete; choosing an "
                            f"imputer fits the candidates on complete rows and needs at least {MIN_COMPLETE_ROWS}")
        share = gaps[~complete].mean()
        mask = f"random:{min(max(round(float(share), 2), 0.05), 0.95):g}"
        labels = None if table["labels"] is None else table["labels"][complete]
        out.mkdir(parents=True, exist_ok=True)
        source = _write_csv(out / "complete-rows.csv", x[complete], table["header"], labels,
                            table["class_names"], table["label_name"])
        if table["labels"] is not None:
            options = {"label_column": -1}  # _write_csv puts it last
    else:
        source = data
    ds = load_dataset(source, **options)
    if ds.spec.kind != "vector":
        raise ConfigError(f"choosing an imputer is for tables ({ds.spec.name} holds images): train a family on "
                          "it and give its run to `genlab impute RUN`")
    if ds.spec.dim < 2:
        raise DataError(f"{ds.spec.name}: one feature column; there is nothing to impute it from")
    mask = mask or "random:0.2"
    choice = choose_imputer(ds, candidates, mask=mask, seed=seed, progress=progress)
    em = choose_imputer(ds, [(choice["family"], choice["settings"])], mask=mask, seed=seed, em=True)["rmse"]
    use_em = em < choice["rmse"]
    run = train(choice["family"], source, out / "run", seed=seed, data_options=options, progress=False,
                **choice["settings"])
    held_out = impute(run.model, ds, mask=mask, n=min(n, len(ds.test)), seed=seed, em=use_em)
    result = {"data": str(data), "family": choice["family"], "settings": choice["settings"],
              "validation_rmse": choice["rmse"], "validation_rmse_em": em, "em": use_em,
              "candidates": choice["scores"], "mask": mask, "run": str(out / "run"), "held_out": held_out}
    if table is not None:
        filled = impute(run.model, data, label_column=label_column, out=out, seed=seed, em=use_em)
        result.update(filled=filled, table=filled["table"])
    atomic_write_json(out / "choice.json", result)
    return result


def impute(model, data=None, *, mask=None, n: int = 500, split: str = "test", label_column=None, out=None,
           seed: int = 0, baselines=BASELINES, batch_size: int = 100, progress: bool = False, em: bool = False,
           **options) -> dict:
    """Impute with `model` (see the module docstring). `data`: a Dataset, a name or a path (default:
    the run's data); a .csv with missing cells is filled whole. `options` go to `model.impute`
    (e.g. steps=). `baselines`: which of mean, knn, iterative to run beside it. `mask` defaults to center
    for images, random:0.2 for tables. `out`: a directory for impute.json, impute.png (images: masked |
    imputed | truth) and imputed.csv (tables). `em=True` (pca, gmm): first refine a copy of the model by
    its `fit_incomplete` (EM from its fit) on the training split plus the masked rows, holes included,
    the rows IterativeImputer learns from; a table with missing cells: on the table's own rows.
    Returns the numbers."""
    require(model, "impute", "impute missing entries")
    if em:
        require(model, "fit_incomplete", "learn from rows with missing entries (--em)")
    if split not in ("test", "train"):
        raise ConfigError(f"split must be test or train, got {split!r}")
    if isinstance(data, (str, Path)) and Path(data).suffix.lower() == ".csv" and Path(data).is_file():
        from ..data.arrays import read_table

        table = read_table(data, label_column)
        if np.isnan(table["x"]).any():
            if mask is not None:
                raise ConfigError("this table already has missing cells; they are what is imputed (drop --mask)")
            return _impute_table(model, table, data, out=out, seed=seed, batch_size=batch_size,
                                 progress=progress, em=em, **options)
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    ds = scoring_data(model, data, label_column=label_column)
    x = (ds.test if split == "test" else ds.train)[:n]
    if mask is None:
        mask = "center" if ds.spec.kind == "image" else "random:0.2"
    g = torch.Generator().manual_seed(seed)
    known = parse_mask(mask, x, g)
    missing = ~known.bool()
    if not missing.any():
        raise ConfigError(f"--mask {mask} removes no entries from these examples")
    x_masked = torch.where(known.bool(), x, torch.full_like(x, float("nan")))
    y = None
    if model.condition_kind != "none":
        y = ds.conditions(split, model.condition_kind)
        y = None if y is None else y[:n]
    torch.manual_seed(seed)
    t = time.process_time()
    if em:
        train_y = ds.conditions("train", model.condition_kind) if model.condition_kind != "none" else None
        model = refined_copy(model, torch.cat([ds.train, x_masked]), torch.cat([torch.ones_like(ds.train), known]),
                             None if y is None or train_y is None else torch.cat([train_y, y]))
    filled = impute_batched(model, x_masked, known, y, batch_size=batch_size, seed=seed, progress=progress, **options)
    seconds = time.process_time() - t
    image = ds.spec.kind == "image"
    scale = None if image else ds.train.std(0).clamp_min(1e-12)
    methods = {model.family: (filled, seconds)}
    if baselines:
        methods.update(run_baselines(ds.train, x_masked, known, seed=seed, image=image, which=baselines))
    clf = _classifier(ds.spec) if image else None
    labels = (ds.test_labels if split == "test" else ds.train_labels)
    labels = None if labels is None else labels[:n]
    rows = {}
    for name, (xf, sec) in methods.items():
        r = {"rmse": _rmse(xf, x, missing), "cpu_seconds": round(sec, 3)}
        if scale is not None:
            r["rmse_standardised"] = _rmse(xf, x, missing, scale)
        if clf is not None and labels is not None:
            r["accuracy"] = float((clf.predict(xf) == labels).double().mean())
        rows[name] = r
    result = {"family": model.family, "data": ds.spec.name, "split": split, "n": len(x), "mask": str(mask),
              "missing_fraction": float(missing.double().mean()), "methods": rows, "em": em,
              "metric": "RMSE over the removed entries" + ("" if image else
                        "; rmse_standardised divides each feature's error by its training-split std")}
    if clf is not None and labels is not None:
        result["accuracy_truth"] = float((clf.predict(x) == labels).double().mean())
        result["classifier"] = clf.name
    if out is not None:
        from ..io import atomic_write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if image:
            from ..report.use import image_rows, show_missing

            result["figure"] = str(image_rows([show_missing(x, known), filled, x], out / "impute.png"))
        else:
            result["table"] = str(_write_csv(out / "imputed.csv", filled.numpy(), None, None, None, None))
        atomic_write_json(out / "impute.json", result)
    return result


def refined_copy(model, x: torch.Tensor, known: torch.Tensor, y=None):
    """A copy of `model` refined by EM on rows x with missing entries (known: 1 = known) from its fit."""
    import copy

    model = copy.deepcopy(model)
    model.fit_incomplete(x, known, y)
    return model


def _impute_table(model, table: dict, path, *, out, seed, batch_size, progress, em=False, **options) -> dict:
    x = torch.as_tensor(table["x"])
    if model.spec.kind != "vector" or tuple(model.spec.shape) != tuple(x.shape[1:]):
        raise DataError(f"{path}: a table of {x.shape[1]} feature columns, but this {model.family} run models "
                        f"{model.spec.kind} data of shape {tuple(model.spec.shape)}"
                        + (" (is the label column named with --label-column?)" if table["labels"] is None else ""))
    known = torch.isfinite(x).float()
    y = None
    if model.condition_kind == "class":
        if table["labels"] is None:
            raise ConfigError(f"this {model.family} model is conditional: name the table's label column "
                              "(--label-column)")
        y = torch.as_tensor(table["labels"])
    torch.manual_seed(seed)
    if em:
        model = refined_copy(model, x, known, y)
    filled = impute_batched(model, x, known, y, batch_size=batch_size, seed=seed, progress=progress, **options)
    result = {"family": model.family, "data": str(path), "n": len(x), "mask": "missing cells of the table", "em": em,
              "missing_cells": int((known == 0).sum()), "rows_with_missing": int((known == 0).any(1).sum())}
    if out is not None:
        from ..io import atomic_write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result["table"] = str(_write_csv(out / "imputed.csv", filled.numpy(), table["header"], table["labels"],
                                         table["class_names"], table["label_name"]))
        atomic_write_json(out / "impute.json", result)
    return result


def _write_csv(path, x: np.ndarray, header, labels, class_names, label_name) -> Path:
    """The imputed table: the feature columns (header kept), then the label column if there was one."""
    from ..io import atomic_write_bytes

    buf = io.StringIO()
    w = csv.writer(buf)
    head = list(header) if header else [f"x{j}" for j in range(x.shape[1])]
    if labels is not None:
        head.append(label_name or "label")
    w.writerow(head)
    for i, row in enumerate(x):
        cells = [f"{v:.7g}" for v in row]
        if labels is not None:
            cells.append(class_names[labels[i]] if class_names else str(int(labels[i])))
        w.writerow(cells)
    return atomic_write_bytes(path, buf.getvalue().encode())
