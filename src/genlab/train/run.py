"""Runs: a directory per training run, and the `train` / `resume` functions behind the CLI.

    run/
      config.json          family, hyperparameters, data spec, trainer settings, budget, seed, version
      model.safetensors    final weights (EMA where used)
      checkpoint/last.pt   everything resume needs
      metrics.jsonl        one JSON object per logged step
      samples.png  reconstructions.png  loss.png  progress/step*.png
      .lock                while a process trains the run: its claim (flock), naming its pid and host

One process at a time: `train` and `resume` hold the run's lock (`genlab.io.DirLock`; under torchrun,
rank 0 holds it) from before the first file is written until the last; a second process is refused.
The lock dies with its process, so a killed run's lock never blocks its resume. `train` writes only
into a new or empty directory; `resume` continues from the last checkpoint (from step 0 when the run
was killed before its first one), and first cuts `metrics.jsonl` back to that checkpoint's step,
so a killed and resumed run logs every step once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from .._version import RUN_FORMAT, __version__
from ..data import DATASETS, Dataset, load_dataset
from ..data.fingerprint import data_for_run, differences, fingerprint
from ..errors import ConfigError, GenlabError, TrainingDiverged, TrainingInterrupted, unknown_name
from ..io import (DirLock, DirTaken, atomic_write_bytes, atomic_write_json, first_line, load_state, remove_stale_temps,
                  temp_of)
from ..models.base import GenerativeModel, create_model, from_config, hyperparameters, read_run_config
from ..models.latent import LatentModel
from .callbacks import Callback, DiscriminatorWatch, JsonlLogger, ProgressBar, SampleGrids
from . import distributed, resources
from .checkpoint import seed_everything
from .config import Budget, TrainConfig, resolve_clock, split_settings
from .trainer import CHECKPOINT, Trainer

METRICS = "metrics.jsonl"
# what train/resume write in a run directory (under its lock): their unfinished writes are ours to clear
RUN_FILES = {"config.json", "model.safetensors", METRICS, "samples.png", "reconstructions.png", "translations.png",
             "loss.png", str(CHECKPOINT)}


def _run_file(rel: Path) -> bool:
    return str(rel) in RUN_FILES or (rel.parent == Path("progress") and rel.suffix == ".png")


@dataclass
class Run:
    path: Optional[Path]
    model: GenerativeModel
    data: Dataset
    history: list = field(default_factory=list)
    seconds: float = 0.0
    warnings: list = field(default_factory=list)  # training warnings (e.g. a discriminator that won)

    def __repr__(self):
        return f"Run({str(self.path)!r}, family={self.model.family})"


def default_run_dir(family: str, data_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{family}-{Path(data_name).name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def train(family: str, data="digits", out=None, *, epochs=None, steps=None, minutes=None, seed: int = 0,
          classes=None, data_options: Optional[dict] = None, progress: bool = True,
          callbacks: Sequence[Callback] = (), save: bool = True, stream: Optional[bool] = None, latent=None,
          **settings) -> Run:
    """Train `family` on `data` (a name, a path or a Dataset) and write a run directory.

    `settings` mix the family's hyperparameters (latent_dim=...) and trainer settings
    (lr=, batch_size=, ema_decay=, ...). With no budget, 20 epochs. `out=None` writes
    to runs/<family>-<data>-<time>; `save=False` keeps everything in memory.
    `stream=True` reads batches through DataLoader workers, and leaves image folders and .npy
    files on disk (read as needed); None streams data whose decoded size exceeds
    `genlab.data.lazy.stream_threshold()`; False loads it into memory.

    `latent=RUN`: train `family` on the codes RUN's encoder gives `data` instead (a latent model,
    `genlab.models.latent`); the result samples, evaluates and compares as a model of `data`.
    """
    options = dict(data_options or {})
    if stream is not None and not isinstance(data, Dataset) and str(data) not in DATASETS:
        options.setdefault("stream", stream)  # a folder or .npy: the loader keeps it on disk
    if stream is not None:
        settings["stream"] = stream
    ds = data if isinstance(data, Dataset) else load_dataset(data, classes=classes, **options)
    if isinstance(data, Dataset) and classes is not None:
        ds = ds.select_classes(classes)
    model_kw, train_kw = split_settings(settings, hyperparameters(family))
    if epochs is None and steps is None and minutes is None:
        epochs = 20
    budget = Budget(epochs, steps, minutes)
    if latent is None:  # will it fit? estimated on a model without storage, before the real one is built
        from ..models.base import get_family

        pre = TrainConfig(**{**get_family(family).train_defaults, **train_kw, "seed": seed})
        resources.check(family, ds, model_kw, pre, (Path(out) if out is not None else Path("runs")) if save else None,
                        size_option=not isinstance(data, Dataset) and Path(str(data)).expanduser().is_dir(),
                        device=distributed.pick_device(pre.device))
    seed_everything(seed)  # the model's initial weights depend on the seed only
    if latent is not None:
        if not isinstance(latent, (str, os.PathLike)):  # e.g. --set latent=4, a typo of latent_dim
            raise unknown_name(f"hyperparameter for '{family}'", "latent", hyperparameters(family))
        model = LatentModel.create(family, latent, ds, **model_kw)
    else:
        model = create_model(family, ds, **model_kw)
    derived = getattr(model, "derived_defaults", None) or getattr(getattr(model, "inner", None), "derived_defaults", None)
    derived = dict(derived or {"hparams": {}, "train": {}})
    derived["train"] = {k: v for k, v in derived.get("train", {}).items() if k not in train_kw}
    config = TrainConfig(**{**model.train_defaults, **derived["train"], **train_kw, "seed": seed})
    config.clock = resolve_clock(config.clock, config.device)
    resources.check(family, ds, model_kw, config, (Path(out) if out is not None else Path("runs")) if save else None,
                    model=model, device=distributed.pick_device(config.device))  # the built weights
    run_dir, lock, created = None, None, False
    multi = distributed.setup(distributed.pick_device(config.device))
    for attempt in range(100) if save else ():
        run_dir = Path(out) if out is not None else default_run_dir(model.family, ds.spec.name)
        if multi and out is None:
            run_dir = Path(distributed.agree_object(str(run_dir)))  # rank 0's time-stamped name
        created = not run_dir.exists() and distributed.world()[0] == 0
        try:
            lock = _claim(run_dir, lambda: _check_new(run_dir, model.family))
            break
        except DirTaken:  # a run started in the same second took the default name: the next one
            if out is not None or multi or attempt == 99:
                raise
    with _released(lock, run_dir if save and created else None), _interruptible(run_dir):
        if save and distributed.world()[0] == 0:  # under torchrun, rank 0 writes the files
            atomic_write_json(run_dir / "config.json", {
                "family": family, "hparams": model.config, "data": ds.spec.to_dict(), "train": config.to_dict(),
                "budget": budget.to_dict(), "seed": seed, "genlab_version": __version__, "format": RUN_FORMAT,
                "torch_threads": torch.get_num_threads(),
                "min_train_steps": getattr(model, "inner", model).min_train_steps,
                **({"data_defaults": derived} if derived["hparams"] or derived["train"] else {}),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "data_fingerprint": fingerprint(ds),
                **({"latent": model.latent_record(run_dir)} if latent is not None else {})})
        try:
            return _fit(model, ds, config, budget, run_dir, callbacks, progress, resume=False)
        except BaseException as e:
            if save and distributed.world()[0] == 0 and not (run_dir / CHECKPOINT).exists() \
                    and not (run_dir / "model.safetensors").exists():
                _remove_unresumable(run_dir)  # nothing to resume: leave no folder that blocks --out
                if isinstance(e, TrainingDiverged):
                    raise TrainingDiverged(f"{e}; nothing could be kept, so {run_dir} was removed") from e
            raise


#: what `train` writes into a run directory before its first checkpoint
_EARLY_FILES = ("config.json", "metrics.jsonl")


def _remove_unresumable(run_dir: Path) -> None:
    """Remove what a failed `train` wrote into `run_dir` before any checkpoint existed (its config,
    metrics and progress grids), and the directory when that leaves it empty. Nothing else is touched."""
    import shutil

    for name in _EARLY_FILES:
        (run_dir / name).unlink(missing_ok=True)
    if (run_dir / "progress").is_dir():
        shutil.rmtree(run_dir / "progress", ignore_errors=True)
    for d in (run_dir / CHECKPOINT.parent, run_dir):
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass


#: trainer settings a resumed run may change (`genlab resume RUN --set lr=1e-4`): none of them changes
#: the shape of the checkpoint (batch_size, optimizer, seed and the hyperparameters do)
RESUME_SETTINGS = ("lr", "grad_clip", "precision", "weight_decay", "betas", "warmup_steps", "lr_schedule",
                   "min_lr_ratio", "log_every", "sample_every", "checkpoint_every", "device", "workers", "clock",
                   "memory_check", "compile")


def run_data(run_dir, data=None, *, allow_changed_data: bool = False) -> Dataset:
    """The data `run_dir` was trained on, checked against the fingerprint in its config.json
    (`genlab.data.fingerprint.data_for_run`): `data` is None (the recorded source), a Dataset, or
    the same data's new name or path."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise GenlabError(f"{run_dir}: not a genlab run (no config.json)")
    return data_for_run(read_run_config(run_dir), run_dir, data, allow_changed_data=allow_changed_data)


