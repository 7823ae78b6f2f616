"""The one-class anomaly-detection protocol on MNIST and Fashion-MNIST, per genlab family.

For each class k: train the family on class k of the training split only (`genlab train FAMILY
--classes k`), score the whole test split with the family's anomaly_score (`genlab anomaly`), and
report the AUROC with class k as normal (`auroc_full`: every test example, the protocol of Ruff et
al. 2018). The number per data set is the mean over the 10 classes. Anchors (mean AUROC, %):
Deep SVDD 94.8 (MNIST) / 84.8 (Fashion-MNIST) (Ruff et al. 2018), GeoTrans about 98.0 / 93.5
(Golan & El-Yaniv 2018). Target: >= 98 / 94 with genlab's best family, all 20 runs within 60 CPU-minutes.

One thread (torch and BLAS), CPU-time budgets; the records say what else ran on the machine.
    GENLAB_DATA_DIR=/work/shared/data python bench/anomaly.py                      # full: 10 classes x 2 sets
    GENLAB_DATA_DIR=/work/shared/data python bench/anomaly.py --quick              # classes 0, 1; 2000 test images
    ... --families pca,gmm,ae --set ae.steps=1500 --set pca.latent_dim=32 --out bench/results/anomaly.json
    ... --ratio      # also score each likelihood family by the ratio against the local density
                     # (`genlab anomaly --ratio local`): rows "FAMILY+ratio", the same trained models
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

DEFAULTS = {  # per family: hyperparameters and the training budget (steps; closed-form fits ignore it)
    "pca": {"latent_dim": 32},
    "gmm": {"n_components": 5},
    "ae": {"latent_dim": 32, "steps": 1500, "batch_size": 128},
    "vae": {"latent_dim": 16, "steps": 1500, "batch_size": 128},
}
ANCHORS = {"mnist": {"Deep SVDD": 94.8, "GeoTrans": 98.0}, "fashion-mnist": {"Deep SVDD": 84.8, "GeoTrans": 93.5}}
TARGET = {"mnist": 98.0, "fashion-mnist": 94.0}


def value(text):
    import yaml

    return yaml.safe_load(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist,fashion-mnist")
    p.add_argument("--families", default="pca,gmm,ae")
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--quick", action="store_true", help="classes 0 and 1, 2000 test images, short training")
    p.add_argument("--test-n", type=int, help="score only the first N test images (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="FAMILY.KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ratio", action="store_true", help="also score by the likelihood ratio against the local "
                   "density (genlab anomaly --ratio local), families with log_prob, the same trained models")
    p.add_argument("--patch", type=int, help="the local density's tile size (default: genlab's)")
    p.add_argument("--out", default="bench/results/anomaly.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    from threadpoolctl import threadpool_limits

    threadpool_limits(a.threads)
    import genlab
    from genlab.apps.anomaly import anomaly
    from genlab.train.checkpoint import seed_everything

    settings = {f: dict(v) for f, v in DEFAULTS.items()}
    if a.quick:
        for f in ("ae", "vae"):
            settings[f]["steps"] = 300
    for kv in a.set:
        k, v = kv.split("=", 1)
        fam, key = k.split(".", 1)
        settings.setdefault(fam, {})[key] = value(v)
    classes = [0, 1] if a.quick and a.classes == p.get_default("classes") else [int(c) for c in a.classes.split(",")]
    test_n = a.test_n or (2000 if a.quick else None)
    families = [f.strip() for f in a.families.split(",") if f.strip()]
    record = {"protocol": "one-class: train on class k of the training split, AUROC on the whole test split "
                          "with k normal (auroc_full), mean over classes", "quick": a.quick, "threads": a.threads,
              "classes": classes, "test_n": test_n, "ratio": a.ratio, "patch": a.patch, "settings": {f: settings.get(f, {}) for f in families},
              "started": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
              "torch": torch.__version__, "machine": platform.machine(),
              "load_average_at_start": os.getloadavg(), "results": {}}
    for name in [d.strip() for d in a.data.split(",") if d.strip()]:
        full = genlab.load_dataset(name)
        if test_n:
            g = torch.Generator().manual_seed(a.seed)
            idx = torch.randperm(len(full.test), generator=g)[:test_n]
            full = genlab.Dataset(full.train, full.test[idx], full.spec, full.train_labels, full.test_labels[idx],
                                  full.location)
        for fam in families:
            hp = dict(settings.get(fam, {}))
            steps = hp.pop("steps", None)
            train_kw = {k: hp.pop(k) for k in ("batch_size", "lr") if k in hp}
            rows, ratio_rows = [], []
            for k in classes:
                t0 = time.process_time()
                seed_everything(a.seed)
                run = genlab.train(fam, full, classes=[k], steps=steps if steps else None, seed=a.seed,
                                   save=False, progress=False, **train_kw, **hp)
                t1 = time.process_time()
                r = anomaly(run.model, full, normal_class=k, seed=a.seed)
                t2 = time.process_time()
                rows.append({"class": k, "auroc": r["auroc_full"], "auprc": r["auprc"],
                             "train_cpu_s": round(t1 - t0, 1), "score_cpu_s": round(t2 - t1, 1)})
                print(f"{name:14} {fam:5} class {k}: AUROC {100 * r['auroc_full']:.2f}  "
                      f"(train {t1 - t0:.0f} CPU-s, score {t2 - t1:.0f} CPU-s)", flush=True)
                if a.ratio and hasattr(run.model, "log_prob"):
                    r = anomaly(run.model, full, normal_class=k, seed=a.seed, ratio="local", patch=a.patch)
                    t3 = time.process_time()
                    ratio_rows.append({"class": k, "auroc": r["auroc_full"], "auprc": r["auprc"],
                                       "train_cpu_s": round(t1 - t0, 1), "score_cpu_s": round(t3 - t2, 1)})
                    print(f"{name:14} {fam:5} class {k}: AUROC {100 * r['auroc_full']:.2f} by the ratio "
                          f"(score {t3 - t2:.0f} CPU-s)", flush=True)
            for label, rs in ((fam, rows), (fam + "+ratio", ratio_rows)):
                if rs:
                    cpu = sum(r["train_cpu_s"] + r["score_cpu_s"] for r in rs)
                    record["results"].setdefault(name, {})[label] = {
                        "mean_auroc": sum(r["auroc"] for r in rs) / len(rs), "cpu_minutes": round(cpu / 60, 2),
                        "per_class": rs}
    record["load_average_at_end"] = os.getloadavg()
    print("\nmean AUROC (%) over classes " + ",".join(map(str, classes)))
    for name, fams in record["results"].items():
        anchors = ", ".join(f"{k} {v}" for k, v in ANCHORS.get(name, {}).items())
        print(f"{name}  (anchors: {anchors}; target {TARGET.get(name, '-')})")
        for fam, r in sorted(fams.items(), key=lambda kv: -kv[1]["mean_auroc"]):
            print(f"  {fam:6} {100 * r['mean_auroc']:6.2f}   {r['cpu_minutes']:.1f} CPU-min")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from genlab.io import atomic_write_json

    atomic_write_json(out, record)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
