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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diffusion import _data, genlab_model, genlab_sampler, real_floor, score  # noqa: E402

from genlab.metrics import gaussian_stats  # noqa: E402
from genlab.metrics.features import extractor_for  # noqa: E402


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
    data = _data()
    ext = extractor_for(data.spec)
    test_stats = gaussian_stats(ext.features(data.test))
    floor, n = real_floor(data, ext, test_stats), len(data.train)
    model = genlab_model(trained)
    print(f"floor {floor:.3f}; {trained['steps']} training steps")
    for text in argv[1:]:
        v = parse_variant(text)
        seeds, first = v.pop("seeds", 1), v.pop("first_seed", 1000)
        model.clip = 1.0 if v.pop("clip", True) else None
        draw = genlab_sampler(trained, v.pop("sampler", "ddim"), v.pop("steps", 50), model=model, **v)
        sc = score(draw, ext, test_stats, n, seeds, first)
        excess = [f - floor for f in sc["fd_runs"]]
        print(f"{text:55} excess {sc['fd'] - floor:.3f} ({', '.join(f'{e:.3f}' for e in excess)})  "
              f"{sc['sampling_cpu_seconds']:.0f} CPU-s per seed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
