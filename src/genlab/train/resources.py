"""Will it fit? Memory and disk a training run needs, estimated from the data's shape before the
model is built, and checked against what the machine has.

    memory  = OVERHEAD x (weights + gradients + optimizer state (Adam: 2 x weights) + EMA copy
                          + activations kept for the backward pass of one batch, the largest player's)
              + the 64-sample grid drawn at the end: the network on 64 examples at once, and the figure
    disk    = 2 x checkpoint (the new one is written beside the old, then renamed) + model.safetensors
    checkpoint = weights + EMA + optimizer state

The weights are counted on a model built with its parameters on PyTorch's meta device (shapes, no
storage); the activations by running each player's loss on meta tensors of one batch and adding up
what autograd saves for backward (`torch.autograd.graph.saved_tensors_hooks`). Nothing of the
model's size is allocated. Where a family cannot run on meta tensors, its weights are counted on a
real (CPU) build and its activations are left out: the estimate is then a lower bound.

Available memory: psutil's `available` when installed, else MemAvailable of /proc/meminfo, else
os.sysconf's available pages; the smaller of that and a cgroup (container) limit's headroom. On a
GPU, torch.cuda.mem_get_info. Training is refused (a ConfigError with a suggestion) when the
estimate exceeds it; `--set memory_check=false` trains anyway.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError

#: examples with more values than this are checked before the model is built (a forward pass on the
#: meta device: ~1 s the first time in a process); smaller ones only count the built model's weights
LARGE = 64 * 64 * 3
#: measured: a run's memory grows by 1.13x (gan) to 1.34x (vae) the parts counted here (4 RGB images of
#: 384x384, 3 steps), from temporaries of the optimizer step, the build and the final save
OVERHEAD = 1.35
#: the end of training draws a grid of GRID samples in one call (`run.write_figures`): the network runs
#: on GRID examples at once (counted as GRID x the activations one training example keeps), and the
#: grid's figure takes ~5.7x the samples' float32 size (measured: 64 RGB images of 256x256 and 512x512).
#: Measured on the issue's case at 512x512 (4 RGB PNGs, the vae's defaults, 3 steps): training grew the
#: process by 1.1 GB, the 64-sample grid by 6.8 GB more; this estimate says 7.9 GB for the whole run.
GRID = 64
FIGURE_FACTOR = 6


@dataclass
class Estimate:
    params: int                 # number of trainable + frozen parameters
    weight_bytes: int
    optimizer_bytes: int        # gradients + optimizer state
    ema_bytes: int
    activation_bytes: Optional[int]  # per batch; None: the family cannot run on meta tensors
    batch: int
    figure_bytes: int = 0       # the sample grid drawn at the end (GRID examples at once, and its figure)

    @property
    def total(self) -> int:
        parts = self.weight_bytes + self.optimizer_bytes + self.ema_bytes + (self.activation_bytes or 0)
        return int(OVERHEAD * parts) + self.figure_bytes

    @property
    def checkpoint_bytes(self) -> int:
        return self.weight_bytes + self.ema_bytes + (self.optimizer_bytes - self.weight_bytes)

    @property
    def disk_bytes(self) -> int:
        return 2 * self.checkpoint_bytes + self.weight_bytes

    def parts(self) -> str:
        act = (f"activations {size(self.activation_bytes)} for a batch of {self.batch}"
               if self.activation_bytes is not None else "activations not counted")
        return (f"weights {size(self.weight_bytes)} ({self.params / 1e6:.1f}M parameters), gradients and "
                f"optimizer {size(self.optimizer_bytes)}" + (f", EMA {size(self.ema_bytes)}" if self.ema_bytes else "")
                + f", {act}" + (f", the {GRID}-sample grid {size(self.figure_bytes)}" if self.figure_bytes else ""))


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


# -- what the machine has -----------------------------------------------------------------------
def available_memory(device: Optional[torch.device] = None) -> tuple[int, str]:
    """(bytes available for a new allocation, where the number comes from)."""
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    avail, what = None, ""
    try:
        import psutil

        avail, what = int(psutil.virtual_memory().available), "available memory"
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        avail, what = int(line.split()[1]) * 1024, "available memory"
                        break
        except OSError:
            pass
        if avail is None:
            try:
                avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                what = "available memory"
            except (ValueError, OSError, AttributeError):
                return 1 << 62, "unknown"
    limit = _cgroup_headroom()
    if limit is not None and limit < avail:
        return limit, "the container's memory limit"
    return avail, what


def _cgroup_headroom() -> Optional[int]:
    for cap, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                      ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            text = Path(cap).read_text().strip()
            if text == "max" or int(text) >= 1 << 60:
                return None
            return max(int(text) - int(Path(used).read_text().strip()), 0)
        except (OSError, ValueError):
            continue
    return None


def free_disk(path) -> int:
    """Free bytes on the file system `path` (or its nearest existing parent) would be written to."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


