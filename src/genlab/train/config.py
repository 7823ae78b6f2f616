"""Trainer settings and the training budget, both plain dataclasses that round-trip to JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

from ..errors import ConfigError, unknown_name
from ..params import Anything, Bool, Float, Floats, Int, OneOf, check_settings


@dataclass
class TrainConfig:
    """Optimisation settings. Families override defaults through `train_defaults`."""

    lr: float = 1e-3
    batch_size: int = 128
    optimizer: str = "adam"            # adam | adamw
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"      # constant | cosine | linear (decay over the budget)
    min_lr_ratio: float = 0.0
    grad_clip: Optional[float] = None  # max global grad norm per player
    ema_decay: Optional[float] = None  # None: no EMA
    log_every: int = 25
    sample_every: int = 0              # steps between progress grids; 0: none
    checkpoint_every: int = 500        # steps between checkpoints (and one at the end)
    precision: str = "fp32"            # fp32 | bf16 (autocast) | fp16 (autocast and a gradient scaler per player)
    compile: bool = False              # torch.compile the training step (model and loss; sampling is not compiled)
    channels_last: bool = False        # images and conv weights in NHWC (mkldnn: ~14% faster UNet steps on CPU)
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    seed: int = 0
    stream: Optional[bool] = None      # True: batches read by DataLoader workers (always so for data
                                       # too large for memory, `genlab.data.lazy`)
    workers: int = 2                   # DataLoader worker processes when streaming (0: in this process)
    clock: str = "auto"                # what a minutes budget counts: cpu (process CPU time: the same
                                       # steps however busy the machine) | wall | auto (cpu on CPU
                                       # devices, wall on GPUs, where the CPU mostly waits); runs record
                                       # the resolved one
    memory_check: bool = True          # refuse to start when the estimated memory or checkpoint disk space
                                       # exceeds what the machine has (`genlab.train.resources`)

    def __post_init__(self):
        check_settings({k: getattr(self, k) for k in TRAIN_RANGES}, TRAIN_RANGES)
        self.betas = tuple(self.betas)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From `to_dict`'s output; runs written before 2026-11-22 call lr_schedule `schedule`."""
        d = dict(d)
        if "schedule" in d:
            d.setdefault("lr_schedule", d.pop("schedule"))
        for k in d:  # e.g. a setting of a newer genlab
            if k not in cls.names():
                raise unknown_name("trainer setting", k, cls.names())
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


#: the valid values of each trainer setting (genlab.params)
TRAIN_RANGES = {
    "lr": Float(0, low_open=True), "batch_size": Int(1), "optimizer": OneOf("adam", "adamw"),
    "betas": Floats(0, 1, high_open=True, length=2), "weight_decay": Float(0), "warmup_steps": Int(0),
    "lr_schedule": OneOf("constant", "cosine", "linear"), "min_lr_ratio": Float(0, 1),
    "grad_clip": Float(0, low_open=True, none=True), "ema_decay": Float(0, 1, low_open=True, high_open=True, none=True),
    "log_every": Int(1), "sample_every": Int(0), "checkpoint_every": Int(0),
    "precision": OneOf("fp32", "bf16", "fp16"), "compile": Bool(), "channels_last": Bool(), "device": Anything(),
    "seed": Int(), "stream": Bool(none=True), "workers": Int(0),
    "clock": OneOf("wall", "cpu", "auto"), "memory_check": Bool(),
}


def resolve_clock(clock: str, device: str = "auto") -> str:
    """"auto" -> "wall" when training runs on a GPU (`device` as TrainConfig.device), else "cpu"."""
    if clock != "auto":
        return clock
    from .distributed import pick_device

    return "wall" if pick_device(device).type == "cuda" else "cpu"


@dataclass
class Budget:
    """How long to train: exactly one of epochs, steps or minutes (absolute targets)."""

    epochs: Optional[float] = None
    steps: Optional[int] = None
    minutes: Optional[float] = None

    def __post_init__(self):
        given = [k for k in ("epochs", "steps", "minutes") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError("give exactly one budget: epochs, steps or minutes")
        v = getattr(self, given[0])
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ConfigError(f"{given[0]} must be a positive number, got {v!r}")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def extended(self, step: int, epoch: float, elapsed: float, extra: "Budget") -> "Budget":
        """The absolute target after adding `extra` to where a run stands now."""
        if extra.steps is not None:
            return Budget(steps=step + extra.steps)
        if extra.epochs is not None:
            return Budget(epochs=epoch + extra.epochs)
        return Budget(minutes=elapsed / 60 + extra.minutes)


def split_settings(settings: dict, hparam_names) -> tuple[dict, dict]:
    """Split `--set` style settings into (model hyperparameters, trainer settings)."""
    model_kw, train_kw = {}, {}
    trainer_names = set(TrainConfig.names())
    for k, v in settings.items():
        if k in hparam_names:
            model_kw[k] = v
        elif k in trainer_names:
            train_kw[k] = v
        else:
            raise unknown_name("setting", k, set(hparam_names) | trainer_names)
    return model_kw, train_kw
