"""The comparison page: one self-contained HTML file (PNG figures embedded as base64), no
scripts, no external resources, semantic tables, alt text on every image, print styles.

Built from the results of `compare` / `report` (see workflows/compare.py); every family on it
comes from those results, so a family added to the registry appears without changes here.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path
from typing import Optional

from ..io import atomic_write_bytes

# direction of "better" for the metrics we know; others are shown without an arrow
LOWER = {"fid", "kid", "balance_kl", "classes_dropped", "nll", "bpd", "kl", "mmd", "swd", "mode_kl", "fid_ba"}
HIGHER = {"precision", "recall", "coverage", "class_accuracy", "modes", "high_quality", "psnr", "ssim",
          "psnr_ba", "ssim_ba", "auroc"}
LABELS = {"fid": "FD", "kid": "KID", "kid_std": "KID std", "precision": "precision", "recall": "recall",
          "density": "density", "coverage": "coverage", "balance_kl": "class KL", "classes_dropped": "classes dropped",
          "confidence": "classifier confidence", "class_accuracy": "class accuracy", "nll": "NLL (nats)",
          "bpd": "bits/dim", "kl": "KL(data‖model)", "true_entropy": "true entropy", "mmd": "MMD²", "swd": "SWD",
          "modes": "modes", "high_quality": "high quality", "mode_kl": "mode KL",
          "psnr": "PSNR (dB)", "ssim": "SSIM", "fid_ba": "FD B→A", "psnr_ba": "PSNR B→A", "ssim_ba": "SSIM B→A",
          "auroc": "AUROC (one-class)"}
SUBSET = {"nll", "bpd", "kl"}  # the likelihood metric's outputs (scored on a subset under a time limit)
HIDDEN = {"kid_std", "true_entropy", "bpd_se"}  # shown in the notes / reference, not as their own column

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #111;
       background: #fff; margin: 0 auto; max-width: 1240px; padding: 0 20px 40px; }
h1 { font-size: 1.7em; margin: 0.8em 0 0.2em; } h2 { font-size: 1.3em; margin-top: 1.8em;
     border-bottom: 2px solid #333; padding-bottom: 0.15em; } h3 { font-size: 1.05em; margin: 1em 0 0.3em; }
a { color: #0b4ea2; } .muted { color: #444; } code { font-size: 0.92em; background: #f3f3f3; padding: 0 3px; }
nav ul { list-style: none; padding: 0; margin: 0.5em 0; display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.45em; text-align: right; vertical-align: top; }
th[scope=row], td.text { text-align: left; } thead th { background: #e8e8e8; text-align: center; }
tbody th[scope=row] { background: #f6f6f6; white-space: nowrap; } tr.reference th { white-space: normal; }
tr.reference th, tr.reference td { background: #eef3fa; font-style: italic; }
tr.failed th, tr.failed td { background: #fdeeee; color: #7a0000; }
td.best { font-weight: 700; text-decoration: underline; }
.badge.short { background: #fff3cd; color: #5c4300; border: 1px solid #c99a1e; border-radius: 3px; padding: 0 4px;
               font-size: 0.8em; font-weight: 600; white-space: nowrap; }
.stamp { background: #f6f6f6; border-left: 4px solid #555; padding: 0.5em 0.9em; margin: 0.8em 0; }
.stamp dt { font-weight: 600; float: left; clear: left; width: 11em; } .stamp dd { margin: 0 0 0.15em 11.5em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 14px; }
.grid.wide { grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); }
figure { margin: 0; border: 1px solid #ccc; padding: 6px; background: #fff; break-inside: avoid; }
figure img { width: 100%; height: auto; display: block; }
figure.pixels img { image-rendering: pixelated; }
figcaption { font-size: 0.88em; color: #222; margin-top: 4px; }
.pair { display: grid; grid-template-columns: 7em 1fr 1fr; gap: 12px; align-items: start; margin: 10px 0;
        break-inside: avoid; }
.error { color: #7a0000; font-weight: 600; } pre { white-space: pre-wrap; font-size: 0.82em; background: #f6f6f6;
       padding: 0.6em; border: 1px solid #ddd; }
@media print {
  body { max-width: none; font-size: 10.5pt; padding: 0; } nav { display: none; }
  .scroll { overflow: visible; } table { font-size: 8.5pt; } h2 { break-after: avoid; }
  section { break-inside: auto; } figure, .pair, tr { break-inside: avoid; }
  .grid { grid-template-columns: repeat(4, 1fr); } .grid.wide { grid-template-columns: repeat(3, 1fr); }
  a { color: #000; text-decoration: none; } details > pre { display: block; }
}
@page { margin: 14mm; }
"""


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return {"inf": "∞", "-inf": "−∞", "nan": "NaN"}.get(v, escape(v))
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "NaN" if math.isnan(v) else ("∞" if v > 0 else "−∞")
        if v == 0:
            return "0"
        return f"{v:.3e}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.4g}"
    return escape(str(v))


