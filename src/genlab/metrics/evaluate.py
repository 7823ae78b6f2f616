"""`evaluate`: every metric a model and its data support, under one stated protocol.

Protocol (stamped on every result): generated samples are compared with the
reference split (test by default), `n` of each, drawn with `seed`; features come
from the named extractor (weights hashed), always in eval mode. Beside each
metric stands the same metric for real data: `n` training examples against the
same reference — the "as good as real data" floor.

Metrics register themselves in `METRICS`, so a family's issue can add its own
(e.g. `modes` for the 2-D mixtures) without touching this file's logic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Optional

import torch

from .._version import __version__
from ..data.spec import Dataset
from ..errors import ConfigError, unknown_name
from .balance import class_balance
from .features import FeatureExtractor, extractor_for
from .fid import frechet_distance_report, gaussian_stats, kid_report
from .likelihood import bits_per_dim
from .prdc import prdc, precision_recall
from .toy import kl_estimate, mmd, sliced_wasserstein

#: bumped when a metric's meaning changes, so cached results of the old meaning are not reused
#: (2: bits/dim of lattice densities dequantised at evaluation; conditions of paired data;
#: 3: psnr, ssim and diversity for translation)
PROTOCOL_VERSION = 3
LOW_DIM = 16  # vector data up to this dimension gets MMD and sliced Wasserstein in data space


@dataclass
class Metric:
    """`needs(ctx) -> None or the reason it does not apply`; `compute(ctx, x) -> {name: value}` for a
    sample `x` (generated or real); `reference` says whether the real-data row makes sense."""

    name: str
    needs: Callable
    compute: Callable
    reference: bool = True
    description: str = ""


METRICS: dict[str, Metric] = {}


def register_metric(name: str, needs: Callable, reference: bool = True, description: str = ""):
    def wrap(fn):
        METRICS[name] = Metric(name, needs, fn, reference, description)
        return fn
    return wrap


class Context:
    """What the metrics share: the model, data, reference sample, features and the protocol."""

    def __init__(self, model, data: Dataset, n: int, seed: int, split: str, extractor: FeatureExtractor):
        self.model, self.data, self.n, self.seed, self.split = model, data, n, seed, split
        self.extractor = extractor
        g = torch.Generator().manual_seed(seed)
        ref, ref_y = (data.test, data.test_labels) if split == "test" else (data.train, data.train_labels)
        idx = torch.randperm(len(ref), generator=g)[:n]
        self.reference = ref[idx]
        self.reference_labels = None if ref_y is None else ref_y[idx]
        # what a conditional model is given for the reference examples: their labels or tensor conditions
        cond = data.conditions(split, model.condition_kind) if model.condition_kind != "none" else None
        self.reference_conditions = None if cond is None else cond[idx]
        self._feats: dict = {}  # features and k-NN results per sample, computed once
        self.notes: dict = {}

    def _cached(self, key, fn):
        if key not in self._feats:
            self._feats[key] = fn()
        return self._feats[key]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._cached(("features", id(x)), lambda: self.extractor.features(x))

    def precision_recall(self, x) -> dict:
        """Improved precision/recall (k=3) of x against the reference, computed once per sample."""
        return self._cached(("pr", id(x)), lambda: precision_recall(self.features(self.reference),
                                                                     self.features(x), k=3))

    def density_coverage(self, x) -> dict:
        return self._cached(("dc", id(x)), lambda: prdc(self.features(self.reference), self.features(x), k=5))


# -- the metrics -------------------------------------------------------------------------------
def _always(ctx):
    return None


@register_metric("fid", _always, description="Frechet distance between Gaussian fits of features")
def _fid(ctx, x):
    mu1, s1 = gaussian_stats(ctx.features(x))
    mu2, s2 = gaussian_stats(ctx.features(ctx.reference))
    rep = frechet_distance_report(mu1, s1, mu2, s2)
    if rep.get("offset_applied"):
        ctx.notes["fid"] = f"sqrtm needed an eps*I offset (max imaginary part {rep.get('max_imag', 0):.2g})"
    return {"fid": rep["value"]}


@register_metric("kid", _always, description="kernel (polynomial, unbiased MMD^2) distance of features")
def _kid(ctx, x):
    # subsets of half the sample (at most 1000, the usual size) so that the spread over subsets means something
    size = min(1000, max(2, min(len(x), len(ctx.reference)) // 2))
    rep = kid_report(ctx.features(x), ctx.features(ctx.reference), subset_size=size, seed=ctx.seed)
    ctx.notes["kid"] = f"{rep['subsets']} subsets of {rep['subset_size']}"
    return {"kid": rep["mean"], "kid_std": rep["std"]}


@register_metric("precision", _always, description="improved precision (Kynkaanniemi et al. 2019, k=3)")
def _precision(ctx, x):
    return {"precision": ctx.precision_recall(x)["precision"]}


@register_metric("recall", _always, description="improved recall (Kynkaanniemi et al. 2019, k=3)")
def _recall(ctx, x):
    return {"recall": ctx.precision_recall(x)["recall"]}


@register_metric("density", _always, description="density (Naeem et al. 2020, k=5)")
def _density(ctx, x):
    return {"density": ctx.density_coverage(x)["density"]}


@register_metric("coverage", _always, description="coverage (Naeem et al. 2020, k=5)")
def _coverage(ctx, x):
    return {"coverage": ctx.density_coverage(x)["coverage"]}


def _needs_translation(ctx):
    """Outputs against targets: a model conditioned on an input per example, image data, and a
    reference split whose inputs and targets correspond."""
    if ctx.model.condition_kind != "tensor":
        return "only for models conditioned on an input per example (image-to-image, paired data)"
    if ctx.data.spec.kind != "image":
        return "only for image data"
    if ctx.data.spec.unpaired and getattr(ctx, "split", "test") == "train":
        return "the training split of unpaired data has no targets for its inputs"
    if not ctx.data.spec.paired_test:
        return "the test split is unpaired too: its inputs have no targets"
    return None


def _needs_image_condition(ctx):
    if ctx.model.condition_kind != "tensor" or ctx.data.spec.kind != "image":
        return "only for image models conditioned on an input per example (image-to-image)"
    return None


@register_metric("psnr", _needs_translation, reference=False,
                 description="peak signal-to-noise ratio of outputs vs targets (dB, scikit-image, mean per example)")
def _psnr(ctx, x):
    from .translation import psnr_ssim

    return {"psnr": ctx._cached(("psnr_ssim", id(x)), lambda: psnr_ssim(x.cpu(), ctx.reference))["psnr"]}


@register_metric("ssim", _needs_translation, reference=False,
                 description="structural similarity of outputs vs targets (scikit-image, mean per example)")
def _ssim(ctx, x):
    from .translation import psnr_ssim

    return {"ssim": ctx._cached(("psnr_ssim", id(x)), lambda: psnr_ssim(x.cpu(), ctx.reference))["ssim"]}


DIVERSITY_INPUTS, DIVERSITY_DRAWS = 16, 4  # inputs, outputs per input for the diversity metric


@register_metric("diversity", _needs_image_condition, reference=False,
                 description=f"mean pairwise feature distance of {DIVERSITY_DRAWS} outputs for one input "
                             f"({DIVERSITY_INPUTS} inputs; 0: a deterministic translator)")
def _diversity(ctx, x):
    from .translation import diversity

    m = min(DIVERSITY_INPUTS, len(ctx.reference_conditions))
    cond = ctx.reference_conditions[:m].repeat_interleave(DIVERSITY_DRAWS, 0)
    outs = generate(ctx.model, len(cond), ctx.seed + 2, cond, **getattr(ctx, "sample_options", {}))
    ctx.notes["diversity"] = (f"{DIVERSITY_DRAWS} outputs for each of the first {m} reference inputs, "
                              f"distances in {ctx.extractor.name} features")
    return {"diversity": diversity(ctx.extractor.features(outs), DIVERSITY_DRAWS)}


def _needs_reverse(ctx):
    if not getattr(ctx.model, "translates_back", False):
        return "only for models that translate both ways (cyclegan: B -> A)"
    spec = ctx.data.spec
    if spec.condition_shape is not None and tuple(spec.condition_shape) != tuple(spec.shape):
        return "the inputs (A) and targets (B) differ in shape, so one feature extractor cannot score both"
    return _needs_image_condition(ctx)


@register_metric("reverse", _needs_reverse, reference=False,
                 description="B -> A translation of the reference targets: Frechet distance of the outputs to "
                             "the real inputs (A) in the same features; PSNR/SSIM against them on paired test splits")
def _reverse(ctx, x):
    """The way back, scored like the way there: F(b_i) for the reference targets b_i against the real
    A images of the same examples (a distribution in features: fid_ba; on a paired test split also the
    targets a_i: psnr_ba, ssim_ba)."""
    from .translation import psnr_ssim

    a = ctx.reference_conditions
    back = generate(ctx.model, len(ctx.reference), ctx.seed + 3, ctx.reference, direction="BA")
    mu1, s1 = gaussian_stats(ctx.extractor.features(back))
    mu2, s2 = gaussian_stats(ctx.extractor.features(a))
    out = {"fid_ba": frechet_distance_report(mu1, s1, mu2, s2)["value"]}
    if ctx.data.spec.paired_test and back.shape == a.shape:
        out.update({f"{k}_ba": v for k, v in psnr_ssim(back, a.cpu()).items()})
    ctx.notes["reverse"] = (f"B -> A: the {len(back)} reference targets translated back, against their inputs, "
                            f"in {ctx.extractor.name} features")
    return out


def _needs_classifier(ctx):
    if not ctx.extractor.has_classifier:
        return f"feature extractor '{ctx.extractor.name}' has no classifier"
    if ctx.data.train_labels is None:
        return "the data has no labels"
    return None


@register_metric("balance", _needs_classifier,
                 description="class histogram of samples by the classifier: KL from data, classes dropped")
def _balance(ctx, x):
    k = ctx.data.spec.num_classes
    freq = torch.bincount(ctx.data.train_labels, minlength=k).double()
    rep = class_balance(ctx.extractor.probs(x), freq / freq.sum())
    out = {"balance_kl": rep["kl"], "classes_dropped": rep["classes_dropped"],
           "confidence": rep["mean_confidence"]}
    # a conditional model's sample i answers reference example i's condition, so that example's
    # label is the class the sample should have (a class-conditional draw, a super-resolved digit)
    y = ctx.sample_labels if x is ctx.generated else ctx.reference_labels if x is ctx.reference else None
    if y is not None and (x is not ctx.generated or ctx.model.conditional):
        out["class_accuracy"] = float((ctx.extractor.predict(x) == y.cpu()).double().mean())
    return out


def _needs_log_prob(ctx):
    return None if hasattr(ctx.model, "log_prob") else f"'{ctx.model.family}' has no likelihood (no log_prob)"


# What a model's log_prob is over. A family says it with a `likelihood_support` attribute; where it
# does not, `likelihood_support(model)` derives it from the attributes families already have.
SUPPORTS = {
    "dequantized": "density of dequantised data",   # flows, fm: y = (k + u) / L on [0, 1)^D (ddpm: P(x) spread over its bin)
    "discrete": "probability of the discrete values",  # Bernoulli pixels, discretised decoders
    "lattice": "density at the lattice points",      # a density evaluated at x = k / (L - 1): pca, gmm, Gaussian VAE
    "continuous": "density",                         # continuous data (vectors, images without levels)
}
LATTICE_DRAWS = 8  # uniform draws per example when a lattice density is dequantised at evaluation


def likelihood_support(model) -> str:
    """One of SUPPORTS: the model's `likelihood_support` where it states one, else derived:
    discrete_likelihood -> "discrete"; data without levels (vectors, continuous images) ->
    "continuous"; a Gaussian decoder (likelihood="gaussian") or dequantize=false on quantised
    images -> "lattice"; otherwise "dequantized" (flows, fm, ddpm)."""
    s = getattr(model, "likelihood_support", None)
    if s is not None:
        if s not in SUPPORTS:
            raise ConfigError(f"'{model.family}': likelihood_support must be one of {', '.join(SUPPORTS)}, not {s!r}")
        return s
    spec = model.spec
    if getattr(model, "discrete_likelihood", False):
        return "discrete"
    if spec.kind != "image" or not spec.levels:
        return "continuous"
    if getattr(model, "likelihood", None) == "gaussian" or getattr(model, "dequantize", True) is False:
        return "lattice"
    return "dequantized"


@torch.no_grad()
def dequantized_log_prob(model, x: torch.Tensor, y: Optional[torch.Tensor], levels: int, draws: int = LATTICE_DRAWS,
                         generator: Optional[torch.Generator] = None, batch_size: int = 500, bar=None) -> torch.Tensor:
    """[draws, N] log-densities of dequantised data, for a model whose log_prob is a density at the
    lattice points x = k / (L - 1) of quantised images (L = levels):

        log p_y(y) = log p(z) + D log(L / (L - 1)),   z = (k + u - 1/2) / (L - 1),  u ~ U[0, 1)^D

    z is the dequantised point y = (k + u) / L mapped to the model's scale (the bin of width
    1 / (L - 1) centred on the lattice point k / (L - 1)); the second term is the log-Jacobian
    of y -> z. The mean over draws estimates E_u log p_y((k + u) / L), so that
    bits_per_dim(-mean, D, n_levels=L) bounds the discrete code length from above, as for the flows."""
    k = torch.round(x * (levels - 1)).clamp(0, levels - 1)
    jac = x[0].numel() * math.log(levels / (levels - 1))
    out = []
    for _ in range(draws):
        z = (k + torch.rand(k.shape, generator=generator) - 0.5) / (levels - 1)
        out.append(torch.cat([model.log_prob(b.to(model.device), None if y is None else yb.to(model.device)).cpu()
                              for b, yb in zip(z.split(batch_size), (y if y is not None else z).split(batch_size))]))
        if bar is not None:  # the likelihood step's progress bar (evaluate's nll)
            bar.update(len(x))
    return torch.stack(out).double() + jac


def nll_note(kind: Optional[str], support: str) -> str:
    """The nll metric's note: "<kind> (<support>): <what that is>"; `parse_nll_note` reads it back."""
    return f"{kind} ({support}): {SUPPORTS[support]}"


