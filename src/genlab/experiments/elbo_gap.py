"""elbo-gap: the ELBO and the importance-weighted bounds L_k of one VAE as k grows (Burda et al. 2016).

    L_k(x) = E[ log (1/k) sum_{i=1..k} p(x, z_i) / q(z_i | x) ],   z_i ~ q(z | x)
    L_1 = ELBO <= L_2 <= ... <= L_k <= log p(x),    L_k -> log p(x) as k -> infinity

(models/vae.py `iwae_bound`). One VAE trained on digits with the ELBO, and one trained with the
IWAE bound (iwae_k = 8, full mode), are scored on the same test examples with L_k for k = 1 .. 1000:
the curve rises and flattens, and the gap L_1000 - L_1 is what the ELBO leaves on the table
(the KL from q(z|x) to the true posterior, bounded by the gap). Averages over the test examples in
nats; each L_k uses fresh draws, so the rise is the bound's, not shared noise.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment


@register_experiment("elbo-gap", "ELBO vs IWAE bound L_k as k grows, VAEs trained with each")
def elbo_gap(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    ks = [1, 5, 50] if quick else [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    n_test = 60 if quick else len(data.test)
    variants = {"ELBO-trained": {}} if quick else {"ELBO-trained": {}, "IWAE-8-trained": {"iwae_k": 8}}
    steps = 80 if quick else 3000
    x = data.test[:n_test]
    results = {}
    for name, hp in variants.items():
        run = train("vae", data, steps=steps, seed=seed, save=False, progress=False, **hp)
        model = run.model.eval()
        torch.manual_seed(seed)
        curve = [float(model.log_prob(x, k=k).mean()) for k in ks]
        results[name] = {"L_k": curve, "gap_nats": curve[-1] - curve[0], "steps": steps, "hparams": hp}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4))
    for name, r in results.items():
        ax.semilogx(ks, r["L_k"], "o-", label=f"{name} (gap {r['gap_nats']:.2f} nats)")
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel(f"mean L_k over {n_test} test digits (nats)")
    ax.set_title("L_1 = ELBO <= L_k <= log p(x): the bound tightens with k", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, out / "elbo-gap.png")
    summary = {"experiment": "elbo-gap", "seed": seed, "quick": quick, "k": ks, "test_examples": n_test,
               "results": results, "figure": str(out / "elbo-gap.png")}
    atomic_write_json(out / "elbo-gap.json", summary)
    return summary
