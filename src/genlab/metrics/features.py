"""Feature extractors for FID-style metrics: small shipped classifiers instead of Inception.

FID, precision/recall and similar metrics compare two sets of images in a feature
space. Inception-v3 features need a ~100 MB download and suit 299x299 colour photos,
not 8x8 or 28x28 grey digits, so genlab ships one small CNN per image data set
(`digits`, `mnist`, `fashion-mnist`), trained by `scripts/train_classifiers.py`;
its weights live in `genlab/metrics/weights/<name>.safetensors` next to a
`<name>.json` with the test accuracy, training settings and the file's sha256.

    ext = extractor_for(data.spec)        # shipped classifier, or a default (below)
    f = ext(x)                            # float64 CPU tensor [N, ext.dim]
    p = ext.probs(x)                      # class probabilities, if ext.has_classifier

Every extractor runs its network in eval mode under `torch.no_grad()`, in batches,
so features are deterministic (dropout off, batch-norm running statistics) and do
not depend on the caller's autograd or train/eval state.

Data sets without shipped weights get `default_extractor(spec)`: the flattened raw
values when the dimension is at most 64, else a fixed Gaussian random projection
to 64 dimensions (Johnson-Lindenstrauss style). Numbers computed with it are only
comparable between runs with the same extractor `name` and `weights_sha256`.

Inception features (`torchmetrics` / `torch_fidelity`) are not provided: their
weights must be downloaded at run time, and genlab works offline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DataError, GenlabError

DEFAULT_DIM = 64          # output size of the default random projection
PROJECTION_SEED = 0
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # = nn.classifier.WEIGHTS_DIR

# the network (and SHIPPED: data set -> its input shape) lives in nn/classifier.py, below the models,
# so a family can use the shipped classifier's features as a loss (pix2pix's SRGAN-style option)
from ..nn.classifier import FEATURE_DIM, SHIPPED, Classifier, build_classifier, load_classifier_state  # noqa: E402,F401


# ---------------------------------------------------------------- default (untrained) feature maps

class FlatFeatures(nn.Module):
    """The raw values, flattened: [N, ...] -> [N, D]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)


class RandomProjection(nn.Module):
    """x -> flatten(x) @ W / sqrt(D), W[D, k] with i.i.d. N(0, 1) entries, fixed by `seed`.

    W comes from NumPy's legacy `RandomState(seed).standard_normal`, whose stream is
    frozen across NumPy versions and platforms, so the projection (and its hash) is
    the same everywhere. Dividing by sqrt(D) keeps each output coordinate on the scale
    of one input value (its variance is the mean squared input); pairwise distances are
    preserved up to the common factor sqrt(k / D) within the Johnson-Lindenstrauss
    error. Computed in float64.
    """

    def __init__(self, in_dim: int, out_dim: int = DEFAULT_DIM, seed: int = PROJECTION_SEED):
        super().__init__()
        w = np.random.RandomState(seed).standard_normal((in_dim, out_dim)) / math.sqrt(in_dim)
        self.register_buffer("weight", torch.from_numpy(w))  # float64
        self.in_dim, self.out_dim, self.seed = in_dim, out_dim, seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).to(self.weight.dtype) @ self.weight


# ---------------------------------------------------------------- hashing

def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor of the state dict, sorted by name."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------- the extractor

def _has_method(module: nn.Module, name: str) -> bool:
    """True for a method defined on the module's class (not a sub-module called `features`)."""
    return callable(getattr(type(module), name, None)) and not isinstance(getattr(module, name), nn.Module)


