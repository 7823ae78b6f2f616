"""k-nearest-neighbour fidelity and diversity metrics between real features X [N, D] and
generated features Y [M, D].

    NND_k(x)  = distance from x to its k-th nearest neighbour in its own set (x itself excluded)
    B(x, r)   = ball of radius r around x;  manifold(X) = union_i B(X_i, NND_k(X_i))

    precision = (1/M) sum_j 1[Y_j in manifold(X)]                      fidelity
    recall    = (1/N) sum_i 1[X_i in manifold(Y)]                      diversity
    density   = 1/(k M) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]       fidelity, counts overlaps
    coverage  = (1/N) sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]     diversity, real balls only

`prdc` reproduces the `prdc` package (Naeem et al. 2020, "Reliable fidelity and diversity
metrics for generative models"): open balls (d < r), NND_k taken as the (k+1)-th smallest
entry of a row of the self-distance matrix whose diagonal is exactly 0 (so a duplicate point
counts as a neighbour, as there). `precision_recall` is Kynkäänniemi et al. 2019 ("Improved
precision and recall metric for assessing generative models"), k = 3, closed balls (d <= r)
as in their code. Two identical distributions give density ~1 and coverage ~1 - 2^-k
(Naeem et al.), while precision and recall stay below 1 in high dimension.

Distances are squared Euclidean in float64 (|a|^2 + |b|^2 - 2 a.b on row blocks), compared
with squared radii, so an N x M matrix is never held whole.
"""

from __future__ import annotations

import torch

from .errors import MetricError, check_features, same_dim

BLOCK_ELEMENTS = 2 ** 23  # entries of one distance block: 64 MB in float64


COPY_TOLERANCE = 1e-12  # relative: below this, |a|^2 + |b|^2 - 2 a.b is rounding noise of an exact copy


def _sq_dists(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 = |a_i|^2 + |b_j|^2 - 2 a_i.b_j for all pairs.

    Values within rounding of 0 (relative to |a|^2 + |b|^2) are set to exactly 0, so exact
    copies (a collapsed or memorising generator, duplicated data) are at distance 0 wherever
    the pair appears and ties with zero radii are decided exactly, not by rounding."""
    d = torch.addmm(b_sq[None, :], a, b.T, alpha=-2).add_(a_sq[:, None])
    scale = a_sq[:, None] + b_sq[None, :]
    return d.masked_fill_(d <= COPY_TOLERANCE * scale, 0.0)


def _rows(n_cols: int, block: int | None) -> int:
    return block or max(1, BLOCK_ELEMENTS // max(n_cols, 1))


def knn_radii(x: torch.Tensor, k: int, block: int | None = None) -> torch.Tensor:
    """Squared NND_k of every row of x [N, D] within x (self excluded), shape [N].

    The self-distance is set to exactly 0 and the (k+1)-th smallest value of each row is
    taken, as in prdc's `get_kth_value(distances, k + 1)`.
    """
    n = len(x)
    if not 0 < k < n:
        raise MetricError(f"k-NN radii: need 0 < k < number of samples (k={k}, n={n})")
    sq = (x * x).sum(1)
    rows = _rows(n, block)
    out = []
    for i in range(0, n, rows):
        d = _sq_dists(x[i:i + rows], x, sq[i:i + rows], sq)
        r = torch.arange(len(d), device=x.device)
        d[r, r + i] = 0.0
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


def _ball_counts(real: torch.Tensor, fake: torch.Tensor, k: int, closed: bool, block: int | None):
    """Per fake: how many real balls contain it; per real: in some fake ball? its ball holds a fake?"""
    r_real, r_fake = knn_radii(real, k, block), knn_radii(fake, k, block)
    inside = torch.le if closed else torch.lt
    real_sq, fake_sq = (real * real).sum(1), (fake * fake).sum(1)
    count = torch.zeros(len(fake), dtype=torch.int32, device=real.device)  # real balls holding fake_j
    in_fake_manifold = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    rows = _rows(len(fake), block)
    for i in range(0, len(real), rows):
        d = _sq_dists(real[i:i + rows], fake, real_sq[i:i + rows], fake_sq)
        in_real_ball = inside(d, r_real[i:i + rows, None])  # [real block, fake]: fake_j in B(real_i)
        count += in_real_ball.sum(0, dtype=torch.int32)  # int32: much faster than bool -> int64
        covered[i:i + rows] = in_real_ball.any(1)
        in_fake_manifold[i:i + rows] = inside(d, r_fake[None, :]).any(1)
    return count, in_fake_manifold, covered


def _pair(real, fake, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = check_features(real, "real features", min_rows=k + 1)
    y = check_features(fake, "fake features", min_rows=k + 1)
    same_dim(x, y, "prdc")
    return x.double(), y.to(x.device).double()


def prdc(real, fake, k: int = 5, block: int | None = None) -> dict:
    """Precision, recall, density and coverage (Naeem et al. 2020) of fake [M, D] against real [N, D].

    Same definitions and tie conventions as `prdc.compute_prdc(real, fake, nearest_k=k)`:
    see the module docstring. `block` = rows per distance block (default: ~8M entries).
    Returns floats {"precision", "recall", "density", "coverage"}.
    """
    x, y = _pair(real, fake, k)
    count, recalled, covered = _ball_counts(x, y, k, closed=False, block=block)
    return {"precision": float((count > 0).double().mean()), "recall": float(recalled.double().mean()),
            "density": float(count.sum().double() / (k * len(y))), "coverage": float(covered.double().mean())}


def precision_recall(real, fake, k: int = 3, block: int | None = None) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019), k = 3, closed balls:

        precision = (1/M) sum_j 1[exists i: ||Y_j - X_i|| <= NND_k(X_i)]
        recall    = (1/N) sum_i 1[exists j: ||X_i - Y_j|| <= NND_k(Y_j)]

    so precision_recall(real, fake)["precision"] == precision_recall(fake, real)["recall"].
    Returns floats {"precision", "recall"}.
    """
    x, y = _pair(real, fake, k)
    count, recalled, _ = _ball_counts(x, y, k, closed=True, block=block)
    return {"precision": float((count > 0).double().mean()), "recall": float(recalled.double().mean())}
