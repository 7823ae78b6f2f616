"""Fuzzing the data loaders (hypothesis): whatever bytes or arrays a user's file holds, loading it gives
a valid Dataset or a clean `DataError` (a GenlabError), never another exception and never a hang.

Two kinds of input: raw or mutated bytes written as IDX (.gz), .npy, .npz, .csv, .png and .jpg files, and
structured ones (valid-looking CSV tables with random shapes, NaNs and text cells; .npy arrays of random
dtypes and shapes), where an oracle says which must load and checks that the loaded values are the file's.

The examples are derandomized (the same every run) and bounded: the file runs in well under 25 s. For a
longer random search: `HYPOTHESIS_PROFILE=deep pytest tests/test_fuzz_data.py` (25 times the examples, random).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from genlab.apps.impute import parse_mask  # noqa: E402
from genlab.data import idx, load_dataset  # noqa: E402
from genlab.data.arrays import read_table  # noqa: E402
from genlab.data.paired import load_conditions  # noqa: E402
from genlab.data.spec import Dataset  # noqa: E402
from genlab.errors import GenlabError  # noqa: E402

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("deep", deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


def examples(n: int) -> settings:
    """`n` examples in the suite; 25 times as many in the deep profile."""
    return settings(max_examples=n * 25 if DEEP else n)

HANG_SECONDS = 10  # one file taking longer than this is a hang


@contextlib.contextmanager
def no_hang(what: str):
    """Fail (rather than wait forever) when loading one example takes more than HANG_SECONDS."""
    def alarm(*_):
        raise AssertionError(f"loading {what} took more than {HANG_SECONDS} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def load_or_clean_error(load, what: str):
    """`load()`'s Dataset (checked valid), or None when it raised a GenlabError; anything else fails."""
    with no_hang(what):
        try:
            ds = load()
        except GenlabError as e:
            msg = str(e)
            assert msg and "\n" not in msg and "Traceback" not in msg, msg  # one line for the CLI
            return None
    assert isinstance(ds, Dataset)
    for split in (ds.train, ds.test):
        x = split[:]
        assert x.dtype == torch.float32 and len(x) > 0 and torch.isfinite(x).all()
        assert tuple(x.shape[1:]) == tuple(ds.spec.shape)
    assert len(ds.train) >= 2
    return ds


def all_values(ds: Dataset) -> np.ndarray:
    return np.sort(np.concatenate([ds.train[:].numpy().ravel(), ds.test[:].numpy().ravel()]))


# ---------------------------------------------------------------- valid files, then mutated bytes

def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _image_bytes(fmt: str, size=(6, 6), mode="L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], *(() if mode == "L" else (3,))), np.uint8),
                    mode).save(buf, format=fmt)
    return buf.getvalue()


_rng = np.random.default_rng(0)
SEEDS = {  # a valid file of each kind: mutations of these reach past the first header check
    ".npy": _npy_bytes(_rng.random((8, 3)).astype(np.float32)),
    ".npz": _npz_bytes(x=_rng.random((8, 1, 4, 4)), y=np.arange(8) % 2),
    ".csv": b"a,b,label\n0.1,2,x\n3,4.5,y\n5,6,x\n-1,1e3,y\n",
    ".png": _image_bytes("PNG"),
    ".jpg": _image_bytes("JPEG", mode="RGB"),
    ".gz": gzip.compress(idx.IMAGES_MAGIC.to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in (3, 4, 4))
                         + bytes(range(48)), mtime=0),
}


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """`seed` with a few bytes overwritten, inserted or deleted, and maybe truncated; or random bytes."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:i + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
@examples(60)
@given(data=st.data())
def test_random_bytes_as_array_files(suffix, data):
    raw = data.draw(mutated(SEEDS[suffix]), label="bytes")
    stream = data.draw(st.sampled_from([None, True]), label="stream") if suffix == ".npy" else None
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(raw)
        kw = {"stream": stream} if stream else {}
        load_or_clean_error(lambda: load_dataset(path, **kw), path.name)
        if suffix == ".csv":  # imputation's reader (missing cells allowed) and a label column
            with no_hang("read_table"):
                with contextlib.suppress(GenlabError):
                    read_table(path, label_column=data.draw(st.sampled_from([None, 0, -1, "label"])))
        if suffix == ".npy":  # a condition file for `genlab sample --condition`, a mask for `genlab impute`
            with no_hang("load_conditions"):
                with contextlib.suppress(GenlabError):
                    load_conditions(path, (3,))
            with no_hang("parse_mask"):
                with contextlib.suppress(GenlabError):
                    mask = parse_mask(str(path), torch.zeros(8, 3), torch.Generator().manual_seed(0))
                    assert mask.shape == (8, 3) and set(mask.unique().tolist()) <= {0.0, 1.0}


@examples(40)
@given(data=st.data())
def test_random_bytes_as_image_folders(data):
    n = data.draw(st.integers(1, 4), label="files")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "imgs"
        layout = data.draw(st.sampled_from(["loose", "classes", "pairs"]), label="layout")
        for i in range(n):
            for sub in ({"loose": [""], "classes": [f"c{i % 2}"], "pairs": ["A", "B"]}[layout]):
                suffix = data.draw(st.sampled_from([".png", ".jpg"]))
                good = data.draw(st.booleans())
                raw = SEEDS[suffix] if good else data.draw(mutated(SEEDS[suffix]))
                f = root / sub / f"{i}{suffix}"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(raw)
        size = data.draw(st.sampled_from([None, 4]), label="size")
        stream = data.draw(st.sampled_from([None, True]), label="stream") if layout != "pairs" else None
        kw = {k: v for k, v in (("size", size), ("stream", stream)) if v is not None}
        ds = load_or_clean_error(lambda: load_dataset(root, **kw), "an image folder")
        if ds is not None:
            x = torch.cat([ds.train[:], ds.test[:]])
            assert 0 <= x.min() and x.max() <= 1 and ds.spec.kind == "image"
        with no_hang("load_conditions"), contextlib.suppress(GenlabError):
            load_conditions(next(root.rglob("*.*")), (1, 6, 6))


@examples(40)
@given(data=st.data())
def test_random_bytes_as_idx_files(data, monkeypatch_session):
    """The four MNIST files (md5 check bypassed, as for any copy whose md5 matched): mutated headers,
    counts, gzip streams."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "mnist"
        root.mkdir()
        for name in idx.FILES:
            magic = idx.IMAGES_MAGIC if "images" in name else idx.LABELS_MAGIC
            shape = (5, 3, 3) if magic == idx.IMAGES_MAGIC else (5,)
            body = magic.to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in shape) + bytes(
                i % 10 for i in range(math.prod(shape)))
            seed = gzip.compress(body, mtime=0) if data.draw(st.booleans()) else body
            (root / name).write_bytes(data.draw(mutated(seed)) if data.draw(st.booleans()) else seed)
        load_or_clean_error(lambda: load_dataset("mnist", root=d), "IDX files")
        with no_hang("read_idx"), contextlib.suppress(GenlabError):
            idx.read_idx(root / idx.FILES[0])


