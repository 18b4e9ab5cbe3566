"""Harvest MLP inputs and outputs of causal LMs and encoders into activation stores (model-agnostic core)."""

from ._architectures import (
    LAYOUTS,
    Layout,
    MLPSite,
    attention_outputs,
    blocks_of,
    final_hidden,
    first_block,
    layout_of,
    mlp_sites,
    n_layers,
)
from ._budget import (
    DTYPE_BYTES,
    HEADROOM,
    METADATA_BYTES,
    Plan,
    available_memory_bytes,
    duration_text,
    free_disk_bytes,
    layer_text,
    recommend,
    size_text,
    store_bytes,
    stored_rows,
)
from ._config import HarvestConfig, StreamConfig
from ._harvest import Documents, harvest, last_of_span, pad_ids
from ._hooks import MLPCapture, replace_mlp
from ._store import METADATA, ActivationStore, MemoryStore
from ._stream import buffer_bytes, stream, stream_layers
from ._timing import forward_seconds, warm_up

__all__ = [
    "DTYPE_BYTES",
    "HEADROOM",
    "HarvestConfig",
    "LAYOUTS",
    "METADATA",
    "METADATA_BYTES",
    "Plan",
    "ActivationStore",
    "Documents",
    "Layout",
    "MLPCapture",
    "MLPSite",
    "MemoryStore",
    "StreamConfig",
    "attention_outputs",
    "available_memory_bytes",
    "buffer_bytes",
    "duration_text",
    "blocks_of",
    "final_hidden",
    "first_block",
    "forward_seconds",
    "free_disk_bytes",
    "harvest",
    "last_of_span",
    "layer_text",
    "layout_of",
    "mlp_sites",
    "n_layers",
    "pad_ids",
    "recommend",
    "size_text",
    "replace_mlp",
    "store_bytes",
    "stored_rows",
    "stream",
    "stream_layers",
    "warm_up",
]
