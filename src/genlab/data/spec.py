"""What a data set is to the rest of genlab: tensors, labels and a spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch

from ..errors import DataError
from .lazy import is_lazy

#: the fewest training examples a model can learn from: standardising a feature, batch norm and
#: a GAN's minibatch statistics all need a spread, which one example does not have
MIN_TRAIN = 2
#: pixels a side of a "small image" (the 8 x 8 digits, 16 x 16 icons): families' data-aware defaults
#: give such images smaller networks and larger steps (GenerativeModel.data_defaults)
SMALL_IMAGE = 16


@dataclass
class DataSpec:
    """Shape and kind of one example, enough to build a model without the data.

    `kind` is "image" (C x H x W floats in [0, 1]) or "vector" (D floats).
    `source` records how to load the set again: {"name": ..., "options": {...}}.
    `levels` is the number of intensity levels of quantised images (256 for 8-bit,
    17 for scikit-learn's digits), None for continuous data; bits/dim uses it.

    The condition an example may carry (`condition_kind`): "none"; "class", labels in
    0..num_classes-1; or "tensor", one tensor of `condition_shape` per example (an image
    C x H x W, a vector D, a mask), of type `condition_type` ("image", "vector", "mask").
    Class labels and tensor conditions can exist side by side (a paired set of digits
    keeps its labels for evaluation); a tensor condition, when present, is what
    conditional models are conditioned on.
    """

    kind: str
    shape: tuple[int, ...]
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    name: str = "data"
    source: dict = field(default_factory=dict)
    levels: Optional[int] = None
    condition_shape: Optional[tuple[int, ...]] = None
    condition_type: Optional[str] = None
    #: the registered set whose images x are, for a set derived from it (digits-sr's targets
    #: are digits): evaluation then uses that set's shipped feature extractor
    domain: Optional[str] = None
    #: True when the training x and c are two collections with no correspondence (x[i] is not the
    #: translation of c[i]): data for unpaired translation (CycleGAN). Its test split is paired, so
    #: outputs can be scored against targets. Families that learn from pairs (pix2pix, a conditional
    #: diffusion model) refuse it.
    unpaired: bool = False
    #: False when not even the test inputs and targets correspond (MNIST <-> Fashion-MNIST, two folders
    #: of unrelated images): outputs are then scored as a distribution (FD, precision/recall, class
    #: balance), never against a target (no PSNR/SSIM, no per-example class accuracy)
    paired_test: bool = True

    @property
    def condition_kind(self) -> str:
        """"tensor" (paired data), "class" (labelled data) or "none"."""
        if self.condition_shape is not None:
            return "tensor"
        return "class" if self.num_classes > 1 else "none"

    @property
    def small_image(self) -> bool:
        """Images of at most SMALL_IMAGE x SMALL_IMAGE pixels."""
        return self.kind == "image" and max(self.shape[-2:]) <= SMALL_IMAGE

    @property
    def dim(self) -> int:
        d = 1
        for s in self.shape:
            d *= s
        return d

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        if self.condition_shape is None:  # run files of unconditioned data look as they always did
            d.pop("condition_shape"), d.pop("condition_type")
        else:
            d["condition_shape"] = list(self.condition_shape)
        if self.domain is None:
            d.pop("domain")
        if not self.unpaired:
            d.pop("unpaired")
        if self.paired_test:
            d.pop("paired_test")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        d = dict(d)
        d["shape"] = tuple(d["shape"])
        if d.get("condition_shape") is not None:
            d["condition_shape"] = tuple(d["condition_shape"])
        return cls(**d)


@dataclass
class Dataset:
    """Train and test splits as tensors, labels where they exist, and the spec.

    Paired sets carry a tensor condition per example (`train_cond`, `test_cond`, shape
    spec.condition_shape): the input image of an image-to-image task, say.
    Toy sets also carry `sampler(n, generator) -> Tensor` and, where it exists,
    `log_density(x) -> Tensor[N]` (nats), the true density.
    """

    train: torch.Tensor
    test: torch.Tensor
    spec: DataSpec
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    location: str = "embedded"
    sampler: Optional[Callable] = None
    log_density: Optional[Callable] = None
    train_cond: Optional[torch.Tensor] = None
    test_cond: Optional[torch.Tensor] = None

    def __post_init__(self):
        validate(self)

    def conditions(self, split: str, kind: str) -> Optional[torch.Tensor]:
        """What a model whose condition is `kind` gets as y for `split` ("train" or "test"):
        the tensor conditions for "tensor", else the class labels (None where there are none)."""
        if kind == "tensor":
            return self.train_cond if split == "train" else self.test_cond
        return self.train_labels if split == "train" else self.test_labels

    @property
    def class_names(self) -> list[str]:
        return self.spec.class_names

    def select_classes(self, classes) -> "Dataset":
        """Keep only examples whose label is in `classes`, indices or label names (labels keep their meaning)."""
        if self.train_labels is None:
            raise DataError(f"data set '{self.spec.name}' has no labels, so --classes cannot select from it")
        names = [str(n) for n in self.spec.class_names]

        def index(c):  # an index, or a label name ("setosa")
            if isinstance(c, str) and c.strip() in names:
                return names.index(c.strip())
            try:
                return int(c)
            except (TypeError, ValueError):
                raise DataError(f"class {c!r} not in data set '{self.spec.name}' "
                                f"(labels: {', '.join(names) or 'none'})") from None

        classes = sorted({index(c) for c in classes})
        bad = [c for c in classes if not 0 <= c < self.spec.num_classes]
        if bad:
            raise DataError(f"classes {bad} not in data set '{self.spec.name}' (labels 0..{self.spec.num_classes - 1})")
        keep = torch.tensor(classes)
        tr = torch.isin(self.train_labels, keep)
        te = torch.isin(self.test_labels, keep)
        spec = DataSpec(**{**self.spec.__dict__})
        spec.source = {**spec.source, "classes": classes}
        cond = (None, None) if self.train_cond is None else (self.train_cond[tr], self.test_cond[te])
        pick = lambda x, m: x.take(m) if is_lazy(x) else x[m]  # noqa: E731  (lazy splits stay lazy)
        return Dataset(pick(self.train, tr), pick(self.test, te), spec, self.train_labels[tr], self.test_labels[te],
                       self.location, self.sampler, self.log_density, *cond)

    def __repr__(self) -> str:
        cond = f", condition={self.spec.condition_shape}" if self.spec.condition_shape else ""
        return (f"Dataset({self.spec.name!r}, kind={self.spec.kind}, shape={self.spec.shape}, "
                f"train={len(self.train)}, test={len(self.test)}, classes={self.spec.num_classes}{cond})")


def validate(ds: Dataset) -> None:
    """One clear error for each way a data set can be unusable."""
    name = ds.spec.name
    for split, x, y in (("train", ds.train, ds.train_labels), ("test", ds.test, ds.test_labels)):
        if is_lazy(x):  # read on demand: check the first examples here, the rest as they are read
            if len(x) == 0:
                raise DataError(f"{name}: the {split} split is empty")
            x = x[:64]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise DataError(f"{name}: {split} split must be a float tensor")
        if len(x) == 0:
            raise DataError(f"{name}: the {split} split is empty")
        if split == "train" and len(ds.train) < MIN_TRAIN:
            raise DataError(f"{name}: the train split has {len(ds.train)} example; "
                            f"training needs at least {MIN_TRAIN}")
        if tuple(x.shape[1:]) != tuple(ds.spec.shape):
            raise DataError(f"{name}: {split} examples have shape {tuple(x.shape[1:])}, spec says {tuple(ds.spec.shape)}")
        if x.numel() == 0:
            raise DataError(f"{name}: {split} examples have no values (shape {tuple(x.shape[1:])})")
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).reshape(len(x), -1).any(1).sum())
            raise DataError(f"{name}: {bad} {split} examples contain NaN or Inf values")
        if ds.spec.kind == "image" and (x.min() < 0 or x.max() > 1):
            raise DataError(f"{name}: image values must lie in [0, 1], found [{x.min():.3g}, {x.max():.3g}]")
        if y is not None:
            if len(y) != len(ds.train if split == "train" else ds.test):
                raise DataError(f"{name}: {len(y)} {split} labels for {len(x)} examples")
            if len(y) and (y.min() < 0 or y.max() >= max(ds.spec.num_classes, 1)):
                raise DataError(f"{name}: {split} labels outside 0..{ds.spec.num_classes - 1}")
    conds = (ds.train_cond, ds.test_cond)
    if ds.spec.condition_shape is None:
        if any(c is not None for c in conds):
            raise DataError(f"{name}: conditions given but the spec declares none (set condition_shape)")
        if ds.spec.unpaired:
            raise DataError(f"{name}: unpaired data needs a second collection (conditions; set condition_shape)")
        return
    if not ds.spec.paired_test and not ds.spec.unpaired:
        raise DataError(f"{name}: a test split without pairs needs unpaired training data too (unpaired=True)")
    for split, x, c in (("train", ds.train, ds.train_cond), ("test", ds.test, ds.test_cond)):
        if not isinstance(c, torch.Tensor) or not c.is_floating_point():
            raise DataError(f"{name}: the {split} split needs a float tensor of conditions")
        if len(c) != len(x):
            raise DataError(f"{name}: {len(c)} {split} conditions for {len(x)} examples")
        if tuple(c.shape[1:]) != tuple(ds.spec.condition_shape):
            raise DataError(f"{name}: {split} conditions have shape {tuple(c.shape[1:])}, "
                            f"spec says {tuple(ds.spec.condition_shape)}")
        if not torch.isfinite(c).all():
            raise DataError(f"{name}: {split} conditions contain NaN or Inf values")
