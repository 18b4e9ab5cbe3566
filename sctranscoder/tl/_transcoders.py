"""Transcoders for a C2S model's MLPs, trained and evaluated on the cells of an AnnData."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def held_out_mask(adata, model, eval_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Cells to keep out of transcoder training: those the C2S model itself held out when it records
    them, else a random ``eval_fraction`` of the cells."""
    recorded = model.metadata.get("held_out_cells") if hasattr(model, "metadata") else None
    if recorded:
        mask = adata.obs_names.isin(recorded)
        if mask.any():
            return np.asarray(mask)
    rng = np.random.default_rng(seed)
    mask = np.zeros(adata.n_obs, bool)
    mask[rng.choice(adata.n_obs, size=max(1, round(eval_fraction * adata.n_obs)), replace=False)] = True
    return mask


def train_transcoders(
    adata,
    model,
    layers=None,
    out_dir=None,
    *,
    cfg=None,
    store=None,
    held_out=None,
    eval_fraction: float = 0.2,
    label_key: str | None = None,
    live: bool = False,
    precision: str = "auto",
    encoded=None,
    key_added: str = "transcoders",
    progress: bool = True,
    **settings,
) -> dict:
    """Train one transcoder per layer on the MLP activations of a C2S model over the training cells.

    Parameters
    ----------
    adata
        Cells whose prompts the model reads.
    model
        A :class:`sctranscoder.models.C2SModel`.
    layers
        Layers to cover (all when None).
    out_dir
        Folder for the activation store (``activations/``) and the transcoders
        (``layer{L}/``); both resume when the call is repeated. ``None``: in memory.
    cfg
        A :class:`sctranscoder.tc.TranscoderConfig` (its widths must match the
        model); ``settings`` override its fields (``activation="topk", k=32, ...``).
    store
        An activation store to train from instead of harvesting.
    held_out
        Boolean mask of cells kept out of training; default :func:`held_out_mask`.
    label_key
        ``adata.obs`` column: harvest prompts with their answers, as in training.
    live
        Train every layer from one shared forward pass per batch of cells, through
        per-layer shuffle buffers in memory (:func:`sctranscoder.tc.train_live`),
        instead of harvesting a store: for data sets whose store would not fit on
        disk (:func:`sctranscoder.tl.plan` says which). Checkpoints resume exactly.
    precision
        Live path: ``"auto"`` (bf16 autocast on a GPU that supports it), ``"bfloat16"`` or ``"float32"``
        for the model pass and the transcoder steps; weights stay float32.
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`, with the same
        ``label_key``); default: tokenize them here, once (not at all when ``store`` is given).

    key_added
        ``adata.uns[key_added]`` records where the transcoders are and which cells were held out
        (:func:`evaluate_transcoders` reads ``"transcoders"``).

    Returns
    -------
    ``{layer: Transcoder}``.
    """
    from ..harvest import mlp_sites
    from ..prompt import resolve_cells
    from ..tc import config_for_width, train, train_live
    from ._harvest import harvest

    cfg = config_for_width(int(model.model.config.hidden_size), cfg, **settings)
    layers = list(mlp_sites(model.model, layers))
    held = held_out_mask(adata, model, eval_fraction) if held_out is None else np.asarray(held_out, bool)
    out_dir = Path(out_dir) if out_dir is not None else None
    if store is None:
        encoded = resolve_cells(adata, model, encoded, label_key=label_key, with_answers=True, progress=progress)
        cells, encoded = adata[~held].copy(), encoded.subset(~held)
    if store is None and live:
        model.model.eval()
        transcoders = train_live(model.model, encoded.documents, cells.n_obs, layers, cfg, out_dir=out_dir,
                                 model_name=str(model.name_or_path), precision=precision, progress=progress)
    else:
        if store is None:
            store = harvest(cells, model, layers, out_dir / "activations" if out_dir else None,
                            label_key=label_key, encoded=encoded, progress=progress)
        transcoders = {layer: train(store, layer, cfg, out_dir=out_dir / f"layer{layer}" if out_dir else None,
                                    model_name=str(model.name_or_path), progress=progress) for layer in layers}
    adata.uns[key_added] = {"path": str(out_dir) if out_dir else None, "layers": layers,
                                "held_out_cells": list(map(str, adata.obs_names[held]))}
    return transcoders


