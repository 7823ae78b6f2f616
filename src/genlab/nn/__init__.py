"""Building blocks shared by families: MLP, conv encoder/decoder, embeddings."""

from .mlp import MLP, activation
from .conv import ConvEncoder, ConvDecoder
from .embed import one_hot
from .coders import Encoder, Decoder, resolve_net

__all__ = ["MLP", "activation", "ConvEncoder", "ConvDecoder", "one_hot", "Encoder", "Decoder", "resolve_net"]
