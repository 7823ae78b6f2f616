"""MNIST and Fashion-MNIST from their original IDX `.gz` files.

Lookup order: an explicit `root`, `$GENLAB_DATA_DIR/<name>/`, the user cache
`~/.cache/genlab/<name>/` (or `$XDG_CACHE_HOME/genlab/<name>/`), Debian's
`/usr/share/datasets/<name>/`, else a download into the cache. Every file is
checked against the published md5 of the `.gz` or, for re-compressed copies,
the md5 of its decompressed content.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import http.client
import os
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, unknown_name
from .registry import register_dataset
from .spec import DataSpec, Dataset

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# file -> (md5 of the .gz as published, md5 of the decompressed IDX content)
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
}

MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
DEBIAN_DIR = "/usr/share/datasets"


# ---------------------------------------------------------------- IDX files

def decompress(path) -> bytes:
    """The decompressed bytes of a `.gz` file (plain files are returned as they are)."""
    raw = Path(path).read_bytes()
    return _gunzip(raw, path)


def _gunzip(raw: bytes, path) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip file ({e}); delete it and load again") from None


def parse_idx(data: bytes, path="<bytes>", magic: int | None = None) -> np.ndarray:
    """Decode IDX bytes (unsigned-byte images 2051 or labels 2049) into a uint8 array."""
    if len(data) < 4:
        raise DataError(f"{path}: truncated or corrupt IDX file ({len(data)} bytes, no header)")
    found = int.from_bytes(data[:4], "big")
    expected = (magic,) if magic is not None else (IMAGES_MAGIC, LABELS_MAGIC)
    if found not in expected:
        what = {IMAGES_MAGIC: "an IDX image file", LABELS_MAGIC: "an IDX label file"}.get(magic, "an IDX file")
        raise DataError(f"{path}: wrong magic number {found} (expected {' or '.join(map(str, expected))}); "
                        f"not {what}")
    ndim = 3 if found == IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated or corrupt IDX file (header cut short)")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    need = math.prod(shape)  # Python ints: a forged header cannot overflow it
    if len(data) - header < need:
        raise DataError(f"{path}: truncated or corrupt IDX file ({len(data) - header} data bytes, "
                        f"header says {need} for shape {shape})")
    return np.frombuffer(data, np.uint8, count=need, offset=header).reshape(shape).copy()


def read_idx(path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (`.gz` or plain) into a uint8 array; no md5 check."""
    return parse_idx(decompress(path), path, magic)


def verify(path, name: str, file: str | None = None) -> bytes:
    """Check one file of data set `name` (`file`, by default the path's name) against both md5s;
    return its decompressed content."""
    path = Path(path)
    gz_md5, content_md5 = MD5[name][file or path.name]
    raw = path.read_bytes()
    if hashlib.md5(raw).hexdigest() == gz_md5:
        return _gunzip(raw, path)
    data = _gunzip(raw, path)
    if hashlib.md5(data).hexdigest() != content_md5:
        raise DataError(f"{path}: wrong md5 (neither the published .gz nor its content); "
                        f"the file is damaged or not {name}, delete it and load again")
    return data


# ---------------------------------------------------------------- where the files are

