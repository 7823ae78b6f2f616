"""genlab `ddpm` vs diffusers' UNet2DModel + DDPMScheduler on 8x8 digits: similar parameter count,
the same CPU-time budget, batch, optimiser, EMA and sampler budget, scored by the same Fréchet
distance. With --pair all|fm it also runs bench/diffusion_fm.py's genlab `fm` vs torchcfm pair.

Protocol
  networks  genlab: the family's fixed default UNet (NET; nn/unet.py: base 32, mults 1-2-2, one ResBlock per
            level, attention at 2x2 and in the middle). diffusers: UNet2DModel with
            block_out_channels (32, 64, 64), layers_per_block 1, DownBlock2D, DownBlock2D,
            AttnDownBlock2D (and the mirrored up blocks), 8 GroupNorm groups: the same widths and
            the same place for attention, and within 0.2% of genlab's parameter count.
  training  data on [-1, 1]; batch 128, Adam lr 2e-3 with 100 warm-up steps, grad-norm clip 1.0, EMA
            0.999 (genlab's EMA class, for both), the linear schedule with T = 1000, eps-prediction,
            simple loss. Each side trains for `--minutes` of process CPU time with
            torch.set_num_threads(1) (genlab: `genlab.train(..., clock="cpu")`; diffusers: a plain loop
            in its training example's style, DDPMScheduler.add_noise + MSE, timed with
            time.process_time()). `--parallel` (default) trains the two in two processes at once
            (CPU-time budgets, so each gets the same compute whatever the machine's load).
            --genlab-set KEY=VALUE changes genlab's side (the recipe docs/benchmarks.md reports:
            schedule=cosine, precision=bf16 — the Trainer's bf16 autocast); --peer-schedule and
            --peer-bf16 give diffusers the same two (beta_schedule="squaredcos_cap_v2", and
            torch.autocast(bfloat16) around its UNet as its example's mixed_precision="bf16" does):
            the control that says how much of a difference is genlab and how much the recipe.
  sampling  EMA weights. DDIM with 50 steps for both (genlab's sampler; diffusers' DDIMScheduler
            from the DDPM scheduler's config, its defaults), and genlab's 1000-step ancestral DDPM.
            CPU seconds to draw the N images. (Ancestral-1000 is scored on one sample seed, the
            first of the three DDIM seeds, because it costs 20x more.)
  metric    Fréchet distance of the shipped digits classifier's features (genlab.metrics) between
            N samples and the 360 test images, the mean over 3 sample seeds, N = 1437 = the size of
            the training split. It is biased by the sample size, so beside it stands its real-data
            floor: the same distance for the N training images vs test (one number), and the excess =
            FD - floor. (Until 2026-11-21 evening: 360 samples and a floor averaged over three
            360-image draws, whose draw noise was about +-0.1.)
Targets (issue #6): genlab's excess <= 0.5 x diffusers' at equal time, throughput >= diffusers',
and DDIM-50's excess within 10% of the 1000-step ancestral excess.

Run from the project root (needs diffusers: pip install -c constraints.txt diffusers):
    .venv/bin/python bench/diffusion.py                    # ddpm pair, 10 CPU-minutes per model
    .venv/bin/python bench/diffusion.py --quick            # smoke test (~20 CPU-seconds each)
    .venv/bin/python bench/diffusion.py --pair all         # also the fm vs torchcfm pair
    .venv/bin/python bench/diffusion.py --genlab-set schedule=cosine --genlab-set precision=bf16
Options: --minutes, --seed, --sequential, --genlab-set KEY=VALUE, --peer-schedule, --peer-bf16,
--genlab-only (genlab alone: a recipe pilot), --no-ancestral, --save FILE (the trained states, for
sampler studies), --json (default bench/results/diffusion.json; --quick and --genlab-only write none
unless given).
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
import peer_loop
from peer_loop import train_peer

BATCH, LR, WARMUP, CLIP, EMA_DECAY, T = 128, 2e-3, 100, 1.0, 0.999, 1000
FD_SEEDS, DDIM_STEPS = 3, 50
DIFFUSERS_NET = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                     layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                     up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8)


def _data():
    return peer_loop.digits()


def _params(net) -> int:
    return sum(p.numel() for p in net.parameters())


# -- the two training runs -------------------------------------------------------------------------
#: the family's fixed default UNet, named: on digits its data-aware defaults would pick a smaller one
NET = dict(base=32, mults=(1, 2, 2), num_res_blocks=1, attention=True, timesteps=1000)  # T as diffusers (not the digits default 250)


def train_genlab(minutes: float, seed: int, recipe: dict | None = None) -> dict:
    """genlab's `ddpm` with its defaults (the UNet: NET), or with `recipe` (ddpm / Trainer settings, e.g. precision=bf16)."""
    torch.set_num_threads(peer_loop.THREADS)
    run = genlab.train("ddpm", _data(), minutes=minutes, clock=peer_loop.CLOCK, seed=seed, save=False,
                       progress=False,
                       batch_size=BATCH, lr=LR, warmup_steps=WARMUP, grad_clip=CLIP, ema_decay=EMA_DECAY,
                       **{**NET, **(recipe or {})})
    last = run.history[-1]
    return {"state": {k: v.clone() for k, v in run.model.state_dict().items()}, "config": run.model.config,
            "steps": last["step"], "cpu_seconds": last["time"], "final_loss": last["loss"],
            "params": _params(run.model.net)}


