"""genlab's evaluation metrics vs their reference implementations, in one run, on the same inputs.

What it measures
  1. Fréchet distance: genlab's `fid_from_features` vs torchmetrics' `FrechetInceptionDistance`
     given the SAME feature network (genlab's shipped digits classifier, wrapped as an nn.Module),
     on real 8x8 digits: train (real) vs test, test + Gaussian noise, blurred test. Also torchmetrics
     fed genlab's own float64 features through an identity module (isolates the Fréchet arithmetic),
     and an independent float64 reference, Tr (S1^1/2 S2 S1^1/2)^1/2 from `eigh`. Requirement:
     relative difference <= 1e-4.
  2. Precision / recall / density / coverage: genlab's `prdc(real, fake, k=5)` vs
     `prdc.compute_prdc(real, fake, nearest_k=5)` (float64 and float32 inputs), and genlab's
     improved precision/recall `precision_recall(real, fake, k=3)` (closed balls, Kynkäänniemi et al.)
     vs compute_prdc's precision/recall at k=3 (open balls), on the same feature arrays. A tie case
     (integer-valued features, many distances equal to a radius) shows the only difference: ties.
     COPIES rows (a mode-collapsed / memorising fake set, duplicated reals) add a reference with
     exact tie semantics (distances by direct differences): there both libraries decide exact ties
     by rounding of |a|^2 + |b|^2 - 2 a.b, and can differ from each other and from exact arithmetic.
     The 4-decimal agreement requirement is checked on the natural-data (digits) rows.
  3. Time (best of --repeats wall times, genlab and peer interleaved within each round so that
     background load hits both alike) on n vs n samples (default 10,000): Fréchet distance and
     prdc / precision-recall on synthetic Gaussian features of dim 64 and 128; feature extraction of
     n images (8x8 digits with the shipped digits classifier; 28x28 MNIST test images with the
     shipped mnist classifier, or, when src/genlab/metrics/weights/mnist.safetensors is missing,
     the same architecture at 28x28 with the digits weights as a stand-in: the cost is the same).
     Extraction peer: torchmetrics' FID `update` (features + float64 sum / outer-product
     accumulation) vs genlab's `features` + `gaussian_stats` (features + float64 mean / covariance).

How torchmetrics is set up (no torch-fidelity, no torchvision): `FrechetInceptionDistance(
feature=<nn.Module>, normalize=True, input_img_size=(1, H, W))`. With a custom module,
`normalize=True` only means "inputs are float32" (used for the dummy probe when the module has no
`num_features`; the images are passed to the module unchanged); the Inception path (an int
`feature`) is the only one that needs torch-fidelity. dtypes: its states (feature sum and sum of
outer products) are float64 whatever the module returns (`features.double()` before
accumulating), the covariance is the one-pass sum(f f^T) - n mu mu^T, and the distance uses
`eigvals(S1 S2).sqrt().real.sum()`; `compute()` then casts the result back to the dtype of the
module's output, so a float32 module gives a float32 FID (~1e-7 relative rounding). The wrapper
here returns `.double()` features (what genlab's FeatureExtractor does: float32 network, float64
output), so both sides are float64 throughout. `set_dtype(torch.float64)` is NOT used: it also
casts the custom module's weights to float64 (it is a child module of the metric), after which
float32 images fail with a dtype mismatch. genlab uses a two-pass covariance and scipy `sqrtm`.

Run from the project root (needs the `bench` extra: pip install -c constraints.txt -e '.[bench]'):
    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/metrics.py             # n = 10000
    .venv/bin/python bench/metrics.py --quick                                      # smoke test, n = 1000
Options: --n N, --repeats R (default 3), --json PATH (default bench/results/metrics.json;
--quick writes no JSON unless --json is given). Without GENLAB_DATA_DIR / MNIST files the 28x28
extraction uses the 8x8 digits upsampled to 28x28 (timing does not depend on the pixel values).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib.metadata
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

warnings.filterwarnings("ignore", message=".*torch_fidelity.*")

from genlab.data import load_dataset  # noqa: E402
from genlab.metrics import fid_from_features, gaussian_stats, precision_recall, prdc  # noqa: E402
from genlab.metrics.features import (Classifier, FeatureExtractor, shipped_extractor,  # noqa: E402
                                     weights_path, _load_shipped)
from prdc import compute_prdc  # noqa: E402
from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FID_TOL = 1e-4  # the issue's requirement: relative difference
BATCH = 250     # genlab's FeatureExtractor default batch size; torchmetrics gets the same batches


# -- torchmetrics feature modules -------------------------------------------------------------------
class ClassifierFeatures(nn.Module):
    """genlab's Classifier.features as a torchmetrics feature module: float32 network, float64 output
    (as genlab's FeatureExtractor); stays in eval mode, like torchmetrics' NoTrainInceptionV3."""

    def __init__(self, net: Classifier, keep: bool = False):
        super().__init__()
        self.net = copy.deepcopy(net).eval()
        self.num_features = self.net.feature_dim
        self.keep = keep
        self.outputs: list[torch.Tensor] = []

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # same memory layout as genlab's FeatureExtractor feeds the network (standard strides)
        f = self.net.features(x.clone(memory_format=torch.contiguous_format)).double()
        if self.keep:
            self.outputs.append(f)
        return f


class GivenFeatures(nn.Module):
    """Identity: torchmetrics gets precomputed features [N, D] as its 'images'."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def tm_fid(module: nn.Module, real: torch.Tensor, fake: torch.Tensor, in_shape, batch: int | None = BATCH) -> float:
    """torchmetrics FrechetInceptionDistance(feature=module) of real vs fake, fed in batches."""
    m = FrechetInceptionDistance(feature=module, normalize=True, input_img_size=tuple(in_shape))
    for x, is_real in ((real, True), (fake, False)):
        step = batch or len(x)
        for i in range(0, len(x), step):
            m.update(x[i:i + step], real=is_real)
    return float(m.compute())


# -- references ------------------------------------------------------------------------------------
def fid_eigh_reference(f1, f2) -> float:
    """||mu1 - mu2||^2 + Tr S1 + Tr S2 - 2 Tr (S1^1/2 S2 S1^1/2)^1/2, all symmetric eigh in float64."""
    mu1, s1 = (t.numpy() for t in gaussian_stats(f1))
    mu2, s2 = (t.numpy() for t in gaussian_stats(f2))
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


def peer_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints "Num real: ... Num fake: ..."
        out = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {key: float(v) for key, v in out.items()}


def exact_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """Reference with exact tie semantics: distances by direct differences sqrt(sum (a - b)^2)
    (torch.cdist without the matmul expansion), so an exact copy is at distance exactly 0 and the
    distance of a pair does not depend on which matrix it sits in; open balls as compute_prdc."""
    x, y = torch.from_numpy(np.asarray(real, np.float64)), torch.from_numpy(np.asarray(fake, np.float64))

    def cd(a, b):
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    rx = cd(x, x).kthvalue(k + 1, dim=1).values
    ry = cd(y, y).kthvalue(k + 1, dim=1).values
    d = cd(x, y)
    inside = d < rx[:, None]
    return {"precision": float(inside.any(0).double().mean()), "recall": float((d < ry[None, :]).any(1).double().mean()),
            "density": float(inside.sum().double() / (k * len(y))), "coverage": float(inside.any(1).double().mean())}


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn, repeats: int, warmup: bool = False):
    """Best wall time of `repeats` calls (after one untimed call if `warmup`), last output, all times."""
    if warmup:
        fn()
    times, out = [], None
    for _ in range(repeats):
        t, out = _timed(fn)
        times.append(t)
    return min(times), out, times


