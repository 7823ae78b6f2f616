"""Bad data through the CLI: every case is one line `genlab: error: ...` naming the problem, exit
status 2, no traceback and no run directory left behind (docs/reliability.md, "Bad data and fuzzing")."""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab.cli import main
from genlab.data import idx
from genlab.errors import DataError, GenlabWarning


def _idx_bytes(magic: int, shape: tuple, payload: bytes | None = None) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in shape)
    n = int(np.prod(shape))
    return head + (payload if payload is not None else bytes(i % 10 for i in range(n)))


def _mnist_files(n_train=6, n_labels=6, n_test=3) -> dict[str, bytes]:
    """A tiny, well-formed MNIST: {file name: .gz bytes}."""
    rng = np.random.default_rng(0)
    raw = {"train-images-idx3-ubyte.gz": _idx_bytes(2051, (n_train, 28, 28), rng.integers(0, 256, n_train * 784,
                                                                                            np.uint8).tobytes()),
           "train-labels-idx1-ubyte.gz": _idx_bytes(2049, (n_labels,)),
           "t10k-images-idx3-ubyte.gz": _idx_bytes(2051, (n_test, 28, 28)),
           "t10k-labels-idx1-ubyte.gz": _idx_bytes(2049, (n_test,))}
    return {k: gzip.compress(v, mtime=0) for k, v in raw.items()}


def _write(d, files: dict):
    d.mkdir(parents=True, exist_ok=True)
    for k, v in files.items():
        (d / k).write_bytes(v)
    return d


def _fail(capsys, tmp_path, *argv, family="vae") -> str:
    """Run `genlab train FAMILY ARGV` and return its one-line error; check exit 2, no traceback, no run dir."""
    out = tmp_path / "run"
    code = main(["train", family, "--steps", "2", "--quiet", "--out", str(out), *map(str, argv)])
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("genlab:")]  # (a download's progress bar aside)
    assert code == 2 and len(said) == 1 and said[0].startswith("genlab: error: ") and "Traceback" not in err, err
    assert not out.exists(), "a failed start must leave no run directory"
    return said[0]


@pytest.fixture(autouse=True)
def _quiet_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing can land in the repository (runs/...)
    yield
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- IDX files and downloads

@pytest.fixture
def no_md5(monkeypatch):
    """Tiny IDX files have no published md5: check them by their own."""
    monkeypatch.setitem(idx.MD5, "mnist", {k: (hashlib.md5(v).hexdigest(), "-") for k, v in _mnist_files().items()})


