"""genlab's command line: parse, call the API, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path

from .errors import ConfigError, GenlabError, GenlabWarning, TrainingInterrupted


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _number(v, depth: int = 0):
    """YAML 1.1 reads 1e-3 (no dot) as text: read such a string as the number it is, in lists too
    (two levels deep: a YAML alias can make a list that contains itself)."""
    if isinstance(v, list) and depth < 2:
        return [_number(u, depth + 1) for u in v]
    return float(v) if isinstance(v, str) and _NUMBER.fullmatch(v.strip()) else v


def _value(text: str):
    """`--set` values: YAML scalars and lists (3, 1e-3, true, [64, 64], name)."""
    import yaml

    try:
        return _number(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def parse_settings(pairs) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k.strip()] = _value(v)
    return out


def read_config(path) -> dict:
    """Settings from a .json or .yaml file (a flat mapping, same keys as --set)."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"no such config file: {p}")
    if p.suffix == ".json":
        from .io import read_json

        data = read_json(p)  # one line for a pickle, binary bytes or bad JSON
    else:
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({' '.join(str(e).split())})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not valid YAML (binary content)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings")
    return {k: _number(v) for k, v in data.items()}


def writable_output(path, option: str = "--out", *, directory: bool) -> Path:
    """Check before any work that `path` (a directory to create, or a file to write) can be written: not
    empty, not an existing file where a directory goes (or a directory where a file goes), and its nearest
    existing parent a directory genlab may write in. Nothing is created."""
    import os
    import tempfile

    if path is None or str(path).strip() == "":
        raise ConfigError(f"{option} is empty: give a {'directory' if directory else 'file'} name")
    p = Path(path).expanduser()
    if p.exists() and directory and not p.is_dir():
        raise ConfigError(f"{option} {p}: a file is there, not a directory")
    if p.is_dir() and not directory:
        raise ConfigError(f"{option} {p}: a directory is there; give a file name")
    parent = p if (directory and p.is_dir()) else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {p}: {parent} is a file, not a directory")
    try:  # os.access says yes to root on a read-only file system; a real file says the truth
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".genlab-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{option} {p}: cannot write in {parent} ({e.strerror})") from None
    return p


def _budget_args(p, required=False):
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--epochs", type=float, help="passes over the training set")
    g.add_argument("--steps", type=int, help="optimisation steps")
    g.add_argument("--minutes", type=float, help="minutes of training, counted in process CPU time on a CPU (the "
                   "same steps however busy the machine; --set clock=wall for wall-clock) and wall time on a GPU")


def _classes(text):
    """--classes 0,3 or label names (--classes setosa,virginica)."""
    out = [c.strip() for c in text.split(",") if c.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"--classes expects comma-separated labels, got '{text}'")
    return [int(c) if c.lstrip("-").isdigit() else c for c in out]


def _run_data_args(p, verb: str) -> None:
    """--data / --allow-changed-data for verbs that read a run's own data again."""
    p.add_argument("--data", metavar="PATH", help="the run's data, moved to PATH (or renamed); still checked "
                   "against the fingerprint recorded at training" + (" and recorded as the run's data from here on"
                                                                       if verb == "resume" else ""))
    p.add_argument("--allow-changed-data", action="store_true", help="use the data even though it differs from "
                   "the data the run was trained on (sizes or values)")


