"""Harvest a text model's MLP inputs and outputs over texts, through the same core as the C2S path."""

from __future__ import annotations

from .._deprecations import renamed_keywords
from ._text import TextSource, resolve_bos, text_encoder


def _model_name(model) -> str:
    return str(getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", "") or
               model.config.model_type)


def check_length(model, max_length: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} is longer than the model's context ({limit} positions); "
                         f"pass max_length<={limit}.")


@renamed_keywords(store="out_dir")
def harvest(model, tokenizer, texts, layers=None, out_dir=None, cfg=None, *, text_column: str = "text",
            max_length: int = 128, prepend_bos: bool | None = None, progress: bool = True, **settings):
    """Run a language model over texts and store every token's MLP input and output, per layer.

    Parameters
    ----------
    model
        A Hugging Face causal LM (GPT-NeoX, GPT-2, Llama, Qwen2, Mistral, Gemma-2) or
        BERT-style encoder (``BertModel`` and models with a head over it), in eval mode.
    tokenizer
        Its tokenizer.
    texts
        A list of strings, or a ``datasets.Dataset`` whose ``text_column`` holds them;
        one text is one document. Empty texts are refused.
    layers
        Layers to harvest (all when None; negative indices count from the end).
    out_dir
        Folder of the :class:`sctranscoder.harvest.ActivationStore` (resumed when it
        holds a store made with the same settings), or ``None`` for an in-memory store (formerly ``store``).
    cfg
        A :class:`sctranscoder.harvest.HarvestConfig` (``batch_size``, ``chunk_size``, ``dtype``,
        ``drop_special``, ``subsample``, ``seed``); ``settings`` change single fields of it.
    max_length
        Tokens per text in all, BOS (or [CLS]/[SEP]) included; longer texts are truncated.
    prepend_bos
        Put the tokenizer's BOS first (causal LMs; default: when it has one). Encoders
        always get their tokenizer's [CLS] ... [SEP].
    settings
        ``batch_size``, ``chunk_size`` (texts per forward pass, and per shard), ``dtype``, ``drop_special``
        (leave BOS / [CLS] / [SEP] out of the store: their activations are outliers that say little about
        the text; padding is never stored), ``subsample`` (keep each token with this probability, seeded by
        ``seed``).
    progress
        Progress bar with tokens/s.

    Returns
    -------
    The store. Row metadata: ``document`` (the text's index), ``position`` (the
    token's position in the model input, BOS included), ``token_id``; the gene
    columns are -1 (texts have no gene spans). :func:`sctranscoder.llm.token_strings`
    and :func:`sctranscoder.llm.document_tokens` turn them back into text.
    """
    from ..harvest import HarvestConfig, MemoryStore, layout_of, mlp_sites
    from ..harvest import harvest as harvest_core

    cfg = HarvestConfig.build(cfg, **settings)
    encoder = layout_of(model).encoder
    check_length(model, max_length)
    source = TextSource(texts, text_column)
    bos = resolve_bos(tokenizer, prepend_bos, encoder)
    info = {"kind": "text", "model": _model_name(model), "tokenizer": str(getattr(tokenizer, "name_or_path", "")),
            "texts": source.fingerprint(), "text_column": text_column if source.is_dataset else None,
            "max_length": int(max_length), "prepend_bos": bos, "encoder": encoder}
    if out_dir is None:
        sites = mlp_sites(model, layers)
        width = {layer: int(model.config.hidden_size) for layer in sites}
        out_dir = MemoryStore(list(sites), width, width, dtype=cfg.dtype, info=info)
    model.eval()
    encode = text_encoder(source, tokenizer, max_length=max_length, prepend_bos=bos, encoder=encoder)
    return harvest_core(model, encode, len(source), out_dir, layers, info=info, progress=progress, **cfg.to_dict())
