"""Trainer callbacks: logging back-ends and periodic work plug in without touching the loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..errors import DiskFull
from ..io import disk_error, disk_full_message


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
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            full = disk_error(e)
            if full is None:
                raise
            raise DiskFull(f"{disk_full_message(self.path, full)}"
                           + (f"; resume from the checkpoint of step {trainer.checkpoint_step} with "
                              f"`genlab resume {trainer.run_dir}` once there is room"
                              if getattr(trainer, "checkpoint_step", None) is not None else ""), full.errno) from e


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


class DiscriminatorWatch(Callback):
    """One warning when a discriminator has won outright: its accuracy (`d_acc`, logged by adversarial
    families) at `level` or above in `patience` consecutive logged records. The generator then gets
    little useful gradient. Said once, through tqdm (it does not break the progress bar), and kept in
    `trainer.warnings` (and so on the Run). A family whose generator also has a supervised term
    (`generator_supervision`: pix2pix's L1, CycleGAN's cycle consistency) still learns from that term,
    and the warning says so: what is lost is the adversarial term's sharpening."""

    def __init__(self, patience: int = 10, level: float = 0.99):
        self.patience, self.level = patience, level
        self.streak, self.warned, self.first = 0, False, None

    def on_log(self, trainer, record):
        accs = [v for k, v in record.items() if k.split("/")[-1] == "d_acc"]
        if not accs or self.warned:
            return
        if min(accs) >= self.level:
            self.first = record["step"] if self.streak == 0 else self.first
            self.streak += 1
        else:
            self.streak = 0
        if self.streak >= self.patience:
            self.warned = True
            supervised = getattr(trainer.model, "generator_supervision", None)
            effect = ("so the generator learns little" if not supervised else
                      f"so the generator learns from its {supervised} term alone (outputs may stay blurry)")
            msg = (f"genlab: warning: the discriminator has won outright since step {self.first} (it tells real "
                   f"from generated {100 * min(accs):.0f}% of the time in {self.streak} logged steps in a row), "
                   f"{effect}; try a slower discriminator (a lower d_lr, or n_critic=1), "
                   "a regulariser (r1_weight=1, minibatch_std=true) or another loss (loss=hinge)")
            trainer.warnings.append(msg)
            from tqdm.auto import tqdm

            tqdm.write(msg, file=sys.stderr)
