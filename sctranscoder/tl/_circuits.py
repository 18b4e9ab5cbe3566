"""The circuit behind a C2S model's cell-type call, traced cell by cell and merged, with its input genes ranked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._obs import require_obs_column
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
    scores: pd.DataFrame | None = None
    """Per cell (complete graphs): the target's value and probability, the call's probability as
    :func:`predict_cell_types` scores it, circuit-tracer's replacement and completeness scores of the
    unpruned and the pruned graph, and each input group's share of the target (genes, prompt template,
    fed answer prefix, errors)."""
    message: str = ""
    """A sentence for readers, e.g. that the circuit reaches no gene."""
    exports: list = field(default_factory=list)
    """Per cell (complete graphs): the graph pruned as circuit-tracer prunes it (node 0.8 / edge 0.98 by
    default, not grown), as circuit-tracer graph JSON (dicts)."""
    circuit_features: list = field(default_factory=list)
    """Per cell (complete graphs with ``min_feature_share``): the grown circuit's features as
    ``(layer, feature, position)``, nodes of the graph first, then any active features over the node budget
    (those carry the call too but have no row, so they are not drawn)."""

    def summary(self) -> dict:
        """Mean per-cell scores and shares (complete graphs), for tables and the CLI."""
        if self.scores is None or not len(self.scores):
            return {}
        return self.scores.drop(columns=["cell"]).mean(numeric_only=True).to_dict()
    validation: dict | None = None
    """Attribution against gene knockouts and the circuit's feature share (``validate=True``, see
    :func:`sctranscoder.tl.validate_circuit`)."""
    genes_by_knockout: pd.DataFrame | None = None
    """Genes ranked by measured knockout effect on log P(cell type) (``rank_genes_by="knockout"``)."""

    def input_genes(self, n: int | None = None) -> dict:
        """``{cell_type: genes}``: the genes that push the call towards this cell type, strongest first
        (what :func:`sctranscoder.tl.enrich_circuit` tests): measured (knocking them out lowers P(cell type))
        where the circuit was validated with ``rank_by_knockout``, else attributed."""
        if self.genes_by_knockout is not None:
            measured = self.genes_by_knockout
            supporting = measured[measured.knockout_effect > 0].gene.tolist()
            return {self.cell_type: supporting[:n] if n is not None else supporting}
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


SECTIONS = {"gene": "genes", "template": "prompt template", "answer": "answer prefix"}
"""Input groups: the genes of the sentence, the prompt's template tokens, the answer tokens fed to the model."""


def _gene_table(rows, n_graphs: int) -> pd.DataFrame:
    """Genes with their attribution (and influence) averaged over the cells; absent from a cell counts as zero."""
    if not rows:
        return pd.DataFrame(columns=["gene", "attribution", "influence", "n_cells", "fraction_of_cells"])
    per_cell = pd.DataFrame(rows, columns=["gene", "attribution", "influence"])
    table = per_cell.groupby("gene").agg(attribution=("attribution", "sum"), influence=("influence", "sum"),
                                         n_cells=("attribution", "size"))
    table[["attribution", "influence"]] /= n_graphs
    table["fraction_of_cells"] = table.n_cells / n_graphs
    return table.reset_index().sort_values("attribution", ascending=False, ignore_index=True)


def _greedy_gene_rows(graph) -> list:
    return [(d["label"], d["attribution"], d["influence"]) for _, d in graph.nodes(data=True)
            if d["kind"] == "input" and d.get("section", "gene" if d["grouped"] else "") == "gene"]


def _complete_gene_rows(attribution_graph, genes_of_positions) -> list:
    """Per gene of one cell: its tokens' signed contributions to the target (all paths) and their influence."""
    from ..circuits import token_attributions

    signed = token_attributions(attribution_graph)
    influence = attribution_graph.node_influence()
    start = attribution_graph.token_index(0)
    pooled: dict = {}
    for position, gene in enumerate(genes_of_positions):
        if gene is None:
            continue
        a, i = pooled.get(gene, (0.0, 0.0))
        pooled[gene] = (a + float(signed[position]), i + float(influence[start + position]))
    return [(gene, a, i) for gene, (a, i) in pooled.items()]