def resume(run_dir, *, epochs=None, steps=None, minutes=None, progress: bool = True,
           callbacks: Sequence[Callback] = (), data=None, allow_changed_data: bool = False, **settings) -> Run:
    """Continue a run from its checkpoint. With no budget, finish the original one;
    with a budget, train that much more (`--minutes 5`: five more minutes).

    `data`: the run's data moved elsewhere (a path or name), or a Dataset; checked against the
    fingerprint recorded at training unless `allow_changed_data` (then the run goes on with this
    data and records its fingerprint, the old one kept under `data_previous`). A new location is
    recorded in config.json. `settings`: trainer settings to change from here on (RESUME_SETTINGS,
    e.g. lr=1e-4 after a diverged run).

    A run killed before its first checkpoint starts over from step 0 (the same seed: the same run)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise GenlabError(f"{run_dir}: not a genlab run (no config.json)")
    cfg = read_run_config(run_dir)
    config = _resume_config(cfg, cfg_path, settings)  # a refused option touches nothing, not even the lock
    extra = Budget(epochs, steps, minutes) if any(v is not None for v in (epochs, steps, minutes)) else None
    distributed.setup(distributed.pick_device(config.device))
    lock = _claim(run_dir, lambda: None)
    with _released(lock), _interruptible(run_dir):
        cfg = read_run_config(run_dir)  # as it is now that we hold the run
        fresh = not (run_dir / CHECKPOINT).exists()
        if fresh:  # killed before its first checkpoint: the model train() built, from the same seed
            seed_everything(cfg["seed"])
        model = from_config(cfg, run_dir)
        if fresh and not getattr(model, "inner", model).players():
            raise GenlabError(f"{run_dir}: no checkpoint to resume from (closed-form fit: nothing to resume)")
        if fresh and (run_dir / "model.safetensors").exists():
            raise GenlabError(f"{run_dir}: no checkpoint to resume from (its final weights are saved: nothing to "
                              f"resume); start over: remove it, or train into a new directory: {train_command(cfg)} "
                              "--out NEW_DIR")
        ds = data_for_run(cfg, run_dir, data, allow_changed_data=allow_changed_data)
        config = _resume_config(cfg, cfg_path, settings)
        resources.check(cfg["family"], ds, cfg.get("hparams", {}), config, run_dir, model=model,
                        device=distributed.pick_device(config.device))
        where = cfg_path if fresh else run_dir / CHECKPOINT
        try:
            if fresh:
                step, epoch, elapsed, budget = 0, 0.0, 0.0, Budget(**cfg["budget"])
            else:
                state = load_state(run_dir / CHECKPOINT)
                step, epoch, elapsed = state["step"], state["epoch"], state["elapsed"]
                budget = Budget(**state["budget"])
                del state
            extend = extra is not None
            if extend:
                budget = budget.extended(step, epoch, elapsed, extra)
        except (KeyError, TypeError) as e:
            raise GenlabError(f"{where}: not a genlab {'run' if fresh else 'checkpoint'} "
                              f"({type(e).__name__}: {first_line(e)})") from None
        record = bool(settings)
        if extend:
            cfg["budget"] = budget.to_dict()
            record = True
        if settings:
            cfg["train"] = config.to_dict()
        if data is not None and not isinstance(data, Dataset):  # moved data: the run points at its new place
            old_fp, new_fp = cfg.get("data_fingerprint"), fingerprint(ds)
            cfg["data"]["source"] = model.spec.source = dict(ds.spec.source)  # model.save rewrites "data"
            if old_fp and not _same(old_fp, new_fp):
                cfg.setdefault("data_previous", []).append({"step": step, "fingerprint": old_fp})
            cfg["data_fingerprint"] = new_fp
            record = True
        main = distributed.world()[0] == 0
        if record and main:  # every rank computed the same; rank 0 records it
            atomic_write_json(cfg_path, cfg)
        if main:
            truncate_metrics(run_dir / METRICS, step)
        return _fit(model, ds, config, budget, run_dir, callbacks, progress, resume=not fresh)


def _resume_config(cfg: dict, cfg_path: Path, settings: dict) -> TrainConfig:
    """The trainer settings a resume runs with: the run's, changed by `settings` (RESUME_SETTINGS only)."""
    bad = [k for k in settings if k not in RESUME_SETTINGS]
    if bad:
        hp = [k for k in bad if k in cfg.get("hparams", {})]
        why = (f"hyperparameter(s) {', '.join(hp)} of a trained run cannot change (the weights depend on them)"
               if hp else f"cannot change {', '.join(bad)} when resuming")
        raise ConfigError(f"{why}; settings a resume can change: {', '.join(RESUME_SETTINGS)}")
    try:
        return TrainConfig.from_dict({**cfg["train"], **settings})
    except (KeyError, TypeError) as e:
        raise GenlabError(f"{cfg_path}: malformed trainer settings ({type(e).__name__}: {first_line(e)})") from None


