"""Shared machinery for filling in missing entries (imputation); the families compose it.

Conventions: `mask` is 1 (True) where an entry is known and 0 where it is missing, of x's
shape or broadcastable to it; missing entries of x may hold anything (NaN included) and are
never read. Every imputation ends with `keep_known`, so known entries come back bit for bit.

    conditional_gaussian   E[x_m | x_o] under N(mu, Sigma):  mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o),
                           the observed marginal log N(x_o; mu_o, Sigma_oo), and Cov[x_m | x_o]
    expected_scatter       EM's expected scatter of incomplete rows (the M-step of pca and gmm
                           learning from rows with missing entries: `fit_incomplete`)
    optimise_missing       gradient ascent on an objective over the missing entries only
                           (flows: log p(x); encoder families: over a latent code instead)
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .density import mvn_log_prob


def known_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The mask as a bool tensor of x's shape (True = known) on x's device."""
    return torch.as_tensor(mask, device=x.device).bool().expand_as(x)


def fill_missing(x: torch.Tensor, mask: torch.Tensor, value=0.0) -> torch.Tensor:
    """x with its missing entries replaced by `value` (a number or a tensor broadcastable to x), so
    no NaN placeholder reaches a network."""
    m = known_mask(mask, x)
    return torch.where(m, torch.nan_to_num(x), torch.as_tensor(value, dtype=x.dtype, device=x.device).expand_as(x))


def keep_known(x: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """The imputation's result: x where known, `filled` where missing (exact, no arithmetic)."""
    return torch.where(known_mask(mask, x), x, filled.to(x.dtype))


def conditional_gaussian(x: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor,
                         *, with_log_marginal: bool = False, with_missing_cov: bool = False):
    """The conditional Gaussian of the missing entries given the known ones, per row of x [N, D]:

        x ~ N(mu, Sigma),  o = known, m = missing
        E[x_m | x_o]   = mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o)
        Cov[x_m | x_o] = Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om
        log p(x_o)     = log N(x_o; mu_o, Sigma_oo)

    Rows sharing a mask pattern are solved together (one Cholesky per pattern). Returns the
    conditional mean completed with the known entries [N, D] (float64); with `with_log_marginal=True`
    also log p(x_o) [N]; with `with_missing_cov=True` also the conditional covariances, one per
    pattern as (rows, missing indices, Cov[x_m | x_o]) (what EM for incomplete data needs)."""
    x, mean, cov = x.double(), mean.double(), cov.double()
    m = known_mask(mask, x)
    out = torch.where(m, torch.nan_to_num(x), mean.expand_as(x)).clone()
    logp = x.new_zeros(len(x))
    blocks = []
    patterns, inverse = torch.unique(m, dim=0, return_inverse=True)
    for k, pat in enumerate(patterns):
        rows = (inverse == k).nonzero().flatten()
        o, mi = pat.nonzero().flatten(), (~pat).nonzero().flatten()
        if len(o) == 0:  # nothing known: the mean and the covariance, and log p of nothing is 0
            blocks.append((rows, mi, cov))
            continue
        L = torch.linalg.cholesky(cov[o][:, o])
        r = (x[rows][:, o] - mean[o]).T                                    # [|o|, n]
        a = torch.cholesky_solve(r, L)                                      # Sigma_oo^-1 (x_o - mu_o)
        if len(mi):
            out[rows[:, None], mi] = (mean[mi][:, None] + cov[mi][:, o] @ a).T
            if with_missing_cov:
                v = torch.linalg.solve_triangular(L, cov[o][:, mi], upper=False)   # L^-1 Sigma_om
                blocks.append((rows, mi, cov[mi][:, mi] - v.T @ v))
        if with_log_marginal:
            logp[rows] = mvn_log_prob(r.T, L)
    extra = (logp,) * with_log_marginal + (blocks,) * with_missing_cov
    return (out, *extra) if extra else out


def expected_scatter(filled: torch.Tensor, blocks, weights: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """EM's expected scatter about `mean` of incomplete rows (Little & Rubin 2002, ch. 11):

        sum_i w_i E[(x_i - mu)(x_i - mu)^T | x_i,o] = sum_i w_i (xhat_i - mu)(xhat_i - mu)^T
                                                      + sum_i w_i Cov[x_i,m | x_i,o]   (missing block)

    `filled` [N, D] and `blocks` from conditional_gaussian(..., with_missing_cov=True); `weights` [N]
    (responsibilities, or ones)."""
    d = filled - mean
    out = (d * weights[:, None]).T @ d
    for rows, mi, block in blocks:
        out[mi[:, None], mi] += weights[rows].sum() * block
    return out


def optimise_missing(objective: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                     mask: Optional[torch.Tensor] = None, *, steps: int = 200, lr: float = 0.05,
                     progress: bool = False, desc: str = "impute") -> torch.Tensor:
    """Maximise sum_i objective(v)_i by Adam over the free entries of `start` (those where
    mask == 0; all of them with mask=None, e.g. a latent code), the others held fixed:

        v_free <- v_free + Adam(grad_{v_free} objective(v)),   v = mask * start + (1 - mask) * v_free

    `objective(v)` returns one value per example [N] (a log-density, or a negative
    reconstruction error); each example's free entries only move its own value, so one
    optimiser serves the whole batch. Returns v (detached)."""
    start = start.detach()
    free = start.clone().requires_grad_(True)
    fixed = None if mask is None else torch.as_tensor(mask, device=start.device).bool().expand_as(start)
    opt = torch.optim.Adam([free], lr=lr)
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=desc, leave=False)
    with torch.enable_grad():
        for _ in it:
            v = free if fixed is None else torch.where(fixed, start, free)
            loss = -objective(v).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    v = free.detach()
    return v if fixed is None else torch.where(fixed, start, v)
