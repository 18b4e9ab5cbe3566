"""Prompts and the model's context: a prompt longer than the positions a model can encode is refused with the
number of genes that fits, never silently cut (a cut prompt loses its answer position and the genes' spans).

Models with learned absolute positions (GPT-2, BERT) cannot run such a prompt at all (an index error deep in the
model); rotary models (GPT-NeoX, Llama, Gemma) can, on positions they were never trained on, so for them it is a
logged warning with the same advice."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def learned_positions(model, limit: int) -> bool:
    """Whether ``model`` reads positions from a learned table of ``limit`` rows (it cannot go past them)."""
    import torch

    return any(isinstance(module, torch.nn.Embedding) and module.num_embeddings == limit
               and ("pos" in name or name.endswith("wpe")) for name, module in model.named_modules())


def check_context(model, input_ids, token_gene, n_genes_per_cell, obs_names) -> None:
    """When any cell's tokens exceed ``model``'s ``max_position_embeddings``: a ``ValueError`` for learned
    positions, a logged warning for rotary ones."""
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
    found = (f"{too_long.size} of {len(input_ids)} cells' prompts are longer than the model's context of {limit} "
             f"positions; the longest, cell {obs_names[worst]!r}, has {lengths[worst]} tokens for {genes} genes.")
    if learned_positions(model.model, limit):
        raise ValueError(f"{found} This model's learned positions stop there, and prompts are not truncated (the "
                         f"answer and the last genes would be lost): {advice}.")
    logger.warning("%s Its rotary positions run past it, on positions it was never trained on: %s.", found, advice)
