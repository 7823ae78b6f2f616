"""Explore a trained model's latent space: interpolate, traverse, do arithmetic, map, and check
its samples against the training set (does it memorise?).

    genlab explore RUN [--what interpolate,traverse,arithmetic,map,neighbours] [--pairs 3,17 ...]
    explore(model, data, out, what=("interpolate", "map"))    -> {"interpolate": {...}, "map": {...}}

Each operation writes PNGs and a JSON of numbers into `out`. Everything goes through the
contract, never a family name. A model has a *latent path* when

    it encodes and decodes     encode(x, y) -> z, decode(z, y) -> x: encoders (ae, vae, pca),
                               flows (the exact inverse), fm (the probability-flow ODE run
                               backwards) and ddpm (deterministic DDIM inversion, eta = 0)
    or it only generates       draw_z(n) and generate(z, y) (a GAN): codes are random draws,
                               there is no code of a data point (no encoder)

Operations:
  interpolate  between two test examples (or image files) or two random codes, linearly and
               spherically (nn/interpolate.py: slerp keeps the norm of Gaussian codes); one figure
               row per pair and kind, the data points at the ends, then decode(path): its first
               and last frames are the endpoints' reconstructions.
  traverse     one code dimension at a time from a data point's code, the others fixed, over
               +-`span` standard deviations of that dimension in the test codes; dimensions ranked
               by the mean absolute pixel (or feature) change they cause.
  arithmetic   class-mean codes m_k and m_a - m_b + m_c (Radford et al. 2016's vector arithmetic
               with the data's classes), judged by the shipped classifier (or, without one, a
               logistic regression fitted on the training split): predicted class and confidence.
  map          the test split's codes in 2-D by PCA and by t-SNE (scikit-learn), coloured by class,
               with the 5-nearest-neighbour class accuracy of the codes (how class-structured the
               latent space is).
  neighbours   generated samples beside their nearest training examples in the evaluation
               protocol's feature space, and the memorisation share (see `memorisation`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError, GenlabError
from ..nn.interpolate import path as interp_path

OPERATIONS = ("interpolate", "traverse", "arithmetic", "map", "neighbours")
#: operations that need a latent path (neighbours needs only `sample`)
NEEDS_PATH = ("interpolate", "traverse", "arithmetic", "map")


# -- the latent path, through the contract ------------------------------------------------------------
def latent_kind(model) -> Optional[str]:
    """"encoder" (encode and decode), "generator" (draw_z and generate: random codes only) or None."""
    if hasattr(model, "encode") and hasattr(model, "decode"):
        return "encoder"
    if hasattr(model, "generate") and hasattr(model, "draw_z"):
        return "generator"
    return None


def families_with_latent_path(encoder_only: bool = False) -> list[str]:
    """Registered families whose models have a latent path (for error messages)."""
    from ..models import MODELS

    out = []
    for name, cls in sorted(MODELS.items()):
        enc = hasattr(cls, "encode") and hasattr(cls, "decode")
        gen = hasattr(cls, "generate") and hasattr(cls, "draw_z")
        if enc or (gen and not encoder_only):
            out.append(name)
    return out


def require_latent(model, what: str, encoder: bool = False) -> str:
    """The model's latent kind, or a one-line ConfigError naming the families that can do `what`."""
    kind = latent_kind(model)
    if kind is None or (encoder and kind != "encoder"):
        why = "has no encoder" if kind == "generator" else "has no latent path (encode/decode or generate)"
        raise ConfigError(f"{what} needs a latent space; '{model.family}' {why} "
                          f"(families that can: {', '.join(families_with_latent_path(encoder))})")
    return kind


def _cond(model, y, n):
    """The condition to pass for n codes: the labels of a class-conditional model, else None."""
    if model.condition_kind == "none" or y is None:
        return None
    return y


@torch.no_grad()
def encode(model, x: torch.Tensor, y=None, batch: int = 256, **options) -> torch.Tensor:
    """model.encode over batches; codes keep their shape (images' noise codes stay images)."""
    out = []
    for i in range(0, len(x), batch):
        yb = None if y is None else y[i:i + batch].to(model.device)
        z = model.encode(x[i:i + batch].to(model.device), yb, **options)
        out.append(z.detach().float().cpu())
    return torch.cat(out)


@torch.no_grad()
def decode(model, z: torch.Tensor, y=None, batch: int = 256, **options) -> torch.Tensor:
    """decode(z, y), or generate(z, y) for a model without an encoder, in batches, on the CPU."""
    fn = model.decode if latent_kind(model) == "encoder" else model.generate
    out = []
    for i in range(0, len(z), batch):
        yb = None if y is None else y[i:i + batch].to(model.device)
        out.append(fn(z[i:i + batch].to(model.device), yb, **options).detach().float().cpu())
    return torch.cat(out)


