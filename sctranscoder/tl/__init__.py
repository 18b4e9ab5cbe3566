"""AnnData-facing tools (scanpy's ``sc.tl`` shape)."""

from ..genesets import headline_sets, is_disease_term, short_term
from ..prompt import EncodedCells, encode_cells, prompt_settings
from ._cards import feature_cards
from ._circuit_supernodes import Supernodes, SupernodeSettings, cell_type_supernodes
from ._circuits import CellTypeCircuit, cell_type_circuit
from ._controls import control_clause, control_headline, feature_controls
from ._de_embedding import gene_de_embedding, gene_tokens
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
from ._knockout import knockout_genes
from ._knockout_settings import Knockouts
from ._knockout_vs_null import knockout_test
from ._perturb import perturb_features
from ._plan import Plan, TrainingPlan, plan, plan_training
from ._predict import predict_cell_types
from ._spelling import (
    beyond_spelling_fraction,
    enrich_beyond_spelling,
    gene_families,
    leading_subwords,
    name_families,
    spelling_scores,
)
from ._steer import steer_supernode, steering_matrix
from ._supernodes import circuit_supernodes
from ._transcoders import evaluate_transcoders, held_out_mask, train_transcoders
from ._validate import validate_circuit

__all__ = [
    "EncodedCells",
    "encode_cells",
    "prompt_settings",
    "short_term",
    "alive_features",
    "beyond_spelling_fraction",
    "enrich_beyond_spelling",
    "gene_families",
    "leading_subwords",
    "name_families",
    "spelling_scores",
    "answer_contrast",
    "cell_type_circuit",
    "cell_type_supernodes",
    "SupernodeSettings",
    "steer_supernode",
    "steering_matrix",
    "Supernodes",
    "circuit_supernodes",
    "CellTypeCircuit",
    "enrich_circuit",
    "enrich_features",
    "enriched_fraction",
    "evaluate_transcoders",
    "feature_activity",
    "feature_cards",
    "feature_controls",
    "control_headline",
    "control_clause",
    "feature_background",
    "feature_genes",
    "feature_specificity",
    "features_to_obs",
    "gene_de_embedding",
    "gene_tokens",
    "harvest",
    "plan",
    "plan_training",
    "TrainingPlan",
    "Plan",
    "headline_sets",
    "is_disease_term",
    "held_out_mask",
    "knockout_genes",
    "knockout_test",
    "perturb_features",
    "predict_cell_types",
    "prerank_feature",
    "train_transcoders",
    "validate_circuit",
    "Knockouts",
    "visible_genes",
]


def __getattr__(name):
    # names that moved into the circuit core, which needs torch at import: loaded on first use
    if name == "answer_contrast":
        from ..circuits import answer_contrast

        return answer_contrast
    raise AttributeError(f"module 'sctranscoder.tl' has no attribute {name!r}")