def evaluate_transcoders(
    adata,
    model,
    transcoders: dict,
    *,
    cells=None,
    label_key: str | None = None,
    encoded=None,
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """Faithfulness of transcoders on held-out cells, per layer and with every layer replaced at once.

    Parameters
    ----------
    adata, model, transcoders
        As for :func:`train_transcoders` (``{layer: Transcoder}``).
    cells
        Boolean mask or names of the cells to evaluate on; default: the cells held
        out when the transcoders were trained (``adata.uns["transcoders"]``), else
        the model's held-out cells.
    label_key
        ``adata.obs`` column of true cell types: adds the cell-type accuracy with the
        MLPs replaced, scored as in :func:`sctranscoder.tl.predict_cell_types`.
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`, with the same
        ``label_key``); default: the evaluated cells are tokenized here, once, for every measure.
    progress
        One progress bar over the evaluation's passes (harvest, spliced losses, accuracy per layer).

    Returns
    -------
    One row per layer plus ``"all"``: ``fvu``, ``l0``, ``dead_fraction``,
    ``dense_fraction`` on the held-out tokens; next-token ``ce``, ``ce_clean``,
    ``recovered_zero`` / ``recovered_mean`` (fraction of the loss gap to zero- and
    mean-ablation recovered; over the answer tokens when ``label_key`` is given, as
    C2S models are trained on those only, else over every token); with ``label_key``: ``accuracy``,
    ``accuracy_clean``, ``accuracy_kept`` and ``n_cells`` (the cells the accuracies are over).
    """
    from .._progress import progress_bar
    from ..harvest import replace_mlp
    from ..prompt import resolve_cells
    from ..tc import (
        as_replacements,
        evaluation_table,
        loss_rows,
        reconstruction_rows,
        spliced_cross_entropy,
        token_batches,
        with_layer_means,
    )
    from ._harvest import harvest
    from ._predict import predict_cell_types

    mask = _cell_mask(adata, model, cells)
    encoded = resolve_cells(adata, model, encoded, rows=mask, label_key=label_key, with_answers=True,
                            progress=progress)
    subset = adata[mask].copy()
    layers = sorted(transcoders)
    accuracy_passes = len(layers) + 2 if label_key is not None else 0
    bar = progress_bar(total=2 + len(layers) + accuracy_passes, desc="evaluating transcoders", unit="passes",
                       enabled=progress)
    store = harvest(subset, model, layers, None, label_key=label_key, encoded=encoded, dtype="float32",
                    progress=False)
    bar.update(1)
    rows = reconstruction_rows(transcoders, store, on_layer=lambda: bar.update(1))
    # C2S models learn the answer only: with labels, score the answer tokens (and EOS)
    loss_masks = encoded.answer_masks() if label_key is not None else None
    batches = token_batches(encoded.input_ids, loss_masks, batch_size=batch_size, device=model.device)
    ce = spliced_cross_entropy(model.model, transcoders, batches)
    bar.update(1)
    for key, values in loss_rows(ce).items():
        rows.setdefault(key, {}).update(values)
    with_layer_means(rows, layers)
    if label_key is not None:
        truth = subset.obs[label_key].astype(str).to_numpy()

        def accuracy(replacements) -> float:
            run = subset.copy()
            with replace_mlp(model.model, replacements):
                predict_cell_types(run, model, encoded=encoded, batch_size=batch_size, progress=False)
            bar.update(1)
            return float((run.obs["c2s_prediction"].astype(str).to_numpy() == truth).mean())

        clean = accuracy({})
        for key in [*layers, "all"]:
            chosen = transcoders if key == "all" else {key: transcoders[key]}
            kept = accuracy(as_replacements(chosen))
            rows[key].update({"accuracy": kept, "accuracy_clean": clean, "accuracy_kept": kept / clean,
                              "n_cells": len(truth)})
    bar.close()
    return evaluation_table(rows)


def _cell_mask(adata, model, cells) -> np.ndarray:
    if cells is None:
        recorded = adata.uns.get("transcoders", {}).get("held_out_cells") or model.metadata.get("held_out_cells")
        if not recorded:
            raise ValueError("No held-out cells are recorded; pass cells=<mask or names>.")
        cells = recorded
    cells = np.asarray(cells)
    mask = cells if cells.dtype == bool else np.asarray(adata.obs_names.isin(cells))
    if mask.shape != (adata.n_obs,) or not mask.any():
        raise ValueError("cells must be a boolean mask over adata's cells or names of some of them; none selected.")
    return mask
