"""genlab `fm` vs torchcfm's ConditionalFlowMatcher on 8x8 digits: the same network, batch, EMA and
CPU-time budget, sampled by the same ODE solver, scored by the same Fréchet distance.

Protocol
  network   genlab's shared UNet (nn/unet.py) with NET below, the SAME initial weights for both
            (built once from the seed), time fed as 1000 t; unconditional.
  training  batch 128, Adam lr 1e-3, grad-norm clip 1.0, EMA 0.999 (genlab's EMA class with its
            warm-up, for both); each side trains for `budget_minutes` of process CPU time with
            torch.set_num_threads(1) (genlab: `clock="cpu"`; torchcfm: a plain loop timed with
            time.process_time(), as torchcfm's examples train: sample_location_and_conditional_flow
            then MSE, data on [-1, 1]). Beyond that each side keeps its own recipe: genlab's `fm`
            defaults (uniform dequantisation over the 17 levels, fused Adam, its Trainer) vs
            torchcfm's (sigma = 0, no dequantisation, torch.optim.Adam), or genlab with the options
            given by --genlab-set (the recipe docs/benchmarks.md reports: time_sampling=logit-normal,
            ot=true, dequantize=false, precision=bf16 — the Trainer's bf16 autocast); --peer-bf16 gives
            torchcfm's loop a hand-written bf16 autocast, the control for that last option. `--parallel` (default)
            trains the two in two processes at once, halving the wall time; the budgets are CPU
            time, so each gets the same compute.
  sampling  EMA weights, x0 ~ N(0, I), genlab's `integrate` with the same method and steps
            (default heun, 25 steps = 50 network evaluations) for both; CPU seconds for N images.
  metric    Fréchet distance of the shipped digits classifier's features (genlab.metrics) between
            N samples and the 360 test images, mean over 3 sample seeds, N = 1437 = the size of the
            training split. It is biased by the sample size, so beside it stands its real-data floor:
            the same distance for the N training images vs test (one number, no draw noise), and the
            excess = FD - floor. (Until 2026-11-21 evening: 360 samples and a floor averaged over
            360-image draws; the floor's draw noise, +-0.1, was as large as the differences measured.)
Targets (issue #6): genlab's excess <= 0.5 x torchcfm's at equal time, and throughput >= torchcfm's.

Run from the project root (needs torchcfm, installed WITHOUT its dependencies: torchcfm -> torchdyn
pulls torchvision, which breaks this environment; torchcfm's flow matchers need only torch, numpy,
scipy and pot):
    .venv/bin/python -m pip install -c constraints.txt --no-deps torchcfm pot
    .venv/bin/python bench/diffusion_fm.py                        # 10 CPU-minutes per model
    .venv/bin/python bench/diffusion_fm.py --quick                # smoke test (~20 CPU-seconds each)
Options: --minutes, --seed, --sampler, --steps, --sequential, --fd-seeds, --genlab-set KEY=VALUE
(genlab's recipe, e.g. time_sampling=logit-normal, precision=bf16), --peer-bf16 (torchcfm's loop with a
hand-written bf16 autocast), --genlab-only (genlab alone: a recipe pilot),
--json (default bench/results/diffusion_fm.json; --quick and --genlab-only write none unless given).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics import frechet_distance, gaussian_stats
from genlab.metrics.features import extractor_for
from genlab.nn.unet import UNet
from genlab.samplers.ode import integrate
from genlab.train.checkpoint import seed_everything
import peer_loop
from peer_loop import train_peer

NET = dict(base=32, mults=(1, 2, 2), num_res_blocks=1, attention=True)
BATCH, LR, CLIP, EMA_DECAY, TIME_SCALE = 128, 1e-3, 1.0, 0.999, 1000.0
FD_SEEDS = 3


def _data():
    return peer_loop.digits()


def initial_weights(seed: int) -> dict:
    """The UNet weights genlab's `fm` starts from with this seed (genlab.train seeds, then builds)."""
    seed_everything(seed)
    model = genlab.create_model("fm", _data(), **NET)
    return {k: v.clone() for k, v in model.net.net.state_dict().items()}


# -- the two training runs -------------------------------------------------------------------------
def train_genlab(minutes: float, seed: int, recipe: dict | None = None) -> dict:
    """genlab's `fm` with its defaults, or with `recipe` (fm settings such as ot, time_sampling; a `steps`
    entry replaces the minutes budget, for recipe pilots at equal steps)."""
    torch.set_num_threads(peer_loop.THREADS)
    data = _data()
    recipe = dict(recipe or {})
    budget = {"steps": recipe.pop("steps")} if "steps" in recipe else {"minutes": minutes}
    run = genlab.train("fm", data, **budget, clock=peer_loop.CLOCK, seed=seed, save=False, progress=False,
                       batch_size=BATCH, lr=LR, grad_clip=CLIP, ema_decay=EMA_DECAY, **NET, **recipe)
    last = run.history[-1]
    return {"state": {k: v.clone() for k, v in run.model.net.net.state_dict().items()}, "config": run.model.config,
            "steps": last["step"], "cpu_seconds": last["time"], "final_loss": last["loss"]}


