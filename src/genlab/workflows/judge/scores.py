"""Human scores from a study's judgements, with 95% intervals, and how well FD agrees with them.

Pairwise preference: the Bradley-Terry model (Bradley & Terry 1952),

    P(i preferred to j) = sigma(theta_i - theta_j) = exp(theta_i) / (exp(theta_i) + exp(theta_j)),

fitted by maximum likelihood over the win counts W[i, j] (times i was preferred to j),

    max_theta  sum_{i,j} W[i,j] log sigma(theta_i - theta_j)  -  (lam / 2) |theta|^2,

with Newton's method. The tiny ridge `lam` keeps the estimate finite when a model never wins (or
always does) and, because the likelihood's gradient sums to zero, makes the strengths sum to zero
(the scale's origin is their mean). Intervals: percentile bootstrap over judgements (the counts
resampled as a multinomial over the observed judgements), every replicate refitted, all replicates at
once in arrays.

Real-vs-fake (HYPE-infinity, Zhou et al. 2019): one image at a time, "real or generated?". A model's
score is its error rate, the share of its samples judged real (higher: more convincing; 0.5 is chance
on a 50/50 mix); the real images' error rate is the share judged generated. Intervals: Wilson score
intervals of the binomial proportion (scipy.stats.binomtest).

Agreement: Spearman's rank correlation between -FD and a human score over the models both rank,
so +1 means FD orders the models exactly as people do.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

LAM = 1e-2     # ridge on the strengths (a N(0, 10^2) prior): negligible beside a few judgements each
N_BOOT = 1000  # bootstrap replicates


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_bradley_terry(wins, lam: float = LAM, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Strengths theta maximising the penalised Bradley-Terry log-likelihood (module docstring).

    `wins`: [K, K] counts (W[i, j] = times i was preferred to j), or [B, K, K] for B data sets at
    once; returns [K] or [B, K]. Newton's method on a strictly concave objective, steps clipped to 3
    per coordinate while far from the optimum."""
    W = np.asarray(wins, dtype=np.float64)
    single = W.ndim == 2
    W = W[None] if single else W
    B, K, _ = W.shape
    N = W + W.transpose(0, 2, 1)
    wins_i = W.sum(axis=2)
    theta = np.zeros((B, K))
    eye = np.eye(K)
    for _ in range(max_iter):
        p = _sigmoid(theta[:, :, None] - theta[:, None, :])  # [B, K, K] P(i beats j)
        grad = wins_i - (N * p).sum(axis=2) - lam * theta
        v = N * p * (1 - p)
        hess = v - eye * (v.sum(axis=2)[:, :, None] + lam)    # negative definite
        step = np.linalg.solve(hess, grad[..., None])[..., 0]  # Newton: theta - H^-1 g
        step = np.clip(step, -3.0, 3.0)
        theta = theta - step
        if np.abs(step).max() < tol:
            break
    return theta[0] if single else theta


def bootstrap_bradley_terry(wins, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
                            lam: float = LAM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta, lower, upper): the fit and percentile bootstrap intervals, judgements resampled."""
    W = np.asarray(wins, dtype=np.float64)
    K = W.shape[0]
    theta = fit_bradley_terry(W, lam)
    total = int(round(W.sum()))
    if total == 0:
        return theta, np.full(K, -np.inf), np.full(K, np.inf)
    rng = np.random.default_rng(seed)
    reps = rng.multinomial(total, (W / total).ravel(), size=n_boot).reshape(n_boot, K, K)
    boot = np.concatenate([fit_bradley_terry(reps[i:i + 250], lam) for i in range(0, n_boot, 250)])
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a], axis=0)
    return theta, lo, hi


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (scipy); (0, 1) when n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def win_matrix(judgements: list[dict], names: list[str]) -> np.ndarray:
    index = {s: i for i, s in enumerate(names)}
    W = np.zeros((len(names), len(names)))
    for j in judgements:
        if j["winner"] in index and j["loser"] in index:
            W[index[j["winner"]], index[j["loser"]]] += 1
    return W


def study_scores(study, include_careless: bool = False, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Scores of an open `Study`: Bradley-Terry strengths (pairwise) and error rates (real-vs-fake),
    each with a 95% interval and the number of judgements it rests on. Attention checks never count;
    careless raters' answers count only with `include_careless`."""
    js = study.judgements()
    careless = {j["rater"] for j in js if j["careless_rater"]}
    checks = [j for j in js if j["attention_check"]]
    counted = [j for j in js if not j["attention_check"] and (include_careless or not j["careless_rater"])]
    names = study.sources
    out = {"study": str(study.path), "data": study.meta["data"], "sources": study.meta["sources"], "raters": len({j["rater"] for j in js}),
           "careless_raters": len(careless), "include_careless": include_careless,
           "judgements": len(js), "attention_checks": len(checks),
           "attention_failed": sum(1 for j in checks if not j["correct"]),
           "excluded": sum(1 for j in js if not j["attention_check"] and j["careless_rater"] and not include_careless)}
    pw = [j for j in counted if j["task"] == "pairwise"]
    W = win_matrix(pw, names)
    theta, lo, hi = bootstrap_bradley_terry(W, n_boot=n_boot, seed=seed)
    out["pairwise"] = {"judgements": len(pw), "method": f"Bradley-Terry MLE, {n_boot} bootstrap replicates over "
                                                        "judgements, 95% percentile intervals",
                       "models": [{"name": s, "strength": float(theta[i]), "low": float(lo[i]), "high": float(hi[i]),
                                   "judgements": int(W[i].sum() + W[:, i].sum()), "wins": int(W[i].sum())}
                                  for i, s in enumerate(names)]}
    if "realfake" in study.tasks:
        rf = [j for j in counted if j["task"] == "realfake"]
        rows = []
        for s in names:
            mine = [j for j in rf if j["left_source"] == s]
            wrong = sum(1 for j in mine if j["choice"] == ("generated" if s == "real" else "real"))
            low, high = wilson(wrong, len(mine))
            rows.append({"name": s, "error": wrong / len(mine) if mine else float("nan"), "low": low, "high": high,
                         "judgements": len(mine), "errors": wrong})
        out["realfake"] = {"judgements": len(rf), "method": "error rate (model: judged real; real: judged "
                                                            "generated), 95% Wilson intervals", "models": rows}
    return out