def cache_dir(name: str) -> Path:
    """`$XDG_CACHE_HOME/genlab/<name>` or `~/.cache/genlab/<name>`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "genlab" / name


def candidates(name: str, root=None) -> list[tuple[str, Path | None]]:
    """(label, directory) for every place looked, in order; directory None when unset."""
    if root is not None:
        root = Path(root).expanduser()
        return [("root", root), ("root", root / name)]
    env = os.environ.get("GENLAB_DATA_DIR")
    return [("$GENLAB_DATA_DIR", Path(env).expanduser() / name if env else None),
            ("cache", cache_dir(name)),
            ("Debian", Path(DEBIAN_DIR) / name)]


def _complete(d: Path | None) -> bool:
    return d is not None and all((d / f).is_file() for f in FILES)


def find(name: str, root=None) -> Path | None:
    """The first place holding all four files, or None."""
    for _, d in candidates(name, root):
        if _complete(d):
            return d
    return None


def locate(name: str) -> str:
    """Where `name` would be loaded from now, without loading it."""
    d = find(name)
    return str(d) if d else f"not found (would download to {cache_dir(name)})"


def _looked(name: str, root=None) -> str:
    parts = []
    for label, d in candidates(name, root):
        if d is None:
            parts.append(f"{label} (unset)")
        else:
            missing = [f for f in FILES if not (d / f).is_file()]
            what = ("no such folder" if not d.is_dir() else "no IDX files" if len(missing) == len(FILES)
                    else f"missing {', '.join(missing)}")
            parts.append(f"{d} ({what})")
    return "; ".join(dict.fromkeys(parts))


def download(url: str, dest: Path, check=None) -> None:
    """Fetch `url` to `dest` with a progress bar, atomically: into `dest.part`, then `check(part)`
    (the md5 check; it raises on a bad file), then a rename. A download that dies mid-stream, or
    a process killed during it, leaves at most a `.part` file, which nothing takes for the data."""
    from tqdm.auto import tqdm

    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                while chunk := r.read(1 << 16):
                    f.write(chunk)
                    bar.update(len(chunk))
        if total is not None and part.stat().st_size != total:
            raise OSError(f"download cut short ({part.stat().st_size} of {total} bytes)")
        if check is not None:
            check(part)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def fetch(name: str) -> Path:
    """Download the missing files of `name` into the cache; DataError naming every place looked."""
    d = cache_dir(name)
    errors = []
    try:
        d.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            if (d / f).is_file():
                continue
            for base in MIRRORS[name]:
                try:  # the md5 is checked on the .part file, before it takes the real name
                    download(base + f, d / f, check=lambda part, f=f: verify(part, name, f))
                    break
                except (OSError, ValueError, EOFError, http.client.HTTPException) as e:
                    errors.append(f"{base + f}: {e}")
            else:
                raise OSError("; ".join(errors))
    except OSError as e:
        looked = _looked(name)
        raise DataError(f"{name} not found; looked in {looked}; download failed ({e}); "
                        f"set GENLAB_DATA_DIR to a folder holding {name}/{FILES[0]} etc.") from None
    return d


# ---------------------------------------------------------------- loading

@functools.lru_cache(maxsize=4)
def _arrays(directory: str, name: str) -> tuple[np.ndarray, ...]:
    """Verified uint8 images and labels of both splits (cached per folder)."""
    d = Path(directory)
    out = []
    for images, labels in (FILES[:2], FILES[2:]):
        x = parse_idx(verify(d / images, name), d / images, IMAGES_MAGIC)
        y = parse_idx(verify(d / labels, name), d / labels, LABELS_MAGIC)
        if len(x) != len(y):
            raise DataError(f"{d / labels}: {len(y)} labels for {len(x)} images in {images}")
        out += [x, y]
    return tuple(out)


def load_idx_set(name: str, root=None) -> Dataset:
    """Find (or download) and load data set `name` ('mnist' or 'fashion-mnist')."""
    if name not in MD5:
        raise unknown_name("IDX data set", name, MD5)
    d = find(name, root)
    if d is None:
        if root is not None:
            raise DataError(f"{name}: {FILES[0]} etc. not found; looked in {_looked(name, root)}")
        d = fetch(name)
    xtr, ytr, xte, yte = _arrays(str(d.resolve()), name)
    if xtr.shape[1:] != xte.shape[1:] or 0 in xtr.shape[1:]:
        raise DataError(f"{d}: train images are {'x'.join(map(str, xtr.shape[1:]))}, test images "
                        f"{'x'.join(map(str, xte.shape[1:]))}; the IDX files are damaged or not from one data set")

    def images(a):
        return torch.from_numpy(a).unsqueeze(1).float().div_(255.0)

    def labels(a):
        return torch.from_numpy(a.astype(np.int64))

    h, w = xtr.shape[1:]
    spec = DataSpec("image", (1, h, w), 10, list(CLASS_NAMES[name]), name=name, levels=256,
                    source={"name": name, "options": {}})
    return Dataset(images(xtr), images(xte), spec, labels(ytr), labels(yte), location=str(d))


@register_dataset("mnist", "MNIST handwritten digits, 28x28 grayscale (60000 train / 10000 test, 10 classes)",
                  "image", locate=functools.partial(locate, "mnist"))
def mnist(root: str | None = None) -> Dataset:
    """MNIST as float32 N x 1 x 28 x 28 in [0, 1] with int64 labels."""
    return load_idx_set("mnist", root)


@register_dataset("fashion-mnist", "Zalando's Fashion-MNIST, 28x28 grayscale clothing (60000 / 10000, 10 classes)",
                  "image", locate=functools.partial(locate, "fashion-mnist"))
def fashion_mnist(root: str | None = None) -> Dataset:
    """Fashion-MNIST as float32 N x 1 x 28 x 28 in [0, 1] with int64 labels."""
    return load_idx_set("fashion-mnist", root)
