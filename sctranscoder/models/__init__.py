"""C2S language models: loading, gene-to-token spans, training, the bundled default model."""

from ._controls import reinitialized
from ._default import default
from ._load import C2SModel, hub_reachable, load
from ._recipe import TrainConfig
from ._scoring import answer_tokens, generate_answers, parse_answer, score_candidates
from ._spans import GeneSpans, gene_spans
from ._tokenizer import train_tokenizer
from ._train import default_config, train_c2s
from ._training_plan import TrainingPlan, plan_training
from ._variant_scoring import score_variants

__all__ = [
    "C2SModel",
    "answer_tokens",
    "GeneSpans",
    "default",
    "default_config",
    "gene_spans",
    "generate_answers",
    "hub_reachable",
    "load",
    "parse_answer",
    "plan_training",
    "reinitialized",
    "score_candidates",
    "score_variants",
    "TrainConfig",
    "TrainingPlan",
    "train_c2s",
    "train_tokenizer",
]
