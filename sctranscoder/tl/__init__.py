"""AnnData-facing tools (scanpy's ``sc.tl`` shape)."""

from ._predict import predict_cell_types

__all__ = ["predict_cell_types"]
