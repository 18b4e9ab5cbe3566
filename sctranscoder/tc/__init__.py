"""Transcoders: sparse, wide replacements of MLPs; training, faithfulness metrics, save and load (model-agnostic)."""

from ._config import ACTIVATIONS, TranscoderConfig
from ._controls import firing_rates, random_directions
from ._evaluate import (
    as_replacements,
    evaluate,
    mlp_output_means,
    spliced_cross_entropy,
    token_batches,
)
from ._io import load, load_layers, save
from ._live import live_memory, resolve_precision, train_live
from ._model import Transcoder, TranscoderOutput, fraction_of_variance_unexplained
from ._pooling import ActivityPool
from ._registry import Activation, activation_names, get_activation, register_activation, unregister_activation
from ._schedule import learning_rate_factor
from ._sizing import config_for_width, step_seconds
from ._table import evaluation_table, loss_rows, reconstruction_rows, with_layer_means
from ._train import train
from ._trainer import TranscoderTrainer

__all__ = [
    "firing_rates",
    "random_directions",
    "ActivityPool",
    "ACTIVATIONS",
    "Activation",
    "Transcoder",
    "TranscoderConfig",
    "TranscoderOutput",
    "TranscoderTrainer",
    "activation_names",
    "as_replacements",
    "config_for_width",
    "evaluate",
    "evaluation_table",
    "fraction_of_variance_unexplained",
    "get_activation",
    "learning_rate_factor",
    "live_memory",
    "load",
    "load_layers",
    "loss_rows",
    "mlp_output_means",
    "reconstruction_rows",
    "register_activation",
    "resolve_precision",
    "save",
    "spliced_cross_entropy",
    "step_seconds",
    "token_batches",
    "train",
    "train_live",
    "unregister_activation",
    "with_layer_means",
]
