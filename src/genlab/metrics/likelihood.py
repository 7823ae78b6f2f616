"""Negative log-likelihoods in nats, bits, and bits per dimension (bpd).

The formulas live below the families, in `genlab.nn.density` (a flow reports its training
bits/dim with the same function evaluation uses); this module is their name in the metrics.
`bits_per_dim`'s docstring derives the dequantisation bound and the `scale_log_det` convention.
"""

from __future__ import annotations

from ..nn.density import LOG2, bits_per_dim, nats_to_bits

__all__ = ["LOG2", "bits_per_dim", "nats_to_bits"]
