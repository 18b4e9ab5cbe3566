"""Preprocessing: expression to cell sentences, their inverse, prompts and exports."""

from ._export import to_dataset, write_sentences
from ._inverse import fit_rank_expression, reconstruct_expression
from ._prompts import prompts
from ._sentences import cell_sentences
from ._settings import PromptSettings

__all__ = [
    "PromptSettings",
    "cell_sentences",
    "fit_rank_expression",
    "prompts",
    "reconstruct_expression",
    "to_dataset",
    "write_sentences",
]
