"""Sampler study on a genlab `ddpm` trained by bench/diffusion.py --save FILE: the same trained model,
each sampler variant scored like the pair (FD of 1437 samples vs the 360 test images, excess over the
whole-training-split floor), one line per variant.

    .venv/bin/python bench/diffusion_samplers.py FILE "sampler='ddim',steps=50,seeds=3" \\
        "sampler='ddim',steps=50,clip=False" "sampler='heun',steps=25" "sampler='ddpm',steps=None"

A variant is keyword arguments of `model.sample` plus `seeds` (how many sample seeds, default 1),
`first_seed` (default 1000, the pair's first seed) and `clip` (the model's x0 clamp, default on).
"""

from __future__ import annotations

import ast
import sys
import time

import torch

import genlab
from genlab.metrics import frechet_distance, gaussian_stats
from genlab.metrics.features import extractor_for
from genlab.models import create_model


def parse_variant(text: str) -> dict:
    call = ast.parse(f"f({text})", mode="eval").body
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    trained = torch.load(argv[0], weights_only=False)["genlab"]
    data = genlab.load_dataset("digits")
    ext = extractor_for(data.spec)
    test_stats = gaussian_stats(ext.features(data.test))
    floor = frechet_distance(*gaussian_stats(ext.features(data.train)), *test_stats)
    model = create_model("ddpm", data, **trained["config"])
    model.load_state_dict(trained["state"])
    model.eval()
    print(f"floor {floor:.3f}; {trained['steps']} training steps")
    for text in argv[1:]:
        v = parse_variant(text)
        seeds, first = v.pop("seeds", 1), v.pop("first_seed", 1000)
        model.clip = 1.0 if v.pop("clip", True) else None
        t0, excess = time.process_time(), []
        for s in range(seeds):
            x = model.sample(len(data.train), generator=torch.Generator().manual_seed(first + s), **v)
            excess.append(frechet_distance(*gaussian_stats(ext.features(x)), *test_stats) - floor)
        print(f"{text:55} excess {sum(excess) / len(excess):.3f} ({', '.join(f'{e:.3f}' for e in excess)})  "
              f"{(time.process_time() - t0) / seeds:.0f} CPU-s per seed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
