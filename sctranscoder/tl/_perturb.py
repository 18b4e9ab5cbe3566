"""In-silico feature steering over many cells: switch features off (or scale them) and watch the call move."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._progress import progress_bar


def feature_list(features) -> list[tuple]:
    """``(layer, index[, position])`` tuples from a list of them, a graph, or a :class:`CellTypeCircuit`."""
    grown = getattr(features, "circuit_features", None)
    if grown:  # a grown circuit: every feature it holds, the drawn ones and those over the node budget
        return sorted({(int(layer), int(index)) for cell in grown for layer, index, _ in cell})
    graph = getattr(features, "graph", features)
    if hasattr(graph, "nodes") and hasattr(graph, "edges"):
        found = sorted({(int(d["layer"]), int(d["feature"])) for _, d in graph.nodes(data=True)
                        if d.get("kind") == "feature"})
        if not found:
            raise ValueError("The circuit has no feature nodes to perturb.")
        return found
    items = [tuple(int(v) if v is not None else None for v in f) for f in features]
    bad = [f for f in items if len(f) not in (2, 3)]
    if not items or bad:
        raise ValueError(f"features must be (layer, index) or (layer, index, position) tuples; got {bad[:3] or 'none'}.")
    return items


def perturb_features(adata, model, transcoders: dict, features, scale: float | None = 0.0, *, value: float | None = None,
                     cells=None, freeze_attention: bool = False, candidates=None, encoded=None,
                     progress: bool = True) -> pd.DataFrame:
    """Scale (or set) transcoder features in every chosen cell and re-score every candidate label.

    Runs :func:`sctranscoder.circuits.intervene` on each cell's prompt: the
    replacement model (MLPs replaced by transcoders, their errors held), with the
    features changed at every position (or at the position a triple names),
    later features recomputed and attention free (or frozen).

    Parameters
    ----------
    adata, model, transcoders
        Cells, a :class:`sctranscoder.models.C2SModel` and ``{layer: Transcoder}``.
    features
        ``(layer, index)`` pairs (every position), ``(layer, index, position)`` triples, or a traced circuit
        (:class:`CellTypeCircuit` or graph: all its features, every position; a grown circuit's features
        include those over the node budget, which the graph does not draw).
    scale
        Multiply the features by this (0: switch them off; 1 changes nothing).
    value
        Set them to this instead of scaling.
    cells
        Which cells (obs names, positions or a boolean mask); default all.
    freeze_attention
        Hold attention patterns at their unperturbed values.
    candidates
        Labels scored (default: the model's training labels).
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`).

    Returns
    -------
    A cells x candidates DataFrame of probability shifts (perturbed minus
    unperturbed, both from the replacement model, whose unperturbed
    probabilities are :func:`predict_cell_types`' up to rounding);
    ``attrs["before"]`` holds the unperturbed probabilities.
    """
    from ..circuits import Intervention, intervene
    from ..models import answer_tokens
    from ..prompt import resolve_cells
    from ._knockout import cell_positions

    candidates = list(candidates) if candidates is not None else list(model.labels or [])
    if len(candidates) < 2:
        raise ValueError("Feature perturbations compare candidate labels: pass candidates=[...] (at least two).")
    if value is not None:
        scale = None
    elif scale is None:
        raise ValueError("Pass scale= (0 switches features off) or value=.")
    changes = [Intervention(f[0], f[1], f[2] if len(f) == 3 else None, scale=scale, value=value)
               for f in feature_list(features)]
    rows = cell_positions(adata, cells)
    encoded = resolve_cells(adata, model, encoded, rows=rows, progress=False)
    answers = answer_tokens(model.tokenizer, candidates)
    before, after = np.zeros((len(rows), len(candidates))), np.zeros((len(rows), len(candidates)))
    for i, ids in enumerate(progress_bar(encoded.prompt_ids(), desc="feature perturbations", unit="cells",
                                         enabled=progress)):
        result = intervene(model.model, transcoders, ids, changes, answer_ids=answers,
                           freeze_attention=freeze_attention)
        before[i], after[i] = result.probabilities_clean, result.probabilities
    index = pd.Index(encoded.obs_names, name="cell")
    shift = pd.DataFrame(after - before, index=index, columns=candidates)
    shift.attrs["before"] = pd.DataFrame(before, index=index, columns=candidates)
    return shift
