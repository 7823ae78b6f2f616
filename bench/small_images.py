"""Sizing the data-aware defaults for small images (the 8 x 8 digits): network and learning rate at a
small CPU budget, FD of 360 samples in the digits classifier's features (genlab.evaluate, seed 0).

    .venv/bin/python bench/small_images.py --family ddpm --minutes 0.5      # UNet variants (also fm)
    .venv/bin/python bench/small_images.py --family gan --minutes 0.2 --seeds 0,1   # learning rates

One torch thread, `clock="cpu"`; every variant is `genlab.train(FAMILY, "digits", minutes=M, seed=S,
**variant)`. The results chose ddpm's and fm's SMALL_IMAGE_UNET (nn/diffusion.py) and the GAN's lr on
small images (models/gan.py), where their numbers are quoted.
"""

from __future__ import annotations

import argparse

import torch

import genlab

# every variant spelled out in full: what it leaves unset, the small-image data defaults would fill
_UNET = {"base": 32, "mults": (1, 2, 2), "attention": True}  # the families' fixed default
VARIANTS = {
    "ddpm": {"default": _UNET, "b16": {**_UNET, "base": 16}, "b16-noattn": {**_UNET, "base": 16, "attention": False},
             "b16-12": {"base": 16, "mults": (1, 2), "attention": False},
             "b32-12": {"base": 32, "mults": (1, 2), "attention": False}, "mlp": {"net": "mlp"}},
    "gan": {"default": {"lr": 2e-4}, "lr1e-3": {"lr": 1e-3}, "lr5e-4": {"lr": 5e-4},
            "mlp-lr1e-3": {"net": "mlp", "lr": 1e-3}, "lr1e-3-mbstd": {"lr": 1e-3, "minibatch_std": True},
            "ch32-64-lr1e-3": {"channels": (32, 64), "lr": 1e-3}},
}
VARIANTS["fm"] = VARIANTS["ddpm"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=sorted(VARIANTS), required=True)
    p.add_argument("--minutes", type=float, default=0.5)
    p.add_argument("--variants", help="comma-separated (default: all of the family's)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--batch-size", type=int, help="the diffusion sweeps used 64 (the small-image default)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    data = genlab.load_dataset("digits")
    names = a.variants.split(",") if a.variants else list(VARIANTS[a.family])
    extra = {"batch_size": a.batch_size} if a.batch_size else {}
    for name in names:
        for seed in (int(s) for s in a.seeds.split(",")):
            run = genlab.train(a.family, data, None, minutes=a.minutes, clock="cpu", progress=False, save=False,
                               seed=seed, **{**extra, **VARIANTS[a.family][name]})
            m = genlab.evaluate(run.model, data, ["fid", "precision", "recall"], n=360, seed=0)["metrics"]
            print(f"{a.family} {name:15s} seed {seed} {a.minutes:g} CPU-min: {run.history[-1]['step']} steps  "
                  f"FD {m['fid']:.2f}  precision {m['precision']:.2f}  recall {m['recall']:.2f}", flush=True)


if __name__ == "__main__":
    main()
