"""The model contract every family follows, the family registry, save and load.

    model = create_model("vae", data, latent_dim=16)
    model.loss(x, y=None)                 -> {"loss": scalar, ...named parts}
    model.sample(n, y=None, generator=None, **options) -> tensor in data space and scale
    model.log_prob(x, y=None)             -> [N] nats (docstring says exact, bound or estimate)
    model.encode(x, y=None) / decode(z, y=None) / reconstruct(x, y=None) / anomaly_score(x, y=None)
    model.impute(x, mask, y=None, *, generator=None) -> x with the mask == 0 entries filled, known kept
    model.denoise_gaussian(x_noisy, sigma, y=None, *, generator=None) -> estimate of the clean x
    model.fit_incomplete(x, mask, y=None) -> EM from rows with missing entries (mask: 1 = known), in place;
                                          the observed-data log-likelihood per round
                                          where they make sense; extra knobs keyword-only

`y` is the condition (None, class labels, or a tensor per example: see `condition`).

Adversarial families override `players()` with one entry per optimizer; the
Trainer alternates them and never names a family.
"""

from __future__ import annotations

import inspect
import warnings
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from ..data.spec import DataSpec, Dataset
from ..errors import ConfigError, GenlabError, GenlabWarning, unknown_name
from ..io import first_line
from ..nn.log_columns import fit_log_columns, log_abs_det, log_forward, log_inverse
from ..params import Bool, check_like, check_settings

CAPABILITIES = ("log_prob", "encode", "decode", "reconstruct", "anomaly_score", "impute", "denoise",
                "fit_incomplete")
#: the method behind a capability where its name differs: "denoise" is
#: `denoise_gaussian(x_noisy, sigma, y=None, *, generator=None)` -> the clean estimate
CAPABILITY_METHODS = {"denoise": "denoise_gaussian"}


@dataclass
class Player:
    """One optimizer's share of a training step: its parameters and the loss it minimises.

    `method` names a model method `(x, y) -> dict with "loss"`; it is called through
    `model(method, x, y)` so DistributedDataParallel sees the call. `steps` is how many
    updates it makes per training step (e.g. n_critic for a GAN discriminator).
    `overrides` replace optimizer settings for this player (lr, betas, weight_decay).
    """

    name: str
    parameters: list
    method: str = "loss"
    steps: int = 1
    overrides: dict = field(default_factory=dict)


