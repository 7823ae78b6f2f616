"""Paired data: every example x comes with a condition c (a tensor: an image, a vector, a mask).

Two ways in, both through `load_dataset`:

  - a `.npz` with `x` (the targets) and `c` (the inputs / conditions), optional `y` or
    `labels`; or `train`, `test`, `train_c`, `test_c` (optional `train_labels`, `test_labels`);
  - a folder holding exactly two sub-folders `A/` (inputs, the conditions) and `B/`
    (targets), images paired by file name (`A/0001.png` with `B/0001.png`, extensions may
    differ), as in the pix2pix data sets (A -> B). With `unpaired=True` (`--set data.unpaired=true`)
    A/ and B/ are two unrelated collections of any names and sizes, as in the CycleGAN data sets
    (horse2zebra): each is split on its own, and only families that learn unpaired take it.

The condition's shape may differ from the target's (a 7x7 input for a 28x28 target): the
spec records it (`condition_shape`), and conditional families decide how to use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .spec import DataSpec, Dataset

PAIR_FOLDERS = ("A", "B")  # inputs (conditions), targets


def is_paired_folder(path: Path) -> bool:
    """True for a folder whose only sub-folders are A/ and B/ (and no loose images)."""
    from .folder import _images_in

    subs = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    return subs == list(PAIR_FOLDERS) and not _images_in(path)


def _kind_of(a: np.ndarray) -> str:
    return "image" if a.ndim == 4 else "vector"


def paired_dataset(x: np.ndarray, c: np.ndarray, labels, name: str, location: str, test_fraction: float,
                   seed: int, levels=None, class_names=None, split=None) -> Dataset:
    """A Dataset of (x, c[, label]) triples, split with a seeded `test_fraction` unless `split`
    gives (train indices, test indices)."""
    from .arrays import class_count, split_indices

    if len(x) != len(c):
        raise DataError(f"{location}: {len(c)} conditions for {len(x)} examples")
    itr, ite = split if split is not None else split_indices(len(x), test_fraction, seed, location)
    k = 0 if labels is None else class_count(location, labels)
    spec = DataSpec(_kind_of(x), tuple(x.shape[1:]), k, class_names or [str(i) for i in range(k)], name=name,
                    levels=levels, condition_shape=tuple(c.shape[1:]), condition_type=_kind_of(c))
    t = torch.from_numpy
    lab = (lambda i: None) if labels is None else (lambda i: t(labels[i]))
    return Dataset(t(x[itr]), t(x[ite]), spec, lab(itr), lab(ite), location=location,
                   train_cond=t(c[itr]), test_cond=t(c[ite]))


def load_paired_folder(path, size=None, mode: str | None = None, test_fraction: float = 0.2,
                       seed: int = 0, unpaired: bool = False) -> Dataset:
    """Images in A/ (inputs) and B/ (targets) paired by file name; `size`/`mode` apply to both
    (by default each side keeps its own size and is grayscale when all its images are).
    `unpaired=True`: two unrelated collections (`unpaired_folders`)."""
    from .folder import IMAGE_SUFFIXES, _images_in, _parse_size, read_images

    path = Path(path).expanduser()
    hw = _parse_size(size, path)
    sides = {}
    for side in PAIR_FOLDERS:
        files = _images_in(path / side)
        if not files:
            raise DataError(f"{path / side}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        by_stem = {}
        for f in files:
            if f.stem in by_stem:
                raise DataError(f"{path / side}: two images named {f.stem} ({by_stem[f.stem].name}, {f.name})")
            by_stem[f.stem] = f
        sides[side] = by_stem
    a, b = sides["A"], sides["B"]
    if unpaired:
        c, _ = read_images([a[n] for n in sorted(a)], path, mode, hw)
        x, _ = read_images([b[n] for n in sorted(b)], path, mode, hw)
        return unpaired_collections(x, c, path.name, str(path), test_fraction, seed, levels=256)
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        what = "; ".join(s for s in (f"{len(only_a)} only in A/ (e.g. {a[only_a[0]].name})" if only_a else "",
                                     f"{len(only_b)} only in B/ (e.g. {b[only_b[0]].name})" if only_b else "") if s)
        raise DataError(f"{path}: A/ and B/ must hold images with the same names: {what}")
    names = sorted(a)
    c, _ = read_images([a[n] for n in names], path, mode, hw)
    x, _ = read_images([b[n] for n in names], path, mode, hw)
    return paired_dataset(x, c, None, path.name, str(path), test_fraction, seed, levels=256)


def unpaired_collections(x: np.ndarray, c: np.ndarray, name: str, location: str, test_fraction: float,
                         seed: int, levels=None) -> Dataset:
    """Two unrelated collections, B = x (targets' domain) and A = c (inputs' domain), each split on
    its own with a seeded `test_fraction`. Training: the smaller collection is repeated to the
    larger's length (every image of both is used; the Trainer's shuffling pairs them at random).
    Test: both cut to the shorter length; its "pairs" mean nothing (`paired_test=False`)."""
    from .arrays import split_indices

    (btr, bte), (atr, ate) = (split_indices(len(v), test_fraction, seed, f"{location} ({side}/)")
                              for v, side in ((x, "B"), (c, "A")))
    n_train, n_test = max(len(btr), len(atr)), min(len(bte), len(ate))
    btr, atr = np.resize(btr, n_train), np.resize(atr, n_train)
    spec = DataSpec(_kind_of(x), tuple(x.shape[1:]), name=name, levels=levels, condition_shape=tuple(c.shape[1:]),
                    condition_type=_kind_of(c), unpaired=True, paired_test=False)
    t = torch.from_numpy
    return Dataset(t(x[btr]), t(x[bte[:n_test]]), spec, location=location,
                   train_cond=t(c[atr]), test_cond=t(c[ate[:n_test]]))


def read_paired_npz(arrays: dict, path, kind, test_fraction: float, seed: int) -> Dataset:
    """A Dataset from a .npz's arrays that name conditions (`c`, or `train_c` / `test_c`)."""
    from .arrays import _check_labels, _examples

    if "train_c" in arrays or "test_c" in arrays:
        need = ("train", "test", "train_c", "test_c")
        missing = [k for k in need if k not in arrays]
        if missing:
            raise DataError(f"{path}: paired train/test arrays need {', '.join(need)}; missing {', '.join(missing)}")
        xtr, kind = _examples(arrays["train"], path, kind, "train")
        xte, _ = _examples(arrays["test"], path, kind, "test")
        ctr, _ = _examples(arrays["train_c"], path, None, "train conditions")
        cte, _ = _examples(arrays["test_c"], path, None, "test conditions")
        for what, u, v in (("examples", xtr, xte), ("conditions", ctr, cte)):
            if u.shape[1:] != v.shape[1:]:
                raise DataError(f"{path}: train {what} have shape {u.shape[1:]} but test {what} {v.shape[1:]}")
        ytr, yte = arrays.get("train_labels"), arrays.get("test_labels")
        if (ytr is None) != (yte is None):
            raise DataError(f"{path}: labels for only one of train/test; give both train_labels and test_labels")
        x, c = np.concatenate([xtr, xte]), np.concatenate([ctr, cte])
        y = None if ytr is None else np.concatenate([_check_labels(ytr, len(xtr), path, "train"),
                                                    _check_labels(yte, len(xte), path, "test")])
        split = (np.arange(len(xtr)), np.arange(len(xtr), len(x)))
    else:
        if "x" not in arrays:
            raise DataError(f"{path}: paired data needs an array 'x' (targets) beside 'c' (conditions)")
        x, kind = _examples(arrays["x"], path, kind)
        c, _ = _examples(arrays["c"], path, None, "conditions")
        y = next((arrays[k] for k in ("y", "labels") if k in arrays), None)
        y = None if y is None else _check_labels(y, len(x), path)
        split = None
    return paired_dataset(x, c, y, Path(path).stem, str(path), test_fraction, seed, split=split)


