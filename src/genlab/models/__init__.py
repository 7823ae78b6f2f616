"""One module per family; importing this package registers them all."""

from .base import MODELS, GenerativeModel, Player, create_model, get_family, hyperparameters, load, register_model
from . import pca, ae, vae, gan  # noqa: F401  (register the families)

__all__ = ["MODELS", "GenerativeModel", "Player", "create_model", "get_family", "hyperparameters", "load",
           "register_model"]
