"""Building blocks shared by families: MLP, conv encoder/decoder, UNet, time MLP, embeddings,
and the generative parts: flow layers and model, GAN losses and nets, density helpers."""

from .mlp import MLP, activation
from .conv import ConvEncoder, ConvDecoder
from .embed import LabelEmbedding, one_hot, sinusoidal_embedding
from .unet import UNet
from .timemlp import TimeMLP
from .diffusion import Denoiser, drop_condition, guided, ot_coupling
from .coders import Encoder, Decoder, resolve_net
from .flow_model import FlowModel
from .flows import (ActNorm, AffineCoupling, FlowSequence, InvertibleLinearLU, MADE,
                    MaskedAffineAutoregressive, MaskedSplineAutoregressive, MultiScale, Permutation, Squeeze,
                    rational_quadratic_spline)
from .density import bits_per_dim, marginal_log_prob, standard_normal_log_prob
from .gan import LOSSES as GAN_LOSSES, Discriminator, Generator, MinibatchStd, discriminator_step, generator_step

__all__ = ["MLP", "activation", "ConvEncoder", "ConvDecoder", "one_hot", "Encoder", "Decoder", "resolve_net",
           "sinusoidal_embedding", "LabelEmbedding", "UNet", "TimeMLP",
           "Denoiser", "drop_condition", "guided", "ot_coupling",
           "ActNorm", "AffineCoupling", "FlowModel", "FlowSequence", "InvertibleLinearLU", "MADE",
           "MaskedAffineAutoregressive", "MaskedSplineAutoregressive", "MultiScale", "Permutation", "Squeeze",
           "rational_quadratic_spline",
           "bits_per_dim", "marginal_log_prob", "standard_normal_log_prob",
           "GAN_LOSSES", "Discriminator", "Generator", "MinibatchStd", "discriminator_step", "generator_step"]
