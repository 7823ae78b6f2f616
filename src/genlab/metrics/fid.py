"""Fréchet distance (FID, Heusel et al. 2017) and kernel distance (KID, Binkowski et al. 2018)
between two sets of features, e.g. Inception pool features of real and generated images.

    FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})        Gaussians fitted to each set
    KID = MMD_u^2 with k(x, y) = (gamma x.y + coef0)^degree, averaged over random subsets

Conventions follow pytorch-fid (unbiased covariance, scipy sqrtm, the eps offset and the
imaginary-part check) and torch-fidelity / torchmetrics for KID (degree 3, gamma = 1/D,
coef0 = 1, 100 subsets of 1000, population std over subsets). All statistics are float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from .errors import MetricError, check_features, same_dim


def gaussian_stats(feats, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of features [N, D], in float64 on the features' device:

        mu = (1/N) sum_i f_i,    S = 1/(N - 1) sum_i (f_i - mu)(f_i - mu)^T

    Two passes over row chunks, so N x D is never copied to float64 at once.
    """
    x = check_features(feats, "features", min_rows=2)
    n, d = x.shape
    mu = torch.zeros(d, dtype=torch.float64, device=x.device)
    for b in x.split(chunk):
        mu += b.double().sum(0)
    mu /= n
    sigma = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for b in x.split(chunk):
        c = b.double() - mu
        sigma += c.T @ c
    return mu, sigma / (n - 1)


def _np64(a, name: str) -> np.ndarray:
    a = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise MetricError(f"Fréchet distance: {name} contains NaN or Inf")
    return a


def frechet_distance_report(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, imag_tol: float = 1e-3) -> dict:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), with diagnostics:

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})

    Guards as pytorch-fid: if sqrtm(sigma1 sigma2) is not finite (a singular product), retry
    with sigma_i + eps I (the traces keep the original sigmas). sqrtm may come back complex
    from rounding; if any diagonal entry (all that the trace uses) has |imag| > imag_tol the
    result is not trusted and MetricError is raised, else the real part is taken.

    Returns {"value": float, "offset_applied": bool, "max_imag": largest |imag| anywhere in
    the square root (pytorch-fid's diagnostic; 0.0 if it was real), "eps": eps}.
    """
    mu1, mu2 = np.atleast_1d(_np64(mu1, "mu1")), np.atleast_1d(_np64(mu2, "mu2"))
    s1, s2 = np.atleast_2d(_np64(sigma1, "sigma1")), np.atleast_2d(_np64(sigma2, "sigma2"))
    d = mu1.shape[0]
    if mu1.shape != mu2.shape or s1.shape != (d, d) or s2.shape != (d, d):
        raise MetricError(f"Fréchet distance: shapes do not match (mu {mu1.shape}, {mu2.shape}; "
                          f"sigma {s1.shape}, {s2.shape})")
    diff = mu1 - mu2
    offset_applied = False
    with warnings.catch_warnings():  # "matrix is singular" warnings: the finiteness check decides
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = eps * np.eye(d)
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
            offset_applied = True
    if not np.isfinite(covmean).all():
        raise MetricError(f"Fréchet distance: sqrtm(sigma1 sigma2) is not finite even with eps={eps} added")
    max_imag = 0.0
    if np.iscomplexobj(covmean):
        max_imag = float(np.abs(covmean.imag).max())
        diag_imag = float(np.abs(np.diagonal(covmean).imag).max())
        if diag_imag > imag_tol:
            raise MetricError(f"Fréchet distance: sqrtm(sigma1 sigma2) has an imaginary component "
                              f"{max_imag:.3g} (diagonal {diag_imag:.3g} > {imag_tol}); covariances not PSD?")
        covmean = covmean.real
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    return {"value": float(value), "offset_applied": offset_applied, "max_imag": max_imag, "eps": eps}


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2}); see frechet_distance_report."""
    return frechet_distance_report(mu1, sigma1, mu2, sigma2, eps)["value"]


def fid_from_features(f1, f2) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


# -- KID ----------------------------------------------------------------------------------
def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> torch.Tensor:
    """k(x, y) = (gamma x.y + coef0)^degree for all pairs; gamma = 1/D by default."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    c = torch.tensor(coef0, dtype=x.dtype, device=x.device)
    return torch.addmm(c, x, y.T, alpha=gamma).pow_(degree)  # in place: one N x M buffer


def mmd2_unbiased(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 from kernel matrices of x [m] and y [n] (Gretton et al. 2012, eq. 3):

        MMD_u^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
                  - 2 sum_{i, j} k(x_i, y_j) / (m n)

    It can be negative; its expectation is MMD^2 >= 0 (= 0 iff the distributions agree
    for a characteristic kernel).
    """
    m, n = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return xx + yy - 2 * k_xy.sum() / (m * n)


def kid_report(f1, f2, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
               gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> dict:
    """Kernel Inception Distance (Binkowski et al. 2018) with its protocol.

    For each of `subsets` rounds draw `subset_size` rows of each set without replacement and
    compute MMD_u^2 with the polynomial kernel (gamma x.y + coef0)^degree, gamma = 1/D by
    default; report the mean and the population std over rounds (as torch-fidelity and
    torchmetrics). The subsets come from a CPU torch.Generator seeded with `seed`.

    If a set has fewer rows than `subset_size`, the size is clipped to min(n1, n2) and
    `clipped` is True. The smaller set is then used whole in every round, so `std` only
    reflects resampling of the larger one; when n1 == n2 every round sees all the data,
    `std` is 0 and `mean` is the full-sample MMD_u^2 (still unbiased, but with no spread).

    Returns {"mean", "std", "subsets", "subset_size", "subset_size_requested", "clipped",
             "degree", "gamma", "coef0", "seed"}.
    """
    x, y = check_features(f1, "kid f1", min_rows=2), check_features(f2, "kid f2", min_rows=2)
    same_dim(x, y, "kid")
    if subsets < 1 or subset_size < 2:
        raise MetricError(f"kid: needs subsets >= 1 and subset_size >= 2 (got {subsets}, {subset_size})")
    y = y.to(x.device)
    size = min(subset_size, len(x), len(y))
    gamma = 1.0 / x.shape[1] if gamma is None else float(gamma)
    g = torch.Generator().manual_seed(seed)

    def k(u, v):
        return polynomial_kernel(u, v, degree, gamma, coef0)

    values = []
    for _ in range(subsets):
        a = x[torch.randperm(len(x), generator=g)[:size].to(x.device)].double()
        b = y[torch.randperm(len(y), generator=g)[:size].to(x.device)].double()
        values.append(mmd2_unbiased(k(a, a), k(b, b), k(a, b)))
    v = torch.stack(values)
    return {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "subsets": subsets,
            "subset_size": size, "subset_size_requested": subset_size, "clipped": size < subset_size,
            "degree": degree, "gamma": gamma, "coef0": coef0, "seed": seed}


def kid(f1, f2, subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
        coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of KID over random subsets; see kid_report for the protocol and clipping."""
    r = kid_report(f1, f2, subsets, subset_size, degree, gamma, coef0, seed)
    return r["mean"], r["std"]
