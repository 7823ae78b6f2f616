"""Data sets: registry, images (digits, mnist, fashion-mnist, folders), 2-D toys, arrays."""

from .spec import DataSpec, Dataset
from .registry import DATASETS, load_dataset, register_dataset, dataset_from_spec
from . import images, idx, toy2d, translation

REGISTERING_MODULES = (images, idx, toy2d, translation)  # importing them registers the named sets

__all__ = ["DataSpec", "Dataset", "DATASETS", "load_dataset", "register_dataset", "dataset_from_spec"]
