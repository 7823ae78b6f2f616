"""The normalizing-flow model: what `realnvp` and `maf` share (their layers are in `nn/flows.py`).

A flow family sets `self.flow`, an invertible f (forward(v, context) -> (z [N, D], log|det df/dv|),
inverse(z, context) -> v, data_init(v, context)), and gets the rest of the contract here. The flow
runs on the working scale v of x (`to_working`):

  vectors  v = (x - shift) / scale               (the base class's standardisation)
  images   y = (k + u) / L,  u ~ U[0, 1)^D        (dequantization; x = k / (L - 1), L = spec.levels)
           v = logit(alpha + (1 - 2 alpha) y)

and, with z = f(v) ~ N(0, I), the change of variables counts every Jacobian:

    log p(x) = log N(f(v); 0, I) + log|det df/dv| + log|det dv/dx|

in nats of the density of x (vectors) or of the dequantised image y on [0, 1)^D (images).
Sampling runs it backwards: z ~ N(0, I), v = f^-1(z), x = from_working(v).
"""

from __future__ import annotations

import torch

from ..params import Float

from .density import bits_per_dim, marginal_log_prob, standard_normal_log_prob
from .embed import one_hot
from .flows import dequantize, inverse_logit_transform, logit_transform
from .imputation import fill_missing, keep_known, optimise_missing


