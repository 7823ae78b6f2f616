"""One module per family; importing this package registers them all."""

from .base import (MODELS, GenerativeModel, Player, create_model, get_family, hparam_ranges, hyperparameters, load,
                   register_model)
from . import pca, gmm, ae, vae, gan, realnvp, maf, pixelcnn, ddpm, fm, pix2pix, cyclegan
from .latent import LatentModel  # not a family: any family over another run's codes (registers a wrapper)

FAMILY_MODULES = (pca, gmm, ae, vae, gan, realnvp, maf, pixelcnn, ddpm, fm, pix2pix, cyclegan)  # importing them registers the families

__all__ = ["MODELS", "GenerativeModel", "Player", "create_model", "get_family", "hparam_ranges", "hyperparameters",
           "load", "register_model", "LatentModel"]
