"""AnnData-facing tools (scanpy's ``sc.tl`` shape)."""

from ._circuits import CellTypeCircuit, answer_contrast, cell_type_circuit
from ._de_embedding import gene_de_embedding, gene_tokens
from ._encode import EncodedCells, encode_cells
from ._enrich import enrich_circuit, enrich_features, enriched_fraction, prerank_feature
from ._features import (
    alive_features,
    feature_activity,
    feature_background,
    feature_genes,
    feature_specificity,
    features_to_obs,
    visible_genes,
)
from ._harvest import harvest
from ._predict import predict_cell_types
from ._spine import prompt_settings
from ._supernodes import circuit_supernodes
from ._transcoders import evaluate_transcoders, held_out_mask, train_transcoders

__all__ = [
    "EncodedCells",
    "encode_cells",
    "prompt_settings",
    "alive_features",
    "answer_contrast",
    "cell_type_circuit",
    "circuit_supernodes",
    "CellTypeCircuit",
    "enrich_circuit",
    "enrich_features",
    "enriched_fraction",
    "evaluate_transcoders",
    "feature_activity",
    "feature_background",
    "feature_genes",
    "feature_specificity",
    "features_to_obs",
    "gene_de_embedding",
    "gene_tokens",
    "harvest",
    "held_out_mask",
    "predict_cell_types",
    "prerank_feature",
    "train_transcoders",
    "visible_genes",
]
