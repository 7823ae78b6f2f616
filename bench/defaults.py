"""Defaults that work: every family on every built-in data set, 1 CPU-minute, no options.

    .venv/bin/python bench/defaults.py                          # every pair below, in this order
    .venv/bin/python bench/defaults.py --data 8gaussians,digits --minutes 0.25
    .venv/bin/python bench/defaults.py --resume                 # keep the pairs already in --out
    .venv/bin/python bench/defaults.py --data 8gaussians,25gaussians --families gan --seeds 0,1,2 --out F
    .venv/bin/python bench/defaults.py --data 25gaussians --families gan --set lr=2e-3 --out F   # a variant

Protocol: one torch thread; each pair is `genlab.train(FAMILY, DATA, minutes=M, clock="cpu", seed=S)` (S: --seeds)
with nothing else (the family's defaults and its data-aware defaults, `GenerativeModel.data_defaults`;
on paired data the families a comparison uses, ddpm and fm with conditional=true, as `genlab compare`
does), then one quality number against a simple baseline, under genlab's evaluation protocol
(`genlab.evaluate`, the test split, at most 2000 examples, seed 0, likelihood within 20 s):

  likelihood families  NLL (nats, vectors) or bits/dim (images) of the test split against a Gaussian
                       fitted to the training split (full covariance; on quantised images fitted to the
                       dequantised pixels and scored like the lattice densities): must be lower
  GANs on the ring and grid   % of samples within 3 sigma of a mode (PacGAN's high quality): >= 90%
  other samplers       MMD to the test split (2-D toys) or FD in the digits feature space (images),
                       against the same Gaussian's samples: must be lower
  translators          PSNR to the targets, against bicubic upsampling on digits-sr and against the
                       input itself on same-shape tasks (digits-inverted) (higher)

A pair fails when training or evaluation raises, or a number is NaN. Pairs where a family does not
apply are listed with the reason. MNIST-sized sets (mnist, fashion-mnist and the sets derived from
them) are left out by default: 1 CPU-minute is a small fraction of an epoch there; `--data mnist`
runs it. Results go to --out (JSON, rewritten after every pair) and one line per pair to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

import genlab
from genlab.cli import parse_settings
from genlab.data import DATASETS
from genlab.models import MODELS
from genlab.models.base import GenerativeModel
from genlab.workflows.compare import families_for, translation_settings

ORDER = ["8gaussians", "25gaussians", "digits", "checkerboard", "moons", "circles", "swissroll", "spirals",
         "digits-sr", "digits-inverted"]
MNIST_SIZED = {"mnist", "fashion-mnist", "mnist-edges", "mnist-inpaint", "mnist-inverted", "mnist-sr"}
HQ_TARGET = 0.90
EVAL_N = 2000
NLL_SECONDS = 20.0


class Gaussian(GenerativeModel):
    """The baseline: one Gaussian with the training split's mean and covariance (in data space).
    On quantised images it is fitted to dequantised pixels (covariance + 1 / (12 (L-1)^2) I, the
    variance of a uniform bin) and scored as a density at the lattice points, dequantised at evaluation."""

    family = "gaussian"
    likelihood_kind = "exact"
    likelihood = "gaussian"  # a density at the lattice points of quantised images (evaluation dequantises it)

    def __init__(self, data):
        super().__init__(data.spec)
        x = data.train.reshape(len(data.train), -1).double()
        cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
        levels = data.spec.levels if data.spec.kind == "image" else None
        jitter = 1 / (12 * (levels - 1) ** 2) if levels else 1e-6
        cov = cov + jitter * torch.eye(x.shape[1], dtype=torch.float64)
        self.dist = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=cov)

    def log_prob(self, x, y=None):
        return self.dist.log_prob(x.reshape(len(x), -1).double()).float()

    def sample(self, n, y=None, generator=None, **options):
        z = torch.randn(n, self.dist.mean.shape[0], generator=generator, dtype=torch.float64)
        x = self.dist.mean + z @ self.dist.scale_tril.T
        x = x.float().reshape(n, *self.spec.shape)
        return x.clamp(0, 1) if self.spec.kind == "image" else x


def _metrics(model, data) -> list[str]:
    from genlab.metrics.evaluate import supported_metrics

    ok = {m for m, why in supported_metrics(model, data).items() if why is None}
    wanted = ["nll", "modes", "mmd", "fid", "psnr"]
    return [m for m in wanted if m in ok]


def _evaluate(model, data, names) -> dict:
    n = min(EVAL_N, len(data.test))
    r = genlab.evaluate(model, data, names, n=n, seed=0, nll_seconds=NLL_SECONDS)
    out = dict(r["metrics"], n=n)
    if "nll_examples" in r:
        out["nll_examples"] = r["nll_examples"]
    return out


def _identity_baseline(data) -> dict:
    """A same-shape translation's no-learning row: the input as the output (PSNR / SSIM to the
    targets over the first EVAL_N test pairs; a translator must beat it)."""
    from genlab.metrics.translation import psnr_ssim

    n = min(EVAL_N, len(data.test))
    return {"name": "the input itself", **psnr_ssim(data.test_cond[:n].float(), data.test[:n].float())}


def _baseline(data, cache: dict) -> dict:
    name = data.spec.name
    if name not in cache:
        if data.spec.condition_kind == "tensor":  # paired data: the no-learning baseline of a comparison
            from genlab.metrics.translation import baseline_result

            b = baseline_result(data, min(EVAL_N, len(data.test)), 0)
            if b is not None:
                cache[name] = {"name": b["name"], **b["metrics"]}
            elif data.spec.paired_test and tuple(data.spec.condition_shape) == tuple(data.spec.shape):
                cache[name] = _identity_baseline(data)
            else:
                cache[name] = {}
        else:
            g = Gaussian(data)
            cache[name] = {"name": "fitted Gaussian", **_evaluate(g, data, _metrics(g, data))}
    return cache[name]


def verdict(family: str, m: dict, base: dict, image: bool) -> tuple[str, bool]:
    """(the line's quality text, whether it meets the target)."""
    nums = [v for v in m.values() if isinstance(v, float)]  # NaN anywhere fails the pair
    if any(math.isnan(v) for v in nums):
        return "NaN in " + ", ".join(k for k, v in m.items() if isinstance(v, float) and math.isnan(v)), False
    if "modes" in m and family == "gan":
        hq = m.get("high_quality")
        return f"{m['modes']} modes, {100 * hq:.1f}% HQ (target >= {100 * HQ_TARGET:.0f}%)", hq >= HQ_TARGET
    key = "bpd" if image else "nll"
    if key in m and key in base:  # images: bits/dim of the discrete data (a likelihood without it: FD below)
        unit = "bits/dim" if key == "bpd" else "nats"
        extra = f", {m['modes']} modes {100 * m['high_quality']:.1f}% HQ" if "modes" in m else ""
        part = m.get("nll_examples", m.get("n")) < m.get("n", 0)
        text = (f"{key} {m[key]:.3f} vs Gaussian {base[key]:.3f} {unit}{extra}"
                + (f" (NLL on {m['nll_examples']} of {m['n']} ex.)" if part else ""))
        if family == "pca":  # probabilistic PCA is itself a Gaussian (low-rank + isotropic covariance)
            return text + " (pca is a Gaussian itself: not scored)", None
        return text, m[key] < base[key]
    if "psnr" in m:
        if "psnr" in base:
            return f"PSNR {m['psnr']:.2f} vs {base['name']} {base['psnr']:.2f} dB", m["psnr"] > base["psnr"]
        return f"PSNR {m['psnr']:.2f} dB (no baseline)", True
    for key in ("mmd", "fid"):
        if key in m and key in base:
            extra = f", {m['modes']} modes {100 * m['high_quality']:.1f}% HQ" if "modes" in m else ""
            return (f"{key.upper()} {m[key]:.4g} vs Gaussian {base[key]:.4g}{extra}",
                    None if family == "pca" else m[key] < base[key])
    return "no quality number", False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="CPU minutes of training per pair (default 1)")
    ap.add_argument("--data", default=",".join(ORDER), help="comma-separated data sets (default: every built-in "
                                                            "set that is not MNIST-sized, in a fixed order)")
    ap.add_argument("--families", help="comma-separated families (default: every family that applies)")
    ap.add_argument("--out", default="bench/results/defaults.json")
    ap.add_argument("--resume", action="store_true", help="keep the pairs already in --out")
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds, one row per seed (default 0)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a setting for every pair, as genlab train's --set (to compare against the defaults)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch_threads": 1,
               "cpu_minutes_per_pair": a.minutes, "eval_n": EVAL_N, "nll_seconds": NLL_SECONDS,
               "genlab_version": genlab.__version__, "torch": torch.__version__, "machine": platform.machine(),
               "pairs": [], "skipped": [], "baselines": {}}
    done = set()
    seeds = [int(s) for s in a.seeds.split(",")]
    extra = parse_settings(a.set)
    if a.resume and out.exists():
        old = json.loads(out.read_text())
        summary.update({k: old[k] for k in ("pairs", "skipped", "baselines")})
        done = {(p["data"], p["family"], p.get("seed", 0)) for p in summary["pairs"]}
    wanted = None if not a.families else [f.strip() for f in a.families.split(",")]
    names = [d.strip() for d in a.data.split(",") if d.strip()]
    skipped_sets = [d for d in DATASETS if d not in names]
    for d in skipped_sets:
        why = ("MNIST-sized: not in the default pass (--data to run it)" if d in MNIST_SIZED
               else "not asked for (--data)")
        summary["skipped"].append({"data": d, "family": "*", "why": why})

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1))

    for name in names:
        data = genlab.load_dataset(name)
        spec, image = data.spec, data.spec.kind == "image"
        applies = families_for(spec)
        for fam in MODELS:
            if fam not in applies and (wanted is None or fam in wanted):
                cls = MODELS[fam]
                why = (f"models {', '.join(cls.kinds)} data" if spec.kind not in cls.kinds else
                       "needs paired data (an input per example)" if spec.condition_kind != "tensor" else
                       "learns from pairs; this set is unpaired" if spec.unpaired else
                       "cannot be conditioned on this set's inputs")
                if not any(s["data"] == name and s["family"] == fam for s in summary["skipped"]):
                    summary["skipped"].append({"data": name, "family": fam, "why": why})
                print(f"{name:15s} {fam:9s} skip: {why}", flush=True)
        settings = translation_settings(applies, spec, {})
        base = _baseline(data, summary["baselines"])
        save()
        for fam, seed in ((f, s) for f in applies for s in seeds):
            if (wanted is not None and fam not in wanted) or (name, fam, seed) in done:
                continue
            row = {"data": name, "family": fam, "seed": seed, "settings": {**settings.get(fam, {}), **extra}}
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                run = genlab.train(fam, data, minutes=a.minutes, clock="cpu", seed=seed, save=False, progress=False,
                                   **row["settings"])
                row["train_cpu_seconds"] = round(time.process_time() - cpu, 1)
                last = run.history[-1] if run.history else {}
                row["steps"], row["epochs"] = last.get("step"), last.get("epoch")
                derived = getattr(run.model, "derived_defaults", None) or {}  # hyperparameters and trainer settings
                row["data_defaults"] = {**(derived.get("hparams") or {}), **(derived.get("train") or {})}
                row["metrics"] = _evaluate(run.model, data, _metrics(run.model, data))
                text, ok = verdict(fam, row["metrics"], base, image)
                row.update({"finished": True, "quality": text, "target_met": ok})
            except Exception as e:  # noqa: BLE001 - a failure is a result here
                row.update({"finished": False, "error": f"{type(e).__name__}: {e}".splitlines()[0],
                            "target_met": False})
                text = "FAILED " + row["error"]
            row["cpu_seconds"] = round(time.process_time() - cpu, 1)
            row["wall_seconds"] = round(time.perf_counter() - wall, 1)
            summary["pairs"].append(row)
            save()
            print(f"{name:15s} {fam:9s} {seed:2d} {'finished' if row['finished'] else 'FAILED':8s} "
                  f"{row.get('steps', '-')!s:>6} steps  {text}  "
                  f"[{'n/a' if row['target_met'] is None else 'met' if row['target_met'] else 'MISSED'}; "
                  f"{row['cpu_seconds']:.0f} CPU-s, {row['wall_seconds']:.0f} s wall]", flush=True)
    pairs = summary["pairs"]
    print(f"\n{sum(p['finished'] for p in pairs)} of {len(pairs)} pairs finished, "
          f"{sum(p['target_met'] is True for p in pairs)} met their target, "
          f"{sum(p['target_met'] is False for p in pairs)} missed; {len(summary['skipped'])} skipped; wrote {out}")


if __name__ == "__main__":
    main()
