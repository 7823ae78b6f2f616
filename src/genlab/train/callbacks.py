"""Trainer callbacks: logging back-ends and periodic work plug in without touching the loop."""

from __future__ import annotations

import json
from pathlib import Path

import torch


class Callback:
    def on_train_start(self, trainer) -> None: ...
    def on_step_end(self, trainer) -> None: ...
    def on_log(self, trainer, record: dict) -> None: ...
    def on_train_end(self, trainer) -> None: ...


class JsonlLogger(Callback):
    """Appends each logged record to `metrics.jsonl` (one JSON object per line)."""

    def __init__(self, path):
        self.path = Path(path)

    def on_log(self, trainer, record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class ProgressBar(Callback):
    """tqdm bar over steps (or seconds, for a minutes budget) with the live loss."""

    def __init__(self, desc: str = "train"):
        self.desc, self.bar = desc, None

    def on_train_start(self, trainer):
        from tqdm.auto import tqdm

        b = trainer.budget
        self.timed = b.minutes is not None
        if self.timed:  # seconds of the run's clock: CPU time on a CPU (clock=cpu), else wall time
            unit = "CPU-s" if trainer.config.clock == "cpu" else "s"
            total, self.unit, done = int(b.minutes * 60), unit, int(trainer.elapsed)
        else:
            total, self.unit, done = trainer.total_steps, "step", trainer.step
        self.bar = tqdm(total=total, initial=done, desc=self.desc, unit=self.unit, dynamic_ncols=True,
                        mininterval=0.5)

    def on_step_end(self, trainer):
        target = int(trainer.elapsed) if self.timed else trainer.step
        if target > self.bar.n:
            self.bar.update(min(target, self.bar.total) - self.bar.n)

    def on_log(self, trainer, record):
        if self.bar is None:  # a closed-form fit logs once without a training loop
            return
        shown = {k: f"{v:.4g}" for k, v in record.items() if k not in ("step", "epoch", "time", "lr")}
        self.bar.set_postfix(shown, refresh=False)

    def on_train_end(self, trainer):
        if self.bar is not None:
            self.bar.close()


class SampleGrids(Callback):
    """Every `every` steps, a grid (images) or scatter (2-D) of samples from fixed noise."""

    def __init__(self, directory, every: int, n: int = 64, seed: int = 1234, view=None):
        """`view`: the model whose samples to draw when the Trainer trains a part of it (a latent
        model's inner family: its samples decoded to data space)."""
        self.directory, self.every, self.n, self.seed = Path(directory), every, n, seed
        self.view = view

    def on_step_end(self, trainer):
        if self.every and trainer.step % self.every == 0:
            from ..report.figures import save_samples

            with trainer.sampling_weights() as model:
                model = self.view if self.view is not None else model
                g = torch.Generator(device=model.device).manual_seed(self.seed)
                x = model.sample(self.n, generator=g)
            save_samples(x, model.spec, self.directory / f"step{trainer.step:07d}.png",
                         title=f"step {trainer.step}")