def race(fns: dict, repeats: int, warmup: bool = False) -> tuple[dict, dict, dict]:
    """Best wall time of each function over `repeats` rounds, the functions interleaved within a
    round (so background load hits all alike); one untimed call of each first if `warmup`."""
    if warmup:
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    outs = {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t, outs[k] = _timed(fn)
            times[k].append(t)
    return {k: min(v) for k, v in times.items()}, outs, times


# -- data ------------------------------------------------------------------------------------------
def blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 binomial blur ([1,2,1]/4 outer itself), edge-replicated."""
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :] / 16).to(x.dtype)[None, None]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)


def digit_sets(seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    ds = load_dataset("digits")
    g = torch.Generator().manual_seed(seed)
    noisy = (ds.test + 0.2 * torch.randn(ds.test.shape, generator=g)).clamp_(0, 1)
    fakes = {"digits test (360)": ds.test,
             "test + noise s=0.2": noisy,
             "test, 3x3 blur": blur(ds.test)}
    return ds.train, fakes


def images_28(n: int, seed: int) -> tuple[torch.Tensor, str]:
    """n 28x28 images in [0, 1]: MNIST test images if the files are found, else upsampled digits."""
    try:
        x = load_dataset("mnist").test
        src = "MNIST test images"
    except Exception as e:  # no GENLAB_DATA_DIR / files: timing does not depend on pixel values
        ds = load_dataset("digits")
        x = F.interpolate(torch.cat([ds.train, ds.test]), size=(28, 28), mode="bilinear", align_corners=False)
        src = f"digits upsampled to 28x28 (MNIST not found: {type(e).__name__})"
    return tile(x, n, seed), src


def tile(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n images: x repeated as needed, with small noise so that no two repeats are identical."""
    reps = math.ceil(n / len(x))
    y = x.repeat(reps, *([1] * (x.ndim - 1)))[:n].clone()
    if reps > 1:
        g = torch.Generator().manual_seed(seed)
        y.add_(0.02 * torch.randn(y.shape, generator=g)).clamp_(0, 1)
    return y.contiguous()


def extractor_28() -> tuple[FeatureExtractor, str]:
    if weights_path("mnist").is_file():
        return shipped_extractor("mnist"), "shipped mnist classifier"
    state, sha, _ = _load_shipped("digits")
    net = Classifier((1, 28, 28))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return (FeatureExtractor(net, "digits-weights-at-28x28", dim=net.feature_dim, input_shape=(1, 28, 28)),
            "mnist.safetensors missing: the shipped Classifier architecture at 28x28 with the digits weights")


# -- the three parts -------------------------------------------------------------------------------
def fid_agreement(seed: int) -> list[dict]:
    ext = shipped_extractor("digits")
    real, fakes = digit_sets(seed)
    f_real = ext(real)
    rows = []
    for name, x in fakes.items():
        f_fake = ext(x)
        g = fid_from_features(f_real, f_fake)
        wrapped = ClassifierFeatures(ext.module, keep=True)
        t_img = tm_fid(wrapped, real, x, (1, 8, 8))
        tm_feats = torch.cat(wrapped.outputs)
        feat_diff = float((tm_feats - torch.cat([f_real, f_fake])).abs().max())
        t_feat = tm_fid(GivenFeatures(ext.dim), f_real, f_fake, (ext.dim,), batch=None)
        ref = fid_eigh_reference(f_real, f_fake)
        rows.append({"real": f"digits train ({len(real)})", "fake": name, "n_real": len(real), "n_fake": len(x),
                     "feature_dim": ext.dim, "genlab": g, "torchmetrics_images": t_img,
                     "torchmetrics_features": t_feat, "eigh_reference": ref,
                     "rel_diff_images": rel(g, t_img), "rel_diff_features": rel(g, t_feat),
                     "rel_diff_genlab_vs_reference": rel(g, ref), "rel_diff_torchmetrics_vs_reference": rel(t_img, ref),
                     "max_abs_feature_diff": feat_diff,
                     "pass": rel(g, t_img) <= FID_TOL and rel(g, t_feat) <= FID_TOL})
    return rows


def prdc_agreement(seed: int) -> list[dict]:
    ext = shipped_extractor("digits")
    real, fakes = digit_sets(seed)
    fr = ext(real).numpy()
    sets = {name: (fr, ext(x).numpy()) for name, x in fakes.items()}
    # ties: integer-valued 3-D features, so many real-fake distances equal a k-NN radius exactly
    rng = np.random.RandomState(seed)
    ties_real = np.round(rng.standard_normal((1000, 3)) * 1.5)
    ties_fake = np.round(rng.standard_normal((1000, 3)) * 1.5 + 0.3)
    sets["TIES: integer features (1000 v 1000, D=3)"] = (ties_real, ties_fake)
    # exact copies (mode collapse, memorised training points): ties decided by rounding
    real = rng.standard_normal((500, 32))
    collapsed = np.concatenate([np.repeat(rng.standard_normal((20, 32)), 25, axis=0), real[:50]])
    sets["COPIES: N(0,I) 500x32; fake 20x25 + 50 reals"] = (real, collapsed)
    sets["COPIES: reals = 100 points x8; same fake"] = (np.repeat(real[:100], 8, axis=0), collapsed)
    rows = []
    for name, (r, f) in sets.items():
        g5 = prdc(r, f, k=5)
        p5 = peer_prdc(r, f, 5)
        e5 = exact_prdc(r, f, 5)
        p5_32 = peer_prdc(r.astype(np.float32), f.astype(np.float32), 5)
        g3 = precision_recall(r, f, k=3)
        g3_open = prdc(r, f, k=3)
        p3 = peer_prdc(r, f, 3)
        keys = ("precision", "recall", "density", "coverage")
        rows.append({"set": name, "n_real": len(r), "n_fake": len(f), "dim": r.shape[1],
                     "natural": not name.startswith(("TIES", "COPIES")),
                     "k5_genlab": g5, "k5_prdc_float64": p5, "k5_prdc_float32": p5_32, "k5_exact_ties": e5,
                     "k5_max_abs_diff_genlab_vs_exact": max(abs(g5[q] - e5[q]) for q in keys),
                     "k5_max_abs_diff_prdc_vs_exact": max(abs(p5[q] - e5[q]) for q in keys),
                     "k5_max_abs_diff": max(abs(g5[q] - p5[q]) for q in keys),
                     "k5_max_abs_diff_float32": max(abs(g5[q] - p5_32[q]) for q in keys),
                     "k3_genlab_precision_recall_closed": g3,
                     "k3_genlab_prdc_open": {q: g3_open[q] for q in ("precision", "recall")},
                     "k3_prdc": {q: p3[q] for q in ("precision", "recall")},
                     "k3_max_abs_diff_closed": max(abs(g3[q] - p3[q]) for q in ("precision", "recall")),
                     "k3_max_abs_diff_open": max(abs(g3_open[q] - p3[q]) for q in ("precision", "recall"))})
    return rows


def timings(n: int, repeats: int, seed: int) -> list[dict]:
    """genlab vs peer, interleaved rounds, best of `repeats` each; all times kept in the rows."""
    rows = []

    def row(metric, dim, peer, best, times, agreement, **extra):
        rows.append({"metric": metric, "dim": dim, "n": n, "genlab_s": best["genlab"], "peer": peer,
                     "peer_s": best["peer"], "peer_over_genlab": best["peer"] / best["genlab"],
                     "agreement": agreement, "genlab_times": times["genlab"], "peer_times": times["peer"], **extra})

    for dim in (64, 128):
        gen = np.random.RandomState(seed + dim)
        real = gen.standard_normal((n, dim))
        fake = 0.9 * gen.standard_normal((n, dim)) + 0.1
        rt, ft = torch.from_numpy(real), torch.from_numpy(fake)
        r32, f32 = real.astype(np.float32), fake.astype(np.float32)

        best, out, times = race({"genlab": lambda: fid_from_features(real, fake),
                                 "peer": lambda: tm_fid(GivenFeatures(dim), rt, ft, (dim,), batch=None)},
                                repeats, warmup=True)
        row("Frechet distance", dim, "torchmetrics FID", best, times,
            f"rel diff {rel(out['genlab'], out['peer']):.1e}", genlab_value=out["genlab"], peer_value=out["peer"])

        best, out, times = race({"genlab": lambda: prdc(real, fake, k=5), "peer": lambda: peer_prdc(real, fake, 5),
                                 "peer32": lambda: peer_prdc(r32, f32, 5)}, repeats)
        g = out["genlab"]
        for key, label in (("peer", "prdc.compute_prdc float64"), ("peer32", "prdc.compute_prdc float32")):
            d = max(abs(g[q] - out[key][q]) for q in g)
            row("prdc k=5", dim, label, {"genlab": best["genlab"], "peer": best[key]},
                {"genlab": times["genlab"], "peer": times[key]}, f"max abs diff {d:.1e}",
                genlab_value=g, peer_value=out[key])

        best, out, times = race({"genlab": lambda: precision_recall(real, fake, k=3),
                                 "peer": lambda: peer_prdc(real, fake, 3)}, repeats)
        g = out["genlab"]
        d = max(abs(g[q] - out["peer"][q]) for q in g)
        row("precision/recall k=3", dim, "prdc.compute_prdc float64 (all 4)", best, times, f"max abs diff {d:.1e}",
            genlab_value=g, peer_value={q: out["peer"][q] for q in g})

    # feature extraction of n images: genlab features + gaussian_stats vs torchmetrics FID.update
    ext8 = shipped_extractor("digits")
    ds = load_dataset("digits")
    x8 = tile(torch.cat([ds.train, ds.test]), n, seed)
    x28, src28 = images_28(n, seed)
    ext28, net28 = extractor_28()
    for label, ext, x, src, net_desc in (("8x8", ext8, x8, "digits train+test, tiled with noise",
                                          "shipped digits classifier"), ("28x28", ext28, x28, src28, net28)):
        def peer(ext=ext, x=x):
            m = FrechetInceptionDistance(feature=ClassifierFeatures(ext.module), normalize=True,
                                         input_img_size=tuple(x.shape[1:]))
            with torch.no_grad():
                for i in range(0, len(x), BATCH):
                    m.update(x[i:i + BATCH], real=True)
            return m

        best, out, times = race({"genlab": lambda ext=ext, x=x: gaussian_stats(ext.features(x)), "peer": peer,
                                 "genlab_features": lambda ext=ext, x=x: ext.features(x)}, repeats, warmup=True)
        m = out["peer"]
        d = float((m.real_features_sum / m.real_features_num_samples - out["genlab"][0]).abs().max())
        row(f"extract {label} features", ext.dim, "torchmetrics FID.update", best, times,
            f"mean max abs diff {d:.1e}", genlab_features_only_s=best["genlab_features"],
            genlab_features_only_times=times["genlab_features"], images=src, network=net_desc)
    return rows


# -- output ----------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def extractors_info() -> dict:
    """Name and weights sha256 of the feature networks used (numbers depend on the weights)."""
    ext28, desc = extractor_28()
    return {"8x8": shipped_extractor("digits").info(), "28x28": {**ext28.info(), "note": desc}}


def _loadavg():
    """1/5/15-minute load averages (other work on the machine skews timings), None if unknown."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def versions() -> dict:
    out = {"torch": torch.__version__, "numpy": np.__version__}
    for p in ("scipy", "scikit-learn", "torchmetrics", "prdc", "genlab"):
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


def print_report(fid_rows, prdc_rows, time_rows) -> None:
    print("\n== Fréchet distance on digits features (shipped digits classifier, 128-D): genlab vs torchmetrics")
    print(f"{'fake set':<22} {'genlab':>14} {'tm (images)':>14} {'tm (features)':>14} {'eigh ref':>14} "
          f"{'rel(img)':>9} {'rel(feat)':>9} {'feat diff':>9} ok")
    for r in fid_rows:
        print(f"{r['fake']:<22} {r['genlab']:14.9f} {r['torchmetrics_images']:14.9f} {r['torchmetrics_features']:14.9f} "
              f"{r['eigh_reference']:14.9f} {r['rel_diff_images']:9.1e} {r['rel_diff_features']:9.1e} "
              f"{r['max_abs_feature_diff']:9.1e} {'yes' if r['pass'] else 'NO'}")
    print(f"(real: digits train, {fid_rows[0]['n_real']} images; requirement rel diff <= {FID_TOL:g})")

    print("\n== precision / recall / density / coverage, k=5: genlab prdc vs prdc.compute_prdc (same arrays)")
    print(f"{'set':<44} {'':>14} {'precision':>9} {'recall':>9} {'density':>9} {'coverage':>9}")
    for r in prdc_rows:
        for lab, v in (("genlab", r["k5_genlab"]), ("prdc float64", r["k5_prdc_float64"]),
                       ("prdc float32", r["k5_prdc_float32"]), ("exact ties", r["k5_exact_ties"])):
            print(f"{r['set'] if lab == 'genlab' else '':<44} {lab:>14} {v['precision']:9.4f} {v['recall']:9.4f} "
                  f"{v['density']:9.4f} {v['coverage']:9.4f}")
    print("(exact ties: distances by direct differences, so exact copies and tied pairs compare exactly;"
          " TIES / COPIES rows are constructed tie cases, not natural data)")
    print("\n== improved precision / recall, k=3: genlab precision_recall (closed balls d <= r) vs compute_prdc (open d < r)")
    print(f"{'set':<44} {'':>22} {'precision':>9} {'recall':>9}")
    for r in prdc_rows:
        for lab, v in (("genlab precision_recall", r["k3_genlab_precision_recall_closed"]),
                       ("genlab prdc(k=3) open", r["k3_genlab_prdc_open"]), ("prdc k=3", r["k3_prdc"])):
            print(f"{r['set'] if lab == 'genlab precision_recall' else '':<44} "
                  f"{lab:>22} {v['precision']:9.4f} {v['recall']:9.4f}")

    n = time_rows[0]["n"]
    print(f"\n== time, best of repeats, {n} vs {n} (Gaussian features; extraction: {n} images)")
    print(f"{'metric':<22} {'dim':>4} {'genlab s':>9} {'peer':<36} {'peer s':>9} {'peer/genlab':>11}  agreement")
    for r in time_rows:
        print(f"{r['metric']:<22} {r['dim']:>4} {r['genlab_s']:9.3f} {r['peer']:<36} {r['peer_s']:9.3f} "
              f"{r['peer_over_genlab']:11.2f}  {r['agreement']}")
    for r in time_rows:
        if "images" in r:
            print(f"  {r['metric']}: {r['images']}; network: {r['network']}; genlab features only "
                  f"{r['genlab_features_only_s']:.3f} s (genlab column = features + gaussian_stats)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=None, help="samples per side for the timings (default 10000)")
    p.add_argument("--repeats", type=int, default=3, help="wall times per measurement; the best is kept")
    p.add_argument("--json", default=None, help="write results here (default bench/results/metrics.json; "
                                                 "none with --quick unless given)")
    p.add_argument("--quick", action="store_true", help="smoke test: n = 1000")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    n = a.n or (1000 if a.quick else 10_000)
    json_path = a.json or (None if a.quick else str(ROOT / "bench/results/metrics.json"))
    load_start = _loadavg()
    t0 = time.perf_counter()
    fid_rows = fid_agreement(a.seed)
    prdc_rows = prdc_agreement(a.seed)
    time_rows = timings(n, a.repeats, a.seed)
    print_report(fid_rows, prdc_rows, time_rows)
    # agreement requirement on natural data (the digits sets); TIES / COPIES rows are diagnostics
    ok = all(r["pass"] for r in fid_rows) and all(r["k5_max_abs_diff"] < 5e-5 for r in prdc_rows if r["natural"])
    total = time.perf_counter() - t0
    print(f"\nFréchet within {FID_TOL:g} and prdc k=5 equal to 4 decimals: {'yes' if ok else 'NO'}; "
          f"total {total:.0f} s")
    if json_path:
        out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join([Path(sys.executable).name, *sys.argv]), "n": n, "repeats": a.repeats,
               "seed": a.seed, "versions": versions(),
               "machine": {**machine(), "loadavg_start": load_start, "loadavg_end": _loadavg()},
               "extractors": extractors_info(), "fid_tolerance": FID_TOL,
               "fid_agreement": fid_rows, "prdc_agreement": prdc_rows, "timings": time_rows,
               "all_agree": ok, "total_seconds": total}
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
