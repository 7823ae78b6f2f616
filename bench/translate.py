"""Image-to-image on MNIST: super-resolution (mnist-sr, 7x7 -> 28x28) and unpaired MNIST <-> inverted.

    .venv/bin/python bench/translate.py                   # the protocol: 10 CPU-minutes per family, 3 seeds
    .venv/bin/python bench/translate.py --quick           # 1 CPU-minute per family, 1 seed (a smoke run)
    .venv/bin/python bench/translate.py --minutes 0.2 --seeds 0 --n 500 --families pix2pix

Super-resolution: each family trains for `--minutes` of process CPU time on one thread
(`clock="cpu"`, `torch.set_num_threads(1)`), then translates the first `--n` test inputs (the
evaluation protocol of metrics/evaluate.py: sample i answers test input i). Reported per family,
mean +- standard error over seeds: PSNR and SSIM of outputs vs targets (scikit-image), the Fréchet
distance in the shipped MNIST classifier's features and its excess over the real-data floor (train vs
test), the classifier's accuracy on the outputs (the test labels), and sampling seconds per image.
Rows: bicubic (no learning, the baseline), pix2pix, pix2pix with the SRGAN-style feature loss,
conditional ddpm and fm; the targets' own accuracy beside them.
Targets (issue 18): best family's accuracy >= 97%, its FD excess <= 0.2 x bicubic's, PSNR > bicubic's.

CycleGAN: `mnist-inverted` (A = inverted MNIST, B = MNIST from disjoint halves of the training split),
the same budget; the classifier's accuracy on translations A -> B (as they are) and B -> A (inverted
back before classifying, since the classifier reads MNIST); target >= 95% both ways.
Writes bench/results/translate.json (or --out); say in the record what else ran on the machine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.evaluate import evaluate
from genlab.metrics.features import shipped_extractor
from genlab.metrics.translation import Upsample, baseline_result

# family rows: (registry name, settings); everything else is the family's defaults
FAMILIES = {
    "pix2pix": ("pix2pix", {}),
    "srgan": ("pix2pix", {"feature_weight": 20.0}),  # 1.0 until 2026-12-02: too weak beside L1 x 100
    "ddpm": ("ddpm", {"conditional": True}),
    "fm": ("fm", {"conditional": True}),
}
#: rows run only when named in --families: settings compared against the defaults
VARIANTS = {
    "pix2pix-lr2e-4": ("pix2pix", {"lr": 2e-4}),  # the paper's rate (genlab's default here is 1e-3)
    "pix2pix-dlr2e-4": ("pix2pix", {"lr": 1e-3, "d_lr": 2e-4}),  # G at 1e-3, D at the paper's rate
    "pix2pix-ema0.999": ("pix2pix", {"ema_decay": 0.999}),  # G's weights averaged (D is not sampled)
    "pix2pix-ema0.99": ("pix2pix", {"ema_decay": 0.99}),
    "pix2pix-cosine": ("pix2pix", {"lr_schedule": "cosine"}),  # the rate decays to 0 over the budget
    "pix2pix-ema0.999-cosine": ("pix2pix", {"ema_decay": 0.999, "lr_schedule": "cosine"}),
    "srgan-ema0.999": ("pix2pix", {"feature_weight": 20.0, "ema_decay": 0.999}),  # the two best rows' changes
}
METRICS = ["psnr", "ssim", "fid", "balance"]


def _mean_se(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    m = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return m, se


def judged(model, data, n: int, judge, **options) -> float:
    """The accuracy of an independently trained classifier (`judge`) on the model's outputs for the first
    n test inputs (a fresh draw, seeded; `options` go to sample, e.g. noise=False)."""
    torch.manual_seed(0)
    with torch.no_grad():
        out = torch.cat([model.sample(len(c), c, **options) for c in data.test_cond[:n].split(500)])
    return float((judge.predict(out) == data.test_labels[:n]).double().mean())


def sr_row(data, family: str, seed: int, minutes: float, n: int, judge=None) -> dict:
    name, settings = {**FAMILIES, **VARIANTS}[family]
    cpu = time.process_time()
    run = genlab.train(name, data, minutes=minutes, seed=seed, save=False, progress=False, clock="cpu", **settings)
    train_cpu = time.process_time() - cpu
    res = evaluate(run.model, data, METRICS, n=n, seed=seed)
    row = {"family": family, "seed": seed, "steps": run.history[-1]["step"], "train_cpu_seconds": train_cpu,
           **scores(res), "sampling_seconds_per_image": res["seconds"]["sampling"] / n}
    noise = "noise" in inspect.signature(run.model.sample).parameters
    if noise:  # pix2pix: the same G, dropout off
        row["noise_off"] = scores(evaluate(run.model, data, METRICS, n=n, seed=seed, noise=False))
    if judge is not None:
        row["judge"] = judge.name
        row["class_accuracy_judge"] = judged(run.model, data, n, judge)
        if noise:
            row["noise_off"]["class_accuracy_judge"] = judged(run.model, data, n, judge, noise=False)
    return row


def scores(res: dict) -> dict:
    m = res["metrics"]
    return {"psnr": m["psnr"], "ssim": m["ssim"], "fid": m["fid"], "fid_real": res["reference"].get("fid"),
            "class_accuracy": m.get("class_accuracy")}


def cyclegan_row(data, seed: int, minutes: float, n: int) -> dict:
    cpu = time.process_time()
    run = genlab.train("cyclegan", data, minutes=minutes, seed=seed, save=False, progress=False, clock="cpu",
                       identity_weight=0.0)  # the identity loss would fight an inversion (the default since 2026-12-02)
    train_cpu = time.process_time() - cpu
    ext = shipped_extractor("mnist")
    a, b, y = data.test_cond[:n], data.test[:n], data.test_labels[:n]
    ab = torch.cat([run.model.sample(len(c), c) for c in a.split(500)])
    ba = torch.cat([run.model.sample(len(c), c, direction="BA") for c in b.split(500)])
    acc = lambda x: float((ext.predict(x) == y).double().mean())  # noqa: E731
    return {"seed": seed, "steps": run.history[-1]["step"], "train_cpu_seconds": train_cpu,
            "accuracy_ab": acc(ab), "accuracy_ba": acc(1 - ba)}


def report(out: dict) -> None:
    """The mnist-sr table (mean +- standard error over seeds) and CycleGAN's accuracies."""
    a = out["protocol"]
    seeds = a["seeds"]
    floor = next((r["fid_real"] for rows in out["sr"].values() for r in rows if r.get("fid_real") is not None), None)
    print(f"\nmnist-sr, {a['minutes']:g} CPU-min per family, seeds {seeds}, n={a['n']}; FD real-data floor "
          f"{floor} (each row's excess is over its own seed's floor where it has one)")
    print(f"{'family':10} {'PSNR':>14} {'SSIM':>14} {'FD excess':>14} {'accuracy':>14} {'s/image':>10}")
    for fam, rows in out["sr"].items():
        cells = []
        for key in ("psnr", "ssim", "fid", "class_accuracy"):
            vals = [r[key] - (r.get("fid_real") or floor) if key == "fid" and floor is not None and r[key] is not None
                    else r[key] for r in rows]
            m, se = _mean_se(vals)
            cells.append("—" if m is None else f"{m:.4g}±{se:.2g}")
        t, _ = _mean_se([r["sampling_seconds_per_image"] for r in rows])
        t = 0.0 if t is None else t
        print(f"{fam:10} " + " ".join(f"{c:>14}" for c in cells) + f" {t:10.2g}")
    if out["cyclegan"]:
        ab, _ = _mean_se([r["accuracy_ab"] for r in out["cyclegan"]])
        ba, _ = _mean_se([r["accuracy_ba"] for r in out["cyclegan"]])
        print(f"cyclegan mnist-inverted: accuracy A->B {ab:.4f}, B->A {ba:.4f}")


