"""The Trainer: one loop for every family, single- or multi-player (GANs), CPU to torchrun.

Each training step runs every player of the model in turn (e.g. `n_critic`
discriminator updates, then one generator update), each with its own optimizer:

    for player in model.players():
        repeat player.steps times:
            x, y <- next minibatch (y: the condition, labels or a tensor per example)
            loss = model(player.method, x, y)["loss"]
            player's optimizer: zero_grad, backward, clip, step

The checkpoint holds everything a resumed run needs to end with exactly the
weights an uninterrupted run would have: weights, EMA, optimizers, RNG states,
step, elapsed time and the position in the data order.

SIGINT (Ctrl-C) or SIGTERM while the loop runs ends the current step, saves a checkpoint at that
step and raises `TrainingInterrupted` (a second Ctrl-C stops at once, saving nothing).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..data.spec import Dataset
from ..errors import DiskFull, GenlabError, GenlabWarning, TrainingDiverged, TrainingInterrupted
from ..io import first_line, load_state, save_state
from ..models.base import GenerativeModel, load_weights_into
from . import distributed
from .callbacks import Callback
from .checkpoint import rng_state, seed_everything, set_rng_state
from .config import Budget, TrainConfig
from .ema import EMA
from .loader import stream_batches
from .stream import BatchStream
from ..data.lazy import is_lazy
from ..nn.shard import GlobalBatch

CHECKPOINT = Path("checkpoint") / "last.pt"


class StopSignals:
    """While active (in the main thread): SIGINT and SIGTERM ask the loop to stop after its step
    (`requested` holds the signal); a second SIGINT raises KeyboardInterrupt at once, a repeated
    SIGTERM (torchrun's, say, after the user's Ctrl-C) changes nothing. Processes forked meanwhile
    (DataLoader workers, which Ctrl-C in a terminal reaches too) ignore both: the loop stops them."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None
        self._old = {}

    def _handle(self, signum, frame):
        if os.getpid() != self.pid:  # a DataLoader worker forked from the loop: the loop decides, then stops it
            return
        if self.requested is None:
            self.requested = signum
            print(f"\ngenlab: {signal.Signals(signum).name}: saving a checkpoint after this step"
                  + (" (Ctrl-C again to stop at once, saving nothing)" if signum == signal.SIGINT else ""),
                  file=sys.stderr, flush=True)
        elif signum == signal.SIGINT and self.requested == signal.SIGINT:
            raise KeyboardInterrupt

    def __enter__(self):
        self.pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


def _yaml_number(x: float) -> str:
    """x written so that `--set` (YAML) reads a float: 0.0001, 300, 1.0e-06 (never 1e-06, a string)."""
    return f"{x:g}" if 1e-4 <= abs(x) < 1e6 else f"{x:.1e}"


