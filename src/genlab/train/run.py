"""Runs: a directory per training run, and the `train` / `resume` functions behind the CLI.

    run/
      config.json          family, hyperparameters, data spec, trainer settings, budget, seed, version
      model.safetensors    final weights (EMA where used)
      checkpoint/last.pt   everything resume needs
      metrics.jsonl        one JSON object per logged step
      samples.png  reconstructions.png  loss.png  progress/step*.png
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from .._version import __version__
from ..data import DATASETS, Dataset, dataset_from_spec, load_dataset
from ..errors import GenlabError, unknown_name
from ..io import atomic_write_json, load_state
from ..models.base import GenerativeModel, create_model, from_config, hyperparameters
from ..models.latent import LatentModel
from .callbacks import Callback, JsonlLogger, ProgressBar, SampleGrids
from . import distributed
from .checkpoint import seed_everything
from .config import Budget, TrainConfig, resolve_clock, split_settings
from .trainer import CHECKPOINT, Trainer


@dataclass
class Run:
    path: Optional[Path]
    model: GenerativeModel
    data: Dataset
    history: list = field(default_factory=list)
    seconds: float = 0.0

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
    run_dir = None
    if save:
        run_dir = Path(out) if out is not None else default_run_dir(model.family, ds.spec.name)
    if save and (run_dir / "config.json").exists():  # every rank checks before rank 0 writes
        raise GenlabError(f"{run_dir} already holds a run; resume it with `genlab resume {run_dir}` "
                          "or choose another --out")
    if distributed.setup(distributed.pick_device(config.device)) and save and out is None:
        run_dir = Path(distributed.agree_object(str(run_dir)))  # rank 0's time-stamped name
    distributed.barrier()
    if save and distributed.world()[0] == 0:  # under torchrun, rank 0 writes the files
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {
            "family": family, "hparams": model.config, "data": ds.spec.to_dict(), "train": config.to_dict(),
            "budget": budget.to_dict(), "seed": seed, "genlab_version": __version__,
            "torch_threads": torch.get_num_threads(),
            "min_train_steps": getattr(model, "inner", model).min_train_steps,
            **({"data_defaults": derived} if derived["hparams"] or derived["train"] else {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"latent": model.latent_record(run_dir)} if latent is not None else {})})
    return _fit(model, ds, config, budget, run_dir, callbacks, progress, resume=False)


def resume(run_dir, *, epochs=None, steps=None, minutes=None, progress: bool = True,
           callbacks: Sequence[Callback] = (), data: Optional[Dataset] = None) -> Run:
    """Continue a run from its checkpoint. With no budget, finish the original one;
    with a budget, train that much more (`--minutes 5`: five more minutes)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise GenlabError(f"{run_dir}: not a genlab run (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    model = from_config(cfg, run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise GenlabError(f"{run_dir}: no checkpoint to resume from"
                          + (" (closed-form fit: nothing to resume)"
                             if not getattr(model, "inner", model).players() else ""))
    ds = data if data is not None else dataset_from_spec(cfg["data"])
    config = TrainConfig.from_dict(cfg["train"])
    state = load_state(run_dir / CHECKPOINT)
    budget = Budget(**state["budget"])
    if any(v is not None for v in (epochs, steps, minutes)):
        budget = budget.extended(state["step"], state["epoch"], state["elapsed"], Budget(epochs, steps, minutes))
        cfg["budget"] = budget.to_dict()
        if distributed.world()[0] == 0:  # every rank computed the same budget; rank 0 records it
            atomic_write_json(cfg_path, cfg)
    del state
    return _fit(model, ds, config, budget, run_dir, callbacks, progress, resume=True)


def _fit(model, ds, config, budget, run_dir, callbacks, progress, resume) -> Run:
    cbs = list(callbacks)
    main = distributed.world()[0] == 0
    if run_dir is not None and main:
        cbs.append(JsonlLogger(run_dir / "metrics.jsonl"))
        if config.sample_every:
            cbs.append(SampleGrids(run_dir / "progress", config.sample_every, view=model))
    if progress and main:
        cbs.append(ProgressBar(f"{model.family} on {ds.spec.name}"))
    target, target_ds = model.trained_part(ds)  # the model itself; a latent model's inner family on codes
    trainer = Trainer(target, target_ds, config, budget, run_dir, cbs)
    model.to(trainer.device)
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    if trainer.ema is not None:  # the averaged weights are what we save and sample
        trainer.ema.copy_to(target)
    model.eval()
    model.finalize(ds)
    run = Run(run_dir, model, ds, trainer.history, time.perf_counter() - t0)
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