def truncate_metrics(path: Path, step: int) -> int:
    """Keep the rows of `metrics.jsonl` up to `step` (the checkpoint a resume starts from), so the
    rows a killed run logged after it are not logged twice; a row cut short by the kill goes too.
    Rewritten atomically; returns the number of rows dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            row = json.loads(line)
            ok = line.endswith(b"\n") and int(row["step"]) <= step
        except (ValueError, KeyError, TypeError):
            ok = False
        if ok:
            kept.append(line)
        elif line.strip():
            dropped += 1
    if dropped:
        atomic_write_bytes(path, b"".join(kept))
    return dropped


# -- one process per run directory ------------------------------------------------------

def _claim(run_dir: Path, check) -> Optional[DirLock]:
    """Take `run_dir`'s lock (rank 0 under torchrun), clear what killed writers left, and run `check`
    under the lock; every rank raises rank 0's refusal. Returns the lock to release."""
    lock, refusal = None, None
    if distributed.world()[0] == 0:
        try:
            lock = DirLock(run_dir).acquire()
            check()
            remove_stale_temps(run_dir, _run_file)
        except GenlabError as e:
            refusal = e
            if lock is not None:
                lock.release()
    if distributed.world()[2] > 1 and torch.distributed.is_initialized():
        message = distributed.agree_object(None if refusal is None else str(refusal))
        if message is not None and refusal is None:
            refusal = GenlabError(message)
    if refusal is not None:
        raise refusal
    return lock


