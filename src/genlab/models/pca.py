"""Probabilistic PCA (Tipping & Bishop 1999): the linear-Gaussian baseline, fitted in closed form.

    z ~ N(0, I_q),   x | z ~ N(W z + mu, sigma^2 I_D)   =>   x ~ N(mu, C),  C = W W^T + sigma^2 I

Maximum likelihood: with S = U diag(lambda) U^T the data covariance,
    sigma^2 = mean(lambda_{q+1..D}),   W = U_q (Lambda_q - sigma^2 I)^{1/2}.

It is unconditional: the `y` its methods take (the contract's signature) is ignored. It models vectors on
their own scale, as scikit-learn's PCA does; with standardise=true, x above stands for the standardised
columns (x - mean) / std of the training split (PCA of the correlation matrix: one noise variance then
suits columns in different units), and with log_columns=true for the table with its nonnegative columns
log-transformed (nn/log_columns.py); log p(x) adds those maps' log-determinant.
"""

from __future__ import annotations

import math

from typing import Optional

import torch

from ..data.spec import Dataset
from ..nn.imputation import conditional_gaussian, expected_scatter, fill_missing, keep_known
from ..params import Bool, Float, Int
from .base import GenerativeModel, register_model


@register_model("pca")
class PCA(GenerativeModel):
    description = "probabilistic PCA: linear-Gaussian baseline, closed-form fit, exact log-likelihood"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"latent_dim": Int(1, none=True), "min_variance": Float(0), "standardise": Bool()}
    likelihood_kind = "exact"

    @property
    def likelihood_support(self) -> str:
        """A density at the lattice points of quantised images (dequantised by evaluation)."""
        return "lattice" if self.spec.kind == "image" and self.spec.levels else "continuous"

    def __init__(self, spec, latent_dim: Optional[int] = None, min_variance: float = 1e-6, standardise: bool = False):
        super().__init__(spec)
        if standardise and spec.kind != "vector":
            raise ValueError("standardise=true is for vector data (tables, points); images stay on their scale")
        self.standardise = bool(standardise)
        if latent_dim is None:  # auto: 16 components, fewer for low-dimensional data
            latent_dim = min(16, spec.dim - 1)
        if not 1 <= latent_dim < spec.dim:
            raise ValueError(f"latent_dim must be in 1..{spec.dim - 1}")
        self.min_variance = min_variance
        d, q = spec.dim, latent_dim
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.zeros(d, q))  # U_q, orthonormal columns
        self.register_buffer("W", torch.zeros(d, q))
        self.register_buffer("noise_variance", torch.ones(()))
        self.register_buffer("explained_variance", torch.zeros(q))

    def players(self):
        return []  # nothing to optimise: see fit_closed_form

    def fit_closed_form(self, data: Dataset) -> bool:
        x = self._flat(data.train.to(self.mean.device)).double()
        mu = x.mean(0)
        self._fit_moments(mu, (x - mu).T @ (x - mu) / len(x))
        return True

    @torch.no_grad()
    def fit_incomplete(self, x, mask, y=None, *, max_iter: int = 100, tol: float = 1e-5) -> list[float]:
        """Learn from rows with missing entries (mask: 1 = known) by EM, from the current fit:

            E: xhat_i = E[x_i | x_i,o],  S = 1/N sum_i (xhat_i - mu)(xhat_i - mu)^T + Cov[x_i,m | x_i,o]
               (conditional_gaussian under C = W W^T + sigma^2 I)
            M: mu = mean_i xhat_i;  W, sigma^2 = the closed-form fit above with S as the covariance

        (Tipping & Bishop 1999's ML solution maximises E[log N(x; mu, C)], which depends on the data only
        through mu and S, so this is an exact EM.) Each round raises the mean observed-data log-likelihood
        (1/N) sum_i log N(x_i,o; mu_o, C_oo); stops when it rises by less than `tol`. Returns it per round."""
        u = self._flat(fill_missing(x, mask)).double()
        m = torch.as_tensor(mask, device=x.device).expand_as(x).reshape(len(x), -1).bool()
        history = []
        for _ in range(max_iter):
            filled, logp, blocks = conditional_gaussian(u, m, self.mean, self.covariance(), with_log_marginal=True,
                                                        with_missing_cov=True)
            history.append(float(logp.mean()))
            if len(history) > 1 and history[-1] - history[-2] < tol:
                break
            mu = filled.mean(0)
            self._fit_moments(mu, expected_scatter(filled, blocks, torch.ones_like(logp), mu) / len(u))
        return history

    def _fit_moments(self, mu: torch.Tensor, cov: torch.Tensor) -> None:
        """The ML fit of the module docstring from the mean and covariance of the data."""
        lam, U = torch.linalg.eigh(cov)  # ascending
        lam, U = lam.flip(0).clamp_min(0), U.flip(1)
        q = self.W.shape[1]
        s2 = lam[q:].mean().clamp_min(self.min_variance)
        self.mean.copy_(mu)
        self.components.copy_(U[:, :q])
        self.explained_variance.copy_(lam[:q])
        self.W.copy_(U[:, :q] * (lam[:q] - s2).clamp_min(0).sqrt())
        self.noise_variance.copy_(s2)

    def _flat(self, x):
        """x as the rows the Gaussian describes: flattened; log columns transformed (log_columns=true) and
        standardised (standardise=true)."""
        x = x.reshape(len(x), -1)
        return self.to_working(x) if self.standardise else self.to_features(x)

    def _unflat(self, t, shape):
        return (self.from_working(t) if self.standardise else self.from_features(t)).reshape(shape)

    def _log_det(self, x):
        return self.working_log_det(x) if self.standardise else self.features_log_det(x)

    def covariance(self) -> torch.Tensor:
        """C = W W^T + sigma^2 I (D x D)."""
        W = self.W.double()
        return W @ W.T + self.noise_variance.double() * torch.eye(len(W), dtype=W.dtype, device=W.device)

    def log_prob(self, x, y=None):
        """Exact log N(x; mu, W W^T + sigma^2 I) in nats, per example."""
        dist = torch.distributions.MultivariateNormal(self.mean.double(), covariance_matrix=self.covariance())
        return (dist.log_prob(self._flat(x).double()) + self._log_det(x).double()).float()

    def loss(self, x, y=None):
        return {"loss": -self.log_prob(x).mean()}

    def encode(self, x, y=None):
        """Posterior mean E[z | x] = M^{-1} W^T (x - mu), M = W^T W + sigma^2 I."""
        W = self.W
        M = W.T @ W + self.noise_variance * torch.eye(W.shape[1], device=W.device)
        return torch.linalg.solve(M, W.T @ (self._flat(x) - self.mean).T).T

    def decode(self, z, y=None):
        """E[x | z] = W z + mu, clipped to [0, 1] for images."""
        x = self._unflat(z @ self.W.T + self.mean, (len(z), *self.spec.shape))
        return x.clamp(0, 1) if self.spec.kind == "image" else x

    def reconstruct(self, x, y=None):
        """Orthogonal projection onto the principal subspace: U_q U_q^T (x - mu) + mu."""
        U = self.components
        r = self._unflat((self._flat(x) - self.mean) @ U @ U.T + self.mean, x.shape)
        return r.clamp(0, 1) if self.spec.kind == "image" else r

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, noise: bool = False):
        """z ~ N(0, I) -> W z + mu (+ sigma * eps with noise=True)."""
        self.condition(y, n, sample=True)  # an error if y is given: there is nothing to condition on
        z = torch.randn(n, self.W.shape[1], generator=generator, device=self.W.device)
        x = z @ self.W.T + self.mean
        if noise:
            x = x + self.noise_variance.sqrt() * torch.randn(x.shape, generator=generator, device=x.device)
        x = self._unflat(x, (n, *self.spec.shape))
        return x.clamp(0, 1) if self.spec.kind == "image" else x

    def anomaly_score(self, x, y=None):
        """-log p(x)."""
        return -self.log_prob(x)

    @torch.no_grad()
    def impute(self, x, mask, y=None, *, generator=None):
        """Exact conditional mean of the missing entries given the known ones (mask: 1 = known):

            x ~ N(mu, C),  C = W W^T + sigma^2 I
            E[x_m | x_o] = mu_m + C_mo C_oo^-1 (x_o - mu_o) = mu_m + W_m M_o^-1 W_o^T (x_o - mu_o),
            M_o = W_o^T W_o + sigma^2 I_q

        (the push-through identity: the posterior mean of z given the known entries only, decoded;
        one q x q solve per example). Images are clamped to [0, 1]; known entries are returned
        unchanged. `generator` is unused (the answer is deterministic)."""
        xf = self._flat(x).double()
        m = torch.as_tensor(mask, device=x.device).expand_as(x).reshape(len(x), -1).bool()
        W, mu, s2 = self.W.double(), self.mean.double(), self.noise_variance.double()
        Wo = W * m[:, :, None]                                             # W with unknown rows zeroed
        M = Wo.transpose(1, 2) @ Wo + s2 * torch.eye(W.shape[1], dtype=W.dtype, device=W.device)
        r = fill_missing(xf - mu, m)                                       # x_o - mu_o, zeros elsewhere
        z = torch.linalg.solve(M, (Wo.transpose(1, 2) @ r[:, :, None]))[..., 0]
        filled = self._unflat(mu + z @ W.T, x.shape).float()
        if self.spec.kind == "image":
            filled = filled.clamp(0, 1)
        return keep_known(x, mask, filled)

    @torch.no_grad()
    def denoise_gaussian(self, x, sigma: float, y=None, *, generator=None):
        """Posterior mean of the clean x given x~ = x + sigma eps, eps ~ N(0, I) (images: data scale;
        vectors: sigma on the standardised scale, i.e. noise covariance sigma^2 diag(scale^2)),
        under the model x ~ N(mu, C): the Wiener filter

            E[x | x~] = mu + C (C + sigma^2 I)^-1 (x~ - mu)
                      = mu + U diag(l_i / (l_i + sigma^2)) U^T (x~ - mu),

        with C's eigenvalues l_i = lambda_i on the principal subspace U_q and sigma_pca^2 on its
        complement (vectors: the direct solve with the diagonal noise covariance). Images are
        clamped to [0, 1]."""
        self.require_linear_scale()
        d = self._flat(x).double() - self.mean.double()
        if self.spec.kind == "vector":  # noise of std sigma on the standardised scale: sigma * scale here
            C = self.covariance()
            scale = torch.ones_like(self.data_scale) if self.standardise else self.data_scale
            noise = torch.diag((sigma * scale.double()).pow(2))
            return self._unflat(self.mean.double() + d @ torch.linalg.solve(C + noise, C), x.shape).float()
        U, s2 = self.components.double(), self.noise_variance.double()
        lam = self.W.double().pow(2).sum(0) + s2
        rest = s2 / (s2 + sigma ** 2)
        proj = d @ U
        out = self.mean.double() + rest * d + (proj * (lam / (lam + sigma ** 2) - rest)) @ U.T
        out = out.reshape(x.shape).float()
        return out.clamp(0, 1) if self.spec.kind == "image" else out

    def explained_variance_ratio(self) -> torch.Tensor:
        total = self.explained_variance.sum() + self.noise_variance * (self.spec.dim - len(self.explained_variance))
        return self.explained_variance / total

    def __repr__(self):
        return f"PCA(latent_dim={self.W.shape[1]}, noise_std={math.sqrt(float(self.noise_variance)):.3g})"