def test_idx_count_mismatch_wrong_magic_truncated_gzip_and_md5(tmp_path, capsys, monkeypatch):
    mnist = "train-images-idx3-ubyte.gz"
    bad = _mnist_files(n_train=6, n_labels=5)
    monkeypatch.setitem(idx.MD5, "mnist", {k: (hashlib.md5(v).hexdigest(), "-") for k, v in bad.items()})
    root = _write(tmp_path / "count", bad)
    assert "train-labels-idx1-ubyte.gz: 5 labels for 6 images" in _fail(capsys, tmp_path, "--data", "mnist",
                                                                          "--set", f"data.root={root}")
    swapped = _mnist_files()
    swapped[mnist] = gzip.compress(_idx_bytes(2049, (6,)), mtime=0)  # a label file where images belong
    monkeypatch.setitem(idx.MD5, "mnist", {k: (hashlib.md5(v).hexdigest(), "-") for k, v in swapped.items()})
    root = _write(tmp_path / "magic", swapped)
    assert "wrong magic number 2049 (expected 2051); not an IDX image file" in _fail(
        capsys, tmp_path, "--data", "mnist", "--set", f"data.root={root}")
    cut = _mnist_files()
    cut[mnist] = cut[mnist][: len(cut[mnist]) // 2]
    monkeypatch.setitem(idx.MD5, "mnist", {k: (hashlib.md5(v).hexdigest(), "-") for k, v in cut.items()})
    root = _write(tmp_path / "cut", cut)
    assert f"{mnist}: truncated or corrupt gzip file" in _fail(capsys, tmp_path, "--data", "mnist",
                                                              "--set", f"data.root={root}")
    sizes = _mnist_files()
    sizes["t10k-images-idx3-ubyte.gz"] = gzip.compress(_idx_bytes(2051, (3, 14, 14)), mtime=0)
    monkeypatch.setitem(idx.MD5, "mnist", {k: (hashlib.md5(v).hexdigest(), "-") for k, v in sizes.items()})
    root = _write(tmp_path / "sizes", sizes)
    assert "train images are 28x28, test images 14x14; the IDX files are damaged or not from one data set" in _fail(
        capsys, tmp_path, "--data", "mnist", "--set", f"data.root={root}")
    monkeypatch.undo()  # the published md5s again
    monkeypatch.chdir(tmp_path)
    root = _write(tmp_path / "md5", _mnist_files())
    msg = _fail(capsys, tmp_path, "--data", "mnist", "--set", f"data.root={root}")
    assert f"{mnist}: wrong md5" in msg and "delete it and load again" in msg


class _Response:
    """What urlopen returns: `body` in chunks, then (if `die`) a dropped connection."""

    def __init__(self, body: bytes, die: bool, length: bool = True):
        self._io, self.die = io.BytesIO(body), die
        self.headers = {"Content-Length": str(len(body) * (2 if die else 1))} if length else {}

    def read(self, n=-1):
        chunk = self._io.read(min(n, 1000))
        if not chunk and self.die:
            raise ConnectionResetError("connection reset by peer")
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def offline_cache(tmp_path, monkeypatch, no_md5):
    monkeypatch.delenv("GENLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(idx, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.setitem(idx.MIRRORS, "mnist", ["https://mirror.test/"])
    return tmp_path / "cache" / "genlab" / "mnist"


def test_interrupted_download_leaves_nothing_that_passes_for_data(tmp_path, capsys, monkeypatch, offline_cache):
    files = _mnist_files()
    served = []

    def urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[1]
        served.append(name)
        body = files[name]
        if name == "train-labels-idx1-ubyte.gz":  # the second file: half of it, then the line drops
            return _Response(body[: len(body) // 2], die=True)
        return _Response(body, die=False)

    monkeypatch.setattr(idx.urllib.request, "urlopen", urlopen)
    msg = _fail(capsys, tmp_path, "--data", "mnist")
    assert "download failed" in msg and "connection reset by peer" in msg
    assert sorted(p.name for p in offline_cache.iterdir()) == ["train-images-idx3-ubyte.gz"]  # verified; no .part

    # a server that closes early without an error and without a length: the md5 of the .part catches it
    def short(url, timeout=None):
        name = url.rsplit("/", 1)[1]
        served.append(name)
        return _Response(files[name][:-20] if name.startswith("t10k-images") else files[name], die=False, length=False)

    monkeypatch.setattr(idx.urllib.request, "urlopen", short)
    served.clear()
    msg = _fail(capsys, tmp_path, "--data", "mnist")
    assert "t10k-images-idx3-ubyte.gz" in msg and ("wrong md5" in msg or "truncated" in msg)
    assert served == ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]  # the verified file is kept
    assert sorted(p.name for p in offline_cache.iterdir()) == ["train-images-idx3-ubyte.gz",
                                                               "train-labels-idx1-ubyte.gz"]
    # a leftover .part (a process killed mid-download) is never taken for the file
    (offline_cache / "t10k-images-idx3-ubyte.gz.part").write_bytes(files["t10k-images-idx3-ubyte.gz"][:50])
    assert idx.find("mnist") is None
    monkeypatch.setattr(idx.urllib.request, "urlopen", lambda url, timeout=None: _Response(
        files[url.rsplit("/", 1)[1]], die=False))
    ds = genlab.load_dataset("mnist")  # the next try completes, and only the missing files are fetched
    assert ds.location == str(offline_cache) and len(ds.train) == 6 and len(ds.test) == 3
    assert sorted(p.name for p in offline_cache.iterdir()) == sorted(idx.FILES)
    assert ds.train_labels.tolist() == list(range(6))


# ---------------------------------------------------------------- arrays, tables, folders

def test_empty_and_too_few_examples(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.float32))
    assert "empty.npy: empty (array of shape (0, 3))" in _fail(capsys, tmp_path, "--data", tmp_path / "empty.npy")
    (tmp_path / "head.csv").write_text("a,b\n")
    assert "head.csv: empty (a header but no data rows)" in _fail(capsys, tmp_path, "--data", tmp_path / "head.csv")
    (tmp_path / "imgs").mkdir()
    assert "imgs: no images found" in _fail(capsys, tmp_path, "--data", tmp_path / "imgs")
    for n in (1, 2):  # two rows used to train on one: a NaN standard deviation, then a dead run directory
        np.save(tmp_path / f"n{n}.npy", np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32))
        msg = _fail(capsys, tmp_path, "--data", tmp_path / f"n{n}.npy")
        assert f"only {n} example{'s' if n > 1 else ''}; need at least 3 (2 to train on, 1 held out to test)" in msg
    np.savez(tmp_path / "split.npz", train=np.ones((1, 3)), test=np.ones((5, 3)))
    assert "the train split has 1 example; training needs at least 2" in _fail(
        capsys, tmp_path, "--data", tmp_path / "split.npz")
    np.savez(tmp_path / "labelled.npz", x=np.random.default_rng(0).normal(size=(9, 2)), y=[0] * 8 + [1])
    assert "labelled: the train split has 1 example; training needs at least 2" in _fail(
        capsys, tmp_path, "--data", tmp_path / "labelled.npz", "--classes", "1")  # one class kept: one example


def test_three_examples_train_without_nan():
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    for family in ("vae", "gan", "ddpm"):
        run = genlab.train(family, genlab.data.Dataset(torch.from_numpy(x[:2]), torch.from_numpy(x[2:]),
                                                       genlab.DataSpec("vector", (4,), name="three")),
                           steps=3, save=False, progress=False)
        losses = [v for h in run.history for k, v in h.items() if "loss" in k]
        assert losses and np.isfinite(losses).all(), (family, run.history)
        assert torch.isfinite(run.model.sample(4)).all()


def test_constant_column_is_kept_at_scale_one_and_said(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    x[:, 1] = 5.0
    np.save(tmp_path / "const.npy", x)
    with pytest.warns(GenlabWarning, match=r"const: 1 constant column \(column 2: the same value"):
        run = genlab.train("gmm", tmp_path / "const.npy", save=False, progress=False, n_components=2)
    m = run.model
    assert m.data_scale[1] == 1 and m.data_shift[1] == 5  # working value exactly 0, nothing divided by ~0
    assert torch.equal(m.to_working(torch.from_numpy(x))[:, 1], torch.zeros(200))
    assert 0.5 < float(m.data_scale[0]) < 2  # the other columns are standardised as before
    lp = m.log_prob(run.data.test)
    assert torch.isfinite(lp).all() and torch.isfinite(m.sample(50)).all()
    # the likelihood is not inflated by log(1e6) nats for the constant feature (it was, at scale 1e-6)
    assert lp.mean() < 30
    with warnings.catch_warnings():  # as outside pytest: warnings printed to stderr
        warnings.simplefilter("always")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(m, c, f, n, line))
        code = main(["train", "vae", "--data", str(tmp_path / "const.npy"), "--steps", "1", "--quiet",
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and err == ["genlab: warning: const: 1 constant column (column 2: the same value in every "
                                 "training example); kept unscaled, so the model learns it as a constant"]


def test_nan_inf_text_cells_and_ragged_rows(tmp_path, capsys):
    x = np.random.default_rng(0).random((20, 3))
    x[7, 2], x[11, 0] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", x)
    assert "nan.npy: 2 examples contain NaN or Inf values (first: example 7, column 3)" in _fail(
        capsys, tmp_path, "--data", tmp_path / "nan.npy")
    img = np.random.default_rng(0).random((6, 1, 5, 5)).astype(np.float32)
    img[4, 0, 2, 3] = -np.inf
    np.save(tmp_path / "img.npy", img)
    assert "1 examples contain NaN or Inf values (first: example 4, channel 0, row 2, column 3)" in _fail(
        capsys, tmp_path, "--data", tmp_path / "img.npy")
    (tmp_path / "t.csv").write_text("a,b,c\n1,2,3\n4,five,6\n7,8,9\n")
    assert "t.csv: row 3, column 2 ('b'): non-numeric value 'five'" in _fail(capsys, tmp_path, "--data",
                                                                            tmp_path / "t.csv")
    (tmp_path / "r.csv").write_text("1,2,3\n4,5,6\n7,8\n1,2,3\n")
    assert "r.csv: row 3 has 2 columns, expected 3" in _fail(capsys, tmp_path, "--data", tmp_path / "r.csv")
    (tmp_path / "n.csv").write_text("a,label,b\n1,x,2\n3,y,nan\n5,x,1e999\n6,y,7\n")
    assert "n.csv: 2 rows with NaN or Inf values (first: row 3, column 3 ('b'): 'nan')" in _fail(
        capsys, tmp_path, "--data", tmp_path / "n.csv", "--label-column", "label")
    (tmp_path / "bin.csv").write_bytes(b"1,2\n\xff\xfe,3\n")
    assert "bin.csv: not a readable text CSV file" in _fail(capsys, tmp_path, "--data", tmp_path / "bin.csv")


def test_streamed_npy_is_checked_whole_before_training(tmp_path, capsys):
    x = np.random.default_rng(0).random((500, 4)).astype(np.float32)
    x[-1, 3] = np.nan  # far past the first rows a lazy split looks at
    np.save(tmp_path / "big.npy", x)
    assert "big.npy: 1 examples contain NaN or Inf values (first: example 499, column 4)" in _fail(
        capsys, tmp_path, "--data", tmp_path / "big.npy", "--stream")


def test_npz_keys_and_non_numeric_arrays(tmp_path, capsys):
    np.savez(tmp_path / "keys.npz", a=np.ones((5, 2)), b=np.ones((5, 2)))
    assert "keys.npz: no array named 'x' or 'train'/'test' (found: a, b)" in _fail(capsys, tmp_path, "--data",
                                                                                    tmp_path / "keys.npz")
    np.savez(tmp_path / "half.npz", train=np.ones((5, 2)))
    assert "half.npz: has 'train' without 'test'" in _fail(capsys, tmp_path, "--data", tmp_path / "half.npz")
    np.savez(tmp_path / "pair.npz", c=np.ones((5, 2)))
    assert "pair.npz: paired data needs an array 'x'" in _fail(capsys, tmp_path, "--data", tmp_path / "pair.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None, 3], dtype=object), allow_pickle=True)
    msg = _fail(capsys, tmp_path, "--data", tmp_path / "obj.npy")
    assert "obj.npy: cannot read as NumPy data: it holds Python objects (dtype object)" in msg
    np.savez(tmp_path / "objz.npz", x=np.array([[1, "a"]], dtype=object))
    assert "objz.npz: cannot read as NumPy data" in _fail(capsys, tmp_path, "--data", tmp_path / "objz.npz")
    for name, a in (("str", np.array([["1", "2"]] * 5)), ("cplx", np.ones((5, 2), np.complex64)),
                    ("dt", np.zeros((5, 2), "datetime64[s]"))):
        np.save(tmp_path / f"{name}.npy", a)
        assert f"{name}.npy: array of {a.dtype} is not numeric" in _fail(capsys, tmp_path, "--data",
                                                                         tmp_path / f"{name}.npy")
    np.save(tmp_path / "t.npy", np.zeros((10, 3), np.float32))
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:-5])
    assert "t.npy: truncated .npy file (its header says shape (10, 3) of float32, 120 bytes; the file holds 115)" in (
        _fail(capsys, tmp_path, "--data", tmp_path / "t.npy"))
    with open(tmp_path / "forged.npy", "wb") as f:  # a header asking for 48 TB: refused before any allocation
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3)})
        f.write(b"\0" * 12)
    for stream in ((), ("--stream",)):
        assert "forged.npy: truncated .npy file (its header says shape (1000000000000, 3) of float32" in _fail(
            capsys, tmp_path, "--data", tmp_path / "forged.npy", *stream)
    import pickle

    (tmp_path / "p.npy").write_bytes(pickle.dumps({"x": [1, 2]}))
    assert "p.npy: a Python pickle, not NumPy data; genlab never loads pickles" in _fail(
        capsys, tmp_path, "--data", tmp_path / "p.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    assert "junk.npy: cannot read as NumPy data" in _fail(capsys, tmp_path, "--data", tmp_path / "junk.npy")


def test_labels_that_are_not_class_indices(tmp_path, capsys):
    x = np.random.default_rng(0).random((10, 2))
    for name, y in (("ids", [0] * 9 + [10**7]), ("huge", [0.0] * 9 + [1e300]), ("neg", [0] * 9 + [-1])):
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        msg = _fail(capsys, tmp_path, "--data", tmp_path / f"{name}.npz")
        assert ("labels must be 0 or more, found -1" if name == "neg" else
                "for 10 examples; labels must be class indices 0..K-1 (renumber them") in msg, msg
    (tmp_path / "years.csv").write_text("a,year\n" + "".join(f"{i},{1990 + i % 3}\n" for i in range(9)))
    assert "labels go up to 1992 for 9 examples" in _fail(capsys, tmp_path, "--data", tmp_path / "years.csv",
                                                          "--label-column", "year")
    np.savez(tmp_path / "ok.npz", x=x, y=[0, 5] * 5)  # classes may be empty: 0..5 with 1..4 unused
    assert genlab.load_dataset(tmp_path / "ok.npz").spec.num_classes == 6


def test_network_that_cannot_take_the_data(tmp_path, capsys):
    np.save(tmp_path / "vec.npy", np.random.default_rng(0).random((30, 5)).astype(np.float32))
    msg = _fail(capsys, tmp_path, "--data", tmp_path / "vec.npy", "--set", "net=conv")
    assert "net='conv' needs image data, and 'vec' holds vectors of 5 values: use net='mlp'" in msg
    assert "net='unet' needs image data (use net='mlp' for vectors)" in _fail(
        capsys, tmp_path, "--data", tmp_path / "vec.npy", "--set", "net=unet", family="ddpm")
    assert "'pixelcnn' does not model vector data (it models: image)" in _fail(
        capsys, tmp_path, "--data", tmp_path / "vec.npy", family="pixelcnn")
    np.save(tmp_path / "tiny.npy", np.random.default_rng(0).random((30, 3, 3)).astype(np.float32))
    msg = _fail(capsys, tmp_path, "--data", tmp_path / "tiny.npy", "--set", "net=conv", family="gan")
    assert "net='conv' (2 stride-2 stages) needs images of at least 4x4 pixels, these are 3x3: use net='mlp'" in msg
    run = genlab.train("gan", tmp_path / "tiny.npy", steps=2, save=False, progress=False)  # net='auto' picks mlp
    assert torch.isfinite(run.model.sample(4)).all()


def _png(path, size, color=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_images_of_mixed_sizes_are_refused_unless_resized(tmp_path, capsys):
    for i in range(4):
        _png(tmp_path / "imgs" / f"{i}.png", (8, 8), 40 * i)
    _png(tmp_path / "imgs" / "z.png", (8, 6))
    for stream in ((), ("--stream",)):  # streamed folders apply the same rule
        msg = _fail(capsys, tmp_path, "--data", tmp_path / "imgs", *stream)
        assert "images differ in size (0.png is 8x8, z.png is 6x8); pass size= to resize them all" in msg
    ds = genlab.load_dataset(tmp_path / "imgs", size=8)
    assert ds.spec.shape == (1, 8, 8) and len(ds.train) + len(ds.test) == 5
    (tmp_path / "imgs" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert "bad.png: cannot read this image" in _fail(capsys, tmp_path, "--data", tmp_path / "imgs",
                                                     "--set", "data.size=8")


def test_decompression_bomb_is_a_clean_error(tmp_path, capsys, monkeypatch):
    _png(tmp_path / "imgs" / "a.png", (64, 64))
    _png(tmp_path / "imgs" / "b.png", (64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels is a "bomb" past 2x this
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert "a.png: cannot read this image (DecompressionBombError" in _fail(capsys, tmp_path, "--data",
                                                                                tmp_path / "imgs")


def test_data_errors_are_data_errors(tmp_path):
    """The API raises the same DataError the CLI prints (a GenlabError and a ValueError)."""
    np.save(tmp_path / "n2.npy", np.zeros((2, 2)))
    with pytest.raises(DataError, match="need at least 3"):
        genlab.load_dataset(tmp_path / "n2.npy")
