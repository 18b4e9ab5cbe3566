"""Steering: raise cell type A's supernodes (the strongest by default) in cells of type B; does the call move to A?

The supernode's features are set, in each B cell, to ``scale`` times the activation they had in A's traced
cells, at the matching places of B's prompt: a template token at the same place (counted from the prompt's start
before the genes, from its end after them), the k-th gene's j-th token for a feature on A's k-th gene, the fed
answer's tokens after the prompt. Everything else runs as the replacement model computes it (MLPs replaced by
transcoders, errors held; attention free unless ``freeze_attention``). The call is the candidate with the highest
probability, as :func:`predict_cell_types` scores them.

The control raises as many random features instead: each of the supernode's features is swapped for a feature
drawn (seeded) from the same layer's transcoder, none of them the supernode's, and set at the same places to the
same values. A call that moves as often under the control says raising activations there moves it, whatever the
features mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _place(token_gene, n_prompt: int, position: int):
    """Where a position sits in a prompt, in terms another prompt can look up."""
    token_gene = np.asarray(token_gene[:n_prompt])
    genes = np.flatnonzero(token_gene >= 0)
    if position >= n_prompt:
        return ("answer", position - n_prompt)
    gene = int(token_gene[position])
    if gene >= 0:
        first = int(np.flatnonzero(token_gene == gene)[0])
        return ("gene", gene, position - first)
    if genes.size == 0 or position < genes[0]:
        return ("pre", position)
    return ("post", n_prompt - position)


def _position(token_gene, n_prompt: int, place):
    """The position of ``place`` in a prompt (``None`` where it has no such place)."""
    token_gene = np.asarray(token_gene[:n_prompt])
    kind = place[0]
    if kind == "answer":
        return n_prompt + place[1]
    if kind == "pre":
        genes = np.flatnonzero(token_gene >= 0)
        return place[1] if genes.size == 0 or place[1] < genes[0] else None
    if kind == "post":
        return n_prompt - place[1] if place[1] <= n_prompt else None
    span = np.flatnonzero(token_gene == place[1])
    return int(span[place[2]]) if place[2] < span.size else None


def control_features(features, transcoders: dict, seed: int = 0) -> dict:
    """``{(layer, feature): (layer, random feature)}``: for each of ``features`` a different feature of the same
    layer's transcoder, none of them among ``features``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    swapped = {}
    for layer in sorted({layer for layer, _ in features}):
        own = sorted({int(f) for at, f in features if at == layer})
        width = int(transcoders[layer].cfg.d_hidden)
        pool = np.setdiff1d(np.arange(width), own)
        if pool.size < len(own):
            raise ValueError(f"Layer {layer}'s transcoder has {width} features: too few to draw {len(own)} random "
                             f"ones beside the supernode's {len(own)}; steer with a wider transcoder.")
        drawn = rng.choice(pool, size=len(own), replace=False)
        swapped.update({(layer, f): (layer, int(d)) for f, d in zip(own, drawn)})
    return swapped


