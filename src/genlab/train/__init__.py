"""Trainer, EMA, checkpoints, distributed glue, callbacks, and runs."""

from .config import Budget, TrainConfig
from .callbacks import Callback, JsonlLogger, ProgressBar, SampleGrids
from .ema import EMA
from .trainer import Trainer
from .run import Run, resume, train

__all__ = ["Budget", "TrainConfig", "Callback", "JsonlLogger", "ProgressBar", "SampleGrids", "EMA", "Trainer",
           "Run", "resume", "train"]
