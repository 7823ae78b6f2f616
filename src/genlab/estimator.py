"""A scikit-learn-style way in: fit on an array, then sample and score_samples.

    >>> import numpy as np, genlab
    >>> X = np.random.default_rng(0).normal(size=(500, 3)).astype("float32")
    >>> est = genlab.Estimator("pca", latent_dim=1).fit(X)
    >>> est.sample(4).shape, est.score_samples(X[:2]).shape
    ((4, 3), (2,))

Like KernelDensity and GaussianMixture: `score_samples` is the log-density per
row (nats; exact, bound or estimate as the family's `log_prob` says) and
`score` its mean. Arrays of shape N x D are vectors; N x H x W or N x C x H x W
arrays in [0, 1] are images.
"""

from __future__ import annotations

import numpy as np
import torch

from .data.spec import DataSpec, Dataset
from .errors import ConfigError, DataError


def _as_dataset(X, y=None) -> Dataset:
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    if x.dim() == 2:
        kind = "vector"
    elif x.dim() in (3, 4):
        kind, x = "image", (x[:, None] if x.dim() == 3 else x)
    else:
        raise DataError(f"X must be N x D (vectors) or N x [C x] H x W (images), got shape {tuple(x.shape)}")
    labels = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.long)
    k = int(labels.max()) + 1 if labels is not None and len(labels) else 0
    spec = DataSpec(kind, tuple(x.shape[1:]), k, [str(i) for i in range(k)], name="array")
    return Dataset(x, x, spec, labels, labels)


class Estimator:
    """`Estimator(family, epochs=..., **hyperparameters_and_trainer_settings)`."""

    def __init__(self, family: str = "vae", *, epochs=None, steps=None, minutes=None, seed: int = 0,
                 progress: bool = False, **params):
        self.family, self.epochs, self.steps, self.minutes = family, epochs, steps, minutes
        self.seed, self.progress, self.params = seed, progress, params
        self.model_ = None

    def get_params(self, deep=True) -> dict:
        return {"family": self.family, "epochs": self.epochs, "steps": self.steps, "minutes": self.minutes,
                "seed": self.seed, "progress": self.progress, **self.params}

    def set_params(self, **params) -> "Estimator":
        for k, v in params.items():
            if k in ("family", "epochs", "steps", "minutes", "seed", "progress"):
                setattr(self, k, v)
            else:
                self.params[k] = v
        return self

    def fit(self, X, y=None) -> "Estimator":
        from .train.run import train

        data = _as_dataset(X, y)
        self.run_ = train(self.family, data, epochs=self.epochs, steps=self.steps, minutes=self.minutes,
                          seed=self.seed, progress=self.progress, save=False, **self.params)
        self.model_ = self.run_.model
        return self

    def _model(self):
        if self.model_ is None:
            raise ConfigError("this Estimator is not fitted yet; call fit(X) first")
        return self.model_

    def _tensor(self, X) -> torch.Tensor:
        m = self._model()
        x = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=m.device)
        return x.reshape(len(x), *m.spec.shape)

    def sample(self, n_samples: int = 1, y=None, random_state=None) -> np.ndarray:
        m = self._model()
        g = None if random_state is None else torch.Generator(device=m.device).manual_seed(int(random_state))
        x = m.sample(n_samples, y=y, generator=g)
        return x.detach().cpu().numpy().reshape(n_samples, -1) if m.spec.kind == "vector" else x.cpu().numpy()

    def score_samples(self, X) -> np.ndarray:
        m = self._model()
        if not hasattr(m, "log_prob"):
            raise ConfigError(f"'{m.family}' has no likelihood; score_samples needs log_prob")
        with torch.no_grad():
            return m.log_prob(self._tensor(X)).cpu().numpy()

    def score(self, X, y=None) -> float:
        return float(self.score_samples(X).mean())

    def transform(self, X) -> np.ndarray:
        m = self._model()
        if not hasattr(m, "encode"):
            raise ConfigError(f"'{m.family}' has no encoder")
        with torch.no_grad():
            return m.encode(self._tensor(X)).cpu().numpy()

    def inverse_transform(self, Z) -> np.ndarray:
        m = self._model()
        with torch.no_grad():
            return m.decode(torch.as_tensor(np.asarray(Z), dtype=torch.float32, device=m.device)).cpu().numpy()
