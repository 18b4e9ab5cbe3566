"""Preprocessing: expression to cell sentences, their inverse, prompts and exports."""

from ._export import to_dataset, write_sentences
from ._inverse import fit_rank_expression, reconstruct_expression
from ._prompts import prompts
from ._rerank import knockout_sentences, prompt_text, rerank_row
from ._sentences import cell_sentences
from ._settings import PromptSettings

__all__ = [
    "PromptSettings",
    "cell_sentences",
    "fit_rank_expression",
    "knockout_sentences",
    "prompt_text",
    "prompts",
    "reconstruct_expression",
    "rerank_row",
    "to_dataset",
    "write_sentences",
]