def _use_args(p, out_help: str, run_optional: bool = False) -> None:
    """What the use verbs (anomaly, impute, denoise) share."""
    p.add_argument("run", nargs="?" if run_optional else None, help="a run directory (genlab train ...)"
                   + (" (or --choose)" if run_optional else ""))
    p.add_argument("--data", help="data set name or path to use (default: the run's own data); it must have the "
                                  "run's shape")
    p.add_argument("--label-column", metavar="NAME", help="a CSV's label column (header name or 0-based index)")
    p.add_argument("--out", help=out_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="an option of the family's method "
                                                                      "(repeatable), e.g. steps=100")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(prog="genlab", description="Deep generative models side by side.")
    p.add_argument("--version", action="version", version=f"genlab {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    t = sub.add_parser("train", help="train a family on a data set into a run directory",
                       description="Train FAMILY on --data. Settings: the family's hyperparameters and trainer "
                                   "settings (lr, batch_size, ema_decay, ...) via --set or --config; "
                                   "data options as --set data.NAME=VALUE. See `genlab models`.")
    t.add_argument("family", help="model family (see `genlab models`)")
    t.add_argument("--data", default="digits", help="data set name or path (default: digits)")
    _budget_args(t)
    t.add_argument("--out", help="run directory (default: runs/FAMILY-DATA-TIME)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="a setting (repeatable)")
    t.add_argument("--config", help="settings from a .json or .yaml file")
    t.add_argument("--classes", type=_classes, help="keep only these labels, e.g. 0,3 or label names (one class: "
                                                    "the one-class protocol of `genlab anomaly`)")
    t.add_argument("--label-column", metavar="NAME", help="a CSV's label column (header name or 0-based index); "
                                                         "same as --set data.label_column=NAME")
    t.add_argument("--latent", metavar="RUN", help="train FAMILY on the codes of RUN's autoencoder (ae, vae, pca: "
                                                  "any run that encodes and decodes); samples are decoded by RUN")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--stream", action="store_true", help="read batches with DataLoader workers and keep image "
                   "folders / .npy files on disk (automatic above GENLAB_STREAM_BYTES, default 2 GiB)")

    r = sub.add_parser("resume", help="continue a run from its checkpoint",
                       description="Continue RUN. Without a budget, finish the original one; "
                                   "with one, train that much more.")
    r.add_argument("run")
    _budget_args(r)
    _run_data_args(r, "resume")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="a trainer setting to change from here on "
                   "(repeatable): lr, grad_clip, precision, ... e.g. after a diverged run")
    r.add_argument("--quiet", action="store_true")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run")
    s.add_argument("-n", type=int, help="number of samples (default 64; with --condition: one per condition "
                                        "in the file, or 64 of a single condition)")
    s.add_argument("--label", "--class", dest="label", type=int, help="class to sample (conditional models)")
    s.add_argument("--condition", metavar="FILE", help="condition(s) to sample with, for models conditioned on a "
                                                      "tensor (paired data): an image file or a .npy of one or N")
    s.add_argument("--sampler", help="iterative sampler: ddpm, ddim, euler, heun, dopri5 (diffusion / flow models)")
    s.add_argument("--steps", type=int, help="sampler steps (network calls for ddim/euler)")
    s.add_argument("--eta", type=float, help="DDIM stochasticity: 0 deterministic, 1 ancestral")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale w (conditional models; 1 = none)")
    s.add_argument("--out", help="FILE.png (grid or 2-D scatter) or FILE.npy (array); default: a PNG in the run "
                                 "directory named after the options, e.g. RUN/sampled-heun-25steps.png")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="sampler option (repeatable)")

    e = sub.add_parser("eval", help="evaluate a trained run: FID-style distances, precision/recall, likelihood, ...",
                       description="Evaluate RUN with every metric its model and data support (or --metrics), "
                                   "beside the same metric for real data (train vs test), under a stated protocol. "
                                   "Writes RUN/eval.json.")
    e.add_argument("run")
    e.add_argument("--metrics", help="comma-separated: fid,kid,precision,recall,density,coverage,balance,nll,"
                                     "mmd,swd (default: all that apply)")
    e.add_argument("--n", type=int, help="generated and reference samples (default: the whole reference split)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--split", default="test", choices=["test", "train"], help="reference split (default test)")
    e.add_argument("--json", action="store_true", help="print JSON instead of the table")
    e.add_argument("--nll-seconds", type=float, default=None, help="time limit of the likelihood step; past it, NLL "
                   "is scored on the first k reference examples and eval.json says k (nll_examples) (default 60; 0: none)")
    _run_data_args(e, "eval")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="sampler option (repeatable)")

    xp = sub.add_parser("explore", help="explore a trained run's latent space: interpolate, traverse, arithmetic, "
                                        "maps, nearest training neighbours",
                        description="Write PNGs and DIR/explore.json for RUN. --what chooses among interpolate, "
                                    "traverse, arithmetic, map, neighbours (default: all the model supports).")
    xp.add_argument("run")
    xp.add_argument("--what", help="comma-separated operations (default: all that apply)")
    xp.add_argument("--pairs", nargs="+", metavar="A,B", help="interpolation endpoints: test indices or image files "
                                                          "(e.g. 3,17 a.png,b.png), or 'random' for two random codes")
    xp.add_argument("--steps", type=int, help="integration steps of encode/decode for ddpm and fm (default theirs)")
    xp.add_argument("--n", type=int, help="test examples mapped / samples checked for neighbours")
    xp.add_argument("--out", help="output directory (default: RUN/explore)")
    xp.add_argument("--seed", type=int, default=0)
    _run_data_args(xp, "explore")

    tr = sub.add_parser("translate", help="translate images with an image-to-image run (pix2pix, cyclegan, "
                                          "conditional ddpm / fm on paired data)",
                        description="Translate INPUTS (image files and / or .npy arrays of one or N inputs) with "
                                    "RUN. Writes DIR/<name>.png per input, DIR/grid.png (input | output) and "
                                    "DIR/outputs.npy.")
    tr.add_argument("run")
    tr.add_argument("inputs", nargs="+", metavar="INPUT")
    tr.add_argument("--out", required=True, metavar="DIR", help="output directory")
    tr.add_argument("--direction", choices=["AB", "BA"], help="cyclegan: AB (default) or BA")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="sampling option (repeatable), "
                                                                     "e.g. noise=false (pix2pix), steps=50 (ddpm)")

    x = sub.add_parser("experiment", help="reproduce one concept as a figure plus numbers",
                       description="Run experiment NAME (omit NAME or give --list to list them) into --out.")
    x.add_argument("name", nargs="?")
    x.add_argument("--list", action="store_true", help="list the experiments")
    x.add_argument("--out", default=None, help="output directory (default: runs/experiments/NAME)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--quick", action="store_true", help="a smaller, faster version")

    c = sub.add_parser("compare", help="train every family on one data set and write the comparison page",
                       description="Train each family (default: every registered family that models the data), "
                                   "evaluate all under one protocol, and write DIR/report.html, DIR/results.json "
                                   "and one run directory per family. --minutes is the TOTAL training time, split "
                                   "across the families that train by steps, ddpm, fm and pixelcnn taking a double share "
                                   "(closed-form fits take none).")
    c.add_argument("--data", default="digits", help="data set name or path (default: digits)")
    c.add_argument("--models", help="comma-separated families (default: all that fit the data); 'all' stands for "
                                    "those, and FAMILY@AE is a latent model, FAMILY trained on the codes of this "
                                    "comparison's AE run (e.g. all,ddpm@vae)")
    cb = c.add_mutually_exclusive_group()
    cb.add_argument("--minutes", type=float, help="total training minutes, split across families (default 2.5); "
                    "process CPU time on a CPU, so the page does not depend on what else runs")
    cb.add_argument("--steps", type=int, help="optimisation steps per family instead of minutes")
    c.add_argument("--budget", action="append", metavar="FAMILY=MINUTES", help="a family's own minutes (repeatable)")
    c.add_argument("--set", action="append", metavar="FAMILY.KEY=VALUE", help="a family's setting (repeatable)")
    c.add_argument("--n", type=int, help="evaluation samples (default: the test split, at most 2500)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", help="output directory (default: runs/compare-DATA-TIME)")
    c.add_argument("--nll-seconds", type=float, help="time limit of the likelihood metric per family; past it, "
                   "NLL is scored on a subset of the reference examples (default 20; 0: none)")
    c.add_argument("--normal-class", metavar="LABEL", help="the one-class protocol: train every family on this class "
                   "(label value or name; comma-separated for several) and add an AUROC column: the whole test split "
                   "scored with each family's anomaly_score, this class normal")
    c.add_argument("--quiet", action="store_true", help="no progress bars")

    rp = sub.add_parser("report", help="the comparison page from existing runs",
                        description="Evaluate RUNs (same data) under one protocol and write the comparison page.")
    rp.add_argument("runs", nargs="+", metavar="RUN")
    rp.add_argument("--out", default="report.html", help="the page (default report.html); results.json and "
                                                        "figures/ go beside it")
    rp.add_argument("--n", type=int, help="evaluation samples (default: the test split, at most 2500)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--nll-seconds", type=float, help="time limit of the likelihood metric per run (default 20)")
    _run_data_args(rp, "report")
    rp.add_argument("--quiet", action="store_true")

    an = sub.add_parser("anomaly", help="score outliers with a trained run: AUROC/AUPRC, a calibrated threshold",
                        description="Score every example of the test split with the family's anomaly_score "
                                    "(higher = more anomalous). With labels and --normal-class (default: the "
                                    "classes a --classes run was trained on): AUROC, AUPRC, and a threshold "
                                    "calibrated on half of the normal test examples at --fpr, with its precision "
                                    "and recall on the rest. Writes scores CSV, JSON and a histogram + ROC PNG.")
    _use_args(an, "the per-example scores .csv (default RUN/anomaly/scores.csv); .json and .png beside it")
    an.add_argument("--normal-class", metavar="LABEL", help="the label value(s) that are normal, e.g. 3 or "
                                                            "setosa or 0,1 (names or indices)")
    an.add_argument("--fpr", type=float, default=0.05, help="false-positive rate of the threshold (default 0.05)")
    an.add_argument("--split", default="test", choices=["test", "train"], help="split to score (default test)")
    an.add_argument("--ratio", choices=["local"], help="score images by the likelihood ratio log p_local(x) - "
                    "log p_model(x) against a local model (a Gaussian over small tiles) fitted to the run's "
                    "training data: corrects a likelihood's preference for simple images (families with log_prob)")
    an.add_argument("--patch", type=int, help="tile size of --ratio local (default: the largest of 4, 2, 1 that "
                                              "divides the image)")

    im = sub.add_parser("impute", help="fill in missing pixels or table cells with a trained run",
                        description="Remove entries with --mask from test examples and fill them with the "
                                    "family's impute, beside mean, KNN and iterative imputation (RMSE on the "
                                    "removed entries; classifier accuracy for digits/MNIST/Fashion-MNIST). "
                                    "A CSV with empty/NA cells is filled whole instead. With --choose and no RUN, "
                                    "a table's model is chosen first: every candidate (gmm with 1-4 components x 4 "
                                    "ridges, pca at 4 ranks) is fitted on complete training rows and scored on "
                                    "held-out ones, and the winner is trained into OUT/run and used.")
    _use_args(im, "output directory (default RUN/impute-MASK; with --choose runs/impute-DATA-TIME)", run_optional=True)
    im.add_argument("--choose", action="store_true", help="no RUN: choose and train the table's imputer on --data "
                                                          "(a CSV with or without missing cells, or vectors)")
    im.add_argument("--mask", help="center | half | random:P | FILE.npy (1 = missing); default center for "
                                   "images, random:0.2 for tables")
    im.add_argument("-n", type=int, default=500, help="test examples to mask and impute (default 500)")
    im.add_argument("--no-baselines", action="store_true", help="skip mean / KNN / iterative imputation")
    im.add_argument("--em", action="store_true", help="first refine the model by EM on the rows being imputed, "
                                                      "holes included, with its training split (a table with "
                                                      "missing cells: the table's rows); pca, gmm")

    dn = sub.add_parser("denoise", help="remove Gaussian noise with a trained run; PSNR before and after",
                        description="Add Gaussian noise of std --noise to test examples and restore them with "
                                    "the family's denoiser (denoising AE, PCA's Wiener filter, diffusion / "
                                    "flow matching from the matching noise level). Reports PSNR noisy vs denoised.")
    _use_args(dn, "output directory (default RUN/denoise-NOISE)")
    dn.add_argument("--noise", type=float, default=0.3, help="noise std (images: pixel scale; tables: "
                                                             "standardised scale; default 0.3)")
    dn.add_argument("-n", type=int, default=256, help="test examples (default 256)")

    j = sub.add_parser("judge", help="ask people: a judging page for samples, human scores with intervals",
                       description="Serve a page where people judge samples of RUNs (pairwise: which looks more "
                                   "real?; with --real also real-vs-generated). The first call draws the samples "
                                   "into the study --db; later calls serve it again. --scores and --export read "
                                   "the study without serving. See docs/judge.md.")
    j.add_argument("runs", nargs="*", metavar="RUN", help="run directories (same data) to judge; omit to serve "
                                                         "or read an existing study")
    j.add_argument("--db", default="judge.sqlite", help="the study's SQLite file (default judge.sqlite)")
    j.add_argument("--real", action="store_true", help="add real test images: a competitor in pairs, and the "
                                                       "real-vs-generated task")
    j.add_argument("--n", type=int, default=50, help="samples drawn per run (and real images) (default 50)")
    j.add_argument("--per-rater", type=int, default=50, help="judgements asked of each rater (default 50)")
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                       "only; 0.0.0.0 shares it on your network)")
    j.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    j.add_argument("--scores", action="store_true", help="print the study's scores and exit")
    j.add_argument("--export", metavar="CSV", help="write every judgement to CSV and exit")
    j.add_argument("--include-careless", action="store_true", help="count raters who failed attention checks")
    j.add_argument("--quiet", action="store_true")
    for parser in (c, rp):
        parser.add_argument("--judge", metavar="STUDY", help="a `genlab judge` study (SQLite): show its human "
                                                             "scores beside the metrics, with FD's rank correlation")

    sub.add_parser("datasets", help="list data sets and where they are found")
    m = sub.add_parser("models", help="list families, their hyperparameters and defaults")
    m.add_argument("family", nargs="?", help="show one family")
    return p


