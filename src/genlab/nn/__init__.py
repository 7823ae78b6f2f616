"""Building blocks shared by families: MLP, conv encoder/decoder, UNet, time MLP, embeddings."""

from .mlp import MLP, activation
from .conv import ConvEncoder, ConvDecoder
from .embed import LabelEmbedding, one_hot, sinusoidal_embedding
from .unet import UNet
from .timemlp import TimeMLP
from .diffusion import Denoiser, drop_condition, guided, ot_coupling
from .coders import Encoder, Decoder, resolve_net
from .flows import (ActNorm, AffineCoupling, FlowModel, FlowSequence, InvertibleLinearLU, MADE,
                    MaskedAffineAutoregressive, MaskedSplineAutoregressive, MultiScale, Permutation, Squeeze,
                    rational_quadratic_spline)

__all__ = ["MLP", "activation", "ConvEncoder", "ConvDecoder", "one_hot", "Encoder", "Decoder", "resolve_net",
           "sinusoidal_embedding", "LabelEmbedding", "UNet", "TimeMLP",
           "Denoiser", "drop_condition", "guided", "ot_coupling",
           "ActNorm", "AffineCoupling", "FlowModel", "FlowSequence", "InvertibleLinearLU", "MADE",
           "MaskedAffineAutoregressive", "MaskedSplineAutoregressive", "MultiScale", "Permutation", "Squeeze",
           "rational_quadratic_spline"]