def _latent_options(model, steps: Optional[int]) -> dict:
    """`steps` for the families whose encode/decode integrate (keyword-only knob of the contract)."""
    if steps is None:
        return {}
    import inspect

    enc = getattr(model, "encode", None) or getattr(model, "generate")
    return {"steps": steps} if "steps" in inspect.signature(enc).parameters else {}


@torch.no_grad()
def random_codes(model, n: int, generator: torch.Generator, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    """n random codes: the generator's own draw_z, or for an encoder family a Gaussian fitted (mean and
    per-dimension std) to the codes `like` of data points (for a model whose codes follow N(0, I), the
    prior; for an autoencoder, which has no prior, the moment fit its own sampler uses in spirit)."""
    if latent_kind(model) == "generator":
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
        return model.draw_z(n, torch.Generator(device=model.device).manual_seed(seed)).float().cpu()
    m, s = like.mean(0), like.std(0)
    return m + s * torch.randn(n, *like.shape[1:], generator=generator)


def _labels(data, split="test"):
    return data.test_labels if split == "test" else data.train_labels


def _images(spec) -> bool:
    return spec.kind == "image"


# -- judges ----------------------------------------------------------------------------------------------
class _Judge:
    """The shipped classifier when the data has one, else a logistic regression on the training split."""

    def __init__(self, data):
        from ..metrics.features import extractor_for

        self.extractor = extractor_for(data.spec)
        self.sk = None
        if self.extractor.has_classifier:
            self.name = self.extractor.name
        elif data.train_labels is not None and data.spec.num_classes > 1:
            from sklearn.linear_model import LogisticRegression

            x = data.train.reshape(len(data.train), -1).numpy()
            self.mu, self.sd = x.mean(0), x.std(0) + 1e-8
            self.sk = LogisticRegression(max_iter=500).fit((x - self.mu) / self.sd, data.train_labels.numpy())
            self.name = "logistic-regression-on-train"
        else:
            self.name = None

    def probs(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        if self.extractor.has_classifier:
            return self.extractor.probs(x).float()
        if self.sk is not None:
            p = self.sk.predict_proba((x.reshape(len(x), -1).numpy() - self.mu) / self.sd)
            return torch.as_tensor(p, dtype=torch.float32)
        return None


# -- figures -----------------------------------------------------------------------------------------------
def _strip_figure(rows: list[torch.Tensor], labels: list[str], spec, path, title: str, data=None,
                  col_labels: Optional[list[str]] = None, ends: Optional[list] = None):
    """One row of frames per entry: an image strip for images, a path in the plane for 2-D
    vectors, the frames' coordinates as lines for other vectors."""
    from ..report.figures import _plt, image_grid, save_figure, save_png

    if _images(spec):
        if col_labels is None and all(len(r) == len(rows[0]) for r in rows):
            grid = image_grid(torch.cat(rows), nrow=len(rows[0]))
            plt = _plt()
            h, w = grid.shape[:2]
            fig, ax = plt.subplots(figsize=(min(16, 0.9 + w / 60), 0.6 + h / 60))
            ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            cell = h / len(rows)
            ax.set_yticks([cell * (i + 0.5) for i in range(len(rows))])
            ax.set_yticklabels(labels, fontsize=7)
            ax.set_title(title, fontsize=9)
            return save_figure(fig, path)
        return save_png(image_grid(torch.cat(rows), nrow=len(rows[0])), path)
    plt = _plt()
    if spec.dim == 2:
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), squeeze=False)
        ref = data.test[:2000].numpy() if data is not None else None
        for i, (ax, r, lab) in enumerate(zip(axes[0], rows, labels)):
            if ref is not None:
                ax.scatter(ref[:, 0], ref[:, 1], s=1, c="#cccccc")
            p = r.numpy()
            ax.plot(p[:, 0], p[:, 1], "-", c="#1f5fa8", lw=1)
            ax.scatter(p[:, 0], p[:, 1], c=np.linspace(0, 1, len(p)), cmap="viridis", s=14, zorder=3)
            e = None if ends is None else ends[i]
            if e is not None:
                ax.scatter(e[:, 0].numpy(), e[:, 1].numpy(), marker="x", c="#b2182b", s=40, zorder=4)
            ax.set_title(lab, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    else:
        fig, axes = plt.subplots(len(rows), 1, figsize=(6, 1.8 * len(rows)), squeeze=False)
        for ax, r, lab in zip(axes[:, 0], rows, labels):
            cm = plt.get_cmap("viridis")
            for i, v in enumerate(r.reshape(len(r), -1).numpy()):
                ax.plot(v, c=cm(i / max(1, len(r) - 1)), lw=1)
            ax.set_ylabel(lab, fontsize=7)
        axes[-1, 0].set_xlabel("feature")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


# -- interpolate -----------------------------------------------------------------------------------------
def load_points(model, data, refs: Sequence) -> tuple[torch.Tensor, Optional[torch.Tensor], list[str]]:
    """Data points from test indices (ints or digit strings) or image / .npy files."""
    xs, ys, names = [], [], []
    for r in refs:
        s = str(r).strip()
        if s.lstrip("-").isdigit():
            i = int(s)
            if not 0 <= i < len(data.test):
                raise ConfigError(f"test index {i} out of range (the test split has {len(data.test)} examples)")
            xs.append(data.test[i:i + 1])
            ys.append(None if data.test_labels is None else data.test_labels[i:i + 1])
            names.append(f"test[{i}]")
        else:
            from ..data.paired import load_conditions

            x = load_conditions(s, model.spec.shape)[:1]
            xs.append(x)
            ys.append(None)
            names.append(Path(s).name)
    y = None if any(v is None for v in ys) else torch.cat(ys)
    return torch.cat(xs), y, names


def parse_pairs(pairs) -> list[tuple[str, str]]:
    """["3,17", "a.png,b.png"] -> [("3", "17"), ("a.png", "b.png")]; "random" for two random codes."""
    out = []
    for p in pairs or []:
        if str(p).strip() == "random":
            out.append(("random", "random"))
            continue
        parts = [q for q in str(p).split(",") if q.strip()]
        if len(parts) != 2:
            raise ConfigError(f"--pairs expects A,B (test indices or image files) or 'random', got '{p}'")
        out.append((parts[0], parts[1]))
    return out


def default_pairs(data) -> list[tuple[str, str]]:
    """Two pairs of test examples of different classes (where there are labels), then a random pair."""
    lab, n = data.test_labels, len(data.test)
    j = next((k for k in range(1, n) if lab is None or lab[k] != lab[0]), 1)
    k2 = next((k for k in range(j + 1, n) if lab is None or lab[k] not in (lab[0], lab[j])), j + 1)
    k3 = next((k for k in range(k2 + 1, n) if lab is None or lab[k] != lab[k2]), k2 + 1)
    return [("0", str(j)), (str(k2), str(k3)), ("random", "random")]


@torch.no_grad()
def interpolate(model, data, out, pairs=None, steps: int = 9, kinds=("lerp", "slerp"), seed: int = 0,
                latent_steps: Optional[int] = None) -> dict:
    """Interpolations between pairs (see the module docstring). pairs: [(a, b)] of test indices /
    files, ("random", "random") for two random codes; default: two test pairs of different
    classes and one random pair (a generator family: three random pairs)."""
    kind = require_latent(model, "interpolation")
    out = Path(out)
    g = torch.Generator().manual_seed(seed)
    opts = _latent_options(model, latent_steps)
    if pairs is None:
        if kind == "generator":
            pairs = [("random", "random")] * 3
        else:
            pairs = default_pairs(data)
    pairs = [tuple(map(str, p)) for p in pairs]
    if kind == "generator" and any(p != ("random", "random") for p in pairs):
        raise ConfigError(f"'{model.family}' has no encoder, so it cannot find the code of a data point: "
                          f"interpolate between random codes (--pairs random), or use a family with an encoder "
                          f"({', '.join(families_with_latent_path(True))})")
    like = None
    if kind == "encoder" and any(p[0] == "random" for p in pairs):
        n_like = min(len(data.test), 256)
        y_like = _cond(model, _labels(data), n_like)
        like = encode(model, data.test[:n_like], None if y_like is None else y_like[:n_like], **opts)
    rows, labels, records, ends = [], [], [], []
    for a, b in pairs:
        if a == "random":
            z = random_codes(model, 2, g, like)
            x_ends, y_pair, names = None, None, ["random", "random"]
            if model.condition_kind == "class":
                y_pair = torch.randint(0, data.spec.num_classes, (1,), generator=g).repeat(2)
        else:
            x_ends, y_pair, names = load_points(model, data, [a, b])
            y_pair = _cond(model, y_pair, 2)
            if model.condition_kind == "class" and y_pair is None:
                raise ConfigError(f"this {model.family} model is class-conditional: interpolate between test "
                                  "examples (their labels are known), not files")
            z = encode(model, x_ends, y_pair, **opts)
        rec = {"a": names[0], "b": names[1], "code_norm_ends": [float(z[0].norm()), float(z[1].norm())]}
        for kd in kinds:
            zz = interp_path(z[0], z[1], steps, kd)
            yy = None if y_pair is None else y_pair[:1].repeat(steps)  # class-conditional: a's class
            xs = decode(model, zz, yy, **opts)
            norms = zz.reshape(steps, -1).norm(dim=1)
            diffs = (xs[1:] - xs[:-1]).reshape(steps - 1, -1).abs().mean(1)
            r = {"code_norms": norms.tolist(), "mid_norm_ratio": float(norms[steps // 2] / norms[[0, -1]].mean()),
                 "mean_step_change": float(diffs.mean()), "max_step_change": float(diffs.max())}
            frames = xs
            if x_ends is not None:
                r["endpoint_error"] = [float((xs[0] - x_ends[0]).abs().mean()), float((xs[-1] - x_ends[1]).abs().mean())]
                if _images(model.spec):
                    frames = torch.cat([x_ends[:1], xs, x_ends[1:]])
            rec[kd] = r
            if _images(model.spec) and x_ends is None:  # keep rows of equal length: blank ends
                frames = torch.cat([torch.full_like(xs[:1], 0.85), xs, torch.full_like(xs[:1], 0.85)])
            rows.append(frames)
            ends.append(x_ends)
            labels.append(f"{kd}: {names[0]} -> {names[1]}")
        records.append(rec)
    fig = _strip_figure(rows, labels, model.spec, out / "interpolate.png",
                        f"{model.family}: interpolation (data | decoded path, ends = reconstructions | data)"
                        if _images(model.spec) else f"{model.family}: decoded interpolation paths (x: the data points)",
                        data, ends=ends)
    return {"figure": str(fig), "pairs": records, "steps": steps, "latent": kind}


# -- traverse ----------------------------------------------------------------------------------------------
@torch.no_grad()
def traverse(model, data, out, index: int = 0, dims: int = 8, span: float = 2.5, steps: int = 9,
             candidates: int = 64, seed: int = 0, latent_steps: Optional[int] = None) -> dict:
    """Vary one code dimension at a time around the code of test example `index` (see the module
    docstring); the `candidates` dimensions of largest spread in the test codes are tried, and the
    `dims` that change the output most are drawn."""
    kind = require_latent(model, "a latent traversal")
    out = Path(out)
    opts = _latent_options(model, latent_steps)
    n_ref = min(len(data.test), 256)
    y_ref = _cond(model, _labels(data), n_ref)
    y_ref = None if y_ref is None else y_ref[:n_ref]
    if kind == "encoder":
        ref = encode(model, data.test[:n_ref], y_ref, **opts)
        if not 0 <= index < len(data.test):
            raise ConfigError(f"test index {index} out of range (the test split has {len(data.test)} examples)")
        yi = None if y_ref is None else _labels(data)[index:index + 1]
        base = encode(model, data.test[index:index + 1], yi, **opts)[0]
        origin = f"test[{index}]"
    else:
        ref = model.draw_z(n_ref, torch.Generator(device=model.device).manual_seed(seed)).float().cpu()
        base, yi, origin = ref[0], None, "a random code"
    flat_ref = ref.reshape(len(ref), -1)
    sd = flat_ref.std(0)
    cand = sd.argsort(descending=True)[:min(candidates, flat_ref.shape[1])]
    offsets = torch.linspace(-span, span, steps)
    zs = base.reshape(1, -1).repeat(len(cand) * steps, 1)
    for c, d in enumerate(cand):
        zs[c * steps:(c + 1) * steps, d] = base.reshape(-1)[d] + offsets * sd[d]
    yy = None if yi is None else yi.repeat(len(zs))
    xs = decode(model, zs.reshape(len(zs), *base.shape), yy, **opts)
    xb = decode(model, base.unsqueeze(0), yi, **opts)
    change = (xs - xb).reshape(len(cand), steps, -1).abs().mean((1, 2))
    order = change.argsort(descending=True)
    top = order[:dims]
    rows = [xs[int(c) * steps:(int(c) + 1) * steps] for c in top]
    labels = [f"z[{int(cand[c])}]" for c in top]
    fig = _strip_figure(rows, labels, model.spec, out / "traverse.png",
                        f"{model.family}: traversal from {origin}, one dimension per row, "
                        f"-{span:g} to +{span:g} sd (ranked by output change)", data)
    return {"figure": str(fig), "origin": origin, "span_sd": span, "steps": steps,
            "ranking": [{"dim": int(cand[c]), "mean_change": float(change[c]), "code_sd": float(sd[cand[c]])}
                        for c in order[:max(dims, 16)]],
            "dimensions_tried": int(len(cand)), "code_dim": int(flat_ref.shape[1])}


# -- arithmetic --------------------------------------------------------------------------------------------
@torch.no_grad()
def class_mean_codes(model, data, per_class: int = 100, seed: int = 0, judge: Optional[_Judge] = None,
                     latent_steps: Optional[int] = None) -> tuple[torch.Tensor, list[int]]:
    """m_k, the mean code of class k ([K, *code]): codes of up to `per_class` test examples of each class
    (an encoder), or of random codes whose decoded samples the judge assigns to k with confidence >= 0.9
    (a generator without encoder: Radford et al. averaged the codes of samples people had labelled)."""
    K = data.spec.num_classes
    opts = _latent_options(model, latent_steps)
    if latent_kind(model) == "encoder":
        lab = data.test_labels
        idx = torch.cat([torch.nonzero(lab == k).flatten()[:per_class] for k in range(K)])
        y = _cond(model, lab[idx], len(idx))
        z = encode(model, data.test[idx], y, **opts)
        labs = lab[idx]
    else:
        z = model.draw_z(max(50 * K, 20 * per_class),
                         torch.Generator(device=model.device).manual_seed(seed)).float().cpu()
        p = judge.probs(decode(model, z))
        conf, labs = p.max(1)
        keep = conf >= 0.9
        z, labs = z[keep], labs[keep]
    counts = [int((labs == k).sum()) for k in range(K)]
    means = torch.stack([z[labs == k].mean(0) if counts[k] else torch.full_like(z[0], float("nan")) for k in range(K)])
    return means, counts


def default_equations(K: int) -> list[tuple[int, int, int]]:
    """a - b + c for a few class triples: (k, k+1, k+2) mod K, and a - b + b (= a, a sanity row)."""
    eqs = [(k % K, (k + 1) % K, (k + 2) % K) for k in range(0, min(K, 6), 1)]
    return eqs[:5] + [(0, 1, 1)]


@torch.no_grad()
def arithmetic(model, data, out, equations=None, seed: int = 0, latent_steps: Optional[int] = None) -> dict:
    """Decoded m_a - m_b + m_c for each equation (a, b, c) of class indices, with the judge's verdict."""
    require_latent(model, "latent arithmetic")
    if data.test_labels is None or data.spec.num_classes < 2:
        raise DataError(f"latent arithmetic uses class-mean codes; '{data.spec.name}' has no labels")
    out = Path(out)
    judge = _Judge(data)
    if judge.name is None:
        raise DataError(f"no classifier to judge the results on '{data.spec.name}'")
    K = data.spec.num_classes
    eqs = [tuple(int(v) for v in e) for e in (equations or default_equations(K))]
    for e in eqs:
        if len(e) != 3 or not all(0 <= v < K for v in e):
            raise ConfigError(f"an equation is three class indices in 0..{K - 1}, got {e}")
    means, counts = class_mean_codes(model, data, seed=seed, judge=judge, latent_steps=latent_steps)
    missing = [k for e in eqs for k in e if counts[k] == 0]
    if missing:
        raise DataError(f"no codes for class(es) {sorted(set(missing))} (the generator's samples are never "
                        "judged to be of them): cannot form their mean")
    names = data.spec.class_names or [str(k) for k in range(K)]
    opts = _latent_options(model, latent_steps)
    rows, labels, records = [], [], []
    for a, b, c in eqs:
        zs = torch.stack([means[a], means[b], means[c], means[a] - means[b] + means[c]])
        ys = None if model.condition_kind != "class" else torch.tensor([a, b, c, a])
        xs = decode(model, zs, ys, **opts)
        p = judge.probs(xs)
        pred, conf = int(p[3].argmax()), float(p[3].max())
        records.append({"equation": f"{names[a]} - {names[b]} + {names[c]}", "a": a, "b": b, "c": c,
                        "predicted": pred, "predicted_name": names[pred], "confidence": conf,
                        "p_a": float(p[3, a]), "p_c": float(p[3, c]),
                        "means_predicted": [int(v) for v in p[:3].argmax(1)]})
        rows.append(xs)
        labels.append(f"{names[a]} - {names[b]} + {names[c]} -> {names[pred]} ({100 * conf:.0f}%)")
    fig = _strip_figure(rows, labels, model.spec, out / "arithmetic.png",
                        f"{model.family}: class means a | b | c | a - b + c (judge: {judge.name})", data)
    return {"figure": str(fig), "judge": judge.name, "codes_per_class": counts, "equations": records,
            "means_recognised": float(np.mean([int(r["means_predicted"][i] == k) for r in records
                                               for i, k in enumerate((r["a"], r["b"], r["c"]))]))}


# -- map ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def latent_map(model, data, out, n: int = 1000, seed: int = 0, latent_steps: Optional[int] = None,
               tsne: bool = True) -> dict:
    """The test split's codes in 2-D, PCA and t-SNE side by side, coloured by class, with the 5-NN
    class accuracy (5-fold cross-validated) in the full code space and in each 2-D map."""
    require_latent(model, "a latent map", encoder=True)
    from sklearn.decomposition import PCA
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from ..report.figures import _plt, save_figure

    out = Path(out)
    n = min(n, len(data.test))
    lab = data.test_labels[:n] if data.test_labels is not None else None
    y = _cond(model, lab, n)
    z = encode(model, data.test[:n], y, **_latent_options(model, latent_steps)).reshape(n, -1).double().numpy()
    maps = {}
    if z.shape[1] >= 2:
        pca = PCA(2, random_state=seed).fit(z)
        maps["PCA"] = (pca.transform(z), f"{100 * pca.explained_variance_ratio_.sum():.0f}% of variance")
    else:
        maps["PCA"] = (np.stack([z[:, 0], np.zeros(n)], 1), "1-D code")
    if tsne and n >= 10:
        from sklearn.manifold import TSNE

        zz = PCA(min(50, z.shape[1]), random_state=seed).fit_transform(z) if z.shape[1] > 50 else z
        init = "pca" if zz.shape[1] >= 2 else "random"  # a PCA start needs 2-D codes
        maps["t-SNE"] = (TSNE(2, perplexity=min(30.0, (n - 1) / 3), init=init, random_state=seed).fit_transform(zz),
                         "perplexity 30")
    result = {"n": n, "code_dim": int(z.shape[1])}
    if lab is not None and data.spec.num_classes > 1 and n >= 25:
        knn = KNeighborsClassifier(5)
        yl = lab.numpy()
        result["knn5_accuracy"] = {"codes": float(cross_val_score(knn, z, yl, cv=5).mean())}
        for name, (m, _) in maps.items():
            result["knn5_accuracy"][name] = float(cross_val_score(knn, m, yl, cv=5).mean())
    plt = _plt()
    fig, axes = plt.subplots(1, len(maps), figsize=(4.4 * len(maps) + 1.2, 4.2), squeeze=False)
    for ax, (name, (m, how)) in zip(axes[0], maps.items()):
        if lab is None:
            ax.scatter(m[:, 0], m[:, 1], s=4, c="#1f5fa8", alpha=0.7)
        else:
            K = data.spec.num_classes
            cmap = plt.get_cmap("tab10" if K <= 10 else "tab20")
            for k in range(K):
                sel = lab.numpy() == k
                ax.scatter(m[sel, 0], m[sel, 1], s=4, color=cmap(k % 20), alpha=0.8,
                           label=(data.spec.class_names or [str(i) for i in range(K)])[k])
        acc = result.get("knn5_accuracy", {}).get(name)
        ax.set_title(f"{name} ({how})" + (f", 5-NN acc {100 * acc:.0f}%" if acc is not None else ""), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if lab is not None and data.spec.num_classes <= 20:
        axes[0, -1].legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"{model.family}: {z.shape[1]}-D codes of {n} test examples", fontsize=9)
    result["figure"] = str(save_figure(fig, out / "map.png"))
    return result


# -- neighbours and memorisation ---------------------------------------------------------------------------
def memorisation(f_samples: torch.Tensor, f_train: torch.Tensor, f_test: torch.Tensor, q: float = 0.01,
                 batch: int = 1024) -> dict:
    """The memorisation share of generated samples, in a feature space f.

        d_tr(s)  = min_{t in train} || f(s) - f(t) ||          (distance to the training set)
        tau      = the q-quantile of d_tr(e) over held-out test examples e
        share    = (1/N) #{ s : d_tr(s) < tau }

    Test examples come from the data distribution but were never trained on, so a fraction q of
    them lies closer than tau to the training set: a model that draws fresh examples from the data
    distribution scores ~ q, one that copies its training examples (d_tr = 0) scores 1, and values
    well above q mean samples sit closer to training examples than new data does. q = 0 uses the
    smallest test distance (the issue's "closer than any test example is"); the default q = 0.01 is
    less noisy. Also returned: the medians of d_tr over samples and over test examples, and the median
    over samples of d_tr(s) / d_te(s) (distance to the nearest training vs the nearest test example:
    about 1 or below for fresh samples when train and test are alike, near 0 for copies)."""
    f_samples, f_train, f_test = (torch.as_tensor(a, dtype=torch.float64) for a in (f_samples, f_train, f_test))

    def nearest(a, b):
        d, i = [], []
        for k in range(0, len(a), batch):
            dd, ii = torch.cdist(a[k:k + batch], b).min(1)
            d.append(dd)
            i.append(ii)
        return torch.cat(d), torch.cat(i)

    d_s, idx = nearest(f_samples, f_train)
    d_test, _ = nearest(f_test, f_train)
    d_s_te, _ = nearest(f_samples, f_test)
    tau = float(d_test.min()) if q <= 0 else float(torch.quantile(d_test, q))
    return {"share": float((d_s < tau).double().mean()), "q": q, "threshold": tau,
            "median_d_train_samples": float(d_s.median()), "median_d_train_test": float(d_test.median()),
            "median_train_test_ratio": float((d_s / d_s_te.clamp_min(1e-12)).median()),
            "nearest_train": idx, "d_train": d_s}


@torch.no_grad()
def neighbours(model, data, out, n: int = 500, show: int = 8, k: int = 5, q: float = 0.01, seed: int = 0,
               max_train: int = 20000, **sample_options) -> dict:
    """n samples, their nearest training examples in the evaluation protocol's feature space
    (`metrics.features.extractor_for`), and `memorisation` (share, threshold, distances)."""
    from ..metrics.features import extractor_for
    from ..report.figures import _plt, image_grid, save_figure

    if hasattr(model, "check_sample_options"):  # any module with sample() can be checked for copying
        model.check_sample_options(sample_options, "samples")
    out = Path(out)
    ex = extractor_for(data.spec)
    g = torch.Generator(device=model.device).manual_seed(seed)
    y = None
    if model.condition_kind == "class":
        y = data.test_labels[torch.arange(n) % len(data.test_labels)]
    elif model.condition_kind == "tensor":
        y = data.test_cond[torch.arange(n) % len(data.test_cond)]
    xs = model.sample(n, y, generator=g, **sample_options).float().cpu()
    train = data.train
    if len(train) > max_train:
        train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:max_train]]
    f_tr, f_te, f_s = ex.features(train), ex.features(data.test), ex.features(xs)
    mem = memorisation(f_s, f_tr, f_te, q)
    mem.pop("nearest_train")
    d_s = mem.pop("d_train")
    plt = _plt()
    if _images(data.spec):
        show = min(show, n)
        dist = torch.cdist(f_s[:show], f_tr)
        nn_idx = dist.topk(k, largest=False).indices
        cells = torch.cat([torch.cat([xs[i:i + 1], train[nn_idx[i]]]) for i in range(show)])
        grid = image_grid(cells, nrow=k + 1)
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 0.8 + 0.55 * show), gridspec_kw={"width_ratios": [1.2, 1]})
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
        ax.set_axis_off()
        ax.set_title(f"sample | its {k} nearest training examples ({ex.name})", fontsize=8)
    else:
        fig, ax2 = plt.subplots(figsize=(5, 3.4))
    d_test = torch.cdist(f_te.double(), f_tr.double()).min(1).values
    bins = np.linspace(0, float(max(d_s.max(), d_test.max())) * 1.02 + 1e-9, 40)
    ax2.hist(d_test.numpy(), bins=bins, alpha=0.6, density=True, label="test examples")
    ax2.hist(d_s.numpy(), bins=bins, alpha=0.6, density=True, label="samples")
    ax2.axvline(mem["threshold"], c="k", ls="--", lw=1, label=f"{100 * q:g}% test quantile")
    ax2.set_xlabel("distance to the nearest training example")
    ax2.legend(fontsize=7)
    ax2.set_title(f"memorisation share {100 * mem['share']:.1f}% (fresh data ~ {100 * q:g}%)", fontsize=8)
    fig.tight_layout()
    mem["figure"] = str(save_figure(fig, out / "neighbours.png"))
    mem.update({"n": n, "features": ex.name, "train_examples": len(train)})
    return mem


