"""A data set's fingerprint: what a run records of its data, so that `resume`, `eval` and the other
verbs that read a run's data again notice when it changed.

    {"version": 1, "n_train": N, "n_test": M, "shape": [C, H, W],
     "arrays": "<sha256>",                                   # data held in memory
     "files": {"count": K, "bytes": B, "sha256": "<sha256>"}}  # data read from a file or folder

- `arrays`: SHA-256 of the tensors the model sees (train, test, labels, conditions, with their
  shapes), for every data set held in memory: built-in sets (digits, mnist, toys) and user files
  small enough to load. Exact; unaffected by moving or copying the files. ~0.4 s for all of MNIST.
- `files`: for data given as a path (a .npy/.npz/.csv file or a folder of images): each file's
  name relative to the data's root, its size, and a SHA-256 of its content, whole for files up to
  1 MiB, else of 16 blocks of 64 KiB spread over it (first and last included). Cheap for data too
  large to load (streamed runs record only this); a change that keeps every size and every
  sampled block goes unnoticed. Modification times are not used: a copy or a move keeps the
  fingerprint.

Two fingerprints are compared on the counts and shape, then on `arrays` when both have it, else
on `files` when both have it. Runs written before fingerprints existed have none and are not
checked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np

from ..io import human_size
from .lazy import is_lazy

VERSION = 1
WHOLE_FILE = 1 << 20     # files up to this size are hashed whole
BLOCK, BLOCKS = 1 << 16, 16
DATA_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".npy", ".npz", ".csv"}


def fingerprint(ds) -> dict:
    """The fingerprint of a Dataset (cached on it: a comparison trains many runs on one set)."""
    cached = getattr(ds, "_genlab_fingerprint", None)
    if cached is not None:
        return dict(cached)
    fp: dict = {"version": VERSION, "n_train": len(ds.train), "n_test": len(ds.test),
                "shape": list(ds.spec.shape)}
    if not (is_lazy(ds.train) or is_lazy(ds.test)):
        fp["arrays"] = _arrays_digest(ds)
    files = _source_files(ds.spec.source or {})
    if files is not None:
        fp["files"] = files_digest(*files)
    try:
        ds._genlab_fingerprint = dict(fp)
    except AttributeError:  # a Dataset-like object with slots: no cache
        pass
    return fp


def _arrays_digest(ds) -> str:
    h = hashlib.sha256()
    for name in ("train", "test", "train_labels", "test_labels", "train_cond", "test_cond"):
        t = getattr(ds, name, None)
        if t is None:
            continue
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}:{a.dtype.str}:{list(a.shape)};".encode())
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


def _source_files(source: dict) -> Optional[tuple[Path, list[Path]]]:
    """(root, files) of data loaded from a path, with a labels file named in its options; None otherwise."""
    name = source.get("name")
    if not name:
        return None
    path = Path(name)
    if not path.is_absolute() or not path.exists():  # a registered name, or data that is gone
        return None
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        root = path
    else:
        files, root = [path], path.parent
    labels = (source.get("options") or {}).get("labels")
    if isinstance(labels, str) and Path(labels).is_file():
        files.append(Path(labels))
    return root, files


def files_digest(root: Path, files: list[Path]) -> dict:
    h = hashlib.sha256()
    total = 0
    for f in files:
        size = f.stat().st_size
        total += size
        try:
            rel = f.relative_to(root).as_posix()
        except ValueError:  # a labels file elsewhere
            rel = f.name
        h.update(f"{rel}:{size};".encode())
        with open(f, "rb") as fh:
            if size <= WHOLE_FILE:
                h.update(fh.read())
            else:
                for i in range(BLOCKS):
                    fh.seek((size - BLOCK) * i // (BLOCKS - 1))
                    h.update(fh.read(BLOCK))
    return {"count": len(files), "bytes": total, "sha256": h.hexdigest()}


def differences(recorded: Optional[dict], current: dict) -> list[str]:
    """What changed between a recorded fingerprint and the data's current one (empty: nothing
    seen; always empty when nothing was recorded)."""
    if not recorded:
        return []
    out = []
    for key, what in (("n_train", "training examples"), ("n_test", "test examples")):
        if key in recorded and recorded[key] != current.get(key):
            out.append(f"{recorded[key]} -> {current.get(key)} {what}")
    if "shape" in recorded and list(recorded["shape"]) != list(current.get("shape", [])):
        out.append(f"example shape {tuple(recorded['shape'])} -> {tuple(current.get('shape', []))}")
    if out:
        return out
    if "arrays" in recorded and "arrays" in current:
        if recorded["arrays"] != current["arrays"]:
            out.append(f"different values (SHA-256 {recorded['arrays'][:12]} -> {current['arrays'][:12]})")
    elif "files" in recorded and "files" in current:
        a, b = recorded["files"], current["files"]
        if a.get("sha256") != b.get("sha256"):
            out.append(f"different files ({_files_text(a)} -> {_files_text(b)})")
    return out


def _files_text(f: dict) -> str:
    return f"{f.get('count')} file(s), {human_size(f.get('bytes', 0))}, SHA-256 {str(f.get('sha256'))[:12]}"




def same_data(a: Optional[dict], b: Optional[dict]) -> bool:
    """Whether two recorded fingerprints describe the same data (True when either is missing)."""
    if not a or not b:
        return True
    return not differences(a, b)



CHANGED_HINT = "give the data it was trained on with --data PATH, or pass --allow-changed-data to use this data anyway"


def data_for_run(cfg: dict, where, data=None, *, allow_changed_data: bool = False):
    """The data a run was trained on, checked against the fingerprint in its config.

    `cfg` is the run's config.json; `where` names the run in messages. `data`: None (reload it
    from the recorded source), a Dataset (API callers), or a name or path (the same data, moved:
    loaded with the recorded options and class selection). A DataError when the recorded source is
    gone, when the examples no longer have the run's shape, or, unless `allow_changed_data`, when
    the data differs from the fingerprint (a one-line message saying what changed).
    """
    from ..errors import DataError
    from .registry import DATASETS, load_dataset
    from .spec import Dataset

    spec = cfg.get("data") or {}
    src = spec.get("source") or {}
    options, classes = dict(src.get("options") or {}), src.get("classes")
    if isinstance(data, Dataset):
        ds = data
    elif data is not None:
        new, old = str(data), str(src.get("name") or "")
        if new in DATASETS or old in DATASETS:  # options of a built-in set only apply to that set
            same_kind = new == old
        else:  # a folder for a folder, a .npy for a .npy: the recorded options (size=, label_column=) apply
            p, q = Path(new).expanduser(), Path(old)
            arrays = (".npy", ".npz", ".csv")
            same_kind = ((p.is_dir() and q.suffix.lower() not in arrays)
                         or (p.is_file() and p.suffix.lower() == q.suffix.lower() in arrays))
        ds = load_dataset(new, classes=classes, **(options if same_kind else {}))
    else:
        name = src.get("name")
        if not name:
            raise DataError(f"{where}: this run's data was given as arrays in memory; pass it explicitly "
                            "(--data PATH, or data= from Python)")
        if name not in DATASETS and not Path(name).exists():
            raise DataError(f"{where}: its data {name} is gone (moved or deleted?); give its new location "
                            "with --data PATH")
        ds = load_dataset(name, classes=classes, **options)
    shape = tuple(spec.get("shape") or ())
    if shape and tuple(ds.spec.shape) != shape:
        raise DataError(f"{where}: '{ds.spec.name}' holds examples of shape {tuple(ds.spec.shape)}, but this run "
                        f"models shape {shape}; give the data it was trained on with --data PATH")
    changed = differences(cfg.get("data_fingerprint"), fingerprint(ds))
    if changed and not allow_changed_data:
        raise DataError(f"{where}: its data changed since training ({ds.spec.name}: {'; '.join(changed)}); "
                        + CHANGED_HINT)
    return ds


__all__ = ["fingerprint", "differences", "same_data", "files_digest", "data_for_run", "VERSION"]