# -- what training needs ----------------------------------------------------------------------------
@contextlib.contextmanager
def _parameters_on_meta():
    """Every parameter registered inside goes to the meta device (shape and dtype, no storage);
    buffers stay real, so constructors that compute schedules or masks still run."""
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        p = module._parameters.get(name)
        if p is not None and p.device.type != "meta":
            module._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _build(family: str, spec, hparams: dict):
    """(model, on_meta): built with every tensor on the meta device where the family allows it, else
    with its parameters there and its buffers real (constructors that compute a schedule's values),
    else (a family that reads its weights while built) for real."""
    from ..models.base import create_model

    for everything in (True, False):
        try:
            with _parameters_on_meta(), (torch.device("meta") if everything else contextlib.nullcontext()):
                return _helpers_to_meta(create_model(family, spec, **hparams).to("meta")), True
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
    return create_model(family, spec, **hparams), False


def _helpers_to_meta(model):
    """Tensors a module keeps outside parameters and buffers (e.g. a diffusion model's noise schedule, a
    plain genlab object) moved to the meta device too: this model is built only to be measured."""
    for m in model.modules():
        for k, v in list(vars(m).items()):
            if isinstance(v, torch.Tensor) and not k.startswith("_"):
                m.__dict__[k] = v.to("meta")
            elif type(v).__module__.startswith("genlab.") and not isinstance(v, nn.Module) and hasattr(v, "__dict__"):
                for kk, vv in list(vars(v).items()):
                    if isinstance(vv, torch.Tensor):
                        setattr(v, kk, vv.to("meta"))
    return model


def _activation_bytes(model, spec, batch: int) -> Optional[int]:
    """What autograd keeps for the backward pass of the largest player's loss on one batch."""
    params = {id(p) for p in model.parameters()}
    x = torch.empty((batch, *spec.shape), device="meta")
    kind = model.condition_kind
    y = (torch.empty((batch, *spec.condition_shape), device="meta") if kind == "tensor" else
         torch.zeros(batch, dtype=torch.long, device="meta") if kind == "class" else None)
    worst = 0
    for player in model.players():
        saved: dict[int, torch.Tensor] = {}

        def pack(t):
            base = t._base if t._base is not None else t
            if id(t) not in params and id(base) not in params:
                saved[id(t)] = t  # kept alive until the player is done: ids stay unique
            return t

        try:
            with torch.device("meta"), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                model(player.method, x, y)
        except Exception:  # noqa: BLE001  (a family that reads values: .item(), data-dependent shapes)
            return None
        worst = max(worst, sum(t.numel() * t.element_size() for t in saved.values()))
    return worst + x.numel() * x.element_size()


def estimate(family: str, spec, hparams: dict, config, n_train: int) -> Estimate:
    """What training `family` on data of `spec` with `config` (a TrainConfig) needs, per process,
    from a model built without storage."""
    model, on_meta = _build(family, spec, hparams)
    return measure(model, spec, config, n_train, activations=on_meta)


