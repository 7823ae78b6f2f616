"""Is genlab's diffusion lead on digits robust to the yardstick? The ddpm vs diffusers and fm vs torchcfm
pairs of bench/diffusion.py and bench/diffusion_fm.py (their networks, loops and settings), trained on
the same budget and scored in three feature spaces (bench/yardsticks.py: the shipped classifier, one
trained independently from another seed, raw pixels) at several sample seeds.

    .venv/bin/python bench/diffusion_yardsticks.py --minutes 5                     # 1 thread, CPU time
    .venv/bin/python bench/diffusion_yardsticks.py --minutes 5 --threads 2 --clock wall   # alone on 2 cores
    .venv/bin/python bench/diffusion_yardsticks.py --quick                          # smoke run
    .venv/bin/python bench/diffusion_yardsticks.py --split-seed 1 --seed 1          # another split, training seed
    .venv/bin/python bench/diffusion_yardsticks.py --pairs ddpm --load S.pt --retrain-peer \
        --peer-schedule squaredcos_cap_v2          # the control: diffusers with the cosine schedule too
    .venv/bin/python bench/diffusion_yardsticks.py --ddpm-set schedule=cosine --ddpm-set precision=bf16 \
        --fm-set precision=bf16 --fm-set ot=true --fm-set time_sampling=logit-normal --fm-set dequantize=false

Each side trains for `--minutes` (process CPU time on `--threads` threads, or wall time with
--clock wall: then run it alone), one side after the other. Sampling: DDIM-50 for the ddpm pair
(genlab's sampler; diffusers' DDIMScheduler), Heun-25 for the fm pair (the shared ODE solver), EMA
weights, N = 1437 samples (the training split's size) per sample seed. Per yardstick: FD to the test
split, its real-data floor (the training split vs test) and the excess = FD - floor; the ratio genlab /
peer of the mean excess and the range of the per-seed ratios. Writes bench/results/diffusion_yardsticks.json
(or --out) with the trained states' step counts; --save keeps the states for rescoring (--load).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffusion  # noqa: E402
import diffusion_fm  # noqa: E402
import peer_loop  # noqa: E402
from yardsticks import fd_by_yardstick, yardsticks  # noqa: E402

from genlab.nn.unet import UNet  # noqa: E402

PAIRS = {  # pair -> ((side name, train function), (peer name, train function))
    "ddpm": (("genlab ddpm", diffusion.train_genlab), ("diffusers", diffusion.train_diffusers)),
    "fm": (("genlab fm", diffusion_fm.train_genlab), ("torchcfm", diffusion_fm.train_torchcfm)),
}


def drawer(pair: str, side: int, result: dict):
    """draw(n, seed) -> n images in [0, 1] from one trained side."""
    if pair == "ddpm":
        return (diffusion.genlab_sampler(result, "ddim", diffusion.DDIM_STEPS) if side == 0
                else diffusion.diffusers_sampler(result))
    net = UNet(1, 8, **diffusion_fm.NET)
    net.load_state_dict(result["state"])
    to_data = diffusion_fm.genlab_to_data(result) if side == 0 else (lambda v: ((v + 1) / 2).clamp(0, 1))
    return lambda n, seed: diffusion_fm.sample_images(net, n, seed, "heun", 25, to_data)[0]


def score_pair(pair: str, trained: list, sticks: dict, data, seeds: int) -> dict:
    """Excess FD per yardstick and sample seed for each trained side (None: a side not trained, --only)."""
    n = len(data.train)
    floors = fd_by_yardstick(data.train, sticks)
    sides = []
    for side, result in enumerate(trained):
        if result is None:
            sides.append(None)
            continue
        draw, per_seed = drawer(pair, side, result), []
        for s in range(seeds):
            per_seed.append({k: v - floors[k] for k, v in fd_by_yardstick(draw(n, 1000 + s), sticks).items()})
        sides.append(per_seed)
    out = {"floors": floors, "yardsticks": {}}
    for k in sticks:
        row = {f"excess_{who}": [r[k] for r in rows] for who, rows in zip(("genlab", "peer"), sides) if rows}
        if len(row) == 2:
            ours, theirs = row["excess_genlab"], row["excess_peer"]
            ratios = [a / b for a, b in zip(ours, theirs) if b > 0]
            row.update(ratio_of_means=statistics.fmean(ours) / statistics.fmean(theirs),
                       per_seed_ratio_min=min(ratios), per_seed_ratio_max=max(ratios))
        out["yardsticks"][k] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per side (default 5)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--pairs", default="ddpm,fm")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--split-seed", type=int, default=0,
                   help="the digits train/test split (its stratified split's seed; 0: genlab's own split)")
    p.add_argument("--sample-seeds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="0.2 minutes per side, 2 sample seeds")
    p.add_argument("--ddpm-set", action="append", default=[], metavar="KEY=VALUE",
                   help="genlab ddpm's recipe (e.g. schedule=cosine, precision=bf16: docs/benchmarks.md's)")
    p.add_argument("--fm-set", action="append", default=[], metavar="KEY=VALUE", help="genlab fm's recipe")
    p.add_argument("--peer-schedule", default="linear", choices=("linear", "squaredcos_cap_v2"),
                   help="diffusers' beta_schedule (the control: the cosine schedule on both sides)")
    p.add_argument("--peer-bf16", action="store_true",
                   help="the peers train under torch.autocast(bfloat16) too (the control for genlab's precision=bf16)")
    p.add_argument("--retrain-peer", action="store_true", help="with --load: keep genlab's states, train the peers again")
    p.add_argument("--steps", type=int, help="the fm pair: a budget of this many steps for both sides instead "
                   "of --minutes (recipe isolation at equal steps)")
    p.add_argument("--only", choices=("genlab", "peer"), help="train and score one side only (recipe pilots: "
                   "compare its excess with the other side's measured under the same protocol)")
    p.add_argument("--save", help="torch.save the trained states here")
    p.add_argument("--load", help="score the states saved by --save instead of training")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "diffusion_yardsticks.json"))
    a = p.parse_args(argv)
    if a.quick:
        a.minutes, a.sample_seeds = 0.2, 2
    from genlab.cli import parse_settings

    recipes = {"ddpm": parse_settings(a.ddpm_set), "fm": parse_settings(a.fm_set)}
    peer_loop.THREADS, peer_loop.CLOCK, peer_loop.SPLIT_SEED = a.threads, a.clock, a.split_seed
    torch.set_num_threads(a.threads)
    data = diffusion._data()
    sticks = yardsticks(data)
    states = torch.load(a.load, weights_only=False) if a.load else {}
    out = {"protocol": {"minutes": a.minutes, "threads": a.threads, "clock": a.clock, "seed": a.seed,
                        "split_seed": a.split_seed, "sample_seeds": a.sample_seeds, "n": len(data.train), "quick": a.quick, "recipes": recipes,
                        "peer_schedule": a.peer_schedule, "peer_bf16": a.peer_bf16, "loaded": a.load, "retrained_peer": a.retrain_peer, "only": a.only,
                        "yardsticks": {k: e.name for k, (e, _) in sticks.items()}}, "pairs": {}}
    peer_options = {"ddpm": {"schedule": a.peer_schedule, "bf16": a.peer_bf16}, "fm": {"bf16": a.peer_bf16}}
    if a.steps:
        if "ddpm" in a.pairs.split(","):
            raise SystemExit("diffusion_yardsticks.py: --steps is for the fm pair")
        recipes["fm"]["steps"] = peer_options["fm"]["steps"] = a.steps
        out["protocol"]["steps"] = a.steps
    for pair in [s.strip() for s in a.pairs.split(",") if s.strip()]:
        if pair in states and a.retrain_peer:
            states[pair] = states[pair][:1] + [PAIRS[pair][1][1](a.minutes, a.seed, **peer_options[pair])]
        if pair not in states:
            states[pair] = []
            for side, (name, fn) in enumerate(PAIRS[pair]):
                if a.only and a.only != ("genlab", "peer")[side]:
                    states[pair].append(None)
                    continue
                t0 = time.time()
                states[pair].append(fn(a.minutes, a.seed, recipes[pair]) if side == 0
                                    else fn(a.minutes, a.seed, **peer_options[pair]))
                print(f"{pair}: {name} trained {states[pair][-1]['steps']} steps in {time.time() - t0:.0f} s",
                      flush=True)
        torch.set_num_threads(a.threads)
        res = score_pair(pair, states[pair], sticks, data, a.sample_seeds)
        res["steps"] = {name: r["steps"] for (name, _), r in zip(PAIRS[pair], states[pair]) if r is not None}
        out["pairs"][pair] = res
        (g, _), (peer, _) = PAIRS[pair]
        print(f"\n{pair}: {g} vs {peer}, {a.minutes:g} {a.clock}-minutes each on {a.threads} thread(s); "
              f"steps {res['steps']}; excess FD over the real floor, mean of {a.sample_seeds} sample seeds")
        for k, r in res["yardsticks"].items():
            if "ratio_of_means" not in r:
                print(f"  {k:18s} " + "  ".join(f"{who} {statistics.fmean(v):7.3f}" for who, v in r.items()),
                      flush=True)
                continue
            print(f"  {k:18s} genlab {statistics.fmean(r['excess_genlab']):7.3f}  {peer} "
                  f"{statistics.fmean(r['excess_peer']):7.3f}  ratio {r['ratio_of_means']:.2f}x "
                  f"(per seed {r['per_seed_ratio_min']:.2f}-{r['per_seed_ratio_max']:.2f})", flush=True)
    if a.save:
        torch.save(states, a.save)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