def genlab_to_data(result: dict):
    """genlab's map from its working scale back to [0, 1], for the settings the run trained with: with
    dequantize=false the working scale is 2x - 1, with the default it is the 17 levels' centres."""
    config = result.get("config") or NET  # states saved before 2026-12-02 23:30 lack it: the defaults
    return genlab.create_model("fm", _data(), **config).from_working


def train_torchcfm(minutes: float, seed: int, bf16: bool = False, steps: int | None = None) -> dict:
    """torchcfm's ConditionalFlowMatcher driving the same UNet in the loop of its examples; bf16=True
    adds what a torchcfm user would write by hand for bf16 (torch.autocast around the network)."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    torch.set_num_threads(peer_loop.THREADS)
    data = _data()
    net = UNet(1, 8, **NET)
    net.load_state_dict(initial_weights(seed))
    torch.manual_seed(seed)
    fm = ConditionalFlowMatcher(sigma=0.0)

    def loss_fn(net, x1):  # the loop of torchcfm's examples
        t, xt, ut = fm.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            v = net(xt, t * TIME_SCALE)
        return torch.mean((v.float() - ut) ** 2)

    return train_peer(net, loss_fn, data.train * 2 - 1, minutes, seed, LR, BATCH, CLIP, EMA_DECAY, steps=steps)


def _worker(args):
    name, minutes, seed, recipe = args
    if name == "genlab":
        return train_genlab(minutes, seed, recipe)
    return train_torchcfm(minutes, seed, **(recipe or {}))


# -- sampling and scoring --------------------------------------------------------------------------
def sample_images(net: UNet, n: int, seed: int, sampler: str, steps: int, to_data) -> tuple[torch.Tensor, float]:
    """n images from the EMA network by the shared ODE solver; (images in [0, 1], CPU seconds)."""
    net.eval()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, 8, 8, generator=g)
    t0 = time.process_time()
    with torch.no_grad():
        x1 = integrate(lambda t, x: net(x, (t * TIME_SCALE).expand(len(x))), z, 0.0, 1.0, method=sampler,
                       steps=steps)
    return to_data(x1), time.process_time() - t0


def fd_to_test(x: torch.Tensor, ext, test_stats) -> float:
    mu, s = gaussian_stats(ext.features(x))
    return frechet_distance(mu, s, *test_stats)


def run_fm_pair(budget_minutes: float = 10.0, seed: int = 0, quick: bool = False, sampler: str = "heun",
                steps: int = 25, parallel: bool = True, recipe: dict | None = None,
                fd_seeds: int = FD_SEEDS, peer: bool = True, peer_bf16: bool = False) -> dict:
    """Train genlab `fm` and torchcfm for `budget_minutes` CPU-minutes each; score both. Returns a dict
    with one row per library and the genlab / torchcfm ratios (see the module docstring). peer=False:
    genlab alone (a recipe pilot), no ratios."""
    torch.set_num_threads(1)
    if quick:
        budget_minutes, steps = min(budget_minutes, 0.3), min(steps, 10)
    data = _data()
    jobs = [("genlab", budget_minutes, seed, recipe),
            ("torchcfm", budget_minutes, seed, {"bf16": True} if peer_bf16 else None)][:2 if peer else 1]
    names = [job[0] for job in jobs]
    if parallel and peer:
        with mp.get_context("spawn").Pool(2) as pool:
            trained = dict(zip(names, pool.map(_worker, jobs)))
    else:
        trained = {name: _worker(job) for name, job in zip(names, jobs)}

    ext = extractor_for(data.spec)
    test_stats = gaussian_stats(ext.features(data.test))
    n = len(data.train)
    floor = fd_to_test(data.train, ext, test_stats)  # the real-data floor: the n training images vs test

    rows = {}
    for name, tr in trained.items():
        to_data = genlab_to_data(tr) if name == "genlab" else (lambda v: ((v + 1) / 2).clamp(0, 1))
        net = UNet(1, 8, **NET)
        net.load_state_dict(tr["state"])
        fds, secs = [], []
        for i in range(fd_seeds):
            x, s = sample_images(net, n, seed + 100 + i, sampler, steps, to_data)
            fds.append(fd_to_test(x, ext, test_stats))
            secs.append(s)
        fd = sum(fds) / len(fds)
        sd = math.sqrt(sum((f - fd) ** 2 for f in fds) / max(1, len(fds) - 1))
        rows[name] = {"steps": tr["steps"], "cpu_seconds": round(tr["cpu_seconds"], 1),
                      "steps_per_s": round(tr["steps"] / tr["cpu_seconds"], 3), "final_loss": round(tr["final_loss"], 4),
                      "fd": round(fd, 4), "fd_sd": round(sd, 4), "fd_floor": round(floor, 4),
                      "excess": round(fd - floor, 4), "sample_cpu_s": round(min(secs), 2)}
    ratios, targets = None, None
    if peer:
        ratios, targets = _ratios(rows["genlab"], rows["torchcfm"])
    return {"benchmark": "fm vs torchcfm on digits" if peer else "genlab fm on digits (pilot)",
            "budget_cpu_minutes": budget_minutes, "seed": seed, "quick": quick,
            "network": {"UNet": NET, "params": sum(v.numel() for v in trained["genlab"]["state"].values())},
            "training": {"batch_size": BATCH, "lr": LR, "grad_clip": CLIP, "ema_decay": EMA_DECAY, "threads": 1,
                         "parallel_processes": parallel and peer},
            "genlab_recipe": recipe or {}, "peer_bf16": peer_bf16, "sampling": {"sampler": sampler, "steps": steps, "n": n},
            "fd_protocol": f"digits classifier features, {n} samples vs the {len(data.test)} test images, mean of "
                           f"{fd_seeds} seeds; floor = the {n} training images vs test",
            "rows": rows, "ratios": ratios, "targets": targets}


def _ratios(g: dict, p: dict) -> tuple[dict, dict]:
    """genlab / torchcfm ratios and the issue's two targets."""
    ratios = {"excess": round(g["excess"] / p["excess"], 3) if p["excess"] > 0 else None,
              "throughput": round(g["steps_per_s"] / p["steps_per_s"], 3),
              "sample_time": round(g["sample_cpu_s"] / p["sample_cpu_s"], 3)}
    targets = {"excess_at_most_half": ratios["excess"] is not None and ratios["excess"] <= 0.5,
               "throughput_at_least_peer": ratios["throughput"] >= 1.0}
    return ratios, targets


