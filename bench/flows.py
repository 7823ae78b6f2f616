"""Normalizing flows: genlab `realnvp` and `maf` against zuko (NSF, MAF) and normflows (RealNVP).

    python bench/flows.py --quick            # ~1 CPU-minute: 8gaussians + digits, 3 CPU-seconds per model
    python bench/flows.py                    # 2 toys + digits, 15 CPU-seconds per model (~5 CPU-minutes)
    python bench/flows.py --seeds 3          # the same from seeds 0, 1, 2; rows are means (+ sd)
    python bench/flows.py --mnist 40         # genlab realnvp on MNIST, 40 CPU-minutes, test bits/dim
    python bench/flows.py --mnist 60 --threads 2   # the same on both cores for 60 wall-clock minutes

Protocol: one thread (torch.set_num_threads(1)); every model gets the same budget of process
CPU time (genlab: train(..., minutes=..., clock="cpu"); peers: our own loop timed with
time.process_time()), Adam lr 1e-3, batch 256, weights initialised from seed 0. Test NLL in
nats of the data's density, on the whole test split: toys in data units (peers are trained
on standardised data and get the log-determinant of the standardisation added back);
digits dequantised (u from one seeded generator, the same u for every model) and
logit-transformed (alpha = 0.05) for the peers exactly as genlab does, so every number is the
density of the same dequantised images, reported as bits/dim with genlab's `bits_per_dim`.
Writes bench/results/flows.json (or flows-quick.json, flows-mnist.json).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.likelihood import bits_per_dim
from genlab.nn.flows import dequantize, logit_transform

ALPHA = 0.05
BATCH = 256
LR = 1e-3
HIDDEN = 128
RESULTS = Path(__file__).resolve().parent / "results"


# -- data in the scale every model sees ------------------------------------------------------
def prepared(ds):
    """(train -> working tensor fn, test working tensor, log|det d working / d x| per example)."""
    if ds.spec.kind == "vector":
        mean, std = ds.train.mean(0), ds.train.std(0).clamp_min(1e-6)
        return (lambda x: (x - mean) / std), (ds.test - mean) / std, -float(std.log().sum())
    levels = ds.spec.levels

    def work(x, g=None):
        v, ld = logit_transform(dequantize(x, levels, g), ALPHA)
        return v.flatten(1), ld

    v, ld = work(ds.test, torch.Generator().manual_seed(1234))
    return work, v, ld


# -- peers -----------------------------------------------------------------------------------
def zuko_flow(kind, d):
    import zuko

    cls = zuko.flows.NSF if kind == "nsf" else zuko.flows.MAF
    return cls(features=d, context=0, transforms=5, hidden_features=(HIDDEN, HIDDEN))


class ZukoWrap(torch.nn.Module):
    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def log_prob(self, v):
        return self.flow().log_prob(v)


def normflows_realnvp(d, layers=8):
    import normflows as nf

    flows = []
    for _ in range(layers):
        half = d // 2
        net = nf.nets.MLP([half, HIDDEN, HIDDEN, 2 * (d - half)], init_zeros=True)
        flows += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(d, mode="swap" if d == 2 else "shuffle")]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=False), flows)


def train_peer(model, ds, work, seconds, seed=0):
    """Adam on -log p(v) until `seconds` of process CPU time; returns steps taken."""
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    gu = torch.Generator().manual_seed(seed + 1)
    n, steps, t0 = len(ds.train), 0, time.process_time()
    while time.process_time() - t0 < seconds:
        x = ds.train[torch.randint(n, (BATCH,), generator=g)]
        v = work(x, gu)[0] if ds.spec.kind == "image" else work(x)
        loss = -model.log_prob(v).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return steps, time.process_time() - t0


@torch.no_grad()
def peer_nll(model, v, ld):
    model.eval()
    lp = torch.cat([model.log_prob(b) for b in v.split(1000)])
    return float(-(lp + ld).mean())


# -- genlab ----------------------------------------------------------------------------------
def train_genlab(family, ds, seconds, seed=0, **hp):
    t0 = time.process_time()
    run = genlab.train(family, ds, minutes=seconds / 60, clock="cpu", seed=seed, save=False, progress=False,
                       batch_size=BATCH, lr=LR, log_every=10_000, checkpoint_every=0, **hp)
    steps = run.history[-1]["step"]
    return run.model, steps, run.history[-1]["time"], time.process_time() - t0


@torch.no_grad()
def genlab_nll(model, ds):
    g = torch.Generator().manual_seed(1234)  # the same u as the peers' test set (one draw of x.shape)
    x = ds.test
    if ds.spec.kind == "image":
        v, ld0 = model.to_working(x, generator=g, log_det=True)
        lp = torch.cat([_flow_lp(model, b) for b in v.split(1000)]) + ld0
    else:
        lp = torch.cat([model.log_prob(b) for b in x.split(1000)])
    return float(-lp.mean())


def _flow_lp(model, v):
    from genlab.nn.density import standard_normal_log_prob

    z, ld = model.flow(v)
    return standard_normal_log_prob(z) + ld


MODELS = [
    ("genlab realnvp", "genlab", ("realnvp", {})),
    ("genlab maf", "genlab", ("maf", {})),
    ("genlab maf-spline", "genlab", ("maf", {"transform": "spline"})),
    ("zuko NSF", "zuko", "nsf"),
    ("zuko MAF", "zuko", "maf"),
    ("normflows RealNVP", "normflows", None),
]
PAIRS = [("genlab realnvp", "normflows RealNVP"), ("genlab maf", "zuko MAF"), ("genlab maf-spline", "zuko NSF"),
         ("genlab realnvp", "zuko NSF")]


def train_and_score(lib, what, ds, work, v_test, ld_test, seconds, seed):
    """One model trained for `seconds` of CPU time from `seed`: (params, steps, cpu seconds, test NLL)."""
    torch.manual_seed(seed)
    if lib == "genlab":
        model, steps, cpu, _ = train_genlab(what[0], ds, seconds, seed=seed, **what[1])
        model.eval()
        nll = genlab_nll(model, ds)
    else:
        model = ZukoWrap(zuko_flow(what, v_test.shape[1])) if lib == "zuko" else normflows_realnvp(v_test.shape[1])
        steps, cpu = train_peer(model, ds, work, seconds)
        nll = peer_nll(model, v_test, ld_test)
    return sum(p.numel() for p in model.parameters()), steps, cpu, nll


def bench(datasets, seconds, seeds=1):
    """Every model on every data set, trained from seeds 0..seeds-1; a row holds the mean over seeds
    (test NLL of each seed in `test_nll_seeds`)."""
    rows = []
    for name in datasets:
        ds = genlab.load_dataset(name)
        work, v_test, ld_test = prepared(ds)
        true_h = float(-ds.log_density(ds.test).mean()) if ds.log_density is not None else None
        for label, lib, what in MODELS:
            runs = [train_and_score(lib, what, ds, work, v_test, ld_test, seconds, s) for s in range(seeds)]
            params = runs[0][0]
            steps, cpu = sum(r[1] for r in runs) / seeds, sum(r[2] for r in runs) / seeds
            nlls = [r[3] for r in runs]
            nll = sum(nlls) / seeds
            row = {"data": name, "model": label, "params": params, "steps": steps, "cpu_seconds": round(cpu, 2),
                   "steps_per_s": round(steps / cpu, 2), "test_nll": round(nll, 4),
                   "test_nll_seeds": [round(v, 4) for v in nlls]}
            if ds.spec.kind == "image":
                row["bpd"] = round(bits_per_dim(nll, ds.spec.dim, n_levels=ds.spec.levels), 4)
            if true_h is not None:
                row["true_entropy"] = round(true_h, 4)
                row["kl"] = round(nll - true_h, 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows):
    lines = [f"{'data':12} {'model':20} {'params':>8} {'steps/s':>8} {'test NLL':>9} {'(sd)':>7} {'median':>8} {'bpd':>6} {'NLL-H':>7}"]
    for r in rows:
        bpd = f"{r['bpd']:.3f}" if "bpd" in r else "—"
        kl = f"{r['kl']:.3f}" if "kl" in r else "—"
        per_seed = [v for v in r.get("test_nll_seeds", []) if math.isfinite(v)]  # a diverged seed gives NaN
        sd = f"{statistics.stdev(per_seed):.3f}" if len(per_seed) > 1 else "—"
        med = f"{statistics.median(per_seed):.3f}" if len(per_seed) > 1 else "—"
        lines.append(f"{r['data']:12} {r['model']:20} {r['params']:8d} {r['steps_per_s']:8.1f} "
                     f"{r['test_nll']:9.3f} {sd:>7} {med:>8} {bpd:>6} {kl:>7}")
    lines.append("")
    lines.append("ratios (genlab / peer): steps/s, and test NLL difference (genlab - peer; < 0 = genlab better)")
    by = {(r["data"], r["model"]): r for r in rows}
    for data in dict.fromkeys(r["data"] for r in rows):
        for a, b in PAIRS:
            if (data, a) in by and (data, b) in by:
                ra, rb = by[(data, a)], by[(data, b)]
                lines.append(f"{data:12} {a:18} vs {b:18} speed x{ra['steps_per_s'] / rb['steps_per_s']:.2f}  "
                             f"dNLL {ra['test_nll'] - rb['test_nll']:+.3f}")
    return "\n".join(lines)


# -- MNIST -----------------------------------------------------------------------------------
#: the MNIST model (bigger than the digits defaults: 28 x 28 images, 40 minutes)
MNIST_HP = {"channels": 64, "n_checkerboard": 2, "steps_per_scale": 4, "n_scales": 2}
#: its training recipe: Adam 1e-3 with a short warmup, cosine decay over the budget, EMA of the weights
MNIST_TRAIN = {"lr": 1e-3, "warmup_steps": 200, "lr_schedule": "cosine", "min_lr_ratio": 0.02, "ema_decay": 0.999}


def mnist(minutes, batch_size=64, out=None, threads=1, **hp):
    """Train the MNIST flow for `minutes`: process CPU time on one thread, or wall time on `threads` > 1
    (the whole machine, which is how "within 60 minutes on this CPU" reads); then test bits/dim."""
    hp = {**MNIST_HP, **hp}
    torch.set_num_threads(threads)
    clock = "cpu" if threads == 1 else "wall"
    from genlab.train import Callback

    ds = genlab.load_dataset("mnist")

    class Log(Callback):
        def on_log(self, trainer, record):
            print(f"step {record['step']:6d}  {clock} {record['time']:8.1f}s  epoch {record['epoch']:.3f}  "
                  f"train bpd {record['bpd']:.4f}", flush=True)

    t0 = time.time()
    run = genlab.train("realnvp", ds, out=out, minutes=minutes, clock=clock, seed=0, save=out is not None,
                       progress=False, batch_size=batch_size, log_every=100, **MNIST_TRAIN,
                       checkpoint_every=250 if out else 0, callbacks=[Log()], **hp)
    model = run.model.eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1234)
        lp = torch.cat([model.log_prob(b, generator=g) for b in ds.test.split(500)])
    nll = float(-lp.mean())
    bpd = bits_per_dim(nll, ds.spec.dim, n_levels=256)
    res = {"data": "mnist", "model": "genlab realnvp", "hparams": model.config, "batch_size": batch_size,
           "train": MNIST_TRAIN, f"{clock}_minutes": minutes, "steps": run.history[-1]["step"], "epochs": run.history[-1]["epoch"],
           "params": sum(p.numel() for p in model.parameters()), "test_nll_nats": round(nll, 3),
           "test_bpd": round(bpd, 4), "wall_seconds": round(time.time() - t0, 1), "threads": threads}
    print(json.dumps(res), flush=True)
    return res


def mnist_checkpoint(run_dir):
    """Test bits/dim of the last checkpoint of an MNIST run directory (a run stopped before its budget)."""
    from genlab.data.spec import DataSpec
    from genlab.io import load_state

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    state = load_state(run_dir / "checkpoint" / "last.pt")
    model = genlab.create_model("realnvp", DataSpec.from_dict(cfg["data"]), **cfg["hparams"])
    model.load_state_dict(state["model"])
    model.eval()
    ds = genlab.load_dataset("mnist")
    with torch.no_grad():
        g = torch.Generator().manual_seed(1234)
        lp = torch.cat([model.log_prob(b, generator=g) for b in ds.test.split(500)])
    nll = float(-lp.mean())
    res = {"data": "mnist", "model": "genlab realnvp", "hparams": model.config, "checkpoint_step": state["step"],
           "cpu_seconds": round(state["elapsed"], 1), "epochs": round(state["epoch"], 3),
           "params": sum(p.numel() for p in model.parameters()), "test_nll_nats": round(nll, 3),
           "test_bpd": round(bits_per_dim(nll, ds.spec.dim, n_levels=256), 4), "threads": 1}
    print(json.dumps(res), flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seconds", type=float, default=None, help="CPU seconds per model")
    p.add_argument("--mnist", type=float, default=None, metavar="MINUTES", help="MNIST bits/dim run instead")
    p.add_argument("--data", nargs="*", default=None)
    p.add_argument("--seeds", type=int, default=1, help="train every model from seeds 0..N-1; rows are means")
    p.add_argument("--json", default=None, help="where to write the results (default bench/results/flows.json)")
    p.add_argument("--out", default=None, help="MNIST: keep a run directory (checkpoints) here")
    p.add_argument("--threads", type=int, default=1,
                   help="MNIST: torch threads; above 1 the budget is wall-clock minutes on the whole machine")
    p.add_argument("--mnist-checkpoint", default=None, metavar="RUN_DIR", help="test bits/dim of a run's checkpoint")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    if args.mnist_checkpoint:
        res = mnist_checkpoint(args.mnist_checkpoint)
        (RESULTS / "flows-mnist-checkpoint.json").write_text(json.dumps({"date": stamp, "command": " ".join(sys.argv),
                                                                         **res}, indent=1))
        return
    if args.mnist:
        res = mnist(args.mnist, out=args.out, threads=args.threads)
        (RESULTS / "flows-mnist.json").write_text(json.dumps({"date": stamp, "command": " ".join(sys.argv),
                                                              **res}, indent=1))
        return
    datasets = args.data or (["8gaussians", "digits"] if args.quick else ["8gaussians", "checkerboard", "digits"])
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    rows = bench(datasets, seconds, args.seeds)
    text = table(rows)
    print(text)
    out = Path(args.json) if args.json else RESULTS / ("flows-quick.json" if args.quick else "flows.json")
    out.write_text(json.dumps({"date": stamp, "command": " ".join(sys.argv), "cpu_seconds_per_model": seconds, "seeds": args.seeds,
                               "threads": 1, "batch_size": BATCH, "lr": LR, "rows": rows, "table": text}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
