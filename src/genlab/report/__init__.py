"""Image grids, plots and the comparison page (`compare`, `report`: every family on one HTML page)."""

from .figures import image_grid, save_samples, save_reconstructions, save_loss_curve, scatter_2d
from .compare import compare, report

__all__ = ["image_grid", "save_samples", "save_reconstructions", "save_loss_curve", "scatter_2d", "compare", "report"]