@contextlib.contextmanager
def _released(lock: Optional[DirLock], made: Optional[Path] = None):
    """Release the run's lock on the way out; `made`: a directory this call created, removed again
    when the call fails before writing anything into it."""
    try:
        yield
    except BaseException:
        if lock is not None:
            lock.release()
        if made is not None:
            with contextlib.suppress(OSError):
                made.rmdir()  # only if empty
        raise
    else:
        if lock is not None:
            lock.release()


def _check_new(run_dir: Path, family: str) -> None:
    """`train` writes into a new or empty directory only (the lock and temporary files a killed
    process left do not count): never over another run, never among someone's files."""
    found = sorted(p.name for p in run_dir.iterdir()
                   if p.name != DirLock.NAME and not (temp_of(p.name) and _run_file(Path(temp_of(p.name)))))
    if not found:
        return
    if "config.json" in found:
        try:
            other = json.loads((run_dir / "config.json").read_text()).get("family", "?")
        except (OSError, ValueError):
            other = "?"
        what = f"a run ({other})" if other == family else f"a run of another family ({other}, not {family})"
        raise DirTaken(f"{run_dir} already holds {what}; resume it with `genlab resume {run_dir}` "
                          "or choose another --out")
    shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
    raise DirTaken(f"{run_dir} is not empty and holds no genlab run ({shown}); choose a new or empty "
                      "directory for --out")


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop."""


@contextlib.contextmanager
def _interruptible(run_dir: Optional[Path]):
    """Around train/resume: SIGTERM outside the training loop ends the call as Ctrl-C does, and
    either ends in a TrainingInterrupted naming the run to resume (the loop itself checkpoints first)."""
    def on_term(signum, frame):
        raise _Terminated

    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:
        signum = signal.SIGTERM if isinstance(e, _Terminated) else signal.SIGINT
        raise _interrupted_outside(run_dir, signum) from None
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _interrupted_outside(run_dir: Optional[Path], signum: int) -> TrainingInterrupted:
    name = signal.Signals(signum).name
    if run_dir is None:
        return TrainingInterrupted(f"{name}: stopped (nothing saved: the run has no directory)", signum)
    if not (run_dir / "config.json").exists():
        return TrainingInterrupted(f"{name}: stopped before {run_dir} held a run (nothing to resume)", signum)
    ckpt = run_dir / CHECKPOINT
    where = "from its last checkpoint" if ckpt.exists() else "from step 0"
    return TrainingInterrupted(f"{name}: stopped; resume {where} with `genlab resume {run_dir}`", signum, run_dir)


def _same(a: dict, b: dict) -> bool:
    return not differences(a, b)


def train_command(cfg: dict) -> str:
    """The `genlab train` command line that starts a run like the one `cfg` describes (its family,
    data and hyperparameters; trainer settings left at their defaults)."""
    src = (cfg.get("data") or {}).get("source") or {}
    parts = ["genlab train", cfg.get("family", "FAMILY"), "--data", str(src.get("name") or "DATA")]
    if "latent" in cfg:
        parts += ["--latent", str(cfg["latent"].get("run", "RUN"))]
    for k, v in (cfg.get("hparams") or {}).items():
        parts.append(f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}")
    return " ".join(parts)


def _fit(model, ds, config, budget, run_dir, callbacks, progress, resume) -> Run:
    cbs = list(callbacks)
    main = distributed.world()[0] == 0
    if run_dir is not None and main:
        cbs.append(JsonlLogger(run_dir / "metrics.jsonl"))
        if config.sample_every:
            cbs.append(SampleGrids(run_dir / "progress", config.sample_every, view=model))
    if progress and main:
        cbs.append(ProgressBar(f"{model.family} on {ds.spec.name}"))
    target, target_ds = model.trained_part(ds)
    if main and len(target.players()) > 1:
        cbs.append(DiscriminatorWatch())  # the model itself; a latent model's inner family on codes
    trainer = Trainer(target, target_ds, config, budget, run_dir, cbs)
    model.to(trainer.device)
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    if trainer.ema is not None:  # the averaged weights are what we save and sample
        trainer.ema.copy_to(target)
    model.eval()
    model.finalize(ds)
    trainer.check_final_weights(model)  # never a model.safetensors of NaN weights
    run = Run(run_dir, model, ds, trainer.history, time.perf_counter() - t0)
    run.warnings = list(trainer.warnings)
    if run_dir is not None and main:
        model.save(run_dir)
        write_figures(run)
    return run


@torch.no_grad()
def write_figures(run: Run, n: int = 64, seed: int = 0) -> dict:
    """samples.png, reconstructions.png (families that reconstruct), loss.png."""
    from ..report.figures import read_metrics, save_loss_curve, save_reconstructions, save_samples

    model, ds, d = run.model, run.data, run.path
    out = {}
    g = torch.Generator(device=model.device).manual_seed(seed)
    kind = model.condition_kind
    cond = ds.conditions("test", kind) if kind != "none" else None
    if kind == "tensor":  # a paired task: answer the first test inputs, shown beside their samples
        n = min(n, len(ds.test))
    y = cond[:n].to(model.device) if kind == "tensor" else None
    x = model.sample(n, y, generator=g)
    ref = ds.test[:2000] if ds.spec.shape == (2,) else None
    out["samples"] = save_samples(x, model.spec, d / "samples.png", title=f"{model.family} samples", reference=ref)
    if kind == "tensor" and ds.spec.kind == "image" and len(ds.spec.condition_shape) == 3:  # input | output | target
        from ..report.figures import save_translations

        out["translations"] = save_translations(y[:8], x[:8], ds.test[:8], d / "translations.png")
    if hasattr(model, "reconstruct") and ds.spec.kind == "image":
        xt = ds.test[:32].to(model.device)
        yt = cond[:32].to(model.device) if cond is not None else None
        out["reconstructions"] = save_reconstructions(xt, model.reconstruct(xt, yt), d / "reconstructions.png")
    curve = save_loss_curve(read_metrics(d / "metrics.jsonl"), d / "loss.png", title=f"{model.family} training")
    if curve is not None:
        out["loss"] = curve
    return out
