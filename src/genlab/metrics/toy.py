"""Sample-based distances for 2-D and other low-dimensional sets, and the KL divergence when the
true density is known (toy data sets carry `log_density`).

    mmd                 unbiased MMD^2 with a sum of Gaussian (RBF) kernels
    sliced_wasserstein  SW_p over random 1-D projections, exact 1-D W_p between empirical quantiles
    kl_estimate         KL(p || q) = E_p[log p - log q], Monte Carlo on samples of p
"""

from __future__ import annotations

import torch

from .errors import MetricError, as_tensor, check_features, same_dim

#: default RBF bandwidths, as multiples of the median pairwise distance of the reference set x
MEDIAN_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def median_distance(x: torch.Tensor, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance within x (on a seeded subsample of at most max_points rows)."""
    x = check_features(x, "x", min_rows=2).double()
    if len(x) > max_points:
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_points]
        x = x[idx.to(x.device)]
    return float(torch.pdist(x).median())


def _rbf_sum(a: torch.Tensor, b: torch.Tensor, bandwidths, block: int) -> torch.Tensor:
    """sum_{i, j} sum_s exp(-||a_i - b_j||^2 / (2 s^2)), over row blocks of a (a 0-dim tensor)."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, len(a), block):
        d2 = torch.cdist(a[i:i + block], b, compute_mode="donot_use_mm_for_euclid_dist").pow_(2)
        for s in bandwidths:
            total += torch.exp(d2 / (-2.0 * s * s)).sum()
    return total


def mmd(x, y, bandwidths=None, block: int = 2048) -> float:
    """Unbiased MMD^2 between samples x [m, d] and y [n, d] (Gretton et al. 2012) with the kernel

        k(a, b) = sum_s exp(-||a - b||^2 / (2 s^2)),   s in bandwidths

    bandwidths=None uses MEDIAN_SCALES (0.25, 0.5, 1, 2, 4) times the median pairwise distance
    of x, so pass the real/reference set as x: every model compared against the same x then
    gets the same kernel. Several scales make the kernel sensitive to both coarse and fine
    mismatch. The estimate is ~0 (it can be slightly negative) when x and y share a
    distribution and positive otherwise. Float64, computed on row blocks.
    """
    x, y = check_features(x, "x", min_rows=2).double(), check_features(y, "y", min_rows=2).double()
    same_dim(x, y, "mmd")
    y = y.to(x.device)
    if bandwidths is None:
        h = median_distance(x)
        if h <= 0:
            raise MetricError("mmd: the reference set x has median pairwise distance 0; pass bandwidths")
        bandwidths = [c * h for c in MEDIAN_SCALES]
    bandwidths = [float(s) for s in bandwidths]
    if not bandwidths or min(bandwidths) <= 0:
        raise MetricError(f"mmd: bandwidths must be positive, got {bandwidths}")
    m, n, nb = len(x), len(y), len(bandwidths)
    # kernel sums stand in for the matrices: diag(k_xx) = diag(k_yy) = nb (cdist gives exact zeros)
    kxx = _rbf_sum(x, x, bandwidths, block)
    kyy = _rbf_sum(y, y, bandwidths, block)
    kxy = _rbf_sum(x, y, bandwidths, block)
    value = (kxx - m * nb) / (m * (m - 1)) + (kyy - n * nb) / (n * (n - 1)) - 2 * kxy / (m * n)
    return float(value)


def sliced_wasserstein(x, y, n_projections: int = 256, seed: int = 0, p: int = 2) -> float:
    """Sliced p-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015):

        SW_p(mu, nu) = ( E_{theta ~ U(S^{d-1})} W_p^p(theta # mu, theta # nu) )^{1/p}

    estimated with n_projections random unit directions (seeded CPU generator). Each 1-D W_p
    is exact between the empirical distributions of the projections:

        W_p^p = int_0^1 |F^{-1}(t) - G^{-1}(t)|^p dt

    with F^{-1}, G^{-1} the empirical quantile functions (step functions with breaks at i/m
    and j/n), so m != n is handled; for m == n it is the mean |sorted x - sorted y|^p.
    Translating a set by t gives SW_2^2 = E[(theta.t)^2] = |t|^2 / d.
    """
    x, y = check_features(x, "x", min_rows=1).double(), check_features(y, "y", min_rows=1).double()
    same_dim(x, y, "sliced_wasserstein")
    if n_projections < 1 or p < 1:
        raise MetricError(f"sliced_wasserstein: needs n_projections >= 1 and p >= 1 (got {n_projections}, {p})")
    dev, m, n = x.device, len(x), len(y)
    theta = torch.randn(x.shape[1], n_projections, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(dev)
    px, py = (x @ theta).sort(0).values, (y.to(dev) @ theta).sort(0).values  # [m, L], [n, L]
    # pieces of (0, 1] on which both quantile functions are constant
    t = torch.cat([torch.arange(1, m + 1, device=dev, dtype=torch.float64) / m,
                   torch.arange(1, n + 1, device=dev, dtype=torch.float64) / n])
    t = torch.unique(t)
    width = torch.diff(t, prepend=t.new_zeros(1))
    mid = t - width / 2
    ix = (mid * m).floor().long().clamp_(max=m - 1)
    iy = (mid * n).floor().long().clamp_(max=n - 1)
    wp = ((px[ix] - py[iy]).abs().pow(p) * width[:, None]).sum(0)  # W_p^p per direction
    return float(wp.mean().pow(1.0 / p))


def kl_estimate(model_log_prob, true_log_density) -> float:
    """Monte-Carlo estimate of KL(p || q) from x_i ~ p (the true distribution), in nats:

        KL(p || q) = E_p[log p(x) - log q(x)]  ~  (1/N) sum_i (log p(x_i) - log q(x_i))

    `model_log_prob` = log q(x_i) from the model, `true_log_density` = log p(x_i) from the
    data set, both [N] on the same samples. The average of i.i.d. terms is unbiased for the
    KL (given exact log q); equivalently it is the model's test NLL, E_p[-log q], minus the
    true entropy H(p) = E_p[-log p]. Unlike NLL it is 0 for a perfect model. With a bound
    or estimate of log q (ELBO, IWAE) it inherits that bias (a lower bound on log q gives an
    upper bound on KL). Its standard error is std(log p - log q) / sqrt(N).
    """
    q, p = as_tensor(model_log_prob).double().flatten(), as_tensor(true_log_density).double().flatten()
    if q.shape != p.shape or len(q) == 0:
        raise MetricError(f"kl_estimate: need two non-empty [N] vectors of equal length "
                          f"(got {tuple(q.shape)} and {tuple(p.shape)})")
    diff = p - q.to(p.device)
    if not torch.isfinite(diff).all():
        raise MetricError("kl_estimate: log-densities contain NaN or Inf (zero model density on a sample?)")
    return float(diff.mean())
