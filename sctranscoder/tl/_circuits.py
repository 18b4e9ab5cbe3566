"""The circuit behind a C2S model's cell-type call, traced cell by cell and merged, with its input genes ranked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._progress import progress_bar


@dataclass
class CellTypeCircuit:
    """What :func:`cell_type_circuit` returns."""

    cell_type: str
    graph: object
    """The merged ``networkx.DiGraph``: nodes without positions, attributions averaged over the cells."""
    genes: pd.DataFrame
    """Input genes ranked by their mean signed attribution to the target (positive: for this cell type), over
    everything traced (before pruning); a gene absent from a cell's graph counts as zero there."""
    graphs: list
    """One traced graph per cell (pruned)."""
    cells: list
    """The cells traced."""
    target: dict
    """The answer token explained, the tokens it is contrasted with, and the answer prefix fed to the model."""
    faithfulness: pd.DataFrame | None = None
    """Per cell: ablation correlation and circuit fraction (when requested)."""
    settings: dict = field(default_factory=dict)
    validation: dict | None = None
    """Attribution against gene knockouts and the circuit's feature share (``validate=True``, see
    :func:`sctranscoder.tl.validate_circuit`)."""
    genes_by_knockout: pd.DataFrame | None = None
    """Genes ranked by measured knockout effect on log P(cell type) (``rank_genes_by="knockout"``)."""

    def input_genes(self, n: int | None = None) -> dict:
        """``{cell_type: genes}``: the genes that push the call towards this cell type, strongest first
        (what :func:`sctranscoder.tl.enrich_circuit` tests)."""
        supporting = self.genes[self.genes.attribution > 0].gene.tolist()
        return {self.cell_type: supporting[:n] if n is not None else supporting}


