"""Image grids, plots and (later) the HTML report."""

from .figures import image_grid, save_samples, save_reconstructions, save_loss_curve, scatter_2d

__all__ = ["image_grid", "save_samples", "save_reconstructions", "save_loss_curve", "scatter_2d"]
