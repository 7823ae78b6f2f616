"""genlab: deep generative models side by side — train, sample, evaluate, compare, use.

    import genlab
    data = genlab.load_dataset("digits")
    run = genlab.train("vae", data, minutes=1)
    x = run.model.sample(64)
    model = genlab.load(run.path)
"""

import os as _os
import sys as _sys

if "torch" not in _sys.modules:  # idle OpenMP threads sleep, not spin: CPU-time budgets stay fair (train/threads.py)
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__

from .errors import GenlabError, DataError, ConfigError, TrainingDiverged
from .data import DataSpec, Dataset, DATASETS, load_dataset
from .models import MODELS, GenerativeModel, create_model, load
from .train import Budget, TrainConfig, Trainer, Run, train, resume
from .estimator import Estimator
from .metrics.evaluate import evaluate

__all__ = ["__version__", "GenlabError", "DataError", "ConfigError", "TrainingDiverged", "DataSpec", "Dataset",
           "DATASETS", "load_dataset", "MODELS", "GenerativeModel", "create_model", "load", "Budget",
           "TrainConfig", "Trainer", "Run", "train", "resume", "Estimator", "evaluate"]