class FlowModel:
    """The flow families' share of the model contract (a mixin placed before GenerativeModel).

    The family sets `self.flow` and, for images, `self.alpha` (the logit transform's margin).
    Conditional flows take class labels, fed to the layers as a one-hot context.
    """

    alpha: float = 0.05
    sample_ranges = {"temperature": Float(0, low_open=True)}

    # -- the working scale v the flow runs on ---------------------------------------------------
    def _levels(self) -> int:
        return self.spec.levels or 256

    def to_working(self, x, *, generator=None, centre: bool = False, log_det: bool = False):
        """v for data x; with log_det=True the pair (v, log|det dv/dx| [N]).

        Images are dequantised with a fresh u ~ U[0, 1)^D (seeded by `generator`), or at the bin
        centres (u = 1/2) with centre=True, then logit-transformed."""
        if self.spec.kind == "vector":
            v = super().to_working(x)
            return (v, self.working_log_det(x)) if log_det else v
        if centre:
            levels = self._levels()
            y = (torch.round(x * (levels - 1)).clamp(0, levels - 1) + 0.5) / levels
        else:
            y = dequantize(x, self._levels(), generator)
        v, ld = logit_transform(y, self.alpha)
        return (v, ld) if log_det else v

    def from_working(self, v):
        """Data from v: vectors unstandardised; images mapped back to [0, 1) and quantised to the
        data's levels (the sample of the discrete model the dequantised density defines)."""
        if self.spec.kind == "vector":
            return super().from_working(v)
        levels = self._levels()
        y = inverse_logit_transform(v, self.alpha)
        return torch.floor(y * levels).clamp(0, levels - 1) / (levels - 1)

    def context(self, labels):
        """The layers' encoding of the condition: one-hot labels [N, K] (None when unconditional)."""
        return None if labels is None else one_hot(labels, self.spec.num_classes, len(labels))

    # -- the contract ------------------------------------------------------------------------
    def log_prob(self, x, y=None, *, generator=None):
        """log p(x | y) in nats by the change of variables (see the module docstring).

        Images: the density of the dequantised y = (k + u)/L with a fresh u ~ U[0,1)^D (seed it
        with `generator`). The discrete model P(k) = int_bin(k) p(y) dy satisfies (Jensen)
        log P(k) >= E_u[log p((k + u)/L)] - D log L, so `bits_per_dim(nll, D, n_levels=L)`
        bounds the discrete code length from above. A conditional model given no labels returns
        the marginal log p(x) = logsumexp_y log p(x | y) - log K (uniform class prior).
        """
        labels = self.condition(y, len(x))
        v, ld0 = self.to_working(x, generator=generator, log_det=True)

        def given(v, labels):
            z, ld = self.flow(v, self.context(labels))
            return standard_normal_log_prob(z) + ld

        if labels is None and self.condition_kind != "none":
            return marginal_log_prob(given, v, self.spec.num_classes) + ld0
        return given(v, labels) + ld0

    def loss(self, x, y=None):
        """Negative log-likelihood, nats per example (plus bits/dim for images)."""
        nll = -self.log_prob(x, y).mean()
        out = {"loss": nll}
        if self.spec.kind == "image":
            out["bpd"] = bits_per_dim(nll.detach(), self.spec.dim, n_levels=self._levels())
        return out

    def anomaly_score(self, x, y=None):
        """-log p(x): low density = anomalous."""
        with torch.no_grad():
            return -self.log_prob(x, y)

    def impute(self, x, mask, y=None, *, generator=None, steps: int = 300, lr: float = 0.05):
        """Fill the missing entries (mask: 1 = known) by gradient ascent on the flow's log-density
        over the missing coordinates of the working-scale v, the known ones held fixed:

            v_m* = argmax_{v_m}  log N(f(v); 0, I) + log|det df/dv|,    x_m = from_working(v*)_m

        (a mode of p(v_m | v_o), found by Adam from v_m = 0: the standardised mean of vectors, grey
        0.5 for images, whose known pixels sit at their bins' centres). A conditional model uses the
        labels y, or the class marginal without them. Known entries are returned unchanged."""
        labels = self.condition(y, len(x))
        m = torch.as_tensor(mask, device=x.device).bool().expand_as(x)
        x0 = fill_missing(x, m, 0.5 if self.spec.kind == "image" else 0.0)
        with torch.no_grad():
            v0 = fill_missing(self.to_working(x0, centre=True), m)

        def given(v, labels):
            z, ld = self.flow(v, self.context(labels))
            return standard_normal_log_prob(z) + ld

        def objective(v):
            if labels is None and self.condition_kind != "none":
                return marginal_log_prob(given, v, self.spec.num_classes)
            return given(v, labels)

        was = self.training
        self.eval()
        try:
            v = optimise_missing(objective, v0, m, steps=steps, lr=lr)
        finally:
            self.train(was)
        with torch.no_grad():
            return keep_known(x, m, self.from_working(v))

    @torch.no_grad()
    def encode(self, x, y=None):
        """z = f(v), the flow's latent code (images: dequantised at the bin centres), [N, D]; a
        conditional model needs the labels y."""
        labels = self.condition(y, len(x), required="encode")
        return self.flow(self.to_working(x, centre=True), self.context(labels))[0]

    @torch.no_grad()
    def decode(self, z, y=None):
        """x = f^-1(z) in data space (labels cycle through the classes if conditional and y is None)."""
        labels = self.condition(y, len(z), sample=True)
        return self.from_working(self.flow.inverse(z, self.context(labels)))

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, *, temperature: float = 1.0):
        """z ~ N(0, temperature^2 I), x = f^-1(z) (labels cycle through the classes if conditional)."""
        labels = self.condition(y, n, sample=True)
        dtype = next(self.parameters()).dtype
        z = temperature * torch.randn(n, self.spec.dim, generator=generator, device=self.device, dtype=dtype)
        return self.from_working(self.flow.inverse(z, self.context(labels)))

    def prepare(self, data) -> None:
        """Standardisation (vectors), then ActNorm's data-dependent init on up to 512 training examples."""
        super().prepare(data)
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(data.train), generator=g)[:512]
        x = data.train[idx].to(self.device, next(self.parameters()).dtype)
        labels = None if data.train_labels is None else data.train_labels[idx].to(self.device)
        v = self.to_working(x, generator=torch.Generator(device=self.device).manual_seed(0))
        self.flow.data_init(v, self.context(self.condition(labels, len(x))))