class GenerativeModel(nn.Module):
    """Base class of every family. Subclasses take `spec` plus keyword hyperparameters."""

    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Trainer settings this family prefers (lr, batch_size, ema_decay, betas, ...).
    train_defaults: ClassVar[dict] = {}
    #: optimiser steps below which a run's samples say little about the family (compare flags such a
    #: run "too short"; a run records the value in config.json); families override it
    min_train_steps: ClassVar[int] = 100
    #: this family's share of a `compare` training budget, relative to 1 (families whose step on
    #: images costs several times an MLP's, e.g. a UNet or a PixelCNN, take more)
    compare_weight: ClassVar[float] = 1.0
    #: kinds of data the family can model
    kinds: ClassVar[tuple[str, ...]] = ("image", "vector")
    #: what `log_prob` returns, where it exists: "exact", "bound" (a lower bound) or
    #: "estimate" (a stochastic estimate); evaluation stamps it beside the number
    likelihood_kind: ClassVar[Optional[str]] = None
    #: True where log_prob is the log-probability of discrete values (Bernoulli pixels,
    #: a discretised decoder) rather than a density on [0, 1]^D; bits/dim then adds no
    #: dequantisation term
    discrete_likelihood: ClassVar[bool] = False
    #: for a discrete likelihood: the values per dimension it covers, k / (levels - 1) for
    #: k = 0..levels-1 (2: Bernoulli pixels); its bits/dim is a code length of data on that grid
    discrete_levels: ClassVar[int] = 2
    #: the conditions a conditional model of this family can take: "class" labels and/or
    #: "tensor" conditions (an image, a vector, a mask per example; see DataSpec)
    condition_kinds: ClassVar[tuple[str, ...]] = ("class",)
    #: True for families that learn from two unrelated collections (CycleGAN); the others refuse
    #: unpaired data (`DataSpec.unpaired`) when conditioned on it
    learns_unpaired: ClassVar[bool] = False
    #: translates B -> A as well (`sample(n, y=b, direction="BA")`); evaluation then scores that way too
    translates_back: ClassVar[bool] = False
    #: adversarial families whose generator also learns from a supervised term name it here ("L1",
    #: "cycle-consistency"): a discriminator that wins outright then costs sharpness, not learning
    generator_supervision: Optional[str] = None
    #: keyword options that make `log_prob` cheap where a picture needs many evaluations
    #: (a density heat map), not a metric: e.g. fewer importance samples
    preview_log_prob_options: ClassVar[dict] = {}
    #: the valid values of each hyperparameter ({name: genlab.params check}, e.g. {"latent_dim": Int(1)}),
    #: checked once by `create_model` (so also for a run's config.json); `genlab models FAMILY` lists them
    hparam_ranges: ClassVar[dict] = {}
    #: the valid values of `sample`'s keyword options, checked on user input (`check_sample_options`);
    #: options not listed are checked by the type of their default (an int default wants an integer, ...)
    sample_ranges: ClassVar[dict] = {}

    @classmethod
    def data_defaults(cls, spec: DataSpec, n_train: Optional[int] = None) -> dict:
        """Settings that suit this data better than the family's fixed defaults, from its shape and
        size (`n_train` training examples, None when unknown): hyperparameters and/or trainer settings
        (lr, batch_size, ...). They apply only where the user gave no value, and the run records them
        (config.json "data_defaults"). E.g. a GAN on 2-D points: latent_dim=2, minibatch_std=true."""
        return {}

    def __init__(self, spec: DataSpec):
        super().__init__()
        self.spec = spec
        self.config: dict = {}
        if spec.kind == "vector":  # vectors are standardised; set from the data in prepare()
            self.register_buffer("data_shift", torch.zeros(spec.shape))
            self.register_buffer("data_scale", torch.ones(spec.shape))

    # -- working scale: standardised vectors, images as they are (families rescale images themselves)
    def use_log_columns(self) -> None:
        """Model the logs of the nonnegative columns (hyperparameter log_columns=true; nn/log_columns.py):
        the working scale becomes the standardised t = log(x + c) on those columns. Set in prepare()."""
        d = self.spec.shape
        self.register_buffer("log_columns", torch.zeros(d, dtype=torch.bool))
        self.register_buffer("log_offset", torch.zeros(d))
        self.register_buffer("log_floor", torch.ones(d))

    @property
    def has_log_columns(self) -> bool:
        return hasattr(self, "log_columns")

    def to_features(self, x: torch.Tensor) -> torch.Tensor:
        """The columns the model describes: x, or its log columns (log_columns=true)."""
        return log_forward(x, self.log_columns, self.log_offset, self.log_floor) if self.has_log_columns else x

    def from_features(self, t: torch.Tensor) -> torch.Tensor:
        return log_inverse(t, self.log_columns, self.log_offset) if self.has_log_columns else t

    def to_working(self, x: torch.Tensor) -> torch.Tensor:
        return (self.to_features(x) - self.data_shift) / self.data_scale if self.spec.kind == "vector" else x

    def from_working(self, u: torch.Tensor) -> torch.Tensor:
        return self.from_features(u * self.data_scale + self.data_shift) if self.spec.kind == "vector" else u

    def features_log_det(self, x: torch.Tensor) -> torch.Tensor:
        """log |det d to_features(x) / dx| per example [N] (0 without log columns)."""
        if self.has_log_columns:
            return log_abs_det(x, self.log_columns, self.log_offset, self.log_floor)
        return x.new_zeros(len(x))

    def working_log_det(self, x: torch.Tensor) -> torch.Tensor:
        """log |det d to_working(x) / dx| per example [N], to add to a working-scale log-density."""
        if self.spec.kind == "vector":
            return self.features_log_det(x) - self.data_scale.log().sum()
        return x.new_zeros(len(x))

    def require_linear_scale(self, what: str = "denoising") -> None:
        """A ConfigError where `what` assumes the working scale is linear in the data (log columns are not)."""
        if self.has_log_columns:
            raise ConfigError(f"{what} adds Gaussian noise on the data's standardised scale, which log_columns=true "
                              f"does not model linearly; train a model without log_columns for it")

    # -- the contract -------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> dict:
        raise NotImplementedError

    def sample(self, n: int, y: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
               **options) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def sample_options(cls) -> Optional[dict[str, Any]]:
        """The keyword options `sample` takes and their defaults (None: it takes any).
        For listing and for checking user input, as `hyperparameters` lists __init__'s."""
        params = inspect.signature(cls.sample).parameters
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return None
        return {k: p.default for k, p in params.items() if k not in ("self", "n", "y", "generator")}

    @classmethod
    def sample_checks(cls) -> dict:
        """{option: check} for `sample`'s keyword options: `sample_ranges`, else by the default's type."""
        allowed = cls.sample_options() or {}
        checks = {k: check_like(v) for k, v in allowed.items()}
        checks.update(cls.sample_ranges)
        return {k: c for k, c in checks.items() if c is not None}

    def check_sample_options(self, options: dict, verb: str = "samples") -> None:
        """A one-line ConfigError naming an option `sample` does not take, or a value outside its
        range (user input from the CLI or Python, before any sampling starts)."""
        allowed = self.sample_options()
        bad = [k for k in options if allowed is not None and k not in allowed]
        if bad:
            raise ConfigError(f"'{self.family}' {verb} without option(s) {', '.join(bad)} "
                              f"(it takes: {', '.join(allowed) or 'none'})")
        check_settings(options, self.sample_checks(), f"'{self.family}' {verb}")

    def players(self) -> list[Player]:
        """One player minimising `loss` over every parameter (single-objective families)."""
        return [Player("model", [p for p in self.parameters() if p.requires_grad])]

    def ema_names(self) -> list[str]:
        """Names of parameters averaged by EMA (adversarial families: the generator's)."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def prepare(self, data: Dataset) -> None:
        """Called once before training starts (not on resume): data-dependent init.

        Sets the standardisation of vector data; families extend it (call super())."""
        if self.spec.kind != "vector":
            return
        streamed = hasattr(data.train, "batches")  # on disk: passes over batches, never the whole set

        def batches():
            return data.train.batches(4096) if streamed else [data.train.to(self.data_shift.device)]

        if self.has_log_columns:
            for buffer, value in zip((self.log_columns, self.log_offset, self.log_floor), fit_log_columns(batches())):
                buffer.copy_(value.reshape(buffer.shape))
        if streamed:  # moments and ranges in one pass
            n, s1, s2, lo, hi = 0, 0.0, 0.0, None, None
            for b in batches():
                b = self.to_features(b.to(self.data_shift.device)).double()
                n, s1, s2 = n + len(b), s1 + b.sum(0), s2 + b.square().sum(0)
                lo = b.amin(0) if lo is None else torch.minimum(lo, b.amin(0))
                hi = b.amax(0) if hi is None else torch.maximum(hi, b.amax(0))
            mean = s1 / n
            std = ((s2 - n * mean.square()) / max(n - 1, 1)).clamp_min(0).sqrt()
        else:
            x = self.to_features(data.train.to(self.data_shift.device))
            mean, std, lo, hi = x.mean(0), x.std(0), x.amin(0), x.amax(0)
        constant = (lo == hi).to(self.data_scale.device)
        self.data_shift.copy_(mean)
        # a constant feature has no spread to divide by: it keeps scale 1 (it is 0 on the working
        # scale, where a model learns it as a constant) rather than a near-zero one that would
        # blow any other value up and add log(1e6) nats per feature to a likelihood
        self.data_scale.copy_(torch.where(constant, torch.ones_like(self.data_scale),
                                          std.to(self.data_scale).clamp_min(1e-6)))
        if constant.any():
            cols = constant.flatten().nonzero().flatten().tolist()
            where = ", ".join(str(c + 1) for c in cols[:5]) + (", ..." if len(cols) > 5 else "")
            warnings.warn(GenlabWarning(
                f"{data.spec.name}: {len(cols)} constant column{'s' if len(cols) > 1 else ''} "
                f"(column {where}: the same value in every training example); kept unscaled, "
                f"so the model learns {'them as constants' if len(cols) > 1 else 'it as a constant'}"), stacklevel=2)

    def fit_closed_form(self, data: Dataset) -> bool:
        """Families with a closed-form fit (PCA) do it here and return True."""
        return False

    def finalize(self, data: Dataset) -> None:
        """Called after training with the final (EMA) weights: e.g. fit code statistics."""

    def trained_part(self, data: Dataset) -> tuple["GenerativeModel", Dataset]:
        """What the Trainer optimises, and on which data: the model itself on `data`, except for
        models that wrap another (a latent model trains its inner family on the codes of `data`)."""
        return self, data

    @property
    def conditional(self) -> bool:
        return bool(self.config.get("conditional", False))

    def capabilities(self) -> list[str]:
        """Which optional parts of the contract this model has (log_prob, encode, ...)."""
        return [c for c in CAPABILITIES if hasattr(self, CAPABILITY_METHODS.get(c, c))]

    def forward(self, method: str, *args, **kwargs):
        """Dispatch `model("loss", x, y)` so a DDP wrapper can drive any named objective."""
        return getattr(self, method)(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    # -- the condition: one helper for every family --------------------------------------
    @property
    def condition_kind(self) -> str:
        """What `y` means to this model: "none" (it is ignored), "class" (labels 0..K-1) or
        "tensor" (one tensor of spec.condition_shape per example: an image, a vector, a mask).
        A model is conditional with conditional=true; families that are conditional by
        construction (image-to-image) override this."""
        if not self.conditional:
            return "none"
        return "tensor" if self.spec.condition_shape is not None else "class"

    @property
    def null_label(self) -> int:
        """The extra label index that stands for "no label" (classifier-free guidance)."""
        return self.spec.num_classes

    def condition(self, y, n: int, *, sample: bool = False, required: Optional[str] = None) -> Optional[torch.Tensor]:
        """The condition a network gets, checked and on the model's device (the only helper
        families use for y):

          none    None; when sampling, a given y is an error (the model cannot use it)
          class   long labels [n] (an int or a 0-d tensor is repeated); y=None stays None when
                  training or scoring, and is a class cycle 0, 1, ..., K-1, 0, ... when sampling
          tensor  float [n, *condition_shape] (a single condition is repeated n times); y=None
                  stays None when training or scoring, and is an error when sampling

        `required="encode"`: a conditional model given no y raises, naming what needed it.
        """
        kind = self.condition_kind
        if required and y is None and kind != "none":
            raise ConfigError(f"this {self.family} model is conditional: pass the condition y to {required}")
        if kind == "none":
            if sample and y is not None:
                raise ConfigError(f"'{self.family}' was trained without conditional=true, so it cannot "
                                  "sample a condition")
            return None
        if kind == "class":
            k = self.spec.num_classes
            if y is None:
                return torch.arange(n, device=self.device) % k if sample else None
            y = torch.as_tensor(y, device=self.device).long()
            if y.dim() == 0:
                y = y.expand(n)
            if y.shape != (n,):
                raise ConfigError(f"expected {n} labels, got a tensor of shape {tuple(y.shape)}")
            if ((y < 0) | (y >= k)).any():  # one host sync, not two
                raise ConfigError(f"label must be in 0..{k - 1}")
            return y
        shape = tuple(self.spec.condition_shape)
        if y is None:
            if sample:
                raise ConfigError(f"'{self.family}' is conditioned on a tensor of shape {shape}: pass one "
                                  "(y=..., or --condition FILE)")
            return None
        y = torch.as_tensor(y, device=self.device)
        y = y.to(torch.get_default_dtype()) if not y.is_floating_point() else y
        if tuple(y.shape) == shape:
            y = y.unsqueeze(0)
        if tuple(y.shape) == (1, *shape):  # one condition for all n samples
            y = y.expand(n, *shape)
        if tuple(y.shape) != (n, *shape):
            raise ConfigError(f"condition of shape {tuple(y.shape[1:]) if y.dim() else ()} given; "
                              f"this model takes {shape} per example ({n} of them)")
        return y

    # -- files ------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write `config.json` and `model.safetensors` (atomically) into `directory`."""
        from ..io import atomic_write_json, save_weights

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_weights(self.state_dict(), d / "model.safetensors")
        cfg_path = d / "config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        from .._version import RUN_FORMAT, __version__
        cfg.update({"family": self.family, "hparams": self.config, "data": self.spec.to_dict(),
                    "genlab_version": __version__, "format": RUN_FORMAT})
        atomic_write_json(cfg_path, cfg)
        return d


