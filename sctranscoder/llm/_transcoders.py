"""Transcoders for a text model's MLPs: trained from an activation store with :func:`sctranscoder.tc.train`,
judged on held-out texts by reconstruction, sparsity and what the model computes with them spliced in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path


def _open(store):
    from ..harvest import ActivationStore

    if isinstance(store, (str, Path)):
        return ActivationStore(store)
    if not hasattr(store, "batches"):
        raise TypeError(f"store must be an activation store or its folder, not {type(store).__name__}; "
                        "make one with sct.llm.harvest.")
    return store


def train_transcoders(store, layers=None, out_dir=None, *, cfg=None, progress: bool = True, **settings) -> dict:
    """Train one transcoder per layer on the rows of an activation store.

    Parameters
    ----------
    store
        An activation store (or its folder) from :func:`sctranscoder.llm.harvest`,
        made from training texts only (evaluate on other texts).
    layers
        Layers to cover (default: every layer in the store).
    out_dir
        Folder for the transcoders (``layer{L}/``, :func:`sctranscoder.tc.save`
        layout); training resumes from checkpoints there. ``None``: in memory.
    cfg
        A :class:`sctranscoder.tc.TranscoderConfig`; its widths are set from the
        store. ``settings`` override its fields (``d_hidden=1536, k=32, n_tokens=...``).

    Returns
    -------
    ``{layer: Transcoder}``.
    """
    from ..tc import TranscoderConfig, train

    store = _open(store)
    layers = list(store.layers) if layers is None else [int(v) for v in layers]
    missing = [layer for layer in layers if layer not in store.layers]
    if missing:
        raise KeyError(f"Layers {missing} were not harvested; this store holds layers {store.layers}.")
    name = store.info.get("model")
    transcoders = {}
    for layer in layers:
        widths = {"d_in": store.d_in[layer], "d_out": store.d_out[layer]}
        layer_cfg = TranscoderConfig(**widths, **settings) if cfg is None else replace(cfg, **widths, **settings)
        if layer_cfg.batch_size is not None and len(store) < layer_cfg.batch_size:
            raise ValueError(f"The store holds {len(store)} rows, fewer than one batch ({layer_cfg.batch_size}); "
                             "pass a smaller batch_size or harvest more texts.")
        folder = Path(out_dir) / f"layer{layer}" if out_dir is not None else None
        transcoders[layer] = train(store, layer, layer_cfg, out_dir=folder, model_name=name, progress=progress)
    return transcoders


def evaluate(
    model,
    tokenizer,
    transcoders: dict,
    texts,
    *,
    text_column: str = "text",
    max_length: int = 128,
    prepend_bos: bool | None = None,
    batch_size: int = 16,
    drop_special: bool = True,
    each_layer: bool = True,
):
    """Faithfulness of transcoders on held-out texts, per layer and with every layer replaced at once.

    Parameters
    ----------
    model, tokenizer
        As for :func:`sctranscoder.llm.harvest`; a causal LM needs its LM head
        (``AutoModelForCausalLM``).
    transcoders
        ``{layer: Transcoder}``.
    texts
        Held-out texts (a list of strings or a ``datasets.Dataset``), tokenized as in the harvest.
    drop_special
        As in the harvest the transcoders were trained on: leave special tokens (BOS,
        [CLS], [SEP]) out of the FVU and keep their own MLP outputs when splicing
        (and ablating), since the transcoders never saw them. ``False``: every
        position, as for transcoders trained with ``drop_special=False``.
    each_layer
        Also splice each layer alone (one row per layer); else only the ``"all"`` row
        carries spliced metrics.

    Returns
    -------
    A DataFrame with one row per layer plus ``"all"``: ``fvu``, ``l0``,
    ``dead_fraction``, ``dense_fraction`` on the held-out tokens (``"all"``: their
    mean over layers). A causal LM adds next-token ``ce``, ``ce_clean``,
    ``ce_zero``, ``ce_mean``, ``recovered_zero`` and ``recovered_mean`` (CE
    recovered: the fraction of the loss gap to zero- or mean-ablation that the
    transcoders win back; over every predicted token). An encoder adds sentence
    embedding metrics (mean-pooled, normalized last hidden states): ``cosine``,
    ``cosine_zero``, ``cosine_mean``, ``cosine_recovered_mean``,
    ``similarity_spearman``, ``similarity_spearman_mean`` (see
    :func:`sctranscoder.llm.embedding_faithfulness`).
    """
    from ..harvest import layout_of
    from ..tc import evaluation_table, loss_rows, reconstruction_rows, spliced_cross_entropy, with_layer_means
    from ._embedding import embedding_faithfulness
    from ._harvest import harvest
    from ._text import model_batches, text_positions

    if not transcoders:
        raise ValueError("transcoders is empty; pass {layer: Transcoder}.")
    encoder = layout_of(model).encoder
    if not encoder and getattr(model, "get_output_embeddings", lambda: None)() is None:
        raise TypeError("This causal model has no LM head, so there is no next-token loss to compare; load it with "
                        "AutoModelForCausalLM.")
    layers = sorted(transcoders)
    store = harvest(model, tokenizer, texts, layers, None, text_column=text_column, max_length=max_length,
                    prepend_bos=prepend_bos, batch_size=batch_size, dtype="float32", drop_special=drop_special,
                    progress=False)
    rows = with_layer_means(reconstruction_rows(transcoders, store), layers)
    rows["all"]["n_tokens"] = rows[layers[0]]["n_tokens"]
    batches = model_batches(model, tokenizer, texts, text_column=text_column, max_length=max_length,
                             prepend_bos=prepend_bos, batch_size=batch_size)
    positions = text_positions(tokenizer) if drop_special else None
    if encoder:
        spliced = embedding_faithfulness(model, transcoders, batches, each_layer=each_layer, positions=positions)
    else:
        spliced = loss_rows(spliced_cross_entropy(model, transcoders, batches, each_layer=each_layer,
                                                  positions=positions))
        spliced = {"all": spliced.pop("all"), "layers": spliced}
    for key, values in [("all", spliced["all"]), *spliced.get("layers", {}).items()]:
        rows[key].update(values)
    return evaluation_table(rows)
