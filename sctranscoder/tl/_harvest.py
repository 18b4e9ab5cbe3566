"""Harvest a C2S model's MLP activations over the cells of an AnnData."""

from __future__ import annotations

import hashlib

from .._deprecations import renamed_keywords
from .._obs import require_obs_column


def _obs_fingerprint(adata) -> str:
    """A short hash of the cell names, so a resumed harvest cannot silently switch cells."""
    digest = hashlib.sha1()
    for name in adata.obs_names:
        digest.update(name.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@renamed_keywords(store_dir="out_dir")
def harvest(adata, model, layers=None, out_dir=None, cfg=None, *, n_genes: int | None = None,
            organism: str | None = None, label_key: str | None = None, template=None, encoded=None,
            add_special_tokens: bool | None = None, progress: bool = True, **settings):
    """Run a C2S model over every cell's prompt and store its MLP inputs and outputs per token.

    Parameters
    ----------
    adata
        Cells; cell sentences are computed when missing.
    model
        A :class:`sctranscoder.models.C2SModel`.
    layers
        Layers to harvest (all when None).
    out_dir
        Folder of the :class:`sctranscoder.harvest.ActivationStore` (resumed if it
        holds a store made with the same settings); ``None`` keeps it in memory. (Formerly ``store_dir``.)
    cfg
        A :class:`sctranscoder.harvest.HarvestConfig`: ``batch_size`` (cells per forward pass), ``chunk_size``
        (cells per shard, the unit of resuming), ``dtype`` (``"float16"``, ``"bfloat16"`` or ``"float32"``),
        ``drop_special``, ``subsample`` and its ``seed``. ``settings`` change single fields
        (``batch_size=8, dtype="float32"``); ``only_genes=True`` keeps only gene tokens (its ``only_spans``).
    n_genes, organism, template, add_special_tokens
        Change single prompt settings; default: those the model was trained with
        (:class:`sctranscoder.pp.PromptSettings`, read by :func:`sctranscoder.tl.encode_cells`).
    label_key
        ``adata.obs`` column: append each cell's answer (``"{label}."`` + EOS), as in training.
    encoded
        These cells already tokenized (:func:`sctranscoder.tl.encode_cells`, with the same
        ``label_key``); default: tokenize them here.
    progress
        Progress bar with tokens/s.

    Returns
    -------
    The store; a store that would not fit on the disk raises an ``OSError`` before anything runs, whose
    message is the :func:`sctranscoder.tl.plan` of this harvest. Row metadata ``document`` is the cell's row in ``adata``,
    ``gene`` its position in the cell sentence, ``gene_id`` its index in
    ``store.info["genes"]``.
    """
    from ..harvest import HarvestConfig, MemoryStore, mlp_sites
    from ..harvest import harvest as harvest_core
    from ..prompt import resolve_cells
    from ._plan import check_store_fits

    if "only_genes" in settings:  # the cells' word for the core's spans
        settings["only_spans"] = settings.pop("only_genes")
    cfg = HarvestConfig.build(cfg, **settings)
    if label_key is not None:
        require_obs_column(adata, label_key, role="the column whose answers follow the prompts")
    encoded = resolve_cells(adata, model, encoded, label_key=label_key, with_answers=True, progress=progress,
                            n_genes=n_genes, organism=organism, template=template,
                            add_special_tokens=add_special_tokens)
    prompt = encoded.settings
    info = {"model": str(model.name_or_path), "n_genes": prompt.n_genes, "organism": prompt.organism,
            "template": prompt.template, "prompt": prompt.to_dict(), "label_key": label_key,
            "add_special_tokens": prompt.add_special_tokens, "cells": _obs_fingerprint(adata),
            "genes": [str(g) for g in encoded.genes]}
    if out_dir is not None and not isinstance(out_dir, MemoryStore):
        check_store_fits(adata, model, layers, out_dir, encoded=encoded, dtype=cfg.dtype, only_genes=cfg.only_spans,
                         drop_special=cfg.drop_special, label_key=label_key, subsample=cfg.subsample)
    if out_dir is None:
        sites = mlp_sites(model.model, layers)
        width = {layer: int(model.model.config.hidden_size) for layer in sites}
        out_dir = MemoryStore(list(sites), width, width, dtype=cfg.dtype, info=info)
    model.model.eval()
    return harvest_core(model.model, encoded.documents, adata.n_obs, out_dir, layers, info=info, progress=progress,
                        **cfg.to_dict())