#: options of `genlab train` a config file or --set may give instead (the budget and the seed)
_OPTION_SETTINGS = {"seed": int, "epochs": (int, float), "steps": int, "minutes": (int, float)}
#: options that only the command line gives, by the setting name a user might try
_OPTIONS_ONLY = {"classes": "--classes", "label_column": "--label-column", "data": "--data", "out": "--out",
                 "progress": "--quiet", "quiet": "--quiet", "config": "--config", "family": "FAMILY",
                 "data_options": "--set data.NAME=VALUE", "save": "--out", "callbacks": "the Python API"}


def run_options(a, settings: dict) -> None:
    """Move the budget and the seed from `settings` (a config file or --set) onto the parsed options
    `a`; refuse one given twice, a second budget, and command-line options passed as settings."""
    for key, option in _OPTIONS_ONLY.items():
        if key in settings:
            raise ConfigError(f"{key} is not a setting: give it as {option}")
    for key, kind in _OPTION_SETTINGS.items():
        if key not in settings:
            continue
        value = settings.pop(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"invalid {key}={value!r}: expected a number")
        if getattr(a, key) is not None:
            raise ConfigError(f"{key} given twice (--{key} and in --set/--config): give it once")
        setattr(a, key, value)
    given = [k for k in ("epochs", "steps", "minutes") if getattr(a, k) is not None]
    if len(given) > 1:
        raise ConfigError(f"give one budget, not {' and '.join(given)}")


