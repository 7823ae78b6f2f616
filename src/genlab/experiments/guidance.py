"""guidance: the classifier-free guidance scale trades diversity for class fidelity.

A conditional `ddpm` (label dropped to the null label with p = 0.1 in training) is sampled with

    eps_hat = eps(x, t) + w (eps(x, t, y) - eps(x, t))        (Ho & Salimans 2022)

for a sweep of w (w = 0: unconditional, 1: plain conditional, > 1: guided), with the test set's
labels. Per w: class accuracy of the samples by the shipped digits classifier (metrics'
"balance"), and diversity as recall and coverage of the test set (metrics' "recall",
"coverage"). Expected: accuracy rises with w and saturates; recall / coverage fall past w ~ 1-3.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment


@register_experiment("guidance", "classifier-free guidance sweep: class accuracy vs recall/coverage")
def guidance(out, seed: int = 0, quick: bool = False) -> dict:
    from ..data import load_dataset
    from ..io import atomic_write_json
    from ..metrics.evaluate import evaluate
    from ..report.figures import _plt, save_figure
    from ..train.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    data = load_dataset("digits")
    budget = {"steps": 30, "base": 16, "mults": (1, 2)} if quick else {"minutes": 4.0}
    run = train("ddpm", data, save=False, progress=False, seed=seed, clock="cpu", conditional=True, **budget)
    model = run.model.eval()
    scales = (0.0, 1.0, 3.0) if quick else (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
    n = 64 if quick else None
    steps = 5 if quick else 50
    records = []
    for w in scales:
        r = evaluate(model, data, metrics=["balance", "recall", "coverage"], n=n, seed=seed,
                     sampler="ddim", steps=steps, guidance=w)
        m = r["metrics"]
        records.append({"guidance": w, "class_accuracy": m.get("class_accuracy"), "recall": m["recall"],
                        "coverage": m["coverage"], "confidence": m.get("confidence")})
        real = r["reference"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ws = [r["guidance"] for r in records]
    ax.plot(ws, [r["class_accuracy"] for r in records], "o-", color="#b2182b", label="class accuracy")
    ax.plot(ws, [r["recall"] for r in records], "s-", color="#2166ac", label="recall")
    ax.plot(ws, [r["coverage"] for r in records], "^-", color="#4daf4a", label="coverage")
    ax.set_xlabel("guidance scale w")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("classifier-free guidance on digits (conditional ddpm, DDIM)")
    save_figure(fig, out / "guidance.png")
    summary = {"experiment": "guidance", "seed": seed, "quick": quick, "sampler": f"ddim, {steps} steps",
               "training_steps": run.history[-1]["step"] if run.history else None, "records": records,
               "real_data": {k: real.get(k) for k in ("class_accuracy", "recall", "coverage")},
               "figure": str(out / "guidance.png")}
    atomic_write_json(out / "guidance.json", summary)
    return summary
