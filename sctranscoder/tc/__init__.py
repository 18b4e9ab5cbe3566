"""Transcoders: sparse, wide replacements of MLPs; training, faithfulness metrics, save and load (model-agnostic)."""

from ._config import ACTIVATIONS, TranscoderConfig
from ._evaluate import (
    as_replacements,
    evaluate,
    mlp_output_means,
    spliced_cross_entropy,
    token_batches,
)
from ._io import load, load_layers, save
from ._model import Transcoder, TranscoderOutput, fraction_of_variance_unexplained
from ._train import learning_rate_factor, train

__all__ = [
    "ACTIVATIONS",
    "Transcoder",
    "TranscoderConfig",
    "TranscoderOutput",
    "as_replacements",
    "evaluate",
    "fraction_of_variance_unexplained",
    "learning_rate_factor",
    "load",
    "load_layers",
    "mlp_output_means",
    "save",
    "spliced_cross_entropy",
    "token_batches",
    "train",
]
