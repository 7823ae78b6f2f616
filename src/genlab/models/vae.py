"""Variational autoencoder (Kingma & Welling 2014), conditional (Sohn et al. 2015), and the
importance-weighted bound (Burda et al. 2016).

    p(z) = N(0, I),   q(z | x, y) = N(mu(x, y), diag sigma^2(x, y)),   p(x | z, y) Bernoulli or Gaussian
    z = mu + sigma * eps,  eps ~ N(0, I)                  (`reparameterize`)

Training maximises `elbo` (iwae_k = 1) or `iwae_bound` (iwae_k > 1); `log_prob`
is the importance-sampled estimate L_k with large k, a lower bound on log p(x)
that tightens as k grows.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.nn import functional as F

from ..nn import Decoder, Encoder
from ..params import Int, Float, OneOf, Ints, Text, Bool
from ..errors import ConfigError
from ..nn.density import LOG_2PI, binarize, log_normal, marginal_log_prob
from ..nn.imputation import fill_missing, keep_known, optimise_missing
from .base import GenerativeModel, register_model


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, k: Optional[int] = None) -> torch.Tensor:
    """A sample of q = N(mu, diag sigma^2) that is differentiable in mu and logvar:

        z = mu + sigma * eps,    sigma = exp(logvar / 2),    eps ~ N(0, I)

    One sample per row ([N, d]), or with k, k of them stacked on dim 0 ([k, N, d])."""
    sigma = (0.5 * logvar).exp()
    eps = torch.randn_like(mu) if k is None else torch.randn(k, *mu.shape, device=mu.device)
    return mu + sigma * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def elbo(log_px_given_z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0):
    """Evidence lower bound, per example, with a single reparameterised sample z ~ q(z|x):

        ELBO(x) = E_{q(z|x)}[log p(x|z)] - beta * KL(q(z|x) || p(z))  <=  log p(x)   (for beta = 1)

    Returns (elbo, kl). beta > 1 is the beta-VAE (Higgins et al. 2017).
    """
    kl = gaussian_kl(mu, logvar)
    return log_px_given_z - beta * kl, kl


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """Importance-weighted bound from k samples z_i ~ q(z|x), log w_i = log p(x, z_i) - log q(z_i|x):

        L_k(x) = log (1/k) sum_i w_i  =  logsumexp_i(log w_i) - log k

    L_1 is the ELBO; L_k <= L_{k+1} <= log p(x) and L_k -> log p(x) as k -> infinity.
    `log_w` has the k samples along dim 0.
    """
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


@register_model("vae")
class VAE(GenerativeModel):
    description = "variational autoencoder: ELBO or IWAE training, Bernoulli/Gaussian likelihood, conditional"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"latent_dim": Int(1), "net": OneOf("auto", "mlp", "conv"), "hidden": Ints(1),
                     "channels": Ints(1, min_len=1), "activation": Text(),
                     "likelihood": OneOf("auto", "bernoulli", "gaussian"), "beta": Float(0), "iwae_k": Int(1),
                     "conditional": Bool(), "eval_k": Int(1), "binarize": Bool()}
    likelihood_kind = "estimate"  # L_k: importance-sampled, a lower bound in expectation
    preview_log_prob_options = {"k": 50}  # a density picture needs many points, not a tight L_k
    #: the starting std of the Gaussian p(x|z), in the working scale (data standardised to std 1).
    #: Starting at the data's own std (1) puts the model on the collapsed optimum: a decoder that
    #: ignores z and calls the data noise scores as well as one that uses z, so q(z|x) falls to the
    #: prior and stays there (on circles, KL 0.000 and NLL 3.886, the fitted Gaussian's). Half the
    #: data's std breaks the tie. At 1 CPU-minute (`bench/defaults.py --families vae`, 2026-12-02,
    #: docs/benchmarks.md "Defaults"): circles NLL 3.886 -> 3.569 nats (mean samples' MMD 1.586 ->
    #: 0.005), checkerboard 4.337 -> 3.919, swissroll 3.411 -> 2.843, spirals 3.638 -> 3.282, while the
    #: suite's linear VAE still reaches pPCA's ML fit (a start at 0.1 would not: -8.94 vs -7.49 nats).
    DECODER_STD_START = 0.5

    @property
    def discrete_likelihood(self) -> bool:
        return self.likelihood == "bernoulli"

    @classmethod
    def data_defaults(cls, spec, n_train=None):
        """Vectors of fewer than 16 dimensions (2-D toys, small tables): a code as wide as the data,
        not wider (extra code dimensions carry nothing but make the code distribution degenerate)."""
        return {"latent_dim": spec.dim} if spec.kind == "vector" and spec.dim < 16 else {}

    def __init__(self, spec, latent_dim: int = 16, net: str = "auto", hidden: tuple = (512, 256),
                 channels: tuple = (32, 64), activation: str = "relu", likelihood: str = "auto",
                 beta: float = 1.0, iwae_k: int = 1, conditional: bool = False, eval_k: int = 1000,
                 binarize: bool = False):
        super().__init__(spec)
        if likelihood == "auto":
            likelihood = "bernoulli" if spec.kind == "image" else "gaussian"
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be auto, bernoulli or gaussian, not {likelihood!r}")
        if likelihood == "bernoulli" and spec.kind != "image":
            raise ValueError("likelihood='bernoulli' needs data in [0, 1] (images)")
        if iwae_k < 1 or eval_k < 1:
            raise ValueError("iwae_k and eval_k must be >= 1")
        if binarize and likelihood != "bernoulli":
            raise ValueError("binarize=true goes with the Bernoulli likelihood")
        self.likelihood, self.beta, self.iwae_k, self.eval_k = likelihood, beta, iwae_k, eval_k
        self.binarize = binarize
        self.latent_dim = latent_dim
        k = spec.num_classes if conditional else 0
        self.encoder = Encoder(spec, 2 * latent_dim, net, hidden, channels, activation, k)
        self.decoder = Decoder(spec, latent_dim, net, hidden, channels, activation, k)
        if likelihood == "gaussian":  # per-dimension learned std of p(x|z), see DECODER_STD_START
            self.log_std = torch.nn.Parameter(torch.full(spec.shape, math.log(self.DECODER_STD_START)))

    # -- the pieces of the bound ---------------------------------------------------------
    def posterior(self, x, y=None):
        """mu, log sigma^2 of q(z | x, y) (log-variance clamped for stability)."""
        y = self.condition(y, len(x), required="encode")
        mu, logvar = self.encoder(self.to_working(x), y).chunk(2, -1)
        return mu, logvar.clamp(-12, 8)

    def log_likelihood(self, x, out) -> torch.Tensor:
        """log p(x | z) per example; `out` holds logits (Bernoulli) or means (Gaussian, working scale).

        The Bernoulli term is exact for binary x; for intensities in [0, 1] it is the
        usual cross-entropy surrogate, not a normalised density.
        """
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").flatten(-len(self.spec.shape)).sum(-1)
        u = self.to_working(x)
        log_std = self.log_std.clamp(-7, 3)
        lp = -0.5 * ((u - out) / log_std.exp()).pow(2) - log_std - 0.5 * LOG_2PI
        return lp.flatten(-len(self.spec.shape)).sum(-1) + self.working_log_det(x)

    def _decode_flat(self, z, y):
        """Decoder for z of shape [k, N, d] -> outputs of shape [k, N, *spec.shape]."""
        k, n = z.shape[:2]
        yy = None if y is None else y.repeat(k)
        return self.decoder(z.reshape(k * n, -1), yy).reshape(k, n, *self.spec.shape)

    def log_weights(self, x, y=None, *, k: int = 1) -> torch.Tensor:
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q(z|x); shape [k, N]."""
        y = self.condition(y, len(x))
        mu, logvar = self.posterior(x, y)
        z = reparameterize(mu, logvar, k)
        return self.log_likelihood(x, self._decode_flat(z, y)) + log_normal(z) - log_normal(z, mu, logvar)

    # -- the contract ---------------------------------------------------------------------
    def loss(self, x, y=None):
        """-ELBO (iwae_k = 1) or -L_k (iwae_k > 1), averaged over the batch, in nats.

        With binarize=true each batch is resampled as x ~ Bernoulli(x) every time it is
        used (dynamic binarization, Burda et al. 2016)."""
        if self.binarize:
            x = binarize(x)
        if self.iwae_k > 1:
            return {"loss": -iwae_bound(self.log_weights(x, y, k=self.iwae_k)).mean()}
        y = self.condition(y, len(x))
        mu, logvar = self.posterior(x, y)
        z = reparameterize(mu, logvar)
        rec = self.log_likelihood(x, self.decoder(z, y))
        bound, kl = elbo(rec, mu, logvar, self.beta)
        return {"loss": -bound.mean(), "recon": -rec.mean(), "kl": kl.mean()}

    @torch.no_grad()
    def log_prob(self, x, y=None, *, k: Optional[int] = None, rows: int = 50_000):
        """Importance-sampled estimate L_k of log p(x | y) in nats (a lower bound, tight as k grows).

        Images and samples are processed in blocks of about `rows` decoder outputs, so memory
        stays bounded for any k and any number of images. A conditional model given no labels
        returns log p(x) = logsumexp_y log p(x | y) - log K (uniform class prior).
        """
        k = k or self.eval_k
        y = self.condition(y, len(x))
        if y is None and self.condition_kind != "none":
            return marginal_log_prob(lambda x, y: self.log_prob(x, y, k=k, rows=rows), x, self.spec.num_classes)
        n_img = max(1, min(len(x), rows // k))
        chunk = max(1, min(k, rows // n_img))
        out = []
        for i in range(0, len(x), n_img):
            xb, yb = x[i:i + n_img], None if y is None else y[i:i + n_img]
            parts = [self.log_weights(xb, yb, k=min(chunk, k - j)) for j in range(0, k, chunk)]
            out.append(iwae_bound(torch.cat(parts)))
        return torch.cat(out)

    def anomaly_score(self, x, y=None, *, k: int = 64):
        """-L_k(x | y) with k = 64 importance samples (the marginal over classes without y)."""
        return -self.log_prob(x, y, k=k)

    def encode(self, x, y=None):
        """Posterior mean of q(z | x, y)."""
        return self.posterior(x, y)[0]

    def decode(self, z, y=None):
        """Mean of p(x | z, y) in data space (labels cycle through the classes if conditional and y is None)."""
        out = self.decoder(z, self.condition(y, len(z), sample=True))
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else self.from_working(out)

    def reconstruct(self, x, y=None):
        """decode(encode(x, y), y): the posterior mean decoded."""
        y = self.condition(y, len(x))
        return self.decode(self.encode(x, y), y)

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, mean: bool = True):
        """z ~ N(0, I), x ~ p(x | z, y); the decoder's mean unless mean=False."""
        y = self.condition(y, n, sample=True)
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        if mean:
            return self.decode(z, y)
        out = self.decoder(z, self.condition(y, len(z), sample=True))
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(out), generator=generator)
        eps = torch.randn(out.shape, generator=generator, device=out.device)
        return self.from_working(out + self.log_std.clamp(-7, 3).exp() * eps)  # the noise on the working scale

    def impute(self, x, mask, y=None, *, generator=None, method: str = "latent", steps: int = 300,
               lr: float = 0.05):
        """Fill the missing entries (mask: 1 = known), keeping the known ones.

        method="latent": the MAP code given the known entries, decoded,
            z* = argmax_z  log p(x_o | z, y) + log p(z),    x_m = E[x_m | z*]
        (Adam from the posterior mean of x with the missing entries set to 0, `steps` x `lr`).
        method="gibbs": Rezende et al. (2014)'s pseudo-Gibbs chain, `steps` rounds of
            z ~ q(z | x, y),   x_m <- E[x_m | z]
        ending with the posterior mean (a deterministic last step)."""
        if method not in ("latent", "gibbs"):
            raise ConfigError(f"vae impute method must be latent or gibbs, not {method!r}")
        yy = self.condition(y, len(x))
        m = torch.as_tensor(mask, device=x.device).bool().expand_as(x)
        xf = fill_missing(x, m, 0.0 if self.spec.kind == "image" else self.from_working(torch.zeros_like(x[:1])))
        if method == "gibbs":
            with torch.no_grad():
                for i in range(steps):
                    mu, logvar = self.posterior(xf, yy)
                    z = mu if i == steps - 1 else reparameterize(mu, logvar)
                    xf = keep_known(x, m, self.decode(z, yy))
            return xf
        with torch.no_grad():
            z0 = self.posterior(xf, yy)[0]

        def objective(z):
            out = self.decoder(z, yy)
            if self.likelihood == "bernoulli":
                lp = -F.binary_cross_entropy_with_logits(out, xf, reduction="none")
            else:
                log_std = self.log_std.clamp(-7, 3)
                lp = -0.5 * ((self.to_working(xf) - out) / log_std.exp()).pow(2) - log_std
            return (lp * m).flatten(1).sum(1) + log_normal(z)

        z = optimise_missing(objective, z0, steps=steps, lr=lr)
        with torch.no_grad():
            return keep_known(x, m, self.decode(z, yy))
