"""Harvest MLP inputs and outputs of causal LMs and encoders into activation stores (model-agnostic core)."""

from ._architectures import (
    LAYOUTS,
    Layout,
    MLPSite,
    attention_outputs,
    blocks_of,
    first_block,
    layout_of,
    mlp_sites,
    n_layers,
)
from ._harvest import Documents, harvest, last_of_span
from ._hooks import MLPCapture, replace_mlp
from ._store import METADATA, ActivationStore, MemoryStore
from ._stream import buffer_bytes, stream, stream_layers

__all__ = [
    "LAYOUTS",
    "METADATA",
    "ActivationStore",
    "Documents",
    "Layout",
    "MLPCapture",
    "MLPSite",
    "MemoryStore",
    "attention_outputs",
    "buffer_bytes",
    "blocks_of",
    "first_block",
    "harvest",
    "last_of_span",
    "layout_of",
    "mlp_sites",
    "n_layers",
    "replace_mlp",
    "stream",
    "stream_layers",
]