def human_rankings(scores: dict) -> dict[str, dict[str, float]]:
    """{score name: {model: value}}, higher = better for people, over the generated models only."""
    out = {}
    pw = scores.get("pairwise") or {}
    if pw.get("judgements"):
        out["bradley_terry"] = {m["name"]: m["strength"] for m in pw["models"] if m["name"] != "real"}
    rf = scores.get("realfake") or {}
    if rf.get("judgements"):
        out["realfake_error"] = {m["name"]: m["error"] for m in rf["models"]
                                 if m["name"] != "real" and m["judgements"]}
    return out


def agreement(fd: dict[str, float], human: dict[str, float]) -> Optional[dict]:
    """Spearman rank correlation of -FD with a human score over the models both give a finite
    value (+1: FD orders them as people do); None with fewer than two such models."""
    from scipy.stats import spearmanr

    names = [k for k in human if k in fd and _finite(fd[k]) and _finite(human[k])]
    if len(names) < 2:
        return None
    rho, p = spearmanr([-float(fd[k]) for k in names], [float(human[k]) for k in names])
    return {"spearman": float(rho) if _finite(rho) else float("nan"), "p": float(p) if _finite(p) else float("nan"),
            "models": names}


def _finite(v) -> bool:
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def format_scores(scores: dict) -> str:
    """The scores as the CLI prints them."""
    lines = [f"study {scores['study']} ({scores['data']}): {scores['judgements']} judgements from "
             f"{scores['raters']} raters; {scores['attention_checks']} attention checks, "
             f"{scores['attention_failed']} failed; {scores['careless_raters']} careless raters "
             + ("(included)" if scores["include_careless"] else
                f"(their {scores['excluded']} answers excluded; --include-careless counts them)"
                if scores["careless_raters"] else "")]
    pw = scores["pairwise"]
    lines.append(f"\npairwise preference: Bradley-Terry strength (log-odds scale, mean 0), 95% bootstrap interval; "
                 f"{pw['judgements']} judgements")
    lines.append(f"  {'model':24} {'strength':>9} {'95% interval':>18} {'wins':>6} {'judged':>7}")
    for m in sorted(pw["models"], key=lambda m: -m["strength"]):
        strength = f"{m['strength']:.3f}" if m["judgements"] else "—"
        lines.append(f"  {m['name']:24} {strength:>9} {_iv(m['low'], m['high']):>18} {m['wins']:6d} "
                     f"{m['judgements']:7d}")
    rf = scores.get("realfake")
    if rf:
        lines.append(f"\nreal vs generated (HYPE-inf): error rate, 95% Wilson interval; {rf['judgements']} judgements")
        lines.append(f"  {'images':24} {'error':>9} {'95% interval':>18} {'errors':>6} {'judged':>7}")
        for m in rf["models"]:
            what = "real (judged generated)" if m["name"] == "real" else m["name"]
            err = "—" if not m["judgements"] else f"{m['error']:.3f}"
            lines.append(f"  {what:24} {err:>9} {_iv(m['low'], m['high']):>18} {m['errors']:6d} {m['judgements']:7d}")
    return "\n".join(lines)


def _iv(lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    return f"[{lo:.3f}, {hi:.3f}]"


def beside_metrics(scores: dict, sources: list[dict], families: list[dict], base) -> dict:
    """The study's scores keyed by the comparison's family names, and FD's agreement with each human
    score. A study model is matched to a family by its run directory, else by name."""
    from pathlib import Path

    by_run = {str((Path(base) / e["run"]).resolve()): e["name"] for e in families if e.get("run")}
    names = {e["name"] for e in families}
    rename = {}
    for s in sources:
        if s["run"] in by_run:
            rename[s["name"]] = by_run[s["run"]]
        elif s["name"] in names:
            rename[s["name"]] = s["name"]
    fd = {e["name"]: e.get("metrics", {}).get("fid") for e in families if e["status"] == "ok"}
    table = {}
    for key, part in (("pairwise", "strength"), ("realfake", "error")):
        for m in (scores.get(key) or {}).get("models", []):
            name = "real" if m["name"] == "real" else rename.get(m["name"])
            if name is not None:
                table.setdefault(name, {})[key] = m
    agree = {k: agreement(fd, {rename[n]: v for n, v in r.items() if n in rename})
             for k, r in human_rankings(scores).items()}
    return {"study": scores["study"], "judgements": scores["judgements"], "raters": scores["raters"],
            "careless_raters": scores["careless_raters"], "methods": {k: scores[k]["method"] for k in
                                                                       ("pairwise", "realfake") if scores.get(k)},
            "models": table, "agreement": agree, "unmatched": sorted(set(s["name"] for s in sources) - set(rename))}