def cmd_train(a) -> None:
    from .train.run import train

    if a.out is not None:
        writable_output(a.out, directory=True)

    settings = {**(read_config(a.config) if a.config else {}), **parse_settings(a.set)}
    run_options(a, settings)
    data_options = {k[5:]: settings.pop(k) for k in list(settings) if k.startswith("data.")}
    if a.label_column is not None:
        data_options["label_column"] = a.label_column
    stream = True if a.stream else settings.pop("stream", None)
    run = train(a.family, a.data, a.out, epochs=a.epochs, steps=a.steps, minutes=a.minutes,
                seed=0 if a.seed is None else a.seed, classes=a.classes, data_options=data_options,
                progress=not a.quiet, stream=stream,
                latent=a.latent if a.latent is not None else settings.pop("latent", None), **settings)
    _report(run)


def cmd_resume(a) -> None:
    from .train.run import resume

    _report(resume(a.run, epochs=a.epochs, steps=a.steps, minutes=a.minutes, progress=not a.quiet, data=a.data,
                   allow_changed_data=a.allow_changed_data, **parse_settings(a.set)))


def _report(run) -> None:
    last = run.history[-1] if run.history else {}
    parts = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("step", "epoch", "time", "lr"))
    print(f"trained {run.model.family} on {run.data.spec.name}: step {last.get('step', 0)}, {parts}")
    print(f"run directory: {run.path}")
    for name in ("samples.png", "reconstructions.png", "loss.png"):
        if (run.path / name).exists():
            print(f"  {run.path / name}")


MAX_GRID = 10_000            # samples in one PNG grid
MAX_SAMPLE_BYTES = 2 ** 30   # float32 samples drawn by one `genlab sample` (1 GiB, held in memory at once)


