"""Imputation RMSE: genlab families against mean, KNN and iterative imputation (scikit-learn).

Protocols (each: fit the family on the training split, remove entries of test examples, RMSE over
the removed entries; `genlab impute` does the same for one run):
  - MNIST, centre mask (a centred 14 x 14 box, 25% of the pixels) and random mask (each pixel
    missing with probability 0.5), the first --n test images; also the shipped classifier's
    accuracy on the imputed images;
  - a table with 20% of its cells removed at random, RMSE on the standardised scale: California
    housing (scikit-learn's fetch_california_housing, a download) when it can be fetched, otherwise
    the bundled breast-cancer, diabetes and wine tables (said in the record); --mask-seeds masks per table
    (default 5), the mean RMSE reported. "genlab (selected)" is the family and settings
    `genlab.apps.impute.choose_imputer` picks from its TABLE_CANDIDATES as a data person tunes an
    imputer: fitted on the training split minus a random 20%, scored by the same masked RMSE on that
    20% (3 masks), refitted on the whole training split. The test rows take no part in the choice.
    "genlab (selected) + EM" is the same model refined by EM for incomplete data (`impute(em=True)`,
    `fit_incomplete`) on the training split plus the masked test rows, the rows IterativeImputer uses;
    `genlab impute --choose` uses EM when the validation split says it helps (`selected.*.em`).
    Where the chosen model has log_columns=true (it models the logs of the nonnegative columns), the row
    "iterative (log columns)" runs IterativeImputer on the same log-transformed columns, so the record
    shows how much of the gain is the transform and how much the model.
Baselines as in apps/impute.py: mean (training split), KNNImputer(5) fit on (up to 2000 rows of) the
training split, IterativeImputer (BayesianRidge, 10 rounds, 50 nearest features) fit on those rows
plus the masked rows. Target: genlab's best family below IterativeImputer on both.

    GENLAB_DATA_DIR=/work/shared/data python bench/impute.py            # n = 1000 test images
    GENLAB_DATA_DIR=/work/shared/data python bench/impute.py --quick    # n = 200, pca and gmm only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

IMAGE_FAMILIES = {"pca": {"latent_dim": 64}, "gmm": {"n_components": 10},
                  "vae": {"latent_dim": 32, "steps": 3000, "batch_size": 128, "likelihood": "gaussian"}}
TABLE_FAMILIES = {"pca": {"latent_dim": "auto"}, "gmm": {"n_components": 5}}
MASKS = ("center", "random:0.5")


def tables(names):
    """[(name, Dataset)] of the tables to use: california if fetchable, else the bundled ones."""
    from sklearn import datasets

    import genlab

    out, note, queue = [], None, list(names)
    while queue:
        name = queue.pop(0)
        if name == "california":
            try:
                b = datasets.fetch_california_housing()
            except Exception as e:  # offline: no download possible
                note = f"fetch_california_housing failed ({type(e).__name__}); used breast-cancer, diabetes and wine"
                queue += ["breast-cancer", "diabetes", "wine"]
                continue
        elif name == "breast-cancer":
            b = datasets.load_breast_cancer()
        elif name == "diabetes":
            b = datasets.load_diabetes()
        elif name == "wine":
            b = datasets.load_wine()
        else:
            raise SystemExit(f"unknown table {name}")
        x = torch.as_tensor(b.data, dtype=torch.float32)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        n_test = len(x) // 5
        spec = genlab.DataSpec("vector", (x.shape[1],), name=name)
        out.append((name, genlab.Dataset(x[perm[n_test:]], x[perm[:n_test]], spec)))
    return out, note


def fit(family, data, hp, seed):
    import genlab

    hp = dict(hp)
    steps = hp.pop("steps", None)
    train_kw = {k: hp.pop(k) for k in ("batch_size", "lr") if k in hp}
    if hp.get("latent_dim") == "auto":
        hp["latent_dim"] = max(1, data.spec.dim // 2)
    return genlab.train(family, data, steps=steps, seed=seed, save=False, progress=False, **train_kw, **hp).model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 test images, pca and gmm on images")
    p.add_argument("--n", type=int, help="test images per mask (default 1000; quick 200)")
    p.add_argument("--families", help="image families (default pca,gmm,vae; quick pca,gmm)")
    p.add_argument("--tables", default="california", help="california (falls back to breast-cancer,diabetes,wine), "
                                                          "breast-cancer, diabetes, wine; '' for none")
    p.add_argument("--no-images", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask-seeds", type=int, default=5, help="random masks per table (RMSE averaged)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/impute.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(a.threads)
    import genlab
    from genlab.apps.impute import choose_imputer, impute

    n = a.n or (200 if a.quick else 1000)
    families = (a.families or ("pca,gmm" if a.quick else "pca,gmm,vae")).split(",")
    record = {"quick": a.quick, "n": n, "threads": a.threads, "seed": a.seed,
              "started": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
              "torch": torch.__version__, "machine": platform.machine(), "load_average_at_start": os.getloadavg(),
              "settings": {"images": {f: IMAGE_FAMILIES.get(f, {}) for f in families}, "tables": TABLE_FAMILIES},
              "results": {}}

    def run(set_name, data, fams, masks, mask_seeds=(a.seed,), rows=None):
        """fams: {row name: (family, settings[, impute options])}; each mask's RMSE averaged over mask_seeds."""
        for label, (fam, hp, *extra) in fams.items():
            extra = extra[0] if extra else {}
            t = time.process_time()
            model = fit(fam, data, hp, a.seed)
            fit_s = time.process_time() - t
            for mask in masks:
                key = f"{set_name} {mask}"
                have = record["results"].get(key, {})
                runs = [impute(model, data, mask=mask, n=rows or n, seed=s, **extra,
                               baselines=() if "mean" in have else ("mean", "knn", "iterative")) for s in mask_seeds]
                for name in runs[0]["methods"]:
                    row = average_rows([r["methods"][name] for r in runs])
                    if name == fam:
                        row.update(fit_cpu_s=round(fit_s, 1), settings=hp, **extra)
                    have[label if name == fam else name] = row
                if extra.get("em") and hp.get("log_columns"):
                    have["iterative (log columns)"] = iterative_on_features(model, data, mask, mask_seeds, rows or n)
                record["results"][key] = have
                if "accuracy_truth" in runs[0]:
                    have["_truth_accuracy"] = runs[0]["accuracy_truth"]
                m = have[label]
                col = "rmse_standardised" if "rmse_standardised" in m else "rmse"
                print(f"{key:28} {label:16} {col} {m[col]:.4f}   ({fit_s:.0f} CPU-s fit, {m['cpu_seconds']:.0f} impute)",
                      flush=True)

    if not a.no_images:
        mnist = genlab.load_dataset("mnist")
        run("mnist", mnist, {f: (f, IMAGE_FAMILIES[f]) for f in families}, MASKS)
    names = [t for t in a.tables.split(",") if t]
    if names:
        sets, note = tables(names)
        record["table_note"] = note
        seeds = range(a.seed, a.seed + a.mask_seeds)
        record["mask_seeds"] = list(seeds)
        for name, data in sets:
            chosen = choose_imputer(data, mask="random:0.2", seed=a.seed)
            fam, hp, val = chosen["family"], chosen["settings"], chosen["rmse"]
            val_em = choose_imputer(data, [(fam, hp)], mask="random:0.2", seed=a.seed, em=True)["rmse"]
            record.setdefault("selected", {})[name] = {"family": fam, "settings": hp, "validation_rmse": val,
                                                       "validation_rmse_em": val_em, "em": val_em < val,
                                                       "candidates": chosen["scores"]}
            print(f"{name}: validation chose {fam} {hp} (RMSE {val:.4f}; with EM {val_em:.4f}: "
                  f"{'EM' if val_em < val else 'no EM'}, as genlab impute --choose)", flush=True)
            rows = {f: (f, hp_) for f, hp_ in TABLE_FAMILIES.items()}
            rows["genlab (selected)"] = (fam, hp)
            # refined by EM on the training rows plus the masked test rows: what IterativeImputer learns from
            rows["genlab (selected) + EM"] = (fam, hp, {"em": True})
            run(name, data, rows, ("random:0.2",), seeds, rows=len(data.test))
    record["load_average_at_end"] = os.getloadavg()
    print()
    for key, rows in record["results"].items():
        col = "rmse" if "mnist" in key else "rmse_standardised"
        ranked = sorted(((k, v) for k, v in rows.items() if not k.startswith("_")), key=lambda kv: kv[1][col])
        print(f"{key}: " + ",  ".join(f"{k} {v[col]:.4f}" + (f" (acc {v['accuracy']:.3f})" if "accuracy" in v else "")
                                     for k, v in ranked))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from genlab.io import atomic_write_json

    atomic_write_json(out, record)
    print(f"wrote {out}")