def _num(v) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    return None


def _seconds(s) -> str:
    if s is None:
        return "—"
    s = float(s)
    return f"{s:.2f} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


class _Images:
    """Reads PNGs below `base` and returns <img> tags with the bytes embedded."""

    def __init__(self, base: Path):
        self.base = Path(base)

    def tag(self, rel: Optional[str], alt: str) -> Optional[str]:
        if not rel:
            return None
        p = Path(rel) if Path(rel).is_absolute() else self.base / rel
        if not p.exists() or p.suffix != ".png":
            return None
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'

    def figure(self, rel, alt: str, caption: str, pixels: bool = False) -> str:
        img = self.tag(rel, alt)
        if img is None:
            return ""
        cls = ' class="pixels"' if pixels else ""
        return f"<figure{cls}>{img}<figcaption>{caption}</figcaption></figure>"


def _metric_columns(families: list[dict]) -> list[str]:
    cols: list[str] = []
    for e in families:
        for k in e.get("metrics", {}):
            if k not in cols and k not in HIDDEN:
                cols.append(k)
    return cols


def _best(families: list[dict], col: str) -> Optional[float]:
    vals = [_num(e["metrics"].get(col)) for e in families if e["status"] == "ok"]
    vals = [v for v in vals if v is not None]
    if len(vals) < 2 or col not in LOWER | HIGHER:
        return None
    return min(vals) if col in LOWER else max(vals)


# what a family's log_prob is over (metrics/evaluate.py SUPPORTS), as the NLL column says it
SUPPORT_TEXT = {"discrete": "discrete", "dequantized": "density of dequantised data",
                "lattice": "density at the lattice points", "continuous": "density", "density": "density"}
KIND_MARK = {"bound": "b", "estimate": "e"}  # superscripts on likelihood numbers


def _likelihood(e: dict) -> tuple[Optional[str], Optional[str]]:
    """(likelihood kind, support) of a family's entry, from its nll note (and its likelihood_kind)."""
    from ..metrics.evaluate import parse_nll_note

    kind, support = parse_nll_note((e.get("notes") or {}).get("nll"))
    return e.get("likelihood_kind") or kind, support


def _quantised(results: dict) -> bool:
    """Whether bits/dim of discrete data is the page's likelihood column (quantised images)."""
    spec = results.get("data_spec") or {}
    return bool(spec.get("levels")) or any("bpd" in e.get("metrics", {}) for e in results["families"])