def default_sample_path(a) -> Path:
    """RUN/sampled[-sampler][-Ksteps][-labelK][-cond-FILE][-wW][-etaE][-seedS].png: the options in the name, so
    that sampling a run two ways keeps both grids (and the training's own samples.png is never overwritten)."""
    condition = getattr(a, "condition", None)
    parts = [a.sampler, f"{a.steps}steps" if a.steps is not None else None,
             f"label{a.label}" if a.label is not None else None,
             f"cond-{Path(condition).stem}" if condition else None,
             f"w{a.guidance:g}" if a.guidance is not None else None, f"eta{a.eta:g}" if a.eta is not None else None,
             f"seed{a.seed}" if a.seed else None]
    return Path(a.run) / ("-".join(["sampled"] + [p for p in parts if p]) + ".png")


def cmd_sample(a) -> None:
    import numpy as np
    import torch

    from .models.base import load
    from .report.figures import save_samples
    from .io import atomic_write_bytes

    out = Path(a.out) if a.out is not None else default_sample_path(a)
    if a.out is not None:
        writable_output(a.out, directory=False)
    if out.suffix not in (".png", ".npy"):
        raise ConfigError(f"--out must end in .png or .npy, got '{out.name}'")
    if a.n is not None and a.n < 1:
        raise ConfigError("-n must be at least 1")
    if a.n is not None and out.suffix == ".png" and a.n > MAX_GRID:
        raise ConfigError(f"-n {a.n}: a PNG grid shows at most {MAX_GRID} samples; write a .npy for more")
    if a.condition is not None and a.label is not None:
        raise ConfigError("give --label or --condition, not both")
    model = load(a.run)
    if a.n is not None and a.n * model.spec.dim * 4 > MAX_SAMPLE_BYTES:
        most = MAX_SAMPLE_BYTES // (model.spec.dim * 4)
        raise ConfigError(f"-n {a.n}: {a.n * model.spec.dim * 4 / 2**30:.3g} GiB of samples; at most {most} of "
                          f"these {'x'.join(map(str, model.spec.shape))} samples per call ({MAX_SAMPLE_BYTES // 2**30} "
                          "GiB): split them across calls with different --seed values")
    y, n = a.label, a.n
    if a.condition is not None:
        from .data.paired import load_conditions

        if model.condition_kind != "tensor":
            raise ConfigError(f"--condition is for models conditioned on a tensor (paired data); this "
                              f"'{model.family}' run's condition is: {model.condition_kind}"
                              + (" (use --label)" if model.condition_kind == "class" else ""))
        y = load_conditions(a.condition, model.spec.condition_shape)
        if len(y) == 1:
            n = n or 64
        elif n is not None and n != len(y):
            raise ConfigError(f"-n {n} but {a.condition} holds {len(y)} conditions (one sample each)")
        else:
            n = len(y)
    n = n or 64
    g = torch.Generator(device=model.device).manual_seed(a.seed)
    options = parse_settings(a.set)
    for k in ("sampler", "steps", "eta", "guidance"):
        if getattr(a, k) is not None:
            options[k] = getattr(a, k)
    model.check_sample_options(options, "samples")
    x = model.sample(n, y, generator=g, **options)
    if out.suffix == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, x.cpu().numpy())
        atomic_write_bytes(out, buf.getvalue())
    else:
        written = save_samples(x, model.spec, out, title=f"{model.family} samples")
        out = written
    print(f"wrote {n} samples to {out}")


def cmd_eval(a) -> None:
    from .metrics.evaluate import evaluate, format_table
    from .models.base import load
    from .io import atomic_write_json
    from .train.run import run_data

    model = load(a.run)
    data = run_data(a.run, a.data, allow_changed_data=a.allow_changed_data)
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()] if a.metrics else None
    from .metrics.evaluate import EVAL_NLL_SECONDS

    result = evaluate(model, data, metrics, n=a.n, seed=a.seed, split=a.split, progress=not a.json,
                      nll_seconds=EVAL_NLL_SECONDS if a.nll_seconds is None else a.nll_seconds,
                      **parse_settings(a.set))
    result["run"] = str(a.run)
    atomic_write_json(Path(a.run) / "eval.json", result)
    print(json.dumps(result, indent=2) if a.json else format_table(result))


def cmd_translate(a) -> None:
    from .apps.translate import translate

    options = parse_settings(a.set)
    if a.direction:
        options["direction"] = a.direction
    r = translate(a.run, a.inputs, a.out, seed=a.seed, **options)
    print(f"translated {len(r['files'])} input(s) into {a.out}: one PNG each, {r['grid']}, {r['npy']}")


def cmd_experiment(a) -> None:
    from .experiments import list_experiments, run_experiment

    if not a.name or a.list:
        for name, desc in list_experiments().items():
            print(f"{name:18} {desc}")
        return
    out = Path(a.out or Path("runs") / "experiments" / a.name)
    result = run_experiment(a.name, out, seed=a.seed, quick=a.quick)
    print(f"{a.name}: wrote {result.get('figure', out)} and {out / (a.name + '.json')}")