def steer_supernode(adata, model, transcoders: dict, circuit, to_cells_of: str, *, supernode=None,
                    scale=1.0, n_cells: int = 8, label_key: str | None = None, candidates=None,
                    encoded=None, freeze_attention: bool = False, seed: int = 0) -> pd.DataFrame:
    """Raise ``circuit``'s strongest supernode, or those ``supernode`` names (type A), in cells of type
    ``to_cells_of`` (B) and read the call.

    Parameters
    ----------
    adata, model, transcoders
        Cells, the :class:`sctranscoder.models.C2SModel` and its transcoders, as given to
        :func:`cell_type_circuit`.
    circuit
        A :class:`CellTypeCircuit` of type A with ``supernodes``.
    to_cells_of
        Type B, whose cells are steered.
    supernode
        The ``supernode`` id (``"S1"``...) to raise; a list of ids raises those together, ``"supporting"`` every
        supernode whose switch-off lowers A's call (positive ``measured_effect``), ``"all"`` every one; default:
        the one with the largest measured effect.
    scale
        Multiple of its activation in A's traced cells the supernode's features are set to; a sequence of them
        (e.g. ``(1, 3, 10)``) gives every dose, each from the same clean pass of a cell.
    n_cells
        How many B cells (a seeded sample).

    Returns
    -------
    One row per B cell and dose (in rising dose): ``cell``, ``scale``, ``call_before``, ``call_after``,
    ``p_before`` / ``p_after`` (probability of A over the candidates), ``n_changes`` (feature positions set) and
    ``moved`` (the call is A after, not before); the control's ``call_after_control``, ``p_after_control``,
    ``n_changes_control`` and ``moved_control`` (as many random features of the same layers raised at the same
    places to the same values, see :func:`control_features`). ``attrs``: ``fraction_moved`` and
    ``fraction_moved_control`` (the share of B cells whose call moved to A; with several doses, a list in rising
    dose, as is ``scale``), ``supernode``, ``selection`` (``strongest``, ``supporting``, ``all`` or ``listed``),
    ``name``, ``measured_effect`` (one supernode's drop in A's log-odds when switched off in A's cells: not
    positive, it is no evidence for A to raise), ``from_type``, ``to_type``, ``scale``, ``features``
    and ``control_features`` (``"L{layer}/F{feature}"``).
    """
    from .. import circuits as cc
    from ..models import answer_tokens
    from ..prompt import resolve_cells
    from ._circuits import _cells_of
    from ._knockout import cell_positions

    if circuit.supernodes is None or not len(circuit.supernodes):
        raise ValueError(f"The circuit of {circuit.cell_type!r} has no supernodes to steer with.")
    label_key = label_key or model.metadata.get("label_key")
    candidates = list(candidates) if candidates is not None else list(model.labels)
    target = circuit.cell_type
    table = circuit.supernodes.set_index("supernode", drop=False)
    names = _chosen(table, supernode)
    answer_ids = answer_tokens(model.tokenizer, candidates)

    # the supernode's activations in A's traced cells, keyed by place
    sources = resolve_cells(adata, model, encoded, rows=cell_positions(adata, circuit.cells), progress=False)
    source_prompts = sources.prompt_ids()
    values: dict = {}
    for name in names:
        for i, instances in enumerate(circuit.supernode_instances.get(name, [])):
            n_prompt = len(source_prompts[i])
            for layer, feature, position, activation in instances:
                if np.isfinite(activation):
                    key = (layer, feature, _place(sources.token_gene[i], n_prompt, position))
                    values.setdefault(key, []).append(activation)
    means = {key: float(np.mean(v)) for key, v in values.items()}
    # the control: each supernode feature swapped for a random one of its layer, at the same places and values
    swapped = control_features({(layer, feature) for layer, feature, _ in means}, transcoders, seed)
    control = {(*swapped[(layer, feature)], place): value for (layer, feature, place), value in means.items()}

    cells = _cells_of(adata, to_cells_of, label_key, n_cells, seed)
    steered = resolve_cells(adata, model, encoded, rows=cells, progress=False)
    index = candidates.index(target)
    scales = sorted({float(x) for x in np.atleast_1d(scale)})
    rows = []
    for i, ids in enumerate(steered.prompt_ids()):
        ids = [int(t) for t in ids]
        sets = {}
        for x in scales:  # every dose from one clean pass of this cell
            sets[("after", x)] = _changes(means, steered.token_gene[i], len(ids), x)
            sets[("control", x)] = _changes(control, steered.token_gene[i], len(ids), x)
        before, after = cc.steered_call_sets(model.model, transcoders, ids, answer_ids, sets,
                                             freeze_attention=freeze_attention)
        rows += [{"cell": str(adata.obs_names[cells[i]]), "scale": x,
                  "call_before": candidates[int(np.argmax(before))],
                  "call_after": candidates[int(np.argmax(after["after", x]))],
                  "p_before": float(np.exp(before[index])),
                  "p_after": float(np.exp(after["after", x][index])), "n_changes": len(sets["after", x]),
                  "call_after_control": candidates[int(np.argmax(after["control", x]))],
                  "p_after_control": float(np.exp(after["control", x][index])),
                  "n_changes_control": len(sets["control", x])} for x in scales]
    frame = pd.DataFrame(rows).sort_values("scale", kind="stable", ignore_index=True)
    frame["moved"] = (frame.call_after == target) & (frame.call_before != target)
    frame["moved_control"] = (frame.call_after_control == target) & (frame.call_before != target)
    by_scale = frame.groupby("scale", sort=True)
    one = len(scales) == 1  # one dose: numbers; several: a list each, in rising dose
    frame.attrs.update(fraction_moved=(float(frame.moved.mean()) if one else by_scale.moved.mean().tolist()),
                       fraction_moved_control=(float(frame.moved_control.mean()) if one
                                               else by_scale.moved_control.mean().tolist()),
                       supernode=", ".join(names), selection=_selection(supernode),
                       name="; ".join(str(table.loc[n, "name"]) for n in names),
                       from_type=to_cells_of, to_type=target, scale=scales[0] if one else scales,
                       measured_effect=(float(table.loc[names[0], "measured_effect"])
                                        if len(names) == 1 and "measured_effect" in table else float("nan")),
                       features=[f"L{layer}/F{feature}" for layer, feature in sorted(swapped)],
                       control_features=[f"L{layer}/F{feature}" for layer, feature in
                                         (swapped[key] for key in sorted(swapped))])
    return frame