@pytest.fixture(scope="module")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    mp.setattr(idx, "verify", lambda path, name, file=None: idx.decompress(path))
    idx._arrays.cache_clear()
    yield mp
    mp.undo()
    idx._arrays.cache_clear()


# ---------------------------------------------------------------- structured: CSV tables

NUMBER = st.one_of(st.integers(-10**6, 10**6).map(str),
                   st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr))
BAD = st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "abc", "", "1,5", "12x", " ", "NA", '"q"'])


@examples(80)
@given(rows=st.integers(0, 7), cols=st.integers(1, 4), header=st.booleans(), data=st.data())
def test_csv_tables_of_random_shapes_nans_and_text(rows, cols, header, data):
    table = [[data.draw(NUMBER) for _ in range(cols)] for _ in range(rows)]
    spoiled = data.draw(st.booleans(), label="spoil")
    if spoiled and rows:  # one bad cell, or a ragged row
        i, j = data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1))
        if data.draw(st.booleans()):
            table[i][j] = data.draw(BAD)
        else:
            table[i] = table[i][:-1] if cols > 1 and data.draw(st.booleans()) else table[i] + ["1"]
    lines = ([",".join(f"col{j}" for j in range(cols))] if header else []) + [",".join(r) for r in table]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.csv"
        path.write_text("\n".join(lines) + "\n")
        ds = load_or_clean_error(lambda: load_dataset(path), "a CSV table")

    def clean(r):
        return len(r) == cols and all(_finite_number(c) for c in r)

    table = [r for r in table if any(c.strip() for c in r)]  # blank lines are skipped (a 1-column empty cell)
    rows = len(table)

    usable = rows >= 3 and all(clean(r) for r in table)
    # a first row with a bad cell may be read as a header; every other bad cell must be refused
    if usable:
        assert ds is not None, lines
        assert np.array_equal(all_values(ds), np.sort(np.array(table, dtype=np.float32).ravel()))
    elif ds is not None:
        assert not header and not clean(table[0]) and all(clean(r) for r in table[1:]), lines


def _finite_number(cell: str) -> bool:
    try:
        return math.isfinite(float(np.float32(float(cell))))
    except ValueError:
        return False


# ---------------------------------------------------------------- structured: .npy arrays

DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64,
          np.complex64, np.dtype("<U3"), np.dtype("datetime64[s]"), np.dtype([("a", "<i4"), ("b", "<f4")])]


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))
    if dtype.kind == "f":  # mostly in [0, 1] (images), sometimes not, sometimes not finite
        elements = st.one_of(st.floats(0, 1, width=16 if dtype.itemsize == 2 else 32),
                             st.sampled_from([-1.0, 2.0, float("nan"), float("inf"), 6e4]))
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@examples(100)
@given(a=arrays(), stream=st.booleans())
def test_npy_arrays_of_random_dtypes_and_shapes(a, stream):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.npy"
        np.save(path, a)
        ds = load_or_clean_error(lambda: load_dataset(path, stream=stream), f"a {a.dtype} array of shape {a.shape}")
        values = all_values(ds) if ds is not None else None  # lazy splits read while the file exists
    numeric = a.dtype.kind in "biuf"
    x = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 and a.ndim > 2 else 1.0) if numeric else None
    ok = (numeric and a.ndim in (2, 3, 4) and a.size > 0 and len(a) >= 3 and np.isfinite(x).all()
          and (a.ndim == 2 or (0 <= x.min() and x.max() <= 1)))
    assert (ds is not None) == ok, (a.dtype, a.shape, a)
    if ok:  # every value of the file, once, in the splits
        assert np.array_equal(values, np.sort(x.ravel()))
        assert ds.spec.kind == ("vector" if a.ndim == 2 else "image")
