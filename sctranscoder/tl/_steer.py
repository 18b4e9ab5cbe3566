"""Steering: raise cell type A's strongest supernode in cells of type B, and see whether the call moves to A.

The supernode's features are set, in each B cell, to ``scale`` times the activation they had in A's traced
cells, at the matching places of B's prompt: a template token at the same place (counted from the prompt's start
before the genes, from its end after them), the k-th gene's j-th token for a feature on A's k-th gene, the fed
answer's tokens after the prompt. Everything else runs as the replacement model computes it (MLPs replaced by
transcoders, errors held; attention free unless ``freeze_attention``). The call is the candidate with the highest
probability, as :func:`predict_cell_types` scores them.
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


def steer_supernode(adata, model, transcoders: dict, circuit, to_cells_of: str, *, supernode: str | None = None,
                    scale: float = 1.0, n_cells: int = 8, label_key: str | None = None, candidates=None,
                    encoded=None, freeze_attention: bool = False, seed: int = 0) -> pd.DataFrame:
    """Raise ``circuit``'s strongest supernode (type A) in cells of type ``to_cells_of`` (B) and read the call.

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
        The ``supernode`` id (``"S1"``...) to raise; default: the one with the largest measured effect.
    scale
        Multiple of its activation in A's traced cells the supernode's features are set to.
    n_cells
        How many B cells (a seeded sample).

    Returns
    -------
    One row per B cell: ``cell``, ``call_before``, ``call_after``, ``p_before`` / ``p_after`` (probability of A
    over the candidates), ``n_changes`` (feature positions set) and ``moved`` (the call is A after, not
    before). ``attrs``: ``fraction_moved`` (the share of B cells whose call moved to A), ``supernode``, ``name``.
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
    table = circuit.supernodes
    row = table.iloc[0] if supernode is None else table.set_index("supernode").loc[supernode].rename(supernode)
    name = row["supernode"] if supernode is None else supernode
    answer_ids = answer_tokens(model.tokenizer, candidates)

    # the supernode's activations in A's traced cells, keyed by place
    sources = resolve_cells(adata, model, encoded, rows=cell_positions(adata, circuit.cells), progress=False)
    source_prompts = sources.prompt_ids()
    values: dict = {}
    for i, instances in enumerate(circuit.supernode_instances.get(name, [])):
        n_prompt = len(source_prompts[i])
        for layer, feature, position, activation in instances:
            if np.isfinite(activation):
                key = (layer, feature, _place(sources.token_gene[i], n_prompt, position))
                values.setdefault(key, []).append(activation)
    means = {key: float(np.mean(v)) for key, v in values.items()}

    cells = _cells_of(adata, to_cells_of, label_key, n_cells, seed)
    steered = resolve_cells(adata, model, encoded, rows=cells, progress=False)
    rows = []
    for i, ids in enumerate(steered.prompt_ids()):
        ids = [int(t) for t in ids]
        changes = []
        for (layer, feature, place), value in means.items():
            position = _position(steered.token_gene[i], len(ids), place)
            if position is not None:
                changes.append((layer, feature, position, scale * value))
        before, after = cc.steered_calls(model.model, transcoders, ids, answer_ids, changes,
                                         freeze_attention=freeze_attention)
        index = candidates.index(target)
        rows.append({"cell": str(adata.obs_names[cells[i]]), "call_before": candidates[int(np.argmax(before))],
                     "call_after": candidates[int(np.argmax(after))], "p_before": float(np.exp(before[index])),
                     "p_after": float(np.exp(after[index])), "n_changes": len(changes)})
    frame = pd.DataFrame(rows)
    frame["moved"] = (frame.call_after == target) & (frame.call_before != target)
    frame.attrs.update(fraction_moved=float(frame.moved.mean()) if len(frame) else float("nan"),
                       supernode=name, name=str(row["name"]), from_type=to_cells_of, to_type=target, scale=scale)
    return frame