def cmd_explore(a) -> None:
    from .apps.explore import explore
    from .models.base import load
    from .train.run import run_data

    model = load(a.run)
    data = run_data(a.run, a.data, allow_changed_data=a.allow_changed_data)
    out = Path(a.out) if a.out else Path(a.run) / "explore"
    res = explore(model, data, out, what=a.what, pairs=a.pairs, seed=a.seed, latent_steps=a.steps, n=a.n,
                  progress=True)
    for op in ("interpolate", "traverse", "arithmetic", "map", "neighbours"):
        r = res.get(op)
        if r is None:
            continue
        if "skipped" in r:
            print(f"{op:12} skipped: {r['skipped']}")
            continue
        extra = ""
        if op == "map" and "knn5_accuracy" in r:
            extra = f"  (5-NN class accuracy of the codes {100 * r['knn5_accuracy']['codes']:.0f}%)"
        elif op == "arithmetic":
            extra = "  (" + "; ".join(f"{e['equation']} -> {e['predicted_name']} {100 * e['confidence']:.0f}%"
                                      for e in r["equations"][:3]) + ")"
        elif op == "neighbours":
            extra = f"  (memorisation share {100 * r['share']:.1f}%; fresh data ~ {100 * r['q']:g}%)"
        print(f"{op:12} {r['figure']}{extra}")
    print(f"numbers: {res['json']}")


def cmd_compare(a) -> int:
    from .workflows.compare import compare

    budgets = {}
    for k, v in parse_settings(a.budget).items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ConfigError(f"--budget expects FAMILY=MINUTES, got '{k}={v}'")
        budgets[k] = float(v)
    settings: dict = {}
    for k, v in parse_settings(a.set).items():
        if "." not in k:
            raise ConfigError(f"--set for compare expects FAMILY.KEY=VALUE, got '{k}'")
        fam, key = k.split(".", 1)
        settings.setdefault(fam, {})[key] = v
    models = [m.strip() for m in a.models.split(",") if m.strip()] if a.models else None
    normal = None if a.normal_class is None else [c.strip() for c in a.normal_class.split(",") if c.strip()]
    results = compare(a.data, models, minutes=a.minutes, budgets=budgets, steps=a.steps, seed=a.seed, out=a.out,
                      n=a.n, progress=not a.quiet, settings=settings, human=_human(a), normal_class=normal,
                      **_nll_limit(a))
    return _print_comparison(results)


def cmd_report(a) -> int:
    from .workflows.compare import report

    return _print_comparison(report(a.runs, a.out, n=a.n, seed=a.seed, progress=not a.quiet, human=_human(a),
                                    data=a.data, allow_changed_data=a.allow_changed_data, **_nll_limit(a)))


def _human(a):
    """The scores of the --judge study, or None."""
    if not a.judge:
        return None
    from .workflows.judge import Study, study_scores

    return study_scores(Study(a.judge))


def cmd_judge(a) -> None:
    from .workflows.judge import Study, format_scores, open_or_create, serve, study_scores

    if a.scores or a.export:
        if a.runs:
            raise ConfigError("--scores and --export read an existing study: give --db, not run directories")
        study = Study(a.db)
        if a.export:
            print(f"wrote {len(study.judgements())} judgements to {study.export_csv(a.export)}")
        if a.scores:
            print(format_scores(study_scores(study, include_careless=a.include_careless)))
        return
    from .workflows.judge.server import is_loopback, require_web

    require_web()  # before drawing samples: say what is missing first
    if not 0 <= a.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {a.port}")
    if not is_loopback(a.host):
        print(f"genlab: warning: --host {a.host} shares the study with every machine that can reach this one; "
              "anyone there can open the page and submit judgements (there is no login)", file=sys.stderr)
    study, created = open_or_create(a.runs, a.db, real=a.real, n=a.n, seed=a.seed, goal=a.per_rater,
                                    progress=not a.quiet)
    info = study.summary()
    print(f"{'new study' if created else 'study'} {study.path}: {', '.join(info['sources'])} on {info['data']}; "
          f"tasks {', '.join(info['tasks'])}; {info['goal']} judgements per rater; "
          f"{info['judgements']} judgements from {info['raters']} raters so far")

    def announce(url):
        print(f"judging page: {url}  (Ctrl-C to stop; scores: genlab judge --db {study.path} --scores)", flush=True)

    try:
        serve(study, host=a.host, port=a.port, announce=announce)
    except KeyboardInterrupt:
        pass
    print(f"stopped; {study.summary()['judgements']} judgements in {study.path}")


def _nll_limit(a) -> dict:
    return {} if a.nll_seconds is None else {"nll_seconds": a.nll_seconds}


def _print_comparison(results) -> int:
    for e in results["families"]:
        if e["status"] == "ok":
            m = e["metrics"]
            shown = ", ".join(f"{k} {m[k]:.4g}" for k in ("fid", "precision", "recall", "bpd", "nll", "modes")
                             if k in m and not (k == "nll" and "bpd" in m))
            t = e.get("train") or {}
            short = (f"  [too short: {t['steps']} < {t['min_steps']} steps]" if t.get("too_short") else "")
            print(f"{e['name']:12} ok      {shown}{short}")
        else:
            print(f"{e['name']:12} FAILED  ({e['stage']}) {e['error'].splitlines()[0] if e['error'] else ''}")
    for key, agree in ((results.get("human") or {}).get("agreement") or {}).items():
        if agree:
            print(f"people vs FD ({key.replace('_', ' ')}): Spearman {agree['spearman']:+.2f} over "
                  f"{len(agree['models'])} models")
    base = Path(results["report"]).parent
    print(f"results: {base / 'results.json'}")
    print(f"report: {results['report']}")
    failed = [f"{e['name']} ({e['stage']})" for e in results["families"] if e["status"] != "ok"]
    if failed:  # the page is written, and shows why; the exit status says it for scripts and make
        print(f"genlab: error: {len(failed)} of {len(results['families'])} failed: {', '.join(failed)}; "
              f"see {results['report']}", file=sys.stderr)
        return 1
    return 0