MODELS: dict[str, type[GenerativeModel]] = {}
#: models built from a run's config.json by a class other than the family's, keyed by the config
#: entry that marks them (a latent model: "latent"); `register_wrapper` fills it
WRAPPERS: dict[str, type[GenerativeModel]] = {}


def register_wrapper(key: str):
    """Class decorator: runs whose config.json holds `key` are built by `cls.from_config(cfg, directory)`
    (a classmethod returning the model, weights not loaded). Not a family: `genlab models` and
    `compare` do not list it."""

    def wrap(cls):
        WRAPPERS[key] = cls
        return cls

    return wrap


def register_model(name: str):
    """Class decorator: make a family available to `create_model(name, ...)` and the CLI."""

    def wrap(cls):
        cls.family = name
        MODELS[name] = cls
        return cls

    return wrap


#: hyperparameters every family that models vectors takes, set by the base class (not its __init__):
#: log_columns=true models the logs of the table's nonnegative columns (`use_log_columns`)
VECTOR_HPARAMS = {"log_columns": False}
VECTOR_HPARAM_RANGES = {"log_columns": Bool()}


def hyperparameters(family: str) -> dict[str, Any]:
    """A family's hyperparameters and their defaults (its __init__ signature, plus VECTOR_HPARAMS for
    families that model vectors)."""
    cls = get_family(family)
    sig = inspect.signature(cls.__init__)
    own = {k: p.default for k, p in sig.parameters.items() if k not in ("self", "spec")}
    return {**own, **VECTOR_HPARAMS} if "vector" in cls.kinds else own