def _group_attribution(attribution_graph) -> dict:
    """Signed contributions to the target's value of each input section, of errors, and the rest (biases,
    features over the budget)."""
    from ..circuits import token_attributions

    signed = token_attributions(attribution_graph)
    sums: dict = {}
    for position, section in enumerate(attribution_graph.sections):
        sums[section] = sums.get(section, 0.0) + float(signed[position])
    kinds = attribution_graph.masks()
    sums["error"] = float(attribution_graph.signed_attribution()[kinds["error"]].sum())
    sums["rest"] = attribution_graph.value - sum(sums.values())
    return sums


def _inputs_of(documents, i, fed, genes):
    """Per position of the traced ids: its gene (or None), its group name, its section, its token text."""
    n_prompt = len(documents.input_ids[i])
    spans = documents.span_ids[i]
    token_gene = list(documents.token_gene[i]) + [-1] * (len(fed) - n_prompt)
    gene_of = [str(genes[spans[g]]) if g >= 0 else None for g in token_gene]
    sections = ["gene" if g is not None else ("answer" if p >= n_prompt else "template") for p, g in enumerate(gene_of)]
    groups = [g if g is not None else SECTIONS[s] for g, s in zip(gene_of, sections)]
    return gene_of, groups, sections


def no_gene_message(cell_type: str, table: pd.DataFrame, scores: pd.DataFrame | None) -> str:
    """A sentence saying so when the circuit of ``cell_type`` reaches no gene (nothing pushes towards it)."""
    supporting = table[table.attribution > 0] if len(table) else table
    if len(supporting):
        return ""
    where = ""
    if scores is not None and len(scores) and "share_template" in scores:
        where = (f" The target rests on the prompt template ({scores.share_template.mean():.0%} of the influence), "
                 f"the fed answer prefix ({scores.share_answer.mean():.0%}) and errors "
                 f"({scores.share_error.mean():.0%}).")
    return f"The circuit of {cell_type!r} reaches no gene that pushes the call towards it.{where}"


def short_of_share_message(scores: pd.DataFrame | None, min_share: float | None) -> str:
    """A sentence naming the cells whose circuit cannot carry ``min_share`` of the call even with every feature
    of the traced sequence on (they keep the standard pruned circuit)."""
    if min_share is None or scores is None or "feature_share_reached" not in scores:
        return ""
    short = scores[~scores.feature_share_reached.astype(bool)]
    if not len(short):
        return ""
    best = short.feature_share_all[np.isfinite(short.feature_share_all)]
    if not len(best):  # the label's log-odds is the same with every feature off: there is no share to carry
        return (f"In {len(short)} of {len(scores)} cells switching every feature off does not move the label's "
                "log-odds, so no share of it can be measured; those cells keep the standard pruned circuit.")
    return (f"In {len(short)} of {len(scores)} cells the features cannot carry {min_share:.0%} of the label's "
            f"log-odds even with every feature of the traced sequence on (they carry {best.max():.0%} at most); "
            f"those cells keep the standard pruned circuit, which carries "
            f"{short.feature_share_pruned.median():.0%} (median).")