def parse_nll_note(note: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(kind, support) from an nll note (support "density" for notes written before supports)."""
    import re

    m = re.match(r"\s*(\w+) \((\w+)\)", note or "")
    return (m.group(1), m.group(2)) if m else (None, None)


@register_metric("nll", _needs_log_prob, reference=False,
                 description="negative log-likelihood of the reference split (nats) and bits/dim of the "
                             "discrete data (an upper bound on its code length)")
@torch.no_grad()
def _nll(ctx, x):
    """nll: -mean log_prob in nats, as the model gives it. bpd, for quantised images: bits per dim
    of the discrete data, an upper bound on its code length whatever the support (lattice densities
    are dequantised here, with bpd_se their Monte Carlo standard error over the uniform draws);
    for a discrete likelihood only when the data lie on its grid (Bernoulli: binary data; pixelcnn:
    its levels)."""
    from tqdm.auto import tqdm

    model, ref = ctx.model, ctx.reference
    y = ctx.reference_conditions
    m = getattr(ctx, "nll_examples", None) or len(ref)  # a time limit scores the first m (evaluate's nll_seconds)
    ref, y = ref[:m], None if y is None else y[:m]
    support = likelihood_support(model)
    passes = 1 + LATTICE_DRAWS if support == "lattice" and ctx.data.spec.levels else 1
    bar = tqdm(total=m * passes, desc="likelihood", unit="ex", leave=False, dynamic_ncols=True,
               disable=not getattr(ctx, "progress", False))
    lp = []
    probe = getattr(ctx, "nll_probe", None)  # the time-limit probe's log-probs of these very examples
    if probe is not None and len(probe) == m:
        lp.append(probe)
        bar.update(m)
    else:
        for b, yb in zip(ref.split(NLL_BATCH), (y if y is not None else ref).split(NLL_BATCH)):
            lp.append(model.log_prob(b.to(model.device), None if y is None else yb.to(model.device)).cpu())
            bar.update(len(b))
    lp = torch.cat(lp)
    out = {"nll": float(-lp.mean())}
    spec = ctx.data.spec
    if support == "discrete":  # a code length only for data on the likelihood's grid (Bernoulli: binary)
        k = ref * (getattr(model, "discrete_levels", 2) - 1)
        if bool(((k - k.round()).abs() < 1e-4).all()):
            out["bpd"] = bits_per_dim(out["nll"], spec.dim, n_levels=None)
    elif support == "lattice" and spec.levels:
        g = torch.Generator().manual_seed(ctx.seed)
        lpd = dequantized_log_prob(model, ref, y, spec.levels, LATTICE_DRAWS, g, bar=bar)     # [S, N]
        S, N = lpd.shape
        out["bpd"] = bits_per_dim(float(-lpd.mean()), spec.dim, n_levels=spec.levels)
        se = math.sqrt(float(lpd.var(0).mean()) / (S * N))  # Monte Carlo error of the mean over draws
        out["bpd_se"] = se / (spec.dim * math.log(2))
    elif spec.levels and support == "dequantized":
        out["bpd"] = bits_per_dim(out["nll"], spec.dim, n_levels=spec.levels)
    ctx.notes["nll"] = nll_note(model.likelihood_kind, support) + (
        f"; bits/dim dequantised at evaluation ({LATTICE_DRAWS} uniform draws per example, bpd_se = their "
        "Monte Carlo standard error)" if "bpd_se" in out else "")
    bar.close()
    if ctx.data.log_density is not None:
        true_lp = ctx.data.log_density(ref)
        out["kl"] = kl_estimate(lp, true_lp)
        out["true_entropy"] = float(-true_lp.mean())
    return out


def _needs_low_dim(ctx):
    spec = ctx.data.spec
    return None if spec.kind == "vector" and spec.dim <= LOW_DIM else f"only for vector data of dimension <= {LOW_DIM}"


@register_metric("mmd", _needs_low_dim, description="unbiased MMD^2, sum of RBF kernels, in data space")
def _mmd(ctx, x):
    return {"mmd": mmd(ctx.reference, x.cpu())}


@register_metric("swd", _needs_low_dim, description="sliced Wasserstein-2 distance in data space")
def _swd(ctx, x):
    return {"swd": sliced_wasserstein(ctx.reference, x.cpu(), seed=ctx.seed)}


def _needs_mixture(ctx):
    from ..data.toy2d import _CENTERS

    name = (ctx.data.spec.source or {}).get("name")
    return None if name in _CENTERS else "only for the 2-D Gaussian mixtures (8gaussians, 25gaussians)"


@register_metric("modes", _needs_mixture,
                 description="PacGAN mode coverage: modes captured, % high quality (3 sigma), reverse KL")
def _modes(ctx, x):
    from ..data.toy2d import mode_centers
    from .modes import N_SAMPLES, mode_coverage

    src = ctx.data.spec.source
    x = x[:N_SAMPLES]
    if len(x) < N_SAMPLES:
        ctx.notes["modes"] = f"{len(x)} samples (PacGAN's protocol uses {N_SAMPLES})"
    rep = mode_coverage(x, mode_centers(src["name"]), src["options"]["sigma"])
    return {"modes": rep["modes"], "high_quality": rep["high_quality"], "mode_kl": rep["reverse_kl"]}


# -- the protocol ------------------------------------------------------------------------------
@torch.no_grad()
def generate(model, n: int, seed: int, conditions: Optional[torch.Tensor] = None, batch_size: int = 500,
             progress: bool = False, **sample_options) -> torch.Tensor:
    """n samples in batches from a seeded generator; `conditions` (labels or a tensor per
    sample) for conditional models. `progress`: a bar over the batches, with its time estimate
    (sampling n examples from a diffusion model is most of an evaluation's time)."""
    from tqdm.auto import tqdm

    model.eval()
    g = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    starts = range(0, n, batch_size)
    for i in tqdm(starts, desc=f"sampling {n}", unit="batch", disable=not progress or len(starts) < 2, leave=False):
        y = None if conditions is None else conditions[i:i + batch_size].to(model.device)
        out.append(model.sample(min(batch_size, n - i), y=y, generator=g, **sample_options).cpu())
    return torch.cat(out)


NLL_BATCH = 100       # examples per log_prob call in the nll metric (the progress bar moves per batch)
NLL_PROBE = 8         # examples timed to predict the likelihood's cost
EVAL_NLL_SECONDS = 60.0  # `genlab eval`'s default time limit of the likelihood step (compare: 20 s per family)


def nll_subset(model, x: torch.Tensor, y: Optional[torch.Tensor], n: int, limit: Optional[float],
               passes: int = 1, batch: int = NLL_BATCH, keep: Optional[dict] = None) -> int:
    """How many of n reference examples (x, y: at least the first 32 of them) the likelihood metric
    can score within `limit` seconds, predicted from timing log_prob on a few of them (n itself when
    it fits, or when there is no limit).

    Cost model: a fixed cost per call (e.g. building a covariance) plus a cost per example,
    separated by timing 8 and 32 examples; a family slow already on 8 is taken as per-example, and
    one whose first 8 took the whole limit scores those 8 (a probability-flow likelihood of a barely
    trained model can take 30 s for 8 digits: timing it twice would double that; `keep["probe"]`
    then holds their log-probabilities, for the metric to use rather than compute them again).
    `passes`: how many times each example is scored (a lattice density dequantised at evaluation:
    1 + LATTICE_DRAWS); the prediction counts every pass."""
    if not limit or n <= NLL_PROBE:
        return n
    limit = limit / passes
    x = x[:32].to(model.device)
    y = None if y is None else y[:32].to(model.device)

    @torch.no_grad()
    def timed(k: int, store: bool = False) -> float:
        t = time.perf_counter()
        lp = model.log_prob(x[:k], None if y is None else y[:k])
        if store and keep is not None:
            keep["probe"] = lp.detach().cpu()
        return time.perf_counter() - t

    first = timed(NLL_PROBE, store=True)  # includes one-off costs
    if first * math.ceil(n / NLL_PROBE) <= limit:
        return n
    if first >= limit:  # the fewest examples scored already take the whole budget: no second timing
        return NLL_PROBE
    t8 = timed(NLL_PROBE)
    if 4 * t8 > limit / 4 or len(x) < 32:  # timing 32 would cost a quarter of the budget: per-example cost
        per, fixed = t8 / NLL_PROBE, 0.0
    else:
        t32 = timed(32)
        per = max((t32 - t8) / (32 - NLL_PROBE), 1e-9)
        fixed = max(t8 - NLL_PROBE * per, 0.0)

    def cost(m: int) -> float:
        return fixed * math.ceil(m / batch) + per * m

    if cost(n) <= limit:
        return n
    return min(n, max(NLL_PROBE, int((limit - fixed) / per)))


def supported_metrics(model, data: Dataset, extractor: Optional[FeatureExtractor] = None) -> dict[str, Optional[str]]:
    """{metric: None if supported else the reason it is not}."""
    ctx = SimpleNamespace(model=model, data=data, extractor=extractor or extractor_for(data.spec))
    return {name: m.needs(ctx) for name, m in METRICS.items()}


def evaluate(model, data: Dataset, metrics=None, n: Optional[int] = None, seed: int = 0, split: str = "test",
             features=None, reference: bool = True, progress: bool = False, nll_seconds: Optional[float] = None,
             **sample_options) -> dict:
    """Evaluate `model` on `data`: every supported metric by default, or those named.

    `nll_seconds`: a time limit for the likelihood metric, whose cost varies by orders of magnitude
    between families (a diffusion bound needs all T network evaluations per example). Where scoring
    the n reference examples would take longer, it scores the first m of them (the same seeded
    permutation: an unbiased estimate of the same mean with a larger standard error); the result then
    holds "nll_examples": m and "nll_seconds", and the nll note says so. None or 0: no limit.

    Returns {"metrics": {...}, "reference": {...real train vs reference...}, "protocol": {...},
    "notes": {...}, "seconds": {...}}. Unknown or unsupported metrics and an `n` larger
    than the reference split raise ConfigError with the reason.
    """
    from tqdm.auto import tqdm

    if split not in ("test", "train"):
        raise ConfigError(f"split must be test or train, not '{split}'")
    extractor = features if isinstance(features, FeatureExtractor) else extractor_for(data.spec, features)
    support = supported_metrics(model, data, extractor)
    if metrics is None:
        names = [m for m, why in support.items() if why is None]
    else:
        names = list(dict.fromkeys(metrics))
        for m in names:
            if m not in METRICS:
                raise unknown_name("metric", m, METRICS)
            if support[m] is not None:
                raise ConfigError(f"metric '{m}' does not apply to this model and data: {support[m]}")
    ref_split = data.test if split == "test" else data.train
    n = len(ref_split) if n is None else int(n)
    if not 1 <= n <= len(ref_split):
        raise ConfigError(f"n={n} is larger than the {len(ref_split)} examples of the {split} split"
                          if n > 0 else "n must be positive")
    if nll_seconds is not None and not (nll_seconds >= 0 and math.isfinite(nll_seconds)):
        raise ConfigError(f"nll_seconds must be a non-negative number of seconds, got {nll_seconds!r}")
    if hasattr(model, "check_sample_options"):  # baselines (bicubic upsampling, ...) are plain modules
        model.check_sample_options(sample_options, "samples")
    ctx = Context(model, data, n, seed, split, extractor)
    ctx.sample_options = dict(sample_options)
    ctx.progress = progress
    probe_seconds = 0.0  # the time-limit probe's time: part of the likelihood's time on the page
    if "nll" in names and nll_seconds:
        passes = 1 + LATTICE_DRAWS if likelihood_support(model) == "lattice" and data.spec.levels else 1
        probe, t = {}, time.perf_counter()
        ctx.nll_examples = nll_subset(model, ctx.reference, ctx.reference_conditions, n, nll_seconds, passes,
                                      keep=probe)
        ctx.nll_probe = probe.get("probe")  # used by the metric when it scores just those examples
        probe_seconds = time.perf_counter() - t
    t0 = time.perf_counter()
    # a conditional model samples with the reference examples' conditions: class labels in the
    # data's proportions, or the test split's tensor conditions (the inputs of a paired task)
    # (not on a test split without pairs: there example i's label says nothing of output i)
    ctx.sample_labels = ctx.reference_labels if model.conditional and data.spec.paired_test else None
    ctx.generated = generate(model, n, seed, ctx.reference_conditions, progress=progress, **sample_options)
    t_sample = time.perf_counter() - t0
    other = data.train if split == "test" else data.test
    n_real = min(n, len(other))
    real = other[torch.randperm(len(other), generator=torch.Generator().manual_seed(seed + 1))[:n_real]]
    results, ref_results, seconds = {}, {}, {"sampling": round(t_sample, 3)}
    bar = tqdm(names, desc="evaluate", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        t = time.perf_counter()
        results.update(METRICS[name].compute(ctx, ctx.generated))
        if reference and METRICS[name].reference:
            ref_results.update(METRICS[name].compute(ctx, real))
        seconds[name] = round(time.perf_counter() - t + (probe_seconds if name == "nll" else 0.0), 3)
    if reference and "nll" in names and data.log_density is not None:
        ref_results["nll"] = results.get("true_entropy")
    protocol = {
        "data": data.spec.name, "reference_split": split, "n_generated": n, "n_reference": n,
        "n_real_baseline": n_real, "real_baseline": f"{'train' if split == 'test' else 'test'} split vs {split} split",
        "seed": seed, "version": PROTOCOL_VERSION, "feature_extractor": extractor.info(),
        "precision_recall_k": 3, "density_coverage_k": 5,
        "genlab_version": __version__, "sample_options": {k: v for k, v in sample_options.items()},
        "labels": (None if ctx.reference_conditions is None else "reference labels (conditional model)"
                   if model.condition_kind == "class" else f"the {split} split's conditions (paired data)"),
    }
    out = {"family": model.family, "metrics": results, "reference": ref_results, "protocol": protocol,
           "notes": ctx.notes, "seconds": seconds}
    m = getattr(ctx, "nll_examples", None)
    if m is not None:
        out["nll_examples"], out["nll_seconds"] = m, nll_seconds
        if m < n:
            out["notes"]["nll"] = (f"{ctx.notes.get('nll', '')}; on {m} of the {n} reference examples (the {n} "
                                   f"would take ~{nll_seconds * n / m:.0f} s; limit {nll_seconds:g} s)")
    return out


def format_table(result: dict) -> str:
    """The metrics table with its real-data column and the protocol stamp, as plain text."""
    rows = [f"{'metric':18} {'model':>12} {'real data':>12}"]
    for k, v in result["metrics"].items():
        r = result["reference"].get(k)
        fmt = lambda u: "—" if u is None else (f"{u:12d}" if isinstance(u, int) else f"{u:12.4g}")
        rows.append(f"{k:18} {fmt(v):>12} {fmt(r):>12}")
    p = result["protocol"]
    fe = p["feature_extractor"]
    rows.append("")
    rows.append(f"protocol: {p['n_generated']} generated vs {p['n_reference']} {p['reference_split']} examples of "
                f"{p['data']}, seed {p['seed']}; real data = {p['real_baseline']} ({p['n_real_baseline']})")
    rows.append(f"features: {fe['name']} (dim {fe['dim']}, sha256 {fe['weights_sha256'][:16]}); "
                f"precision/recall k={p['precision_recall_k']}, density/coverage k={p['density_coverage_k']}")
    for k, note in result["notes"].items():
        rows.append(f"{k}: {note}")
    return "\n".join(rows)
