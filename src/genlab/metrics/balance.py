"""Class balance of generated samples, judged by a classifier trained on the real data.

    q_k   = (1/M) #{j : argmax_c probs_j[c] = k}           predicted-class histogram (ties: lowest k)
    KL    = sum_k p_k log(p_k / q~_k),  q~ = (q + eps) / (1 + K eps)     p = data class frequencies

KL(p_data || p_gen) is the direction that punishes mode dropping: a class the data has but
the generator never produces (q_k -> 0) contributes p_k log(p_k / eps), large, whereas the
reverse KL(p_gen || p_data) gives dropped classes weight 0 and would hardly notice. eps
(1e-6 by default) keeps it finite: one dropped class of frequency 1/10 adds about
0.1 * log(1e5) = 1.15 nats. A perfectly balanced generator scores ~0, up to the sampling
noise of M draws (about (K - 1) / (2M)).
"""

from __future__ import annotations

import torch

from .errors import MetricError, as_tensor

#: a class counts as dropped when it gets fewer than this fraction of its expected count M p_k
DROP_FRACTION = 0.1


def class_balance(probs_fake, data_class_freq, eps: float = 1e-6, drop_fraction: float = DROP_FRACTION) -> dict:
    """Histogram of classifier predictions on generated samples against the data's class frequencies.

    probs_fake [M, K]: class probabilities of each generated sample (rows sum to 1);
    data_class_freq [K]: class frequencies or counts of the real data (normalised here).

    Returns {"kl": KL(p_data || q~) in nats (module docstring), "classes_dropped": number of
    classes with p_k > 0 predicted for fewer than drop_fraction * M * p_k samples (with the
    default 10% and a uniform p_data over 10 classes and M = 10000: fewer than 100 of the
    expected 1000; for small M it means "never predicted"), "mean_confidence": mean over
    samples of max_k probs, "histogram": [K] fractions q_k, "counts": [K] ints, "n": M}.
    """
    probs = as_tensor(probs_fake).detach().double()
    p = as_tensor(data_class_freq).detach().double().flatten().to(probs.device)
    if probs.dim() != 2 or len(probs) == 0 or probs.shape[1] != len(p):
        raise MetricError(f"class_balance: need probs [M, K] and K class frequencies "
                          f"(got {tuple(probs.shape)} and {len(p)})")
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise MetricError("class_balance: probabilities must be finite and non-negative")
    if ((probs.sum(1) - 1).abs() > 1e-3).any():
        raise MetricError("class_balance: rows of probs_fake must sum to 1 (softmax the logits first)")
    if not torch.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise MetricError("class_balance: data class frequencies must be non-negative with a positive sum")
    m, k = probs.shape
    p = p / p.sum()
    counts = torch.bincount(probs.argmax(1), minlength=k)
    q = counts.double() / m
    q_smooth = (q + eps) / (1 + k * eps)
    present = p > 0
    kl = (p[present] * (p[present] / q_smooth[present]).log()).sum()
    dropped = present & (counts.double() < drop_fraction * m * p)
    return {"kl": float(kl), "classes_dropped": int(dropped.sum()),
            "mean_confidence": float(probs.max(1).values.mean()), "histogram": q.tolist(),
            "counts": counts.tolist(), "n": m}
