"""Workflows over many runs: `compare` trains every family and writes one page; `report` writes it from existing runs."""

from .compare import compare, report

__all__ = ["compare", "report"]
