"""Latent models: any family trained on the codes of another run's autoencoder, a model of data space.

    z = f(x)                 the frozen encoder of RUN (ae, vae, pca, ...: any model with encode and decode)
    p(z)                     the inner family (ddpm, fm, maf, realnvp, gmm, vae, gan) trained on the codes
                             of the training split, standardised like any vector data
    x = g(z),  z ~ p(z)      `sample`: the inner model's sample decoded by RUN's decoder

Latent diffusion is ddpm or fm over a VAE's codes (Rombach et al. 2022); a fitted prior for an
autoencoder is gmm or maf over its codes (Ghosh et al. 2020's ex-post density, pythae's two-stage /
GMM / MAF samplers; a vae over a VAE's codes is Dai & Wipf 2019's two-stage VAE). One class serves
every combination:

    genlab train ddpm --data digits --latent runs/vae         (Python: genlab.train("ddpm", "digits", latent="runs/vae"))

What it is and is not:

- `encode(x)` / `decode(u)`: the autoencoder's f and g, composed with the inner model's own encode /
  decode where the inner model has both (a flow's or fm's bijection to N(0, I), a VAE's posterior mean),
  so `u` is the inner model's latent; otherwise `u` is the autoencoder's code z.
- No `log_prob`: the inner density is one of the codes, p(z = f(x)), not of x (g is not invertible),
  so evaluation's likelihood column never shows it. It is `latent_log_prob(x)`, named for what it is.
- `anomaly_score(x) = -log p(f(x)) + ||x - g(f(x))||^2 / (2 s^2)`: the code's negative log density
  under the inner model (where it has one) plus the reconstruction error under x = g(z) + N(0, s^2 I),
  s^2 the training split's mean squared reconstruction error per dimension. An approximate -log p(x)
  (it drops g's Jacobian term), for ranking, not a likelihood.

Files: the run's config.json holds the inner family's name and hyperparameters, the data spec, and
"latent": {"run", "run_relative", "sha256", "latent_dim", "code_shape", "family"}: RUN's path (absolute
and relative to the run) and the sha256 of RUN/model.safetensors. model.safetensors holds the inner
model's weights (and the reconstruction scale), never the autoencoder's: loading reads RUN again, and
refuses when it is missing or its weights changed.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Optional

import torch

from ..data.spec import DataSpec, Dataset
from ..errors import ConfigError, GenlabError
from .base import GenerativeModel, create_model, get_family, load, register_wrapper

ENCODE_BATCH = 1024
_LOADING: set = set()  # autoencoder runs being loaded now (a latent record pointing back is refused)


def weights_sha256(run) -> str:
    """sha256 of RUN/model.safetensors (hex)."""
    h = hashlib.sha256()
    with open(Path(run) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve_run(latent: dict, directory) -> Path:
    """RUN's directory: the recorded absolute path, else the path relative to the latent run (moved together)."""
    candidates = [Path(latent["run"])]
    if directory is not None and latent.get("run_relative"):
        candidates.append(Path(directory) / latent["run_relative"])
    for c in candidates:
        if (c / "model.safetensors").exists():
            return c
    where = f"{directory}: " if directory is not None else ""
    raise ConfigError(f"{where}the autoencoder run of this latent model is missing "
                      f"({Path(latent['run']) / 'model.safetensors'} not found)")