def _use_data(a):
    """--data and --label-column for the use verbs: (data or None, label column or None)."""
    if a.label_column is not None and a.data is None:
        raise ConfigError("--label-column goes with --data FILE.csv")
    return a.data, a.label_column


def cmd_anomaly(a) -> None:
    from .apps.anomaly import anomaly
    from .models.base import load

    model = load(a.run)
    data, col = _use_data(a)
    out = Path(a.out) if a.out else Path(a.run) / "anomaly" / "scores.csv"
    normal = None if a.normal_class is None else [c.strip() for c in a.normal_class.split(",") if c.strip()]
    r = anomaly(model, data, normal_class=normal, fpr=a.fpr, split=a.split, label_column=col, out=out,
                seed=a.seed, progress=not a.quiet, ratio=a.ratio, patch=a.patch)
    print(f"{r['family']} on {r['data']} ({r['split']}, {r['n']} examples): mean score {r['score_mean']:.4g}")
    if "auroc" in r:
        print(f"  normal: {', '.join(r['normal_classes'])}   AUROC {r['auroc']:.4f}  AUPRC {r['auprc']:.4f} "
              f"(chance {r['auprc_chance']:.3f})   whole split AUROC {r['auroc_full']:.4f}")
        print(f"  threshold {r['threshold']:.4g} at fpr {a.fpr:g}: precision {r['precision']:.3f}, recall "
              f"{r['recall']:.3f}, observed fpr {r['fpr']:.3f} ({r['n_calibration']} normals calibrate, "
              f"{r['n_evaluation']} evaluate)")
    else:
        print(f"  threshold {r['threshold']:.4g} (fpr {a.fpr:g} on {r['calibrated_on']}): {r['flagged']} flagged")
    print(f"wrote {r['scores']}, {r['json']}, {r['figure']}")


def cmd_impute(a) -> None:
    from .apps.impute import impute
    from .models.base import load

    if a.choose or a.run is None:
        return _choose_imputer(a)
    model = load(a.run)
    data, col = _use_data(a)
    tag = Path(a.mask).stem if a.mask and a.mask.endswith(".npy") else (a.mask or "default").replace(":", "")
    out = Path(a.out) if a.out else Path(a.run) / f"impute-{tag}"
    r = impute(model, data, mask=a.mask, n=a.n, label_column=col, out=out, seed=a.seed, em=a.em,
               baselines=() if a.no_baselines else ("mean", "knn", "iterative"), progress=not a.quiet,
               **parse_settings(a.set))
    if "methods" in r:
        print(f"{r['n']} examples of {r['data']}, mask {r['mask']} ({100 * r['missing_fraction']:.1f}% missing):")
        for name, m in r["methods"].items():
            extra = "".join(f"  {k} {m[k]:.4f}" for k in ("rmse_standardised", "accuracy") if k in m)
            print(f"  {name:10} RMSE {m['rmse']:.4f}{extra}  ({m['cpu_seconds']:.1f} CPU-s)")
        if "accuracy_truth" in r:
            print(f"  {'truth':10} accuracy {r['accuracy_truth']:.4f} ({r['classifier']})")
    else:
        print(f"filled {r['missing_cells']} missing cells in {r['rows_with_missing']} of {r['n']} rows")
    print(f"wrote {out}/" + ", ".join(Path(r[k]).name for k in ("figure", "table") if k in r) + ", impute.json")


def _choose_imputer(a) -> None:
    from .apps.impute import choose_and_impute
    from .train.run import default_run_dir

    if a.run is not None:
        raise ConfigError("give a RUN or --choose, not both")
    if not a.choose:
        raise ConfigError("give the RUN to impute with, or --choose with --data to choose and train one")
    if a.data is None:
        raise ConfigError("--choose needs --data (the table to impute)")
    if a.set or a.no_baselines or a.em:
        raise ConfigError("--choose sets the model's settings, chooses whether to use EM and always scores the "
                          "baselines (drop " + ("--set" if a.set else "--no-baselines" if a.no_baselines else "--em")
                          + ")")
    out = Path(a.out) if a.out else default_run_dir("impute", Path(a.data).stem)
    r = choose_and_impute(a.data, out, label_column=a.label_column, mask=a.mask, n=a.n, seed=a.seed,
                          progress=not a.quiet)
    settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
    print(f"chose {r['family']} ({settings}) of {len(r['candidates'])} candidates: validation RMSE "
          f"{r['validation_rmse']:.4f} (standardised, mask {r['mask']}); refined by EM on the rows it fills: "
          f"{r['validation_rmse_em']:.4f}, " + ("used" if r["em"] else "not used"))
    h = r["held_out"]
    print(f"held-out complete rows ({h['n']}, mask {h['mask']}), standardised RMSE: " + ",  ".join(
        f"{name} {m['rmse_standardised']:.4f}" for name, m in h["methods"].items()))
    if "filled" in r:
        f = r["filled"]
        print(f"filled {f['missing_cells']} missing cells in {f['rows_with_missing']} of {f['n']} rows")
    print(f"wrote {out}/" + (f"{Path(r['table']).name}, " if "table" in r else "") + f"choice.json; the model: "
          f"{r['run']} (genlab impute {r['run']} ...)")


