"""Where a model meets cells: the prompt settings every ``sct.tl`` function reads (one place), the model's
context guard, and cells' prompts tokenized once (:class:`EncodedCells`) and passed along."""

from ._context import check_context, learned_positions
from ._encode import EncodedCells, encode_cells
from ._resolve import check_overrides, resolve_cells, resolve_settings
from ._settings import UNKNOWN_GENE_WARNING, prompt_settings, warn_unknown_genes, warn_unknown_labels

__all__ = [
    "EncodedCells",
    "UNKNOWN_GENE_WARNING",
    "check_context",
    "check_overrides",
    "encode_cells",
    "learned_positions",
    "prompt_settings",
    "resolve_cells",
    "resolve_settings",
    "warn_unknown_genes",
    "warn_unknown_labels",
]
