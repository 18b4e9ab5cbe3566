"""Which genes drive each transcoder feature directly, from the model's weights alone."""

from __future__ import annotations

import pandas as pd


def gene_tokens(tokenizer, genes) -> dict:
    """Each gene's token ids as it appears inside a cell sentence (after a space)."""
    encoded = tokenizer([f" {g}" for g in genes], add_special_tokens=False)["input_ids"]
    return {str(g): ids for g, ids in zip(genes, encoded) if ids}


def gene_de_embedding(model, transcoders: dict, layer: int, genes, *, aggregate: str = "max") -> pd.DataFrame:
    """Features x genes: the pre-activation each gene's tokens give each feature through the residual stream
    alone (:func:`sctranscoder.circuits.de_embedding`), aggregated over the gene's tokens.

    Parameters
    ----------
    model
        A :class:`sctranscoder.models.C2SModel`.
    transcoders
        ``{layer: Transcoder}``.
    genes
        Gene names (e.g. ``sct.get.stored_genes(adata)`` or ``adata.var_names``).
    aggregate
        ``"max"`` (the gene's strongest token), ``"mean"`` or ``"sum"``.
    """
    from ..circuits import de_embedding

    if layer not in transcoders:
        raise ValueError(f"No transcoder for layer {layer}; have layers {sorted(transcoders)}.")
    groups = gene_tokens(model.tokenizer, list(genes))
    scores, names = de_embedding(model.model, transcoders[layer], layer, groups, aggregate=aggregate)
    return pd.DataFrame(scores, columns=pd.Index(names, name="gene")).rename_axis("feature")
