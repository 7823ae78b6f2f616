"""The mathematics of evaluation: distances between feature sets, k-NN fidelity/diversity,
toy-set distances, likelihood units, anomaly detection and class balance."""

from .errors import MetricError
from .fid import (fid_from_features, frechet_distance, frechet_distance_report, gaussian_stats, kid, kid_report,
                  mmd2_unbiased, polynomial_kernel)
from .prdc import knn_radii, prdc, precision_recall
from .toy import kl_estimate, median_distance, mmd, sliced_wasserstein
from .likelihood import bits_per_dim, nats_to_bits
from .anomaly import anomaly_report, auprc, auroc, scores_of
from .balance import class_balance

__all__ = ["MetricError", "gaussian_stats", "frechet_distance", "frechet_distance_report", "fid_from_features",
           "kid", "kid_report", "polynomial_kernel", "mmd2_unbiased", "prdc", "precision_recall", "knn_radii",
           "mmd", "median_distance", "sliced_wasserstein", "kl_estimate", "bits_per_dim", "nats_to_bits",
           "auroc", "auprc", "anomaly_report", "scores_of", "class_balance"]