def load_conditions(path, shape: tuple) -> torch.Tensor:
    """Conditions for sampling from a file: a `.npy` of one condition (`shape`) or of N
    (N x `shape`; images may be N x H x W, or uint8 0..255), or an image file (png, jpg, ...)
    for an image condition. Returns N x `shape` floats; a clear error for anything else."""
    from .folder import IMAGE_SUFFIXES, read_images

    path = Path(path).expanduser()
    shape = tuple(shape)
    if not path.is_file():
        raise DataError(f"no such condition file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        from .arrays import load_npy

        a = load_npy(path, "array of conditions")
        if a.dtype.kind not in "biuf":
            raise DataError(f"{path}: array of {a.dtype} is not numeric")
        a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
        if a.shape == shape or (len(shape) == 3 and shape[0] == 1 and a.shape == shape[1:]):
            a = a.reshape(1, *shape)
        elif len(shape) == 3 and shape[0] == 1 and a.shape[1:] == shape[1:]:
            a = a[:, None]
        if a.shape[1:] != shape:
            raise DataError(f"{path}: conditions of shape {a.shape[1:] if a.ndim > 1 else a.shape}; "
                            f"this model takes {shape} per example")
    elif suffix in IMAGE_SUFFIXES:
        if len(shape) != 3:
            raise DataError(f"{path}: an image, but this model's condition is a vector of shape {shape}")
        a, _ = read_images([path], path.parent, "L" if shape[0] == 1 else "RGB")
        if a.shape[1:] != shape:
            raise DataError(f"{path}: image of {a.shape[2]}x{a.shape[3]} with {a.shape[1]} channel(s); "
                            f"this model takes {shape[1]}x{shape[2]} with {shape[0]}")
    else:
        raise DataError(f"{path}: a condition file must be .npy or an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not np.isfinite(a).all():
        raise DataError(f"{path}: conditions contain NaN or Inf values")
    return torch.from_numpy(np.ascontiguousarray(a))