class FeatureExtractor:
    """Images (or vectors) -> features, always in eval mode under `torch.no_grad()`.

    `module` maps a batch [B, *input_shape] to features [B, dim]: its `features(x)`
    method when it has one, else `module(x)`. A `logits(x)` method makes
    `has_classifier` True and enables `logits` / `probs`.

    The extractor owns the module: it puts it in eval mode when built and again
    before every call (so a stray `.train()` has no effect) and never restores it.

    Inputs: a float tensor or NumPy array [N, *input_shape], or [N, D] flattened
    (reshaped when D matches). Outputs: float64 CPU tensors, computed in batches of
    `batch_size` on `device`.

    Attributes: `name`, `dim`, `weights_sha256`, `has_classifier`, `input_shape`
    (None = any), `num_classes` (0 without a classifier), `metadata` (dict).
    """

    def __init__(self, module: nn.Module, name: str, *, dim: Optional[int] = None,
                 weights_sha256: Optional[str] = None, input_shape: Optional[Sequence[int]] = None,
                 batch_size: int = 250, device="cpu", metadata: Optional[dict] = None):
        if not isinstance(module, nn.Module):
            raise GenlabError(f"a feature extractor needs a torch nn.Module, got {type(module).__name__}")
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.name = str(name)
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        self.batch_size = int(batch_size)
        self.weights_sha256 = weights_sha256 or state_dict_sha256(module)
        self.metadata = dict(metadata or {})
        floats = [t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
        self._in_dtype = floats[0] if floats else None  # inputs are cast to the module's precision
        self._features = module.features if _has_method(module, "features") else module
        self._logits = module.logits if _has_method(module, "logits") else None
        self.has_classifier = self._logits is not None
        if dim is None:
            if self.input_shape is None:
                raise GenlabError("FeatureExtractor: give `dim` or `input_shape` (to probe the output size)")
            dim = self._run(self._features, torch.zeros(1, *self.input_shape)).shape[1]
        self.dim = int(dim)
        self.num_classes = 0
        if self.has_classifier:
            self.num_classes = int(getattr(module, "num_classes", 0) or 0)
            if not self.num_classes and self.input_shape is not None:
                self.num_classes = int(self._run(self._logits, torch.zeros(1, *self.input_shape)).shape[1])

    # -- public API
    def features(self, x) -> torch.Tensor:
        """[N, *input_shape] -> float64 CPU [N, dim]."""
        f = self._run(self._features, x, self.dim)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise GenlabError(f"{self.name}: features of shape {tuple(f.shape)}, expected [N, {self.dim}]")
        return f

    def __call__(self, x) -> torch.Tensor:
        """Same as `features(x)`."""
        return self.features(x)

    def logits(self, x) -> torch.Tensor:
        """[N, *input_shape] -> float64 CPU [N, num_classes]."""
        if not self.has_classifier:
            raise GenlabError(f"feature extractor '{self.name}' has no classifier head (no logits / probs)")
        return self._run(self._logits, x, self.num_classes)

    def probs(self, x) -> torch.Tensor:
        """Softmax of `logits`, float64 CPU [N, num_classes]; rows sum to 1."""
        return self.logits(x).softmax(-1)

    def predict(self, x) -> torch.Tensor:
        """Most likely class, int64 [N]."""
        return self.logits(x).argmax(-1)

    def info(self) -> dict:
        """What to record next to a metric so that numbers stay comparable."""
        return {"name": self.name, "dim": self.dim, "weights_sha256": self.weights_sha256,
                "input_shape": list(self.input_shape) if self.input_shape else None}

    def __repr__(self) -> str:
        return (f"FeatureExtractor({self.name!r}, dim={self.dim}, input_shape={self.input_shape}, "
                f"classifier={self.has_classifier}, sha256={self.weights_sha256[:12]})")

    # -- internals
    def _prepare(self, x) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise DataError(f"{self.name}: expected a tensor or array of examples, got {type(x).__name__}")
        if x.dtype == torch.uint8:
            raise DataError(f"{self.name}: uint8 input; give float images in [0, 1] (divide by 255)")
        if not x.is_floating_point():
            x = x.float()
        if x.ndim == 0:
            raise DataError(f"{self.name}: expected a batch [N, ...], got a scalar")
        shape = self.input_shape
        if shape is not None and tuple(x.shape[1:]) != shape:
            if x[0].numel() == math.prod(shape):
                x = x.reshape(len(x), *shape)
            else:
                raise DataError(f"{self.name}: examples of shape {tuple(x.shape[1:])}, this extractor takes "
                                f"{shape} (or {math.prod(shape)} flat values)")
        return x

    def _run(self, fn, x, width: Optional[int] = None) -> torch.Tensor:
        x = self._prepare(x)
        if self._in_dtype is not None:
            x = x.to(self._in_dtype)
        self.module.eval()
        if len(x) == 0:
            return torch.zeros(0, width or 0, dtype=torch.float64)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                # a fresh copy with standard strides: kernels pick their algorithm from the memory layout
                # (a size-1 channel dim with stride 1 reads as channels-last), so the same values in
                # differently laid out tensors could otherwise give features differing in the last bits
                xb = x[i:i + self.batch_size].to(self.device).clone(memory_format=torch.contiguous_format)
                out.append(fn(xb).detach().to("cpu", torch.float64))
        return torch.cat(out)


# ---------------------------------------------------------------- shipped, default, and the choice

def weights_path(dataset_name: str) -> Path:
    return WEIGHTS_DIR / f"{dataset_name}.safetensors"


@functools.lru_cache(maxsize=None)
def _load_shipped(dataset_name: str) -> tuple[dict, str, dict]:
    path = weights_path(dataset_name)
    state = load_classifier_state(path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return state, sha256_file(path), meta


def shipped_extractor(dataset_name: str, *, batch_size: int = 250, device="cpu") -> FeatureExtractor:
    """The classifier trained on `dataset_name` ('digits', 'mnist' or 'fashion-mnist').

    Features: 128 penultimate activations; `probs` over its 10 classes. The name is
    `genlab-classifier-<dataset>` and `weights_sha256` the sha256 of the shipped file.
    """
    if dataset_name not in SHIPPED:
        from ..errors import unknown_name
        raise unknown_name("data set with a shipped classifier", dataset_name, SHIPPED)
    state, sha, meta = _load_shipped(dataset_name)
    net = build_classifier(dataset_name, state)
    return FeatureExtractor(net, f"genlab-classifier-{dataset_name}", dim=net.feature_dim, weights_sha256=sha,
                            input_shape=SHIPPED[dataset_name], batch_size=batch_size, device=device,
                            metadata=meta)


def default_extractor(spec, *, out_dim: int = DEFAULT_DIM, seed: int = PROJECTION_SEED,
                      batch_size: int = 1000, device="cpu") -> FeatureExtractor:
    """For data without shipped weights (any `DataSpec`, or a `Dataset`).

    spec.dim <= 64: the raw values flattened (name `identity-<D>`). Otherwise a fixed
    Gaussian random projection to 64 dims, W ~ N(0, 1) from NumPy `RandomState(0)`,
    features = flatten(x) @ W / sqrt(D) (name `random-projection-<D>to64-seed0`).
    """
    spec = getattr(spec, "spec", spec)
    d = int(spec.dim)
    if d <= out_dim:
        return FeatureExtractor(FlatFeatures(), f"identity-{d}", dim=d, input_shape=spec.shape,
                                weights_sha256=hashlib.sha256(f"identity:{d}".encode()).hexdigest(),
                                batch_size=batch_size, device=device)
    proj = RandomProjection(d, out_dim, seed)
    return FeatureExtractor(proj, f"random-projection-{d}to{out_dim}-seed{seed}", dim=out_dim,
                            input_shape=spec.shape, batch_size=batch_size, device=device)


def extractor_for(spec, user_module: Optional[nn.Module] = None, **kwargs) -> FeatureExtractor:
    """The feature extractor to use for data described by `spec` (a DataSpec or Dataset).

    1. `user_module` if given (its `features(x)` or `forward(x)`; `logits(x)` optional),
       named `user:<ClassName>`, hashed by its state dict;
    2. the shipped classifier if the data set is digits / mnist / fashion-mnist or derived
       from one (by `spec.domain`, `spec.source["name"]` or `spec.name`) with the matching image shape;
    3. else `default_extractor(spec)`.
    """
    spec = getattr(spec, "spec", spec)
    if user_module is not None:
        return FeatureExtractor(user_module, f"user:{type(user_module).__name__}", input_shape=spec.shape, **kwargs)
    shape = tuple(spec.shape)
    for name in (getattr(spec, "domain", None), (spec.source or {}).get("name"), spec.name):
        if name in SHIPPED and SHIPPED[name] == shape:
            return shipped_extractor(name, **kwargs)
    return default_extractor(spec, **kwargs)


__all__ = ["Classifier", "FeatureExtractor", "FlatFeatures", "RandomProjection", "SHIPPED", "FEATURE_DIM",
           "shipped_extractor", "default_extractor", "extractor_for", "weights_path", "sha256_file",
           "state_dict_sha256"]
