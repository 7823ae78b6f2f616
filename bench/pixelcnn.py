"""PixelCNN on dynamically binarised MNIST: exact test NLL (nats) against CPU time, beside genlab's VAE.

Both models train with genlab's Trainer on the same CPU-time budget (`--cpu-minutes`, clock=cpu, one
torch thread), each training batch binarised afresh (x ~ Bernoulli(intensity): `binarize=true`), the
test set binarised once (torch.Generator().manual_seed(seed)). At `--marks` evenly spaced points of the
budget the test NLL of the first `--curve-n` test images is measured (off the training clock: the
Trainer leaves callbacks out of its time), and at the end on `--eval-n` images:

  pixelcnn  exact: -log p(x) = -sum_i log p(x_i | x_<i), one network pass per image
  vae       -L_k (k importance samples; an upper bound on the NLL that tightens as k grows)

Anchors (Burda et al. 2016 / van den Oord et al. 2016, GPU-scale training): PixelCNN 81.30, VAE 86.76,
IWAE 84.78 nats; genlab's VAE here: 89.73 at 12 wall-minutes (docs/benchmarks.md). Target: PixelCNN
<= 86 nats within 60 CPU-minutes.

    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/pixelcnn.py                   # 2 x 60 CPU-min + eval
    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/pixelcnn.py --quick           # 2 x 3 CPU-min smoke run

Writes bench/results/pixelcnn[-quick].json and the curve bench/results/pixelcnn[-quick].png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

import genlab
from genlab.train import Budget, TrainConfig, Trainer
from genlab.train.callbacks import Callback, ProgressBar
from genlab.train.checkpoint import seed_everything

RESULTS = Path(__file__).parent / "results"
VAE = dict(latent_dim=50, net="mlp", hidden=(200, 200), activation="tanh", likelihood="bernoulli", binarize=True)


def pixelcnn_hparams(args) -> dict:
    return dict(binarize=True, channels=args.channels, n_layers=args.layers)


@torch.no_grad()
def test_nll(model, x: torch.Tensor, k: int, batch: int = 250) -> tuple[float, float]:
    """Mean and standard error of -log p(x) (pixelcnn: exact; vae: -L_k) over the binary images x."""
    was = model.training
    model.eval()
    g = torch.random.get_rng_state()
    torch.manual_seed(0)  # the VAE's importance samples: the same random numbers at every mark
    opts = {"k": k} if model.family == "vae" else {}
    nll = torch.cat([-model.log_prob(b, **opts) for b in x.split(batch)]).double()
    torch.random.set_rng_state(g)
    model.train(was)
    return float(nll.mean()), float(nll.std() / len(nll) ** 0.5)


class Curve(Callback):
    """Test NLL at evenly spaced fractions of the CPU budget (off the training clock)."""

    def __init__(self, x, budget_seconds: float, marks: int, k: int):
        self.x, self.k = x, k
        self.at = [budget_seconds * (i + 1) / marks for i in range(marks)]
        self.points: list[dict] = []

    def on_step_end(self, trainer):
        if self.at and trainer.elapsed >= self.at[0]:
            self.at.pop(0)
            t = time.process_time()
            mean, se = test_nll(trainer.model, self.x, self.k)
            self.points.append({"cpu_minutes": trainer.elapsed / 60, "step": trainer.step,
                                "epoch": round(trainer.epoch, 3), "nll": mean, "se": se,
                                "eval_cpu_seconds": time.process_time() - t})


def run(name, family, hparams, data, xb_test, args) -> dict:
    seed_everything(args.seed)
    model = genlab.create_model(family, data, **hparams)
    cfg = TrainConfig(**{**model.train_defaults, "seed": args.seed, "device": "cpu", "clock": "cpu",
                         "checkpoint_every": 0, "batch_size": args.batch_size, "lr_schedule": args.lr_schedule})
    curve = Curve(xb_test[:args.curve_n], args.cpu_minutes * 60, args.marks, args.curve_k)
    trainer = Trainer(model, data, cfg, Budget(minutes=args.cpu_minutes), callbacks=[curve, ProgressBar(name)])
    trainer.fit()
    t = time.process_time()
    mean, se = test_nll(model, xb_test[:args.eval_n], args.eval_k)
    return {"model": name, "family": family, "hparams": {k: list(v) if isinstance(v, tuple) else v
                                                        for k, v in hparams.items()},
            "steps": trainer.step, "epochs": trainer.epoch, "train_cpu_minutes": trainer.elapsed / 60,
            "test_nll": mean, "test_nll_se": se, "eval_n": min(args.eval_n, len(xb_test)),
            "nll_kind": "exact" if family == "pixelcnn" else f"-L_{args.eval_k} (upper bound)",
            "eval_cpu_seconds": time.process_time() - t, "curve": curve.points}


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        c = r["curve"]
        ax.errorbar([p["cpu_minutes"] for p in c], [p["nll"] for p in c], yerr=[p["se"] for p in c],
                    marker="o", ms=3, capsize=2, label=f"{r['model']} ({r['nll_kind']})")
    for y, lab in ((81.30, "PixelCNN, van den Oord et al."), (86.76, "VAE, Burda et al.")):
        ax.axhline(y, ls=":", lw=1, color="grey")
        ax.text(ax.get_xlim()[0], y, f" {lab} {y}", fontsize=7, va="bottom", color="grey")
    ax.set_xlabel("training CPU-minutes (1 thread)")
    ax.set_ylabel("test NLL (nats)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu-minutes", type=float, default=60.0, help="training CPU-minutes per model (default 60)")
    p.add_argument("--marks", type=int, default=12, help="points on the NLL curve")
    p.add_argument("--curve-n", type=int, default=1000, help="test images scored at each mark")
    p.add_argument("--curve-k", type=int, default=100, help="VAE importance samples at each mark")
    p.add_argument("--eval-n", type=int, default=10000, help="test images scored at the end")
    p.add_argument("--eval-k", type=int, default=1000, help="VAE importance samples at the end")
    p.add_argument("--channels", type=int, default=32, help="the family's default (64 x 8 layers: ~6.6 CPU-s a step)")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine", "linear"],
                   help="learning rate over the CPU budget, both models (cosine: decay to 0 at the end)")
    p.add_argument("--models", default="pixelcnn,vae")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/pixelcnn[-quick].json; the PNG beside it)")
    p.add_argument("--plot", type=Path, nargs="+", metavar="JSON",
                   help="only draw the curves of these results files (e.g. one run per model) into --out's PNG")
    p.add_argument("--quick", action="store_true", help="3 CPU-minutes each, smaller evaluations (a smoke run; "
                                                        "--cpu-minutes after it overrides the 3)")
    args = p.parse_args()
    tag = "-quick" if args.quick else ""
    out_json = args.out or RESULTS / f"pixelcnn{tag}.json"
    if args.plot:
        runs = [json.loads(f.read_text()) for f in args.plot]
        plot([r for run_ in runs for r in run_["results"]], out_json.with_suffix(".png"),
             f"binarised MNIST, {runs[0]['args']['cpu_minutes']:g} CPU-min each, 1 thread")
        print(f"wrote {out_json.with_suffix('.png')}")
        return
    if args.quick:
        given = any(a.startswith("--cpu-minutes") for a in sys.argv)
        args.marks, args.curve_n, args.curve_k, args.eval_n, args.eval_k = 4, 300, 50, 1000, 200
        args.cpu_minutes = args.cpu_minutes if given else 3.0
    torch.set_num_threads(1)
    data = genlab.load_dataset("mnist")
    xb_test = torch.bernoulli(data.test, generator=torch.Generator().manual_seed(args.seed))
    specs = {"pixelcnn": ("pixelcnn", pixelcnn_hparams(args)), "vae": ("vae", VAE)}
    load = os.getloadavg()
    results = [run(m, *specs[m], data, xb_test, args) for m in args.models.split(",")]
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": "pixelcnn vs vae, dynamically binarised MNIST", "date": datetime.date.today().isoformat(),
           "args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "machine": platform.processor() or platform.machine(), "loadavg_start": load,
           "loadavg_end": os.getloadavg(), "results": results}
    out_json.write_text(json.dumps(out, indent=1, default=str))
    plot(results, out_json.with_suffix(".png"),
         f"binarised MNIST, {args.cpu_minutes:g} CPU-min each, 1 thread" + (" (quick mode)" if args.quick else ""))
    print(f"{'model':10} {'steps':>7} {'epochs':>7} {'CPU-min':>8} {'test NLL':>9} {'± se':>6}  kind")
    for r in results:
        print(f"{r['model']:10} {r['steps']:7d} {r['epochs']:7.2f} {r['train_cpu_minutes']:8.2f} "
              f"{r['test_nll']:9.2f} {r['test_nll_se']:6.2f}  {r['nll_kind']} on {r['eval_n']} test images")
    print(f"wrote {out_json} and {out_json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
