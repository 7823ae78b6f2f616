"""Autoencoders: plain and denoising (Vincent et al. 2008), MLP or convolutional.

    z = f(x~),   x^ = g(z),   loss = E ||x - x^||  (BCE for images in [0, 1], squared error for vectors)

x~ is x itself, or a corrupted copy for the denoising variant:
Gaussian noise x + s * eps, or masking (each input set to 0 with probability p).
An autoencoder has no prior; `sample` draws codes from a Gaussian fitted to the
training codes (mean and full covariance), the classic way to "sample" one. It is
unconditional: the `y` its methods take (the contract's signature) is ignored.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data.spec import Dataset
from ..nn import Decoder, Encoder
from ..nn.imputation import fill_missing, keep_known, optimise_missing
from ..params import Int, Float, OneOf, Ints, Text
from .base import GenerativeModel, register_model


def corrupt(x: torch.Tensor, kind: str, level: float) -> torch.Tensor:
    """The denoising autoencoder's corruption q(x~ | x)."""
    if kind == "gaussian":
        return x + level * torch.randn_like(x)
    if kind == "mask":
        return x * (torch.rand_like(x) >= level)
    return x


@register_model("ae")
class Autoencoder(GenerativeModel):
    description = "autoencoder (plain or denoising), MLP or conv; samples from a Gaussian fit to its codes"
    #: the valid values of each hyperparameter (genlab.params), checked by create_model
    hparam_ranges = {"latent_dim": Int(1), "net": OneOf("auto", "mlp", "conv"), "hidden": Ints(1),
                     "channels": Ints(1, min_len=1), "activation": Text(), "corruption": OneOf("none", "gaussian", "mask"),
                     "noise_level": Float(0, 1)}

    @classmethod
    def data_defaults(cls, spec, n_train=None):
        """Vectors of fewer than 16 dimensions (2-D toys, small tables): a code as wide as the data,
        not wider (extra code dimensions carry nothing but make the code distribution degenerate)."""
        return {"latent_dim": spec.dim} if spec.kind == "vector" and spec.dim < 16 else {}

    def __init__(self, spec, latent_dim: int = 16, net: str = "auto", hidden: tuple = (512, 256),
                 channels: tuple = (32, 64), activation: str = "relu", corruption: str = "none",
                 noise_level: float = 0.3):
        super().__init__(spec)
        if corruption not in ("none", "gaussian", "mask"):
            raise ValueError(f"corruption must be none, gaussian or mask, not {corruption!r}")
        self.corruption, self.noise_level = corruption, noise_level
        self.encoder = Encoder(spec, latent_dim, net, hidden, channels, activation)
        self.decoder = Decoder(spec, latent_dim, net, hidden, channels, activation)
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_chol", torch.eye(latent_dim))

    def reconstruction_error(self, x, out) -> torch.Tensor:
        """Per example: BCE(x, sigmoid(out)) summed over pixels, or squared error on vectors."""
        if self.spec.kind == "image":
            return F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
        return (out - self.to_working(x)).pow(2).sum(1)

    def loss(self, x, y=None):
        x_in = corrupt(self.to_working(x), self.corruption, self.noise_level)
        out = self.decoder(self.encoder(x_in))
        return {"loss": self.reconstruction_error(x, out).mean()}

    def encode(self, x, y=None):
        """z = f(x)."""
        return self.encoder(self.to_working(x))

    def decode(self, z, y=None):
        """x^ = g(z) in data space."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.spec.kind == "image" else self.from_working(out)

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x))

    @torch.no_grad()
    def finalize(self, data: Dataset) -> None:
        """Fit N(m, L L^T) to the training codes; `sample` draws from it."""
        z = torch.cat([self.encode(b.to(self.device)) for b in data.train.split(1024)])
        cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1]) + 1e-5 * torch.eye(z.shape[1], device=z.device)
        self.code_mean.copy_(z.mean(0))
        self.code_chol.copy_(torch.linalg.cholesky(cov))

    @torch.no_grad()
    def sample(self, n, y=None, generator=None):
        self.condition(y, n, sample=True)  # an error if y is given: there is nothing to condition on
        eps = torch.randn(n, len(self.code_mean), generator=generator, device=self.device)
        return self.decode(self.code_mean + eps @ self.code_chol.T)

    @torch.no_grad()
    def anomaly_score(self, x, y=None):
        """Reconstruction error of the clean input (higher = more anomalous)."""
        return self.reconstruction_error(x, self.decoder(self.encode(x)))

    def impute(self, x, mask, y=None, *, generator=None, steps: int = 300, lr: float = 0.05):
        """Fill the missing entries (mask: 1 = known) by latent optimisation: the code whose decoding
        best explains the known entries, regularised by the Gaussian N(m, L L^T) fitted to the
        training codes (`finalize`), a MAP estimate under that code prior,

            z* = argmax_z  -err_o(x, g(z)) + log N(z; m, L L^T),     x_m = g(z*)_m

        err_o is the training reconstruction error (BCE for images, squared error on the
        standardised scale for vectors) summed over the known entries only. z starts at the
        encoding of x with the missing entries set to 0 (working scale); Adam, `steps` x `lr`."""
        m = torch.as_tensor(mask, device=x.device).bool().expand_as(x)
        x0 = fill_missing(x, m)
        with torch.no_grad():
            z0 = self.encoder(fill_missing(self.to_working(x0), m))

        def objective(z):
            out = self.decoder(z)
            if self.spec.kind == "image":
                err = F.binary_cross_entropy_with_logits(out, x0, reduction="none")
            else:
                err = (out - self.to_working(x0)).pow(2)
            w = torch.linalg.solve_triangular(self.code_chol, (z - self.code_mean).T, upper=False)
            return -(err * m).flatten(1).sum(1) - 0.5 * w.pow(2).sum(0)

        z = optimise_missing(objective, z0, steps=steps, lr=lr)
        with torch.no_grad():
            return keep_known(x, m, self.decode(z))

    @torch.no_grad()
    def denoise_gaussian(self, x, sigma: float, y=None, *, generator=None):
        """g(f(x~)) for x~ = x + sigma eps: the reconstruction of the noisy input. A denoising
        autoencoder (corruption="gaussian", noise_level near sigma on the working scale) is trained
        for exactly this, E ||x - g(f(x~))|| being its loss; a plain one projects onto its manifold."""
        return self.reconstruct(x)