def _selection(supernode) -> str:
    """How the supernodes were chosen, for the sentence that reports them."""
    if supernode is None:
        return "strongest"
    return supernode if supernode in ("supporting", "all") else "listed"


def supporting_supernodes(table: pd.DataFrame) -> list[str]:
    """The ids of the supernodes whose switch-off lowers the call (positive ``measured_effect``)."""
    if "measured_effect" not in table:
        return []
    ids = table.supernode if "supernode" in table else table.index.to_series()
    return [str(i) for i in ids[table.measured_effect.to_numpy() > 0]]


def _chosen(table: pd.DataFrame, supernode) -> list[str]:
    """The supernode ids to raise: the strongest by default, every one for ``"all"``, else those named."""
    if supernode is None:
        return [str(table.index[0])]
    if supernode == "supporting":
        names = supporting_supernodes(table)
        if not names:
            raise ValueError("No supernode of this circuit lowers its call when switched off (no positive "
                             "measured_effect): none is evidence to raise; name one with supernode=.")
        return names
    names = list(table.index) if supernode == "all" else [supernode] if isinstance(supernode, str) else list(supernode)
    unknown = [n for n in names if n not in table.index]
    if unknown or not names:
        raise ValueError(f"supernode {unknown or supernode!r} is not in this circuit; its supernodes are "
                         f"{', '.join(table.index)} (or 'supporting', 'all').")
    return [str(n) for n in names]


def _changes(values: dict, token_gene, n_prompt: int, scale: float) -> list:
    """``(layer, feature, position, value)`` for each ``(layer, feature, place)`` this prompt has."""
    changes = []
    for (layer, feature, place), value in values.items():
        position = _position(token_gene, n_prompt, place)
        if position is not None:
            changes.append((layer, feature, position, scale * value))
    return changes


def third_type_calls(table: pd.DataFrame, target: str, column: str = "call_after") -> pd.Series:
    """The calls in ``column`` (``call_after``, or the control's ``call_after_control``) that left the cell's own
    call for a type other than ``target``."""
    before, after = table.call_before.astype(str), table[column].astype(str)
    return after[(after != before) & (after != target)]


def steering_matrix(circuits: dict) -> pd.DataFrame:
    """Every steered pair of types at every dose, from each circuit's ``steering_into`` (the CLI's
    ``--steer-into``): ``to_type`` (A, whose supernodes were raised), ``from_type`` (B, whose cells were steered),
    ``scale``, ``n_cells``, ``n_moved`` (calls that moved to A), ``n_elsewhere`` (calls that left their own for a
    third type) and ``elsewhere`` (the third type most of those went to), ``n_moved_control`` and
    ``n_control_elsewhere`` (the same for as many random features: at high doses they break calls too, only not
    towards A). Pairs that were skipped have no rows."""
    rows = []
    for circuit in circuits.values():
        for into, table in (getattr(circuit, "steering_into", None) or {}).items():
            if table is None or not len(table):
                continue
            target = str(table.attrs.get("to_type", circuit.cell_type))
            for scale, group in table.groupby("scale", sort=True):
                third = third_type_calls(group, target)
                rows.append({"to_type": target, "from_type": str(into), "scale": float(scale),
                             "n_cells": len(group), "n_moved": int(group.moved.sum()), "n_elsewhere": len(third),
                             "elsewhere": third.mode().iloc[0] if len(third) else "",
                             "n_moved_control": int(group.moved_control.sum()),
                             "n_control_elsewhere": len(third_type_calls(group, target, "call_after_control"))})
    return pd.DataFrame(rows, columns=["to_type", "from_type", "scale", "n_cells", "n_moved", "n_elsewhere",
                                       "elsewhere", "n_moved_control", "n_control_elsewhere"])