def metrics_table(results: dict) -> str:
    """One comparable quantity per column. The likelihood columns: on quantised images, bits/dim of
    the discrete data (every family's an upper bound on its code length; the best marked over that
    column only) and the raw NLL with its kind as text (no best: discrete probabilities, densities of
    dequantised data and densities at the lattice points are not comparable); on continuous data the
    NLL in nats, a density of the same data for every family (best marked, discrete excluded)."""
    fams = results["families"]
    quantised = _quantised(results)
    cols = []
    for c in _metric_columns(fams):
        if c in ("nll", "bpd", "bpd_se"):
            c = "bpd" if quantised else "nll"
            cols += [] if c in cols else ([c, "nll_text"] if quantised else [c])
        else:
            cols.append(c)
    ref = results.get("reference") or {}
    labels = {**LABELS, "nll_text": "NLL (as the model gives it)"}
    head = "".join(
        f'<th scope="col">{escape(labels.get(c, c))}'
        f'{" ↓" if c in LOWER else " ↑" if c in HIGHER else ""}</th>' for c in cols)
    rows = []
    if ref:
        cells = "".join(f'<td{" class=text" if c == "nll_text" else ""}>'
                        f'{_fmt(ref.get("nll" if c == "nll_text" else c))}</td>' for c in cols)
        rows.append(f'<tr class="reference"><th scope="row">real data (train vs test)</th>{cells}</tr>')
    for b in results.get("baselines") or []:  # a no-learning baseline (super-resolution: bicubic upsampling)
        cells = "".join(f'<td>{_fmt(b["metrics"].get(c))}</td>' for c in cols)
        rows.append(f'<tr class="reference"><th scope="row">{escape(b["name"])} (baseline, no learning)</th>'
                    f'{cells}</tr>')
    comparable = [e for e in fams if e["status"] == "ok" and _likelihood(e)[1] != "discrete"]
    best = {c: _best(comparable if c == "nll" else fams, c) for c in cols}
    subset = [e for e in fams if e["status"] == "ok" and e.get("nll_examples")]
    for e in fams:
        name = escape(label(e))
        if e["status"] != "ok":
            msg = escape(e.get("error", "").splitlines()[0] if e.get("error") else "unknown error")
            rows.append(f'<tr class="failed"><th scope="row">{name}</th><td class="text" colspan="{max(1, len(cols))}">'
                        f'failed during {escape(e.get("stage", "?"))}: {msg}</td></tr>')
            continue
        kind, support = _likelihood(e)
        met = e.get("metrics", {})
        cells = []
        for c in cols:
            v = met.get("nll" if c == "nll_text" else c)
            mark = "&nbsp;†" if c in SUBSET | {"nll_text"} and e.get("nll_examples") and v is not None else ""
            if c == "nll_text":
                text = "—" if v is None else ", ".join(
                    [f"{_fmt(v)} nats"] + [escape(t) for t in (kind, SUPPORT_TEXT.get(support, support)) if t])
                cells.append(f'<td class="text">{text}{mark}</td>')
                continue
            is_best = (best[c] is not None and _num(v) is not None and _num(v) == best[c]
                       and (c != "nll" or e in comparable))
            text = _fmt(v)
            if c in ("bpd", "nll") and v is not None:
                if c == "bpd" and _num(met.get("bpd_se")) is not None:
                    text += f'<small> ±{float(met["bpd_se"]):.2g}</small>'
                if kind in KIND_MARK:
                    text += f"<sup>{KIND_MARK[kind]}</sup>"
            cells.append(f'<td{" class=best" if is_best else ""}>{text}{mark}</td>')
        rows.append(f'<tr><th scope="row">{name}{short_badge(e)}</th>{"".join(cells)}</tr>')
    caption = (f"Metrics on {escape(results['data'])}: each family's samples against the test split; "
               "the first row is real training data against the same test split")
    if quantised:
        like = ('Bits/dim: of the discrete (quantised) test images, an upper bound on their code length for '
                'every family (densities are dequantised: the flows in training, families whose density lives at '
                'the pixel values at evaluation, ± its Monte Carlo standard error), so the column compares; '
                '<sup>b</sup> the likelihood is itself a bound, <sup>e</sup> a stochastic estimate. '
                'NLL: what the model\'s log p(x) gives, in nats, with what it is over; not comparable across kinds.')
    else:
        like = ('NLL: nats per example, a density of the same continuous data for every family (so the column '
                'compares; a discrete likelihood, if any, is left out of the best); <sup>b</sup> a bound, '
                '<sup>e</sup> a stochastic estimate.')
    return (f'<div class="scroll"><table id="metrics"><caption>{caption}</caption>'
            f'<thead><tr><th scope="col">family</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            '<p class="muted">↓ lower is better, ↑ higher is better; the best family in a column is '
            '<span style="font-weight:700;text-decoration:underline">bold and underlined</span>; — : '
            f'does not apply. {like}'
            + (f' †: on {", ".join(str(e["nll_examples"]) + " (" + escape(e["name"]) + ")" for e in subset)} of the '
               f'{results.get("n")} reference examples, to keep within {results.get("nll_seconds", 0):g} s per family '
               '(an unbiased estimate of the same mean, with a larger standard error).' if subset else '')
            + '</p>')