def answer_contrast(answers: dict, label) -> tuple[list[int], int, list[int]]:
    """Where ``label``'s answer parts from the others: (shared prefix, its next token, the others' next tokens).

    Answers that begin alike (``CD4+/CD45RA+...`` and ``CD4+/CD45RO+...``) are told apart
    at their first differing token; the model is fed the shared prefix and the
    target contrasts ``label``'s next token with its closest rivals' next tokens.
    """
    mine = list(answers[label])
    others = [list(a) for name, a in answers.items() if name != label]
    if not others:
        raise ValueError("A cell-type circuit needs at least two candidate labels.")

    def shared(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    depth = max(shared(mine, other) for other in others)
    if depth >= len(mine):
        raise ValueError(f"The answer for {label!r} is a prefix of another label's answer; they cannot be contrasted.")
    rivals = sorted({o[depth] for o in others if len(o) > depth and o[:depth] == mine[:depth] and o[depth] != mine[depth]})
    return mine[:depth], mine[depth], rivals


def _cells_of(adata, cell_type, label_key, n_cells, seed):
    labels = adata.obs[label_key].astype(str)
    names = np.flatnonzero(labels.to_numpy() == str(cell_type))
    if names.size == 0:
        known = ", ".join(sorted(labels.unique())[:12])
        raise ValueError(f"No cells have {label_key} == {cell_type!r}; labels present: {known}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(names, size=min(n_cells, names.size), replace=False))


def _gene_table(graphs) -> pd.DataFrame:
    """Every gene reached in the (unpruned) per-cell graphs, with its attribution averaged over the cells."""
    rows = [(d["label"], d["attribution"], d["influence"]) for g in graphs for _, d in g.nodes(data=True)
            if d["kind"] == "input" and d["grouped"]]
    if not rows:
        return pd.DataFrame(columns=["gene", "attribution", "influence", "n_cells", "fraction_of_cells"])
    per_cell = pd.DataFrame(rows, columns=["gene", "attribution", "influence"])
    table = per_cell.groupby("gene").agg(attribution=("attribution", "sum"), influence=("influence", "sum"),
                                         n_cells=("attribution", "size"))
    table[["attribution", "influence"]] /= len(graphs)
    table["fraction_of_cells"] = table.n_cells / len(graphs)
    return table.reset_index().sort_values("attribution", ascending=False, ignore_index=True)


def cell_type_circuit(adata, model, transcoders: dict, cell_type: str, *, label_key: str | None = None,
                      candidates=None, n_cells: int = 8, n_genes: int | None = None, organism: str | None = None,
                      max_nodes: int = 60, threshold: float = 0.01, node_threshold: float = 0.02,
                      n_paths: int | None = None, check_faithfulness: bool = False, seed: int = 0,
                      key_added: str = "circuits", encoded=None, progress: bool = True, validate: bool = False,
                      rank_genes_by: str = "attribution") -> CellTypeCircuit:
    """Trace why a C2S model calls cells ``cell_type``, over a sample of that type's cells.

    Each cell's prompt is traced from the target (the logit of the cell type's
    answer token minus the mean logit of its rivals' tokens at the point where the
    answers part, see :func:`answer_contrast`) back to the genes of its sentence,
    with tokens of a gene pooled into one input node. The per-cell graphs are
    merged: a feature is the same node at every position, attributions are
    averaged over cells. Gene rankings go to ``adata.uns[key_added][cell_type]``.

    Parameters
    ----------
    adata
        Cells with labels in ``adata.obs[label_key]`` (default: the model's training label key).
    model
        A :class:`sctranscoder.models.C2SModel`.
    transcoders
        ``{layer: Transcoder}`` (from :func:`sctranscoder.tl.train_transcoders`).
    cell_type
        The label to explain.
    candidates
        The labels it competes with (default: the model's training labels).
    n_cells
        How many cells of that type to trace (a seeded sample).
    n_genes, organism
        Change single prompt settings; default: the model's.
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`); default: the sampled
        cells are tokenized here.
    max_nodes, threshold, node_threshold, n_paths
        Passed to :func:`sctranscoder.circuits.trace`.
    check_faithfulness
        Also ablate each cell's top features in the replacement model
        (:func:`sctranscoder.circuits.faithfulness`).
    validate
        Knock the top genes out of the traced cells and compare (``result.validation``,
        :func:`sctranscoder.tl.validate_circuit`).
    rank_genes_by
        ``"knockout"``: also knock out every gene of the traced cells' sentences and rank genes by the measured
        drop of log P(cell type) (``result.genes_by_knockout``; ``result.genes`` stays the attributed ranking).
    """
    import torch

    from ..circuits import Target, faithfulness, merge, prune, trace
    from ..models._scoring import answer_tokens
    from ._encode import encode_cells
    from ._spine import prompt_settings

    if rank_genes_by not in ("attribution", "knockout"):
        raise ValueError(f"rank_genes_by={rank_genes_by!r} must be 'attribution' or 'knockout'.")
    label_key = label_key or model.metadata.get("label_key")
    if label_key is None or label_key not in adata.obs:
        raise ValueError(f"label_key={label_key!r} is not a column of adata.obs; pass the column holding cell types.")
    candidates = list(candidates) if candidates is not None else model.labels
    if cell_type not in candidates:
        raise ValueError(f"{cell_type!r} is not among the candidate labels ({', '.join(candidates)}).")
    if encoded is None:
        settings = prompt_settings(adata, model, label_key=label_key, progress=False, n_genes=n_genes,
                                   organism=organism)
    else:
        encoded.matches(adata)
    tokenizer = model.tokenizer
    answers = dict(zip(candidates, answer_tokens(tokenizer, candidates)))
    prefix, token, rivals = answer_contrast(answers, cell_type)
    target = Target.logit_difference(token, rivals, label=f"{cell_type} vs rivals")

    cells = _cells_of(adata, cell_type, label_key, n_cells, seed)
    documents = encoded.subset(cells) if encoded is not None else \
        encode_cells(adata[cells], model, settings=settings, progress=False)
    genes = documents.genes
    graphs, full_graphs, checks = [], [], []
    for i in progress_bar(range(len(cells)), desc=f"circuit {cell_type}", unit="cells", enabled=progress):
        ids = np.concatenate([documents.input_ids[i], np.asarray(prefix, np.int64)])
        spans = documents.span_ids[i]
        token_gene = np.concatenate([documents.token_gene[i], np.full(len(prefix), -1)])
        groups = [str(genes[spans[g]]) if g >= 0 else None for g in token_gene]
        labels = [tokenizer.decode([t]) for t in ids]
        input_ids = torch.as_tensor(ids)
        full = trace(model.model, transcoders, input_ids, target, max_nodes=max_nodes, threshold=threshold,
                     groups=groups, labels=labels, prune=False)
        full.graph["cell"] = str(adata.obs_names[cells[i]])
        full_graphs.append(full)
        graph = prune(full, node_threshold, n_paths)
        graphs.append(graph)
        if check_faithfulness:
            result = faithfulness(graph, model.model, transcoders, input_ids, target)
            checks.append({"cell": graph.graph["cell"], **{k: result[k] for k in
                          ("correlation", "spearman", "circuit_fraction", "graph_input_share", "target_value")}})
    merged = merge(graphs)
    merged.graph.update(cell_type=cell_type, n_layers=graphs[0].graph["n_layers"])
    table = _gene_table(full_graphs)
    target_info = {"token": tokenizer.decode([token]), "rivals": [tokenizer.decode([t]) for t in rivals],
                   "prefix": tokenizer.decode(prefix)}
    settings = {"n_cells": int(len(cells)), "max_nodes": max_nodes, "threshold": threshold,
                "node_threshold": node_threshold, "n_paths": n_paths if n_paths is not None else -1, "seed": seed,
                "label_key": label_key}
    adata.uns.setdefault(key_added, {})[cell_type] = {
        "genes": table.gene.tolist(), "attribution": table.attribution.to_numpy(), "n_cells": table.n_cells.to_numpy(),
        "target": target_info["token"], "settings": settings}
    result = CellTypeCircuit(cell_type, merged, table, graphs, [str(adata.obs_names[c]) for c in cells], target_info,
                             pd.DataFrame(checks) if checks else None, settings)
    if validate or rank_genes_by == "knockout":
        from ._validate import validate_circuit

        validate_circuit(adata, model, transcoders, result, rank_by_knockout=rank_genes_by == "knockout",
                         candidates=candidates, encoded=encoded, n_genes=n_genes, organism=organism, progress=progress)
    return result
