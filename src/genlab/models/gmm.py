"""Gaussian mixture model: the classical density baseline, fitted by EM (scikit-learn).

    p(x) = sum_c pi_c N(x; mu_c, Sigma_c)

    log p(x) = logsumexp_c [ log pi_c - D/2 log 2 pi + log det P_c - 1/2 || P_c^T (x - mu_c) ||^2 ]

where P_c is the Cholesky factor of the precision, Sigma_c^-1 = P_c P_c^T (scikit-learn's
`precisions_cholesky_`; a vector for diag, a scalar for spherical, one matrix for tied).
The fit is scikit-learn's `GaussianMixture` (`fit_closed_form`, seeded from the run); its
weights, means and precision Cholesky factors are kept as float64 buffers, so the model saves
to safetensors and reloads exactly, and `log_prob` needs no scikit-learn.

Images are flattened and modelled on [0, 1] as they are (a density evaluated at the lattice
points x = k / (L - 1): `likelihood_support = "lattice"`; evaluation dequantises it, see
metrics/evaluate.py); samples are clamped to [0, 1]. Vectors are modelled standardised, and
log_prob is the density of the data (the standardisation's log-det included).

conditional=true fits one mixture per class: log_prob(x, y) uses the class's mixture, and
y=None marginalises over classes with the training data's class frequencies,
log p(x) = logsumexp_k [log pi(k) + log p(x | k)].
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..data.spec import Dataset
from ..params import Int, Float, OneOf, Bool
from ..errors import ConfigError
from ..nn.imputation import conditional_gaussian, expected_scatter, fill_missing, keep_known
from .base import GenerativeModel, register_model

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
LOG_2PI = math.log(2 * math.pi)
AUTO_FULL_MAX_DIM = 256  # covariance_type="auto": full up to this dimension, diag above (MNIST: 784)


@register_model("gmm")
class GMM(GenerativeModel):
    description = "Gaussian mixture: EM fit (scikit-learn), exact log-likelihood, one mixture per class"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"n_components": Int(1), "covariance_type": OneOf("auto", "full", "tied", "diag", "spherical"),
                     "reg_covar": Float(0, none=True), "max_iter": Int(1), "n_init": Int(1),
                     "init_params": OneOf("kmeans", "k-means++", "random", "random_from_data"), "conditional": Bool()}
    likelihood_kind = "exact"

    def __init__(self, spec, n_components: int = 10, covariance_type: str = "auto",
                 reg_covar: Optional[float] = None, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", conditional: bool = False):
        super().__init__(spec)
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ConfigError(f"gmm: n_components must be a positive integer, got {n_components!r}")
        if covariance_type == "auto":
            covariance_type = "full" if spec.dim <= AUTO_FULL_MAX_DIM else "diag"
        if covariance_type not in COVARIANCE_TYPES:
            raise ConfigError(f"gmm: covariance_type must be auto, {', '.join(COVARIANCE_TYPES)}; "
                              f"got {covariance_type!r}")
        if reg_covar is None:  # quantised images: the variance of a dequantisation bin, 1 / (12 (L-1)^2)
            reg_covar = 1 / (12 * (spec.levels - 1) ** 2) if spec.kind == "image" and spec.levels else 1e-6
        if not reg_covar >= 0:
            raise ConfigError(f"gmm: reg_covar must be >= 0, got {reg_covar!r}")
        if max_iter < 1 or n_init < 1:
            raise ConfigError("gmm: max_iter and n_init must be >= 1")
        if init_params not in ("kmeans", "k-means++", "random", "random_from_data"):
            raise ConfigError(f"gmm: init_params must be kmeans, k-means++, random or random_from_data; "
                              f"got {init_params!r}")
        self.covariance_type, self.reg_covar = covariance_type, float(reg_covar)
        self.max_iter, self.n_init, self.init_params = max_iter, n_init, init_params
        K = spec.num_classes if conditional else 1  # one mixture per class
        C, D = n_components, spec.dim
        f64 = dict(dtype=torch.float64)
        chol_shape = {"full": (K, C, D, D), "tied": (K, D, D), "diag": (K, C, D), "spherical": (K, C)}
        self.register_buffer("class_log_prior", torch.full((K,), -math.log(K), **f64))
        self.register_buffer("log_weights", torch.full((K, C), -math.log(C), **f64))
        self.register_buffer("means", torch.zeros(K, C, D, **f64))
        self.register_buffer("precisions_cholesky", torch.ones(chol_shape[covariance_type], **f64))

    @property
    def likelihood_support(self) -> str:
        """What log_prob is over: a density evaluated at the lattice points of quantised images,
        a density of continuous data otherwise (see metrics/evaluate.py)."""
        return "lattice" if self.spec.kind == "image" and self.spec.levels else "continuous"

    # -- fitting ---------------------------------------------------------------------------
    def players(self):
        return []  # nothing to optimise by gradient: see fit_closed_form

    def fit_closed_form(self, data: Dataset) -> bool:
        """EM per class (or once), seeded from torch's generator (which the run seeds)."""
        from sklearn.mixture import GaussianMixture

        x = self.to_working(data.train.to(self.means.device)).flatten(1).double().cpu().numpy()
        K, C = self.log_weights.shape
        labels = data.train_labels
        if K > 1:
            counts = torch.bincount(labels, minlength=K).double()
            if (counts < C).any():
                k = int((counts < C).nonzero()[0])
                raise ConfigError(f"gmm: class {k} has {int(counts[k])} training examples, fewer than "
                                  f"n_components={C}")
            self.class_log_prior.copy_((counts / counts.sum()).log())
        elif len(x) < C:
            raise ConfigError(f"gmm: {len(x)} training examples, fewer than n_components={C}")
        seed = int(torch.randint(0, 2**31 - 1, ()))
        for k in range(K):
            xk = x if K == 1 else x[(labels == k).numpy()]
            gm = GaussianMixture(C, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                                 max_iter=self.max_iter, n_init=self.n_init, init_params=self.init_params,
                                 random_state=seed + k).fit(xk)
            as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=self.means.device)
            self.log_weights[k] = as_t(gm.weights_).log()
            self.means[k] = as_t(gm.means_)
            self.precisions_cholesky[k] = as_t(gm.precisions_cholesky_)
        return True

    # -- the mixture ------------------------------------------------------------------------
    def _flat(self, x) -> torch.Tensor:
        return self.to_working(x.to(self.means.device)).reshape(len(x), -1).double()

    def component_log_prob(self, x, y=None) -> torch.Tensor:
        """log pi_c + log N(x; mu_c, Sigma_c) in the working scale, [N, K, C] (K = 1 unless
        conditional); with labels y, [N, 1, C] for each example's class."""
        u = self._flat(x)                                              # [N, D]
        K, C = self.log_weights.shape
        if y is None:
            return torch.stack([self._mixture_terms(u, k) for k in range(K)], 1)
        out = u.new_empty(len(u), 1, C)
        for k in y.unique().tolist():
            m = y == k
            out[m, 0] = self._mixture_terms(u[m], k)
        return out

    def _mixture_terms(self, u: torch.Tensor, k: int) -> torch.Tensor:
        """[N, C]: log pi_c - D/2 log 2 pi + log det P_c - 1/2 |P_c^T (u - mu_c)|^2 for class k's mixture."""
        D, t = u.shape[1], self.covariance_type
        P, diff = self.precisions_cholesky[k], u[:, None, :] - self.means[k]   # diff: [N, C, D]
        if t == "full":      # P: [C, D, D]
            z, logdet = torch.einsum("ncd,cde->nce", diff, P), P.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        elif t == "tied":    # P: [D, D]
            z, logdet = diff @ P, P.diagonal().log().sum()
        elif t == "diag":    # P: [C, D]
            z, logdet = diff * P, P.log().sum(-1)
        else:                # spherical, P: [C]
            z, logdet = diff * P[:, None], D * P.log()
        return self.log_weights[k] - 0.5 * (D * LOG_2PI + z.pow(2).sum(-1)) + logdet

    @torch.no_grad()
    def log_prob(self, x, y=None, *, batch_size: int = 1000):
        """Exact log p(x | y) in nats (float32), the equation in the module docstring; a
        conditional model given y=None returns log p(x) = logsumexp_k log pi(k) p(x | k) with
        the training class frequencies pi(k)."""
        y = self.condition(y, len(x))
        out = []
        for i in range(0, len(x), batch_size):
            yb = None if y is None else y[i:i + batch_size]
            lp = self.component_log_prob(x[i:i + batch_size], yb)     # [n, K, C]
            prior = 0 if yb is not None else self.class_log_prior[:, None]
            out.append(torch.logsumexp((lp + prior).flatten(1), 1))
        return (torch.cat(out) + self.working_log_det(x).double()).float()

    def loss(self, x, y=None):
        return {"loss": -self.log_prob(x, y if self.conditional else None).mean()}

    def anomaly_score(self, x, y=None):
        """-log p(x | y) in nats (higher = more anomalous)."""
        return -self.log_prob(x, y)

    @torch.no_grad()
    def impute(self, x, mask, y=None, *, generator=None, batch_size: int = 500):
        """Exact conditional mean of the missing entries x_m given the known ones x_o (mask: 1 = known)
        under the mixture (its conditional is again a mixture):

            p(x_m | x_o) = sum_c r_c(x_o) N(x_m; mu_c,m + S_c,mo S_c,oo^-1 (x_o - mu_c,o), ...)
            r_c(x_o)     = pi_c N(x_o; mu_c,o, S_c,oo) / sum_c' pi_c' N(x_o; mu_c',o, S_c',oo)
            E[x_m | x_o] = sum_c r_c(x_o) (mu_c,m + S_c,mo S_c,oo^-1 (x_o - mu_c,o))

        (diag / spherical covariances: the conditional mean of a component is mu_c,m itself).
        With labels y the class's mixture is used; a conditional model given y=None mixes all
        classes' components with the training class frequencies. Computed on the working scale;
        images are clamped to [0, 1]; known entries are returned unchanged."""
        y = self.condition(y, len(x))
        outs = []
        for i in range(0, len(x), batch_size):
            xb, mb = x[i:i + batch_size], torch.as_tensor(mask, device=x.device).expand_as(x)[i:i + batch_size]
            yb = None if y is None else y[i:i + batch_size]
            outs.append(self._impute_batch(xb, mb, yb))
        return torch.cat(outs)

    def _impute_batch(self, x, mask, y):
        m = mask.reshape(len(x), -1).bool().to(self.means.device)
        u = fill_missing(self._flat(fill_missing(x, mask)), m)           # working scale, missing -> 0
        K, C, D = self.means.shape
        logr = u.new_full((len(u), K, C), -math.inf)
        cmean = u.new_zeros(len(u), K, C, D)
        for k in (range(K) if y is None else y.unique().tolist()):
            rows = torch.arange(len(u), device=u.device) if y is None else (y == k).nonzero().flatten()
            prior = self.class_log_prior[k] if y is None else 0.0
            for c in range(C):
                lp, mean_c = self._observed_component(u[rows], m[rows], k, c)
                logr[rows, k, c] = prior + self.log_weights[k, c] + lp
                cmean[rows, k, c] = mean_c
        r = torch.softmax(logr.flatten(1), 1).reshape(len(u), K, C, 1)
        filled = (r * cmean).sum((1, 2))
        out = self.from_working(filled.float().reshape(x.shape))
        if self.spec.kind == "image":
            out = out.clamp(0, 1)
        return keep_known(x, mask, out)

    def _observed_component(self, u, m, k, c):
        """(log N(u_o; mu_o, S_oo) [n], E[u | u_o] [n, D]) for component c of class k's mixture."""
        t, mu, P = self.covariance_type, self.means[k, c], self.precisions_cholesky[k]
        if t in ("diag", "spherical"):
            p = P[c] if t == "diag" else P[c].expand(len(mu))              # 1 / standard deviations
            z = (u - mu) * p * m
            lp = (m * p.log()).sum(1) - 0.5 * (z.pow(2).sum(1) + m.sum(1) * LOG_2PI)
            return lp, torch.where(m, u, mu)
        out, lp = conditional_gaussian(u, m, mu, self._covariance(k, c), with_log_marginal=True)
        return lp, out

    def _covariance(self, k: int, c: int) -> torch.Tensor:
        """Sigma_c of class k's mixture as a D x D matrix, whatever the covariance type."""
        t, P, D = self.covariance_type, self.precisions_cholesky[k], self.means.shape[-1]
        if t in ("full", "tied"):
            Pc = P[c] if t == "full" else P                                # Sigma^-1 = P P^T
            return torch.cholesky_inverse(torch.linalg.cholesky(Pc @ Pc.T))
        var = P[c].pow(-2) if t == "diag" else P[c].pow(-2).expand(D)
        return torch.diag(var)

    @torch.no_grad()
    def fit_incomplete(self, x, mask, y=None, *, max_iter: int = 100, tol: float = 1e-5) -> list[float]:
        """Learn from rows with missing entries (mask: 1 = known) by EM, from the current fit
        (Ghahramani & Jordan 1994; Little & Rubin 2002, ch. 11):

            E: r_ic = pi_c N(x_i,o; mu_c,o, S_c,oo) / sum_c' pi_c' N(x_i,o; mu_c',o, S_c',oo),
               xhat_ic = E_c[x_i | x_i,o]                              (conditional_gaussian)
            M: N_c = sum_i r_ic,  pi_c = N_c / N,  mu_c = sum_i r_ic xhat_ic / N_c,
               S_c = 1/N_c sum_i r_ic [(xhat_ic - mu_c)(xhat_ic - mu_c)^T + Cov_c[x_i,m | x_i,o]] + reg_covar I

        with S_c put in the covariance type's form (its diagonal; its mean variance; for tied the
        N_c-weighted average over components): the constrained M-steps, as scikit-learn's. On the working
        scale; a conditional model fits each class's mixture to that class's rows (labels y). Each round
        raises the mean observed-data log-likelihood (1/N) sum_i log p(x_i,o); stops when it rises by less
        than `tol`. Returns it per round."""
        K, C, D = self.means.shape
        y = self.condition(y, len(x)) if K > 1 else None
        if K > 1 and y is None:
            raise ConfigError("gmm: a conditional mixture learns from labelled rows; give their labels")
        m = torch.as_tensor(mask, device=x.device).expand_as(x).reshape(len(x), -1).bool().to(self.means.device)
        u = fill_missing(self._flat(fill_missing(x, mask)), m)
        history = []
        for _ in range(max_iter):
            total = 0.0
            for k in range(K):
                rows = slice(None) if y is None else (y.to(u.device) == k)
                uk, mk = u[rows], m[rows]
                logr, filled, blocks = uk.new_empty(len(uk), C), [], []
                for c in range(C):
                    f, lp, b = conditional_gaussian(uk, mk, self.means[k, c], self._covariance(k, c),
                                                    with_log_marginal=True, with_missing_cov=True)
                    logr[:, c] = self.log_weights[k, c] + lp
                    filled.append(f)
                    blocks.append(b)
                ll = torch.logsumexp(logr, 1)
                total += float(ll.sum())
                self._m_step(k, (logr - ll[:, None]).exp(), filled, blocks)
            history.append(total / len(u))
            if len(history) > 1 and history[-1] - history[-2] < tol:
                break
        return history

    def _m_step(self, k: int, r: torch.Tensor, filled: list, blocks: list) -> None:
        """The M-step of fit_incomplete for class k's mixture (responsibilities r [N, C])."""
        Nc = r.sum(0) + 10 * torch.finfo(r.dtype).eps                       # as scikit-learn
        self.log_weights[k] = (Nc / Nc.sum()).log()
        scatter = []
        for c in range(len(Nc)):
            mu = (r[:, c, None] * filled[c]).sum(0) / Nc[c]
            self.means[k, c] = mu
            scatter.append(expected_scatter(filled[c], blocks[c], r[:, c], mu) / Nc[c])
        S, t = torch.stack(scatter), self.covariance_type
        eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
        if t in ("full", "tied"):
            S = S if t == "full" else (Nc[:, None, None] * S).sum(0) / Nc.sum()
            L = torch.linalg.cholesky(S + self.reg_covar * eye)            # P = L^-T: Sigma^-1 = P P^T
            self.precisions_cholesky[k] = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False).mT
        else:
            var = S.diagonal(dim1=-2, dim2=-1)
            var = var if t == "diag" else var.mean(-1)
            self.precisions_cholesky[k] = (var + self.reg_covar).rsqrt()

    @torch.no_grad()
    def encode(self, x, y=None, *, hard: bool = False):
        """Responsibilities p(component | x): [N, n_components] from the class's mixture when y is
        given (or the model is unconditional); [N, K * n_components] (class-major) over all
        classes' components, weighted by the class frequencies, for a conditional model with
        y=None. hard=True: the index of the most likely component instead ([N], long)."""
        y = self.condition(y, len(x))
        lp = self.component_log_prob(x, y)
        if y is None:
            lp = lp + self.class_log_prior[:, None]
        lp = lp.flatten(1)
        r = (lp - torch.logsumexp(lp, 1, keepdim=True)).exp()
        return r.argmax(1) if hard else r.float()

    @torch.no_grad()
    def sample(self, n, y=None, generator: Optional[torch.Generator] = None):
        """x = mu_c + P_c^-T z, z ~ N(0, I), c ~ pi (of the class y: a label, labels [n], or the
        class cycle 0, 1, ... when conditional and y=None); clamped to [0, 1] for images."""
        y = self.condition(y, n, sample=True)
        dev = self.means.device
        K, C, D = self.means.shape
        k = torch.zeros(n, dtype=torch.long, device=dev) if y is None else y.to(dev)
        c = torch.multinomial(self.log_weights[k].exp(), 1, generator=generator).squeeze(1)
        z = torch.randn(n, D, generator=generator, device=dev, dtype=torch.float64)
        u = torch.empty(n, D, dtype=torch.float64, device=dev)
        t, P = self.covariance_type, self.precisions_cholesky
        for kk, cc in torch.unique(torch.stack([k, c], 1), dim=0).tolist():
            m = (k == kk) & (c == cc)
            zm = z[m]
            if t in ("full", "tied"):
                Pc = P[kk, cc] if t == "full" else P[kk]   # Sigma^-1 = P P^T: x = mu + P^-T z
                e = torch.linalg.solve_triangular(Pc.T, zm.T, upper=False).T
            else:  # diag: a vector, spherical: a scalar
                e = zm / P[kk, cc]
            u[m] = self.means[kk, cc] + e
        x = self.from_working(u.float().reshape(n, *self.spec.shape))
        return x.clamp(0, 1) if self.spec.kind == "image" else x

    def __repr__(self):
        K, C = self.log_weights.shape
        return (f"GMM(n_components={C}, covariance_type={self.covariance_type!r}"
                f"{f', classes={K}' if self.conditional else ''})")