def protocol_stamp(results: dict) -> str:
    p = results.get("protocol")
    if not p:
        return '<p class="error">No family finished its evaluation, so there is no protocol to show.</p>'
    fe = p.get("feature_extractor", {})
    items = [
        ("data", f"{escape(str(p['data']))}, reference = {escape(p['reference_split'])} split"),
        ("samples", f"{p['n_generated']} generated vs {p['n_reference']} reference examples"),
        ("real-data row", f"{escape(p['real_baseline'])} ({p['n_real_baseline']} examples)"),
        ("seed", str(p["seed"])),
        ("features", f"{escape(str(fe.get('name')))} (dim {fe.get('dim')}, sha256 "
                     f"<code>{escape(str(fe.get('weights_sha256', ''))[:16])}</code>)"),
        ("neighbours", f"precision/recall k={p['precision_recall_k']}, density/coverage k={p['density_coverage_k']}"),
        ("genlab", escape(str(p.get("genlab_version")))),
    ]
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="stamp" aria-label="evaluation protocol">{body}</dl>'


def too_short(e: dict) -> Optional[str]:
    """The page's note for a family trained fewer optimiser steps than it needs to mean anything
    (`min_train_steps`, recorded in its run), else None."""
    t = e.get("train") or {}
    if not t.get("too_short"):
        return None
    return (f"trained too briefly: {t.get('steps')} optimiser steps, fewer than the {t.get('min_steps')} this "
            "family needs for its samples and numbers to mean much; give it more minutes (--budget) or steps")


def short_badge(e: dict) -> str:
    why = too_short(e)
    return "" if why is None else f' <span class="badge short" title="{escape(why)}">too short</span>'


def label(e: dict) -> str:
    """A family's name as the page shows it: a latent model states its codes' dimension, "ddpm@vae (16-D codes)"."""
    lat = e.get("latent")
    return f"{e['name']} ({lat['dim']}-D codes)" if lat else e["name"]


