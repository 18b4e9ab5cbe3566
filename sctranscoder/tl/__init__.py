"""AnnData-facing tools (scanpy's ``sc.tl`` shape)."""

from ._circuits import CellTypeCircuit, answer_contrast, cell_type_circuit
from ._de_embedding import gene_de_embedding, gene_tokens
from ._harvest import harvest
from ._predict import predict_cell_types
from ._transcoders import evaluate_transcoders, held_out_mask, train_transcoders

__all__ = [
    "CellTypeCircuit",
    "answer_contrast",
    "cell_type_circuit",
    "evaluate_transcoders",
    "gene_de_embedding",
    "gene_tokens",
    "harvest",
    "held_out_mask",
    "predict_cell_types",
    "train_transcoders",
]