def _diffusers_scheduler(schedule: str):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=T, beta_schedule=schedule, beta_start=1e-4, beta_end=0.02)


def train_diffusers(minutes: float, seed: int, bf16: bool = False, schedule: str = "linear") -> dict:
    """UNet2DModel + DDPMScheduler in the loop of diffusers' unconditional training example; bf16=True
    wraps the network in torch.autocast(bfloat16), as its example does with mixed_precision="bf16";
    `schedule` is DDPMScheduler's beta_schedule (linear, or squaredcos_cap_v2: the cosine schedule)."""
    from diffusers import UNet2DModel

    torch.set_num_threads(peer_loop.THREADS)
    torch.manual_seed(seed)
    data = _data()
    net = UNet2DModel(**DIFFUSERS_NET)
    sched = _diffusers_scheduler(schedule)

    def loss_fn(net, x0):  # the simple loss, as in diffusers' training examples
        noise = torch.randn_like(x0)
        t = torch.randint(0, T, (len(x0),))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = net(sched.add_noise(x0, noise, t), t).sample
        return torch.nn.functional.mse_loss(pred.float(), noise)

    out = train_peer(net, loss_fn, data.train * 2 - 1, minutes, seed, LR, BATCH, CLIP, EMA_DECAY, WARMUP)
    return {**out, "params": _params(net), "schedule": schedule}


def _worker(args):
    name, minutes, seed, options = args
    return (train_genlab if name == "genlab" else train_diffusers)(minutes, seed, **options)


# -- sampling and scoring --------------------------------------------------------------------------
def genlab_model(result: dict):
    """The trained genlab `ddpm` (EMA weights) from train_genlab's result."""
    from genlab.models import create_model

    model = create_model("ddpm", _data(), **result["config"])
    model.load_state_dict(result["state"])
    return model.eval()


def genlab_sampler(result: dict, sampler: str, steps, model=None, **options):
    """draw(n, seed): n images from the genlab model with this sampler (and model.sample options)."""
    model = genlab_model(result) if model is None else model

    def draw(n, seed):
        g = torch.Generator().manual_seed(seed)
        return model.sample(n, generator=g, sampler=sampler, steps=steps, **options)

    return draw


def diffusers_sampler(result: dict, steps: int = DDIM_STEPS):
    from diffusers import DDIMScheduler, UNet2DModel

    net = UNet2DModel(**DIFFUSERS_NET)
    net.load_state_dict(result["state"])
    net.eval()
    ddim = DDIMScheduler.from_config(_diffusers_scheduler(result["schedule"]).config)

    @torch.no_grad()
    def draw(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 1, 8, 8, generator=g)
        ddim.set_timesteps(steps)
        for t in ddim.timesteps:
            eps = net(x, t).sample
            x = ddim.step(eps, t, x, eta=0.0, generator=g).prev_sample
        return ((x + 1) / 2).clamp(0, 1)

    return draw