def nonfinite_tensor(state: dict, prefix: str = "") -> Optional[str]:
    """The name of the first floating-point tensor of `state` holding NaN or Inf, or None."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return prefix + name
    return None


#: the autocast type of each reduced precision (fp32: no autocast)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_cpu_precision(precision: str) -> bool:
    """Whether this CPU has native instructions for bf16 / fp16. On x86, bf16 needs AVX512-BF16 or AMX:
    oneDNN's own check also accepts plain AVX512, where it converts, and fm's UNet step in bf16 took 2x
    fp32's CPU time on such a CPU (2026-12-03). Elsewhere (ARM) and for fp16, oneDNN's check."""
    cpu = torch.cpu
    if precision == "bf16" and hasattr(cpu, "_is_avx512_bf16_supported") and cpu._is_avx2_supported():
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    return bool({"bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported,
                 "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported}[precision]())


def emulated_precision(device: torch.device, precision: str) -> Optional[str]:
    """A warning when `precision` (bf16, fp16) has no native kernels on this CPU (no AVX512-BF16 / AMX /
    AVX512-FP16: the type is converted or emulated; a bf16 512 x 512 matmul took 30x fp32's on an AVX2
    CPU, 2026-12-02, and fm's UNet step 2x on an AVX512 CPU without BF16, 2026-12-03), else None. GPUs
    are not checked."""
    if device.type != "cpu" or precision == "fp32" or native_cpu_precision(precision):
        return None
    return (f"precision={precision} on this CPU ({torch.backends.cpu.get_cpu_capability()}, no native "
            f"{precision} instructions) is emulated and slower than fp32 (2x to 30x, measured on such CPUs); "
            f"use --set precision=fp32 unless you are testing {precision} itself")


class Trainer:
    def __init__(self, model: GenerativeModel, data: Dataset, config: TrainConfig, budget: Budget,
                 run_dir: Optional[Path] = None, callbacks: Sequence[Callback] = ()):
        self.model, self.data, self.config, self.budget = model, data, config, budget
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        self.device = distributed.pick_device(config.device)
        self.distributed = distributed.setup(self.device)
        self.step, self.elapsed = 0, 0.0
        self.history: list[dict] = []
        self.warnings: list[str] = []  # said once each during training (stderr) and kept on the Run
        self.closed_form = False
        self.checkpoint_step: Optional[int] = None  # the step of the last checkpoint written or loaded

    # -- set-up ---------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        self.ema = None
        self._nhwc = bool(cfg.channels_last) and len(self.data.spec.shape) == 3
        if self._nhwc:  # before DDP's gradient buckets and the EMA copies: they take the layout
            self.model.to(memory_format=torch.channels_last)
        self.players = self.model.players()
        self.optimizers = [self._optimizer(p.parameters, {**p.overrides}) for p in self.players]
        # fp16's range is small: each player's loss is scaled up before backward and its gradients
        # unscaled before the step, which is skipped (and the scale halved) when any is Inf/NaN
        self.scalers = ([torch.amp.GradScaler(self.device.type) for _ in self.players]
                        if cfg.precision == "fp16" else None)
        slow = emulated_precision(self.device, cfg.precision) if self.players else None  # closed forms: no autocast
        if slow and distributed.is_main():
            self.warnings.append(slow)
            warnings.warn(GenlabWarning(slow), stacklevel=2)
        self.wrapped: nn.Module = self.model
        rank, world = 0, 1
        if self.distributed and self.players:
            from torch.nn.parallel import DistributedDataParallel as DDP

            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DDP(self.model, device_ids=ids, find_unused_parameters=len(self.players) > 1)
        self.rank, self.world = rank, world
        # compiled: the training step's call, not the model, so sampling and saving see plain modules
        self.step_call = self.wrapped
        if cfg.compile:
            import torch._inductor.config as inductor

            inductor.fallback_random = True  # random draws from torch's generator: the eager run's noise
            self.step_call = torch.compile(self.wrapped)
        self.stream = BatchStream(len(self.data.train), cfg.batch_size, cfg.seed, rank, world)
        y = self.data.conditions("train", self.model.condition_kind)  # labels, tensor conditions or None
        self.streamed = bool(cfg.stream) or is_lazy(self.data.train)
        self._batches = None
        if self.streamed:  # read by DataLoader workers as the stream asks (data larger than memory)
            self.x, self.y = self.data.train, y
        else:
            self.x = self.data.train.to(self.device)
            self.y = None if y is None else y.to(self.device)
        self.steps_per_epoch = self.stream.batches_per_epoch / max(1, sum(p.steps for p in self.players))

    def _optimizer_settings(self, overrides: dict) -> dict:
        cfg = self.config
        return {"lr": cfg.lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay, **overrides}

    def _optimizer(self, params, overrides: dict) -> torch.optim.Optimizer:
        kw = self._optimizer_settings(overrides)
        kind = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        groups = [{"params": params, "initial_lr": kw["lr"]}]
        try:  # the fused kernel: one pass over all parameters, ~6x faster than the per-tensor loop on CPU
            return kind(groups, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            return kind(groups, **kw)

    @property
    def total_steps(self) -> Optional[int]:
        if self.budget.steps is not None:
            return int(self.budget.steps)
        if self.budget.epochs is not None:
            return max(1, math.ceil(self.budget.epochs * self.steps_per_epoch))
        return None

    @property
    def epoch(self) -> float:
        return self.stream.epochs_done

    def _progress(self) -> float:
        if self.total_steps is not None:
            return min(self.step / self.total_steps, 1.0)
        return min(self.elapsed / (self.budget.minutes * 60), 1.0)

    def _done(self) -> bool:
        return self._progress() >= 1.0

    def lr_factor(self) -> float:
        """warmup (linear from 0) x decay over the budget (constant, linear or cosine)."""
        cfg = self.config
        warm = min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        p = self._progress()
        if cfg.lr_schedule == "cosine":
            decay = 0.5 * (1 + math.cos(math.pi * p))
        elif cfg.lr_schedule == "linear":
            decay = 1 - p
        else:
            decay = 1.0
        return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay)

    # -- the loop -----------------------------------------------------------------
    def fit(self, resume: bool = False) -> GenerativeModel:
        self.model.to(self.device)
        if not resume:
            seed_everything(self.config.seed)
            self.model.prepare(self.data)  # data-dependent init (standardisation, ActNorm, ...)
            if self.model.fit_closed_form(self.data):
                self._build()
                return self._finish_closed_form()
        self._build()
        cfg = self.config
        self.ema = EMA(self.model, cfg.ema_decay, self.model.ema_names()) if cfg.ema_decay else None
        if cfg.clock == "auto":  # `genlab.train` resolves it first; a Trainer built directly, here
            cfg.clock = "wall" if self.device.type == "cuda" else "cpu"
        if resume:
            self.load_checkpoint()
        else:  # a run is resumable from its first moment: a failure before the first periodic
            self.save_checkpoint()  # checkpoint leaves step 0, not a folder that nothing can continue
        for cb in self.callbacks:
            cb.on_train_start(self)
        self._acc: dict[str, torch.Tensor] = {}  # loss parts summed over the log window
        self._cnt: dict[str, int] = {}
        self.model.train()
        clock = time.process_time if cfg.clock == "cpu" else time.perf_counter
        t_last = clock()
        stop = StopSignals()
        try:
            stop.__enter__()
            while not self._done():
                self._train_step()
                self.step += 1
                if self.ema is not None:
                    self.ema.update(self.model, self.step)
                now = clock()
                self.elapsed += now - t_last
                t_last = now
                if self.world > 1 and self.budget.minutes is not None:
                    self.elapsed = distributed.agree(self.elapsed)  # rank 0's clock decides for all
                at_ckpt = self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0
                if self.step % self.config.log_every == 0 or at_ckpt or self._done():
                    self._log()
                if at_ckpt and not self._done():
                    self.save_checkpoint()
                for cb in self.callbacks:
                    cb.on_step_end(self)
                t_last += clock() - now  # callbacks and logging are not training time
                signum = self._stop_signal(stop)
                if signum:
                    self._log()  # the window so far: the resumed run logs from the next step on
                    self.save_checkpoint()
                    raise self._interrupted(signum)
            self.save_checkpoint()
        finally:
            stop.__exit__()
            self._batches = None  # a streamed run's DataLoader workers stop here, not at garbage collection
            for cb in self.callbacks:
                cb.on_train_end(self)
        self.model.eval()
        return self.model

    def _stop_signal(self, stop: StopSignals) -> int:
        """The signal that asks the loop to stop (0: none); under torchrun, rank 0's for every rank,
        so all ranks stop after the same step."""
        if self.world > 1:
            return int(distributed.agree(float(stop.requested or 0)))
        return int(stop.requested or 0)

    def _interrupted(self, signum: int) -> TrainingInterrupted:
        name = signal.Signals(signum).name
        if self.run_dir is None:
            return TrainingInterrupted(f"{name}: stopped at step {self.step} (nothing saved: the run has no "
                                       "directory)", signum, None, self.step)
        return TrainingInterrupted(f"{name}: stopped at step {self.step}, checkpoint saved; resume with "
                                   f"`genlab resume {self.run_dir}`", signum, self.run_dir, self.step)

    def _autocast(self):
        dtype = AUTOCAST_DTYPES.get(self.config.precision)
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def _global_batch(self, n: int):
        """Under DDP: this rank's n examples are rows rank*n.. of the global batch, whose random
        draws and batch statistics every rank computes alike (`genlab.nn.shard`)."""
        if self.world == 1:
            return contextlib.nullcontext()
        return GlobalBatch(n, n * self.world, n * self.rank)

    def _next_batch(self):
        """The stream's next minibatch (x, y) on the device (NHWC with channels_last)."""
        x, y = self._read_batch()
        if self._nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _read_batch(self):
        if not self.streamed:
            idx = self.stream.next().to(self.device)
            return self.x[idx], (None if self.y is None else self.y[idx])
        if self._batches is None:  # started here, after a resume has set the stream's position
            self._batches = stream_batches(self.x, self.y, self.stream, self.config.workers,
                                           pin=self.device.type == "cuda")
        idx = self.stream.next()
        got, x, y = next(self._batches)
        assert torch.equal(got, idx), "the loader left the stream's order"
        x = x.to(self.device, non_blocking=True)
        return x, (None if y is None else y.to(self.device, non_blocking=True))

    def _train_step(self) -> None:
        lr_factor = self.lr_factor()
        multi = len(self.players) > 1
        for i, (player, opt) in enumerate(zip(self.players, self.optimizers)):
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lr_factor
            scaler = self.scalers[i] if self.scalers else None
            for _ in range(player.steps):
                x, y = self._next_batch()
                with self._autocast(), self._global_batch(len(x)):
                    out = self.step_call(player.method, x, y)
                opt.zero_grad(set_to_none=True)
                (scaler.scale(out["loss"]) if scaler else out["loss"]).backward()
                if self.config.grad_clip:
                    if scaler:
                        scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(player.parameters, self.config.grad_clip)
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                for k, v in out.items():
                    key = f"{player.name}/{k}" if multi else k
                    self._acc[key] = self._acc.get(key, 0) + v.detach().float()
                    self._cnt[key] = self._cnt.get(key, 0) + 1

    def _log(self) -> None:
        """Average the window's losses, stop on NaN/Inf, hand the record to callbacks."""
        if not self._acc:
            return
        keys = list(self._acc)  # the same order on every rank (the same code ran)
        means = torch.stack([(self._acc[k] / self._cnt[k]).reshape(()) for k in keys])  # one host sync
        if self.world > 1:  # the global batch's loss: the mean of the ranks' (equal-sized) batch means
            means = distributed.mean(means)
        values = dict(zip(keys, means.tolist()))
        self._acc, self._cnt = {}, {}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            k, v = next(iter(bad.items()))
            raise self.diverged(f"{k} became {v}")
        record = {"step": self.step, "epoch": round(self.epoch, 4), "time": round(self.elapsed, 3),
                  "lr": self.optimizers[0].param_groups[0]["lr"], **values}
        self.history.append(record)
        if distributed.is_main():
            for cb in self.callbacks:
                cb.on_log(self, record)

    def _finish_closed_form(self) -> GenerativeModel:
        self.closed_form = True
        self.model.eval()
        x = self.x[:] if is_lazy(self.x) else self.x
        with torch.no_grad():
            out = self.model.loss(x.to(self.device), None if self.y is None else self.y.to(self.device))
        record = {"step": 0, "epoch": 1, "time": 0.0, "lr": 0.0,
                  **{k: float(v) for k, v in out.items()}}
        self.history.append(record)
        for cb in self.callbacks:
            cb.on_log(self, record)
        return self.model

    # -- weights for sampling and saving ---------------------------------------------
    @contextlib.contextmanager
    def sampling_weights(self):
        """The model in eval mode with EMA weights swapped in (where EMA is used)."""
        was_training = self.model.training
        self.model.eval()
        ctx = self.ema.swapped(self.model) if self.ema is not None else contextlib.nullcontext(self.model)
        try:
            with ctx, torch.no_grad():
                yield self.model
        finally:
            self.model.train(was_training)

    # -- checkpoints ------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write checkpoint/last.pt (atomically), never with NaN/Inf weights: those stop the run with the
        previous checkpoint kept."""
        if self.run_dir is None or self.closed_form:
            return
        bad = nonfinite_tensor(self.model.state_dict()) or (  # every rank: their weights are equal, so all stop
            nonfinite_tensor(self.ema.shadow, "EMA ") if self.ema is not None else None)
        if bad is not None:
            raise self.diverged(f"the weights became NaN or Inf ({bad})")
        if not distributed.is_main():
            return
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "scalers": [s.state_dict() for s in self.scalers] if self.scalers else None,
            "step": self.step, "epoch": self.epoch, "elapsed": self.elapsed, "stream": self.stream.state_dict(),
            "rng": rng_state(), "budget": self.budget.to_dict(),
        }
        try:
            save_state(state, self.run_dir / CHECKPOINT)
        except DiskFull as e:
            kept = (f"the checkpoint of step {self.checkpoint_step} is intact; free some space and resume with "
                    f"`genlab resume {self.run_dir}`" if self.checkpoint_step is not None else
                    "no checkpoint was written yet; free some space and train again")
            raise DiskFull(f"{str(e).split(' (the previous')[0]}; {kept}", e.errno) from e
        self.checkpoint_step = self.step

    def check_final_weights(self, model) -> None:
        """A TrainingDiverged instead of saving final weights that hold NaN or Inf."""
        bad = nonfinite_tensor(model.state_dict())
        if bad is not None:
            raise self.diverged(f"the final weights hold NaN or Inf ({bad})")

    def diverged(self, what: str) -> TrainingDiverged:
        """The one-line message of a run that stopped on NaN/Inf: what happened, what was kept, the usual
        remedies, and a command that continues (or restarts) with other settings."""
        cfg = self.config
        lr = _yaml_number(cfg.lr / 10)
        fixes = [f"--set lr={lr}"] + ([] if cfg.grad_clip else ["--set grad_clip=1"]) + (
            ["--set precision=fp32"] if cfg.precision != "fp32" else [])
        remedies = (f"usual remedies: a lower lr (now {cfg.lr:g}), "
                    + (f"a smaller grad_clip (now {cfg.grad_clip:g})" if cfg.grad_clip else "grad_clip=1")
                    + (f", precision=fp32 (now {cfg.precision})" if cfg.precision != "fp32" else "")
                    + ", and a look at the data (outliers, constant columns, too few examples)")
        where = f"training stopped at step {self.step}: {what}"
        if self.closed_form:
            return TrainingDiverged(f"{where}; nothing was saved; check the data (outliers, constant columns, "
                                    "too few examples)")
        if self.run_dir is not None and self.checkpoint_step is not None:
            return TrainingDiverged(f"{where}; the last good checkpoint (step {self.checkpoint_step}) is kept in "
                                    f"{self.run_dir / CHECKPOINT}; {remedies}; continue from it with "
                                    f"`genlab resume {self.run_dir} {' '.join(fixes)}`")
        return TrainingDiverged(f"{where}; {remedies}; train again with e.g. {' '.join(fixes)}")

    def load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT
        state = load_state(path)
        try:
            load_weights_into(self.model, state["model"], path)
            if self.ema is not None and state["ema"] is not None:
                self.ema.load_state_dict(state["ema"], self.model)
            for o, s in zip(self.optimizers, state["optimizers"]):
                o.load_state_dict(s)
            for scaler, s in zip(self.scalers or [], state.get("scalers") or []):  # none before fp16 (2026-12-02)
                scaler.load_state_dict(s)
            self.step, self.elapsed = state["step"], state["elapsed"]
            self.stream.load_state_dict(state["stream"])
            set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:  # a checkpoint of another model
            raise GenlabError(f"{path}: this checkpoint does not fit the run's model "
                              f"({type(e).__name__}: {first_line(e, 160)}); was config.json edited?") from None
        self.checkpoint_step = self.step
        for player, opt in zip(self.players, self.optimizers):  # settings changed on resume (--set lr=...)
            kw = self._optimizer_settings(player.overrides)
            for group in opt.param_groups:
                if group.get("initial_lr") != kw["lr"]:
                    group["initial_lr"] = group["lr"] = kw["lr"]
                group["weight_decay"] = kw["weight_decay"]
                group["betas"] = kw["betas"]