def families_table(results: dict) -> str:
    rows = []
    for e in results["families"]:
        caps = ", ".join(e.get("capabilities", [])) or "—"
        lk = e.get("likelihood_kind") or "—"
        status = "ok" if e["status"] == "ok" else f'<span class="error">failed ({escape(e.get("stage", ""))})</span>'
        rows.append(f'<tr><th scope="row">{escape(label(e))}</th><td class="text">{escape(e.get("description", ""))}'
                    f'</td><td class="text">{escape(lk)}</td><td class="text">{escape(caps)}</td>'
                    f'<td class="text">{status}</td></tr>')
    return ('<div class="scroll"><table id="families"><caption>Families on this page</caption><thead><tr>'
            '<th scope="col">family</th><th scope="col">what</th><th scope="col">log p(x)</th>'
            '<th scope="col">capabilities</th><th scope="col">status</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


USES = (("anomaly", "anomaly_score", "genlab anomaly: outlier scores"), ("impute", "impute", "genlab impute: missing data"),
        ("denoise", "denoise", "genlab denoise"), ("encode", "encode", "a latent code (explore)"),
        ("log p(x)", "log_prob", "a likelihood"))


def uses_table(results: dict) -> str:
    """Which family supports which use (from each model's capabilities): a check per cell."""
    head = "".join(f'<th scope="col" title="{escape(t)}">{escape(n)}</th>' for n, _, t in USES)
    rows = "".join(f'<tr><th scope="row">{escape(e["name"])}</th>'
                   + "".join(f'<td>{"✓" if c in e.get("capabilities", []) else "—"}</td>' for _, c, _ in USES)
                   + "</tr>" for e in results["families"])
    return ('<div class="scroll"><table id="uses"><caption>What each family can be used for</caption><thead><tr>'
            f'<th scope="col">family</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>')


def budget_text(b: dict) -> str:
    """A training budget as the page shows it: '150 s', '3 epochs' or '500 steps'."""
    if "minutes" in b:
        return f"{b['minutes'] * 60:.0f} s"
    if "epochs" in b:
        return f"{b['epochs']:g} epochs"
    return f"{b['steps']} steps"


def timing_table(results: dict) -> str:
    n = results.get("n")
    rows = []
    for e in results["families"]:
        t = e.get("train") or {}
        b = e.get("budget") or t.get("budget") or {}
        closed = t.get("closed_form")
        rows.append(
            f'<tr><th scope="row">{escape(label(e))}</th>'
            f'<td>{"closed form" if closed else escape(budget_text(b)) if b else "—"}</td>'
            f'<td>{_fmt(t.get("steps")) if t else "—"}{short_badge(e)}</td><td>{_fmt(t.get("epochs")) if t else "—"}</td>'
            f'<td>{"—" if closed or not t else _seconds(t.get("seconds")) + (" CPU" if t.get("clock") == "cpu" else "")}</td>'
            f'<td>{_seconds(e.get("sampling_seconds"))}</td><td>{_seconds(e.get("evaluate_seconds"))}</td></tr>')
    return ('<div class="scroll"><table id="timing"><caption>Training and sampling time</caption><thead><tr>'
            '<th scope="col">family</th><th scope="col">budget</th><th scope="col">steps</th>'
            '<th scope="col">epochs</th><th scope="col">training</th>'
            f'<th scope="col">sampling {n} examples</th><th scope="col">evaluation (all metrics)</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def build_html(results: dict, base) -> str:
    """The page as a string; figure paths in `results` are relative to `base`."""
    im = _Images(Path(base))
    data = escape(results["data"])
    spec = results.get("data_spec", {})
    image = spec.get("kind") == "image"
    two_d = spec.get("kind") == "vector" and list(spec.get("shape", [])) == [2]
    ok = [e for e in results["families"] if e["status"] == "ok"]
    failed = [e for e in results["families"] if e["status"] != "ok"]
    dfig = results.get("data_figures", {})

    def fig(e, key, alt, caption, pixels=False):
        f = e.get("figures", {}).get(key)
        return im.figure(f["path"], alt, caption, pixels) if f else ""

    sections, nav = [], []

    def section(sid, title, body):
        if body:
            nav.append(f'<li><a href="#{sid}">{title}</a></li>')
            sections.append(f'<section id="{sid}" aria-labelledby="{sid}-h"><h2 id="{sid}-h">{title}</h2>'
                            f'{body}</section>')

    short = [e for e in ok if too_short(e)]
    warn = ("" if not short else '<p class="error" id="too-short">Trained too briefly to mean much: '
            + "; ".join(f'{escape(e["name"])} ({e["train"]["steps"]} of at least {e["train"]["min_steps"]} steps)'
                        for e in short)
            + '. Their samples and numbers show an unfinished model, not the family: give them more training '
              '(<code>--minutes</code>, <code>--budget FAMILY=MINUTES</code> or <code>--steps</code>).</p>')
    section("metrics", "Metrics", warn + metrics_table(results) + protocol_stamp(results) + _notes(ok))
    section("people", "People", human_table(results))

    # samples: the data, then each family
    what = "64 samples" if image else "samples (blue) over test points (grey)" if two_d else "samples"
    cards = [im.figure(dfig.get("samples", {}).get("path"), f"{results['data']} test examples",
                       f"<strong>data</strong>: {escape(dfig.get('samples', {}).get('how', ''))}", image)]
    cards += [fig(e, "samples", f"{what} from {e['name']} trained on {results['data']}",
                  f"<strong>{escape(label(e))}</strong>", image) for e in ok]
    if any(cards) and not two_d:  # 2-D data: the scatter and density section below shows samples
        section("samples", "Samples", f'<p class="muted">{escape(what.capitalize())} from each family, seed '
                f'{results["seed"]}.</p><div class="grid">{"".join(cards)}</div>')

    tra = [fig(e, "translations", f"test inputs, {e['name']}'s outputs and the targets, row under row",
               f"<strong>{escape(e['name'])}</strong>: inputs, outputs, targets (rows)", True) for e in ok]
    if any(tra):
        section("translations", "Translations", '<p class="muted">The first test inputs (top row), each '
                'family\'s outputs (middle) and the targets (bottom).</p>' f'<div class="grid">{"".join(tra)}</div>')

    rec = [fig(e, "reconstructions", f"test examples and their {e['name']} reconstructions, row under row",
               f"<strong>{escape(e['name'])}</strong>: originals (odd rows), reconstructions (even rows)", True)
           for e in ok]
    if any(rec):
        section("reconstructions", "Reconstructions", f'<div class="grid wide">{"".join(rec)}</div>')

    lat = [fig(e, "latent", f"{e['name']} latent codes of test examples, "
               f"{e['figures']['latent'].get('how', '')}, coloured by class",
               f"<strong>{escape(e['name'])}</strong>: {escape(e['figures']['latent'].get('how', ''))}")
           for e in ok if "latent" in e.get("figures", {})]
    if lat:
        section("latent", "Latent codes", '<p class="muted">Codes of test examples from each family that '
                f'encodes, coloured by class.</p><div class="grid wide">{"".join(lat)}</div>')

    explore = []
    for e in ok:
        f = e.get("figures", {})
        parts = [fig(e, k, f"{e['name']}: {f[k].get('how', '')}", escape(f[k].get("how", "")))
                 for k in ("explore_interpolate", "explore_map") if "path" in f.get(k, {})]
        parts += [f'<p class="error">{escape(f[k]["error"])}</p>' for k in ("explore_interpolate", "explore_map")
                  if "error" in f.get(k, {})]
        if parts:
            explore.append(f'<div class="pair"><h3>{escape(e["name"])}</h3>{"".join(parts)}</div>')
    if explore:
        section("explore", "Explore", '<p class="muted">Interpolations between test examples (linear and spherical, '
                'through each family\'s own latent path: encoder, exact flow inverse, DDIM / ODE inversion; random '
                'codes for a family without encoder) and 2-D maps of the codes. More with '
                '<code>genlab explore RUN</code>.</p>' + "".join(explore))

    if two_d:
        dd = dfig.get("density", {})
        rows = [_pair("data", im.figure(dfig.get("samples", {}).get("path"), "scatter of test points",
                                        escape(dfig.get("samples", {}).get("how", ""))),
                      im.figure(dd.get("path"), f"data density: {dd.get('how', '')}", escape(dd.get("how", ""))))]
        for e in ok:
            d, sc = e.get("figures", {}).get("density", {}), e.get("figures", {}).get("scatter", {})
            rows.append(_pair(e["name"], fig(e, "scatter", f"scatter of {e['name']} samples over test points",
                                             escape(sc.get("how", ""))),
                              fig(e, "density", f"{e['name']} density: {d.get('how', '')}", escape(d.get("how", "")))))
        section("density", "Scatter and density", '<p class="muted">Each family beside the data: its samples, '
                'and its density on the same window (exp log p where the family has a likelihood, else a histogram '
                'of its samples); colour scale: square root.</p>' + "".join(rows))

    curves = [fig(e, "loss", f"training loss curves of {e['name']}", f"<strong>{escape(e['name'])}</strong>")
              for e in ok]
    section("training", "Training", timing_table(results)
            + (f'<div class="grid wide">{"".join(curves)}</div>' if any(curves) else "")
            + families_table(results) + uses_table(results))

    if failed:
        body = "".join(
            f'<h3>{escape(e["name"])}</h3><p class="error">failed during {escape(e.get("stage", "?"))}: '
            f'{escape(e.get("error", ""))}</p>'
            + (f'<p>Run directory: <code>{escape(e["run"])}</code></p>' if e.get("run") else "")
            + (f'<details><summary>traceback</summary><pre>{escape(e["traceback"])}</pre></details>'
               if e.get("traceback") else "") for e in failed)
        section("failures", "Failures", body)

    summary = (f'{len(results["families"])} families on <strong>{data}</strong> '
               f'({escape(spec.get("kind", ""))} {escape("×".join(str(s) for s in spec.get("shape", [])))}), '
               f'seed {results["seed"]}; budget: {escape(results.get("budget_scheme", ""))}. '
               f'{len(ok)} finished' + (f', <span class="error">{len(failed)} failed</span>' if failed else "")
               + (f', <span class="error">{len(short)} trained too briefly</span>' if short else "")
               + f'. Made by genlab {escape(results["genlab_version"])} on {escape(results["created"])} '
               f'in {_seconds(results.get("seconds"))}.')
    runs = ", ".join(f'<code>{escape(e["run"])}</code>' for e in results["families"] if e.get("run"))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f'<title>genlab compare: {data}</title><style>{CSS}</style></head><body>'
        f'<header><h1>genlab compare: {data}</h1><p>{summary}</p>'
        f'<nav aria-label="sections"><ul>{"".join(nav)}</ul></nav></header>'
        f'<main>{"".join(sections)}</main>'
        f'<footer><p class="muted">Run directories (resume, sample or evaluate any of them): {runs}. '
        'Rebuild this page with <code>genlab report RUN [RUN ...] --out report.html</code>.</p></footer>'
        '</body></html>\n')


def human_table(results: dict) -> str:
    """A judging study's scores beside FD (results["human"], from workflows/judge), and the Spearman
    rank correlation of -FD with each human score; "" without a study."""
    h = results.get("human")
    if not h:
        return ""
    fd = {e["name"]: e.get("metrics", {}).get("fid") for e in results["families"] if e["status"] == "ok"}
    names = [n for n in fd if n in h["models"]] + (["real"] if "real" in h["models"] else [])

    def cell(m, key):
        if not m or not m.get("judgements"):
            return "<td>—</td>"
        return (f'<td>{_fmt(m[key])} <small>[{_fmt(m["low"])}, {_fmt(m["high"])}]</small> '
                f'<small class="muted">n={m["judgements"]}</small></td>')

    rows = "".join(f'<tr><th scope="row">{escape(n)}</th><td>{_fmt(fd.get(n))}</td>'
                   f'{cell(h["models"][n].get("pairwise"), "strength")}{cell(h["models"][n].get("realfake"), "error")}'
                   '</tr>' for n in names)
    agree = "; ".join(f'{escape(k.replace("_", " "))}: ρ = {a["spearman"]:+.2f} over {len(a["models"])} models'
                      for k, a in (h.get("agreement") or {}).items() if a)
    return (f'<div class="scroll"><table id="people"><caption>People\'s judgements ({h["judgements"]} from '
            f'{h["raters"]} raters; study <code>{escape(h["study"])}</code>) beside FD</caption><thead><tr>'
            '<th scope="col">family</th><th scope="col">FD ↓</th><th scope="col">Bradley-Terry strength ↑</th>'
            '<th scope="col">judged real (error rate) ↑</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div><p class="muted">{escape("; ".join(h.get("methods", {}).values()))}'
            f'. Spearman rank correlation of −FD with the human score (+1: FD orders the families as people do): '
            f'{agree or "needs two families with both"}. Raters failing attention checks: {h["careless_raters"]} '
            '(excluded).</p>')


def _pair(label: str, left: str, right: str) -> str:
    return f'<div class="pair"><h3>{escape(label)}</h3>{left or "<p>—</p>"}{right or "<p>—</p>"}</div>'


def _notes(ok: list[dict]) -> str:
    items = []
    for e in ok:
        for k, note in (e.get("notes") or {}).items():
            items.append(f"<li><strong>{escape(e['name'])}</strong>, {escape(k)}: {escape(str(note))}</li>")
    if not items:
        return ""
    return f'<details><summary>Notes on individual metrics</summary><ul>{"".join(items)}</ul></details>'


def write_html(results: dict, base, path) -> Path:
    """Write the page to `path` (atomically); figure paths in `results` are relative to `base`."""
    return atomic_write_bytes(path, build_html(results, base).encode("utf-8"))
