"""How much of a digit's class survives 4x downsampling? A ceiling for mnist-sr's accuracy target.

    GENLAB_DATA_DIR=../shared/data .venv/bin/python bench/sr_ceiling.py --seeds 0,1

Any super-resolution model followed by the shipped classifier is a classifier of the 7x7 input, so its
accuracy cannot exceed that of the best classifier of 7x7 inputs (the Bayes accuracy). This script
estimates that bound from below by training one: the shipped MNIST classifier's own network and recipe
(scripts/train_classifiers.py: same epochs, optimiser, schedule, label smoothing), on the first 55,000
training inputs of mnist-sr upsampled to 28x28 (bicubic, as the baseline row of bench/translate.py, so
the network is unchanged), without shift augmentation (a shift that is not a multiple of 4 pixels makes
an input no 7x7 image could give). Test accuracy on all 10,000 test inputs, per seed.

A generative model *samples*: a perfect model of p(x | c) draws a digit of class k with probability
p(k | c), so it is judged right with probability p(y | c), and its expected accuracy is E[p(y | c)] --
below the Bayes classifier's E[max_k p(k | c)] wherever an input is ambiguous. The script estimates it
with the same classifier, its softmax calibrated by one temperature fitted (NLL) on the 5,000 held-out
training inputs: the mean calibrated p(y | c) over the test inputs (times the shipped classifier's
accuracy on real digits, since that judge errs too, for the number comparable to bench/translate.py).

Beside it, for scale: the shipped classifier (trained on 28x28 digits) on the same bicubic inputs, and
on the targets. Writes bench/results/sr_ceiling.json (or --out).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import genlab  # noqa: E402
from genlab.io import atomic_write_json  # noqa: E402
from genlab.metrics.features import SHIPPED, Classifier, FeatureExtractor, shipped_extractor  # noqa: E402
from genlab.train.checkpoint import seed_everything  # noqa: E402
from train_classifiers import RECIPES, accuracy, fit  # noqa: E402


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=SHIPPED["mnist"][1:], mode="bicubic", align_corners=False).clamp(0, 1)


HELD_OUT = 5000


def calibrated_sampler_accuracy(net, x_val, y_val, x_test, y_test) -> tuple:
    """(temperature, mean calibrated p(y | c) on the test inputs): one temperature T minimising the NLL of
    softmax(logits / T) on the held-out inputs (Guo et al. 2017)."""
    ext = FeatureExtractor(net, "eval", dim=net.feature_dim, input_shape=tuple(x_val.shape[1:]))
    lv, lt = ext.logits(x_val).double(), ext.logits(x_test).double()
    nll = lambda log_t: float(F.cross_entropy(lv / math.exp(log_t), y_val))  # noqa: E731
    t = math.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x)
    p = torch.softmax(lt / t, -1).gather(1, y_test[:, None]).squeeze(1)
    return t, float(p.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (a smoke run)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "sr_ceiling.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = genlab.load_dataset("mnist-sr")
    x_all, xte = upsample(data.train_cond), upsample(data.test_cond)
    y_all, yte = data.train_labels, data.test_labels
    xtr, ytr, xval, yval = x_all[:-HELD_OUT], y_all[:-HELD_OUT], x_all[-HELD_OUT:], y_all[-HELD_OUT:]
    shipped = shipped_extractor("mnist")
    out = {"protocol": {"threads": a.threads, "recipe": "mnist, shift 0", "train_size": len(ytr),
                        "held_out": HELD_OUT, "test_size": len(yte)},
           "shipped_on_bicubic": float((shipped.predict(xte) == yte).double().mean()),
           "shipped_on_targets": float((shipped.predict(data.test) == yte).double().mean()), "trained": []}
    print(f"shipped classifier: bicubic inputs {out['shipped_on_bicubic']:.4f}, targets {out['shipped_on_targets']:.4f}",
          flush=True)
    recipe = dict(RECIPES["mnist"], shift=0)
    if a.epochs is not None:
        recipe["epochs"] = a.epochs
    for seed in (int(s) for s in a.seeds.split(",")):
        seed_everything(seed)
        net = Classifier(SHIPPED["mnist"], num_classes=10)
        cpu = time.process_time()
        fit(net, xtr, ytr, recipe, seed, f"seed {seed}")
        row = {"seed": seed, "epochs": recipe["epochs"], "test_accuracy": accuracy(net, xte, yte),
               "train_accuracy": accuracy(net, xtr, ytr), "cpu_seconds": time.process_time() - cpu}
        row["temperature"], row["sampler_p_true"] = calibrated_sampler_accuracy(net, xval, yval, xte, yte)
        row["sampler_accuracy"] = row["sampler_p_true"] * out["shipped_on_targets"]
        out["trained"].append(row)
        print(f"seed {seed}: classifier of the 7x7 inputs, test accuracy {row['test_accuracy']:.4f} "
              f"(train {row['train_accuracy']:.4f}), {row['cpu_seconds']:.0f} CPU-s; calibrated (T = "
              f"{row['temperature']:.3f}) mean p(y | c) {row['sampler_p_true']:.4f}, a perfect sampler judged "
              f"by the shipped classifier: {row['sampler_accuracy']:.4f}", flush=True)
    accs = [r["test_accuracy"] for r in out["trained"]]
    samp = [r["sampler_accuracy"] for r in out["trained"]]
    print(f"estimated ceilings: a classifier of the inputs {max(accs):.4f} (best seed), a perfect sampler "
          f"{sum(samp) / len(samp):.4f} (mean)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out, out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