def score(draw, ext, test_stats, n: int, seeds: int = FD_SEEDS, first_seed: int = 1000) -> dict:
    """FD to the test set of n samples, for sample seeds first_seed, first_seed + 1, ..."""
    fds, secs = [], []
    for s in range(seeds):
        t0 = time.process_time()
        x = draw(n, first_seed + s)
        secs.append(time.process_time() - t0)
        fds.append(frechet_distance(*gaussian_stats(ext.features(x)), *test_stats))
    return {"fd": sum(fds) / len(fds), "fd_runs": fds, "sampling_cpu_seconds": sum(secs) / len(secs)}


def real_floor(data, ext, test_stats) -> float:
    """The whole training split against the test set: the FD of real images at the sample size N."""
    return frechet_distance(*gaussian_stats(ext.features(data.train)), *test_stats)


def run_ddpm_pair(budget_minutes: float = 10.0, seed: int = 0, quick: bool = False, parallel: bool = True,
                  recipe: dict | None = None, peer: bool = True, peer_bf16: bool = False, ancestral: bool = True,
                  save: str | None = None, peer_schedule: str = "linear") -> dict:
    """Train genlab `ddpm` (with `recipe`) and diffusers for `budget_minutes` CPU-minutes each and score
    both; peer=False: genlab alone (a recipe pilot, no ratios). `save`: torch.save the trained states
    and configs there (for sampler studies on the same models)."""
    torch.set_num_threads(1)
    if quick:
        budget_minutes, ancestral = min(budget_minutes, 0.3), False
    jobs = [("genlab", budget_minutes, seed, {"recipe": recipe}),
            ("diffusers", budget_minutes, seed, {"bf16": peer_bf16, "schedule": peer_schedule})][:2 if peer else 1]
    names = [j[0] for j in jobs]
    t0 = time.time()
    if parallel and peer:
        with mp.get_context("spawn").Pool(2) as pool:
            res = dict(zip(names, pool.map(_worker, jobs)))
    else:
        res = {j[0]: _worker(j) for j in jobs}
    wall = time.time() - t0
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        torch.save(res, save)
    data = _data()
    ext = extractor_for(data.spec)
    test_stats = gaussian_stats(ext.features(data.test))
    floor, n = real_floor(data, ext, test_stats), len(data.train)
    rows = {}
    g_ddim = score(genlab_sampler(res["genlab"], "ddim", DDIM_STEPS), ext, test_stats, n)
    # 1000 network calls per image: one sample seed (the first of the DDIM seeds) to bound the cost
    g_anc = score(genlab_sampler(res["genlab"], "ddpm", None), ext, test_stats, n, seeds=1) if ancestral else None
    d_ddim = score(diffusers_sampler(res["diffusers"]), ext, test_stats, n) if peer else None
    for name, r, sc in (("genlab ddpm, ddim-50", res["genlab"], g_ddim),
                        ("genlab ddpm, ancestral-1000", res["genlab"], g_anc),
                        ("diffusers, ddim-50", res.get("diffusers"), d_ddim)):
        if sc is None:
            continue
        rows[name] = {"params": r["params"], "steps": r["steps"], "cpu_seconds": round(r["cpu_seconds"], 1),
                      "fd_first_seed": sc["fd_runs"][0],
                      "steps_per_s": r["steps"] / r["cpu_seconds"], "final_loss": r["final_loss"],
                      "fd": sc["fd"], "fd_runs": sc["fd_runs"], "excess": sc["fd"] - floor,
                      "sampling_cpu_seconds": sc["sampling_cpu_seconds"]}
    g, ratios = rows["genlab ddpm, ddim-50"], {}
    if peer:
        d = rows["diffusers, ddim-50"]
        ratios = {"excess_genlab_over_diffusers": g["excess"] / d["excess"] if d["excess"] > 0 else math.nan,
                  "throughput_genlab_over_diffusers": g["steps_per_s"] / d["steps_per_s"],
                  "sampling_time_genlab_over_diffusers": g["sampling_cpu_seconds"] / d["sampling_cpu_seconds"]}
    if g_anc is not None:
        a = rows["genlab ddpm, ancestral-1000"]
        ratios["ddim50_excess_over_ancestral1000_excess"] = g["excess"] / a["excess"] if a["excess"] > 0 else math.nan
        same = g["fd_first_seed"] - floor  # the same sample seed as the ancestral run
        ratios["ddim50_over_ancestral1000_excess_same_seed"] = same / a["excess"] if a["excess"] > 0 else math.nan
    return {"pair": "ddpm vs diffusers" if peer else "genlab ddpm (pilot)", "budget_cpu_minutes": budget_minutes,
            "seed": seed, "genlab_recipe": recipe or {}, "peer_bf16": peer_bf16, "peer_schedule": peer_schedule,
            "n_eval": n, "fd_seeds": FD_SEEDS, "floor": floor, "rows": rows, "ratios": ratios, "wall_seconds": round(wall, 1),
            "parallel": parallel and peer}


