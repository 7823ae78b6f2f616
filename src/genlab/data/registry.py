"""Named data sets and `load_dataset`, the one way in."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import DataError, unknown_name
from ..params import Anything, Bool, Either, Float, Int, Ints, OneOf, Text, check_settings
from .spec import Dataset

#: the valid values of every data option (`--set data.NAME=VALUE`); an option means the same in every
#: loader that takes it (genlab.params; tests check that every loader's option is listed here)
OPTION_RANGES = {
    "n_train": Int(1), "n_test": Int(1), "sigma": Float(0), "seed": Int(),
    "test_fraction": Float(0, 1, low_open=True, high_open=True),
    "size": Either(Int(1, none=True), Ints(1, min_len=2), Text()),
    "mode": OneOf("L", "RGB", none=True), "kind": OneOf("image", "vector", none=True), "stream": Bool(none=True),
    "unpaired": Bool(),
    "labels": Anything(), "label_column": Either(Text(none=True), Int()),
}


@dataclass
class DatasetEntry:
    name: str
    loader: Callable[..., Dataset]
    description: str
    kind: str  # image | vector
    locate: Optional[Callable[[], str]] = None  # where it would be found now (for `genlab datasets`)

    def options(self) -> dict:
        sig = inspect.signature(self.loader)
        return {k: p.default for k, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty and k not in ("root",)}


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str, kind: str, locate=None):
    def wrap(fn):
        DATASETS[name] = DatasetEntry(name, fn, description, kind, locate)
        return fn
    return wrap


def load_dataset(name_or_path, *, classes=None, **options) -> Dataset:
    """Load a registered data set by name, or user data from a path.

    >>> ds = load_dataset("digits")
    >>> ds.train.shape, ds.spec.kind, ds.spec.num_classes
    (torch.Size([1437, 1, 8, 8]), 'image', 10)

    Paths: `.npy` / `.npz` / `.csv` arrays, or a folder of images (one sub-folder
    per class gives labels; exactly `A/` and `B/` give paired data, inputs and targets
    matched by file name; a `.npz` with `x` and `c` is paired too: `genlab.data.paired`). `options` go to the loader (e.g. `sigma=` for toys,
    `size=` for image folders); `classes=[0, 3]` keeps only those labels.
    """
    from .arrays import load_array_file
    from .folder import load_image_folder

    name = str(name_or_path)
    if name in DATASETS:
        entry = DATASETS[name]
        allowed = entry.options()
        for k in options:
            if k not in allowed and "root" not in k:
                raise unknown_name(f"option for data set '{name}'", k, allowed)
        check_settings(options, OPTION_RANGES, f"data set '{name}'")
        ds = entry.loader(**options)
        ds.spec.source = {"name": name, "options": {**allowed, **options}}
    else:
        path = Path(name).expanduser()
        _check_path_options(path, options)
        if path.is_dir():
            from .paired import is_paired_folder, load_paired_folder

            ds = (load_paired_folder if is_paired_folder(path) else load_image_folder)(path, **options)
        elif path.suffix.lower() in (".npy", ".npz", ".csv"):
            if not path.exists():
                raise DataError(f"no such file: {path}")
            ds = load_array_file(path, **options)
        elif path.exists():
            raise DataError(f"{path}: unsupported file type (use .npy, .npz, .csv or a folder of images)")
        else:
            raise unknown_name("data set", name, DATASETS)
        ds.spec.source = {"name": str(path.resolve()), "options": dict(options)}
    if classes is not None:
        ds = ds.select_classes(classes)
    return ds


def _check_path_options(path: Path, options: dict) -> None:
    """Options for data given as a path: the loader's own names (with a did-you-mean), in OPTION_RANGES."""
    from .arrays import load_array_file
    from .folder import load_image_folder
    from .paired import is_paired_folder, load_paired_folder

    if not options:
        return
    if path.is_dir():
        loader, what = (load_paired_folder, "a folder of paired images") if is_paired_folder(path) else \
            (load_image_folder, "an image folder")
    else:
        loader, what = load_array_file, f"a {path.suffix or 'data'} file"
    allowed = [k for k in inspect.signature(loader).parameters if k != "path"]
    for k in options:
        if k not in allowed:
            raise unknown_name(f"option for {what}", k, allowed)
    check_settings(options, OPTION_RANGES, str(path))


def dataset_from_spec(spec_dict: dict) -> Dataset:
    """Reload the data a run was trained on, from its config's data spec."""
    src = spec_dict.get("source") or {}
    if not src.get("name"):
        raise DataError("this run's data was given as arrays in memory; pass the data explicitly")
    return load_dataset(src["name"], classes=src.get("classes"), **src.get("options", {}))
