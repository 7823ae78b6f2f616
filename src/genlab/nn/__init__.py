"""Building blocks shared by families: MLP, conv encoder/decoder, embeddings."""

from .mlp import MLP, Flatten, activation
from .conv import ConvEncoder, ConvDecoder
from .embed import one_hot, default_labels
from .coders import Encoder, Decoder, resolve_net

__all__ = ["MLP", "Flatten", "activation", "ConvEncoder", "ConvDecoder", "one_hot", "default_labels", "Encoder", "Decoder",
           "resolve_net"]
