"""AnnData-facing tools (scanpy's ``sc.tl`` shape)."""

from ._harvest import harvest
from ._predict import predict_cell_types

__all__ = ["harvest", "predict_cell_types"]