def iterative_on_features(model, data, mask, seeds, n) -> dict:
    """IterativeImputer on the columns as `model` describes them (its log columns transformed, then mapped
    back), under the masks `impute` draws for the same seeds; RMSE on the standardised scale."""
    from genlab.apps.impute import _rmse, parse_mask, run_baselines

    x, out = data.test[:n], []
    scale = data.train.std(0).clamp_min(1e-12)
    for s in seeds:
        known = parse_mask(mask, x, torch.Generator().manual_seed(s))
        xm = torch.where(known.bool(), model.to_features(x), torch.full_like(x, float("nan")))
        filled = run_baselines(model.to_features(data.train), xm, known, seed=s, which=("iterative",))["iterative"][0]
        filled = torch.where(known.bool(), x, model.from_features(filled))
        missing = ~known.bool()
        out.append({"rmse": _rmse(filled, x, missing), "rmse_standardised": _rmse(filled, x, missing, scale)})
    return average_rows(out)


def average_rows(rows: list[dict]) -> dict:
    """The mean of each number over the runs of several masks (other entries from the first)."""
    out = dict(rows[0])
    for k, v in rows[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = sum(r[k] for r in rows) / len(rows)
    if len(rows) > 1:
        out["masks"] = len(rows)
    return out


if __name__ == "__main__":
    main()