@register_wrapper("latent")
class LatentModel(GenerativeModel):
    """A family (`inner`, built on the codes' vector spec) over the codes of a frozen autoencoder."""

    family = "latent"
    description = "a family trained on the codes of another run's autoencoder"

    def __init__(self, spec: DataSpec, inner: GenerativeModel, autoencoder: GenerativeModel, source: dict):
        super().__init__(spec)
        self.inner = inner
        autoencoder.eval().requires_grad_(False)
        self.__dict__["autoencoder"] = autoencoder  # not a submodule: its weights stay in RUN, not in this run
        self.source = dict(source)
        self.code_shape = tuple(source["code_shape"])
        self.latent_dim = int(source["latent_dim"])
        self.config = inner.config  # conditional=true etc. are the inner model's
        self.train_defaults = inner.train_defaults
        self.family = f"{inner.family}@{source['family']}"
        self.description = f"{inner.description} (over the {self.latent_dim}-D codes of a {source['family']} run)"
        self.register_buffer("recon_var", torch.ones(()))  # s^2 of anomaly_score, set in finalize
        self._codes: Optional[tuple[Dataset, Dataset]] = None  # (data, its codes), computed once

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def create(cls, family: str, run, data, **hparams) -> "LatentModel":
        """`family` with hyperparameters `hparams` over the codes RUN's encoder gives `data` (a Dataset or spec)."""
        spec = data.spec if isinstance(data, Dataset) else data
        run = Path(run)
        if not (run / "config.json").exists():
            raise ConfigError(f"--latent {run}: not a genlab run (no config.json)")
        if not (run / "model.safetensors").exists():
            raise ConfigError(f"--latent {run}: no model.safetensors (training unfinished?)")
        sha = weights_sha256(run)
        return cls._build(family, run.resolve(), sha, spec, load(run), hparams)

    @classmethod
    def from_config(cls, cfg: dict, directory=None) -> "LatentModel":
        """The latent model a run's config.json describes; refuses a missing or changed autoencoder run."""
        latent = cfg["latent"]
        where = f"{directory}: " if directory is not None else ""
        if not (isinstance(latent, dict) and all(isinstance(latent.get(k), str) for k in ("run", "sha256", "family"))
                and isinstance(latent.get("run_relative", ""), str)):
            raise ConfigError(f"{where}config.json's 'latent' record is malformed")
        run = _resolve_run(latent, directory)
        key = str(run.resolve())
        if key in _LOADING:  # A's autoencoder is B, whose autoencoder is A: never ends
            raise ConfigError(f"{where}the latent record points back to a run being loaded ({run}): a cycle")
        sha = weights_sha256(run)
        if sha != latent["sha256"]:
            where = f"{directory}: " if directory is not None else ""
            raise ConfigError(f"{where}the autoencoder run changed since this latent model was trained "
                              f"({run / 'model.safetensors'} has sha256 {sha[:12]}…, config.json records "
                              f"{latent['sha256'][:12]}…); retrain the latent model")
        _LOADING.add(key)
        try:
            ae = load(run)
        finally:
            _LOADING.discard(key)
        return cls._build(cfg["family"], Path(latent["run"]), sha, DataSpec.from_dict(cfg["data"]), ae, cfg["hparams"])

    @classmethod
    def _build(cls, family, run: Path, sha: str, spec: DataSpec, ae: GenerativeModel, hparams) -> "LatentModel":
        if not (hasattr(ae, "encode") and hasattr(ae, "decode")):
            raise ConfigError(f"--latent {run}: its model '{ae.family}' has no encode/decode; a latent model "
                              "needs an autoencoder (ae, vae, pca, a flow, ...)")
        if ae.condition_kind != "none":
            raise ConfigError(f"--latent {run}: its '{ae.family}' is conditional; a latent model needs an "
                              "unconditional autoencoder (make the inner model conditional instead)")
        if tuple(ae.spec.shape) != tuple(spec.shape) or ae.spec.kind != spec.kind:
            raise ConfigError(f"--latent {run}: its '{ae.family}' models {ae.spec.name} {tuple(ae.spec.shape)}, "
                              f"not this data ({spec.name} {tuple(spec.shape)})")
        if spec.condition_shape is not None:
            raise ConfigError("latent models take class labels or no condition, not paired data")
        inner_cls = get_family(family)
        if "vector" not in inner_cls.kinds:
            raise ConfigError(f"'{family}' models discrete images, and the codes of {run} are continuous "
                              f"vectors: a latent {family} does not apply (it would need discrete codes)")
        with torch.no_grad():
            probe = ae.encode(torch.zeros(1, *spec.shape, device=ae.device))
        code_shape = tuple(probe.shape[1:])
        d = math.prod(code_shape)
        code_spec = DataSpec("vector", (d,), spec.num_classes, list(spec.class_names),
                             name=f"{spec.name} codes ({ae.family}, {d}-D)", source={})
        inner = create_model(family, code_spec, **hparams)
        source = {"run": str(run), "sha256": sha, "latent_dim": d, "code_shape": list(code_shape),
                  "family": ae.family}
        return cls(spec, inner, ae, source)

    def latent_record(self, directory=None) -> dict:
        """config.json's "latent" entry (RUN also relative to `directory`, the latent run's)."""
        rec = dict(self.source)
        if directory is not None:
            rec["run_relative"] = os.path.relpath(Path(rec["run"]).resolve(), Path(directory).resolve())
        return rec

    # -- keeping the frozen autoencoder beside the module tree ---------------------------------
    def _apply(self, fn, *args, **kwargs):
        self.autoencoder._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.autoencoder.eval()
        return self

    # -- codes ----------------------------------------------------------------------------------
    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """z = f(x), flattened to N x latent_dim (the autoencoder's encode, in batches)."""
        ae = self.autoencoder  # slices, so data kept on disk (a streamed LazySplit) is read batch by batch
        out = [ae.encode(x[i:i + ENCODE_BATCH].to(ae.device)).reshape(-1, self.latent_dim)
               for i in range(0, len(x), ENCODE_BATCH)]
        return torch.cat(out).to(self.device)

    @torch.no_grad()
    def decode_codes(self, z: torch.Tensor) -> torch.Tensor:
        """x = g(z) in data space (the autoencoder's decode, in batches)."""
        ae = self.autoencoder
        out = [ae.decode(b.to(ae.device).reshape(len(b), *self.code_shape)) for b in z.split(ENCODE_BATCH)]
        return torch.cat(out)

    def code_dataset(self, data: Dataset) -> Dataset:
        """The codes of both splits as a vector Dataset, labels kept (computed once per data set)."""
        if self._codes is not None and self._codes[0] is data:
            return self._codes[1]
        ds = Dataset(self.codes(data.train).cpu(), self.codes(data.test).cpu(), self.inner.spec,
                     data.train_labels, data.test_labels, location=f"codes of {data.location}")
        self._codes = (data, ds)
        return ds

    def trained_part(self, data: Dataset):
        """The Trainer trains the inner model on the codes (the autoencoder stays frozen)."""
        return self.inner, self.code_dataset(data)

    def prepare(self, data: Dataset) -> None:
        self.inner.prepare(self.code_dataset(data))

    @torch.no_grad()
    def finalize(self, data: Dataset) -> None:
        """The inner model's own finalize on the codes; s^2 = mean squared reconstruction error per dimension."""
        codes = self.code_dataset(data)
        self.inner.finalize(codes)
        x, z = data.train, codes.train.to(self.device)
        err = sum(float((x[i:i + ENCODE_BATCH].to(self.device) - self.decode_codes(z[i:i + ENCODE_BATCH])).pow(2).sum())
                  for i in range(0, len(x), ENCODE_BATCH))
        self.recon_var.fill_(max(err / (len(x) * self.spec.dim), 1e-8))

    # -- the contract ---------------------------------------------------------------------------
    def loss(self, x, y=None):
        """The inner model's loss on the codes of x (the Trainer uses `trained_part` instead)."""
        return self.inner.loss(self.codes(x), y)

    def sample_options(self):
        return self.inner.sample_options()

    def sample_checks(self):
        return self.inner.sample_checks()

    @torch.no_grad()
    def sample(self, n, y=None, generator=None, **options):
        """z ~ p(z | y) (the inner model, with its sampler options), then x = g(z)."""
        return self.decode_codes(self.inner.sample(n, y, generator=generator, **options))

    def _composed(self) -> bool:
        return hasattr(self.inner, "encode") and hasattr(self.inner, "decode")

    @torch.no_grad()
    def encode(self, x, y=None):
        """The inner model's latent of f(x) where it encodes and decodes, else the code f(x)."""
        z = self.codes(x)
        return self.inner.encode(z, y) if self._composed() else z

    @torch.no_grad()
    def decode(self, u, y=None):
        """The inverse of `encode`: g(inner.decode(u)) or g(u)."""
        z = self.inner.decode(u, y) if self._composed() else u
        return self.decode_codes(z)

    @torch.no_grad()
    def reconstruct(self, x, y=None):
        """g(f(x)): the autoencoder's reconstruction (the inner model does not change it)."""
        return self.decode_codes(self.codes(x))

    @torch.no_grad()
    def latent_log_prob(self, x, y=None, **options):
        """log p(z = f(x) | y) under the inner model, in nats: a density of the CODES, not of x."""
        if not hasattr(self.inner, "log_prob"):
            raise GenlabError(f"'{self.inner.family}' has no log_prob, so this latent model has no code density")
        return self.inner.log_prob(self.codes(x), y, **options)

    @torch.no_grad()
    def anomaly_score(self, x, y=None):
        """-log p(f(x)) + ||x - g(f(x))||^2 / (2 s^2) (the first term where the inner model has log_prob)."""
        z = self.codes(x)
        x = x.to(self.device)
        score = (x - self.decode_codes(z)).pow(2).flatten(1).sum(1) / (2 * self.recon_var)
        if hasattr(self.inner, "log_prob"):
            score = score - self.inner.log_prob(z, y).to(score)
        return score

    # -- files ----------------------------------------------------------------------------------
    def save(self, directory) -> Path:
        """config.json (the inner family, its hyperparameters, the data spec, "latent") and model.safetensors
        (the inner model's weights and the reconstruction scale; the autoencoder's stay in RUN)."""
        import json

        from .._version import RUN_FORMAT, __version__
        from ..io import atomic_write_json, save_weights

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_weights(self.state_dict(), d / "model.safetensors")
        cfg_path = d / "config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        cfg.update({"family": self.inner.family, "hparams": self.config, "data": self.spec.to_dict(),
                    "latent": self.latent_record(d), "genlab_version": __version__, "format": RUN_FORMAT})
        atomic_write_json(cfg_path, cfg)
        return d

    def __repr__(self):
        return f"LatentModel({self.family}, {self.latent_dim}-D codes of {self.source['run']})"
