"""Harvest a C2S model's MLP activations over the cells of an AnnData."""

from __future__ import annotations

import hashlib


def _obs_fingerprint(adata) -> str:
    """A short hash of the cell names, so a resumed harvest cannot silently switch cells."""
    digest = hashlib.sha1()
    for name in adata.obs_names:
        digest.update(name.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def harvest(
    adata,
    model,
    layers=None,
    store_dir=None,
    *,
    n_genes: int | None = None,
    organism: str | None = None,
    label_key: str | None = None,
    template=None,
    encoded=None,
    batch_size: int = 16,
    chunk_size: int = 256,
    dtype: str = "float16",
    only_genes: bool = False,
    drop_special: bool = True,
    subsample: float = 1.0,
    add_special_tokens: bool | None = None,
    seed: int = 0,
    progress: bool = True,
):
    """Run a C2S model over every cell's prompt and store its MLP inputs and outputs per token.

    Parameters
    ----------
    adata
        Cells; cell sentences are computed when missing.
    model
        A :class:`sctranscoder.models.C2SModel`.
    layers
        Layers to harvest (all when None).
    store_dir
        Folder of the :class:`sctranscoder.harvest.ActivationStore` (resumed if it
        holds a store made with the same settings); ``None`` keeps it in memory.
    n_genes, organism, template, add_special_tokens
        Change single prompt settings; default: those the model was trained with
        (:class:`sctranscoder.pp.PromptSettings`, read by :func:`sctranscoder.tl.encode_cells`).
    label_key
        ``adata.obs`` column: append each cell's answer (``"{label}."`` + EOS), as in training.
    encoded
        These cells already tokenized (:func:`sctranscoder.tl.encode_cells`, with the same
        ``label_key``); default: tokenize them here.
    batch_size
        Cells per forward pass.
    chunk_size
        Cells per shard (the unit of resuming).
    dtype
        Stored float type (``"float16"``, ``"bfloat16"`` or ``"float32"``).
    only_genes
        Keep only gene tokens (drop prompt text and answer tokens).
    drop_special
        Drop special tokens (BOS, EOS); padding is never stored.
    subsample
        Keep each token with this probability.
    seed
        Seed of the token subsampling.
    progress
        Progress bar with tokens/s.

    Returns
    -------
    The store; a store that would not fit on the disk raises an ``OSError`` before anything runs, whose
    message is the :func:`sctranscoder.tl.plan` of this harvest. Row metadata ``document`` is the cell's row in ``adata``,
    ``gene`` its position in the cell sentence, ``gene_id`` its index in
    ``store.info["genes"]``.
    """
    from ..harvest import MemoryStore, mlp_sites
    from ..harvest import harvest as harvest_core
    from ..prompt import resolve_cells
    from ._plan import check_store_fits

    if label_key is not None and label_key not in adata.obs:
        raise KeyError(f"label_key={label_key!r} is not a column of adata.obs.")
    encoded = resolve_cells(adata, model, encoded, label_key=label_key, with_answers=True, progress=progress,
                            n_genes=n_genes, organism=organism, template=template,
                            add_special_tokens=add_special_tokens)
    settings = encoded.settings
    info = {"model": str(model.name_or_path), "n_genes": settings.n_genes, "organism": settings.organism,
            "template": settings.template, "prompt": settings.to_dict(), "label_key": label_key,
            "add_special_tokens": settings.add_special_tokens, "cells": _obs_fingerprint(adata),
            "genes": [str(g) for g in encoded.genes]}
    if store_dir is not None and not isinstance(store_dir, MemoryStore):
        check_store_fits(adata, model, layers, store_dir, encoded=encoded, dtype=dtype, only_genes=only_genes,
                         drop_special=drop_special, label_key=label_key, subsample=subsample)
    if store_dir is None:
        sites = mlp_sites(model.model, layers)
        width = {layer: int(model.model.config.hidden_size) for layer in sites}
        store_dir = MemoryStore(list(sites), width, width, dtype=dtype, info=info)
    model.model.eval()
    return harvest_core(model.model, encoded.documents, adata.n_obs, store_dir, layers, chunk_size=chunk_size,
                        batch_size=batch_size, dtype=dtype, only_spans=only_genes, drop_special=drop_special,
                        subsample=subsample, seed=seed, info=info, progress=progress)