# -- all of it ---------------------------------------------------------------------------------------------
def parse_what(what) -> list[str]:
    if what is None:
        return list(OPERATIONS)
    items = [w.strip() for w in (what.split(",") if isinstance(what, str) else what) if w.strip()]
    from ..errors import unknown_name

    for w in items:
        if w not in OPERATIONS:
            raise unknown_name("explore operation", w, OPERATIONS)
    return items


def explore(model, data, out, what=None, pairs=None, seed: int = 0, latent_steps: Optional[int] = None,
            n: Optional[int] = None, progress: bool = False) -> dict:
    """Run the chosen operations (default: every one the model supports; asked for explicitly, one it
    cannot do is a ConfigError naming the families that can). Writes out/explore.json and the PNGs."""
    from ..io import atomic_write_json

    explicit = what is not None
    ops = parse_what(what)
    kind = latent_kind(model)
    if explicit:
        for op in ops:
            if op in NEEDS_PATH:
                require_latent(model, {"interpolate": "interpolation", "traverse": "a latent traversal",
                                       "arithmetic": "latent arithmetic", "map": "a latent map"}[op],
                               encoder=op == "map")
        if "arithmetic" in ops and (data.test_labels is None or data.spec.num_classes < 2):
            raise DataError(f"latent arithmetic uses class-mean codes; '{data.spec.name}' has no labels")
    else:
        ops = [op for op in ops if op not in NEEDS_PATH or (kind == "encoder" or (kind == "generator" and op != "map"))]
        if data.test_labels is None or data.spec.num_classes < 2:
            ops = [op for op in ops if op != "arithmetic"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"family": model.family, "data": data.spec.name, "latent": kind, "seed": seed}
    it = ops
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(ops, desc="explore")
    for op in it:
        try:
            results[op] = _run_op(op, model, data, out, pairs, seed, latent_steps, n)
        except GenlabError as e:
            if explicit:
                raise
            results[op] = {"skipped": str(e)}  # asked for everything: say why this one is missing
    atomic_write_json(out / "explore.json", results)
    results["json"] = str(out / "explore.json")
    return results


