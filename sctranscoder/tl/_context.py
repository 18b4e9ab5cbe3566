"""Prompts must fit the model's context: a prompt longer than it is refused with the number of genes that fits,
never silently cut (a cut prompt loses its answer position and the genes' spans)."""

from __future__ import annotations

import numpy as np


def check_context(model, input_ids, token_gene, n_genes_per_cell, obs_names) -> None:
    """Raise a ``ValueError`` when any cell's tokens exceed ``model``'s ``max_position_embeddings``."""
    limit = getattr(getattr(model.model, "config", None), "max_position_embeddings", None)
    if not limit or not len(input_ids):
        return
    lengths = np.array([len(ids) for ids in input_ids])
    too_long = np.flatnonzero(lengths > limit)
    if not too_long.size:
        return
    worst = int(too_long[np.argmax(lengths[too_long])])
    gene_tokens = int((np.asarray(token_gene[worst]) >= 0).sum())
    genes = int(n_genes_per_cell[worst])
    other = int(lengths[worst]) - gene_tokens  # template text, answer, special tokens
    fits = int((limit - other) // (gene_tokens / max(genes, 1))) if gene_tokens else 0
    advice = (f"pass n_genes={max(fits, 1)} or fewer (sct.pp.cell_sentences / the model's prompt settings)"
              if fits >= 1 else "shorten the prompt template: its text alone is longer than the context")
    raise ValueError(f"{too_long.size} of {len(input_ids)} cells' prompts are longer than the model's context of "
                     f"{limit} positions; the longest, cell {obs_names[worst]!r}, has {lengths[worst]} tokens for "
                     f"{genes} genes. Prompts are not truncated (the answer and the last genes would be lost): "
                     f"{advice}.")
