"""The transcoder evaluation table both the cell and the text path report: one row per layer plus ``"all"``,
reconstruction and sparsity from held-out rows, next-token losses with the MLPs spliced in."""

from __future__ import annotations

import numpy as np

RECONSTRUCTION = ("fvu", "l0", "dead_fraction", "dense_fraction")


def reconstruction_rows(transcoders: dict, store, *, on_layer=None) -> dict:
    """``{layer: {fvu, l0, dead_fraction, dense_fraction, ...}}`` on a store's rows (:func:`evaluate`);
    ``on_layer()`` is called after each layer (a progress bar)."""
    from ._evaluate import evaluate

    rows = {}
    for layer in sorted(transcoders):
        rows[layer] = evaluate(transcoders[layer], store.batches(layer, 4096, shuffle=False))
        if on_layer is not None:
            on_layer()
    return rows


def with_layer_means(rows: dict, layers) -> dict:
    """``rows`` with the ``"all"`` row's reconstruction measures set to their mean over ``layers``."""
    rows.setdefault("all", {}).update({k: float(np.mean([rows[layer][k] for layer in layers]))
                                       for k in RECONSTRUCTION})
    return rows


def loss_rows(ce: dict) -> dict:
    """:func:`spliced_cross_entropy`'s output as ``{"all" | layer: {ce, ce_clean, ce_zero, ce_mean,
    recovered_zero, recovered_mean}}``."""
    return {key: {"ce": s["ce"], "ce_clean": ce["clean"], "ce_zero": s["ce_zero"], "ce_mean": s["ce_mean"],
                  "recovered_zero": s["recovered_zero"], "recovered_mean": s["recovered_mean"]}
            for key, s in [("all", ce["all"]), *ce.get("layers", {}).items()]}


def evaluation_table(rows: dict):
    """The rows as a DataFrame indexed by ``layer`` (strings: the layers, then ``"all"``)."""
    import pandas as pd

    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = table.index.map(str)
    table.index.name = "layer"
    return table