def hparam_ranges(family: str) -> dict:
    """The valid values of each of a family's hyperparameters (its own and the vector ones)."""
    cls = get_family(family)
    return {**cls.hparam_ranges, **VECTOR_HPARAM_RANGES} if "vector" in cls.kinds else dict(cls.hparam_ranges)


def capabilities_of(family: str) -> list[str]:
    """What a family's models can do beyond train and sample (the methods its class defines),
    e.g. ["log_prob", "anomaly_score", "impute"]; an instance's `capabilities()` says the same."""
    cls = get_family(family)
    return [c for c in CAPABILITIES if hasattr(cls, CAPABILITY_METHODS.get(c, c))]


def get_family(name: str) -> type[GenerativeModel]:
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return MODELS[name]


def _normalise(value, default):
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def create_model(family: str, data, **hparams) -> GenerativeModel:
    """Build family `family` for `data` (a Dataset or DataSpec); hparams are its keyword arguments.

    The full set of hyperparameters (given ones plus defaults) is recorded in `model.config`.
    """
    cls = get_family(family)
    spec = data.spec if isinstance(data, Dataset) else data
    if spec.kind not in cls.kinds:
        raise ConfigError(f"'{family}' does not model {spec.kind} data (it models: {', '.join(cls.kinds)})")
    defaults = hyperparameters(family)
    for k in hparams:
        if k not in defaults:
            raise unknown_name(f"hyperparameter for '{family}'", k, defaults)
    derived = data_derived(cls, data, hparams)
    config = {k: _normalise(hparams.get(k, derived["hparams"].get(k, v)), v) for k, v in defaults.items()}
    check_settings(config, hparam_ranges(family), f"'{family}'")
    log_columns = config.pop("log_columns", False)
    if log_columns and spec.kind != "vector":
        raise ConfigError(f"log_columns=true is for tables (vector data); '{spec.name}' holds {spec.kind}s")
    if config.get("conditional"):
        if spec.condition_kind == "none":
            raise ConfigError(f"conditional=true needs labelled data (or paired data); '{spec.name}' has neither")
        if spec.condition_kind not in cls.condition_kinds:
            able = [n for n, c in MODELS.items() if spec.condition_kind in c.condition_kinds]
            what = ("class labels" if spec.condition_kind == "class" else
                    f"{spec.condition_type or 'tensor'} inputs")
            takes = " or ".join("paired data (an input tensor per example)" if k == "tensor" else "class labels"
                                for k in cls.condition_kinds)
            raise ConfigError(f"'{family}' cannot be conditioned on the {what} of '{spec.name}' (it takes {takes}; "
                              f"families that can: {', '.join(able) or 'none yet'})")
        if spec.unpaired and spec.condition_kind == "tensor" and not cls.learns_unpaired:
            able = [n for n, c in MODELS.items() if c.learns_unpaired]
            raise ConfigError(f"'{family}' learns from pairs, and '{spec.name}' is unpaired (its inputs and targets "
                              f"do not correspond): use {', '.join(able) or 'an unpaired family'}")
    try:
        model = cls(spec, **config)
    except (TypeError, ValueError) as e:
        if isinstance(e, GenlabError):
            raise
        raise ConfigError(f"invalid hyperparameters for '{family}': {e}") from e
    if log_columns:
        model.use_log_columns()
    if "log_columns" in hyperparameters(family):
        config["log_columns"] = log_columns
    model.config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    model.derived_defaults = derived
    return model


