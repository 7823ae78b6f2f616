"""User data from `.npy`, `.npz` and `.csv` files."""

from __future__ import annotations

import csv
import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .lazy import should_stream
from .spec import MIN_TRAIN, DataSpec, Dataset


def split_indices(n: int, test_fraction: float, seed: int, where) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random (train, test) split of range(n); both sides non-empty."""
    if not 0 < test_fraction < 1:
        raise DataError(f"{where}: test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    need = MIN_TRAIN + 1
    if n < need:
        raise DataError(f"{where}: only {n} example{'s' if n != 1 else ''}; need at least {need} "
                        f"({MIN_TRAIN} to train on, 1 held out to test)")
    n_test = min(max(1, round(n * test_fraction)), n - MIN_TRAIN)
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
        if not isinstance(mapped, np.ndarray):  # np.load also opens .npz archives, whatever their name
            raise DataError(f"{path}: a .npz archive, not a single .npy array; name it .npz")
        if mapped.ndim >= 1 and should_stream(stream, len(mapped), mapped.shape[1:]):
            return _stream_npy(path, mapped, labels, test_fraction, seed, kind, label_column)
    if suffix == ".npy":
        x, y = _np_load(path), None
        if not isinstance(x, np.ndarray):
            raise DataError(f"{path}: a .npz archive, not a single .npy array; name it .npz")
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
        num_classes = class_count(path, ytr, yte)
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
    step = max(1, (64 << 20) // max(1, mapped[:1].nbytes))  # every row checked now, ~64 MB at a time,
    for i in range(0, len(mapped), step):  # so a NaN in the last row stops the run before it starts
        _examples(mapped[i:i + step], path, kind, first_row=i)
    y = _check_labels(_read_labels(labels, path), len(mapped), path) if labels is not None else None
    itr, ite = split_indices(len(mapped), test_fraction, seed, path)
    xtr, xte = NpyRows(path, itr, kind), NpyRows(path, ite, kind)
    k = class_count(path, y) if y is not None else 0
    spec = DataSpec(kind, tuple(xtr.example_shape), k, [str(i) for i in range(k)], name=path.stem)
    as_labels = (lambda i: torch.from_numpy(y[i])) if y is not None else (lambda i: None)
    return Dataset(xtr, xte, spec, as_labels(itr), as_labels(ite), location=str(path))


#: what NumPy raises on a damaged .npy / .npz (a .npz is a zip of .npy files; a header is parsed as
#: a Python literal, so a damaged one can raise what the tokenizer raises)
NUMPY_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
                     SyntaxError, tokenize.TokenError, KeyError, TypeError, OverflowError)


def _np_load(path, **kw):
    try:
        _check_npy_size(path)
        return np.load(path, allow_pickle=False, **kw)
    except DataError:
        raise
    except NUMPY_READ_ERRORS as e:
        raise _unreadable(path, e) from None


def load_npy(path, what: str = "array") -> np.ndarray:
    """One `.npy` array, never unpickled, with a clean DataError for a damaged, truncated or pickled
    file, or for a `.npz` archive (`what` names it in that message: "mask", "conditions")."""
    a = _np_load(path)
    if not isinstance(a, np.ndarray):
        raise DataError(f"{path}: a .npz archive, not a single .npy {what}")
    return a


def _check_npy_size(path) -> None:
    """A .npy whose header promises more bytes than the file holds is truncated: say so before NumPy
    tries to allocate what a damaged header claims (a forged shape can ask for terabytes)."""
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            return  # not a .npy (a .npz, a pickle): np.load says what it is
        f.seek(0)
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            return
        shape, _, dtype = read(f)
        need = math.prod(shape) * dtype.itemsize
        have = os.fstat(f.fileno()).st_size - f.tell()
    if need > have and not dtype.hasobject:
        raise DataError(f"{path}: truncated .npy file (its header says shape {shape} of {dtype}, "
                        f"{need} bytes; the file holds {have})")


def _unreadable(path, e: Exception) -> DataError:
    if "pickled" in str(e) and "Object arrays" not in str(e):  # the whole file is a pickle
        return DataError(f"{path}: a Python pickle, not NumPy data; genlab never loads pickles (they can run code)")
    if "allow_pickle" in str(e) or "Python objects" in str(e):
        return DataError(f"{path}: cannot read as NumPy data: it holds Python objects (dtype object), which "
                         "genlab never unpickles; save a numeric array")
    return DataError(f"{path}: cannot read as NumPy data ({type(e).__name__}: {e})")


def _read_npz_arrays(path) -> dict:
    z = _np_load(path)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not a .npz archive; name it .npy")
    with z:
        try:
            return {k: z[k] for k in z.files}
        except NUMPY_READ_ERRORS as e:
            raise _unreadable(path, e) from None


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


def _examples(x, path, kind, split="", first_row: int = 0):
    """Checked float32 examples and their kind from a raw array (rows `first_row`... of the file)."""
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
        at = np.unravel_index(int(np.flatnonzero(~np.isfinite(x[bad[0]]))[0]), x.shape[1:])
        at = f"column {at[0] + 1}" if kind == "vector" else f"channel {at[0]}, row {at[1]}, column {at[2]}"
        raise DataError(f"{where}: {len(bad)} examples contain NaN or Inf values "
                        f"(first: example {first_row + bad[0]}, {at})")
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
    if len(y) and y.max() >= len(y) + 2**20:  # (and before a cast to int64 could wrap a huge float around)
        raise DataError(f"{where}: labels go up to {y.max():g} for {len(y)} examples; labels must be class "
                        "indices 0..K-1 (renumber them, e.g. np.unique(y, return_inverse=True)[1])")
    return y.astype(np.int64)


def class_count(where, *labels: np.ndarray) -> int:
    """K for labels that are class indices 0..K-1 (checked by `_check_labels`). A class may have no
    example, but more classes than examples means the labels are not indices (years, ids, codes):
    refused, before a model builds one embedding row per "class"."""
    k = int(max(int(y.max()) for y in labels)) + 1
    n = sum(len(y) for y in labels)
    if k > n:
        raise DataError(f"{where}: labels go up to {k - 1} for {n} examples; labels must be class indices "
                        "0..K-1 (renumber them, e.g. np.unique(y, return_inverse=True)[1])")
    return k


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
    if not allow_missing and not np.isfinite(x).all():  # "nan", "inf", "1e999": numbers, but no data
        i, k = (int(v[0]) for v in np.nonzero(~np.isfinite(x)))
        j = k + (col is not None and k >= col)
        n = int((~np.isfinite(x)).any(1).sum())
        raise DataError(f"{path}: {n} row{'s' if n > 1 else ''} with NaN or Inf values (first: row {rows[i][0]}, "
                        f"{colname(j)}: {rows[i][1][j].strip()!r}); remove or fill them")
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
