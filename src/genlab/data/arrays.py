"""User data from `.npy`, `.npz` and `.csv` files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .lazy import should_stream
from .spec import DataSpec, Dataset


def split_indices(n: int, test_fraction: float, seed: int, where) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random (train, test) split of range(n); both sides non-empty."""
    if not 0 < test_fraction < 1:
        raise DataError(f"{where}: test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if n < 2:
        raise DataError(f"{where}: only {n} example(s); need at least 2 to split into train and test")
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def load_array_file(path, labels=None, test_fraction: float = 0.2, seed: int = 0, kind: str | None = None,
                    label_column=None, stream: bool | None = None) -> Dataset:
    """Load `.npy`, `.npz` or `.csv` data into a Dataset.

    - `.npy`: one array, N x D vectors or N x H x W / N x C x H x W images
      (N x H x W x C with C in 1, 3, 4 is moved to channels-first).
    - `.npz`: `x` (with optional `y` or `labels`), or `train` / `test` (with optional
      `train_labels` / `test_labels`); a single unnamed array also works. With `c` (or
      `train_c` / `test_c`) beside them it is paired data: see `genlab.data.paired`.
    - `.csv`: numbers, optional header row; `label_column=` (header name or 0-based
      index, negative counts from the end) takes labels out of the table; text labels
      become classes named after them (sorted).

    `labels` (array or `.npy` / text file path) labels `x`. Without an explicit test
    set, a seeded `test_fraction` is held out. `kind` is inferred: 2-D arrays are
    'vector', 3-D / 4-D 'image' (values in [0, 1]; uint8 is divided by 255);
    kind='vector' flattens images. A `.npy` is memory-mapped and read as batches are drawn
    (`genlab.data.lazy.NpyRows`) with `stream=True`, or with None when its decoded float32
    size exceeds `lazy.stream_threshold()`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if kind not in (None, "vector", "image"):
        raise DataError(f"{path}: kind must be 'vector' or 'image', got {kind!r}")
    suffix = path.suffix.lower()
    class_names = None
    xtr = xte = ytr = yte = None
    if suffix == ".npy" and stream is not False:
        mapped = _np_load(path, mmap_mode="r")
        if mapped.ndim >= 1 and should_stream(stream, len(mapped), mapped.shape[1:]):
            return _stream_npy(path, mapped, labels, test_fraction, seed, kind, label_column)
    if suffix == ".npy":
        x, y = _np_load(path), None
    elif suffix == ".npz":
        arrays = _read_npz_arrays(path)
        if {"c", "train_c", "test_c"} & set(arrays):  # paired: every example has a condition
            from .paired import read_paired_npz

            if labels is not None or label_column is not None:
                raise DataError(f"{path}: paired .npz files carry their labels inside (y or labels)")
            return read_paired_npz(arrays, path, kind, test_fraction, seed)
        x, y, xtr, xte, ytr, yte = _read_npz(path, arrays)
    elif suffix == ".csv":
        x, y, class_names = _read_csv(path, label_column)
    else:
        raise DataError(f"{path}: unsupported file type (use .npy, .npz or .csv)")
    if label_column is not None and suffix != ".csv":
        raise DataError(f"{path}: label_column= only applies to .csv files")

    if xtr is None:  # one array: check it whole (row numbers match the file), then split
        x, kind = _examples(x, path, kind)
        if labels is not None:
            y = _read_labels(labels, path)
        y = _check_labels(y, len(x), path) if y is not None else None
        itr, ite = split_indices(len(x), test_fraction, seed, path)
        xtr, xte = x[itr], x[ite]
        ytr, yte = (y[itr], y[ite]) if y is not None else (None, None)
    else:
        if labels is not None:
            raise DataError(f"{path}: labels= cannot label separate train/test arrays; "
                            "store train_labels / test_labels in the .npz")
        xtr, kind = _examples(xtr, path, kind, "train")
        xte, _ = _examples(xte, path, kind, "test")
        if xtr.shape[1:] != xte.shape[1:]:
            raise DataError(f"{path}: train examples have shape {xtr.shape[1:]} but test examples {xte.shape[1:]}")
        if (ytr is None) != (yte is None):
            raise DataError(f"{path}: labels for only one of train/test; give both train_labels and test_labels")
        if ytr is not None:
            ytr = _check_labels(ytr, len(xtr), path, "train")
            yte = _check_labels(yte, len(xte), path, "test")

    num_classes = 0
    if ytr is not None:
        num_classes = int(max(ytr.max(), yte.max())) + 1
        if class_names is None or len(class_names) != num_classes:
            class_names = [str(i) for i in range(num_classes)]
    spec = DataSpec(kind, tuple(xtr.shape[1:]), num_classes, class_names or [], name=path.stem)
    as_labels = (lambda a: torch.from_numpy(a)) if ytr is not None else (lambda a: None)
    return Dataset(torch.from_numpy(xtr), torch.from_numpy(xte), spec, as_labels(ytr), as_labels(yte),
                   location=str(path))


def _stream_npy(path, mapped, labels, test_fraction, seed, kind, label_column) -> Dataset:
    """A memory-mapped .npy as two lazy splits (the same seeded split as in memory)."""
    from .lazy import NpyRows

    if label_column is not None:
        raise DataError(f"{path}: label_column= only applies to .csv files")
    _, kind = _examples(mapped[:1], path, kind)
    y = _check_labels(_read_labels(labels, path), len(mapped), path) if labels is not None else None
    itr, ite = split_indices(len(mapped), test_fraction, seed, path)
    xtr, xte = NpyRows(path, itr, kind), NpyRows(path, ite, kind)
    k = int(y.max()) + 1 if y is not None else 0
    spec = DataSpec(kind, tuple(xtr.example_shape), k, [str(i) for i in range(k)], name=path.stem)
    as_labels = (lambda i: torch.from_numpy(y[i])) if y is not None else (lambda i: None)
    return Dataset(xtr, xte, spec, as_labels(itr), as_labels(ite), location=str(path))


def _np_load(path, **kw):
    try:
        return np.load(path, allow_pickle=False, **kw)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read as NumPy data ({e})") from None


def _read_npz_arrays(path) -> dict:
    with _np_load(path) as z:
        try:  # a .npz reads its arrays when asked: a pickled (object) array is refused here
            return {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path}: cannot read as NumPy data ({e})") from None


def _read_npz(path, a: dict):
    first = lambda *keys: next((a[k] for k in keys if k in a), None)  # noqa: E731
    if "train" in a or "test" in a:
        if not ("train" in a and "test" in a):
            raise DataError(f"{path}: has '{'train' if 'train' in a else 'test'}' without "
                            f"'{'test' if 'train' in a else 'train'}'; give both, or one array named 'x'")
        return None, None, a["train"], a["test"], a.get("train_labels"), a.get("test_labels")
    if "x" in a:
        return a["x"], first("y", "labels"), None, None, None, None
    if len(a) == 1:
        return next(iter(a.values())), None, None, None, None, None
    raise DataError(f"{path}: no array named 'x' or 'train'/'test' (found: {', '.join(sorted(a)) or 'none'})")


def _examples(x, path, kind, split=""):
    """Checked float32 examples and their kind from a raw array."""
    where = f"{path}" + (f" ({split})" if split else "")
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: array of {x.dtype} is not numeric")
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{where}: {x.ndim}-D array of shape {x.shape}; need N x D vectors, "
                        "or N x H x W / N x C x H x W images")
    if x.size == 0:
        raise DataError(f"{where}: empty (array of shape {x.shape})")
    if x.ndim == 2 and kind == "image":
        raise DataError(f"{where}: kind='image' needs N x H x W or N x C x H x W arrays, got {x.shape}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    kind = kind or ("vector" if x.ndim == 2 else "image")
    if kind == "vector":
        x = x.reshape(len(x), -1)
    scale = 255.0 if kind == "image" and x.dtype == np.uint8 else 1.0
    x = np.ascontiguousarray(x, dtype=np.float32)
    if scale != 1.0:
        x /= scale
    finite = np.isfinite(x).reshape(len(x), -1).all(1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(f"{where}: {len(bad)} examples contain NaN or Inf values (first: example {bad[0]})")
    if kind == "image" and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{where}: image values must lie in [0, 1], found [{x.min():.3g}, {x.max():.3g}]; "
                        "rescale them, or pass kind='vector'")
    return x, kind


def _read_labels(labels, path):
    if isinstance(labels, (str, Path)):
        lp = Path(labels)
        if not lp.is_file():
            raise DataError(f"{path}: labels file not found: {lp}")
        if lp.suffix.lower() == ".npy":
            return _np_load(lp)
        try:
            return np.loadtxt(lp, ndmin=1)
        except ValueError as e:
            raise DataError(f"{lp}: cannot read labels ({e})") from None
    if isinstance(labels, torch.Tensor):
        return labels.detach().cpu().numpy()
    return np.asarray(labels)


def _check_labels(y, n, path, split=""):
    """Labels as int64 0..K-1, one per example."""
    where = f"{path}" + (f" ({split})" if split else "")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one integer per example, got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} examples")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all())):
        raise DataError(f"{where}: labels must be whole numbers 0, 1, 2, ...")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: labels must be 0 or more, found {y.min():g}")
    return y.astype(np.int64)


MISSING_CELLS = ("", "na", "nan", "n/a", "null", "?")


def read_table(path, label_column=None, *, allow_missing: bool = True) -> dict:
    """A CSV table as it is, unsplit, for imputation: {"x": float32 [N, D] with NaN in missing cells
    (empty, NA, NaN, N/A, null, ?), "labels": int64 [N] or None, "class_names", "header" (the feature
    columns' names or None), "label_name"}. Training data never goes through here: `load_array_file`
    rejects missing cells."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    x, y, names, header, col = _read_csv(path, label_column, allow_missing=allow_missing, details=True)
    if y is not None:
        y = _check_labels(y, len(x), path)
    feats = None if header is None else [h for j, h in enumerate(header) if j != col]
    return {"x": x, "labels": y, "class_names": names, "header": feats,
            "label_name": None if col is None else (header[col] if header else str(col))}


def _read_csv(path, label_column, allow_missing: bool = False, details: bool = False):
    """Numeric table -> (x, labels or None, class names or None); optional header row. With
    allow_missing, cells such as "" or "NA" become NaN (imputation's input only); details=True
    adds the header (or None) and the label column's index."""
    rows = []  # (line number, cells), blank lines skipped
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(c.strip() for c in row):
                    rows.append((reader.line_num, row))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable text CSV file ({e})") from None
    if not rows:
        raise DataError(f"{path}: empty (no rows)")
    header = None
    first = list(rows[0][1])
    j = _as_int(label_column)
    if j is not None and -len(first) <= j < len(first):
        del first[j]  # a text label in the first row does not make it a header
    if any(not (_is_number(c) or (allow_missing and c.strip().lower() in MISSING_CELLS)) for c in first):
        header = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
        if not rows:
            raise DataError(f"{path}: empty (a header but no data rows)")
    width = len(header) if header else len(rows[0][1])
    col = _column_index(label_column, header, width, path)

    def colname(j):
        return f"column {j + 1}" + (f" ('{header[j]}')" if header and header[j] else "")

    x = np.empty((len(rows), width - (col is not None)), np.float32)
    raw_labels = []
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}: row {line} has {len(row)} columns, expected {width}")
        k = 0
        for j, cell in enumerate(row):
            if j == col:
                raw_labels.append(cell.strip())
                continue
            try:
                x[i, k] = float("nan") if allow_missing and cell.strip().lower() in MISSING_CELLS else float(cell)
            except ValueError:
                raise DataError(f"{path}: row {line}, {colname(j)}: non-numeric value {cell.strip()!r}") from None
            k += 1
    more = (header, col) if details else ()
    if col is None:
        return (x, None, None, *more)
    if all(_is_number(v) for v in raw_labels):
        return (x, np.array([float(v) for v in raw_labels]), None, *more)
    names = sorted(set(raw_labels))
    index = {v: i for i, v in enumerate(names)}
    return (x, np.array([index[v] for v in raw_labels], np.int64), names, *more)


def _column_index(label_column, header, width, path):
    if label_column is None:
        return None
    if header and str(label_column) in header:
        return header.index(str(label_column))
    try:
        j = int(label_column)
    except (TypeError, ValueError):
        raise DataError(f"{path}: no column named {label_column!r}"
                        + (f" (columns: {', '.join(header)})" if header else " (the file has no header row)")) from None
    if not -width <= j < width:
        raise DataError(f"{path}: label_column {j} out of range for {width} columns")
    return j % width


def _as_int(v) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, float) else None
    except (TypeError, ValueError):
        return None


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