def data_derived(cls: type[GenerativeModel], data, given: dict) -> dict:
    """What `cls.data_defaults` chose for `data` (a Dataset or DataSpec) where `given` (the user's
    settings) is silent: {"hparams": {...}, "train": {...}, "data": {"dim": D, "n_train": N}}.
    Trainer settings in "train" are applied by `genlab.train` below the user's own."""
    spec = data.spec if isinstance(data, Dataset) else data
    n = len(data.train) if isinstance(data, Dataset) else None
    names = hyperparameters(cls.family) if cls.family in MODELS else {}
    chosen = {k: v for k, v in cls.data_defaults(spec, n).items() if k not in given}
    return {"hparams": {k: v for k, v in chosen.items() if k in names},
            "train": {k: v for k, v in chosen.items() if k not in names},
            "data": {"kind": spec.kind, "dim": spec.dim, "n_train": n}}


def _version_tuple(text) -> Optional[tuple]:
    parts = str(text).split("+")[0].split(".")
    try:
        return tuple(int(p) for p in parts[:3])
    except ValueError:
        return None


def read_run_config(directory) -> dict:
    """A run's config.json, checked before anything is built from it: JSON (never a pickle), a mapping with a
    family, hyperparameters and a data spec, written by this genlab or an older one (run format <= ours).
    Every problem is one GenlabError naming the file."""
    from .._version import RUN_FORMAT, __version__
    from ..io import read_json

    d = Path(directory)
    path = d / "config.json"
    if not path.is_file():
        raise GenlabError(f"{d}: not a genlab run or model directory (no config.json)")
    cfg = read_json(path, "JSON")
    if not isinstance(cfg, dict):
        raise GenlabError(f"{path}: not a genlab config (a JSON {type(cfg).__name__}, not a mapping)")
    theirs, ours = cfg.get("genlab_version"), _version_tuple(__version__)
    fmt = cfg.get("format", 1)
    newer = (isinstance(theirs, str) and _version_tuple(theirs) is not None and _version_tuple(theirs) > ours)
    if newer or not isinstance(fmt, int) or isinstance(fmt, bool) or fmt > RUN_FORMAT:
        made = f"genlab {theirs}" if isinstance(theirs, str) else "another genlab"
        raise GenlabError(f"{d}: written by {made} (run format {fmt}); this is genlab {__version__} (format "
                          f"{RUN_FORMAT}): upgrade genlab to load it")
    for key, kind in (("family", str), ("hparams", dict), ("data", dict)):
        if not isinstance(cfg.get(key), kind):
            raise GenlabError(f"{path}: not a genlab config ('{key}' {'missing' if key not in cfg else 'malformed'})")
    return cfg