def merge(paths: list[str], out_path: str) -> None:
    """One result from runs of the same protocol on different seeds (e.g. seed 0, then seeds 1 and 2)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    keys = ("minutes", "n", "threads", "clock", "quick")
    if any({k: r["protocol"][k] for k in keys} != {k: runs[0]["protocol"][k] for k in keys} for r in runs):
        raise SystemExit("translate.py --merge: the runs have different protocols")
    out = {"protocol": {**runs[0]["protocol"], "seeds": sorted({s for r in runs for s in r["protocol"]["seeds"]}),
                        "merged_from": paths}, "sr": {}, "cyclegan": [c for r in runs for c in r["cyclegan"]]}
    for r in runs:
        for fam, rows in r["sr"].items():
            if fam in ("bicubic", "targets"):  # no learning: the same for every seed
                out["sr"].setdefault(fam, rows)
            else:
                out["sr"].setdefault(fam, []).extend(rows)
    # a run may hold some families only (e.g. CycleGAN's seeds run on their own), but never one seed twice
    for fam, rows in [*out["sr"].items(), ("cyclegan", out["cyclegan"])]:
        seeds = [row["seed"] for row in rows if "seed" in row]
        if len(seeds) != len(set(seeds)):
            raise SystemExit(f"translate.py --merge: {fam} has seed(s) {sorted(seeds)}: one seed in two runs")
    report(out)
    Path(out_path).write_text(json.dumps(out, indent=2))
    print(f"wrote {out_path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="CPU minutes of training per family and seed")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--n", type=int, default=10000, help="test examples scored")
    p.add_argument("--families", default=",".join(FAMILIES) + ",cyclegan",
                   help=f"rows, from {', '.join([*FAMILIES, 'cyclegan', *VARIANTS])} (default: all but {', '.join(VARIANTS)})")
    p.add_argument("--quick", action="store_true", help="1 CPU-minute per family, seed 0, 1000 test examples")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "translate.json"))
    p.add_argument("--merge", nargs="+", metavar="JSON", help="combine the results of runs on other seeds into --out")
    p.add_argument("--judge-seed", type=int, help="also score accuracy with the MNIST classifier trained from this "
                   "seed (bench/yardsticks.py: the SRGAN-style row's feature loss uses the shipped one)")
    a = p.parse_args()
    if a.merge:
        return merge(a.merge, a.out)
    if a.quick:
        a.minutes, a.seeds, a.n = 1.0, "0", 1000
    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    fams = [f.strip() for f in a.families.split(",") if f.strip()]
    unknown = [f for f in fams if f not in {**FAMILIES, **VARIANTS, "cyclegan": None}]
    if unknown:
        raise SystemExit(f"translate.py: unknown row(s) {', '.join(unknown)}; choose from "
                         f"{', '.join([*FAMILIES, 'cyclegan', *VARIANTS])}")
    out = {"protocol": {"minutes": a.minutes, "seeds": seeds, "n": a.n, "threads": 1, "clock": "cpu",
                        "quick": a.quick, "genlab_version": genlab.__version__}, "sr": {}, "cyclegan": []}
    sr = genlab.load_dataset("mnist-sr")
    base = baseline_result(sr, a.n, 0, metrics=METRICS)
    out["sr"]["bicubic"] = [{"psnr": base["metrics"]["psnr"], "ssim": base["metrics"]["ssim"],
                             "fid": base["metrics"]["fid"], "class_accuracy": base["metrics"].get("class_accuracy"),
                             "sampling_seconds_per_image": base["seconds"]["sampling"] / a.n}]
    ext = shipped_extractor("mnist")
    out["sr"]["targets"] = [{"class_accuracy": float((ext.predict(sr.test[:a.n]) == sr.test_labels[:a.n]).double().mean()),
                             "psnr": None, "ssim": None, "fid": None, "sampling_seconds_per_image": 0.0}]
    judge = None
    if a.judge_seed is not None:
        from yardsticks import independent_classifier

        judge = independent_classifier(a.judge_seed, "mnist")
        out["protocol"]["judge"] = judge.name
        out["sr"]["targets"][0]["class_accuracy_judge"] = float((judge.predict(sr.test[:a.n]) == sr.test_labels[:a.n])
                                                                .double().mean())
        out["sr"]["bicubic"][0]["class_accuracy_judge"] = judged(Upsample(sr.spec, "bicubic"), sr, a.n, judge)
    for fam in fams:
        if fam == "cyclegan":
            inv = genlab.load_dataset("mnist-inverted")
            out["cyclegan"] = [cyclegan_row(inv, s, a.minutes, a.n) for s in seeds]
            continue
        out["sr"][fam] = []
        for s in seeds:
            out["sr"][fam].append(sr_row(sr, fam, s, a.minutes, a.n, judge))
            print(fam, s, {k: round(v, 4) if isinstance(v, float) else v for k, v in out["sr"][fam][-1].items()},
                  flush=True)
    report(out)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