def format_table(rep: dict) -> str:
    lines = [f"fm vs torchcfm on digits: {rep['budget_cpu_minutes']} CPU-min each, sampler "
             f"{rep['sampling']['sampler']} x {rep['sampling']['steps']} steps, {rep['sampling']['n']} samples",
             f"{'library':10} {'steps':>7} {'steps/s':>8} {'loss':>7} {'FD':>8} {'(sd)':>7} {'floor':>7} "
             f"{'excess':>8} {'sample s':>9}"]
    for name, r in rep["rows"].items():
        lines.append(f"{name:10} {r['steps']:7d} {r['steps_per_s']:8.3f} {r['final_loss']:7.4f} {r['fd']:8.3f} "
                     f"{r['fd_sd']:7.3f} {r['fd_floor']:7.3f} {r['excess']:8.3f} {r['sample_cpu_s']:9.2f}")
    ra = rep["ratios"]
    if ra is None:
        return "\n".join(lines)
    lines.append(f"genlab / torchcfm: excess x{ra['excess']}, throughput x{ra['throughput']}, "
                 f"sampling time x{ra['sample_time']}; targets {rep['targets']}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="CPU-minutes of training per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="heun", choices=("euler", "heun", "dopri5"))
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--quick", action="store_true", help="smoke test: 0.3 CPU-minutes each, 10 solver steps")
    p.add_argument("--sequential", action="store_true", help="train one after the other (default: two processes)")
    p.add_argument("--json", default=None)
    p.add_argument("--fd-seeds", type=int, default=FD_SEEDS, help="sample seeds (and floor draws) averaged")
    p.add_argument("--peer-bf16", action="store_true",
                   help="torchcfm's loop with a hand-written torch.autocast(bfloat16) around the network")
    p.add_argument("--genlab-only", action="store_true", help="train and score genlab alone (a recipe pilot)")
    p.add_argument("--genlab-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a genlab fm setting (repeatable), e.g. time_sampling=logit-normal, ot=true")
    args = p.parse_args(argv)
    from genlab.cli import parse_settings

    recipe = parse_settings(args.genlab_set)
    t0 = time.perf_counter()
    rep = run_fm_pair(args.minutes, args.seed, args.quick, args.sampler, args.steps, not args.sequential, recipe,
                      args.fd_seeds, not args.genlab_only, args.peer_bf16)
    rep["wall_seconds"] = round(time.perf_counter() - t0, 1)
    rep["date"] = datetime.date.today().isoformat()
    rep["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "machine": platform.machine()}
    if not args.genlab_only:
        rep["environment"]["torchcfm"] = importlib.metadata.version("torchcfm")
    print(format_table(rep))
    path = args.json or (None if args.quick or args.genlab_only else "bench/results/diffusion_fm.json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(rep, indent=2) + "\n")
        print(f"wrote {path}")
    return rep


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