def measure(model, spec, config, n_train: int, activations: bool = True) -> Estimate:
    """The estimate for a built model (on the meta device when `activations`: a forward pass runs)."""
    n_params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weight = sum(p.numel() * p.element_size() for p in model.parameters())
    weight += sum(b.numel() * b.element_size() for b in model.buffers())
    per = weight / max(n_params, 1)
    optimizer = int(3 * trainable * per)  # gradient + Adam's two moments
    ema_names = set(model.ema_names()) if config.ema_decay else set()
    ema = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if n in ema_names)
    batch = max(1, min(int(config.batch_size), int(n_train)))
    act = None
    if activations:
        act = _activation_bytes(model, spec, batch) if model.players() else 0
    example = 4 * math.prod(spec.shape)
    figures = FIGURE_FACTOR * GRID * example if spec.kind == "image" else 0
    if act:  # the grid's samples are drawn in one call: the network's activations for GRID examples at once
        figures += int(GRID * max(act - batch * example, 0) / batch)
    return Estimate(n_params, int(weight), optimizer, int(ema), act, batch, figures)


def check(family: str, ds, hparams: dict, config, run_dir=None, *, model=None, size_option: bool = False,
          device: Optional[torch.device] = None) -> Optional[Estimate]:
    """A ConfigError when training would need more memory (or disk, for its checkpoints) than the
    machine has, with a suggestion that fits; else the estimate.

    Before the model is built (`model=None`) this runs for large examples only (more than LARGE
    values each: where activations dominate), on a model without storage; after it is built
    (`model=`) it counts the real weights, at no cost, for every run (activations left out)."""
    if not getattr(config, "memory_check", True):
        return None
    spec, n = ds.spec, len(ds.train)
    if model is None:
        if math.prod(spec.shape) <= LARGE:
            return None
        est = estimate(family, spec, hparams, config, n)
    else:
        est = measure(model, spec, config, n, activations=False)
    avail, where = available_memory(device)
    if est.total > avail:
        what = (f"{'x'.join(map(str, spec.shape))} images" if spec.kind == "image" else
                f"{math.prod(spec.shape)}-dimensional {spec.kind}s")
        raise ConfigError(f"training this {family} on {what} needs about "
                          f"{size(est.total)} of memory ({est.parts()}), and this machine has {size(avail)} "
                          f"({where}); {_suggest(family, ds, hparams, config, est, avail, size_option)}"
                          " (or --set memory_check=false to try anyway)")
    if run_dir is not None:
        free = free_disk(run_dir)
        if est.disk_bytes > free:
            raise ConfigError(f"training this {family} writes checkpoints of about {size(est.checkpoint_bytes)} "
                              f"(needs {size(est.disk_bytes)} of disk while one is replaced), and {run_dir} has "
                              f"{size(free)} free; free some space or choose another --out")
    return est


def _suggest(family, ds, hparams, config, est: Estimate, avail: int, size_option: bool) -> str:
    """The smallest change that fits: smaller images (data.size=), else a smaller batch, else a smaller net."""
    from dataclasses import replace

    spec = ds.spec
    tips = []
    if size_option and spec.kind == "image" and len(spec.shape) == 3:
        c, h, w = spec.shape
        for k in range(1, 8):
            hh, ww = max(h >> k, 4), max(w >> k, 4)
            smaller = replace(spec, shape=(c, hh, ww))
            try:
                e = estimate(family, smaller, hparams, config, len(ds.train))
            except Exception:  # noqa: BLE001  (a family that needs another size: try the next)
                continue
            if e.total <= 0.8 * avail:
                tips.append(f"smaller images (--set data.size={hh if hh == ww else f'{hh}x{ww}'} fits: "
                            f"about {size(e.total)})")
                break
            if hh == 4 and ww == 4:
                break
    fixed = est.total - (est.activation_bytes or 0)
    if est.activation_bytes and est.batch > 1 and fixed < 0.8 * avail:
        per = est.activation_bytes / est.batch
        b = int((0.8 * avail - fixed) // per)
        if 1 <= b < est.batch:
            tips.append(f"a smaller batch (--set batch_size={b})")
    tips.append(f"a smaller network (its size settings: `genlab models {family}`)")
    return "try " + ", or ".join(tips)
