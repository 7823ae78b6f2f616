"""`compare`: every family trained on the same data, evaluated under one protocol, on one page.

    results = compare("digits", out="runs/compare")        # trains, evaluates, writes the page
    results = report(["runs/a", "runs/b"], out="page")      # the same page from existing runs

DIR/ holds `report.html` (self-contained), `results.json`, `figures/` and one run
directory per family (DIR/vae, DIR/gan, ...), each an ordinary run that can be resumed,
sampled or evaluated later. Families come from the registry (`genlab.models.MODELS`):
every family whose `kinds` include the data's kind, unless `models=` names some.

Budget scheme. With `steps=N` every family trains N steps. Otherwise `minutes` (default
DEFAULT_MINUTES) is the total training time, split across the families that train by
gradient steps in proportion to their `compare_weight` (a class attribute, 1 unless a
family says otherwise: ddpm, fm and pixelcnn take 2, their steps on images cost more; a latent
entry such as "ddpm@vae" takes 1, its network is an MLP over codes); families fitted in
closed form (no players) take none of it. `budgets={"gan": 2.0}` gives a family its own
minutes, outside the split. Minutes count process CPU time on a CPU (the trainer's clock="auto"),
so a family gets the same steps however busy the machine is, and wall time on a GPU; evaluation,
figures and the page come on top (see EVAL_N and the measured times on the page). A family that
trained fewer steps than its `min_train_steps` is flagged "too short" on the page.

Evaluation: every metric that applies, n = min(test split, EVAL_N) samples, one seed; the
likelihood metric within NLL_SECONDS per family (on a subset of the reference examples when
the whole would take longer; the page says so).

Latent models: a name `FAMILY@AE` in `models` (e.g. "ddpm@vae") trains FAMILY on the codes of this
comparison's AE run (`train(FAMILY, latent=DIR/AE)`, see models/latent.py); AE is trained first (added
to the list if it is not in it), and both count in the budget split. "all" in `models` stands for every
registered family that models the data: `models=["all", "ddpm@vae"]` is the demo's list.

A family that fails (in training, evaluation or its figures) is recorded as
{"status": "failed", "stage": ..., "error": ...}; the others go on and the page shows it.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

from .._version import __version__
from ..data import Dataset, load_dataset
from ..errors import ConfigError, DataError, GenlabError, unknown_name
from ..io import atomic_write_json, read_json
from ..models.base import read_run_config
from ..report.html import budget_text

DEFAULT_MINUTES = 2.5  # total training minutes of `genlab compare` (the digits demo: <= 5 min in all)
EVAL_N = 2500          # generated and reference samples per family, at most (digits: its 360 test images)


# -- which families, how long ---------------------------------------------------------------
def families_for(spec) -> list[str]:
    """Registered families that model this kind of data, in registration order; on paired data (an
    input tensor per example) those that can be conditioned on it (on unpaired data: learn unpaired);
    elsewhere those that do not need an input (not pix2pix, cyclegan)."""
    from ..models import MODELS, hyperparameters

    names = [name for name, cls in MODELS.items() if spec.kind in cls.kinds]
    if spec.condition_kind != "tensor":  # families conditional by construction (pix2pix, cyclegan) need inputs
        return [n for n in names if hyperparameters(n).get("conditional") is not True]
    return [n for n in names if "tensor" in MODELS[n].condition_kinds
            and (MODELS[n].learns_unpaired or not spec.unpaired)]


def translation_settings(families: Sequence[str], spec, settings: dict) -> dict:
    """On paired data a comparison compares translators: every family that can be conditioned on
    the input tensor and is not conditional by default (ddpm, fm) gets conditional=true, unless
    the user set it. (Here, not in the families: `genlab train ddpm --data digits-sr` still means
    what it says.)"""
    from ..models import MODELS, hyperparameters

    if spec.condition_kind != "tensor":
        return settings
    out = {f: dict(v) for f, v in settings.items()}
    for f in families:
        if "tensor" in MODELS[f].condition_kinds and hyperparameters(f).get("conditional") is False:
            out.setdefault(f, {}).setdefault("conditional", True)
    return out


def expand_models(names: Sequence[str], spec) -> list[str]:
    """The entries of a comparison in training order: "all" expanded to `families_for(spec)`, and the
    autoencoder AE of each latent entry "FAMILY@AE" placed before it (added where it is missing).
    Every family named is checked (an unknown one is a one-line error)."""
    from ..models import get_family

    out: list[str] = []

    def add(name: str) -> None:
        if name in out:
            return
        if "@" in name:
            inner, ae = name.split("@", 1)
            if not inner or not ae:
                raise ConfigError(f"'{name}': a latent model is FAMILY@AUTOENCODER, e.g. ddpm@vae")
            get_family(inner)
            add(ae)
        else:
            get_family(name)
        out.append(name)

    for name in names:
        if name == "all":
            for f in families_for(spec):
                add(f)
        else:
            add(name)
    return out


def inner_family(name: str) -> str:
    """The family an entry trains: "ddpm" for "ddpm" and for the latent "ddpm@vae"."""
    return name.split("@", 1)[0]


def _closed_form(family: str, spec) -> bool:
    """True for families fitted in closed form (no optimiser players), e.g. PCA (a latent entry:
    its inner family's)."""
    from ..models import create_model

    try:
        return not create_model(inner_family(family), spec).players()
    except Exception:  # a family that cannot even be built fails later, with its own error
        return False


def plan_budgets(families: Sequence[str], spec, minutes: Optional[float] = None, steps: Optional[int] = None,
                 budgets: Optional[dict] = None) -> dict[str, dict]:
    """{family: budget keyword arguments for `train`} under the scheme in the module docstring."""
    from ..models import MODELS

    budgets = dict(budgets or {})
    for fam, m in budgets.items():
        if fam not in families:
            raise unknown_name("family in --budget", fam, families)
        if not (isinstance(m, (int, float)) and m > 0 and math.isfinite(m)):
            raise ConfigError(f"budget for '{fam}' must be a positive number of minutes, got {m!r}")
    if steps is not None:
        if steps < 1:
            raise ConfigError("steps must be at least 1")
        return {f: ({"minutes": budgets[f]} if f in budgets else {"steps": int(steps)}) for f in families}
    total = DEFAULT_MINUTES if minutes is None else minutes
    if not (total > 0 and math.isfinite(total)):
        raise ConfigError(f"minutes must be a positive number, got {total!r}")
    plan, weights = {}, {}
    for f in families:
        if f in budgets:
            plan[f] = {"minutes": float(budgets[f])}
        elif _closed_form(f, spec):
            plan[f] = {"steps": 1}  # ignored by a closed-form fit
        else:
            # a latent entry's network is an MLP over codes, whatever its family's weight on images
            weights[f] = 1.0 if "@" in f else float(MODELS[f].compare_weight)
    share = sum(weights.values())
    for f, w in weights.items():
        plan[f] = {"minutes": total * w / share}
    return {f: plan[f] for f in families}


# -- one family: evaluate and draw -----------------------------------------------------------
def _eval_n(data: Dataset, n: Optional[int]) -> int:
    return min(len(data.test), EVAL_N) if n is None else int(n)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


NLL_SECONDS = 20.0  # time limit for the likelihood metric per family (see evaluate_run); 0: none


def evaluate_run(model, data: Dataset, run_dir: Optional[Path], n: int, seed: int,
                 nll_seconds: float = NLL_SECONDS) -> dict:
    """Every metric that applies, under the shared protocol; cached in RUN/eval.json.

    The likelihood metric is the one whose cost varies by orders of magnitude between families
    (a diffusion bound needs all T network evaluations per example). When scoring the n reference
    examples would take longer than `nll_seconds`, it scores the first m of them instead (the same
    seeded permutation, so a subset of the same examples), and the note on the page says so:
    an unbiased estimate of the same mean with a larger standard error.
    """
    from ..metrics.evaluate import PROTOCOL_VERSION, evaluate

    cache = Path(run_dir) / "eval.json" if run_dir is not None else None
    weights = Path(run_dir) / "model.safetensors" if run_dir is not None else None
    if cache is not None and cache.exists() and weights.exists() and cache.stat().st_mtime >= weights.stat().st_mtime:
        try:
            old = read_json(cache)
        except GenlabError:  # a cache that is not JSON: computed again
            old = None
        p = old.get("protocol", {}) if isinstance(old, dict) else {}
        if (isinstance(old, dict) and old.get("metrics_requested") == "all" and p.get("version") == PROTOCOL_VERSION
                and p.get("n_generated") == n and p.get("seed") == seed
                and p.get("reference_split") == "test" and not p.get("sample_options")
                and ("nll_examples" not in old or old.get("nll_seconds") == nll_seconds)):
            return old
    result = evaluate(model, data, n=n, seed=seed, nll_seconds=nll_seconds)
    if result.get("nll_examples", n) >= n:  # scored whole: the page marks only subsets
        result.pop("nll_examples", None), result.pop("nll_seconds", None)
    result["metrics_requested"] = "all"
    if cache is not None:
        result["run"] = str(run_dir)
        atomic_write_json(cache, _json_safe(result))
    return result


def _train_record(run_dir: Path) -> dict:
    from ..report.figures import read_metrics

    cfg = read_run_config(run_dir)
    recs = read_metrics(run_dir / "metrics.jsonl")
    last = recs[-1] if recs else {}
    closed = bool(recs) and last.get("step") == 0 and last.get("lr") == 0.0
    out = {"steps": last.get("step", 0), "epochs": last.get("epoch", 0), "seconds": last.get("time", 0.0),
           "clock": cfg.get("train", {}).get("clock", "wall"), "threads": cfg.get("torch_threads"),
           "budget": cfg.get("budget", {}), "hparams": cfg.get("hparams", {}), "seed": cfg.get("seed"),
           "closed_form": closed}
    if cfg.get("data_defaults"):
        out["data_defaults"] = cfg["data_defaults"]
    least = cfg.get("min_train_steps")
    if least and not closed:
        out["min_steps"] = least
        out["too_short"] = out["steps"] < least
    return out


def summarise(name: str, model, data: Dataset, run_dir: Path, out: Path, n: int, seed: int,
              lims=None, nll_seconds: float = NLL_SECONDS) -> dict:
    """The page's entry for one trained run: evaluation, its figures, its training record."""
    from ..models.latent import LatentModel

    entry = {"name": name, "family": model.family, "status": "ok", "run": _rel(run_dir, out),
             "description": model.description, "likelihood_kind": model.likelihood_kind,
             "capabilities": model.capabilities(), "train": _train_record(run_dir)}
    if isinstance(model, LatentModel):  # the page states the codes' dimension: "ddpm@vae (16-D codes)"
        entry["latent"] = {"dim": model.latent_dim, "autoencoder": model.source["family"],
                           "run": _rel(model.source["run"], out)}
    try:
        return _summarise(entry, model, data, run_dir, out, n, seed, lims, nll_seconds)
    except Exception as e:
        e.genlab_stage = entry.get("stage", "evaluate")  # for the failure report
        raise


def _summarise(entry, model, data, run_dir, out, n, seed, lims, nll_seconds) -> dict:
    from ..report.latent import density_panel, latent_map, sample_scatter

    name = entry["name"]
    entry["stage"] = "evaluate"
    t0 = time.perf_counter()
    ev = evaluate_run(model, data, run_dir, n, seed, nll_seconds)
    entry.update({"metrics": ev["metrics"], "reference": ev["reference"], "notes": ev["notes"],
                  "protocol": ev["protocol"], "eval_seconds": ev["seconds"],
                  "sampling_seconds": ev["seconds"].get("sampling"), "nll_examples": ev.get("nll_examples"),
                  "evaluate_seconds": round(time.perf_counter() - t0, 3)})
    entry["stage"] = "figures"
    figs = {}
    for key in ("samples", "translations", "reconstructions", "loss"):
        p = run_dir / f"{key}.png"
        if p.exists():
            figs[key] = {"path": _rel(p, out)}
    fig_dir = out / "figures"
    lm = latent_map(model, data, fig_dir / f"{_slug(name)}-latent.png", seed=seed, seconds=nll_seconds)
    if lm is not None:
        figs["latent"] = {**lm, "path": _rel(lm["path"], out)}
    from ..apps.explore import page_figures

    for key, f in page_figures(model, data, fig_dir / f"{_slug(name)}-explore", seed=seed,
                                          seconds=nll_seconds / 2).items():
        figs[f"explore_{key}"] = {**f, "path": _rel(f["path"], out)} if "path" in f else f
    if data.spec.shape == (2,) and data.spec.kind == "vector":
        sc = sample_scatter(model, data, lims, fig_dir / f"{_slug(name)}-scatter.png", seed=seed)
        figs["scatter"] = {**sc, "path": _rel(sc["path"], out)}
        dp = density_panel(model, lims, fig_dir / f"{_slug(name)}-density.png", seed=seed, seconds=nll_seconds)
        figs["density"] = {**dp, "path": _rel(dp["path"], out)}
    entry["figures"] = figs
    del entry["stage"]
    return entry


def _failed(name: str, family: str, stage: str, err: BaseException, run_dir: Optional[Path], out: Path,
            entry: Optional[dict] = None) -> dict:
    entry = dict(entry or {})
    entry.update({"name": name, "family": family, "status": "failed", "stage": stage,
                  "error": f"{type(err).__name__}: {err}".strip(),
                  "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]})
    if run_dir is not None and Path(run_dir).exists():
        entry["run"] = _rel(run_dir, out)
    return entry


def _rel(path, base) -> str:
    path, base = Path(path).resolve(), Path(base).resolve()
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _json_safe(obj):
    """Non-finite floats become the strings 'inf', '-inf', 'nan' (strict JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# -- the whole page ---------------------------------------------------------------------------
def _finish(results: dict, data: Dataset, out: Path, lims, t0: float, page: Optional[Path] = None,
            human: Optional[dict] = None) -> dict:
    """Shared protocol and reference row, the data's own figures, results.json and report.html;
    `human`: a judging study's scores (workflows/judge), shown beside the metrics."""
    from ..report.html import write_html
    from ..report.latent import data_panels

    ok = [e for e in results["families"] if e["status"] == "ok"]
    reference: dict = {}
    for e in ok:
        for k, v in e.pop("reference", {}).items():
            reference.setdefault(k, v)
    results["reference"] = reference
    results["protocol"] = ok[0]["protocol"] if ok else None
    for e in ok:
        e.pop("protocol", None)
    from ..metrics.translation import baseline_result

    base = baseline_result(data, results.get("n"), results.get("seed", 0))  # super-resolution: bicubic
    if base is not None:
        results["baselines"] = [{"name": base["name"], "metrics": base["metrics"], "notes": base["notes"],
                                 "sampling_seconds": base["seconds"].get("sampling")}]
    figs = data_panels(data, out / "figures", lims)
    results["data_figures"] = {k: {**v, "path": _rel(v["path"], out)} for k, v in figs.items()}
    if human is not None:
        from .judge.scores import beside_metrics

        results["human"] = beside_metrics(human, human["sources"], results["families"], out)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out / "results.json", _json_safe(results))
    results["report"] = str(write_html(results, out, page or out / "report.html"))
    return results


def _header(data: Dataset, seed: int, n: int, scheme: str, nll_seconds: float) -> dict:
    return {"genlab_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "data": data.spec.name, "data_spec": data.spec.to_dict(), "seed": seed, "n": n,
            "nll_seconds": nll_seconds,
            "budget_scheme": scheme, "families": []}


def compare(data="digits", models: Optional[Sequence[str]] = None, minutes: Optional[float] = None,
            budgets: Optional[dict] = None, steps: Optional[int] = None, seed: int = 0, out=None,
            n: Optional[int] = None, progress: bool = True, settings: Optional[dict] = None,
            nll_seconds: float = NLL_SECONDS, human: Optional[dict] = None, normal_class=None) -> dict:
    """Train each family on `data`, evaluate all under one protocol, write DIR/report.html.

    `models`: family names (default: every registered family that models the data);
    `minutes` / `budgets` / `steps`: see the module docstring; `n`: evaluation samples
    (default min(test split, EVAL_N)); `settings`: {family: {setting: value}} passed to `train`;
    `nll_seconds`: time limit of the likelihood metric per family (see `evaluate_run`);
    `human`: scores of a judging study (`judge.study_scores`), shown beside the metrics.
    `normal_class`: the one-class protocol. Every family trains (and is evaluated) on these classes
    only; then the whole test split is scored with its `anomaly_score`, AUROC with these classes
    normal (`genlab.apps.anomaly`'s auroc_full), as metric `auroc`.
    Returns the results (also in DIR/results.json) with "report" = the page's path.
    """
    from tqdm.auto import tqdm

    from ..report.latent import plot_limits
    from ..train.run import train

    t0 = time.perf_counter()
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    full = ds
    if normal_class is not None:
        from ..apps.anomaly import resolve_classes

        normal_class = resolve_classes(normal_class if isinstance(normal_class, (list, tuple)) else [normal_class],
                                       ds.spec)
        ds = ds.select_classes(normal_class)
    if models is None:
        models = families_for(ds.spec)
        if not models:
            raise ConfigError(f"no registered family models {ds.spec.kind} data")
    else:
        models = expand_models(models, ds.spec)
    settings = settings or {}
    for fam in settings:
        if fam not in models:
            raise unknown_name("family in settings", fam, models)
    settings = translation_settings(models, ds.spec, settings)
    plan = plan_budgets(models, ds.spec, minutes, steps, budgets)
    out = Path(out) if out is not None else Path("runs") / f"compare-{ds.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    taken = [f for f in models if (out / f / "config.json").exists()]
    if taken:
        raise GenlabError(f"{out} already holds runs for {', '.join(taken)}; choose another --out "
                          "(or `genlab report` them)")
    out.mkdir(parents=True, exist_ok=True)
    n_eval = _eval_n(ds, n)
    from ..train.config import resolve_clock

    clock = "process CPU time" if resolve_clock("auto") == "cpu" else "wall-clock time"
    scheme = (f"{steps} steps per family" if steps is not None else
              f"{DEFAULT_MINUTES if minutes is None else minutes:g} min of training ({clock}) split across families")
    if budgets:
        scheme += "; own budgets: " + ", ".join(f"{f} {m:g} min" for f, m in budgets.items())
    results = _header(ds, seed, n_eval, scheme, nll_seconds)
    lims = plot_limits(ds) if ds.spec.shape == (2,) and ds.spec.kind == "vector" else None
    bar = tqdm(models, desc="compare", unit="family", disable=not progress, dynamic_ncols=True, position=0)
    for i, fam in enumerate(bar):
        left = sum(b.get("minutes", 0) for f, b in plan.items() if f in models[i:])
        bar.set_postfix_str(f"{fam} ({budget_text(plan[fam])}); training left ~{left:.1f} min")
        run_dir, stage, entry = out / fam, "train", None
        try:
            # no training bar for closed-form fits: there are no steps to show (and ProgressBar
            # expects on_train_start, which a closed-form fit never calls)
            bar_on = progress and not _closed_form(fam, ds.spec)
            latent = None
            if "@" in fam:  # a latent model over the codes of this comparison's autoencoder run
                ae = fam.split("@", 1)[1]
                if not (out / ae / "model.safetensors").exists():
                    raise GenlabError(f"its autoencoder '{ae}' did not train, so there are no codes")
                latent = out / ae
            run = train(inner_family(fam), ds, out=run_dir, seed=seed, progress=bar_on, latent=latent,
                        **plan[fam], **settings.get(fam, {}))
            entry = summarise(fam, run.model, ds, run_dir, out, n_eval, seed, lims, nll_seconds)
            if normal_class is not None:
                one_class_scores(entry, run.model, full, normal_class)
        except Exception as e:  # noqa: BLE001 - a family's failure is reported, the others go on
            entry = _failed(fam, fam, getattr(e, "genlab_stage", stage), e, run_dir, out)
            if progress:
                tqdm.write(f"compare: {fam} failed ({stage}): {entry['error'].splitlines()[0]}")
        entry["budget"] = plan[fam]
        results["families"].append(entry)
        run = None  # noqa: F841 - let the finished family's model go before the next one trains
    bar.close()
    return _finish(results, ds, out, lims, t0, human=human)


def one_class_scores(entry: dict, model, full: Dataset, normal_class) -> None:
    """entry's metrics gain `auroc`: the whole of `full`'s test split scored by the model's anomaly_score,
    `normal_class` normal; a family without anomaly_score gets a note instead."""
    from ..apps.anomaly import anomaly

    if not hasattr(model, "anomaly_score"):
        entry.setdefault("notes", {})["auroc"] = f"'{model.family}' has no anomaly_score"
        return
    r = anomaly(model, full, normal_class=normal_class)
    entry["metrics"]["auroc"] = r["auroc_full"]
    entry.setdefault("notes", {})["auroc"] = (f"{r['n']} test examples of {full.spec.name}, normal: "
                                             f"{', '.join(r['normal_classes'])} (the one-class protocol)")


def report(runs: Sequence, out, n: Optional[int] = None, seed: int = 0, progress: bool = True,
           nll_seconds: float = NLL_SECONDS, human: Optional[dict] = None, data=None,
           allow_changed_data: bool = False) -> dict:
    """The comparison page from existing run directories (all on the same data).

    `out` is the page's path (…/report.html) or a directory; results.json and figures/ go beside it.
    Runs are evaluated under the shared protocol unless RUN/eval.json already holds that evaluation.
    The data is the runs' own (or `data`, the same data moved), checked against each run's recorded
    fingerprint unless `allow_changed_data`.
    """
    from ..data.fingerprint import data_for_run, differences, fingerprint
    from tqdm.auto import tqdm

    from ..models.base import load
    from ..report.latent import plot_limits

    t0 = time.perf_counter()
    runs = [Path(r) for r in runs]
    if not runs:
        raise ConfigError("give at least one run directory")
    cfgs = [read_run_config(r) for r in runs]
    specs = {json.dumps(c["data"].get("source"), sort_keys=True) for c in cfgs}
    prints = [c.get("data_fingerprint") for c in cfgs]
    if len(specs) > 1 or (not allow_changed_data and any(differences(a, b) for a in prints for b in prints)):
        raise ConfigError("these runs were trained on different data: "
                          + ", ".join(f"{r} ({c['data'].get('name')})" for r, c in zip(runs, cfgs)))
    out = Path(out)
    page = out if out.suffix == ".html" else out / "report.html"
    base = page.parent
    base.mkdir(parents=True, exist_ok=True)
    ds = data_for_run(cfgs[0], runs[0], data, allow_changed_data=allow_changed_data)
    for r, c in zip(runs[1:], cfgs[1:]):
        changed = differences(c.get("data_fingerprint"), fingerprint(ds))
        if changed and not allow_changed_data:
            raise DataError(f"{r}: its data changed since training ({ds.spec.name}: {'; '.join(changed)}); give the "
                            "data it was trained on with --data PATH, or pass --allow-changed-data")
    n_eval = _eval_n(ds, n)
    families = [c["family"] + (f"@{c['latent'].get('family')}" if isinstance(c.get("latent"), dict) else "")
                for c in cfgs]
    names = [f if families.count(f) == 1 else f"{f} ({r.name})" for f, r in zip(families, runs)]
    results = _header(ds, seed, n_eval, "as trained (existing runs)", nll_seconds)
    lims = plot_limits(ds) if ds.spec.shape == (2,) and ds.spec.kind == "vector" else None
    bar = tqdm(list(zip(names, runs, cfgs)), desc="report", unit="run", disable=not progress, dynamic_ncols=True)
    for name, r, c in bar:
        bar.set_postfix_str(name)
        try:
            model = load(r)
            entry = summarise(name, model, ds, r, base, n_eval, seed, lims, nll_seconds)
        except Exception as e:  # noqa: BLE001
            entry = _failed(name, c["family"], getattr(e, "genlab_stage", "load"), e, r, base)
        entry["budget"] = c.get("budget", {})
        results["families"].append(entry)
    bar.close()
    return _finish(results, ds, base, lims, t0, page, human)


def load_results(directory) -> dict:
    """results.json of a comparison, with 'inf'/'nan' strings back as floats."""
    def back(o):
        if isinstance(o, str) and o in ("inf", "-inf", "nan"):
            return float(o)
        if isinstance(o, dict):
            return {k: back(v) for k, v in o.items()}
        if isinstance(o, list):
            return [back(v) for v in o]
        return o

    return back(json.loads((Path(directory) / "results.json").read_text()))


__all__ = ["compare", "report", "plan_budgets", "families_for", "expand_models", "load_results", "DEFAULT_MINUTES", "EVAL_N",
           "NLL_SECONDS"]
