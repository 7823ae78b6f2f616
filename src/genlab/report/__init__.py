"""Image grids, plots and the HTML comparison page: draws results, trains nothing
(the pipeline that trains and evaluates for the page is `genlab.workflows.compare`)."""

from .figures import image_grid, save_samples, save_reconstructions, save_loss_curve, scatter_2d

__all__ = ["image_grid", "save_samples", "save_reconstructions", "save_loss_curve", "scatter_2d"]