def cmd_denoise(a) -> None:
    from .apps.denoise import denoise_data
    from .models.base import load

    model = load(a.run)
    data, col = _use_data(a)
    out = Path(a.out) if a.out else Path(a.run) / f"denoise-{a.noise:g}"
    r = denoise_data(model, data, noise=a.noise, n=a.n, label_column=col, out=out, seed=a.seed,
                     progress=not a.quiet, **parse_settings(a.set))
    print(f"{r['family']} on {r['n']} examples of {r['data']}, noise {a.noise:g}: PSNR noisy {r['psnr_noisy']:.2f} dB "
          f"-> denoised {r['psnr_denoised']:.2f} dB")
    print(f"wrote {out}/" + ("denoise.png, " if "figure" in r else "") + "denoise.json")


def cmd_datasets(a) -> None:
    from .data import DATASETS

    print(f"{'name':14} {'kind':7} where / what")
    for name, e in sorted(DATASETS.items()):
        where = e.locate() if e.locate else "generated on the fly"
        print(f"{name:14} {e.kind:7} {e.description}\n{'':22}found: {where}")
    print("\nAlso: a path to a .npy/.npz/.csv array or a folder of images (one sub-folder per class).")


def cmd_models(a) -> None:
    from .models import MODELS, get_family, hyperparameters
    from .models.base import capabilities_of, hparam_ranges
    from .train.config import TrainConfig

    names = [get_family(a.family).family] if a.family else sorted(MODELS)
    for name in names:
        cls = MODELS[name]
        print(f"{name}: {cls.description}")
        print("  can: " + ", ".join(["train", "sample"] + capabilities_of(name)))
        if a.family:  # one family: each hyperparameter with its valid values
            print("  hyperparameters:")
            for k, v in hyperparameters(name).items():
                check = hparam_ranges(name).get(k)
                print(f"    {k}={v!r}" + (f"  ({check.describe()})" if check is not None else ""))
            options, checks = cls.sample_options() or {}, cls.sample_checks()
            if options:
                print("  sample options (--set, or sample's own flags):")
                for k, v in options.items():
                    print(f"    {k}={v!r}" + (f"  ({checks[k].describe()})" if k in checks else ""))
        else:
            print("  hyperparameters: " + ", ".join(f"{k}={v!r}" for k, v in hyperparameters(name).items()))
        td = {**{k: getattr(TrainConfig, k, None) for k in ("lr", "batch_size", "ema_decay")}, **cls.train_defaults}
        print("  trainer defaults: " + ", ".join(f"{k}={v!r}" for k, v in td.items()))
        print()


COMMANDS = {"train": cmd_train, "resume": cmd_resume, "sample": cmd_sample, "eval": cmd_eval, "experiment": cmd_experiment,
            "explore": cmd_explore,
            "translate": cmd_translate,
            "compare": cmd_compare, "report": cmd_report, "judge": cmd_judge,
            "anomaly": cmd_anomaly, "impute": cmd_impute, "denoise": cmd_denoise,
            "datasets": cmd_datasets,
            "models": cmd_models}


def _format_warning(message, category, filename, lineno, line=None, _python=warnings.formatwarning) -> str:
    """genlab's own warnings as one line, `genlab: warning: ...`; others as Python prints them."""
    if issubclass(category, GenlabWarning):
        return f"genlab: warning: {message}\n"
    return _python(message, category, filename, lineno, line)


def main(argv=None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `genlab models | head -1`: the reader left; no traceback
        _silence_stdout()
        return 141  # as a process ended by SIGPIPE
    finally:  # also after --help (SystemExit): flush now, so a closed pipe is not reported at exit
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
        except (OSError, ValueError):
            pass


def _main(argv) -> int:
    warnings.formatwarning = _format_warning
    args = build_parser().parse_args(argv)
    threads = None
    try:
        if args.verb not in ("datasets", "models", "judge"):
            from .train.threads import use_available_cores

            threads = use_available_cores()  # the cores this process may use (or OMP_NUM_THREADS); restored below
        return COMMANDS[args.verb](args) or 0
    except GenlabError as e:
        print(f"genlab: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:  # Ctrl-C or SIGTERM in train/resume: what was saved, how to resume
        print(f"genlab: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("genlab: interrupted (resume a training run with `genlab resume RUN`)", file=sys.stderr)
        return 130
    except OSError as e:  # a file genlab could not write or read (permissions, a full disk, ...): one line
        if isinstance(e, BrokenPipeError):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"genlab: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        if threads is not None:  # main() called from Python (tests, notebooks) leaves torch as it found it
            import torch

            torch.set_num_threads(threads[1])


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush into a closed pipe says nothing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured by a test)
        pass