def _run_op(op, model, data, out, pairs, seed, latent_steps, n):
    if op == "interpolate":
        return interpolate(model, data, out, parse_pairs(pairs) or None, seed=seed, latent_steps=latent_steps)
    if op == "traverse":
        return traverse(model, data, out, seed=seed, latent_steps=latent_steps)
    if op == "arithmetic":
        return arithmetic(model, data, out, seed=seed, latent_steps=latent_steps)
    if op == "map":
        return latent_map(model, data, out, n=n or 1000, seed=seed, latent_steps=latent_steps)
    return neighbours(model, data, out, n=n or 500, seed=seed)


def page_figures(model, data, out_dir, seed: int = 0, n: int = 500, latent_steps: Optional[int] = 25,
                 seconds: Optional[float] = None) -> dict:
    """The comparison page's Explore figures for one model: an interpolation between two pairs of test
    examples (random codes for a family without encoder) and the PCA / t-SNE map of the codes of n test
    examples. {} for a model without a latent path; a failing part is reported, not raised. With
    `seconds`, the map encodes fewer examples (at least 100) when n would take longer (an iterative
    encoder such as an ODE or DDIM inversion), as timed on 16 test examples."""
    kind = latent_kind(model)
    if kind is None:
        return {}
    if seconds and kind == "encoder":
        x16 = data.test[:16]
        y16 = _cond(model, None if data.test_labels is None else data.test_labels[:16], 16)
        t = time.perf_counter()
        encode(model, x16, y16, **_latent_options(model, latent_steps))
        per = (time.perf_counter() - t) / 16
        n = min(n, max(100, int(seconds / max(per, 1e-12))))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs: dict = {}
    try:
        pairs = [("random", "random")] * 2 if kind == "generator" else default_pairs(data)[:2]
        r = interpolate(model, data, out_dir, pairs=pairs, steps=8, seed=seed, latent_steps=latent_steps)
        figs["interpolate"] = {"path": r["figure"], "latent": r["latent"],
                               "how": "data | decoded lerp / slerp path (ends: reconstructions) | data"
                               if kind == "encoder" else "random codes, lerp and slerp (no encoder)"}
    except GenlabError as e:
        figs["interpolate"] = {"error": str(e)}
    if kind == "encoder":
        try:
            r = latent_map(model, data, out_dir, n=n, seed=seed, latent_steps=latent_steps)
            figs["map"] = {"path": r["figure"], "knn5_accuracy": r.get("knn5_accuracy", {}).get("codes"),
                           "how": f"PCA and t-SNE of the {r['code_dim']}-D codes of {r['n']} test examples"}
        except GenlabError as e:
            figs["map"] = {"error": str(e)}
    return figs
