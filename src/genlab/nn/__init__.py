"""Building blocks shared by families: MLP, conv encoder/decoder, UNet, time MLP, embeddings."""

from .mlp import MLP, activation
from .conv import ConvEncoder, ConvDecoder
from .embed import LabelEmbedding, one_hot, sinusoidal_embedding
from .unet import UNet
from .timemlp import TimeMLP
from .coders import Encoder, Decoder, resolve_net
from .flow_model import FlowModel
from .flows import (ActNorm, AffineCoupling, FlowSequence, InvertibleLinearLU, MADE,
                    MaskedAffineAutoregressive, MaskedSplineAutoregressive, MultiScale, Permutation, Squeeze,
                    rational_quadratic_spline)

__all__ = ["MLP", "activation", "ConvEncoder", "ConvDecoder", "one_hot", "Encoder", "Decoder", "resolve_net",
           "sinusoidal_embedding", "LabelEmbedding", "UNet", "TimeMLP",
           "ActNorm", "AffineCoupling", "FlowModel", "FlowSequence", "InvertibleLinearLU", "MADE",
           "MaskedAffineAutoregressive", "MaskedSplineAutoregressive", "MultiScale", "Permutation", "Squeeze",
           "rational_quadratic_spline"]
