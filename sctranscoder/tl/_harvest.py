"""Harvest a C2S model's MLP activations over the cells of an AnnData."""

from __future__ import annotations

import hashlib

import numpy as np


def _obs_fingerprint(adata) -> str:
    """A short hash of the cell names, so a resumed harvest cannot silently switch cells."""
    digest = hashlib.sha1()
    for name in adata.obs_names:
        digest.update(name.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cell_encoder(adata, tokenizer, *, n_genes: int, organism: str, template=0, label_key: str | None = None,
                 add_special_tokens: bool = False):
    """``encode(start, stop)`` for :func:`sctranscoder.harvest.harvest`: prompts of cells ``start..stop-1``
    tokenized, with each token's gene.

    Prompts are tokenized as in training and prediction (prompt, then the answer
    and EOS when ``label_key`` is given); gene spans come from the tokenizer's
    character offsets, so subword and word-level tokenizers are both handled.
    """
    from .. import pp
    from ..get._sentences import ranked_genes, stored_genes
    from ..harvest import Documents
    from ..models._spans import spans_from_offsets

    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("Harvesting needs a fast tokenizer (character offsets for gene spans).")
    name_lengths = np.char.str_len(np.asarray(stored_genes(adata), dtype=str)).astype(np.int64)
    special_ids = np.asarray(sorted(set(tokenizer.all_special_ids)), np.int64)

    def encode(start: int, stop: int) -> Documents:
        cells = adata[start:stop]
        table = pp.prompts(cells, n_genes=n_genes, organism=organism, template=template, label_key=label_key)
        if (table.sentence_start < 0).any():
            raise ValueError("The prompt template has no {cell_sentence} field; gene spans need the sentence.")
        indptr, ordered = ranked_genes(cells, n_genes)
        encoded = tokenizer(list(table.prompt), return_offsets_mapping=True, add_special_tokens=add_special_tokens)
        answers = None
        if label_key is not None:
            answers = tokenizer(list(table.response), add_special_tokens=False)["input_ids"]
        ids_list, genes_list, spans_ids = [], [], []
        for i in range(stop - start):
            genes = ordered[indptr[i] : indptr[i + 1]]
            step = name_lengths[genes] + 1
            starts = table.sentence_start.iat[i] + np.cumsum(step) - step
            char_spans = np.stack([starts, starts + name_lengths[genes]], axis=1)
            token_gene = spans_from_offsets(encoded["offset_mapping"][i], char_spans)
            found = np.unique(token_gene[token_gene >= 0])
            if found.size != genes.size:
                raise ValueError(f"Cell {cells.obs_names[i]!r}: {genes.size - found.size} of its genes got no token.")
            ids = np.asarray(encoded["input_ids"][i], np.int64)
            if answers is not None:
                answer = np.asarray(answers[i] + [tokenizer.eos_token_id], np.int64)
                ids = np.concatenate([ids, answer])
                token_gene = np.concatenate([token_gene, np.full(answer.size, -1)])
            ids_list.append(ids)
            genes_list.append(token_gene)
            spans_ids.append(genes)
        special = [np.isin(ids, special_ids) for ids in ids_list]
        return Documents(ids_list, genes_list, spans_ids, special)

    return encode


def harvest(
    adata,
    model,
    layers=None,
    store_dir=None,
    *,
    n_genes: int | None = None,
    organism: str | None = None,
    label_key: str | None = None,
    template=0,
    batch_size: int = 16,
    chunk_size: int = 256,
    dtype: str = "float16",
    only_genes: bool = False,
    drop_special: bool = True,
    subsample: float = 1.0,
    add_special_tokens: bool = False,
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
    n_genes, organism
        Prompt settings; default: those the model was trained with.
    label_key
        ``adata.obs`` column: append each cell's answer (``"{label}."`` + EOS), as in training.
    template
        Prompt template (see :func:`sctranscoder.pp.prompts`).
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
    add_special_tokens
        Let the tokenizer add its special tokens (BOS) to prompts; the default
        model was trained without them, Gemma models expect a BOS.
    seed
        Seed of the token subsampling.
    progress
        Progress bar with tokens/s.

    Returns
    -------
    The store. Row metadata ``document`` is the cell's row in ``adata``,
    ``gene`` its position in the cell sentence, ``gene_id`` its index in
    ``store.info["genes"]``.
    """
    from .. import pp
    from ..get._sentences import stored_genes
    from ..harvest import MemoryStore, mlp_sites
    from ..harvest import harvest as harvest_core
    from ..pp._sentences import RANKS_KEY
    from ._predict import _prompt_settings

    n_genes, organism = _prompt_settings(model, n_genes, organism)
    if RANKS_KEY not in adata.obsm:
        pp.cell_sentences(adata, n_genes=n_genes, progress=progress)
    if label_key is not None and label_key not in adata.obs:
        raise KeyError(f"label_key={label_key!r} is not a column of adata.obs.")
    genes = [str(g) for g in stored_genes(adata)]
    info = {"model": str(model.name_or_path), "n_genes": n_genes, "organism": organism, "template": template,
            "label_key": label_key, "add_special_tokens": add_special_tokens, "cells": _obs_fingerprint(adata),
            "genes": genes}
    encode = cell_encoder(adata, model.tokenizer, n_genes=n_genes, organism=organism, template=template,
                          label_key=label_key, add_special_tokens=add_special_tokens)
    if store_dir is None:
        sites = mlp_sites(model.model, layers)
        width = {layer: int(model.model.config.hidden_size) for layer in sites}
        store_dir = MemoryStore(list(sites), width, width, dtype=dtype, info=info)
    model.model.eval()
    return harvest_core(model.model, encode, adata.n_obs, store_dir, layers, chunk_size=chunk_size,
                        batch_size=batch_size, dtype=dtype, only_spans=only_genes, drop_special=drop_special,
                        subsample=subsample, seed=seed, info=info, progress=progress)
