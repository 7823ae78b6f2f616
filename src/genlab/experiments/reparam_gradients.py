"""reparam-gradients: two unbiased estimators of d/dmu E_{z ~ N(mu, sigma^2 I)}[f(z)], and their variance.

    score function (REINFORCE)   g_SF = f(z) d/dmu log q(z) = f(z) (z_1 - mu_1) / sigma^2
    reparameterised              g_RP = d/dmu f(mu + sigma eps) = f'(z)_1,         z = mu + sigma eps

Both have mean d/dmu_1 E[f]. For f(z) = ||z - c||^2 in d dimensions, with m = mu - c and
Y_j = m_j + sigma eps_j, the variances have closed forms:

    Var g_RP = 4 sigma^2                                              (independent of d)
    Var g_SF = (E[A^2] + 2 E[A] (m_1^2 + 3 sigma^2) + m_1^4 + 18 m_1^2 sigma^2 + 15 sigma^4) / sigma^2 - 4 m_1^2
        A = sum_{j > 1} Y_j^2,  E[A] = sum_{j>1} (m_j^2 + sigma^2),  Var A = sum_{j>1} (4 m_j^2 sigma^2 + 2 sigma^4)

so the score function's variance grows with the dimension (every other coordinate's noise enters
through f), which is why VAEs use the reparameterisation trick (Kingma & Welling 2014). The
experiment checks both estimators' Monte Carlo variance against these closed forms over
d = 1 .. 256 (and a score function with the mean of f as a baseline, a control variate that helps
but does not remove the growth), then measures the same two estimators on a VAE's encoder mean:
the gradient of the decoder's log-likelihood with respect to mu (full mode only).
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import register_experiment


def closed_form_variances(d: int, mu: float, c: float, sigma: float) -> tuple[float, float]:
    """(Var g_RP, Var g_SF) for f(z) = ||z - c||^2, mu and c the same in every coordinate."""
    m, s2 = mu - c, sigma ** 2
    ea = (d - 1) * (m * m + s2)
    var_a = (d - 1) * (4 * m * m * s2 + 2 * s2 * s2)
    ea2 = var_a + ea * ea
    e_g2 = (ea2 + 2 * ea * (m * m + 3 * s2) + m ** 4 + 18 * m * m * s2 + 15 * s2 * s2) / s2
    return 4 * s2, e_g2 - 4 * m * m


def estimators(d: int, mu: float, c: float, sigma: float, n: int, generator: torch.Generator) -> dict:
    """n draws of each estimator of d/dmu_1 E ||z - c||^2 (float64)."""
    eps = torch.randn(n, d, generator=generator, dtype=torch.float64)
    z = mu + sigma * eps
    f = (z - c).pow(2).sum(1)
    g_sf = f * (z[:, 0] - mu) / sigma ** 2
    baseline = (d * ((mu - c) ** 2 + sigma ** 2))  # E[f], the optimal constant baseline's usual stand-in
    g_sf_b = (f - baseline) * (z[:, 0] - mu) / sigma ** 2
    g_rp = 2 * (z[:, 0] - c)
    return {"score_function": g_sf, "score_function_baseline": g_sf_b, "reparameterised": g_rp}


@register_experiment("reparam-gradients", "score-function vs reparameterised gradient variance: closed form, "
                                          "Monte Carlo, a VAE")
def reparam_gradients(out, seed: int = 0, quick: bool = False) -> dict:
    from ..io import atomic_write_json
    from ..report.figures import _plt, save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    mu, c, sigma = 0.5, 0.0, 1.0
    dims = [1, 4, 16, 64] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    n = 20000 if quick else 200000
    rows = []
    for d in dims:
        est = estimators(d, mu, c, sigma, n, g)
        rp, sf = closed_form_variances(d, mu, c, sigma)
        rows.append({"d": d, "true_gradient": 2 * (mu - c),
                     **{f"mean_{k}": float(v.mean()) for k, v in est.items()},
                     **{f"var_{k}": float(v.var()) for k, v in est.items()},
                     "closed_var_reparameterised": rp, "closed_var_score_function": sf})
    vae = None if quick else _vae_part(seed)
    plt = _plt()
    ncol = 1 if vae is None else 2
    fig, axes = plt.subplots(1, ncol, figsize=(5.6 * ncol, 4), squeeze=False)
    ax = axes[0, 0]
    ds = [r["d"] for r in rows]
    ax.loglog(ds, [r["var_score_function"] for r in rows], "o", c="#b2182b", label="score function (MC)")
    ax.loglog(ds, [r["closed_var_score_function"] for r in rows], "-", c="#b2182b", lw=1, label="closed form")
    ax.loglog(ds, [r["var_score_function_baseline"] for r in rows], "s", c="#ef8a62", label="score function + baseline")
    ax.loglog(ds, [r["var_reparameterised"] for r in rows], "o", c="#2166ac", label="reparameterised (MC)")
    ax.loglog(ds, [r["closed_var_reparameterised"] for r in rows], "-", c="#2166ac", lw=1, label="closed form")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("variance of the estimate of dE/dmu_1")
    ax.set_title(f"f(z) = ||z||^2, z ~ N({mu}, {sigma}^2 I), {n} draws", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    if vae is not None:
        ax = axes[0, 1]
        names = ["score function", "reparameterised"]
        vals = [vae["var_score_function"], vae["var_reparameterised"]]
        ax.bar(names, vals, color=["#b2182b", "#2166ac"])
        ax.set_yscale("log")
        ax.set_title(f"VAE on digits: Var of d log p(x|z)/d mu, mean over {vae['latent_dim']} dims", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "reparam-gradients.png")
    summary = {"experiment": "reparam-gradients", "seed": seed, "quick": quick, "mu": mu, "c": c, "sigma": sigma,
               "draws": n, "rows": rows, "vae": vae, "figure": str(out / "reparam-gradients.png")}
    atomic_write_json(out / "reparam-gradients.json", summary)
    return summary


def _vae_part(seed: int, draws: int = 2000) -> dict:
    """Both estimators of d/dmu E_q[log p(x | z)] for a trained VAE's encoder mean, on 16 test digits."""
    from ..data import load_dataset
    from ..train.run import train

    data = load_dataset("digits")
    run = train("vae", data, steps=1000, seed=seed, save=False, progress=False)
    model = run.model.eval()
    x = data.test[:16]
    with torch.no_grad():
        mu, logvar = model.posterior(x)
    sigma = (0.5 * logvar).exp()
    g = torch.Generator().manual_seed(seed)
    sf, rp = [], []
    for _ in range(draws // 100):
        eps = torch.randn(100, *mu.shape, generator=g)
        z = (mu + sigma * eps).detach().requires_grad_(True)
        ll = model.log_likelihood(x, model._decode_flat(z, None))  # [100, 16]
        (grad_z,) = torch.autograd.grad(ll.sum(), z)
        rp.append(grad_z)                                          # d/dmu f(mu + sigma eps) = f'(z)
        sf.append(ll.detach().unsqueeze(-1) * eps / sigma)         # f(z) (z - mu) / sigma^2
    sf, rp = torch.cat(sf), torch.cat(rp)
    return {"latent_dim": int(mu.shape[1]), "examples": 16, "draws": draws,
            "var_score_function": float(sf.var(0).mean()), "var_reparameterised": float(rp.var(0).mean()),
            "mean_abs_difference_of_means": float((sf.mean(0) - rp.mean(0)).abs().mean())}
