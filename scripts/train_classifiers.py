"""Train the small classifiers whose penultimate features genlab's FID-style metrics use.

    python scripts/train_classifiers.py                          # digits, mnist, fashion-mnist
    python scripts/train_classifiers.py --data digits --epochs 100

Writes `src/genlab/metrics/weights/<name>.safetensors` (float32 state dict of
`genlab.metrics.features.Classifier`) and `<name>.json` (test accuracy, settings,
sha256 of the weights file, ...). MNIST and Fashion-MNIST are found through
GENLAB_DATA_DIR (or genlab's other usual places).

Deterministic: fixed seed, `torch.use_deterministic_algorithms(True)` and a fixed
number of CPU threads (`--threads`, recorded; a different thread count may change
the last bits of the result). The shipped model is the one after the last epoch:
the test split is only used to report its accuracy, never to choose a model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # use this checkout's genlab even if another one is installed

import genlab  # noqa: E402
from genlab.metrics.features import SHIPPED, Classifier, FeatureExtractor, sha256_file  # noqa: E402
from genlab.io import atomic_write_json, save_weights  # noqa: E402
from genlab.train.checkpoint import seed_everything  # noqa: E402

# per data set: epochs, batch size, peak learning rate, max shift (pixels), horizontal flips
RECIPES = {
    "digits": dict(epochs=60, batch_size=32, lr=3e-3, shift=1, hflip=False),
    "mnist": dict(epochs=10, batch_size=128, lr=4e-3, shift=2, hflip=False),
    "fashion-mnist": dict(epochs=12, batch_size=128, lr=4e-3, shift=2, hflip=True),
}
WEIGHT_DECAY = 5e-4
LABEL_SMOOTHING = 0.05


def augment(x: torch.Tensor, shift: int, hflip: bool, g: torch.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels (zero padding, then a random crop), optional flips."""
    n, c, h, w = x.shape
    if hflip:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if shift:
        xp = F.pad(x, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=g)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]     # n 1 h 1
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]     # n 1 1 w
        x = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return x


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Measured the way genlab uses the network: through a FeatureExtractor (eval mode, no_grad, batches)."""
    ext = FeatureExtractor(net, "eval", dim=net.feature_dim, input_shape=tuple(x.shape[1:]))
    return float((ext.predict(x) == y).double().mean())


def fit(net: torch.nn.Module, xtr: torch.Tensor, ytr: torch.Tensor, recipe: dict, seed: int,
        name: str = "") -> list:
    """The recipe's training loop (AdamW, one-cycle schedule, label smoothing, shift/flip augmentation);
    returns the per-epoch history. The caller seeds torch before building `net` (dropout draws from the
    global generator). Shared with bench/sr_ceiling.py, which trains the same network on other inputs."""
    g = torch.Generator().manual_seed(seed)
    epochs, bs = recipe["epochs"], recipe["batch_size"]
    steps = (len(xtr) + bs - 1) // bs
    opt = torch.optim.AdamW(net.parameters(), lr=recipe["lr"], weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=epochs * steps,
                                                pct_start=0.25)
    t0 = time.time()
    history = []
    for epoch in range(1, epochs + 1):
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        total, correct, seen = 0.0, 0, 0
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            xb = augment(xtr[idx], recipe["shift"], recipe["hflip"], g)
            logits = net(xb)
            loss = F.cross_entropy(logits, ytr[idx], label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(-1) == ytr[idx]).sum())
            seen += len(idx)
        rec = {"epoch": epoch, "loss": round(total / seen, 5), "train_accuracy_augmented": round(correct / seen, 5),
               "seconds": round(time.time() - t0, 1)}
        history.append(rec)
        if epoch == epochs or epoch % max(1, epochs // 6) == 0:
            print(f"  {name} epoch {epoch:3d}  loss {rec['loss']:.4f}  train acc (augmented) "
                  f"{rec['train_accuracy_augmented']:.4f}  {rec['seconds']:.0f}s", flush=True)
    return history


def train_one(name: str, recipe: dict, seed: int, out: Path, command: str, threads: int) -> dict:
    seed_everything(seed)
    data = genlab.load_dataset(name)
    xtr, ytr, xte, yte = data.train, data.train_labels, data.test, data.test_labels
    if tuple(data.spec.shape) != SHIPPED[name]:
        raise SystemExit(f"{name}: images of shape {data.spec.shape}, expected {SHIPPED[name]}")
    net = Classifier(SHIPPED[name], num_classes=data.spec.num_classes)
    n_params = sum(p.numel() for p in net.parameters())
    epochs, bs = recipe["epochs"], recipe["batch_size"]
    steps = (len(xtr) + bs - 1) // bs
    print(f"{name}: {len(xtr)} train / {len(xte)} test, {n_params} parameters, {epochs} epochs x {steps} steps, "
          f"{threads} threads", flush=True)
    t0 = time.time()
    history = fit(net, xtr, ytr, recipe, seed, name)
    seconds = time.time() - t0
    test_acc = accuracy(net, xte, yte)
    train_acc = accuracy(net, xtr, ytr)
    print(f"{name}: test accuracy {test_acc:.4%}  (train {train_acc:.4%})  in {seconds:.0f}s", flush=True)

    path = save_weights(net.state_dict(), out / f"{name}.safetensors")
    meta = {
        "name": f"genlab-classifier-{name}",
        "dataset": name,
        "test_accuracy": round(test_acc, 6),
        "test_size": len(xte),
        "train_accuracy": round(train_acc, 6),
        "train_size": len(xtr),
        "architecture": {"class": "genlab.metrics.features.Classifier", **net.config},
        "parameters": n_params,
        "feature_dim": net.feature_dim,
        "features": "penultimate layer: Linear -> ReLU output (128 values >= 0), eval mode",
        "epochs": epochs,
        "batch_size": bs,
        "optimizer": f"AdamW(lr={recipe['lr']}, weight_decay={WEIGHT_DECAY}), OneCycleLR(pct_start=0.25)",
        "loss": f"cross-entropy, label smoothing {LABEL_SMOOTHING}",
        "augmentation": f"random shifts up to {recipe['shift']} px (zero pad + crop)"
                        + (", horizontal flips" if recipe["hflip"] else ""),
        "seed": seed,
        "threads": threads,
        "deterministic_algorithms": True,
        "train_seconds": round(seconds, 1),
        "history": history,
        "file": path.name,
        "file_bytes": path.stat().st_size,
        "dtype": "float32",
        "sha256": sha256_file(path),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "command": command,
    }
    atomic_write_json(out / f"{name}.json", meta)
    for f in (path, out / f"{name}.json"):
        os.chmod(f, 0o644)  # temp files are created 0600; shipped files should be world-readable
    print(f"  wrote {path} ({meta['file_bytes']} bytes) and {name}.json", flush=True)
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=",".join(RECIPES), help="comma-separated: " + ", ".join(RECIPES))
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's number of epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed, for reproducibility)")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "genlab" / "metrics" / "weights")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.data.split(",") if s.strip()]
    bad = [n for n in names if n not in RECIPES]
    if bad:
        ap.error(f"unknown data set(s) {bad}; choose from {list(RECIPES)}")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    command = "python scripts/train_classifiers.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    results = {}
    for name in names:
        recipe = dict(RECIPES[name])
        if args.epochs is not None:
            recipe["epochs"] = args.epochs
        results[name] = train_one(name, recipe, args.seed, args.out, command, args.threads)["test_accuracy"]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