def from_config(cfg: dict, directory=None) -> GenerativeModel:
    """The model a run's config.json describes (weights not loaded): the family's, or a wrapper's
    (see `register_wrapper`) where the config says so. `directory` is the run's (for relative paths).
    A config that names no family genlab knows, or values out of range, is a one-line GenlabError."""
    where = f"{Path(directory) / 'config.json'}: " if directory is not None else "config: "
    try:
        for key, cls in WRAPPERS.items():
            if key in cfg:
                return cls.from_config(cfg, directory)
        return create_model(cfg["family"], DataSpec.from_dict(cfg["data"]), **cfg["hparams"])
    except GenlabError as e:
        if directory is not None and str(directory) in str(e):
            raise
        raise type(e)(f"{where}{e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a malformed entry
        raise GenlabError(f"{where}malformed ({type(e).__name__}: {first_line(e)})") from None


def load_weights_into(model: nn.Module, state: dict, path) -> None:
    """`model.load_state_dict(state)`, or a one-line GenlabError when the weights do not fit the model
    (config.json's hyperparameters edited, or weights of another run)."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()] or [first_line(e)]
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise GenlabError(f"{path}: these weights do not fit the model config.json describes: {first_line(lines[0], 160)}"
                          f"{more}; was config.json edited?") from None


def load(directory, device=None) -> GenerativeModel:
    """Load a saved model (`config.json` + `model.safetensors`); never unpickles code."""
    from ..io import load_weights

    d = Path(directory)
    w_path = d / "model.safetensors"
    cfg = read_run_config(d)
    if not w_path.exists():
        raise GenlabError(f"{d}: no model.safetensors yet (training unfinished? try `genlab resume {d}`)")
    model = from_config(cfg, d)
    load_weights_into(model, load_weights(w_path), w_path)
    if device is not None:
        model.to(device)
    return model.eval()
