"""One module per family; importing this package registers them all."""

from .base import MODELS, GenerativeModel, Player, create_model, get_family, hyperparameters, load, register_model
from . import pca, ae, vae, gan  # noqa: F401  (register the families)
from . import realnvp, maf  # noqa: F401  (normalizing flows)
from . import ddpm, fm  # noqa: F401  (diffusion, flow matching)

__all__ = ["MODELS", "GenerativeModel", "Player", "create_model", "get_family", "hyperparameters", "load",
           "register_model"]