def print_pair(result: dict) -> None:
    print(f"\n{result['pair']}: {result['budget_cpu_minutes']} CPU-minutes each, 1 thread; FD on the digits "
          f"classifier's features, {result['n_eval']} samples vs test, mean of {result['fd_seeds']} seeds")
    print(f"real-data floor ({result['n_eval']} train vs test): {result['floor']:.3f}")
    print(f"{'':30} {'params':>9} {'steps':>7} {'steps/s':>8} {'FD':>8} {'excess':>8} {'sample s':>9}")
    for name, r in result["rows"].items():
        print(f"{name:30} {r['params']:>9} {r['steps']:>7} {r['steps_per_s']:>8.2f} {r['fd']:>8.3f} "
              f"{r['excess']:>8.3f} {r['sampling_cpu_seconds']:>9.2f}  ({', '.join(f'{v:.3f}' for v in r['fd_runs'])})")
    for k, v in result["ratios"].items():
        print(f"  {k}: {v:.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="CPU-minutes of training per model (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 0.3 CPU-minutes each, no ancestral-1000")
    p.add_argument("--pair", choices=["ddpm", "fm", "all"], default="ddpm")
    p.add_argument("--sequential", action="store_true", help="train the two models one after the other")
    p.add_argument("--json", help="output JSON (default bench/results/diffusion.json; none with --quick or "
                                  "--genlab-only)")
    p.add_argument("--genlab-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a genlab ddpm / Trainer setting (repeatable), e.g. precision=bf16, min_snr=5")
    p.add_argument("--genlab-only", action="store_true", help="train and score genlab alone (a recipe pilot)")
    p.add_argument("--peer-bf16", action="store_true", help="diffusers' loop with torch.autocast(bfloat16)")
    p.add_argument("--peer-schedule", default="linear", choices=("linear", "squaredcos_cap_v2"),
                   help="diffusers' beta_schedule (squaredcos_cap_v2 = the cosine schedule)")
    p.add_argument("--no-ancestral", action="store_true", help="skip the 1000-step ancestral score (~15 CPU-min)")
    p.add_argument("--save", help="torch.save the trained states here (for sampler studies)")
    a = p.parse_args(argv)
    from genlab.cli import parse_settings

    recipe = parse_settings(a.genlab_set)
    torch.set_num_threads(1)
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
           "python": sys.version.split()[0], "torch": torch.__version__, "genlab": genlab.__version__}
    try:
        out["diffusers"] = importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        out["diffusers"] = None
    if a.pair in ("ddpm", "all"):
        if out["diffusers"] is None and not a.genlab_only:
            print("diffusers is not installed: pip install -c constraints.txt diffusers", file=sys.stderr)
            return 1
        out["ddpm"] = run_ddpm_pair(a.minutes, a.seed, a.quick, not a.sequential, recipe, not a.genlab_only,
                                    a.peer_bf16, not a.no_ancestral, a.save, a.peer_schedule)
        print_pair(out["ddpm"])
    if a.pair in ("fm", "all"):
        sys.path.insert(0, str(Path(__file__).parent))
        try:
            from diffusion_fm import run_fm_pair
        except ImportError as e:
            print(f"bench/diffusion_fm.py is missing or broken ({e}); skipping the fm pair", file=sys.stderr)
        else:
            out["fm"] = run_fm_pair(a.minutes, a.seed, a.quick)
            print(json.dumps({k: v for k, v in out["fm"].items() if k != "rows"}, indent=1, default=str))
            print(json.dumps(out["fm"].get("rows"), indent=1, default=str))
    path = a.json or (None if a.quick or a.genlab_only else "bench/results/diffusion.json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out, indent=1, default=str))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
