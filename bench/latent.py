"""Latent models against their data-space counterparts, at the same CPU budget.

Part "diffusion" (MNIST by default): latent diffusion (ddpm over a VAE's codes, Rombach et al. 2022)
against pixel-space ddpm, the same TOTAL training CPU budget (`--cpu-minutes`, default 20): the latent
model's share is the VAE's training (`--ae-share` of it) plus encoding the training split plus the
ddpm over the codes (what is left). Reported: Frechet distance of 2500 samples to the test split in the
shipped classifier's features, its excess over the real-data floor (train vs test, same n), precision /
recall, and sampling CPU-seconds per image (both ddpm samplers: DDIM, 50 steps, one thread).
Target (issue 19): latent FD excess <= pixel ddpm's, sampling >= 5x faster.

Part "priors" (digits by default): an autoencoder with a prior fitted to its codes (gmm or maf: pythae's
two-stage samplers, Ghosh et al. 2020) against the plain VAE and the AE's own single-Gaussian code fit,
the AE and the VAE trained for the same CPU time; FD, precision, recall (n = the test split), over seeds.

All training: genlab's Trainer, clock=cpu, one torch thread. Run from the project root:

    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/latent.py                 # both parts, full budgets
    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/latent.py --quick         # smoke run on digits (~5 CPU-min)

Writes bench/results/latent[-quick].json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.evaluate import evaluate

RESULTS = Path(__file__).parent / "results"
METRICS = ["fid", "precision", "recall"]


def train(family, data, out, cpu_minutes=None, **kw):
    t = time.process_time()
    run = genlab.train(family, data, out=out, minutes=cpu_minutes, clock="cpu", progress=True,
                       checkpoint_every=0, **kw)
    return run, time.process_time() - t


def scores(model, data, n, seed) -> dict:
    ev = evaluate(model, data, METRICS, n=n, seed=seed, progress=False)
    m, ref = ev["metrics"], ev["reference"]
    return {"fid": m["fid"], "fid_floor": ref["fid"], "fid_excess": m["fid"] - ref["fid"],
            "precision": m["precision"], "recall": m["recall"], "n": ev["protocol"]["n_generated"]}


@torch.no_grad()
def sampling_cost(model, n: int = 50, seed: int = 0) -> float:
    """CPU-seconds per image of model.sample (its default sampler), one thread."""
    g = torch.Generator().manual_seed(seed)
    model.sample(8, generator=g)  # warm-up
    t = time.process_time()
    model.sample(n, generator=g)
    return (time.process_time() - t) / n


def diffusion_part(args, tmp: Path) -> dict:
    data = genlab.load_dataset(args.diffusion_data)
    total = args.cpu_minutes
    out = {"data": args.diffusion_data, "cpu_minutes": total, "ae_share": args.ae_share}
    # pixel-space ddpm: the whole budget
    pixel, _ = train("ddpm", data, tmp / "ddpm", total, seed=args.seed)
    out["pixel_ddpm"] = {**scores(pixel.model, data, args.n, args.seed),
                         "sampling_cpu_s_per_image": sampling_cost(pixel.model),
                         "steps": pixel.history[-1]["step"], "train_cpu_minutes": total}
    # latent: a VAE, then ddpm over its codes, the encoding counted in the budget
    vae, _ = train("vae", data, tmp / "vae", total * args.ae_share, seed=args.seed, latent_dim=args.latent_dim)
    t = time.process_time()
    lat_model = genlab.models.LatentModel.create("ddpm", tmp / "vae", data)
    lat_model.code_dataset(data)
    encode_cpu = time.process_time() - t
    left = total - total * args.ae_share - encode_cpu / 60
    lat, _ = train("ddpm", data, tmp / "ddpm@vae", left, latent=tmp / "vae", seed=args.seed)
    out["latent_ddpm"] = {**scores(lat.model, data, args.n, args.seed),
                          "sampling_cpu_s_per_image": sampling_cost(lat.model),
                          "steps": lat.history[-1]["step"], "vae_cpu_minutes": total * args.ae_share,
                          "encode_cpu_seconds": encode_cpu, "ddpm_cpu_minutes": left,
                          "latent_dim": args.latent_dim}
    out["vae_alone"] = scores(vae.model, data, args.n, args.seed)
    out["sampling_speedup"] = (out["pixel_ddpm"]["sampling_cpu_s_per_image"]
                               / out["latent_ddpm"]["sampling_cpu_s_per_image"])
    return out


def priors_part(args, tmp: Path) -> dict:
    data = genlab.load_dataset(args.priors_data)
    rows: dict[str, list] = {}
    for seed in range(args.seeds):
        d = tmp / f"priors-{seed}"
        vae, _ = train("vae", data, d / "vae", args.ae_minutes, seed=seed, latent_dim=args.latent_dim)
        ae, _ = train("ae", data, d / "ae", args.ae_minutes, seed=seed, latent_dim=args.latent_dim)
        models = {"vae (N(0, I) prior)": vae.model, "ae (Gaussian fit to codes)": ae.model}
        for prior, minutes in (("gmm", None), ("maf", args.prior_minutes)):  # gmm: a closed-form EM fit
            for base in ("ae", "vae"):
                run, _ = train(prior, data, d / f"{prior}@{base}", minutes, latent=d / base, seed=seed)
                models[f"{prior}@{base}"] = run.model
        for name, m in models.items():
            rows.setdefault(name, []).append(scores(m, data, None, seed))
    summary = {}
    for name, rs in rows.items():
        t = {k: torch.tensor([r[k] for r in rs], dtype=torch.float64) for k in ("fid", "precision", "recall")}
        summary[name] = {k: {"mean": float(v.mean()), "sd": float(v.std()) if len(v) > 1 else 0.0}
                         for k, v in t.items()}
        summary[name]["fid_floor"] = rs[0]["fid_floor"]
    return {"data": args.priors_data, "ae_cpu_minutes": args.ae_minutes, "maf_cpu_minutes": args.prior_minutes,
            "seeds": args.seeds, "latent_dim": args.latent_dim, "per_seed": rows, "summary": summary}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default="all", choices=["all", "diffusion", "priors"])
    p.add_argument("--cpu-minutes", type=float, default=20.0, help="diffusion: total training CPU-minutes per model")
    p.add_argument("--ae-share", type=float, default=0.3, help="diffusion: the VAE's share of the latent budget")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--n", type=int, default=2500, help="diffusion: samples evaluated")
    p.add_argument("--diffusion-data", default="mnist")
    p.add_argument("--priors-data", default="digits")
    p.add_argument("--ae-minutes", type=float, default=2.0, help="priors: CPU-minutes of the AE and of the VAE")
    p.add_argument("--prior-minutes", type=float, default=0.5, help="priors: CPU-minutes of the maf prior")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/latent[-quick].json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 CPU-min diffusion on digits, 1 seed of "
                                                        "priors at 0.5 CPU-min")
    args = p.parse_args()
    if args.quick:
        args.cpu_minutes, args.n, args.ae_minutes, args.prior_minutes, args.seeds = 1.0, 360, 0.5, 0.25, 1
        args.diffusion_data = "digits"
    torch.set_num_threads(1)
    load = os.getloadavg()
    out = {"benchmark": "latent models", "date": datetime.date.today().isoformat(), "args": vars(args),
           "torch": torch.__version__, "threads": 1, "machine": platform.processor() or platform.machine(),
           "loadavg_start": load}
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "diffusion"):
            out["diffusion"] = diffusion_part(args, Path(tmp))
        if args.part in ("all", "priors"):
            out["priors"] = priors_part(args, Path(tmp))
    out["loadavg_end"] = os.getloadavg()
    path = args.out or RESULTS / f"latent{'-quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    if "diffusion" in out:
        d = out["diffusion"]
        print(f"\n{d['data']}, {d['cpu_minutes']:g} CPU-minutes per model (latent: VAE {d['ae_share']:.0%} + encoding "
              "+ ddpm over the codes)")
        print(f"{'model':14} {'FD':>8} {'excess':>8} {'prec':>6} {'recall':>6} {'ms/image':>9}")
        for k in ("pixel_ddpm", "latent_ddpm", "vae_alone"):
            r = d[k]
            ms = f"{1000 * r['sampling_cpu_s_per_image']:9.2f}" if "sampling_cpu_s_per_image" in r else f"{'':>9}"
            print(f"{k:14} {r['fid']:8.3f} {r['fid_excess']:8.3f} {r['precision']:6.3f} {r['recall']:6.3f} {ms}")
        print(f"real-data floor {d['pixel_ddpm']['fid_floor']:.3f}; sampling speed-up x{d['sampling_speedup']:.1f}")
    if "priors" in out:
        pr = out["priors"]
        print(f"\n{pr['data']}: AE / VAE {pr['ae_cpu_minutes']:g} CPU-min each, {pr['seeds']} seed(s)")
        print(f"{'model':28} {'FD':>14} {'precision':>14} {'recall':>14}")
        for name, s in pr["summary"].items():
            print(f"{name:28} " + " ".join(f"{s[k]['mean']:7.3f} ± {s[k]['sd']:.3f}" for k in ("fid", "precision",
                                                                                                 "recall")))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
