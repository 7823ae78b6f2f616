"""One module per family; importing this package registers them all."""

from .base import MODELS, GenerativeModel, Player, create_model, get_family, hyperparameters, load, register_model
from . import pca, ae, vae, gan, realnvp, maf, ddpm, fm
from . import pixelcnn

FAMILY_MODULES = (pca, ae, vae, gan, realnvp, maf, ddpm, fm, pixelcnn)  # importing them registers the families

__all__ = ["MODELS", "GenerativeModel", "Player", "create_model", "get_family", "hyperparameters", "load",
           "register_model"]