def cell_type_circuit(adata, model, transcoders: dict, cell_type: str, *, label_key: str | None = None,
                      candidates=None, n_cells: int = 8, n_genes: int | None = None, organism: str | None = None,
                      method: str = "complete", target: str = "logodds", max_feature_nodes: int | None = 1024,
                      batch_size: int = 64, node_threshold: float | None = None, edge_threshold: float = 0.98,
                      max_nodes: int = 60, threshold: float = 0.01, n_paths: int | None = None,
                      check_faithfulness: bool = False, seed: int = 0, key_added: str = "circuits", encoded=None,
                      progress: bool = True, validate: bool = False, rank_genes_by: str = "attribution",
                      min_feature_share: float | None = 0.8) -> CellTypeCircuit:
    """Trace why a C2S model calls cells ``cell_type``, over a sample of that type's cells.

    The default target is the call as :func:`predict_cell_types` scores it: the log-odds of
    ``cell_type`` against all other candidate labels, ``log q / (1 - q)`` with ``q`` the softmax over
    candidates of each answer's summed token log-probabilities (``target="logprob"``: ``log q``),
    linearized at the model's final hidden states (:func:`sctranscoder.circuits.answer_logprob`); the
    model is fed the prompt and the label's answer. ``target="contrast"``: the older target, the cell type's answer token against
    its rivals' tokens where the answers part (:func:`answer_contrast`), after the shared prefix.

    ``method="complete"`` builds circuit-tracer's complete attribution graph per cell
    (:func:`sctranscoder.circuits.attribute`, pruned by cumulative influence), with its replacement
    and completeness scores; ``method="greedy"`` the older best-first search
    (:func:`sctranscoder.circuits.trace`). Input tokens are pooled per gene; the template's tokens
    and the fed answer tokens each form one named input. The per-cell graphs are merged (a feature is
    the same node at every position, attributions averaged over cells). Gene rankings (signed
    contribution to the target over all paths of the unpruned graph, averaged over cells) go to
    ``adata.uns[key_added][cell_type]``.

    With ``min_feature_share`` (complete graphs), each cell's circuit is then grown until its features alone
    carry that share of the label's log-odds over all candidates, measured in the replacement model with
    every other feature zero-ablated and the transcoders' errors held
    (:func:`sctranscoder.circuits.grow_circuit`, the measure :func:`validate_circuit` reports as
    ``feature_share``). Per cell, ``result.scores`` records the share reached and the features it took,
    beside the standard pruned circuit's; ``result.message`` says in words where a cell cannot reach it.

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
    method
        ``"complete"`` (default) or ``"greedy"``.
    target
        ``"logodds"`` (default), ``"logprob"`` or ``"contrast"``.
    max_feature_nodes, batch_size
        Complete graphs: the node budget (features whose inputs are attributed) and rows per backward pass.
    node_threshold, edge_threshold
        Pruning: complete graphs keep the nodes carrying this share of the cumulative influence
        (default 0.8) and edges carrying ``edge_threshold``; greedy graphs keep nodes with at least
        this influence (default 0.02).
    max_nodes, threshold, n_paths
        Greedy search: passed to :func:`sctranscoder.circuits.trace`.
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`); default: the sampled
        cells are tokenized here.
    check_faithfulness
        Also ablate each cell's top features in the replacement model
        (:func:`sctranscoder.circuits.faithfulness`).
    validate
        Knock the top genes out of the traced cells and compare (``result.validation``,
        :func:`sctranscoder.tl.validate_circuit`).
    min_feature_share
        Grow each cell's circuit until its features alone carry this share of the label's log-odds
        (default 0.8; ``None``: the standard pruned circuit). Complete graphs only.
    rank_genes_by
        ``"knockout"``: also knock out every gene of the traced cells' sentences and rank genes by the measured
        drop of log P(cell type) (``result.genes_by_knockout``; ``result.genes`` stays the attributed ranking).
    """
    import time

    import torch

    from .. import circuits as cc
    from ..models._scoring import answer_tokens
    from ._encode import encode_cells
    from ._spine import prompt_settings

    if method not in ("complete", "greedy"):
        raise ValueError(f"method={method!r} must be 'complete' or 'greedy'.")
    if target not in ("logodds", "logprob", "contrast"):
        raise ValueError(f"target={target!r} must be 'logodds', 'logprob' or 'contrast'.")
    if node_threshold is None:
        node_threshold = 0.8 if method == "complete" else 0.02
    if min_feature_share is not None and not 0.0 < min_feature_share <= 1.0:
        raise ValueError(f"min_feature_share={min_feature_share} must lie in (0, 1], or be None.")
    if rank_genes_by not in ("attribution", "knockout"):
        raise ValueError(f"rank_genes_by={rank_genes_by!r} must be 'attribution' or 'knockout'.")
    label_key = label_key or model.metadata.get("label_key")
    require_obs_column(adata, label_key)
    candidates = list(candidates) if candidates is not None else model.labels
    if cell_type not in candidates:
        raise ValueError(f"{cell_type!r} is not among the candidate labels ({', '.join(candidates)}).")
    if encoded is None:
        settings = prompt_settings(adata, model, label_key=label_key, progress=False, n_genes=n_genes,
                                   organism=organism)
    else:
        encoded.matches(adata)
    tokenizer = model.tokenizer
    answer_ids = answer_tokens(tokenizer, candidates)
    answers = dict(zip(candidates, answer_ids))
    index = candidates.index(cell_type)
    prefix, token, rivals = answer_contrast(answers, cell_type)
    contrast = cc.Target.logit_difference(token, rivals, label=f"{cell_type} vs rivals")

    cells = _cells_of(adata, cell_type, label_key, n_cells, seed)
    documents = encoded.subset(cells) if encoded is not None else \
        encode_cells(adata[cells], model, settings=settings, progress=False)
    genes = documents.genes
    graphs, gene_rows, checks, score_rows, exports, grown_features = [], [], [], [], [], []
    for i in progress_bar(range(len(cells)), desc=f"circuit {cell_type}", unit="cells", enabled=progress):
        start = time.perf_counter()
        cell = str(adata.obs_names[cells[i]])
        prompt = [int(t) for t in documents.input_ids[i]]
        kind = target if target != "contrast" else "logodds"
        readout, fed, info = cc.answer_logprob(model.model, prompt, answer_ids, index, kind=kind,
                                               label=f"{'log-odds' if kind == 'logodds' else 'log P'}({cell_type})")
        if target != "contrast":
            goal = readout
        else:
            goal, fed = contrast, prompt + list(prefix)
        gene_of, groups, sections = _inputs_of(documents, i, fed, genes)
        labels = [tokenizer.decode([t]) for t in fed]
        input_ids = torch.as_tensor(fed)
        row = {"cell": cell, "probability": float(info["probabilities"][index]), "logprob": info["logprob"],
               "logodds": info["logodds"]}
        if method == "complete":
            full = cc.attribute(model.model, transcoders, input_ids, goal, max_feature_nodes=max_feature_nodes,
                                batch_size=batch_size, labels=labels, groups=groups, sections=sections)
            include = None
            if min_feature_share is not None:
                clock = time.perf_counter()
                grown = cc.grow_circuit(full, cc.FeatureShare(model.model, transcoders, prompt, answer_ids, index),
                                        min_feature_share, node_threshold=node_threshold, edge_threshold=edge_threshold)
                include = grown.include
                grown_features.append(grown.features)
                row.update(feature_share=grown.share, feature_share_reached=grown.reached,
                           n_circuit_features=len(grown.features), n_features_over_budget=grown.n_over_budget,
                           feature_share_pruned=grown.share_pruned, n_features_pruned=grown.n_pruned,
                           feature_share_all=grown.share_all, feature_share_checks=grown.n_checks,
                           grow_seconds=time.perf_counter() - clock)
            graph = cc.to_networkx(full, node_threshold=node_threshold, edge_threshold=edge_threshold, include=include)
            if include is not None:
                row.update(replacement_grown=graph.graph["replacement_grown"],
                           completeness_grown=graph.graph["completeness_grown"])
            gene_rows += _complete_gene_rows(full, gene_of)
            shares = full.input_shares()
            signed = _group_attribution(full)
            row.update(value=full.value, **full.scores(node_threshold, edge_threshold),
                       **{f"share_{k}": shares.get(k, 0.0) for k in ("gene", "template", "answer", "error",
                                                                    "unexpanded")},
                       **{f"attribution_{k}": signed.get(k, 0.0) for k in ("gene", "template", "answer", "error",
                                                                          "rest")},
                       n_active=full.n_active, n_feature_nodes=full.n_features,
                       n_features_kept=sum(1 for _, d in graph.nodes(data=True) if d["kind"] == "feature"))
            exports.append(cc.to_circuit_tracer(full, slug=f"{cell_type} {cell}", node_threshold=node_threshold,
                                                edge_threshold=edge_threshold, probability=row["probability"]))
        else:
            full = cc.trace(model.model, transcoders, input_ids, goal, max_nodes=max_nodes, threshold=threshold,
                            groups=groups, labels=labels, prune=False)
            for node, data in full.nodes(data=True):
                if data["kind"] == "input":
                    data["section"] = sections[data["position"]]
            gene_rows += _greedy_gene_rows(full)
            graph = cc.prune(full, node_threshold, n_paths)
            row.update(value=full.graph["value"])
        row["seconds"] = time.perf_counter() - start
        graph.graph["cell"] = cell
        graphs.append(graph)
        score_rows.append(row)
        if check_faithfulness:
            result = cc.faithfulness(graph, model.model, transcoders, input_ids, goal)
            checks.append({"cell": cell, **{k: result[k] for k in
                          ("correlation", "spearman", "circuit_fraction", "graph_input_share", "target_value")}})
    merged = cc.merge(graphs)
    merged.graph.update(cell_type=cell_type, n_layers=graphs[0].graph["n_layers"], method=method, target_kind=target)
    scores = pd.DataFrame(score_rows)
    for column in ("replacement", "completeness", "replacement_pruned", "completeness_pruned"):
        if column in scores:
            merged.graph[column] = float(scores[column].mean())
    table = _gene_table(gene_rows, len(graphs))
    if target != "contrast":
        what = "log-odds" if target == "logodds" else "log-probability"
        target_info = {"kind": target, "token": cell_type, "rivals": [c for c in candidates if c != cell_type],
                       "prefix": tokenizer.decode(answers[cell_type][:-1]),
                       "description": f"the {what} of {cell_type!r} against all {len(candidates)} candidate labels, "
                                      "as predict_cell_types scores them"}
    else:
        target_info = {"kind": "contrast", "token": tokenizer.decode([token]),
                       "rivals": [tokenizer.decode([t]) for t in rivals], "prefix": tokenizer.decode(prefix),
                       "description": f"logit of {tokenizer.decode([token])!r} minus the mean of its rivals' after "
                                      f"{tokenizer.decode(prefix)!r}"}
    settings = {"n_cells": int(len(cells)), "method": method, "target": target,
                "max_feature_nodes": max_feature_nodes if max_feature_nodes is not None else -1,
                "max_nodes": max_nodes, "threshold": threshold, "node_threshold": node_threshold,
                "edge_threshold": edge_threshold, "n_paths": n_paths if n_paths is not None else -1, "seed": seed,
                "label_key": label_key,
                "min_feature_share": min_feature_share if min_feature_share is not None and method == "complete"
                else -1}
    message = " ".join(m for m in (no_gene_message(cell_type, table, scores),
                                   short_of_share_message(scores, min_feature_share)) if m)
    adata.uns.setdefault(key_added, {})[cell_type] = {
        "genes": table.gene.tolist(), "attribution": table.attribution.to_numpy(), "n_cells": table.n_cells.to_numpy(),
        "target": target_info["token"], "settings": settings, "message": message}
    result = CellTypeCircuit(cell_type, merged, table, graphs, [str(adata.obs_names[c]) for c in cells], target_info,
                             pd.DataFrame(checks) if checks else None, settings, scores, message, exports,
                             grown_features)
    if validate or rank_genes_by == "knockout":
        from ._validate import validate_circuit

        validate_circuit(adata, model, transcoders, result, rank_by_knockout=rank_genes_by == "knockout",
                         candidates=candidates, encoded=encoded, n_genes=n_genes, organism=organism, progress=progress)
    return result
