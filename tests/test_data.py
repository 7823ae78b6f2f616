"""Data sets: digits, MNIST/Fashion-MNIST IDX files, 2-D toys, user arrays and image folders."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data import DATASETS, load_dataset
from genlab.data import idx
from genlab.data.arrays import load_array_file
from genlab.data.folder import load_image_folder
from genlab.data.toy2d import mode_centers
from genlab.errors import DataError

TOYS = ["moons", "circles", "8gaussians", "25gaussians", "checkerboard", "swissroll", "spirals"]


# ---------------------------------------------------------------- digits

def test_digits_shapes_range_and_deterministic_split():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.train.shape == (1437, 1, 8, 8) and a.test.shape == (360, 1, 8, 8)
    assert a.train.dtype == torch.float32 and a.train_labels.dtype == torch.int64
    assert 0 <= a.train.min() and a.train.max() <= 1
    assert a.spec.num_classes == 10 and a.class_names == [str(i) for i in range(10)]
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    c = load_dataset("digits", seed=1)
    assert not torch.equal(a.train, c.train)


# ---------------------------------------------------------------- 2-D toys

@pytest.mark.parametrize("name", TOYS)
def test_toy_shapes_sampler_and_seeds(name):
    ds = load_dataset(name, n_train=500, n_test=300)
    assert ds.spec.kind == "vector" and ds.spec.shape == (2,)
    assert ds.train.shape == (500, 2) and ds.test.shape == (300, 2) and ds.train.dtype == torch.float32
    assert not torch.equal(ds.train[:300], ds.test)  # different seeds for the two splits
    assert torch.equal(ds.train, load_dataset(name, n_train=500, n_test=300).train)
    x = ds.sampler(64)
    assert x.shape == (64, 2) and x.dtype == torch.float32
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(ds.sampler(10, generator=g1), ds.sampler(10, generator=g2))
    has_density = name in ("8gaussians", "25gaussians", "checkerboard")
    assert (ds.log_density is not None) == has_density
    if has_density:
        lp = ds.log_density(ds.test)
        assert lp.shape == (300,) and torch.isfinite(lp).all()


@pytest.mark.parametrize("name,k,half", [("8gaussians", 8, 3.0), ("25gaussians", 25, 6.0)])
def test_mixture_density_integrates_to_one(name, k, half):
    ds = load_dataset(name, n_train=10, n_test=10, sigma=0.3)
    step = 0.03
    t = torch.arange(-half + step / 2, half, step)
    grid = torch.cartesian_prod(t, t)
    total = ds.log_density(grid).double().exp().sum().item() * step ** 2
    assert total == pytest.approx(1.0, abs=2e-3)
    assert ds.spec.num_classes == k and mode_centers(name).shape == (k, 2)


@pytest.mark.parametrize("name,sigma", [("8gaussians", 0.01), ("25gaussians", 0.05)])
def test_mixture_samples_near_mode_centers(name, sigma):
    ds = load_dataset(name, n_train=4000, n_test=100)
    centers = mode_centers(name)
    d = torch.cdist(ds.train, centers)
    assert (d.min(1).values < 5 * sigma).all()
    assert torch.equal(d.argmin(1), ds.train_labels)  # labels are the component index
    assert len(ds.train_labels.unique()) == len(centers)
    exact = -math.log(len(centers)) - math.log(2 * math.pi * sigma ** 2)  # log p at a mode (others negligible)
    assert ds.log_density(centers) == pytest.approx(torch.full((len(centers),), exact), abs=1e-4)


def test_checkerboard_density_integrates_to_one():
    ds = load_dataset("checkerboard", n_train=2000, n_test=10)
    step = 0.05
    t = torch.arange(-5 + step / 2, 5, step)
    total = ds.log_density(torch.cartesian_prod(t, t)).double().exp().sum().item() * step ** 2
    assert total == pytest.approx(1.0, abs=1e-6)
    assert torch.isfinite(ds.log_density(ds.train)).all()  # every sample in the support
    assert ds.log_density(torch.tensor([[1.0, 3.0], [5.0, 0.0]])).isinf().all()


# ---------------------------------------------------------------- arrays

def test_npy_vectors_and_images_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    ds = load_array_file(tmp_path / "v.npy", labels=np.arange(50) % 4, test_fraction=0.2, seed=0)
    assert ds.spec.kind == "vector" and ds.spec.shape == (3,) and ds.spec.num_classes == 4
    assert len(ds.train) == 40 and len(ds.test) == 10
    both = torch.cat([ds.train, ds.test])
    assert sorted(both[:, 0].tolist()) == sorted(x[:, 0].tolist())
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(r) in rows for r in ds.train.tolist())
    i = int(np.flatnonzero(np.isclose(x[:, 0], ds.train[0, 0].item()))[0])
    assert ds.train_labels[0].item() == i % 4
    assert torch.equal(load_array_file(tmp_path / "v.npy", seed=0).train, ds.train)

    imgs = np.random.default_rng(1).integers(0, 256, size=(20, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "im.npy", imgs)
    di = load_dataset(str(tmp_path / "im.npy"))
    assert di.spec.kind == "image" and di.spec.shape == (1, 6, 5)
    assert 0 <= di.train.min() and di.train.max() <= 1
    np.save(tmp_path / "rgb.npy", np.random.default_rng(2).random((10, 3, 4, 4)))
    assert load_array_file(tmp_path / "rgb.npy").spec.shape == (3, 4, 4)


def test_npz_x_y_and_train_test(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x=rng.normal(size=(30, 2)), y=np.arange(30) % 3)
    ds = load_array_file(tmp_path / "a.npz")
    assert ds.spec.num_classes == 3 and len(ds.train) + len(ds.test) == 30 and ds.train_labels is not None
    np.savez(tmp_path / "b.npz", train=rng.random((8, 4, 4)), test=rng.random((3, 4, 4)),
             train_labels=[0, 1, 2, 0, 1, 2, 0, 1], test_labels=[4, 0, 1])
    ds = load_array_file(tmp_path / "b.npz")
    assert ds.train.shape == (8, 1, 4, 4) and ds.test.shape == (3, 1, 4, 4)
    assert ds.spec.num_classes == 5 and ds.test_labels.tolist() == [4, 0, 1]


def test_csv_header_and_label_column(tmp_path):
    lines = ["a,b,label"] + [f"{i},{i * 0.5},{i % 2}" for i in range(20)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    ds = load_array_file(tmp_path / "t.csv", label_column="label")
    assert ds.spec.shape == (2,) and ds.spec.num_classes == 2
    x, y = torch.cat([ds.train, ds.test]), torch.cat([ds.train_labels, ds.test_labels])
    assert torch.equal(y, x[:, 0].long() % 2) and torch.allclose(x[:, 1], x[:, 0] * 0.5)
    (tmp_path / "n.csv").write_text("".join(f"cat{i % 2},{i},{i}\n" for i in range(10)).replace("cat", "k"))
    ds = load_array_file(tmp_path / "n.csv", label_column=0)
    assert ds.class_names == ["k0", "k1"] and ds.spec.shape == (2,)
    (tmp_path / "plain.csv").write_text("".join(f"{i},{-i}\n" for i in range(10)))
    assert load_array_file(tmp_path / "plain.csv").train_labels is None


# ---------------------------------------------------------------- image folders

def _png(path: Path, size=(5, 4), value=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, color).save(path)


def test_folder_with_classes_grayscale(tmp_path):
    for c, v in (("cat", 10), ("dog", 200)):
        for i in range(5):
            _png(tmp_path / c / f"{i}.png", value=v)
    ds = load_image_folder(tmp_path, test_fraction=0.2, seed=0)
    assert ds.class_names == ["cat", "dog"] and ds.spec.shape == (1, 4, 5)  # PIL size is (W, H)
    assert len(ds.train) == 8 and len(ds.test) == 2
    for x, y in zip(ds.train, ds.train_labels):
        assert x.mean().item() == pytest.approx((10, 200)[int(y)] / 255, abs=1e-6)


def test_folder_rgb_resize_and_mode(tmp_path):
    for i in range(4):
        _png(tmp_path / f"{i}.png", size=(7 + i, 9), mode="RGB")
    _png(tmp_path / "g.jpg", size=(3, 3))  # one grayscale jpg among RGB pngs
    ds = load_dataset(str(tmp_path), size=(8, 6))
    assert ds.spec.shape == (3, 8, 6) and ds.train_labels is None and ds.spec.num_classes == 0
    assert 0 <= ds.train.min() and ds.train.max() <= 1
    assert load_image_folder(tmp_path, size=4, mode="L").spec.shape == (1, 4, 4)
    (tmp_path / "g.jpg").unlink()
    for i in range(4):
        _png(tmp_path / f"{i}.png", size=(5, 5), value=50)
    gray = load_image_folder(tmp_path, mode="RGB")
    assert gray.spec.shape == (3, 5, 5)
    assert load_image_folder(tmp_path).spec.shape == (1, 5, 5)  # default mode: all grayscale -> L


# ---------------------------------------------------------------- bad data: IDX

def _idx_bytes(magic: int, shape, data: bytes | None = None) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in shape)
    return head + (data if data is not None else bytes(int(np.prod(shape))))


def _write_gz(path: Path, content: bytes, mtime=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content, mtime=mtime))
    return path


def test_read_idx_parses_tiny_files(tmp_path):
    pixels = bytes(range(2 * 3 * 4))
    x = idx.read_idx(_write_gz(tmp_path / "i.gz", _idx_bytes(2051, (2, 3, 4), pixels)), magic=2051)
    assert x.shape == (2, 3, 4) and x.dtype == np.uint8 and x.ravel().tolist() == list(pixels)
    y = idx.read_idx(_write_gz(tmp_path / "l.gz", _idx_bytes(2049, (3,), b"\x01\x02\x09")))
    assert y.tolist() == [1, 2, 9]


def test_truncated_idx(tmp_path):
    p = _write_gz(tmp_path / "i.gz", _idx_bytes(2051, (5, 28, 28))[:1000])
    with pytest.raises(DataError, match=r"truncated or corrupt.*header says 3920"):
        idx.read_idx(p)


def test_truncated_gzip(tmp_path):
    p = tmp_path / "i.gz"
    raw = gzip.compress(os.urandom(5000))
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"i\.gz: truncated or corrupt"):
        idx.read_idx(p)


def test_corrupt_gzip(tmp_path):
    raw = bytearray(gzip.compress(_idx_bytes(2051, (4, 28, 28), os.urandom(4 * 784))))
    for i in range(30, 60):
        raw[i] ^= 0xFF
    (tmp_path / "i.gz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"i\.gz: truncated or corrupt"):
        idx.read_idx(tmp_path / "i.gz")


def test_wrong_magic_number(tmp_path):
    p = _write_gz(tmp_path / "l.gz", _idx_bytes(2049, (3,)))
    with pytest.raises(DataError, match=r"l\.gz: wrong magic number 2049 \(expected 2051\)"):
        idx.read_idx(p, magic=2051)
    with pytest.raises(DataError, match="wrong magic number 1234"):
        idx.read_idx(_write_gz(tmp_path / "x.gz", _idx_bytes(1234, (3,))))


def _tiny_mnist(d: Path, n_images=3, n_labels=3):
    _write_gz(d / "train-images-idx3-ubyte.gz", _idx_bytes(2051, (n_images, 28, 28), bytes([255]) * n_images * 784))
    _write_gz(d / "train-labels-idx1-ubyte.gz", _idx_bytes(2049, (n_labels,)))
    _write_gz(d / "t10k-images-idx3-ubyte.gz", _idx_bytes(2051, (2, 28, 28)))
    _write_gz(d / "t10k-labels-idx1-ubyte.gz", _idx_bytes(2049, (2,)))


def test_wrong_md5(tmp_path):
    _tiny_mnist(tmp_path)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: wrong md5"):
        load_dataset("mnist", root=str(tmp_path))
    with pytest.raises(DataError, match="wrong md5"):
        idx.verify(tmp_path / "t10k-labels-idx1-ubyte.gz", "fashion-mnist")


def test_idx_loader_and_label_count(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "verify", lambda path, name: idx.decompress(path))  # tiny files have no md5
    _tiny_mnist(tmp_path / "ok" / "mnist")
    ds = idx.mnist(root=str(tmp_path / "ok"))  # root may also hold a mnist/ sub-folder
    assert ds.train.shape == (3, 1, 28, 28) and ds.train.max() == 1.0
    assert ds.location == str(tmp_path / "ok" / "mnist")
    _tiny_mnist(tmp_path / "bad", n_images=3, n_labels=2)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: 2 labels for 3 images"):
        idx.mnist(root=str(tmp_path / "bad"))


def test_lookup_error_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(idx, "DEBIAN_DIR", str(tmp_path / "debian"))
    calls = []

    def offline(url, dest, check=None):
        calls.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(idx, "download", offline)
    assert DATASETS["fashion-mnist"].locate() == f"not found (would download to {tmp_path / 'xdg/genlab/fashion-mnist'})"
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist")
    msg = str(e.value)
    assert "\n" not in msg and "download failed" in msg and "offline" in msg
    for place in ("env/fashion-mnist", "xdg/genlab/fashion-mnist", "debian/fashion-mnist"):
        assert str(tmp_path / place) in msg
    assert calls == ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"]
    with pytest.raises(DataError, match="mnist not found.*ossci-datasets.*yann.lecun"):
        load_dataset("mnist")  # both mirrors tried
    with pytest.raises(DataError, match=r"looked in .*nowhere"):
        load_dataset("mnist", root=str(tmp_path / "nowhere"))  # explicit root: no download


# ---------------------------------------------------------------- bad data: arrays and folders

def test_nan_and_inf(tmp_path):
    x = np.ones((10, 3))
    x[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match=r"nan\.npy: 1 examples contain NaN or Inf.*example 4, column 2\)"):
        load_array_file(tmp_path / "nan.npy")
    (tmp_path / "inf.csv").write_text("1,2\n3,inf\n5,6\n")
    with pytest.raises(DataError, match=r"inf\.csv: 1 row with NaN or Inf values \(first: row 2, column 2: 'inf'\)"):
        load_array_file(tmp_path / "inf.csv")


def test_empty(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(DataError, match=r"e\.npy: empty"):
        load_array_file(tmp_path / "e.npy")
    (tmp_path / "e.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"e\.csv: empty"):
        load_array_file(tmp_path / "e.csv")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="imgs: no images found"):
        load_image_folder(tmp_path / "imgs")


def test_label_count_mismatch(tmp_path):
    np.savez(tmp_path / "m.npz", x=np.zeros((10, 2)), y=np.zeros(9))
    with pytest.raises(DataError, match=r"m\.npz: 9 labels for 10 examples"):
        load_array_file(tmp_path / "m.npz")
    np.save(tmp_path / "v.npy", np.zeros((10, 2)))
    with pytest.raises(DataError, match="11 labels for 10 examples"):
        load_array_file(tmp_path / "v.npy", labels=range(11))


def test_csv_non_numeric_cell_and_wrong_dims(tmp_path):
    (tmp_path / "c.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"c\.csv: row 3, column 2 \('b'\): non-numeric value 'oops'"):
        load_array_file(tmp_path / "c.csv")
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(DataError, match=r"flat\.npy: 1-D array"):
        load_array_file(tmp_path / "flat.npy")
    np.save(tmp_path / "big.npy", np.full((4, 5, 5), 3.0))
    with pytest.raises(DataError, match=r"big\.npy: image values must lie in \[0, 1\]"):
        load_array_file(tmp_path / "big.npy")


def test_images_of_mixed_sizes_and_unreadable(tmp_path):
    _png(tmp_path / "a" / "x.png", size=(4, 4))
    _png(tmp_path / "a" / "y.png", size=(4, 4))
    _png(tmp_path / "b" / "z.png", size=(6, 4))
    with pytest.raises(DataError, match=r"x\.png is 4x4, b/z\.png is 4x6\); pass size="):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=4).spec.shape == (1, 4, 4)
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: cannot read this image"):
        load_image_folder(tmp_path, size=4)


# ---------------------------------------------------------------- the real files

def _real_dir(name: str) -> Path:
    env = os.environ.get("GENLAB_DATA_DIR")
    d = Path(env) / name if env else None
    if d is None or not all((d / f).is_file() for f in idx.FILES):
        pytest.skip(f"{name} IDX files not found (set GENLAB_DATA_DIR to a folder holding {name}/)")
    return d


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_mnist_and_fashion(name):
    d = _real_dir(name)
    ds = load_dataset(name)
    assert ds.location == str(d)
    assert ds.train.shape == (60000, 1, 28, 28) and ds.test.shape == (10000, 1, 28, 28)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    assert ds.train.dtype == torch.float32 and ds.train_labels.dtype == torch.int64
    assert ds.train.min() == 0 and ds.train.max() == 1
    assert torch.bincount(ds.train_labels).tolist() == ([6000] * 10 if name == "fashion-mnist" else
                                                         [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert len(ds.class_names) == 10


def test_recompressed_copy_accepted_via_content_md5(tmp_path):
    d = _real_dir("mnist")
    for f in idx.FILES:
        out = tmp_path / "mnist" / f
        out.parent.mkdir(exist_ok=True)
        out.write_bytes(gzip.compress(gzip.decompress((d / f).read_bytes()), compresslevel=1, mtime=12345))
        assert hashlib.md5(out.read_bytes()).hexdigest() != idx.MD5["mnist"][f][0]
    ds = load_dataset("mnist", root=str(tmp_path))
    assert ds.location == str(tmp_path / "mnist") and ds.train.shape == (60000, 1, 28, 28)
    assert torch.equal(ds.test, load_dataset("mnist").test)
