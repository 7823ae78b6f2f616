"""Anomaly detection quality of a score (higher = more anomalous; anomalous = positive class).

    AUROC = P(s_anomalous > s_normal) + 1/2 P(s_anomalous = s_normal)   (1 perfect, 0.5 chance)
    AUPRC = average precision, sum_n (R_n - R_{n-1}) P_n over score thresholds
            (chance level = fraction of anomalies)

Both via sklearn.metrics (roc_auc_score, average_precision_score).
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import MetricError, as_tensor


def _labelled(scores_normal, scores_anomalous) -> tuple[np.ndarray, np.ndarray]:
    a = as_tensor(scores_normal).detach().cpu().double().flatten().numpy()
    b = as_tensor(scores_anomalous).detach().cpu().double().flatten().numpy()
    if len(a) == 0 or len(b) == 0:
        raise MetricError(f"anomaly metrics need normal and anomalous scores (got {len(a)} and {len(b)})")
    s = np.concatenate([a, b])
    if not np.isfinite(s).all():
        raise MetricError(f"anomaly metrics: {int((~np.isfinite(s)).sum())} scores are NaN or Inf")
    return np.concatenate([np.zeros(len(a)), np.ones(len(b))]), s


def auroc(scores_normal, scores_anomalous) -> float:
    """Area under the ROC curve; ties count one half (identical score sets give 0.5)."""
    from sklearn.metrics import roc_auc_score  # imported here: sklearn.metrics takes ~0.7 s to import

    return float(roc_auc_score(*_labelled(scores_normal, scores_anomalous)))


def auprc(scores_normal, scores_anomalous) -> float:
    """Area under the precision-recall curve as average precision (anomalous = positive)."""
    from sklearn.metrics import average_precision_score

    return min(1.0, float(average_precision_score(*_labelled(scores_normal, scores_anomalous))))


@torch.no_grad()
def scores_of(model, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """model.anomaly_score over x in batches on the model's device (eval mode, no grad), on CPU."""
    if not hasattr(model, "anomaly_score"):
        raise MetricError(f"model family '{getattr(model, 'family', type(model).__name__)}' has no anomaly_score")
    was_training = model.training
    model.eval()
    try:
        dev = getattr(model, "device", None) or next(model.parameters()).device
        return torch.cat([model.anomaly_score(b.to(dev)).detach().flatten().cpu() for b in x.split(batch_size)])
    finally:
        model.train(was_training)


def anomaly_report(model, normal_x: torch.Tensor, anomalous_x: torch.Tensor, batch_size: int = 256) -> dict:
    """AUROC and AUPRC of `model.anomaly_score` separating anomalous_x (positive) from normal_x.

    Returns {"auroc", "auprc", "n_normal", "n_anomalous", "score_normal_mean",
             "score_anomalous_mean", "auprc_chance"} (auprc_chance = fraction of anomalies).
    """
    s0, s1 = scores_of(model, normal_x, batch_size), scores_of(model, anomalous_x, batch_size)
    return {"auroc": auroc(s0, s1), "auprc": auprc(s0, s1), "n_normal": len(s0), "n_anomalous": len(s1),
            "score_normal_mean": float(s0.double().mean()), "score_anomalous_mean": float(s1.double().mean()),
            "auprc_chance": len(s1) / (len(s0) + len(s1))}
